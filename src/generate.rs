//! Text generation with a key/value cache: greedy or sampled decoding
//! (temperature, top-k, top-p, repetition penalty, seed), batched prompts with
//! left padding, stop on any EOS id or stop string, and text streamed token by
//! token through the tokenizer's decode stream.

use crate::config::GenerationConfig;
use crate::model::CausalLm;
use crate::tokenizer::TextTokenizer;
use crate::torch::TchResult;
use std::time::Instant;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    /// 0 = off.
    pub top_k: usize,
    pub repetition_penalty: f64,
    pub seed: Option<u64>,
    pub stop_strings: Vec<String>,
    /// Recompute the whole sequence each step instead of using the cache
    /// (slow; for checking the cache).
    pub no_cache: bool,
    /// Keep going past EOS (benchmarks).
    pub ignore_eos: bool,
}

impl From<&GenerationConfig> for SamplingParams {
    fn from(g: &GenerationConfig) -> Self {
        SamplingParams {
            max_new_tokens: g.max_new_tokens,
            temperature: g.temperature,
            top_p: g.top_p,
            top_k: g.top_k,
            repetition_penalty: g.repetition_penalty,
            seed: g.seed,
            stop_strings: Vec::new(),
            no_cache: false,
            ignore_eos: false,
        }
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        (&GenerationConfig::default()).into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Eos,
    StopString,
    Length,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Generation {
    /// New token ids (the EOS that ended it included).
    pub token_ids: Vec<u32>,
    /// New text, special tokens skipped, cut before a stop string.
    pub text: String,
    pub finish: FinishReason,
}

#[derive(Debug, Clone, Default)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub prompt_seconds: f64,
    pub decode_seconds: f64,
}

impl GenerationStats {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_seconds.max(1e-9)
    }
    /// New tokens per second of decoding (the first token comes from the prompt pass).
    pub fn tokens_per_second(&self) -> f64 {
        self.new_tokens.saturating_sub(1).max(1) as f64 / self.decode_seconds.max(1e-9)
    }
}

/// What the caller hears while generating: `(row, text piece)` once per new
/// token of a row (the piece is empty while the token completes no text yet);
/// returning false stops generation (cancel).
pub type OnText<'a> = &'a mut dyn FnMut(usize, &str) -> bool;

/// Applies repetition penalty, temperature, top-k and top-p to `logits` `[B, V]`
/// (float32), in transformers' order, and picks the next token of each row.
pub fn next_tokens(logits: &Tensor, seen: &Tensor, p: &SamplingParams) -> TchResult<Tensor> {
    let mut logits = logits.shallow_clone();
    if p.repetition_penalty != 1.0 {
        let score = logits.f_gather(1, seen, false)?;
        // transformers: negative scores are multiplied, positive ones divided.
        let penalised = score.f_mul_scalar(p.repetition_penalty)?.f_where_self(
            &score.f_lt(0.0)?,
            &score.f_div_scalar(p.repetition_penalty)?,
        )?;
        logits = logits.f_scatter(1, seen, &penalised)?;
    }
    if p.temperature == 0.0 {
        return logits.f_argmax(-1, false);
    }
    logits = logits.f_div_scalar(p.temperature)?;
    let vocab = logits.size()[1];
    if p.top_k > 0 && (p.top_k as i64) < vocab {
        let (top, _) = logits.f_topk(p.top_k as i64, -1, true, true)?;
        let kth = top.f_narrow(1, p.top_k as i64 - 1, 1)?;
        logits = logits.f_masked_fill(&logits.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
    }
    if p.top_p < 1.0 {
        let (sorted, idx) = logits.f_sort(-1, false)?;
        let cum = sorted
            .f_softmax(-1, Kind::Float)?
            .f_cumsum(-1, Kind::Float)?;
        let remove = cum.f_le(1.0 - p.top_p)?;
        // Always keep the most likely token.
        let _ = remove.f_narrow(1, vocab - 1, 1)?.f_fill_(0)?;
        let remove = remove.f_scatter(1, &idx, &remove)?;
        logits = logits.f_masked_fill(&remove, f64::NEG_INFINITY)?;
    }
    logits
        .f_softmax(-1, Kind::Float)?
        .f_multinomial(1, false)?
        .f_squeeze_dim(1)
}

/// Generates from each prompt (token ids; batched with left padding).
pub fn generate(
    model: &CausalLm,
    tok: &TextTokenizer,
    prompts: &[Vec<u32>],
    p: &SamplingParams,
    on_text: OnText,
) -> TchResult<(Vec<Generation>, GenerationStats)> {
    let _guard = tch::no_grad_guard();
    if let Some(seed) = p.seed {
        tch::manual_seed(seed as i64);
    }
    let dev = model.device;
    let b = prompts.len();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pad = tok
        .specials
        .pad
        .as_ref()
        .or(tok.specials.eos.as_ref())
        .map_or(0, |t| t.id) as i64;
    let mut ids = Vec::with_capacity(b * longest);
    let mut mask = Vec::with_capacity(b * longest);
    for prompt in prompts {
        let n = longest - prompt.len();
        ids.extend(std::iter::repeat_n(pad, n).chain(prompt.iter().map(|&t| t as i64)));
        mask.extend(std::iter::repeat_n(0i64, n).chain(std::iter::repeat_n(1, prompt.len())));
    }
    let shape = [b as i64, longest as i64];
    let mut input = Tensor::f_from_slice(&ids)?
        .f_view(shape)?
        .f_to_device(dev)?;
    let padded = mask.contains(&0);
    let mut attn = Tensor::f_from_slice(&mask)?
        .f_view(shape)?
        .f_to_device(dev)?;
    // Positions count real tokens only, as transformers' generate does.
    let mut positions = full_positions(&attn)?;
    let mut seen = input.shallow_clone();
    let mut cache = (!p.no_cache).then(|| model.new_cache());

    let mut streams: Vec<_> = (0..b).map(|_| tok.inner.decode_stream(true)).collect();
    let mut out: Vec<Generation> = (0..b)
        .map(|_| Generation {
            token_ids: Vec::new(),
            text: String::new(),
            finish: FinishReason::Length,
        })
        .collect();
    let mut done = vec![false; b];
    // Bytes of each row's text already given to `on_text`.
    let mut streamed = vec![0usize; b];
    let longest_stop = p.stop_strings.iter().map(String::len).max().unwrap_or(0);
    let mut stats = GenerationStats {
        prompt_tokens: prompts.iter().map(Vec::len).sum(),
        ..Default::default()
    };
    let start = Instant::now();
    let mut decode_start = start;
    for step in 0..p.max_new_tokens {
        let hidden = match &mut cache {
            Some(c) => model.hidden_states(
                &input,
                padded.then_some(&attn),
                padded.then_some(&positions),
                Some(c),
                false,
            )?,
            None => {
                let pos = if padded {
                    Some(full_positions(&attn)?)
                } else {
                    None
                };
                model.hidden_states(&seen, padded.then_some(&attn), pos.as_ref(), None, false)?
            }
        };
        // Only the last position's logits are needed (a [B, T, vocab] tensor for
        // a long prompt can be large).
        let last = model
            .logits(&hidden.f_select(1, -1)?)?
            .f_to_kind(Kind::Float)?;
        let next = next_tokens(&last, &seen, p)?;
        let next_host: Vec<i64> = Vec::<i64>::try_from(&next.f_to_device(tch::Device::Cpu)?)?;
        if step == 0 {
            stats.prompt_seconds = start.elapsed().as_secs_f64();
            decode_start = Instant::now();
        }
        let mut cancelled = false;
        for (row, &t) in next_host.iter().enumerate() {
            if done[row] {
                continue;
            }
            let t = t as u32;
            let g = &mut out[row];
            g.token_ids.push(t);
            stats.new_tokens += 1;
            if !p.ignore_eos && tok.specials.stop_ids.contains(&t) {
                g.finish = FinishReason::Eos;
                done[row] = true;
                continue;
            }
            if let Ok(Some(piece)) = streams[row].step(t) {
                let before = g.text.len();
                g.text.push_str(&piece);
                // A stop string may straddle tokens: look back far enough.
                let from = floor_boundary(&g.text, before.saturating_sub(longest_stop));
                let stop = p
                    .stop_strings
                    .iter()
                    .filter_map(|s| g.text[from..].find(s.as_str()).map(|i| from + i))
                    .min();
                let ready = match stop {
                    Some(cut) => {
                        g.text.truncate(cut);
                        g.finish = FinishReason::StopString;
                        done[row] = true;
                        cut
                    }
                    // Hold back what could still become the start of a stop string.
                    None => floor_boundary(
                        &g.text,
                        g.text.len().saturating_sub(longest_stop.saturating_sub(1)),
                    ),
                };
                // Called for every new token, with the text it makes ready
                // (often none): the caller's chance to stop or pause.
                if !on_text(row, &g.text[streamed[row]..ready.max(streamed[row])]) {
                    cancelled = true;
                }
                streamed[row] = ready.max(streamed[row]);
            }
        }
        if cancelled {
            for (row, g) in out.iter_mut().enumerate() {
                if !done[row] {
                    g.finish = FinishReason::Cancelled;
                }
            }
            break;
        }
        if done.iter().all(|&d| d) {
            break;
        }
        // Finished rows keep decoding padding until the batch is done.
        let step_ids: Vec<i64> = next_host
            .iter()
            .zip(&done)
            .map(|(&t, &d)| if d { pad } else { t })
            .collect();
        input = Tensor::f_from_slice(&step_ids)?
            .f_view([b as i64, 1])?
            .f_to_device(dev)?;
        seen = Tensor::f_cat(&[&seen, &input], 1)?;
        // The mask and positions only reach the model for padded batches.
        if padded {
            attn = Tensor::f_cat(
                &[&attn, &Tensor::f_ones([b as i64, 1], (Kind::Int64, dev))?],
                1,
            )?;
            positions = positions
                .f_narrow(1, positions.size()[1] - 1, 1)?
                .f_add_scalar(1)?;
        }
    }
    stats.decode_seconds = decode_start.elapsed().as_secs_f64();
    // What was held back for stop strings that never came.
    for (row, g) in out.iter().enumerate() {
        if streamed[row] < g.text.len() {
            on_text(row, &g.text[streamed[row]..]);
        }
    }
    Ok((out, stats))
}

/// The largest char boundary of `s` at or before byte `i`.
fn floor_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Position ids for a whole left-padded sequence: real tokens count from 0.
fn full_positions(attn: &Tensor) -> TchResult<Tensor> {
    attn.f_cumsum(-1, Kind::Int64)?
        .f_sub_scalar(1)?
        .f_clamp_min(0)
}
