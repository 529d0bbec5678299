//! Checkpoints: `checkpoint-STEP/` in the run folder, holding the adapter in
//! peft's format, the optimizer's moments (`optimizer.safetensors`) and
//! `trainer_state.json` in the HF Trainer's shape plus what an exact resume
//! needs. A checkpoint is written under a temporary name and renamed, so a
//! folder named `checkpoint-STEP` is always whole.

use super::optim::Optimizer;
use super::TrainError;
use crate::lora::{self, AdapterSpec};
use crate::model::CausalLm;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `trainer_state.json`: the Trainer's fields, and ftui's own under `ftui`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    pub global_step: usize,
    pub epoch: f64,
    pub max_steps: usize,
    pub logging_steps: usize,
    pub eval_steps: Option<usize>,
    pub save_steps: usize,
    pub train_batch_size: usize,
    pub num_train_epochs: f64,
    pub num_input_tokens_seen: i64,
    pub log_history: Vec<serde_json::Value>,
    pub ftui: ResumeState,
}

/// What resuming exactly needs beyond the Trainer's fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResumeState {
    /// Optimizer steps taken (AdamW's bias-correction count).
    pub optimizer_steps: i64,
    /// Each configured micro-batch runs in this many parts (out-of-memory retries).
    pub micro_split: usize,
    pub seed: u64,
    /// Sum of the step losses so far (for `train_loss` at the end).
    pub loss_total: f64,
    /// float16 loss scaling, when on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaler: Option<super::scaler::GradScaler>,
}

pub const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

fn io(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint(format!("{}: {e}", path.display()))
}

/// The step of a `checkpoint-STEP` folder name.
pub fn step_of(dir: &Path) -> Option<usize> {
    dir.file_name()?
        .to_str()?
        .strip_prefix("checkpoint-")?
        .parse()
        .ok()
}

/// The checkpoints in `output_dir`, by step.
pub fn list(output_dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(output_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(STATE_FILE).is_file())
        .filter_map(|p| step_of(&p).map(|s| (s, p)))
        .collect();
    found.sort();
    found
}

/// Which checkpoints `save_total_limit` removes: all but the newest `limit`.
pub fn to_delete(steps: &[usize], limit: Option<usize>) -> Vec<usize> {
    let Some(limit) = limit else {
        return Vec::new();
    };
    let mut sorted = steps.to_vec();
    sorted.sort_unstable();
    let excess = sorted.len().saturating_sub(limit.max(1));
    sorted[..excess].to_vec()
}

/// What a checkpoint is written from.
pub struct Snapshot<'a> {
    pub model: &'a CausalLm,
    pub adapter: &'a str,
    pub spec: &'a AdapterSpec,
    pub base_model: &'a str,
    pub optimizer: &'a Optimizer,
    pub state: &'a TrainerState,
}

/// Writes `checkpoint-STEP/` into `output_dir` and rotates old ones.
pub fn save(
    output_dir: &Path,
    snap: &Snapshot,
    limit: Option<usize>,
) -> Result<PathBuf, TrainError> {
    let step = snap.state.global_step;
    let dir = output_dir.join(format!("checkpoint-{step}"));
    let tmp = output_dir.join(format!(".checkpoint-{step}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    lora::save_adapter(snap.model, snap.adapter, snap.spec, snap.base_model, &tmp)?;
    let moments = snap.optimizer.state();
    let named: Vec<(&str, &tch::Tensor)> = moments.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    tch::Tensor::write_safetensors(&named, tmp.join(OPTIMIZER_FILE))
        .map_err(|e| io(&tmp.join(OPTIMIZER_FILE), e))?;
    let text = serde_json::to_string_pretty(snap.state).map_err(|e| io(&tmp, e))?;
    std::fs::write(tmp.join(STATE_FILE), text).map_err(|e| io(&tmp, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
    let steps: Vec<usize> = list(output_dir).iter().map(|(s, _)| *s).collect();
    for old in to_delete(&steps, limit) {
        let p = output_dir.join(format!("checkpoint-{old}"));
        std::fs::remove_dir_all(&p).map_err(|e| io(&p, e))?;
    }
    Ok(dir)
}

/// `resume_from_checkpoint`: a folder, or `latest` (the newest in `output_dir`).
pub fn resolve(spec: &str, output_dir: &Path) -> Result<PathBuf, TrainError> {
    if spec == "latest" {
        return list(output_dir).pop().map(|(_, p)| p).ok_or_else(|| {
            TrainError::Checkpoint(format!(
                "resume_from_checkpoint = \"latest\": {} holds no checkpoint-STEP folder",
                output_dir.display()
            ))
        });
    }
    let p = PathBuf::from(spec);
    if p.join(STATE_FILE).is_file() {
        Ok(p)
    } else {
        Err(TrainError::Checkpoint(format!(
            "{}: not a checkpoint (expected {STATE_FILE}, adapter and optimizer state)",
            p.display()
        )))
    }
}

/// Restores the adapter's weights and the optimizer from `dir`; returns the
/// trainer state to continue from.
pub fn restore(
    dir: &Path,
    model: &CausalLm,
    adapter: &str,
    optimizer: &mut Optimizer,
) -> Result<TrainerState, TrainError> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| io(&state_path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| io(&state_path, e))?;
    let weights = dir.join("adapter_model.safetensors");
    let saved: HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(&weights)
        .map_err(|e| io(&weights, e))?
        .into_iter()
        .collect();
    let _guard = tch::no_grad_guard();
    for (name, mut t) in lora::parameters(model, adapter) {
        let key = format!("base_model.model.{name}");
        let src = saved
            .get(&key)
            .ok_or_else(|| io(&weights, format!("`{key}` is missing")))?;
        if src.size() != t.size() {
            return Err(io(&weights, format!("`{key}` has another shape")));
        }
        t.f_copy_(src).map_err(|e| io(&weights, e))?;
    }
    let opt_path = dir.join(OPTIMIZER_FILE);
    let moments: HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(&opt_path)
        .map_err(|e| io(&opt_path, e))?
        .into_iter()
        .collect();
    optimizer
        .load_state(state.ftui.optimizer_steps, &moments)
        .map_err(|e| io(&opt_path, e))?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_newest() {
        assert_eq!(to_delete(&[30, 10, 20], Some(2)), vec![10]);
        assert_eq!(to_delete(&[10, 20], Some(2)), Vec::<usize>::new());
        assert_eq!(to_delete(&[10, 20, 30], None), Vec::<usize>::new());
        assert_eq!(to_delete(&[10, 20, 30], Some(0)), vec![10, 20]);
        assert_eq!(step_of(Path::new("/x/checkpoint-120")), Some(120));
        assert_eq!(step_of(Path::new("/x/checkpoint-best")), None);
    }
}
