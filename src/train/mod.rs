//! Supervised fine-tuning of a LoRA adapter, as trl's `SFTTrainer` does it
//! (TRAINING-NOTES: the loss normalised over the accumulation window, torch's
//! AdamW, transformers' schedules, clipping, trl's logged metrics), on the
//! model's public stages.
//!
//! [`train`] knows no channels and no UI: it reports to an [`Observer`] and
//! obeys a [`Control`] (stop, pause, save now), so `ftui train`, the workbench
//! and the tests run the same loop.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod head;
pub mod optim;
pub mod scaler;
pub mod schedule;
pub mod setup;
pub mod step;

pub use data::{Batches, FixedBatches, ShuffledRows};
pub use step::MicroBatch;

use crate::config::TrainingConfig;
use crate::lora::{self, AdapterSpec};
use crate::model::CausalLm;
use checkpoint::{ResumeState, Snapshot, TrainerState};
use optim::Optimizer;
use schedule::Schedule;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use step::DropoutSeed;
use tch::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("libtorch: {}", crate::torch::torch_message(.0))]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Lora(#[from] lora::LoraError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("the loss became {loss} at step {step}; {advice}")]
    NonFinite {
        step: usize,
        loss: f64,
        advice: String,
    },
    #[error("{0}")]
    Data(String),
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Checks(Vec<setup::Problem>),
}

/// One `train` line of the metrics, named as the HF Trainer logs them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrainLog {
    pub step: usize,
    pub epoch: f64,
    pub loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub num_tokens: f64,
    pub mean_token_accuracy: f64,
    pub entropy: f64,
    pub tokens_per_second: f64,
}

/// One `eval` line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalLog {
    pub step: usize,
    pub eval_loss: f64,
    pub eval_mean_token_accuracy: f64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndStatus {
    Finished,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub status: EndStatus,
    pub global_step: usize,
    pub train_loss: f64,
    pub train_runtime: f64,
    /// The last checkpoint written, if any.
    pub checkpoint: Option<PathBuf>,
}

/// Where a run reports; every method has a do-nothing default.
pub trait Observer {
    /// Once the checks have passed and the data is prepared, before the first step.
    fn plan(&mut self, _plan: &setup::Plan) {}
    /// After every optimizer step.
    fn step(&mut self, _step: usize, _total: usize, _loss: f64) {}
    fn log(&mut self, _log: &TrainLog) {}
    fn eval(&mut self, _log: &EvalLog) {}
    fn checkpoint(&mut self, _step: usize, _path: &Path) {}
    fn warning(&mut self, _message: &str) {}
}

/// A run's controls, shared with whoever steers it; checked between steps.
#[derive(Debug, Default)]
pub struct Control {
    stop: AtomicBool,
    pause: AtomicBool,
    save: AtomicBool,
}

impl Control {
    /// Finish the current step, write a checkpoint, end `stopped`.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
    pub fn pause(&self) {
        self.pause.store(true, Ordering::SeqCst);
    }
    pub fn resume(&self) {
        self.pause.store(false, Ordering::SeqCst);
    }
    /// Write a checkpoint after the current step.
    pub fn save_now(&self) {
        self.save.store(true, Ordering::SeqCst);
    }
    pub fn is_paused(&self) -> bool {
        self.pause.load(Ordering::SeqCst)
    }
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    fn take_save(&self) -> bool {
        self.save.swap(false, Ordering::SeqCst)
    }
}

/// What to train and where to write.
pub struct Job<'a> {
    pub model: &'a CausalLm,
    /// The adapter to train (already added or loaded, trainable, active).
    pub adapter: &'a str,
    pub spec: &'a AdapterSpec,
    /// The base model's name, recorded in `adapter_config.json`.
    pub base_model: &'a str,
    pub config: &'a TrainingConfig,
    /// Checkpoints and the final adapter go here; `None` writes nothing.
    pub output_dir: Option<&'a Path>,
    /// A checkpoint folder to continue from.
    pub resume: Option<&'a Path>,
}

/// The number of optimizer steps a run takes, as the HF Trainer counts them.
pub fn total_steps(cfg: &TrainingConfig, micro_batches_per_epoch: usize) -> usize {
    let ga = cfg.gradient_accumulation_steps.max(1);
    let per_epoch = micro_batches_per_epoch.div_ceil(ga).max(1);
    if cfg.max_steps > 0 {
        cfg.max_steps as usize
    } else {
        (cfg.num_train_epochs * per_epoch as f64).ceil() as usize
    }
}

/// Running sums between two `train` log lines (device scalars until logged).
struct LogWindow {
    loss: Tensor,
    accuracy: Tensor,
    entropy: Tensor,
    micro_batches: usize,
    steps: usize,
    started: Instant,
    tokens: i64,
}

impl LogWindow {
    fn new(device: tch::Device) -> Result<Self, TrainError> {
        let zero = || Tensor::f_zeros([], (tch::Kind::Double, device));
        Ok(LogWindow {
            loss: zero()?,
            accuracy: zero()?,
            entropy: zero()?,
            micro_batches: 0,
            steps: 0,
            started: Instant::now(),
            tokens: 0,
        })
    }
}

/// Trains `job.adapter` on `data` (and evaluates on `eval`), reporting to
/// `observer` and obeying `control`.
pub fn train(
    job: &Job,
    data: &dyn Batches,
    eval: Option<&dyn Batches>,
    observer: &mut dyn Observer,
    control: &Control,
) -> Result<Summary, TrainError> {
    let cfg = job.config;
    let started = Instant::now();
    let bs = cfg.per_device_train_batch_size.max(1);
    let ga = cfg.gradient_accumulation_steps.max(1);
    let n = data.len();
    if n == 0 {
        return Err(TrainError::Data("no training examples".into()));
    }
    let micro_per_epoch = n.div_ceil(bs);
    let steps_per_epoch = micro_per_epoch.div_ceil(ga).max(1);
    let total = total_steps(cfg, micro_per_epoch);
    let schedule = Schedule {
        kind: cfg.lr_scheduler_type,
        base_lr: cfg.learning_rate,
        total,
        warmup: schedule::warmup_steps(total, cfg.warmup_steps, cfg.warmup_ratio),
    };
    let params = lora::parameters(job.model, job.adapter);
    let mut optimizer = Optimizer::new(cfg.optim, cfg.weight_decay, params)?;
    let mut state = TrainerState {
        global_step: 0,
        epoch: 0.0,
        max_steps: total,
        logging_steps: cfg.logging_steps,
        eval_steps: cfg.eval_steps,
        save_steps: cfg.save_steps,
        train_batch_size: bs,
        num_train_epochs: cfg.num_train_epochs,
        num_input_tokens_seen: 0,
        log_history: Vec::new(),
        ftui: ResumeState {
            optimizer_steps: 0,
            micro_split: 1,
            seed: cfg.seed,
            loss_total: 0.0,
            scaler: cfg.fp16.then(scaler::GradScaler::default),
        },
    };
    if let Some(dir) = job.resume {
        state = checkpoint::restore(dir, job.model, job.adapter, &mut optimizer)?;
        state.max_steps = total;
    }
    let device = job.model.device;
    let dropout = lora_dropout(job.model, job.adapter);
    let mut window = LogWindow::new(device)?;
    let mut order_cache: Option<(usize, Vec<usize>)> = None;
    let mut last_checkpoint = None;
    let snapshot_and_save = |state: &TrainerState,
                             optimizer: &Optimizer,
                             observer: &mut dyn Observer|
     -> Result<Option<PathBuf>, TrainError> {
        let Some(out) = job.output_dir else {
            return Ok(None);
        };
        let path = checkpoint::save(
            out,
            &Snapshot {
                model: job.model,
                adapter: job.adapter,
                spec: job.spec,
                base_model: job.base_model,
                optimizer,
                state,
            },
            cfg.save_total_limit,
        )?;
        observer.checkpoint(state.global_step, &path);
        Ok(Some(path))
    };
    let mut status = EndStatus::Finished;
    while state.global_step < total {
        while control.is_paused() && !control.should_stop() {
            std::thread::sleep(Duration::from_millis(100));
        }
        if control.should_stop() {
            status = EndStatus::Stopped;
            break;
        }
        let step = state.global_step;
        let epoch = step / steps_per_epoch;
        let k = step % steps_per_epoch;
        if order_cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
            order_cache = Some((epoch, data.order(epoch)));
        }
        let order = order_cache.as_ref().map_or(&[][..], |(_, o)| o.as_slice());
        let first_mb = k * ga;
        let last_mb = ((k + 1) * ga).min(micro_per_epoch);
        // The rows of each micro-batch of this optimizer step.
        let groups: Vec<&[usize]> = (first_mb..last_mb)
            .map(|m| &order[m * bs..((m + 1) * bs).min(n)])
            .collect();
        let (loss, tokens) = loop {
            match run_window(
                job,
                data,
                &groups,
                &mut optimizer,
                &mut window,
                &state,
                dropout,
            ) {
                Ok(done) => break done,
                Err(TrainError::Torch(e))
                    if cfg.auto_find_batch_size
                        && is_out_of_memory(&e.to_string())
                        && state.ftui.micro_split < bs =>
                {
                    optimizer.zero_grad();
                    state.ftui.micro_split *= 2;
                    observer.warning(&format!(
                        "out of memory at step {}: micro-batches now run in {} parts of about {} rows (the effective batch and the numbers stay the same)",
                        step + 1,
                        state.ftui.micro_split,
                        bs.div_ceil(state.ftui.micro_split)
                    ));
                }
                Err(e) => return Err(e),
            }
        };
        if !loss.is_finite() {
            return Err(TrainError::NonFinite {
                step: step + 1,
                loss,
                advice: format!(
                    "{}; lower learning_rate (now {}), keep max_grad_norm on, or train in float32",
                    last_checkpoint.as_ref().map_or_else(
                        || "no checkpoint was written".to_string(),
                        |p: &PathBuf| format!("the last good checkpoint is {}", p.display())
                    ),
                    cfg.learning_rate
                ),
            });
        }
        if let Some(scaler) = &state.ftui.scaler {
            scaler.unscale(&optimizer)?;
        }
        let grad_norm = optimizer.clip_grad_norm(cfg.max_grad_norm)?;
        // The schedule advances with the steps actually taken (a float16 step
        // skipped for an overflow does not count), as the Trainer's does.
        let lr = schedule.lr(optimizer.steps as usize);
        match &mut state.ftui.scaler {
            Some(scaler) => {
                let found_inf = !grad_norm.f_double_value(&[])?.is_finite();
                if !found_inf {
                    optimizer.step(lr)?;
                }
                scaler.update(found_inf);
            }
            None => optimizer.step(lr)?,
        }
        state.global_step += 1;
        state.ftui.optimizer_steps = optimizer.steps;
        state.ftui.loss_total += loss;
        state.num_input_tokens_seen += tokens;
        state.epoch = epoch as f64 + last_mb as f64 / micro_per_epoch as f64;
        window.steps += 1;
        window.tokens += tokens;
        observer.step(state.global_step, total, loss);
        let at = state.global_step;
        if at.is_multiple_of(cfg.logging_steps.max(1)) || at == total {
            let log = flush(
                &mut window,
                &state,
                lr,
                grad_norm.f_double_value(&[])?,
                device,
            )?;
            state
                .log_history
                .push(serde_json::to_value(&log).map_err(|e| TrainError::Data(e.to_string()))?);
            observer.log(&log);
        }
        if let (Some(every), Some(eval)) = (cfg.eval_steps, eval) {
            if every > 0 && at.is_multiple_of(every) && at != total {
                let log = evaluate(job.model, eval, bs, at)?;
                observer.eval(&log);
            }
        }
        let save_due = cfg.save_steps > 0 && at.is_multiple_of(cfg.save_steps) && at != total;
        if save_due || control.take_save() {
            last_checkpoint = snapshot_and_save(&state, &optimizer, observer)?;
        }
    }
    if status == EndStatus::Stopped {
        last_checkpoint = snapshot_and_save(&state, &optimizer, observer)?;
    } else if let Some(eval) = eval {
        let log = evaluate(job.model, eval, bs, state.global_step)?;
        observer.eval(&log);
    }
    if let Some(out) = job.output_dir {
        lora::save_adapter(job.model, job.adapter, job.spec, job.base_model, out)?;
    }
    Ok(Summary {
        status,
        global_step: state.global_step,
        train_loss: state.ftui.loss_total / state.global_step.max(1) as f64,
        train_runtime: started.elapsed().as_secs_f64(),
        checkpoint: last_checkpoint,
    })
}

/// Forward and backward of one optimizer step's micro-batches; returns the
/// step's loss (read back: one scalar per step) and its non-padding tokens.
fn run_window(
    job: &Job,
    data: &dyn Batches,
    groups: &[&[usize]],
    optimizer: &mut Optimizer,
    window: &mut LogWindow,
    state: &TrainerState,
    dropout: bool,
) -> Result<(f64, i64), TrainError> {
    let split = state.ftui.micro_split.max(1);
    // float16: the backward carries `loss * scale`.
    let loss_scale = state.ftui.scaler.map_or(1.0, |s| s.scale);
    let mut micro = Vec::new();
    for rows in groups {
        let part = rows.len().div_ceil(split).max(1);
        for chunk in rows.chunks(part) {
            micro.push(data.collate(chunk)?);
        }
    }
    let items: i64 = micro.iter().map(|m| m.items).sum();
    optimizer.zero_grad();
    let mut loss = Tensor::f_zeros([], (tch::Kind::Double, job.model.device))?;
    let mut tokens = 0;
    for (j, mb) in micro.iter().enumerate() {
        let seed = dropout.then_some(DropoutSeed {
            seed: state.ftui.seed,
            step: state.global_step as u64,
            micro: j as u64,
        });
        let out = step::forward_backward(
            job.model,
            mb,
            items as f64 / loss_scale,
            job.config.gradient_checkpointing,
            seed,
        )?;
        let nll = out.nll_sum.f_to_kind(tch::Kind::Double)?;
        loss = loss.f_add(&nll.f_div_scalar(items.max(1) as f64)?)?;
        let per_token = |t: &Tensor| -> Result<Tensor, TrainError> {
            Ok(t.f_to_kind(tch::Kind::Double)?
                .f_div_scalar(mb.items.max(1) as f64)?)
        };
        window.accuracy = window.accuracy.f_add(&per_token(&out.correct)?)?;
        window.entropy = window.entropy.f_add(&per_token(&out.entropy_sum)?)?;
        window.micro_batches += 1;
        tokens += mb.tokens;
    }
    window.loss = window.loss.f_add(&loss)?;
    Ok((loss.f_double_value(&[])?, tokens))
}

/// Turns the window into a log line and starts a new one.
fn flush(
    window: &mut LogWindow,
    state: &TrainerState,
    lr: f64,
    grad_norm: f64,
    device: tch::Device,
) -> Result<TrainLog, TrainError> {
    let micro = window.micro_batches.max(1) as f64;
    let log = TrainLog {
        step: state.global_step,
        epoch: state.epoch,
        loss: window.loss.f_double_value(&[])? / window.steps.max(1) as f64,
        learning_rate: lr,
        grad_norm,
        num_tokens: state.num_input_tokens_seen as f64,
        mean_token_accuracy: window.accuracy.f_double_value(&[])? / micro,
        entropy: window.entropy.f_double_value(&[])? / micro,
        tokens_per_second: window.tokens as f64 / window.started.elapsed().as_secs_f64().max(1e-9),
    };
    *window = LogWindow::new(device)?;
    Ok(log)
}

/// Evaluation as the Trainer reports it: each batch's token-mean loss, weighted
/// by its sequences; accuracy as the unweighted mean over batches.
pub fn evaluate(
    model: &CausalLm,
    eval: &dyn Batches,
    batch_size: usize,
    step: usize,
) -> Result<EvalLog, TrainError> {
    let order: Vec<usize> = (0..eval.len()).collect();
    let (mut loss_sum, mut rows, mut acc_sum, mut batches) = (0.0, 0i64, 0.0, 0usize);
    for chunk in order.chunks(batch_size.max(1)) {
        let mb = eval.collate(chunk)?;
        let out = step::evaluate(model, &mb)?;
        let n = mb.items.max(1) as f64;
        loss_sum += out.nll_sum.f_double_value(&[])? / n * mb.rows as f64;
        acc_sum += out.correct.f_double_value(&[])? / n;
        rows += mb.rows;
        batches += 1;
    }
    Ok(EvalLog {
        step,
        eval_loss: loss_sum / rows.max(1) as f64,
        eval_mean_token_accuracy: acc_sum / batches.max(1) as f64,
    })
}

/// Whether any adapter tensor of `adapter` uses dropout (then blocks reseed).
fn lora_dropout(model: &CausalLm, adapter: &str) -> bool {
    model
        .linears()
        .iter()
        .any(|(_, l)| l.adapters.get(adapter).is_some_and(|a| a.dropout > 0.0))
}

/// libtorch's out-of-memory messages (CUDA and the CPU allocator).
pub fn is_out_of_memory(message: &str) -> bool {
    message.contains("out of memory") || message.contains("can't allocate memory")
}
