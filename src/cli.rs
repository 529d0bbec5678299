//! The headless face of ftui: every command drives the same engine the
//! workbench uses, prints one JSON document with `--json`, and exits non-zero
//! with a one-line cause on failure (2 for a bad config or bad arguments).

use crate::config::{AttnImplementation, DType, RunConfig};
use crate::engine::{
    Engine, Event, GenerateRequest, JobOutput, ModelSpec, Prompt, Request, ScoreRequest,
};
use crate::generate::SamplingParams;
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

mod training;

#[derive(Parser, Debug)]
#[command(
    name = "ftui",
    // The launcher runs this program as `ftui-engine`; users typed `ftui`.
    bin_name = "ftui",
    version,
    about = "A terminal workbench for LoRA/QLoRA fine-tuning of language models"
)]
pub struct Cli {
    /// Run configuration: the workbench's (default sample-data/ftui.toml) and
    /// inspect's; generate, score and bench take its [quantization].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// What this installation can do: libtorch, CUDA, bf16, folders, hub, default model.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Render a conversation with a model's chat template and tokenize it.
    Template(TemplateArgs),
    /// Show the collated training batches: token ids, labels, masks, positions.
    Inspect {
        /// How many batches to show.
        #[arg(long, default_value_t = 1)]
        batches: usize,
        /// Stop with an error when an example is truncated or has no trained token.
        #[arg(long)]
        strict: bool,
        /// One JSON object per batch, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Generate text from a prompt or a conversation.
    Generate(GenerateArgs),
    /// Per-token log-probabilities of a text under the model.
    Score(ScoreArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Train a LoRA adapter: a run with its own folder (run.json, metrics.jsonl, checkpoints).
    Train(training::TrainArgs),
    /// The training runs under ./runs (and the --config's output_dir).
    Runs {
        #[arg(long)]
        json: bool,
    },
    /// Stop a run: it finishes its step, writes a checkpoint and ends.
    Stop { run_dir: PathBuf },
    /// Pause a run after its current step.
    Pause { run_dir: PathBuf },
    /// Resume a paused run.
    Resume { run_dir: PathBuf },
    /// Make a run write a checkpoint after its current step.
    Save { run_dir: PathBuf },
    /// Write the model, with an adapter merged, as a Hugging Face folder or a GGUF file
    /// (and an Ollama Modelfile); --config gives the run's [template], [quantization],
    /// [data] system_prompt and [generation].
    #[command(group(clap::ArgGroup::new("target").required(true).args(["merged", "gguf"])))]
    Export {
        /// A model folder, a .gguf file, a hub repo id or `default` (default: the
        /// config's [model] source).
        #[arg(long)]
        model: Option<String>,
        /// A peft adapter folder to merge (default: the config's [model] adapter).
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// Write a Hugging Face folder here.
        #[arg(long)]
        merged: Option<PathBuf>,
        /// Write a GGUF file here.
        #[arg(long)]
        gguf: Option<PathBuf>,
        /// GGUF tensor type: f32, f16, bf16, q8_0, q4_0 or q4_k_m.
        #[arg(long = "type", default_value = "f16", requires = "gguf")]
        gguf_type: String,
        /// Write an Ollama Modelfile for the GGUF here.
        #[arg(long, requires = "gguf")]
        modelfile: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A model folder, a .gguf file, a hub repo id (owner/name[@rev]) or `default`.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// float32, bfloat16, float16 or auto.
    #[arg(long, default_value = "auto", value_parser = parse_dtype)]
    pub dtype: DType,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// sdpa or eager attention.
    #[arg(long, default_value = "sdpa", value_parser = parse_attn)]
    pub attn: AttnImplementation,
    /// A LoRA adapter folder (peft or ftui format) to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Store the decoder's linear layers in 4 bits (as BitsAndBytes' load_in_4bit).
    #[arg(long, conflicts_with = "load_in_8bit")]
    pub load_in_4bit: bool,
    /// Store the decoder's linear layers as int8 with a scale per row.
    #[arg(long)]
    pub load_in_8bit: bool,
    /// 4-bit code book: nf4 or fp4.
    #[arg(long, default_value = "nf4")]
    pub quant_type: String,
    /// Quantize the 4-bit scales too (bnb_4bit_use_double_quant).
    #[arg(long)]
    pub double_quant: bool,
}

impl ModelArgs {
    /// The `[quantization]` settings the flags ask for, else the config's.
    fn quantization(
        &self,
        config: Option<crate::config::QuantizationConfig>,
    ) -> Result<Option<crate::config::QuantizationConfig>, Failure> {
        if !self.load_in_4bit && !self.load_in_8bit {
            return Ok(config);
        }
        let text = format!(
            "load_in_4bit = {}\nload_in_8bit = {}\nbnb_4bit_quant_type = {:?}\nbnb_4bit_use_double_quant = {}\n",
            self.load_in_4bit, self.load_in_8bit, self.quant_type, self.double_quant
        );
        toml::from_str(&text).map(Some).map_err(|e| Failure {
            code: 2,
            message: format!("--quant-type: {}", e.message()),
        })
    }
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("`{s}` is not one of float32, bfloat16, float16, auto"))
}

fn parse_attn(s: &str) -> Result<AttnImplementation, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("`{s}` is not one of sdpa, eager"))
}

#[derive(Args, Debug)]
pub struct TemplateArgs {
    #[arg(long, default_value = "default")]
    pub model: String,
    /// A chat template file (or a built-in name) instead of the model's own.
    #[arg(long)]
    pub chat_template: Option<String>,
    /// A JSON file holding [{"role": ..., "content": ...}, ...].
    #[arg(long)]
    pub messages: PathBuf,
    #[arg(long)]
    pub add_generation_prompt: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[group(id = "input", required = true, multiple = false)]
pub struct InputArgs {
    /// Plain text prompt.
    #[arg(long, group = "input")]
    pub prompt: Option<String>,
    /// A JSON conversation file, rendered with the chat template.
    #[arg(long, group = "input")]
    pub messages: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: InputArgs,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f64,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Recompute the whole sequence every step (to check the KV cache).
    #[arg(long, hide = true)]
    pub no_cache: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text to score (tokenized with the tokenizer's special tokens).
    #[arg(long, group = "score_input")]
    pub text: Option<String>,
    /// A JSON conversation file, rendered with the chat template.
    #[arg(long, group = "score_input")]
    pub messages: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Prompt and generation tokens per second (greedy, KV cache).
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        /// New tokens to generate.
        #[arg(long, default_value_t = 64)]
        tokens: usize,
        /// Prompt length in tokens.
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        /// Runs to take the best of.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        #[arg(long)]
        json: bool,
    },
    /// Training speed and peak memory on a run's config, model and data.
    Train {
        /// Measured optimizer steps (one more runs first to warm up).
        #[arg(long, default_value_t = 5)]
        steps: usize,
        #[arg(long)]
        json: bool,
    },
}

/// A failure with its exit code.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

pub fn load_config(path: &Path) -> Result<RunConfig, Failure> {
    let mut c = RunConfig::load(path).map_err(|e| Failure {
        code: 2,
        message: e.to_string(),
    })?;
    c.resolve(path.parent().unwrap_or(Path::new(".")));
    Ok(c)
}

fn read_messages(path: &Path) -> Result<Vec<serde_json::Value>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    match v {
        serde_json::Value::Array(a) if a.iter().all(|m| m.get("role").is_some()) => Ok(a),
        _ => Err(format!(
            "{}: expected a JSON list of {{\"role\": ..., \"content\": ...}} messages",
            path.display()
        )
        .into()),
    }
}

/// The name `--adapter` is loaded under.
const ADAPTER: &str = "adapter";

/// A fresh engine with the model (and `--adapter`) loaded, showing download
/// progress on stderr; also the adapter requests should name.
fn engine_with_model(
    m: &ModelArgs,
    quant: Option<crate::config::QuantizationConfig>,
    quiet: bool,
) -> Result<(Engine, Option<String>), Failure> {
    let engine = Engine::start();
    let spec = ModelSpec {
        source: m.model.clone(),
        dtype: m.dtype,
        device: m.device.clone(),
        attn: m.attn,
        quantization: m.quantization(quant)?,
    };
    run_job(&engine, Request::LoadModel(spec), quiet, |_| {})?;
    let adapter = match &m.adapter {
        Some(dir) => {
            let load = Request::LoadAdapter {
                dir: dir.clone(),
                name: ADAPTER.into(),
            };
            run_job(&engine, load, quiet, |_| {})?;
            Some(ADAPTER.to_string())
        }
        None => None,
    };
    Ok((engine, adapter))
}

/// Runs one job and waits on its id; progress goes to stderr unless `quiet`,
/// generated text to `on_text`.
fn run_job(
    engine: &Engine,
    request: Request,
    quiet: bool,
    mut on_text: impl FnMut(&str),
) -> Result<JobOutput, Failure> {
    let task = request.task();
    engine
        .run(request, |e| match e {
            Event::Progress { progress, .. } if !quiet && progress.total > 0 => {
                eprint!("\r{progress}");
                if progress.done >= progress.total {
                    eprintln!();
                }
            }
            Event::Text { text, .. } => on_text(text),
            _ => {}
        })
        .map_err(|e| format!("{task}: {e}").into())
}

/// What an engine job answered that was not the kind asked for.
fn unexpected(out: JobOutput) -> Failure {
    format!("the engine answered with something else: {out:?}").into()
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

fn prompt_of(input: &InputArgs) -> Result<Prompt, Failure> {
    match (&input.prompt, &input.messages) {
        (Some(p), _) => Ok(Prompt::Text(p.clone())),
        (None, Some(f)) => Ok(Prompt::Messages(read_messages(f)?)),
        (None, None) => Err("give --prompt TEXT or --messages FILE.json".into()),
    }
}

/// The workbench's config when none is given.
pub const DEFAULT_CONFIG: &str = "sample-data/ftui.toml";

pub fn run(cmd: Cmd, config: Option<&Path>) -> Result<(), Failure> {
    // generate, score and bench take [quantization] from a given config.
    let run_config = match (&cmd, config) {
        (Cmd::Generate(_) | Cmd::Score(_) | Cmd::Bench(_), Some(path)) => Some(load_config(path)?),
        _ => None,
    };
    let quant = run_config.as_ref().and_then(|c| c.quantization.clone());
    match cmd {
        Cmd::Doctor { json } => {
            let r = crate::doctor::report();
            if json {
                print_json(&serde_json::to_value(&r)?);
            } else {
                println!("{r}");
            }
            Ok(())
        }
        Cmd::Template(a) => template(a),
        Cmd::Inspect {
            batches,
            strict,
            json,
        } => inspect(
            config.unwrap_or(Path::new(DEFAULT_CONFIG)),
            batches,
            strict,
            json,
        ),
        Cmd::Generate(a) => generate(a, quant),
        Cmd::Score(a) => {
            let prompt = match (&a.text, &a.messages) {
                (Some(t), _) => Prompt::Text(t.clone()),
                (None, Some(f)) => Prompt::Messages(read_messages(f)?),
                (None, None) => return Err("give --text TEXT or --messages FILE.json".into()),
            };
            let (engine, adapter) = engine_with_model(&a.model, quant, a.json)?;
            let request = Request::Score(ScoreRequest {
                prompt,
                adapter,
                chat_template: None,
            });
            let s = match run_job(&engine, request, a.json, |_| {})? {
                JobOutput::Scored(s) => s,
                other => return Err(unexpected(other)),
            };
            if a.json {
                print_json(&serde_json::to_value(&s)?);
            } else {
                println!(
                    "tokens: {}  mean NLL: {:.4}  perplexity: {:.2}",
                    s.token_ids.len(),
                    s.mean_nll,
                    s.mean_nll.exp()
                );
                for (i, lp) in s.logprobs.iter().enumerate() {
                    println!("{:>6} {:>10.4}", s.token_ids[i + 1], lp);
                }
            }
            Ok(())
        }
        Cmd::Bench(BenchCmd::Generate {
            model,
            tokens,
            prompt_tokens,
            repeats,
            json,
        }) => bench_generate(&model, quant, tokens, prompt_tokens, repeats, json),
        Cmd::Bench(BenchCmd::Train { steps, json }) => {
            let c = run_config.ok_or_else(|| Failure {
                code: 2,
                message: "bench train needs --config FILE (the run to measure)".into(),
            })?;
            let b = crate::train::bench::bench(&c, steps)?;
            if json {
                print_json(&serde_json::to_value(&b)?);
                Ok(())
            } else {
                println!(
                    "{:.0} tokens/s, {:.2} s/step over {} steps, peak memory {:.0} MiB ({}, gradient checkpointing {})",
                    b.tokens_per_second,
                    b.step_seconds,
                    b.steps,
                    b.peak_memory_bytes as f64 / (1 << 20) as f64,
                    b.device,
                    if b.gradient_checkpointing { "on" } else { "off" }
                );
                Ok(())
            }
        }
        Cmd::Train(a) => training::train(a, config),
        Cmd::Runs { json } => training::runs(json, config),
        Cmd::Stop { run_dir } => training::control(&run_dir, crate::run::Command::Stop),
        Cmd::Pause { run_dir } => training::control(&run_dir, crate::run::Command::Pause),
        Cmd::Resume { run_dir } => training::control(&run_dir, crate::run::Command::Resume),
        Cmd::Save { run_dir } => training::control(&run_dir, crate::run::Command::Save),
        Cmd::Export {
            model,
            adapter,
            merged,
            gguf,
            gguf_type,
            modelfile,
            json,
        } => export(
            config,
            model,
            adapter,
            merged.ok_or(gguf.map(|g| (g, gguf_type, modelfile))),
            json,
        ),
    }
}

fn template(a: TemplateArgs) -> Result<(), Failure> {
    let source = crate::source::ModelSource::parse(&a.model)?;
    let tok = crate::source::load_tokenizer(&source, &mut |_, _, _| {})?;
    let t = tok
        .chat_template_with(a.chat_template.as_deref())?
        .ok_or_else(|| {
            format!(
                "{}: the model has no chat template; pass --chat-template FILE or a built-in name",
                a.model
            )
        })?;
    let messages = read_messages(&a.messages)?;
    let r = t.render(&messages, a.add_generation_prompt)?;
    let ids = tok.encode(&r.text, false)?;
    if a.json {
        print_json(&serde_json::json!({
            "text": r.text,
            "input_ids": ids,
            "assistant_spans": r.assistant_spans.iter().map(|&(s, e)| [s, e]).collect::<Vec<_>>(),
        }));
    } else {
        println!("{}", r.text);
        eprintln!("({} tokens)", ids.len());
    }
    Ok(())
}

fn generate(
    a: GenerateArgs,
    quant: Option<crate::config::QuantizationConfig>,
) -> Result<(), Failure> {
    let prompt = prompt_of(&a.input)?;
    let (engine, adapter) = engine_with_model(&a.model, quant, a.json)?;
    let params = SamplingParams {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        repetition_penalty: a.repetition_penalty,
        seed: a.seed,
        stop_strings: a.stop.clone(),
        no_cache: a.no_cache,
        ignore_eos: false,
    };
    let request = Request::Generate(GenerateRequest {
        prompts: vec![prompt],
        params,
        adapter,
        chat_template: None,
    });
    let mut stdout = std::io::stdout();
    let out = run_job(&engine, request, a.json, |text| {
        if !a.json {
            let _ = write!(stdout, "{text}");
            let _ = stdout.flush();
        }
    })?;
    let JobOutput::Generated { results, stats } = out else {
        return Err(unexpected(out));
    };
    let r = results
        .into_iter()
        .next()
        .ok_or("no generation came back")?;
    if a.json {
        print_json(&serde_json::json!({
            "text": r.text,
            "token_ids": r.token_ids,
            "tokens_per_second": stats.tokens_per_second(),
            "finish_reason": r.finish,
        }));
    } else {
        println!();
        eprintln!(
            "({} new tokens, {:.1} tokens/s, prompt {} tokens at {:.1} tokens/s, finished: {:?})",
            r.token_ids.len(),
            stats.tokens_per_second(),
            stats.prompt_tokens,
            stats.prompt_tokens_per_second(),
            r.finish
        );
    }
    Ok(())
}

fn bench_generate(
    m: &ModelArgs,
    quant: Option<crate::config::QuantizationConfig>,
    tokens: usize,
    prompt_tokens: usize,
    repeats: usize,
    json: bool,
) -> Result<(), Failure> {
    let (engine, adapter) = engine_with_model(m, quant, json)?;
    // A fixed prompt of the asked length; bench/transformers_generate.py uses the same ids.
    let prompt: Vec<u32> = (0..prompt_tokens as u32)
        .map(|i| 1000 + (i * 37) % 5000)
        .collect();
    let run = |max_new_tokens: usize| -> Result<crate::generate::GenerationStats, Failure> {
        let request = Request::Generate(GenerateRequest {
            prompts: vec![Prompt::Ids(prompt.clone())],
            params: SamplingParams {
                max_new_tokens,
                ignore_eos: true,
                ..SamplingParams::default()
            },
            adapter: adapter.clone(),
            chat_template: None,
        });
        match run_job(&engine, request, true, |_| {})? {
            JobOutput::Generated { stats, .. } => Ok(stats),
            other => Err(unexpected(other)),
        }
    };
    let _ = run(4)?; // warm-up
                     // Best of `repeats`: the least disturbed run is the closest to the machine's speed.
    let mut best = run(tokens)?;
    for _ in 1..repeats {
        let s = run(tokens)?;
        best.prompt_seconds = best.prompt_seconds.min(s.prompt_seconds);
        best.decode_seconds = best.decode_seconds.min(s.decode_seconds);
    }
    let stats = best;
    let out = serde_json::json!({
        "prompt_tokens": stats.prompt_tokens,
        "new_tokens": stats.new_tokens,
        "prompt_tokens_per_second": stats.prompt_tokens_per_second(),
        "tokens_per_second": stats.tokens_per_second(),
        "threads": tch::get_num_threads(),
    });
    if json {
        print_json(&out);
    } else {
        println!(
            "prompt: {} tokens at {:.1} tokens/s; generation: {} tokens at {:.1} tokens/s",
            stats.prompt_tokens,
            stats.prompt_tokens_per_second(),
            stats.new_tokens,
            stats.tokens_per_second()
        );
    }
    Ok(())
}

fn inspect(config: &Path, batches: usize, strict: bool, json: bool) -> Result<(), Failure> {
    let c = load_config(config)?;
    let data_cfg = c.data.as_ref().ok_or_else(|| {
        format!(
            "{}: no [data] section: nothing to inspect",
            config.display()
        )
    })?;
    let source = crate::source::ModelSource::parse(&c.model.source)?;
    let tok = crate::source::load_tokenizer(&source, &mut |_, _, _| {})?;
    let dataset = crate::data::load_dataset(data_cfg, &mut |_, _, _| {})?;
    let p = crate::collate::Preparer::new(&c, &tok)?;
    let (rows, report) = p.prepare(&dataset.train)?;
    if strict && (report.truncated > 0 || report.dropped_no_labels > 0) {
        return Err(format!(
            "--strict: {} examples truncated and {} with no trained token (raise [training] max_length)",
            report.truncated, report.dropped_no_labels
        )
        .into());
    }
    let batch_size = p.opts.batch_size.max(1);
    for chunk in rows.chunks(batch_size).take(batches) {
        let b = p.collate(chunk);
        if json {
            println!("{}", serde_json::to_string(&b)?);
        } else {
            crate::collate::view::print_batch(&b, &tok, p.pad_id);
        }
    }
    if !json {
        crate::collate::view::print_report(&report, &dataset);
    }
    Ok(())
}

/// `ftui export`: prepares the merged model, writes the folder or the GGUF (and
/// Modelfile), with a progress bar on stderr; `--json` prints what was written.
fn export(
    config: Option<&Path>,
    model: Option<String>,
    adapter: Option<PathBuf>,
    target: Result<PathBuf, Option<(PathBuf, String, Option<PathBuf>)>>,
    json: bool,
) -> Result<(), Failure> {
    use crate::export::{merged, prepare, ExportSource, Progress};
    let started = std::time::Instant::now();
    let config = config.map(load_config).transpose()?;
    let model = model
        .or_else(|| config.as_ref().map(|c| c.model.source.clone()))
        .unwrap_or_else(|| crate::paths::DEFAULT_MODEL_SOURCE.to_string());
    let mut bar = |p: &Progress| {
        if json || p.total == 0 {
            return true;
        }
        let filled = (30 * p.done / p.total.max(1)) as usize;
        eprint!(
            "\r[{}{}] {}/{} {:<60.60}",
            "#".repeat(filled),
            ".".repeat(30 - filled.min(30)),
            p.done,
            p.total,
            p.what
        );
        if p.done >= p.total {
            eprintln!();
        }
        true
    };
    let what = ExportSource {
        model,
        adapter,
        config,
    };
    let prepared = prepare(&what, &mut bar)?;
    let out = match target {
        Ok(dir) => {
            let r = merged::write_merged(&prepared, &dir, merged::DEFAULT_SHARD_BYTES, &mut bar)?;
            serde_json::json!({
                "format": "merged",
                "path": dir,
                "files": r.files,
                "tensors": r.tensors,
                "weight_bytes": r.weight_bytes,
                "shards": r.shards,
                "dtype": r.dtype,
            })
        }
        Err(None) => return Err("give --merged DIR or --gguf FILE".into()),
        Err(Some((file, ty, modelfile))) => {
            let ty: crate::export::gguf::FileType = ty.parse().map_err(|e: String| Failure {
                code: 2,
                message: e,
            })?;
            let text = modelfile
                .as_ref()
                .map(|m| crate::export::modelfile::for_gguf(&prepared, m, &file))
                .transpose()?;
            let r = crate::export::gguf::write_gguf(&prepared, &file, ty, &mut bar)?;
            if let (Some(path), Some(text)) = (&modelfile, &text) {
                crate::export::modelfile::write(path, text)?;
            }
            for f in &r.fallbacks {
                if !json {
                    eprintln!("kept at another type: {f}");
                }
            }
            serde_json::json!({
                "format": "gguf",
                "path": file,
                "type": r.file_type.to_string(),
                "tensors": r.tensors,
                "bytes": r.bytes,
                "fallbacks": r.fallbacks,
                "modelfile": modelfile,
            })
        }
    };
    let mut out = out;
    out["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    out["end_of_turn"] = serde_json::json!(prepared.turns.end_of_turn.as_ref().map(|t| &t.text));
    if json {
        print_json(&out);
    } else {
        eprintln!(
            "exported {} to {} in {:.1}s",
            prepared.source_name,
            out["path"].as_str().unwrap_or_default(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
