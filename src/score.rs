//! Scoring text: the log-probability the model gives each token after the
//! first, and the mean negative log-likelihood (the training loss of that text).

use crate::model::layers::TchResult;
use crate::model::CausalLm;
use tch::{Kind, Tensor};

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
    let logits = model.forward(&input, None, None, None)?;
    let logprobs = if n < 2 {
        Vec::new()
    } else {
        let lp = logits
            .f_narrow(1, 0, n - 1)?
            .f_to_kind(Kind::Float)?
            .f_log_softmax(-1, Kind::Float)?;
        let next = input.f_narrow(1, 1, n - 1)?.f_unsqueeze(-1)?;
        let picked = lp.f_gather(2, &next, false)?.f_flatten(0, -1)?;
        Vec::<f32>::try_from(&picked.f_to_device(tch::Device::Cpu)?)?
    };
    let mean_nll = if logprobs.is_empty() {
        0.0
    } else {
        -logprobs.iter().map(|&x| x as f64).sum::<f64>() / logprobs.len() as f64
    };
    Ok(Score {
        token_ids: ids.to_vec(),
        logprobs,
        mean_nll,
    })
}
