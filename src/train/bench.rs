//! `ftui bench train`: the speed and memory of training steps on a run's own
//! config, model and data (the first step, which warms caches up, is not
//! counted). Tokens are trl's `num_tokens`: non-padding tokens processed.

use super::setup::{self, ADAPTER};
use super::{Control, Job, Observer, ShuffledRows, TrainError};
use crate::config::RunConfig;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    pub tokens_per_second: f64,
    pub step_seconds: f64,
    /// Peak resident memory while training (CPU), in bytes.
    pub peak_memory_bytes: i64,
    pub device: String,
    pub steps: usize,
    pub gradient_checkpointing: bool,
}

/// Step end times and the running token count they had reached.
struct Clock {
    ends: Vec<Instant>,
    tokens: Vec<f64>,
}

impl Observer for Clock {
    fn step(&mut self, _step: usize, _total: usize, _loss: f64) {
        self.ends.push(Instant::now());
    }
    fn log(&mut self, log: &super::TrainLog) {
        self.tokens.push(log.num_tokens);
    }
}

/// Trains `steps` measured steps (plus one warm-up step) without writing anything.
pub fn bench(c: &RunConfig, steps: usize) -> Result<TrainBench, TrainError> {
    let (m, spec) = setup::load(c)?;
    let (_, preparer, rows, _) = setup::prepare_data(c, &m.tokenizer)?;
    let data = ShuffledRows {
        rows,
        preparer: &preparer,
        seed: c.training.seed,
        shuffle: true,
        device: m.model.device,
    };
    let mut cfg = c.training.clone();
    cfg.max_steps = steps as i64 + 1;
    cfg.logging_steps = 1;
    cfg.save_steps = 0;
    cfg.eval_steps = None;
    let job = Job {
        model: &m.model,
        adapter: ADAPTER,
        spec: &spec,
        base_model: &c.model.source,
        config: &cfg,
        output_dir: None,
        resume: None,
    };
    let mut clock = Clock {
        ends: Vec::new(),
        tokens: Vec::new(),
    };
    crate::device::reset_peak_rss();
    super::train(&job, &data, None, &mut clock, &Control::default())?;
    let peak = crate::device::peak_rss_bytes().unwrap_or(0);
    let measured = clock.ends.len().saturating_sub(1).max(1);
    let (first, last) = match (clock.ends.first(), clock.ends.last()) {
        (Some(a), Some(b)) => (*a, *b),
        _ => return Err(TrainError::Data("no step ran".into())),
    };
    let seconds = (last - first).as_secs_f64().max(1e-9);
    let tokens =
        clock.tokens.last().copied().unwrap_or(0.0) - clock.tokens.first().copied().unwrap_or(0.0);
    Ok(TrainBench {
        tokens_per_second: tokens / seconds,
        step_seconds: seconds / measured as f64,
        peak_memory_bytes: peak,
        device: crate::device::device_name(m.model.device),
        steps: measured,
        gradient_checkpointing: cfg.gradient_checkpointing,
    })
}
