//! From a run's config to a trained adapter: the checks of the book's
//! troubleshooting chapter before the first step, the model and its adapter
//! (new, or `[model] adapter` continued), the prepared data, the loop, and the
//! files a finished run leaves (adapter, tokenizer with the chat template the
//! run trained with, a model card).

use super::{Batches, Control, Job, Observer, ShuffledRows, Summary, TrainError};
use crate::collate::{Preparer, Report};
use crate::config::{DType, RunConfig};
use crate::lora::{self, AdapterSpec};
use crate::model::LoadOptions;
use crate::source::{load_model, LoadedModel, ModelSource};
use std::path::{Path, PathBuf};

/// The adapter name a run trains under.
pub const ADAPTER: &str = "default";

/// A problem found before the first step, with what to change.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// `[section] key` the problem is about.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn problem(key: &str, message: String) -> Problem {
    Problem {
        key: key.into(),
        message,
    }
}

/// Checks that need only the config.
pub fn config_problems(c: &RunConfig) -> Vec<Problem> {
    let mut p = Vec::new();
    let t = &c.training;
    let quantized = c
        .quantization
        .as_ref()
        .is_some_and(|q| q.load_in_4bit || q.load_in_8bit);
    if c.lora.is_none() && c.model.adapter.is_none() {
        p.push(problem(
            "[lora]",
            if quantized {
                "a 4/8-bit base cannot be trained itself: add a [lora] section (QLoRA trains an adapter on top)".into()
            } else {
                "ftui trains LoRA adapters: add a [lora] section (or [model] adapter to continue one)".into()
            },
        ));
    }
    if c.data.is_none() {
        p.push(problem(
            "[data]",
            "nothing to train on: add a [data] section with a source".into(),
        ));
    }
    if t.bf16 == Some(true) && t.fp16 {
        p.push(problem(
            "[training] bf16",
            "bf16 and fp16 are both on: choose one".into(),
        ));
    }
    p
}

/// Checks that need the loaded model.
pub fn model_problems(c: &RunConfig, model: &crate::model::CausalLm) -> Vec<Problem> {
    let mut p = Vec::new();
    let t = &c.training;
    let device = model.device;
    if t.fp16 && !device.is_cuda() {
        p.push(problem(
            "[training] fp16",
            "fp16 training needs a CUDA GPU; on this device set fp16 = false (float32)".into(),
        ));
    }
    if t.bf16 == Some(true) && !crate::device::bf16_supported(device) {
        p.push(problem(
            "[training] bf16",
            format!(
                "{} cannot compute in bfloat16: set bf16 = false",
                crate::device::device_name(device)
            ),
        ));
    }
    let context = model.config.max_position_embeddings;
    if t.max_length as i64 > context {
        p.push(problem(
            "[training] max_length",
            format!(
                "{} is beyond the model's context of {context} tokens: lower it",
                t.max_length
            ),
        ));
    }
    if let Some(lc) = &c.lora {
        let spec = AdapterSpec::from_config(lc);
        if c.model.adapter.is_none()
            && !model
                .linears()
                .iter()
                .any(|(n, _)| lora::is_target(n, &spec.target_modules))
        {
            let mut kinds: Vec<String> = model
                .linears()
                .iter()
                .filter_map(|(n, _)| n.rsplit('.').next().map(String::from))
                .collect();
            kinds.sort();
            kinds.dedup();
            p.push(problem(
                "[lora] target_modules",
                format!(
                    "{} matches no linear layer; this model has {}",
                    match &spec.target_modules {
                        crate::config::TargetModules::Names(n) => format!("[{}]", n.join(", ")),
                        crate::config::TargetModules::Pattern(p) => format!("\"{p}\""),
                    },
                    kinds.join(", ")
                ),
            ));
        }
    }
    p
}

/// Checks of the prepared data.
pub fn data_problems(report: &Report) -> Vec<Problem> {
    let mut p = Vec::new();
    if report.rows == 0 {
        p.push(problem(
            "[training] max_length",
            format!(
                "nothing to train on: {} of {} examples had no trained token left after truncation; raise max_length or check the masking (completion_only_loss, assistant_only_loss)",
                report.dropped_no_labels, report.examples
            ),
        ));
    }
    p
}

/// Warnings that do not stop a run (PAD == EOS, truncation, ...).
pub fn data_warnings(report: &Report) -> Vec<String> {
    report.warnings.clone()
}

fn refuse(problems: Vec<Problem>) -> Result<(), TrainError> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(TrainError::Checks(problems))
}

/// Loads the base and puts the adapter to train on it: `[model] adapter`
/// continued (checked against `[lora]`), or a new one from `[lora]`.
pub fn load(c: &RunConfig) -> Result<(LoadedModel, AdapterSpec), TrainError> {
    refuse(config_problems(c))?;
    let device = crate::device::parse_device(&c.model.device)
        .map_err(|e| TrainError::Data(format!("[model] device: {e}")))?;
    let dtype = match (c.training.bf16, c.training.fp16) {
        (_, true) => DType::Float16,
        (Some(true), _) => DType::Bfloat16,
        _ => c.model.dtype,
    };
    let opts = LoadOptions {
        dtype,
        device,
        attn: c.model.attn_implementation,
        quantization: c.quantization.clone(),
    };
    let source =
        ModelSource::parse(&c.model.source).map_err(|e| TrainError::Data(e.to_string()))?;
    let mut m = load_model(&source, &opts, &mut |_, _, _| {})
        .map_err(|e| TrainError::Data(e.to_string()))?;
    refuse(model_problems(c, &m.model))?;
    let spec = match &c.model.adapter {
        Some(dir) => {
            let spec = lora::load_adapter(&mut m.model, Path::new(dir), ADAPTER)?;
            if let Some(lc) = &c.lora {
                if lc.r != spec.r {
                    refuse(vec![problem(
                        "[model] adapter",
                        format!(
                            "{dir} has r = {}, [lora] says r = {}: remove [lora] r or start a new adapter",
                            spec.r, lc.r
                        ),
                    )])?;
                }
            }
            lora::set_trainable(&m.model, ADAPTER, true)?;
            spec
        }
        None => {
            let lc = c
                .lora
                .as_ref()
                .ok_or_else(|| TrainError::Data("[lora] is missing".into()))?;
            lora::add_adapter(&mut m.model, ADAPTER, lc, c.training.seed)?;
            AdapterSpec::from_config(lc)
        }
    };
    if c.quantization
        .as_ref()
        .is_some_and(|q| q.load_in_4bit || q.load_in_8bit)
    {
        // peft's prepare_model_for_kbit_training: the dense rest in float32.
        let mut tensors = Vec::new();
        m.model.visit_mut(&mut |_, module| match module {
            crate::model::Module::Norm(t) | crate::model::Module::Embedding(t) => tensors.push(t),
            crate::model::Module::Linear(_) => {}
        });
        crate::quant::prepare_for_kbit_training(tensors)?;
    }
    Ok((m, spec))
}

/// The run's dataset, its preparer and the prepared training rows with their report.
pub fn prepare_data<'t>(
    c: &RunConfig,
    tokenizer: &'t crate::tokenizer::TextTokenizer,
) -> Result<
    (
        crate::data::Dataset,
        Preparer<'t>,
        Vec<crate::collate::Row>,
        Report,
    ),
    TrainError,
> {
    let data_cfg = c
        .data
        .as_ref()
        .ok_or_else(|| TrainError::Data("[data] is missing".into()))?;
    let dataset = crate::data::load_dataset(data_cfg, &mut |_, _, _| {})
        .map_err(|e| TrainError::Data(e.to_string()))?;
    let preparer = Preparer::new(c, tokenizer).map_err(|e| TrainError::Data(e.to_string()))?;
    let (rows, report) = preparer
        .prepare(&dataset.train)
        .map_err(|e| TrainError::Data(e.to_string()))?;
    Ok((dataset, preparer, rows, report))
}

/// What a run would do, for `--dry-run` and the start of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub examples: usize,
    pub eval_examples: usize,
    pub rows: usize,
    pub steps: usize,
    pub tokens_per_epoch: usize,
    pub trained_tokens_per_epoch: usize,
    pub trainable_parameters: i64,
    pub total_parameters: i64,
    /// Bytes: model weights, the adapter with its gradients and AdamW moments.
    pub memory_estimate_bytes: i64,
    pub warnings: Vec<String>,
}

/// Runs a whole training run: checks, model, data, the loop, the final files.
/// `plan_only` stops after the checks and the plan.
pub fn run(
    c: &RunConfig,
    output_dir: &Path,
    resume: Option<PathBuf>,
    plan_only: bool,
    observer: &mut dyn Observer,
    control: &Control,
) -> Result<(Plan, Option<Summary>), TrainError> {
    let (m, spec) = load(c)?;
    let (dataset, preparer, rows, report) = prepare_data(c, &m.tokenizer)?;
    refuse(data_problems(&report))?;
    let eval_rows = if dataset.eval.is_empty() {
        None
    } else {
        Some(
            preparer
                .prepare(&dataset.eval)
                .map_err(|e| TrainError::Data(e.to_string()))?
                .0,
        )
    };
    let (trainable, total) = lora::parameter_counts(&m.model, ADAPTER);
    let micro = rows
        .len()
        .div_ceil(c.training.per_device_train_batch_size.max(1));
    let plan = Plan {
        examples: dataset.train.len(),
        eval_examples: dataset.eval.len(),
        rows: rows.len(),
        steps: super::total_steps(&c.training, micro),
        tokens_per_epoch: rows.iter().map(|r| r.input_ids.len()).sum(),
        trained_tokens_per_epoch: report.trained_tokens.iter().sum(),
        trainable_parameters: trainable,
        total_parameters: total,
        memory_estimate_bytes: m.model.memory_footprint() + trainable * 4 * 4,
        warnings: data_warnings(&report),
    };
    if plan_only {
        return Ok((plan, None));
    }
    observer.plan(&plan);
    for w in &plan.warnings {
        observer.warning(w);
    }
    let quantized = c
        .quantization
        .as_ref()
        .is_some_and(|q| q.load_in_4bit || q.load_in_8bit);
    if quantized && !c.training.gradient_checkpointing {
        observer.warning("a 4/8-bit base without gradient_checkpointing keeps every block's dequantized weights for backward: turn gradient_checkpointing on to hold only one block's at a time");
    }
    let device = m.model.device;
    let train_data = ShuffledRows {
        rows,
        preparer: &preparer,
        seed: c.training.seed,
        shuffle: true,
        device,
    };
    let eval_data = eval_rows.map(|rows| ShuffledRows {
        rows,
        preparer: &preparer,
        seed: c.training.seed,
        shuffle: false,
        device,
    });
    let resume = resume
        .as_deref()
        .map(|r| super::checkpoint::resolve(&r.to_string_lossy(), output_dir))
        .transpose()?;
    let job = Job {
        model: &m.model,
        adapter: ADAPTER,
        spec: &spec,
        base_model: &c.model.source,
        config: &c.training,
        output_dir: Some(output_dir),
        resume: resume.as_deref(),
    };
    let summary = super::train(
        &job,
        &train_data,
        eval_data.as_ref().map(|e| e as &dyn Batches),
        observer,
        control,
    )?;
    write_run_files(c, &m, output_dir, &summary)?;
    Ok((plan, Some(summary)))
}

/// The tokenizer with the chat template the run trained with, and a model card.
fn write_run_files(
    c: &RunConfig,
    m: &LoadedModel,
    dir: &Path,
    summary: &Summary,
) -> Result<(), TrainError> {
    let err = |e: &dyn std::fmt::Display| TrainError::Checkpoint(format!("{}: {e}", dir.display()));
    let tokenizer_json = m.tokenizer.inner.to_string(true).map_err(|e| err(&e))?;
    crate::fsutil::write_atomic(&dir.join("tokenizer.json"), tokenizer_json.as_bytes())
        .map_err(|e| err(&e))?;
    let template = match &c.template.chat_template {
        Some(spec) => Some(crate::template::resolve_source(spec).map_err(|e| err(&e))?),
        None => m.tokenizer.chat_template.clone(),
    };
    let specials = &m.tokenizer.specials;
    let name = |t: &Option<crate::tokenizer::SpecialToken>| t.as_ref().map(|t| t.text.clone());
    let config = serde_json::json!({
        "bos_token": name(&specials.bos),
        "eos_token": name(&specials.eos),
        "pad_token": crate::collate::pad_id(c, &m.tokenizer).ok().map(|(_, text)| text).or_else(|| name(&specials.pad)),
        "unk_token": name(&specials.unk),
        "chat_template": template,
        "padding_side": "right",
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| err(&e))?;
    crate::fsutil::write_atomic(&dir.join("tokenizer_config.json"), text.as_bytes())
        .map_err(|e| err(&e))?;
    if let Some(t) = &template {
        crate::fsutil::write_atomic(&dir.join("chat_template.jinja"), t.as_bytes())
            .map_err(|e| err(&e))?;
    }
    let t = &c.training;
    let lora = c.lora.as_ref();
    let card = format!(
        "---\nbase_model: {base}\nlibrary_name: peft\ntags: [lora, sft, ftui]\n---\n\n# LoRA adapter for {base}\n\nTrained with ftui on `{data}`.\n\n| setting | value |\n|---|---|\n| r / lora_alpha / dropout | {r} / {alpha} / {dropout} |\n| learning_rate / schedule | {lr} / {sched:?} |\n| batch x accumulation | {bs} x {ga} |\n| max_length | {ml} |\n| steps | {steps} |\n| final train loss | {loss:.4} |\n\nLoad it with `PeftModel.from_pretrained(base, \"{dir}\")`, or `ftui generate --model {base} --adapter {dir}`.\n",
        base = c.model.source,
        data = c.data.as_ref().map_or("", |d| d.source.as_str()),
        r = lora.map_or(0, |l| l.r),
        alpha = lora.map_or(0.0, |l| l.lora_alpha),
        dropout = lora.map_or(0.0, |l| l.lora_dropout),
        lr = t.learning_rate,
        sched = t.lr_scheduler_type,
        bs = t.per_device_train_batch_size,
        ga = t.gradient_accumulation_steps,
        ml = t.max_length,
        steps = summary.global_step,
        loss = summary.train_loss,
        dir = dir.display(),
    );
    crate::fsutil::write_atomic(&dir.join("README.md"), card.as_bytes()).map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> RunConfig {
        toml::from_str(&format!("[model]\nsource = \"default\"\n{extra}")).expect("config")
    }

    fn keys(p: &[Problem]) -> Vec<&str> {
        p.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn config_checks_name_what_to_change() {
        let p = config_problems(&config("[data]\nsource = \"x.jsonl\"\n"));
        assert_eq!(keys(&p), ["[lora]"]);
        assert!(p[0].message.contains("add a [lora] section"), "{}", p[0]);
        let p = config_problems(&config(
            "[quantization]\nload_in_4bit = true\n[data]\nsource = \"x.jsonl\"\n",
        ));
        assert!(
            p[0].message.contains("4/8-bit base cannot be trained"),
            "{}",
            p[0]
        );
        let p = config_problems(&config("[lora]\nr = 4\n"));
        assert_eq!(keys(&p), ["[data]"]);
        let p = config_problems(&config(
            "[lora]\n[data]\nsource = \"x\"\n[training]\nbf16 = true\nfp16 = true\n",
        ));
        assert_eq!(keys(&p), ["[training] bf16"]);
        assert!(config_problems(&config("[lora]\n[data]\nsource = \"x\"\n")).is_empty());
    }

    #[test]
    fn model_checks_name_what_to_change() {
        let m = crate::model::tiny::llama(1);
        let c = config(
            "[lora]\ntarget_modules = [\"query\"]\n[training]\nmax_length = 100000\nfp16 = true\n",
        );
        let p = model_problems(&c, &m);
        assert_eq!(
            keys(&p),
            [
                "[training] fp16",
                "[training] max_length",
                "[lora] target_modules"
            ]
        );
        assert!(p[0].message.contains("CUDA"), "{}", p[0]);
        assert!(p[1].message.contains("context of 4096"), "{}", p[1]);
        assert!(
            p[2].message.starts_with(
                "[query] matches no linear layer; this model has down_proj, gate_proj, k_proj"
            ),
            "{}",
            p[2]
        );
        let ok = config("[lora]\ntarget_modules = [\"q_proj\"]\n");
        assert!(model_problems(&ok, &m).is_empty());
    }

    #[test]
    fn nothing_left_to_train_is_refused() {
        let report = Report {
            examples: 5,
            dropped_no_labels: 5,
            rows: 0,
            ..Default::default()
        };
        let p = data_problems(&report);
        assert_eq!(keys(&p), ["[training] max_length"]);
        assert!(p[0].message.contains("5 of 5 examples"), "{}", p[0]);
    }
}
