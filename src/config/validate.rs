//! Locating config errors (line and key) and the checks serde cannot express.

use super::{InitLoraWeights, RunConfig, TargetModules};
use std::ops::Range;

use super::line_at;

/// The `[section]` header in force at a byte offset.
fn section_at(text: &str, offset: usize) -> Option<String> {
    text[..offset.min(text.len())]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
}

/// Turns a serde/toml error into (line, key). The key is taken from the message
/// (unknown or missing fields name it) or from the `key =` text on the error's line.
pub(super) fn locate_serde_error(
    text: &str,
    span: Option<Range<usize>>,
    message: &str,
) -> (usize, String) {
    let offset = span.map(|s| s.start).unwrap_or(0);
    let line = line_at(text, offset);
    let section = section_at(text, offset);
    let named = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"));
    let key = match named {
        Some(k) => k.to_string(),
        None => text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .unwrap_or_default(),
    };
    let key = match (section, key.is_empty()) {
        (Some(s), false) if !message.starts_with("unknown field") || s != key => {
            format!("[{s}] {key}")
        }
        (Some(s), true) => format!("[{s}]"),
        (None, false) => key,
        _ => "config".to_string(),
    };
    (line, key)
}

/// toml's messages end in a period and sometimes list alternatives; keep one line.
pub(super) fn tidy_message(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// The 1-based line on which `key` is set inside `[section]`, or the section
/// header's line, or 1.
pub(super) fn line_of_key(text: &str, section: &str, key: &str) -> usize {
    let mut current = String::new();
    let mut header_line = 1;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.starts_with('[') {
            current = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            if current == section {
                header_line = i + 1;
            }
            continue;
        }
        if current == section {
            if let Some((k, _)) = l.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return i + 1;
                }
            }
        }
    }
    header_line
}

type Problem = (&'static str, &'static str, String);

fn ensure(ok: bool, section: &'static str, key: &'static str, msg: String) -> Result<(), Problem> {
    if ok {
        Ok(())
    } else {
        Err((section, key, msg))
    }
}

/// Value checks that types alone do not catch. Each failure names its key.
pub(super) fn check(c: &RunConfig) -> Result<(), Problem> {
    let m = &c.model;
    ensure(
        !m.source.trim().is_empty(),
        "model",
        "source",
        "must name a folder, a .gguf file, a hub repo id or `default`".into(),
    )?;
    let device_ok = m.device == "auto"
        || m.device == "cpu"
        || m.device == "cuda"
        || m.device
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok());
    ensure(
        device_ok,
        "model",
        "device",
        format!("`{}` is not one of auto, cpu, cuda, cuda:N", m.device),
    )?;
    if let Some(q) = &c.quantization {
        ensure(
            !(q.load_in_4bit && q.load_in_8bit),
            "quantization",
            "load_in_8bit",
            "load_in_4bit and load_in_8bit cannot both be true".into(),
        )?;
        ensure(
            q.bnb_4bit_compute_dtype != super::DType::Auto,
            "quantization",
            "bnb_4bit_compute_dtype",
            "must be float32, bfloat16 or float16".into(),
        )?;
    }
    if let Some(l) = &c.lora {
        ensure(
            l.r > 0,
            "lora",
            "r",
            format!("must be a positive rank, got {}", l.r),
        )?;
        ensure(
            l.lora_alpha > 0.0,
            "lora",
            "lora_alpha",
            "must be positive".into(),
        )?;
        ensure(
            (0.0..1.0).contains(&l.lora_dropout),
            "lora",
            "lora_dropout",
            format!("must be in [0, 1), got {}", l.lora_dropout),
        )?;
        if let Some(TargetModules::Names(names)) = &l.target_modules {
            ensure(
                !names.is_empty(),
                "lora",
                "target_modules",
                "an empty list targets nothing; name modules or use \"all-linear\"".into(),
            )?;
        }
        if let InitLoraWeights::Method(name) = &l.init_lora_weights {
            ensure(
                name == "gaussian",
                "lora",
                "init_lora_weights",
                format!("`{name}` is not supported: use true, false or \"gaussian\""),
            )?;
        }
    }
    if let Some(d) = &c.data {
        ensure(
            !d.source.trim().is_empty(),
            "data",
            "source",
            "must name a dataset file or hub dataset id".into(),
        )?;
        ensure(
            (0.0..1.0).contains(&d.eval_split_ratio),
            "data",
            "eval_split_ratio",
            format!("must be in [0, 1), got {}", d.eval_split_ratio),
        )?;
    }
    let t = &c.training;
    ensure(
        t.max_length >= 2,
        "training",
        "max_length",
        "must be at least 2 tokens".into(),
    )?;
    ensure(
        t.per_device_train_batch_size >= 1,
        "training",
        "per_device_train_batch_size",
        "must be at least 1".into(),
    )?;
    ensure(
        t.gradient_accumulation_steps >= 1,
        "training",
        "gradient_accumulation_steps",
        "must be at least 1".into(),
    )?;
    ensure(
        t.learning_rate > 0.0 && t.learning_rate.is_finite(),
        "training",
        "learning_rate",
        format!("must be a positive number, got {}", t.learning_rate),
    )?;
    ensure(
        (0.0..=1.0).contains(&t.warmup_ratio),
        "training",
        "warmup_ratio",
        format!("must be in [0, 1], got {}", t.warmup_ratio),
    )?;
    ensure(
        t.warmup_steps >= 0.0 && (t.warmup_steps < 1.0 || t.warmup_steps.fract() == 0.0),
        "training",
        "warmup_steps",
        format!(
            "must be a whole number of steps, or a fraction below 1 of the run, got {}",
            t.warmup_steps
        ),
    )?;
    ensure(
        t.weight_decay >= 0.0,
        "training",
        "weight_decay",
        "must not be negative".into(),
    )?;
    ensure(
        t.num_train_epochs > 0.0 || t.max_steps > 0,
        "training",
        "num_train_epochs",
        "must be positive unless max_steps is set".into(),
    )?;
    ensure(
        !(t.bf16 == Some(true) && t.fp16),
        "training",
        "fp16",
        "bf16 and fp16 cannot both be true".into(),
    )?;
    ensure(
        t.pad_to_multiple_of != Some(0),
        "training",
        "pad_to_multiple_of",
        "must be at least 1".into(),
    )?;
    ensure(
        !(t.assistant_only_loss && t.completion_only_loss == Some(true)),
        "training",
        "assistant_only_loss",
        "choose one of assistant_only_loss and completion_only_loss".into(),
    )?;
    ensure(
        t.logging_steps >= 1,
        "training",
        "logging_steps",
        "must be at least 1".into(),
    )?;
    let g = &c.generation;
    ensure(
        g.temperature >= 0.0,
        "generation",
        "temperature",
        "must not be negative (0 = greedy)".into(),
    )?;
    ensure(
        g.top_p > 0.0 && g.top_p <= 1.0,
        "generation",
        "top_p",
        format!("must be in (0, 1], got {}", g.top_p),
    )?;
    ensure(
        g.repetition_penalty > 0.0,
        "generation",
        "repetition_penalty",
        "must be positive (1 = off)".into(),
    )?;
    ensure(
        g.max_new_tokens >= 1,
        "generation",
        "max_new_tokens",
        "must be at least 1".into(),
    )?;
    Ok(())
}
