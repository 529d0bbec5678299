//! The Phi-3 layout: q, k and v fused into `attn_qkv` (`self_attn.qkv_proj`) and gate and
//! up fused into `ffn_up` (`mlp.gate_up_proj`, gate rows first), both stored as
//! transformers stores them: llama.cpp's converter maps the fused tensors by name and
//! permutes nothing (Phi-3 uses the NeoX rope ordering).

/// `(GGUF stem, Hugging Face stem)` of the tensors of one decoder layer.
pub const LAYER_TENSORS: [(&str, &str); 6] = [
    ("attn_qkv", "self_attn.qkv_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_up", "mlp.gate_up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];
