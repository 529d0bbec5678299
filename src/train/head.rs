//! The language-modelling head and its loss in one pass, chunk by chunk, over
//! the labelled rows only (Liger's fused linear cross-entropy, without a
//! recompute): the `[B, T, vocab]` logits never exist, and the gradient of the
//! hidden states is computed in the same pass as the loss, so backward needs no
//! second head GEMM.
//!
//! Numbers as trl computes them: the logits of a row are `h W^T` in the model's
//! kind, then float32; the NLL of a row is `logsumexp(z) - z[target]`; a row
//! is correct when the first maximum is the target (`argmax`, as trl's `is_top1`).

use crate::model::loss::{shift_labels, IGNORE_INDEX};
use crate::torch::TchResult;
use tch::{Kind, Tensor};

/// Bytes of float32 logits one chunk may hold.
const CHUNK_BYTES: i64 = 64 << 20;

/// What the head made of one micro-batch. Scalars stay on the device until
/// they are logged.
pub struct HeadOut {
    /// Summed NLL over the labelled targets (float32 scalar).
    pub nll_sum: Tensor,
    /// Labelled targets whose most likely token is the target (int64 scalar).
    pub correct: Tensor,
    /// Summed entropy of the predicted distributions (float32 scalar; trl logs
    /// its mean as `entropy`).
    pub entropy_sum: Tensor,
    /// The gradient of the summed NLL times `scale` with respect to the hidden
    /// states `[B, T, H]` (`None` when no gradient was asked for).
    pub grad: Option<Tensor>,
}

/// Scores `hidden` `[B, T, H]` (after the final norm) against `labels` `[B, T]`
/// through the head `weight` `[V, H]`. With `grad_scale = Some(s)`, also the
/// gradient of `s * nll_sum` (`s = 1 / num_items_in_batch`).
pub fn score(
    hidden: &Tensor,
    labels: &Tensor,
    weight: &Tensor,
    grad_scale: Option<f64>,
) -> TchResult<HeadOut> {
    let _guard = tch::no_grad_guard();
    let device = hidden.device();
    let (vocab, h) = (weight.size()[0], weight.size()[1]);
    let flat = hidden.f_reshape([-1, h])?;
    let targets = shift_labels(labels)?.f_flatten(0, -1)?;
    let rows = targets.f_ne(IGNORE_INDEX)?.f_nonzero()?.f_flatten(0, -1)?;
    let n = rows.size()[0];
    let mut nll_sum = Tensor::f_zeros([], (Kind::Float, device))?;
    let mut correct = Tensor::f_zeros([], (Kind::Int64, device))?;
    let mut entropy_sum = Tensor::f_zeros([], (Kind::Float, device))?;
    let mut grads = Vec::new();
    let weight_t = weight.f_transpose(0, 1)?;
    let chunk = (CHUNK_BYTES / (vocab * 4)).max(1);
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let idx = rows.f_narrow(0, start, len)?;
        let hc = flat.f_index_select(0, &idx)?;
        let tc = targets.f_index_select(0, &idx)?.f_unsqueeze(1)?;
        let z = hc.f_mm(&weight_t)?.f_to_kind(Kind::Float)?;
        let lse = z.f_logsumexp(&[-1i64][..], true)?;
        let target_logit = z.f_gather(1, &tc, false)?;
        nll_sum = nll_sum.f_add(&lse.f_sub(&target_logit)?.f_sum(Kind::Float)?)?;
        let top = z.f_argmax(-1, true)?;
        // Entropy of softmax(z): lse - sum(softmax(z) * z).
        let expected_z = z.f_softmax(-1, Kind::Float)?.f_mul(&z)?.f_sum_dim_intlist(
            &[-1i64][..],
            true,
            Kind::Float,
        )?;
        entropy_sum = entropy_sum.f_add(&lse.f_sub(&expected_z)?.f_sum(Kind::Float)?)?;
        correct = correct.f_add(&top.f_eq_tensor(&tc)?.f_sum(Kind::Int64)?)?;
        if let Some(scale) = grad_scale {
            // softmax - one_hot(target), times the scale, in place.
            let mut p = z;
            let _ = p.f_sub_(&lse)?.f_exp_()?;
            let minus_one = Tensor::f_full([len, 1], -1.0, (Kind::Float, device))?;
            let _ = p.f_scatter_add_(1, &tc, &minus_one)?;
            let _ = p.f_mul_scalar_(scale)?;
            grads.push(p.f_to_kind(weight.kind())?.f_mm(weight)?);
        }
        start += len;
    }
    let grad = match grad_scale {
        None => None,
        Some(_) => {
            let g = Tensor::f_zeros_like(&flat)?;
            if n > 0 {
                let all = Tensor::f_cat(&grads, 0)?.f_to_kind(g.kind())?;
                Some(g.f_index_copy(0, &rows, &all)?.f_view_as(hidden)?)
            } else {
                Some(g.f_view_as(hidden)?)
            }
        }
    };
    Ok(HeadOut {
        nll_sum,
        correct,
        entropy_sum,
        grad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::loss::causal_lm_loss;

    #[test]
    fn loss_and_gradient_equal_autograd_through_full_logits() {
        tch::manual_seed(3);
        let (b, t, h, v) = (2, 5, 8, 11);
        let hidden = Tensor::randn([b, t, h], (Kind::Float, tch::Device::Cpu));
        let weight = Tensor::randn([v, h], (Kind::Float, tch::Device::Cpu));
        let labels =
            Tensor::from_slice(&[-100i64, 3, 4, 10, -100, -100, -100, 1, 2, 0]).view([b, t]);
        let n_items = 12.0;
        let out = score(&hidden, &labels, &weight, Some(1.0 / n_items)).expect("head");
        // Reference: full logits, transformers' loss, autograd.
        let leaf = hidden.detach().set_requires_grad(true);
        let logits = leaf.matmul(&weight.tr());
        let loss = causal_lm_loss(&logits, &labels, Some(n_items)).expect("loss");
        loss.backward();
        let nll = out.nll_sum.double_value(&[]) / n_items;
        assert!((nll - loss.double_value(&[])).abs() < 1e-6);
        let g = out.grad.expect("gradient");
        let diff = (&g - leaf.grad()).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
        // 6 labelled targets after the shift; correctness counted by argmax.
        let z = logits.detach().view([-1, v]);
        let tgt = shift_labels(&labels).expect("shift").view([-1]);
        let mut want = 0;
        for i in 0..(b * t) {
            let y = tgt.int64_value(&[i]);
            if y != IGNORE_INDEX && z.get(i).argmax(0, false).int64_value(&[]) == y {
                want += 1;
            }
        }
        assert_eq!(out.correct.int64_value(&[]), want);
    }
}
