//! Rotary position embeddings; the inverse frequencies are computed exactly as
//! transformers' `ROPE_INIT_FUNCTIONS` do (float32, llama3 smoothing).

use crate::torch::TchResult;
use tch::{Device, Kind, Tensor};

/// How a model stretches its rotary frequencies for longer contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    Linear {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Per-pair divisors of the inverse frequencies (one per rotary pair): llama.cpp's
    /// `rope_freqs` tensor, the form llama3 scaling takes in a GGUF file.
    FreqFactors(Vec<f32>),
}

/// Rotary position embeddings; the inverse frequencies are computed exactly as
/// transformers' `ROPE_INIT_FUNCTIONS` do (float32, llama3 smoothing).
#[derive(Debug)]
pub struct Rope {
    inv_freq: Tensor,
    /// Dimensions of each head that rotate (Phi-3's partial rotary factor).
    pub rotary_dim: i64,
}

impl Rope {
    /// `partial_rotary_factor` of each head of `head_dim` dimensions rotates,
    /// at base `theta`, with optional `scaling`.
    pub fn new(
        head_dim: i64,
        partial_rotary_factor: f64,
        theta: f64,
        scaling: Option<&RopeScaling>,
        device: Device,
    ) -> TchResult<Self> {
        let dim = (head_dim as f64 * partial_rotary_factor) as i64;
        let exponents = Tensor::f_arange_start_step(0, dim, 2, (Kind::Int64, device))?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(dim as f64)?;
        let base = Tensor::f_full([1], theta, (Kind::Float, device))?;
        let mut inv_freq = base.f_pow(&exponents)?.f_reciprocal()?;
        match scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => inv_freq = inv_freq.f_div_scalar(*factor)?,
            // As llama.cpp applies `rope_freqs`: each pair's frequency over its factor.
            Some(RopeScaling::FreqFactors(factors)) => {
                let factors = Tensor::f_from_slice(factors)?.f_to_device(device)?;
                inv_freq = inv_freq.f_div(&factors)?;
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            }) => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                let wavelen = inv_freq
                    .f_reciprocal()?
                    .f_mul_scalar(2.0 * std::f64::consts::PI)?;
                let scaled = inv_freq.f_div_scalar(*factor)?;
                let llama = scaled.f_where_self(&wavelen.f_gt(low_wavelen)?, &inv_freq)?;
                let smooth = wavelen
                    .f_reciprocal()?
                    .f_mul_scalar(*old)?
                    .f_sub_scalar(*low_freq_factor)?
                    .f_div_scalar(high_freq_factor - low_freq_factor)?;
                let smoothed = smooth
                    .f_neg()?
                    .f_add_scalar(1.0)?
                    .f_mul(&llama)?
                    .f_div_scalar(*factor)?
                    .f_add(&smooth.f_mul(&llama)?)?;
                let medium = wavelen
                    .f_lt(high_wavelen)?
                    .f_logical_not()?
                    .f_logical_and(&wavelen.f_gt(low_wavelen)?.f_logical_not()?)?;
                inv_freq = smoothed.f_where_self(&medium, &llama)?;
            }
        }
        Ok(Rope {
            inv_freq,
            rotary_dim: dim,
        })
    }

    /// `(cos, sin)` of shape `[B, 1, T, rotary_dim]` for `position_ids` `[B, T]`.
    pub fn cos_sin(&self, position_ids: &Tensor, kind: Kind) -> TchResult<(Tensor, Tensor)> {
        let freqs = position_ids
            .f_to_kind(Kind::Float)?
            .f_unsqueeze(-1)?
            .f_mul(&self.inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?.f_unsqueeze(1)?;
        Ok((emb.f_cos()?.f_to_kind(kind)?, emb.f_sin()?.f_to_kind(kind)?))
    }

    /// Rotates the first `rotary_dim` dimensions of `x` `[B, H, T, D]`.
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> TchResult<Tensor> {
        let d = x.size()[3];
        let (rot, pass) = if self.rotary_dim < d {
            (
                x.f_narrow(-1, 0, self.rotary_dim)?,
                Some(x.f_narrow(-1, self.rotary_dim, d - self.rotary_dim)?),
            )
        } else {
            (x.shallow_clone(), None)
        };
        let half = self.rotary_dim / 2;
        let x1 = rot.f_narrow(-1, 0, half)?;
        let x2 = rot.f_narrow(-1, half, half)?;
        let rotated = Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?;
        let out = rot.f_mul(cos)?.f_add(&rotated.f_mul(sin)?)?;
        match pass {
            Some(p) => Tensor::f_cat(&[&out, &p], -1),
            None => Ok(out),
        }
    }

    /// Bytes of the rotary buffers as transformers counts them: `inv_freq` and
    /// its copy `original_inv_freq`, both float32 buffers of the module.
    pub fn buffer_bytes(&self) -> i64 {
        2 * self.inv_freq.numel() as i64 * 4
    }
}
