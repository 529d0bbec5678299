//! The building blocks shared by every architecture: linear layers, RMSNorm,
//! rotary embeddings, attention (SDPA or eager) and the attention mask that
//! covers causality, padding and packed rows.

use super::config::{ArchConfig, RopeScaling};
use tch::{Device, Kind, Tensor};

pub type TchResult<T> = Result<T, tch::TchError>;

/// A linear layer `y = x W^T + b` over a frozen weight, with any number of
/// named LoRA adapters of which at most one is active.
#[derive(Debug)]
pub struct Linear {
    /// Dense, or quantized (4-bit NF4/FP4, 8-bit) as bitsandbytes stores it.
    pub weight: crate::quant::LinearWeight,
    pub bias: Option<Tensor>,
    pub adapters: Vec<crate::lora::LoraAdapter>,
    /// Index into `adapters` of the adapter in use.
    pub active: Option<usize>,
    /// Training mode: adapter dropout on.
    pub training: bool,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            weight: crate::quant::LinearWeight::Dense(weight),
            bias,
            adapters: Vec::new(),
            active: None,
            training: false,
        }
    }

    pub fn forward(&self, x: &Tensor) -> TchResult<Tensor> {
        // Inference takes bitsandbytes' LLM.int8 path (outlier columns kept in
        // 16 bits) for 8-bit weights; training dequantizes, as bnb does.
        let y = if self.training {
            self.weight.linear(x, self.bias.as_ref())?
        } else {
            self.weight.linear_inference(x, self.bias.as_ref())?
        };
        match self.active.and_then(|i| self.adapters.get(i)) {
            Some(a) if !a.merged => y.f_add(&a.delta(x, self.training)?),
            _ => Ok(y),
        }
    }
}

/// RMSNorm computed in float32 and scaled in the input's kind, as transformers does.
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

/// Rotary position embeddings; the inverse frequencies are computed exactly as
/// transformers' `ROPE_INIT_FUNCTIONS` do (float32, llama3 smoothing).
#[derive(Debug)]
pub struct Rope {
    inv_freq: Tensor,
    /// Dimensions of each head that rotate (Phi-3's partial rotary factor).
    pub rotary_dim: i64,
}

impl Rope {
    pub fn new(cfg: &ArchConfig, device: Device) -> TchResult<Self> {
        let dim = (cfg.head_dim as f64 * cfg.partial_rotary_factor) as i64;
        let exponents = Tensor::f_arange_start_step(0, dim, 2, (Kind::Int64, device))?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(dim as f64)?;
        let base = Tensor::f_full([1], cfg.rope_theta, (Kind::Float, device))?;
        let mut inv_freq = base.f_pow(&exponents)?.f_reciprocal()?;
        match &cfg.rope_scaling {
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

/// How attention is restricted for one forward pass.
#[derive(Debug)]
pub enum AttnMask {
    /// Plain causal attention over the new tokens only (fast kernels).
    Causal,
    /// No restriction: one new token attending to the whole cache.
    None,
    /// An explicit boolean mask `[B, 1, T, S]`, true = may attend.
    Explicit(Tensor),
}

impl AttnMask {
    /// Builds the mask for `t` new tokens after `past` cached ones.
    ///
    /// - `attention_mask` `[B, past + t]`: 1 for real tokens, 0 for padding.
    /// - `position_ids` `[B, t]`: where a row's positions restart at 0 a new
    ///   sequence begins (packed rows); tokens attend only within their own
    ///   sequence, like transformers' flash-attention path for packed batches.
    /// - `window`: sliding-window attention; only matters once the sequence is
    ///   longer than the window.
    pub fn build(
        attention_mask: Option<&Tensor>,
        position_ids: Option<&Tensor>,
        t: i64,
        past: i64,
        window: Option<i64>,
        device: Device,
    ) -> TchResult<AttnMask> {
        let packed = position_ids.filter(|_| past == 0 && t > 1);
        let window = window.filter(|&w| past + t > w);
        if attention_mask.is_none() && packed.is_none() && window.is_none() {
            return Ok(if past == 0 && t > 1 {
                AttnMask::Causal
            } else if t == 1 {
                AttnMask::None
            } else {
                AttnMask::Explicit(causal(t, past, device)?.f_view([1, 1, t, past + t])?)
            });
        }
        let mut mask = causal(t, past, device)?.f_view([1, 1, t, past + t])?;
        if let Some(w) = window {
            // Key j is visible from query i (at position past + i) when j > past + i - w.
            let q =
                Tensor::f_arange_start(past, past + t, (Kind::Int64, device))?.f_unsqueeze(1)?;
            let k = Tensor::f_arange(past + t, (Kind::Int64, device))?.f_unsqueeze(0)?;
            let band = k.f_gt_tensor(&q.f_sub_scalar(w)?)?;
            mask = mask.f_logical_and(&band.f_view([1, 1, t, past + t])?)?;
        }
        if let Some(am) = attention_mask {
            let keys = am.f_to_kind(Kind::Bool)?.f_unsqueeze(1)?.f_unsqueeze(1)?;
            mask = mask.f_logical_and(&keys)?;
        }
        if let Some(pos) = packed {
            let seg = pos.f_eq(0)?.f_cumsum(-1, Kind::Int64)?;
            let same = seg.f_unsqueeze(-1)?.f_eq_tensor(&seg.f_unsqueeze(1)?)?;
            mask = mask.f_logical_and(&same.f_unsqueeze(1)?)?;
        }
        // A query with nothing to attend to (a left-padding row) would give NaN;
        // let it attend everywhere instead, as transformers does. Its output is
        // padding and is never used.
        let empty = mask.f_any_dim(-1, true)?.f_logical_not()?;
        Ok(AttnMask::Explicit(mask.f_logical_or(&empty)?))
    }
}

/// `[t, past + t]` lower-triangular boolean mask (query i sees keys <= past + i).
fn causal(t: i64, past: i64, device: Device) -> TchResult<Tensor> {
    Tensor::f_ones([t, past + t], (Kind::Bool, device))?.f_tril(past)
}

/// Attention over `q` `[B, H, T, D]`, `k`/`v` `[B, KvH, S, D]`.
/// `eager` computes the weights explicitly and returns them too.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &AttnMask,
    eager: bool,
) -> TchResult<(Tensor, Option<Tensor>)> {
    let (heads, kv_heads, d) = (q.size()[1], k.size()[1], q.size()[3]);
    let scale = 1.0 / (d as f64).sqrt();
    if !eager {
        let (m, causal) = match mask {
            AttnMask::Causal => (None, true),
            AttnMask::None => (None, false),
            AttnMask::Explicit(m) => (Some(m), false),
        };
        let out = Tensor::f_scaled_dot_product_attention(
            q,
            k,
            v,
            m,
            0.0,
            causal,
            scale,
            heads != kv_heads,
        )?;
        return Ok((out, None));
    }
    let rep = heads / kv_heads;
    let (k, v) = if rep > 1 {
        (
            k.f_repeat_interleave_self_int(rep, 1, None)?,
            v.f_repeat_interleave_self_int(rep, 1, None)?,
        )
    } else {
        (k.shallow_clone(), v.shallow_clone())
    };
    let mut scores = q.f_matmul(&k.f_transpose(-2, -1)?)?.f_mul_scalar(scale)?;
    let (t, s) = (q.size()[2], k.size()[2]);
    let explicit = match mask {
        AttnMask::Causal => Some(causal(t, s - t, q.device())?),
        AttnMask::None => None,
        AttnMask::Explicit(m) => Some(m.shallow_clone()),
    };
    if let Some(m) = explicit {
        scores = scores.f_masked_fill(&m.f_logical_not()?, f64::NEG_INFINITY)?;
    }
    let weights = scores.f_softmax(-1, Kind::Float)?.f_to_kind(q.kind())?;
    let out = weights.f_matmul(&v)?;
    Ok((out, Some(weights)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(m: &AttnMask) -> Vec<Vec<bool>> {
        let AttnMask::Explicit(t) = m else {
            panic!("expected an explicit mask, got {m:?}")
        };
        let t = t.squeeze();
        (0..t.size()[0])
            .map(|i| Vec::<bool>::try_from(&t.get(i)).expect("row"))
            .collect()
    }

    #[test]
    fn sliding_window_keeps_the_last_w_tokens() {
        let m = AttnMask::build(None, None, 5, 0, Some(2), Device::Cpu).expect("mask");
        let r = rows(&m);
        assert_eq!(r[0], vec![true, false, false, false, false]);
        assert_eq!(r[3], vec![false, false, true, true, false]);
        assert_eq!(r[4], vec![false, false, false, true, true]);
        // Shorter than the window: the plain causal fast path.
        assert!(matches!(
            AttnMask::build(None, None, 2, 0, Some(2), Device::Cpu).expect("mask"),
            AttnMask::Causal
        ));
        // One new token after 4 cached ones sees the last 2 positions.
        let m = AttnMask::build(None, None, 1, 4, Some(2), Device::Cpu).expect("mask");
        assert_eq!(rows_one(&m), vec![false, false, false, true, true]);
    }

    fn rows_one(m: &AttnMask) -> Vec<bool> {
        let AttnMask::Explicit(t) = m else {
            panic!("expected an explicit mask, got {m:?}")
        };
        Vec::<bool>::try_from(&t.flatten(0, -1)).expect("row")
    }

    #[test]
    fn packed_rows_attend_within_their_sequence() {
        let pos = Tensor::from_slice(&[0i64, 1, 2, 0, 1]).view([1, 5]);
        let m = AttnMask::build(None, Some(&pos), 5, 0, None, Device::Cpu).expect("mask");
        let r = rows(&m);
        assert_eq!(r[2], vec![true, true, true, false, false]);
        assert_eq!(r[4], vec![false, false, false, true, true]);
    }
}
