//! One line of help for every config key: what it does and what it costs. The
//! Config pane and `ftui doctor` read this table; a test checks that it covers
//! every key the config accepts.

pub struct FieldDoc {
    pub section: &'static str,
    pub key: &'static str,
    pub help: &'static str,
}

macro_rules! docs {
    ($($section:literal $key:literal $help:literal;)*) => {
        pub const FIELDS: &[FieldDoc] = &[$(FieldDoc { section: $section, key: $key, help: $help }),*];
    };
}

docs! {
    "model" "source" "Base model: a local Hugging Face folder, a .gguf file, a hub repo id (repo@revision), or `default` for the embedded SmolLM2-135M.";
    "model" "revision" "Hub branch, tag or commit to download; ignored for local files.";
    "model" "dtype" "Weight precision: float32 (exact, 4 bytes/param), bfloat16/float16 (half the memory, slight drift); auto = bf16 on a GPU that supports it, else float32.";
    "model" "device" "Where the model runs: auto (CUDA when present), cpu, cuda or cuda:N.";
    "model" "adapter" "A LoRA adapter folder (peft's format) put on the base: chat answers with it, and training continues it instead of starting a new one (its r and targets then apply).";
    "model" "attn_implementation" "sdpa lets libtorch pick fused attention kernels (fast, low memory); eager computes attention weights explicitly (slower, but can show them).";
    "quantization" "load_in_4bit" "Store decoder linear weights in 4 bits (QLoRA): about 1/8 of fp32 memory, dequantized on the fly, a little slower per step.";
    "quantization" "load_in_8bit" "Store decoder linear weights as int8 with a scale per row: 1/4 of fp32 memory, small accuracy loss.";
    "quantization" "bnb_4bit_quant_type" "4-bit code book: nf4 (normal-float, fits trained weights better) or fp4.";
    "quantization" "bnb_4bit_use_double_quant" "Quantize the per-block scales too (8-bit, blocks of 256): saves about 0.4 bits per parameter.";
    "quantization" "bnb_4bit_compute_dtype" "Precision the 4-bit weights are expanded to for each matmul: float32 (exact, slower) or bfloat16/float16 (faster on GPU).";
    "quantization" "llm_int8_skip_modules" "Module names left unquantized (e.g. lm_head, or layers that must stay exact).";
    "quantization" "llm_int8_threshold" "LLM.int8 outlier threshold: input features above it run in 16-bit to keep accuracy.";
    "lora" "r" "Rank of the low-rank update: higher learns more and costs more memory (trainable params grow linearly with r).";
    "lora" "lora_alpha" "Scale of the update (alpha/r, or alpha/sqrt(r) with rslora): larger moves the model further per step.";
    "lora" "lora_dropout" "Dropout on the adapter's input during training: regularises small datasets; 0 is fastest.";
    "lora" "bias" "Which biases train: none (PEFT default), all, or lora_only.";
    "lora" "target_modules" "Which linear layers get adapters: a list of names (q_proj, o_proj, ...), a regex, or \"all-linear\" (every block linear, not lm_head). More targets: more capacity and memory.";
    "lora" "modules_to_save" "Modules trained in full and saved with the adapter, e.g. embed_tokens and lm_head after adding special tokens. Costs their full size in memory and on disk.";
    "lora" "use_rslora" "Rank-stabilised scaling alpha/sqrt(r): keeps high ranks from learning too slowly.";
    "lora" "init_lora_weights" "true: A random, B zero, so training starts from the base model (PEFT default); \"gaussian\": A normal; false: both random (tests only).";
    "data" "source" "Dataset: a .jsonl, .json, .csv or .parquet file, or a hub dataset id.";
    "data" "split" "Which split of a hub dataset to use (train, validation, ...).";
    "data" "format" "messages (conversations), prompt_completion, or text; detected from the columns when left out.";
    "data" "columns" "Rename map applied first, e.g. { sentence = \"prompt\", translation_extra = \"completion\" }.";
    "data" "system_prompt" "A system message put before every conversation.";
    "data" "formatting_template" "A template over a record's columns that yields the text or the messages: bring your own formatting function.";
    "data" "eval_split_ratio" "Fraction of records held out for evaluation (0 = none).";
    "data" "seed" "Seed for shuffling and the train/eval split; same seed, same split.";
    "data" "on_bad_record" "fail stops at the first malformed record (naming file and line); skip drops it and reports how many were skipped.";
    "template" "chat_template" "Chat template: a file, an inline template, or a built-in name (chatml, llama3, phi3, mistral, zephyr); default: the tokenizer's own.";
    "template" "pad_token" "Override the padding token, e.g. \"unk\" when PAD equals EOS (otherwise EOS is masked and the model never learns to stop).";
    "template" "padding_side" "right pads after the tokens (training); left pads before them (batched generation).";
    "template" "add_generation_prompt" "End rendered conversations with the assistant header, as when asking the model to answer.";
    "training" "output_dir" "Folder for the adapter, checkpoints and metrics.";
    "training" "max_length" "Longest sequence in tokens; longer examples are truncated. Memory and time grow with it.";
    "training" "packing" "Concatenate examples into full rows: no padding waste, fewer steps per epoch.";
    "training" "packing_strategy" "bfd: whole examples in best-fit bins, positions restart per example; wrapped: concatenate and cut at max_length (may split examples).";
    "training" "padding_free" "Flatten each batch into one row with restarting positions instead of padding: saves compute on padding.";
    "training" "pad_to_multiple_of" "Round padded lengths up to a multiple (8 or 64 helps tensor cores); costs a few pad tokens.";
    "training" "completion_only_loss" "Train only on the completion, not the prompt. Default: on for prompt/completion data.";
    "training" "assistant_only_loss" "Train only on assistant turns of multi-turn conversations.";
    "training" "per_device_train_batch_size" "Examples per forward pass: larger is faster per example and needs more memory.";
    "training" "gradient_accumulation_steps" "Forward passes summed before each optimizer step: a larger effective batch at no extra memory.";
    "training" "auto_find_batch_size" "On out-of-memory, halve the batch size and retry instead of failing.";
    "training" "gradient_checkpointing" "Recompute activations in the backward pass: much less memory, about 30% more time per step.";
    "training" "num_train_epochs" "Passes over the training data (ignored when max_steps > 0).";
    "training" "max_steps" "Stop after this many optimizer steps; -1 uses num_train_epochs.";
    "training" "learning_rate" "Peak learning rate of the adapter weights; LoRA usually wants 1e-4 to 3e-4.";
    "training" "lr_scheduler_type" "How the rate changes after warm-up: linear decay, cosine, constant, constant_with_warmup.";
    "training" "warmup_ratio" "Fraction of steps spent ramping the rate up from 0.";
    "training" "warmup_steps" "Warm-up steps, or a fraction below 1 of all steps (overrides warmup_ratio when > 0). The first step then runs at rate 0.";
    "training" "weight_decay" "AdamW weight decay on the trainable weights.";
    "training" "max_grad_norm" "Clip the gradient norm to this value (0 = no clipping).";
    "training" "optim" "Optimizer: adamw_torch (8 bytes of state per trainable param), 8-bit and paged variants (less state memory), sgd.";
    "training" "bf16" "Run the base model in bfloat16 (GPU); default: on where supported. Halves activation memory.";
    "training" "fp16" "Run the base model in float16 with loss scaling (older GPUs without bf16).";
    "training" "seed" "Seed for adapter initialisation, dropout and data order.";
    "training" "logging_steps" "Log loss, learning rate and speed every N steps.";
    "training" "eval_steps" "Evaluate on the held-out split every N steps (needs eval_split_ratio > 0).";
    "training" "save_steps" "Write a checkpoint every N steps.";
    "training" "save_total_limit" "Keep at most this many checkpoints, deleting the oldest.";
    "training" "resume_from_checkpoint" "A checkpoint folder to continue from (adapter, optimizer, step).";
    "generation" "max_new_tokens" "Most tokens to generate per answer.";
    "generation" "temperature" "Sampling temperature; 0 = greedy (deterministic), higher = more varied.";
    "generation" "top_p" "Sample only from the smallest set of tokens whose probability adds up to p (1 = off).";
    "generation" "top_k" "Sample only from the k most likely tokens (0 = off).";
    "generation" "repetition_penalty" "Penalise tokens already present (>1 discourages repeats; 1 = off).";
    "generation" "seed" "Seed for sampling: the same seed gives the same answer.";
    "ui" "theme" "Workbench colours: dark, light, high-contrast, or a theme file (t cycles them while running).";
}

/// Help for one key.
pub fn field_doc(section: &str, key: &str) -> Option<&'static FieldDoc> {
    FIELDS.iter().find(|f| f.section == section && f.key == key)
}
