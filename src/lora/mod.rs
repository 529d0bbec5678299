//! LoRA adapters, as peft makes them (`peft/tuners/lora`): a frozen linear layer
//! plus a trainable low-rank update `B(A(dropout(x))) * scaling`, with scaling
//! `lora_alpha / r` (or `lora_alpha / sqrt(r)` with rsLoRA). Adapters are named
//! and kept beside each linear layer ([`crate::nn::Linear`]); several can be
//! loaded at once and one (or none: the base model) is active.
//!
//! - [`target`]: which modules peft would put an adapter on;
//! - [`init`]: new adapters, initialised as peft initialises them;
//! - [`peft`]: peft's files (`adapter_config.json`, `adapter_model.safetensors`),
//!   read and written so `PeftModel.from_pretrained` reads what ftui writes and
//!   the other way round;
//! - [`merge`]: folding an adapter into the base weights and back.
//!
//! The model is reached only through its one named visitor
//! ([`CausalLm::visit`]), so this module depends on the model and never the
//! other way round.

pub mod init;
pub mod merge;
pub mod peft;
pub mod target;

pub use init::add_adapter;
pub use merge::{merge, unmerge};
pub use peft::{load_adapter, save_adapter, AdapterSpec};
pub use target::is_target;

use crate::model::{CausalLm, Module};
use std::path::Path;
use tch::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{0}")]
    Config(String),
    #[error("no adapter named `{0}` is loaded")]
    NoSuchAdapter(String),
    #[error("libtorch: {}", crate::torch::torch_message(.0))]
    Torch(#[from] tch::TchError),
}

fn file_err(path: &Path, message: impl Into<String>) -> LoraError {
    LoraError::File {
        file: path.display().to_string(),
        message: message.into(),
    }
}

/// Drops adapter `name` from every layer and its module copies.
pub fn remove_adapter(model: &mut CausalLm, name: &str) {
    for (_, l) in model.linears_mut() {
        l.adapters.remove(name);
        if l.active.as_deref() == Some(name) {
            l.active = None;
        }
    }
    model.saved_modules.retain(|m| m.adapter != name);
    if model.active_adapter.as_deref() == Some(name) {
        model.active_adapter = None;
    }
}

/// Activates adapter `name`, or none (the base model).
pub fn set_active(model: &mut CausalLm, name: Option<&str>) -> Result<(), LoraError> {
    if let Some(n) = name {
        if !adapter_names(model).iter().any(|a| a == n) {
            return Err(LoraError::NoSuchAdapter(n.into()));
        }
    }
    // A merged adapter lives in the weights: take it out when it stops being
    // active, as peft unmerges when adapters are disabled.
    for other in adapter_names(model) {
        if Some(other.as_str()) != name {
            unmerge(model, &other)?;
        }
    }
    for (_, l) in model.linears_mut() {
        l.active = name
            .filter(|n| l.adapters.contains_key(*n))
            .map(String::from);
    }
    model.active_adapter = name.map(String::from);
    Ok(())
}

/// Names of the loaded adapters, sorted.
pub fn adapter_names(model: &CausalLm) -> Vec<String> {
    let mut names: Vec<String> = model
        .saved_modules
        .iter()
        .map(|m| m.adapter.clone())
        .collect();
    for (_, l) in model.linears() {
        names.extend(l.adapters.keys().cloned());
    }
    names.sort();
    names.dedup();
    names
}

/// Adapter `name`'s parameters with the names peft saves them under, less the
/// `base_model.model.` prefix (`model.layers.0.self_attn.q_proj.lora_A.weight`,
/// `lm_head.weight` for a saved module), in model order. The tensors share
/// storage with the model: an optimizer updating them updates the model.
pub fn parameters(model: &CausalLm, name: &str) -> Vec<(String, Tensor)> {
    let mut v = Vec::new();
    model.visit(&mut |module, m| {
        if let Module::Linear(l) = m {
            if let Some(a) = l.adapters.get(name) {
                v.push((format!("{module}.lora_A.weight"), a.a.shallow_clone()));
                v.push((format!("{module}.lora_B.weight"), a.b.shallow_clone()));
            }
        }
    });
    for m in model.saved_modules.iter().filter(|m| m.adapter == name) {
        v.push((format!("{}.weight", m.module), m.weight.shallow_clone()));
    }
    v
}

/// Makes adapter `name`'s parameters require gradients (training) or not
/// (inference, as peft loads an adapter unless `is_trainable`).
pub fn set_trainable(model: &CausalLm, name: &str, trainable: bool) -> Result<(), LoraError> {
    let params = parameters(model, name);
    if params.is_empty() {
        return Err(LoraError::NoSuchAdapter(name.into()));
    }
    for (_, mut t) in params {
        let _ = t.f_requires_grad_(trainable)?;
    }
    Ok(())
}

/// Trainable and total parameters with adapter `name`, as peft's
/// `get_nb_trainable_parameters()` counts them: base weights (tied once) plus
/// the adapter's A and B and its full module copies.
pub fn parameter_counts(model: &CausalLm, name: &str) -> (i64, i64) {
    let base = model.num_parameters();
    let trainable: i64 = parameters(model, name)
        .iter()
        .map(|(_, t)| t.numel() as i64)
        .sum();
    (trainable, base + trainable)
}
