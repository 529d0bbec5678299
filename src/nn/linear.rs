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
        match self.adapter_delta(x, train)? {
            Some(d) => y.f_add(&d),
            None => Ok(y),
        }
    }

    /// The active adapter's update for input `x`, unless there is none or it is
    /// merged into the weight.
    pub fn adapter_delta(&self, x: &Tensor, train: bool) -> TchResult<Option<Tensor>> {
        match self.active_adapter() {
            Some(a) if !a.merged => a.delta(x, train).map(Some),
            _ => Ok(None),
        }
    }

    /// The active adapter, if any.
    pub fn active_adapter(&self) -> Option<&LoraWeights> {
        self.adapters.get(self.active.as_deref()?)
    }
}

/// One weight for the projections that read the same input (q|k|v, gate|up),
/// whose own weights become views into it: the base GEMM runs once for all of
/// them, each projection's adapter still runs on its own. Merging an adapter
/// into a projection's view updates the shared weight too.
#[derive(Debug)]
pub struct SharedInput {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// Output features of each projection, in order.
    pub sizes: Vec<i64>,
}

impl SharedInput {
    /// Shares the weights of `linears` when all are dense, of one kind, and
    /// alike in having a bias; `None` leaves them as they are.
    pub fn new(linears: &mut [&mut Linear]) -> TchResult<Option<SharedInput>> {
        let dense: Vec<&Tensor> = linears.iter().filter_map(|l| l.weight.as_dense()).collect();
        let kinds_agree = dense.windows(2).all(|w| w[0].kind() == w[1].kind());
        let biases = linears.iter().filter(|l| l.bias.is_some()).count();
        if dense.len() != linears.len() || !kinds_agree || (biases != 0 && biases != linears.len())
        {
            return Ok(None);
        }
        let _guard = tch::no_grad_guard();
        let weight = Tensor::f_cat(&dense, 0)?;
        let bias = if biases > 0 {
            let b: Vec<&Tensor> = linears.iter().filter_map(|l| l.bias.as_ref()).collect();
            Some(Tensor::f_cat(&b, 0)?)
        } else {
            None
        };
        let mut sizes = Vec::with_capacity(linears.len());
        let mut start = 0;
        for l in linears.iter_mut() {
            let n = l.weight.shape()[0];
            l.weight = LinearWeight::Dense(weight.f_narrow(0, start, n)?);
            if let Some(b) = &bias {
                l.bias = Some(b.f_narrow(0, start, n)?);
            }
            sizes.push(n);
            start += n;
        }
        Ok(Some(SharedInput {
            weight,
            bias,
            sizes,
        }))
    }

    /// Each projection's output for input `x`: one base GEMM, then each
    /// projection's adapter update added to its slice.
    pub fn forward_t(
        &self,
        x: &Tensor,
        linears: &[&Linear],
        train: bool,
    ) -> TchResult<Vec<Tensor>> {
        let all = x.f_linear(&self.weight, self.bias.as_ref())?;
        let mut out = Vec::with_capacity(linears.len());
        let mut start = 0;
        for (l, &n) in linears.iter().zip(&self.sizes) {
            let y = all.f_narrow(-1, start, n)?;
            out.push(match l.adapter_delta(x, train)? {
                Some(d) => y.f_add(&d)?,
                None => y,
            });
            start += n;
        }
        Ok(out)
    }
}
