//! Phi-3 weights: q, k and v fused into `qkv_proj` and gate and up into
//! `gate_up_proj`, named as in transformers so the book's `target_modules`
//! (`o_proj, qkv_proj, gate_up_proj, down_proj`) apply unchanged.

use super::load::LayerLoader;
use super::{DecoderLayer, GateUpProj, ModelError, QkvProj};

pub fn layer(w: &LayerLoader, i: i64) -> Result<DecoderLayer, ModelError> {
    let c = w.config;
    let p = format!("model.layers.{i}");
    let (h, kvh, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
    Ok(DecoderLayer {
        input_layernorm: w.norm(&format!("{p}.input_layernorm"))?,
        qkv: QkvProj::Fused {
            qkv: w.linear(
                &format!("{p}.self_attn.qkv_proj"),
                [(h + 2 * kvh) * d, c.hidden_size],
                false,
            )?,
        },
        o_proj: w.linear(
            &format!("{p}.self_attn.o_proj"),
            [c.hidden_size, h * d],
            false,
        )?,
        post_attention_layernorm: w.norm(&format!("{p}.post_attention_layernorm"))?,
        gate_up: GateUpProj::Fused {
            gate_up: w.linear(
                &format!("{p}.mlp.gate_up_proj"),
                [2 * c.intermediate_size, c.hidden_size],
                false,
            )?,
        },
        down_proj: w.linear(
            &format!("{p}.mlp.down_proj"),
            [c.hidden_size, c.intermediate_size],
            false,
        )?,
        shared_qkv: None,
        shared_gate_up: None,
    })
}
