//! Folding an adapter into the base weights (`W += B A * scaling`) and back, as
//! peft's `merge`/`unmerge` do; the layer then skips the adapter's own path.

use super::LoraError;
use crate::model::CausalLm;
use crate::quant::LinearWeight;

/// Folds adapter `name` into the base weights. A quantized base is dequantized
/// to the model's kind first and stays dense (as peft's merge into 4/8-bit
/// layers does, minus its re-quantization rounding).
pub fn merge(model: &mut CausalLm, name: &str) -> Result<(), LoraError> {
    fold(model, name, true)
}

/// Undoes [`merge`].
pub fn unmerge(model: &mut CausalLm, name: &str) -> Result<(), LoraError> {
    fold(model, name, false)
}

fn fold(model: &mut CausalLm, name: &str, merge: bool) -> Result<(), LoraError> {
    let _guard = tch::no_grad_guard();
    let kind = model.kind;
    for (_, l) in model.linears_mut() {
        let Some(a) = l.adapters.get_mut(name) else {
            continue;
        };
        if a.merged == merge {
            continue;
        }
        if l.weight.is_quantized() {
            l.weight = LinearWeight::Dense(l.weight.dequantize(kind)?);
        }
        let Some(w) = l.weight.as_dense_mut() else {
            continue;
        };
        let delta = a.weight_delta()?.f_to_kind(w.kind())?;
        if merge {
            let _ = w.f_add_(&delta)?;
        } else {
            let _ = w.f_sub_(&delta)?;
        }
        a.merged = merge;
    }
    Ok(())
}
