//! Attention (SDPA or eager) and the attention mask that covers causality,
//! padding, packed rows and sliding windows.

use crate::torch::TchResult;
use tch::{Device, Kind, Tensor};

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
