//! Llama-family weights: Llama 2/3.x, Mistral, SmolLM/SmolLM2, TinyLlama, and
//! Qwen2, which is the same network with biases on q, k and v (`qkv_bias`).

use super::load::LayerLoader;
use super::{DecoderLayer, GateUpProj, ModelError, QkvProj};

pub fn layer(w: &LayerLoader, i: i64) -> Result<DecoderLayer, ModelError> {
    let c = w.config;
    let p = format!("model.layers.{i}");
    let (h, kvh, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
    Ok(DecoderLayer {
        input_layernorm: w.norm(&format!("{p}.input_layernorm"))?,
        qkv: QkvProj::Separate {
            q: w.linear(
                &format!("{p}.self_attn.q_proj"),
                [h * d, c.hidden_size],
                c.qkv_bias,
            )?,
            k: w.linear(
                &format!("{p}.self_attn.k_proj"),
                [kvh * d, c.hidden_size],
                c.qkv_bias,
            )?,
            v: w.linear(
                &format!("{p}.self_attn.v_proj"),
                [kvh * d, c.hidden_size],
                c.qkv_bias,
            )?,
        },
        o_proj: w.linear(
            &format!("{p}.self_attn.o_proj"),
            [c.hidden_size, h * d],
            c.o_bias,
        )?,
        post_attention_layernorm: w.norm(&format!("{p}.post_attention_layernorm"))?,
        gate_up: GateUpProj::Separate {
            gate: w.linear(
                &format!("{p}.mlp.gate_proj"),
                [c.intermediate_size, c.hidden_size],
                c.mlp_bias,
            )?,
            up: w.linear(
                &format!("{p}.mlp.up_proj"),
                [c.intermediate_size, c.hidden_size],
                c.mlp_bias,
            )?,
        },
        down_proj: w.linear(
            &format!("{p}.mlp.down_proj"),
            [c.hidden_size, c.intermediate_size],
            c.mlp_bias,
        )?,
        shared_qkv: None,
        shared_gate_up: None,
    }
    .share_inputs()?)
}
