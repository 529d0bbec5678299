//! Scoring text: the log-probability the model gives each token after the
//! first, and the mean negative log-likelihood (the training loss of that text).

use crate::model::{loss, CausalLm};
use crate::torch::TchResult;
use tch::Tensor;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Score {
    pub token_ids: Vec<u32>,
    /// `logprobs[i] = log p(token_ids[i+1] | token_ids[..=i])`.
    pub logprobs: Vec<f32>,
    pub mean_nll: f64,
}

pub fn score(model: &CausalLm, ids: &[u32]) -> TchResult<Score> {
    let _guard = tch::no_grad_guard();
    let n = ids.len() as i64;
    let input: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    let input = Tensor::f_from_slice(&input)?
        .f_view([1, n])?
        .f_to_device(model.device)?;
    if n < 2 {
        return Ok(Score {
            token_ids: ids.to_vec(),
            logprobs: Vec::new(),
            mean_nll: 0.0,
        });
    }
    let logits = model.forward(&input, None, None, None)?;
    let picked = loss::next_token_logprobs(&logits, &input)?.f_flatten(0, -1)?;
    let logprobs = Vec::<f32>::try_from(&picked.f_to_device(tch::Device::Cpu)?)?;
    // The loss a trainer would report for this text, every token labelled.
    let mean_nll = loss::causal_lm_loss(&logits, &input, None)?.f_double_value(&[])?;
    Ok(Score {
        token_ids: ids.to_vec(),
        logprobs,
        mean_nll,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_mean_nll_is_the_mean_of_the_logprobs() {
        let m = crate::model::tiny::llama(1);
        let ids: Vec<u32> = vec![3, 1, 4, 1, 5];
        let s = super::score(&m, &ids).expect("score");
        assert_eq!(s.logprobs.len(), 4);
        let mean = -s.logprobs.iter().map(|&x| x as f64).sum::<f64>() / 4.0;
        assert!((s.mean_nll - mean).abs() < 1e-5, "{} vs {mean}", s.mean_nll);
    }
}
