//! The causal-LM loss as transformers computes it (`ForCausalLMLoss`): logits
//! at position `i` predict label `i + 1`; labels of `-100` are ignored; the
//! summed negative log-likelihood is divided by a given number of items (trl
//! passes the labelled-token count of the whole accumulation window,
//! `num_items_in_batch`), or by the labelled count of this batch.

use crate::torch::TchResult;
use tch::{Kind, Reduction, Tensor};

/// Labels that take no part in the loss.
pub const IGNORE_INDEX: i64 = -100;

/// The shifted targets of `labels` `[B, T]`: `labels[:, 1:]` with a final
/// `-100` per row, so position `i`'s logits meet label `i + 1`.
pub fn shift_labels(labels: &Tensor) -> TchResult<Tensor> {
    let (b, t) = (labels.size()[0], labels.size()[1]);
    let pad = Tensor::f_full([b, 1], IGNORE_INDEX, (Kind::Int64, labels.device()))?;
    Tensor::f_cat(
        &[&labels.f_narrow(1, 1, t - 1)?.f_to_kind(Kind::Int64)?, &pad],
        1,
    )
}

/// Labelled (not `-100`) targets after the shift.
pub fn count_items(labels: &Tensor) -> TchResult<i64> {
    let n = shift_labels(labels)?
        .f_ne(IGNORE_INDEX)?
        .f_sum(Kind::Int64)?
        .f_int64_value(&[])?;
    Ok(n)
}

/// The loss of `logits` `[B, T, vocab]` against `labels` `[B, T]`, as a scalar
/// float32 tensor: the summed token NLL over labelled targets divided by
/// `num_items` (`None`: the labelled count of this batch, i.e. the mean).
pub fn causal_lm_loss(
    logits: &Tensor,
    labels: &Tensor,
    num_items: Option<f64>,
) -> TchResult<Tensor> {
    let vocab = logits.size()[2];
    let targets = shift_labels(labels)?.f_flatten(0, -1)?;
    let flat = logits.f_to_kind(Kind::Float)?.f_reshape([-1, vocab])?;
    let sum =
        flat.f_cross_entropy_loss::<Tensor>(&targets, None, Reduction::Sum, IGNORE_INDEX, 0.0)?;
    let n = match num_items {
        Some(n) => n,
        None => count_items(labels)? as f64,
    };
    sum.f_div_scalar(n.max(1.0))
}

/// Log-probabilities of each row's next token, `[B, T - 1]`:
/// `out[b, i] = log p(input_ids[b, i + 1] | input_ids[b, ..= i])`.
pub fn next_token_logprobs(logits: &Tensor, input_ids: &Tensor) -> TchResult<Tensor> {
    let t = input_ids.size()[1];
    let lp = logits
        .f_narrow(1, 0, t - 1)?
        .f_to_kind(Kind::Float)?
        .f_log_softmax(-1, Kind::Float)?;
    let next = input_ids.f_narrow(1, 1, t - 1)?.f_unsqueeze(-1)?;
    lp.f_gather(2, &next, false)?.f_squeeze_dim(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits over 4 tokens whose log-softmax is known.
    fn logits() -> Tensor {
        Tensor::from_slice(&[
            1.0f32, 2.0, 0.5, -1.0, // position 0
            0.0, 0.0, 3.0, 1.0, // position 1
            2.0, -2.0, 0.0, 1.0, // position 2
        ])
        .view([1, 3, 4])
    }

    fn nll(row: &[f32], target: usize) -> f64 {
        let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
        -(row[target] as f64 - z.ln())
    }

    #[test]
    fn shifts_ignores_and_normalises() {
        let labels = Tensor::from_slice(&[5i64, 2, -100]).view([1, 3]);
        // Only position 0 (predicting label 2) counts: position 1's target is -100
        // and position 2 has no next token.
        let expected = nll(&[1.0, 2.0, 0.5, -1.0], 2);
        let mean = causal_lm_loss(&logits(), &labels, None).expect("loss");
        assert!((mean.double_value(&[]) - expected).abs() < 1e-5);
        assert_eq!(count_items(&labels).expect("count"), 1);
        // Divided by a window's item count instead (trl's num_items_in_batch).
        let by4 = causal_lm_loss(&logits(), &labels, Some(4.0)).expect("loss");
        assert!((by4.double_value(&[]) - expected / 4.0).abs() < 1e-5);
    }

    #[test]
    fn logprobs_pick_the_next_token() {
        let ids = Tensor::from_slice(&[0i64, 3, 1]).view([1, 3]);
        let lp = Vec::<f32>::try_from(
            next_token_logprobs(&logits(), &ids)
                .expect("lp")
                .flatten(0, -1),
        )
        .expect("vec");
        assert!((lp[0] as f64 + nll(&[1.0, 2.0, 0.5, -1.0], 3)).abs() < 1e-5);
        assert!((lp[1] as f64 + nll(&[0.0, 0.0, 3.0, 1.0], 1)).abs() < 1e-5);
    }
}
