//! The merged model as a list of Hugging Face tensors, each read only when it is
//! written: a quantized linear is dequantized one at a time, so an export never holds
//! a second copy of the model.

use crate::model::{CausalLm, Module};
use crate::quant::LinearWeight;
use crate::torch::TchResult;
use tch::{Kind, Tensor};

/// Where a tensor's values are.
enum Values<'a> {
    Tensor(&'a Tensor),
    Weight(&'a LinearWeight),
}

/// One tensor of the merged model under its transformers name.
pub struct MergedTensor<'a> {
    /// `model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`, ...
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<i64>,
    values: Values<'a>,
}

impl<'a> MergedTensor<'a> {
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }

    /// The same values under another name (a tied head written out as its own tensor).
    pub fn renamed(&self, name: impl Into<String>) -> MergedTensor<'a> {
        MergedTensor {
            name: name.into(),
            shape: self.shape.clone(),
            values: match self.values {
                Values::Tensor(t) => Values::Tensor(t),
                Values::Weight(w) => Values::Weight(w),
            },
        }
    }

    /// The values as a contiguous CPU tensor of `kind`.
    pub fn read(&self, kind: Kind) -> TchResult<Tensor> {
        let t = match self.values {
            Values::Tensor(t) => t.f_detach()?,
            Values::Weight(w) => match w.as_dense() {
                Some(t) => t.f_detach()?,
                None => w.dequantize(kind)?,
            },
        };
        t.f_to_device(tch::Device::Cpu)?
            .f_to_kind(kind)?
            .f_contiguous()
    }

    /// The values' bytes as `kind` (little-endian, row-major), as safetensors stores them.
    pub fn bytes(&self, kind: Kind) -> TchResult<Vec<u8>> {
        let t = self.read(kind)?;
        let numel = t.numel();
        let mut out = vec![0u8; numel * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut out, numel)?;
        Ok(out)
    }

    /// The values as `f32`, row-major.
    pub fn read_f32(&self) -> TchResult<Vec<f32>> {
        Vec::<f32>::try_from(&self.read(Kind::Float)?.f_flatten(0, -1)?)
    }
}

fn tensor(name: String, t: &Tensor) -> MergedTensor<'_> {
    MergedTensor {
        name,
        shape: t.size(),
        values: Values::Tensor(t),
    }
}

/// Every tensor of the model as transformers saves it, in its module order: the active
/// adapter's full copies (`modules_to_save`) in place of the modules they replace, and
/// `lm_head.weight` only when the head is not tied to the embeddings (a saved copy of a
/// tied head unties it). Returns the tensors and whether the head is tied.
pub fn merged_tensors(model: &CausalLm) -> (Vec<MergedTensor<'_>>, bool) {
    let saved = |module: &str| {
        let active = model.active_adapter.as_deref()?;
        model
            .saved_modules
            .iter()
            .find(|m| m.adapter == active && m.module == module)
            .map(|m| &m.weight)
    };
    let mut out = Vec::new();
    model.visit(&mut |module, m| match m {
        Module::Embedding(t) => {
            let t = saved(module).unwrap_or(t);
            out.push(tensor(format!("{module}.weight"), t));
        }
        Module::Norm(t) => out.push(tensor(format!("{module}.weight"), t)),
        Module::Linear(l) => {
            match saved(module) {
                Some(t) => out.push(tensor(format!("{module}.weight"), t)),
                None => out.push(MergedTensor {
                    name: format!("{module}.weight"),
                    shape: l.weight.shape(),
                    values: Values::Weight(&l.weight),
                }),
            }
            if let Some(b) = &l.bias {
                out.push(tensor(format!("{module}.bias"), b));
            }
        }
    });
    // A saved copy of either half of a tied pair unties it: ftui's head then reads the
    // saved head, or the original embeddings under a saved input embedding.
    let mut tied = model.lm_head.is_none();
    if tied {
        let head =
            saved("lm_head").or_else(|| saved("model.embed_tokens").map(|_| &model.embed_tokens));
        if let Some(head) = head {
            out.push(tensor("lm_head.weight".into(), head));
            tied = false;
        }
    }
    (out, tied)
}
