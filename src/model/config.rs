//! The architecture description read from `config.json` (or from GGUF metadata):
//! both the pre-5 spellings (`rope_theta`, `rope_scaling`) and transformers 5's
//! `rope_parameters` are understood. `config.json` is read through serde, so a
//! value of the wrong type is refused with its key, never taken as the default.

use crate::nn::RopeScaling;
use serde::Deserialize;
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

/// The keys of `config.json` ftui reads, as typed as transformers types them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigJson {
    model_type: Option<String>,
    vocab_size: Option<i64>,
    hidden_size: Option<i64>,
    intermediate_size: Option<i64>,
    num_hidden_layers: Option<i64>,
    num_attention_heads: Option<i64>,
    num_key_value_heads: Option<i64>,
    head_dim: Option<i64>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<RopeJson>,
    rope_parameters: Option<RopeJson>,
    partial_rotary_factor: Option<f64>,
    max_position_embeddings: Option<i64>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    bos_token_id: Option<i64>,
    eos_token_id: Option<OneOrMany>,
    pad_token_id: Option<i64>,
    sliding_window: Option<i64>,
    use_sliding_window: Option<bool>,
}

/// `rope_scaling` (before transformers 5) or `rope_parameters` (5 and later).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RopeJson {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    type_: Option<String>,
    rope_theta: Option<f64>,
    partial_rotary_factor: Option<f64>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

/// `eos_token_id`: one id or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(i64),
    Many(Vec<i64>),
}

impl ArchConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigJsonError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigJsonError {
            file: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Self::from_json_str(&text).map_err(|message| ConfigJsonError {
            file: path.display().to_string(),
            message,
        })
    }

    /// Reads `config.json` text; the error names the key at fault.
    pub fn from_json_str(text: &str) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: ConfigJson = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            if key == "." {
                format!("not valid JSON: {}", e.inner())
            } else {
                format!("`{key}`: {}", e.inner())
            }
        })?;
        Self::from_raw(raw)
    }

    fn from_raw(v: ConfigJson) -> Result<Self, String> {
        let model_type = v.model_type.as_deref().unwrap_or("");
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
        let need = |value: Option<i64>, k: &str| value.ok_or_else(|| format!("`{k}` is missing"));
        let hidden_size = need(v.hidden_size, "hidden_size")?;
        let num_attention_heads = need(v.num_attention_heads, "num_attention_heads")?;
        // transformers 5 folds rope settings into `rope_parameters`.
        let params = v.rope_parameters.as_ref();
        let scaling = params.or(v.rope_scaling.as_ref());
        let rope_scaling = match scaling {
            None => None,
            Some(s) => {
                let factor = || s.factor.ok_or("rope scaling `factor` is missing");
                match s
                    .rope_type
                    .as_deref()
                    .or(s.type_.as_deref())
                    .unwrap_or("default")
                {
                    "default" => None,
                    "linear" => Some(RopeScaling::Linear { factor: factor()? }),
                    "llama3" => Some(RopeScaling::Llama3 {
                        factor: factor()?,
                        low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                        high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                        original_max_position_embeddings: s
                            .original_max_position_embeddings
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
        let attention_bias = v.attention_bias.unwrap_or(false);
        Ok(ArchConfig {
            arch,
            vocab_size: need(v.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: need(v.intermediate_size, "intermediate_size")?,
            num_hidden_layers: need(v.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: v.num_key_value_heads.unwrap_or(num_attention_heads),
            head_dim: v.head_dim.unwrap_or(hidden_size / num_attention_heads),
            rms_norm_eps: v.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: params
                .and_then(|p| p.rope_theta)
                .or(v.rope_theta)
                .unwrap_or(10000.0),
            rope_scaling,
            partial_rotary_factor: params
                .and_then(|p| p.partial_rotary_factor)
                .or(v.partial_rotary_factor)
                .unwrap_or(1.0),
            max_position_embeddings: v.max_position_embeddings.unwrap_or(4096),
            tie_word_embeddings: v.tie_word_embeddings.unwrap_or(false),
            qkv_bias: arch == Arch::Qwen2 || attention_bias,
            o_bias: arch != Arch::Qwen2 && attention_bias,
            mlp_bias: v.mlp_bias.unwrap_or(false),
            bos_token_id: v.bos_token_id,
            eos_token_ids: match v.eos_token_id {
                None => Vec::new(),
                Some(OneOrMany::One(id)) => vec![id],
                Some(OneOrMany::Many(ids)) => ids,
            },
            pad_token_id: v.pad_token_id,
            // Qwen2 only slides with use_sliding_window; Mistral and Phi-3 when set.
            sliding_window: v
                .sliding_window
                .filter(|_| arch != Arch::Qwen2 || v.use_sliding_window.unwrap_or(false)),
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
        let a = ArchConfig::from_json_str(&old.to_string()).expect("old");
        let b = ArchConfig::from_json_str(&new.to_string()).expect("new");
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 500000.0);
        assert_eq!(a.head_dim, 4);
        assert_eq!(a.num_key_value_heads, 2);
        assert_eq!(a.eos_token_ids, vec![1, 2]);
    }

    #[test]
    fn unknown_model_type_is_named() {
        let v = serde_json::json!({"model_type":"gemma3"});
        let e = ArchConfig::from_json_str(&v.to_string()).expect_err("unsupported");
        assert!(e.contains("gemma3"), "{e}");
    }

    #[test]
    fn a_wrongly_typed_value_names_its_key() {
        let v = serde_json::json!({"model_type":"llama","vocab_size":10,"hidden_size":8,
            "intermediate_size":16,"num_hidden_layers":"2","num_attention_heads":2});
        let e = ArchConfig::from_json_str(&v.to_string()).expect_err("string for an integer");
        assert!(e.contains("`num_hidden_layers`"), "{e}");
        let v = serde_json::json!({"model_type":"llama","vocab_size":10,"hidden_size":8,
            "intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":2,
            "rope_scaling":{"rope_type":"linear","factor":"8"}});
        let e = ArchConfig::from_json_str(&v.to_string()).expect_err("string for a float");
        assert!(e.contains("rope_scaling.factor"), "{e}");
    }
}
