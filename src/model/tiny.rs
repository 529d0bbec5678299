//! Tiny random models built in memory, for unit tests that need a whole model
//! but no files.

use super::weights::WeightSource;
use super::{build, ArchConfig, CausalLm, LoadOptions};
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// A random Llama with `layers` blocks (hidden 16, 4 heads of which 2 key/value
/// heads, vocabulary 32), untied head.
pub fn llama(layers: i64) -> CausalLm {
    let config = ArchConfig::from_json_str(&format!(
        r#"{{"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":24,
        "num_hidden_layers":{layers},"num_attention_heads":4,"num_key_value_heads":2}}"#
    ))
    .expect("a valid config");
    tch::manual_seed(0);
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: String, shape: &[i64]| {
        t.insert(
            name,
            Tensor::randn(shape, (Kind::Float, tch::Device::Cpu)) * 0.2,
        );
    };
    put("model.embed_tokens.weight".into(), &[32, 16]);
    put("lm_head.weight".into(), &[32, 16]);
    put("model.norm.weight".into(), &[16]);
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        put(format!("{p}.input_layernorm.weight"), &[16]);
        put(format!("{p}.post_attention_layernorm.weight"), &[16]);
        put(format!("{p}.self_attn.q_proj.weight"), &[16, 16]);
        put(format!("{p}.self_attn.k_proj.weight"), &[8, 16]);
        put(format!("{p}.self_attn.v_proj.weight"), &[8, 16]);
        put(format!("{p}.self_attn.o_proj.weight"), &[16, 16]);
        put(format!("{p}.mlp.gate_proj.weight"), &[24, 16]);
        put(format!("{p}.mlp.up_proj.weight"), &[24, 16]);
        put(format!("{p}.mlp.down_proj.weight"), &[16, 24]);
    }
    let opts = LoadOptions {
        dtype: crate::config::DType::Float32,
        ..LoadOptions::default()
    };
    build(
        config,
        &WeightSource::from_tensors(t),
        Path::new("tiny"),
        &opts,
    )
    .expect("builds")
}
