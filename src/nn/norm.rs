//! RMSNorm, computed in float32 and scaled in the input's kind, as transformers does.

use crate::torch::TchResult;
use tch::{Kind, Tensor};

#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> TchResult<Tensor> {
        let kind = x.kind();
        let h = x.f_to_kind(Kind::Float)?;
        let var = h
            .f_pow_tensor_scalar(2)?
            .f_mean_dim(-1, true, Kind::Float)?;
        let h = h.f_mul(&var.f_add_scalar(self.eps)?.f_rsqrt()?)?;
        self.weight.f_mul(&h.f_to_kind(kind)?)
    }
}
