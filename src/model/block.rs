//! One decoder block (pre-norm attention, then pre-norm gated MLP) and what the
//! blocks of one forward pass share. A block is a public stage so a trainer can
//! run it without keeping activations and recompute it in backward.

use super::ArchConfig;
use crate::nn::{attention, AttnMask, KvCache, Linear, RmsNorm, Rope, SharedInput};
use crate::torch::TchResult;
use tch::Tensor;

/// The q/k/v projections: separate (Llama, Qwen2) or fused (Phi-3).
// A few dozen of these exist per model; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum QkvProj {
    Separate { q: Linear, k: Linear, v: Linear },
    Fused { qkv: Linear },
}

/// The MLP's gate and up projections: separate or fused (Phi-3).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum GateUpProj {
    Separate { gate: Linear, up: Linear },
    Fused { gate_up: Linear },
}

#[derive(Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub qkv: QkvProj,
    pub o_proj: Linear,
    pub post_attention_layernorm: RmsNorm,
    pub gate_up: GateUpProj,
    pub down_proj: Linear,
    /// Separate q, k, v whose weights are views of one (see [`SharedInput`]).
    pub shared_qkv: Option<SharedInput>,
    /// Separate gate and up whose weights are views of one.
    pub shared_gate_up: Option<SharedInput>,
}

/// What every block of one forward pass shares: the rotary angles of its
/// positions and the attention mask. Built once by [`super::CausalLm::context`].
pub struct BlockContext<'a> {
    pub config: &'a ArchConfig,
    pub rope: &'a Rope,
    pub cos: Tensor,
    pub sin: Tensor,
    pub mask: AttnMask,
    pub eager: bool,
}

impl DecoderLayer {
    /// Shares the base GEMM of projections that read the same input (separate
    /// q/k/v, gate/up) where their weights allow (see [`SharedInput`]).
    pub fn share_inputs(mut self) -> TchResult<Self> {
        if let QkvProj::Separate { q, k, v } = &mut self.qkv {
            self.shared_qkv = SharedInput::new(&mut [q, k, v])?;
        }
        if let GateUpProj::Separate { gate, up } = &mut self.gate_up {
            self.shared_gate_up = SharedInput::new(&mut [gate, up])?;
        }
        Ok(self)
    }

    /// The block's output for hidden states `x` `[B, T, hidden]`. `cache`: this
    /// block's slot (layer index) in a key/value cache, extended in place.
    /// `train` turns adapter dropout on.
    pub fn forward_t(
        &self,
        x: &Tensor,
        ctx: &BlockContext,
        cache: Option<(&mut KvCache, usize)>,
        train: bool,
    ) -> TchResult<Tensor> {
        let (b, t) = (x.size()[0], x.size()[1]);
        let cfg = ctx.config;
        let (h, kvh, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let normed = self.input_layernorm.forward(x)?;
        let (q, k, v) = match (&self.qkv, &self.shared_qkv) {
            (QkvProj::Separate { q, k, v }, Some(shared)) => {
                let mut out = shared.forward_t(&normed, &[q, k, v], train)?.into_iter();
                match (out.next(), out.next(), out.next()) {
                    (Some(q), Some(k), Some(v)) => (q, k, v),
                    _ => return Err(tch::TchError::Kind("q/k/v: three outputs expected".into())),
                }
            }
            (QkvProj::Separate { q, k, v }, None) => (
                q.forward_t(&normed, train)?,
                k.forward_t(&normed, train)?,
                v.forward_t(&normed, train)?,
            ),
            (QkvProj::Fused { qkv }, _) => {
                let all = qkv.forward_t(&normed, train)?;
                (
                    all.f_narrow(-1, 0, h * d)?,
                    all.f_narrow(-1, h * d, kvh * d)?,
                    all.f_narrow(-1, (h + kvh) * d, kvh * d)?,
                )
            }
        };
        let q = q.f_view([b, t, h, d])?.f_transpose(1, 2)?;
        let k = k.f_view([b, t, kvh, d])?.f_transpose(1, 2)?;
        let v = v.f_view([b, t, kvh, d])?.f_transpose(1, 2)?;
        let q = ctx.rope.apply(&q, &ctx.cos, &ctx.sin)?;
        let k = ctx.rope.apply(&k, &ctx.cos, &ctx.sin)?;
        let (k, v) = match cache {
            Some((cache, i)) => cache.append(i, &k, &v)?,
            None => (k, v),
        };
        let (attn, _) = attention(&q, &k, &v, &ctx.mask, ctx.eager)?;
        let attn = attn.f_transpose(1, 2)?.f_reshape([b, t, h * d])?;
        let x = x.f_add(&self.o_proj.forward_t(&attn, train)?)?;
        let normed = self.post_attention_layernorm.forward(&x)?;
        let (gate, up) = match (&self.gate_up, &self.shared_gate_up) {
            (GateUpProj::Separate { gate, up }, Some(shared)) => {
                let mut out = shared.forward_t(&normed, &[gate, up], train)?.into_iter();
                match (out.next(), out.next()) {
                    (Some(g), Some(u)) => (g, u),
                    _ => return Err(tch::TchError::Kind("gate/up: two outputs expected".into())),
                }
            }
            (GateUpProj::Separate { gate, up }, None) => (
                gate.forward_t(&normed, train)?,
                up.forward_t(&normed, train)?,
            ),
            (GateUpProj::Fused { gate_up }, _) => {
                let both = gate_up.forward_t(&normed, train)?;
                let n = both.size()[2] / 2;
                (both.f_narrow(-1, 0, n)?, both.f_narrow(-1, n, n)?)
            }
        };
        let mlp = self
            .down_proj
            .forward_t(&gate.f_silu()?.f_mul(&up)?, train)?;
        x.f_add(&mlp)
    }
}
