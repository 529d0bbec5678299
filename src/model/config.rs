//! The architecture description read from `config.json` (or from GGUF metadata):
//! both the pre-5 spellings (`rope_theta`, `rope_scaling`) and transformers 5's
//! `rope_parameters` are understood.

use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3.x, SmolLM/SmolLM2, TinyLlama, Mistral.
    Llama,
    /// Llama with q/k/v biases.
    Qwen2,
    /// Fused `qkv_proj` and `gate_up_proj`.
    Phi3,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    Linear {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Per-pair divisors of the inverse frequencies (one per rotary pair): llama.cpp's
    /// `rope_freqs` tensor, the form llama3 scaling takes in a GGUF file.
    FreqFactors(Vec<f32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArchConfig {
    pub arch: Arch,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub partial_rotary_factor: f64,
    pub max_position_embeddings: i64,
    pub tie_word_embeddings: bool,
    /// Biases on q, k and v.
    pub qkv_bias: bool,
    /// Bias on the attention output projection.
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub bos_token_id: Option<i64>,
    pub eos_token_ids: Vec<i64>,
    pub pad_token_id: Option<i64>,
    /// Sliding-window attention: each token sees at most this many tokens
    /// back (itself included), as transformers' sliding-window mask.
    pub sliding_window: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigJsonError {
    pub file: String,
    pub message: String,
}

fn ids(v: Option<&Value>) -> Vec<i64> {
    match v {
        Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
        _ => Vec::new(),
    }
}

impl ArchConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigJsonError> {
        let err = |message: String| ConfigJsonError {
            file: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        Self::from_json(&v).map_err(err)
    }

    pub fn from_json(v: &Value) -> Result<Self, String> {
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
        let arch = match model_type {
            "llama" | "mistral" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "phi3" => Arch::Phi3,
            other => {
                return Err(format!(
                    "model_type `{other}` is not supported (supported: llama, mistral, qwen2, phi3)"
                ))
            }
        };
        let int = |k: &str| -> Result<i64, String> {
            v.get(k)
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("`{k}` is missing or not an integer"))
        };
        let hidden_size = int("hidden_size")?;
        let num_attention_heads = int("num_attention_heads")?;
        let num_key_value_heads = v
            .get("num_key_value_heads")
            .and_then(Value::as_i64)
            .unwrap_or(num_attention_heads);
        let head_dim = v
            .get("head_dim")
            .and_then(Value::as_i64)
            .unwrap_or(hidden_size / num_attention_heads);
        // transformers 5 folds rope settings into `rope_parameters`.
        let rope_params = v.get("rope_parameters").filter(|p| p.is_object());
        let rope_scaling_v = rope_params
            .or(v.get("rope_scaling"))
            .filter(|p| p.is_object());
        let rope_theta = rope_params
            .and_then(|p| p.get("rope_theta"))
            .or(v.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10000.0);
        let rope_scaling = match rope_scaling_v {
            None => None,
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or(s.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                let f = |k: &str| s.get(k).and_then(Value::as_f64);
                match kind {
                    "default" => None,
                    "linear" => Some(RopeScaling::Linear {
                        factor: f("factor").ok_or("rope_scaling.factor is missing")?,
                    }),
                    "llama3" => Some(RopeScaling::Llama3 {
                        factor: f("factor").ok_or("rope_scaling.factor is missing")?,
                        low_freq_factor: f("low_freq_factor").unwrap_or(1.0),
                        high_freq_factor: f("high_freq_factor").unwrap_or(4.0),
                        original_max_position_embeddings: f("original_max_position_embeddings")
                            .unwrap_or(8192.0),
                    }),
                    other => {
                        return Err(format!(
                        "rope scaling type `{other}` is not supported (supported: linear, llama3)"
                    ))
                    }
                }
            }
        };
        let partial_rotary_factor = rope_params
            .and_then(|p| p.get("partial_rotary_factor"))
            .or(v.get("partial_rotary_factor"))
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        let flag = |k: &str, d: bool| v.get(k).and_then(Value::as_bool).unwrap_or(d);
        let attention_bias = flag("attention_bias", false);
        Ok(ArchConfig {
            arch,
            vocab_size: int("vocab_size")?,
            hidden_size,
            intermediate_size: int("intermediate_size")?,
            num_hidden_layers: int("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: v
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            partial_rotary_factor,
            max_position_embeddings: v
                .get("max_position_embeddings")
                .and_then(Value::as_i64)
                .unwrap_or(4096),
            tie_word_embeddings: flag("tie_word_embeddings", false),
            qkv_bias: arch == Arch::Qwen2 || attention_bias,
            o_bias: arch != Arch::Qwen2 && attention_bias,
            mlp_bias: flag("mlp_bias", false),
            bos_token_id: v.get("bos_token_id").and_then(Value::as_i64),
            eos_token_ids: ids(v.get("eos_token_id")),
            pad_token_id: v.get("pad_token_id").and_then(Value::as_i64),
            // Qwen2 only slides with use_sliding_window; Mistral and Phi-3 when set.
            sliding_window: v
                .get("sliding_window")
                .and_then(Value::as_i64)
                .filter(|_| arch != Arch::Qwen2 || flag("use_sliding_window", false)),
        })
    }

    pub fn arch_name(&self) -> &'static str {
        match self.arch {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Phi3 => "phi3",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_rope_spellings() {
        let old = serde_json::json!({"model_type":"llama","vocab_size":10,"hidden_size":8,
            "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
            "rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192},
            "eos_token_id":[1,2]});
        let new = serde_json::json!({"model_type":"llama","vocab_size":10,"hidden_size":8,
            "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
            "rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192},
            "eos_token_id":[1,2]});
        let a = ArchConfig::from_json(&old).expect("old");
        let b = ArchConfig::from_json(&new).expect("new");
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 500000.0);
        assert_eq!(a.head_dim, 4);
        assert_eq!(a.num_key_value_heads, 2);
        assert_eq!(a.eos_token_ids, vec![1, 2]);
    }

    #[test]
    fn unknown_model_type_is_named() {
        let v = serde_json::json!({"model_type":"gemma3"});
        let e = ArchConfig::from_json(&v).expect_err("unsupported");
        assert!(e.contains("gemma3"), "{e}");
    }
}
