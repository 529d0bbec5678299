"""Make the golden fixtures that ftui's Rust tests compare against.

ftui's numbers must match the Hugging Face stack (DESIGN.md, "Correctness
standard"). CI has no transformers, so this script runs the reference once and
commits what it gives. It writes:

1. ``tests/fixtures/models/{llama,qwen2,phi3}/``: tiny random-weight models
   (fp32, 2 layers, hidden 64, GQA) saved with ``save_pretrained``, a shared
   byte-level BPE tokenizer trained on ``sample-data/yoda_sentences.jsonl``
   (ChatML template), and ``golden.safetensors`` with fp32 logits for a
   right-padded batch, a left-padded batch and a packed row.
2. ``tests/fixtures/smollm2_gguf.json``: what transformers does with the embedded
   default model ``models/SmolLM2-135M-Instruct.Q4_1.gguf`` (chat template,
   token ids, greedy generation, log-probabilities, special tokens).

Run from the repository root (``make fixtures`` does this; it needs
``tools/requirements.txt`` and ``sample-data/yoda_sentences.jsonl`` from
``tools/make_yoda.py``):

    .venv/bin/python tools/make_fixtures.py            # both parts
    .venv/bin/python tools/make_fixtures.py --skip-gguf

Everything is seeded; two runs write identical files.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
import transformers
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          Phi3Config, Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
YODA = ROOT / "sample-data" / "yoda_sentences.jsonl"
GGUF = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SEED = 1234

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# --------------------------------------------------------------------------- tokenizer

def train_tokenizer():
    """A ~300-token byte-level BPE: 256 bytes, 3 special tokens, the rest merges."""
    rows = [json.loads(line) for line in YODA.read_text(encoding="utf-8").splitlines()]
    texts = [t for r in rows for t in (r["sentence"], r["translation_extra"])]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok, texts


def save_tokenizer(tok, folder):
    """tokenizer.json plus a tokenizer_config.json in the layout hub repos use
    (chat template inline, added_tokens_decoder), which transformers 4 and 5 read."""
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "added_tokens_decoder": {
            str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False,
                                      "rstrip": False, "single_word": False, "special": True}
            for t in SPECIAL_TOKENS
        },
        "bos_token": None,
        "chat_template": CHATML,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "model_max_length": 128,
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


# --------------------------------------------------------------------------- tiny models

def configs(vocab, pad_id, eos_id):
    common = dict(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
                  bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id)
    rope = {"rope_type": "default", "rope_theta": 10000.0}
    # Untied models carry a second V x 64 matrix; intermediate 96 keeps them < 500 KB.
    return {
        "llama": (LlamaForCausalLM, LlamaConfig(
            **common, intermediate_size=128, tie_word_embeddings=True,
            rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 32})),
        "qwen2": (Qwen2ForCausalLM, Qwen2Config(
            **common, intermediate_size=96, tie_word_embeddings=False, rope_parameters=rope)),
        "phi3": (Phi3ForCausalLM, Phi3Config(
            **common, intermediate_size=96, tie_word_embeddings=False, rope_parameters=rope,
            original_max_position_embeddings=128)),
    }


def randomize(model):
    """Weights large enough that attention is far from uniform, so a wrong mask,
    RoPE or bias shows in the logits (the default init of 0.02 hides them)."""
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.2 * noise)


def legacy_rope_layout(folder):
    """transformers 5 writes ``rope_parameters``; checkpoints on the hub (Llama 3,
    Phi-3) carry ``rope_theta`` and ``rope_scaling``. llama and phi3 keep the hub
    layout, qwen2 keeps the transformers-5 one, so ftui's reader sees both."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = None if rope.get("rope_type") == "default" else rope
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def forward(model, **inputs):
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits.float()


def golden_inputs(tok, texts, pad_id):
    ids = [tok.encode(t).ids for t in texts[:8]]
    full, short = ids[0][:10], ids[1][:6]
    assert len(full) == 10 and len(short) == 6
    right = torch.tensor([full, short + [pad_id] * 4])
    left = torch.tensor([full, [pad_id] * 4 + short])
    mask_right = torch.tensor([[1] * 10, [1] * 6 + [0] * 4])
    mask_left = torch.tensor([[1] * 10, [0] * 4 + [1] * 6])
    seqs = [ids[2][:5], ids[3][:4], ids[4][:3]]
    packed = torch.tensor([sum(seqs, [])])
    positions = torch.tensor([[p for s in seqs for p in range(len(s))]])
    return right, mask_right, left, mask_left, seqs, packed, positions


def make_model_fixture(arch, cls, config, tok, texts):
    folder = FIXTURES / "models" / arch
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    torch.manual_seed(SEED)
    model = cls(config).float().eval()
    randomize(model)
    model.save_pretrained(folder, safe_serialization=True)
    if arch != "qwen2":
        legacy_rope_layout(folder)
    save_tokenizer(tok, folder)

    # The goldens come from the saved folder, so the round trip is part of the check.
    pad_id = tok.token_to_id("<|endoftext|>")
    right, mask_right, left, mask_left, seqs, packed, positions = golden_inputs(tok, texts, pad_id)
    impls, loaded = {}, {}
    for impl in ("eager", "sdpa"):
        m = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=impl,
                                                 dtype=torch.float32).eval()
        for name, p in model.state_dict().items():
            assert torch.equal(p, m.state_dict()[name]), f"{arch}: {name} changed on reload"
        loaded[impl] = m
        impls[impl] = {
            "right": forward(m, input_ids=right, attention_mask=mask_right),
            "left": forward(m, input_ids=left, attention_mask=mask_left),
            # A packed row attends only within its own sequence: ftui's semantics,
            # and what DataCollatorWithFlattening + flash attention give in trl.
            "packed": torch.cat([forward(m, input_ids=torch.tensor([s])) for s in seqs], dim=1),
            # transformers 5 derives the same per-sequence mask from restarting
            # position_ids for eager/sdpa too, when there is no attention_mask and no cache.
            "packed_hf": forward(m, input_ids=packed, position_ids=positions),
        }
    # Left-padding's pad positions are fully masked query rows: eager and sdpa give
    # unrelated numbers there, so only attention_mask == 1 positions are compared.
    eager, sdpa = impls["eager"], impls["sdpa"]
    real_r, real_l = mask_right.bool(), mask_left.bool()
    d_impl = max((eager["right"] - sdpa["right"])[real_r].abs().max(),
                 (eager["left"] - sdpa["left"])[real_l].abs().max(),
                 (eager["packed"] - sdpa["packed"]).abs().max()).item()
    d_packed = (eager["packed_hf"] - eager["packed"]).abs().max().item()
    d_left_right = (eager["left"][1, 4:] - eager["right"][1, :6]).abs().max().item()
    print(f"{arch}: eager vs sdpa (real tokens) {d_impl:.3g}; packed-by-position_ids vs "
          f"per-sequence {d_packed:.3g}; left vs right padded row {d_left_right:.3g}; "
          f"logit std {eager['right'].std():.3g}")
    assert d_impl < 1e-4 and d_packed < 1e-4, arch
    tensors = {
        "right.input_ids": right, "right.attention_mask": mask_right,
        "right.logits": eager["right"],
        "left.input_ids": left, "left.attention_mask": mask_left, "left.logits": eager["left"],
        "packed.input_ids": packed, "packed.position_ids": positions,
        "packed.logits": eager["packed"],
    }
    # What is saved for the packed row is the per-sequence forwards, concatenated.
    eager_model = loaded["eager"]
    for seq, start in zip(seqs, (0, 5, 9)):
        alone = forward(eager_model, input_ids=torch.tensor([seq]))
        assert torch.equal(tensors["packed.logits"][:, start:start + len(seq)], alone), arch
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "golden.safetensors",
              # One key only: safetensors writes metadata in hash-map order.
              metadata={"source": f"tools/make_fixtures.py; transformers "
                                  f"{transformers.__version__}; torch {torch.__version__}; eager"})
    return folder


def make_tiny_models():
    tok, texts = train_tokenizer()
    pad_id, eos_id = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")
    hf_tok = None
    for arch, (cls, config) in configs(tok.get_vocab_size(), pad_id, eos_id).items():
        folder = make_model_fixture(arch, cls, config, tok, texts)
        hf_tok = AutoTokenizer.from_pretrained(folder)
    rendered = hf_tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                          add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", rendered
    assert hf_tok.pad_token_id == pad_id and hf_tok.eos_token_id == eos_id


# --------------------------------------------------------------------------- SmolLM2 GGUF

TOKENIZE_STRINGS = [
    "In 1984 there were 12345 apples",
    "Café naïve — 日本",
    "def f(x):\n    return x**2",
    "  two leading spaces",
    " one leading space",
    "Hello<|im_end|> world",
]
SCORE_TEXT = "The quick brown fox jumps over the lazy dog. Yoda speaks in riddles, he does."


def make_smollm2_fixture():
    tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    model = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name,
                                                 dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    prompt = torch.tensor([ids])
    with torch.no_grad():
        logits = model(prompt).logits[0].float()
        gen = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24,
                             do_sample=False, pad_token_id=tok.pad_token_id)
    new = gen[0, len(ids):].tolist()

    score_ids = tok(SCORE_TEXT)["input_ids"]
    with torch.no_grad():
        s_logits = model(torch.tensor([score_ids])).logits[0].float()
    logp = torch.log_softmax(s_logits, dim=-1)
    targets = torch.tensor(score_ids[1:])
    logprobs = logp[:-1].gather(1, targets[:, None])[:, 0]

    special = {}
    for kind in ("bos", "eos", "pad", "unk"):
        special[kind] = {"token": getattr(tok, f"{kind}_token"),
                         "id": getattr(tok, f"{kind}_token_id")}
    result = {
        "model": f"models/{GGUF.name}",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "chat_template": tok.chat_template,
        "chat": {"messages": messages, "add_generation_prompt": True, "text": text,
                 "input_ids": ids},
        "greedy": {"max_new_tokens": 24, "token_ids": new,
                   "text": tok.decode(new, skip_special_tokens=False)},
        "score": {"text": SCORE_TEXT, "add_special_tokens": True,
                  "special_tokens_added": score_ids != tok(SCORE_TEXT, add_special_tokens=False)[
                      "input_ids"],
                  "token_ids": score_ids, "logprobs": logprobs.tolist(),
                  "mean_nll": -logprobs.mean().item()},
        "tokenize": [{"text": s, "input_ids": tok(s, add_special_tokens=False)["input_ids"],
                      "tokens": tok.convert_ids_to_tokens(
                          tok(s, add_special_tokens=False)["input_ids"])}
                     for s in TOKENIZE_STRINGS],
        "special": special,
        "vocab_size": len(tok),
        "num_parameters": model.num_parameters(),
        "memory_footprint": model.get_memory_footprint(),
        "logits_first_row": {"position_0": logits[0, :16].tolist(),
                             "last_position": logits[-1, :16].tolist()},
    }
    out = FIXTURES / "smollm2_gguf.json"
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"smollm2: {len(ids)} prompt tokens; greedy: {result['greedy']['text']!r}; "
          f"mean_nll {result['score']['mean_nll']:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-gguf", action="store_true", help="only the tiny models")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not YODA.exists():
        sys.exit(f"{YODA} is missing: run tools/make_yoda.py first")
    make_tiny_models()
    if not args.skip_gguf:
        if not GGUF.exists():
            sys.exit(f"{GGUF} is missing: run `make model` first")
        make_smollm2_fixture()


if __name__ == "__main__":
    main()
