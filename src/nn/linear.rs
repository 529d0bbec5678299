//! The linear layer every projection of a model is: a frozen weight (dense or
//! quantized) and optional bias, with LoRA adapters kept beside it by name, of
//! which at most one is active. Where adapters go and how they are saved is
//! `lora`'s business; this layer only computes with them.

use crate::quant::LinearWeight;
use crate::torch::TchResult;
use std::collections::BTreeMap;
use tch::Tensor;

/// One LoRA adapter on one linear layer: `B(A(dropout(x))) * scaling`.
#[derive(Debug)]
pub struct LoraWeights {
    /// `[r, in]`, float32.
    pub a: Tensor,
    /// `[out, r]`, float32.
    pub b: Tensor,
    pub scaling: f64,
    pub dropout: f64,
    /// Folded into the base weight: the layer skips the adapter's own path.
    pub merged: bool,
}

impl LoraWeights {
    /// `B(A(dropout(x))) * scaling`, computed in the adapter's kind and returned
    /// in `x`'s kind, as peft casts. Dropout only when `train`.
    pub fn delta(&self, x: &Tensor, train: bool) -> TchResult<Tensor> {
        let h = x.f_to_kind(self.a.kind())?;
        let h = if train && self.dropout > 0.0 {
            h.f_dropout(self.dropout, true)?
        } else {
            h
        };
        h.f_linear(&self.a, None::<Tensor>)?
            .f_linear(&self.b, None::<Tensor>)?
            .f_mul_scalar(self.scaling)?
            .f_to_kind(x.kind())
    }

    /// `B A * scaling`, the update to the base weight.
    pub fn weight_delta(&self) -> TchResult<Tensor> {
        self.b.f_matmul(&self.a)?.f_mul_scalar(self.scaling)
    }
}

/// `y = x W^T + b` over a frozen weight, plus the active adapter's update.
#[derive(Debug)]
pub struct Linear {
    /// Dense, or quantized (4-bit NF4/FP4, 8-bit) as bitsandbytes stores it.
    pub weight: LinearWeight,
    pub bias: Option<Tensor>,
    /// Adapters by name.
    pub adapters: BTreeMap<String, LoraWeights>,
    /// The adapter in use, by name; `None` is the base layer.
    pub active: Option<String>,
}

impl Linear {
    pub fn new(weight: LinearWeight, bias: Option<Tensor>) -> Self {
        Linear {
            weight,
            bias,
            adapters: BTreeMap::new(),
            active: None,
        }
    }

    /// The layer's output. `train` turns adapter dropout on and, for 8-bit
    /// weights, takes the dequantizing path gradients flow through; inference
    /// takes bitsandbytes' LLM.int8 path (outlier columns kept in 16 bits).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> TchResult<Tensor> {
        let y = if train {
            self.weight.linear(x, self.bias.as_ref())?
        } else {
            self.weight.linear_inference(x, self.bias.as_ref())?
        };
        match self.active_adapter() {
            Some(a) if !a.merged => y.f_add(&a.delta(x, train)?),
            _ => Ok(y),
        }
    }

    /// The active adapter, if any.
    pub fn active_adapter(&self) -> Option<&LoraWeights> {
        self.adapters.get(self.active.as_deref()?)
    }
}
