//! One micro-batch: forward, the fused head loss, and backward into the
//! adapter's gradients (which accumulate across the micro-batches of an
//! optimizer step).
//!
//! With gradient checkpointing the blocks run without a graph, keeping only
//! their inputs; backward then recomputes each block, last first, and
//! backpropagates the gradient of its output through it (`(y * g).sum()`:
//! tch has no backward with an upstream gradient). Only one block's
//! activations (and, for a 4/8-bit base, dequantized weights) are alive at a
//! time. Without it the blocks keep their graph and one backward runs.
//!
//! Dropout draws from a seed derived from (seed, step, micro-batch, block), set
//! before a block's forward and again before its recompute, so the recompute
//! sees the same masks and a resumed run the same draws.

use super::head;
use crate::model::CausalLm;
use crate::torch::TchResult;
use tch::{Kind, Tensor};

/// One collated micro-batch on the model's device.
#[derive(Debug)]
pub struct MicroBatch {
    pub input_ids: Tensor,
    pub labels: Tensor,
    pub attention_mask: Option<Tensor>,
    pub position_ids: Option<Tensor>,
    /// Labelled targets after the shift (trl's `num_items_in_batch` share).
    pub items: i64,
    /// Non-padding tokens (trl's `num_tokens` share).
    pub tokens: i64,
    /// Sequences (rows, or packed sequences count as their row).
    pub rows: i64,
}

impl MicroBatch {
    /// The same micro-batch, sharing its tensors.
    pub fn shallow_clone(&self) -> Self {
        MicroBatch {
            input_ids: self.input_ids.shallow_clone(),
            labels: self.labels.shallow_clone(),
            attention_mask: self.attention_mask.as_ref().map(Tensor::shallow_clone),
            position_ids: self.position_ids.as_ref().map(Tensor::shallow_clone),
            ..*self
        }
    }

    /// Builds one from host vectors (rows of equal length).
    pub fn from_rows(
        input_ids: &[Vec<i64>],
        labels: &[Vec<i64>],
        attention_mask: Option<&[Vec<i64>]>,
        position_ids: Option<&[Vec<i64>]>,
        device: tch::Device,
    ) -> TchResult<Self> {
        let to = |rows: &[Vec<i64>]| -> TchResult<Tensor> {
            let (b, t) = (rows.len() as i64, rows.first().map_or(0, Vec::len) as i64);
            let flat: Vec<i64> = rows.iter().flatten().copied().collect();
            Tensor::f_from_slice(&flat)?
                .f_view([b, t])?
                .f_to_device(device)
        };
        let items = labels
            .iter()
            .map(|r| r.iter().skip(1).filter(|&&l| l != -100).count() as i64)
            .sum();
        let tokens = match (attention_mask, position_ids) {
            (Some(m), _) => m.iter().flatten().sum(),
            (None, _) => input_ids.iter().map(|r| r.len() as i64).sum(),
        };
        Ok(MicroBatch {
            input_ids: to(input_ids)?,
            labels: to(labels)?,
            attention_mask: attention_mask.map(to).transpose()?,
            position_ids: position_ids.map(to).transpose()?,
            items,
            tokens,
            rows: input_ids.len() as i64,
        })
    }
}

/// Where dropout seeds come from.
#[derive(Debug, Clone, Copy)]
pub struct DropoutSeed {
    pub seed: u64,
    pub step: u64,
    pub micro: u64,
}

impl DropoutSeed {
    /// SplitMix64 over the four coordinates: distinct, reproducible seeds.
    fn for_block(&self, block: usize) -> i64 {
        let mut x = self.seed;
        for v in [self.step, self.micro, block as u64] {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(v);
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
        }
        (x >> 1) as i64
    }
}

/// What one micro-batch contributed (device scalars, read when logged).
pub struct MicroOut {
    pub nll_sum: Tensor,
    pub correct: Tensor,
    pub entropy_sum: Tensor,
}

impl From<head::HeadOut> for MicroOut {
    fn from(h: head::HeadOut) -> Self {
        MicroOut {
            nll_sum: h.nll_sum,
            correct: h.correct,
            entropy_sum: h.entropy_sum,
        }
    }
}

/// Forward and backward of one micro-batch whose loss is its summed NLL divided
/// by `window_items` (the labelled targets of the whole optimizer step).
/// `seed`: reseed before each block (needed when adapters use dropout).
pub fn forward_backward(
    model: &CausalLm,
    mb: &MicroBatch,
    window_items: f64,
    checkpointing: bool,
    seed: Option<DropoutSeed>,
) -> TchResult<MicroOut> {
    let weight = head_weight(model)?;
    let (b, t) = (mb.input_ids.size()[0], mb.input_ids.size()[1]);
    let ctx = {
        let _guard = tch::no_grad_guard();
        model.context(
            b,
            t,
            0,
            mb.attention_mask.as_ref(),
            mb.position_ids.as_ref(),
        )?
    };
    let reseed = |i: usize| {
        if let Some(s) = seed {
            tch::manual_seed(s.for_block(i));
        }
    };
    let scale = if window_items > 0.0 {
        1.0 / window_items
    } else {
        0.0
    };
    if !checkpointing {
        let mut x = model.embed(&mb.input_ids)?;
        for i in 0..model.num_layers() {
            reseed(i);
            x = model.layer(i).forward_t(&x, &ctx, None, true)?;
        }
        let hn = model.final_norm(&x)?;
        let out = head::score(&hn.f_detach()?, &mb.labels, weight, Some(scale))?;
        if let (Some(g), true) = (&out.grad, mb.items > 0) {
            hn.f_mul(g)?.f_sum(Kind::Float)?.f_backward()?;
        }
        return Ok(MicroOut::from(out));
    }
    // Forward without a graph, keeping each block's input.
    let mut inputs = Vec::with_capacity(model.num_layers());
    let last = {
        let _guard = tch::no_grad_guard();
        let mut x = model.embed(&mb.input_ids)?;
        for i in 0..model.num_layers() {
            inputs.push(x.shallow_clone());
            reseed(i);
            x = model.layer(i).forward_t(&x, &ctx, None, true)?;
        }
        x
    };
    let xl = last.f_detach()?.f_set_requires_grad(true)?;
    let hn = model.final_norm(&xl)?;
    let out = head::score(&hn.f_detach()?, &mb.labels, weight, Some(scale))?;
    if mb.items == 0 {
        return Ok(MicroOut::from(out));
    }
    if let Some(g) = &out.grad {
        hn.f_mul(g)?.f_sum(Kind::Float)?.f_backward()?;
    }
    let mut g = xl.grad();
    for i in (0..model.num_layers()).rev() {
        let Some(x_in) = inputs.pop() else { break };
        let x_in = x_in.f_detach()?;
        let x_in = if i > 0 {
            x_in.f_set_requires_grad(true)?
        } else {
            x_in
        };
        reseed(i);
        let y = model.layer(i).forward_t(&x_in, &ctx, None, true)?;
        y.f_mul(&g.f_to_kind(y.kind())?)?
            .f_sum(Kind::Float)?
            .f_backward()?;
        if i > 0 {
            g = x_in.grad();
        }
    }
    Ok(MicroOut::from(out))
}

/// Scores a micro-batch without gradients (evaluation).
pub fn evaluate(model: &CausalLm, mb: &MicroBatch) -> TchResult<MicroOut> {
    let _guard = tch::no_grad_guard();
    let hn = model.hidden_states(
        &mb.input_ids,
        mb.attention_mask.as_ref(),
        mb.position_ids.as_ref(),
        None,
        false,
    )?;
    Ok(head::score(&hn, &mb.labels, head_weight(model)?, None)?.into())
}

fn head_weight(model: &CausalLm) -> TchResult<&Tensor> {
    model.head_weight().ok_or_else(|| {
        tch::TchError::Kind(
            "the output head has an adapter of its own or is quantized: ftui trains LoRA on the decoder's layers (leave lm_head out of target_modules)".into(),
        )
    })
}
