//! From an architecture and a weight source to a [`CausalLm`]: each weight read,
//! shape-checked and (per `[quantization]`) quantized as it is read.

use super::config::{Arch, ArchConfig};
use super::weights::WeightSource;
use super::{CausalLm, ModelError};
use crate::config::{AttnImplementation, DType};
use crate::gguf::{GgufFile, GgufLlamaParams};
use crate::nn::RopeScaling;
use crate::nn::{Linear, RmsNorm, Rope};
use std::path::Path;
use tch::{Device, Kind};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub dtype: DType,
    pub device: Device,
    pub attn: AttnImplementation,
    /// `[quantization]`: which decoder linears to store in 4 or 8 bits.
    pub quantization: Option<crate::config::QuantizationConfig>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: DType::Auto,
            device: Device::Cpu,
            attn: AttnImplementation::Sdpa,
            quantization: None,
        }
    }
}

/// Reads weights for one layer, checking shapes.
pub struct LayerLoader<'a> {
    pub src: &'a WeightSource,
    pub config: &'a ArchConfig,
    pub kind: Kind,
    pub device: Device,
    pub file: &'a Path,
    pub quant: Option<&'a crate::quant::QuantPlan>,
}

impl LayerLoader<'_> {
    fn tensor(&self, name: &str, expected: &[i64]) -> Result<tch::Tensor, ModelError> {
        let t = self.src.tensor(name, self.kind, self.device)?;
        if t.size() != expected {
            return Err(ModelError::Shape {
                file: self.file.display().to_string(),
                name: name.into(),
                got: t.size(),
                expected: expected.to_vec(),
            });
        }
        Ok(t)
    }

    pub fn linear(&self, prefix: &str, shape: [i64; 2], bias: bool) -> Result<Linear, ModelError> {
        let weight = self.tensor(&format!("{prefix}.weight"), &shape)?;
        // Each weight is quantized as it is read, so only one is ever dense.
        let weight = match self.quant {
            Some(plan) => plan
                .load_linear(prefix, weight)
                .map_err(|e| ModelError::Other(format!("{prefix}: {e}")))?,
            None => crate::quant::LinearWeight::Dense(weight),
        };
        let bias_name = format!("{prefix}.bias");
        let bias = if bias || self.src.contains(&bias_name) {
            Some(self.tensor(&bias_name, &shape[..1])?)
        } else {
            None
        };
        Ok(Linear::new(weight, bias))
    }

    pub fn norm(&self, prefix: &str) -> Result<RmsNorm, ModelError> {
        Ok(RmsNorm {
            weight: self.tensor(&format!("{prefix}.weight"), &[self.config.hidden_size])?,
            eps: self.config.rms_norm_eps,
        })
    }
}

/// Builds the network from a weight source.
pub fn build(
    config: ArchConfig,
    src: &WeightSource,
    file: &Path,
    opts: &LoadOptions,
) -> Result<CausalLm, ModelError> {
    let kind = crate::device::resolve_kind(opts.dtype, opts.device);
    let _guard = tch::no_grad_guard();
    let plan = opts
        .quantization
        .as_ref()
        .and_then(crate::quant::QuantPlan::from_config);
    let w = LayerLoader {
        src,
        config: &config,
        kind,
        device: opts.device,
        file,
        quant: plan.as_ref(),
    };
    let embed_tokens = w.tensor(
        "model.embed_tokens.weight",
        &[config.vocab_size, config.hidden_size],
    )?;
    let layers = (0..config.num_hidden_layers)
        .map(|i| match config.arch {
            Arch::Llama | Arch::Qwen2 => super::llama::layer(&w, i),
            Arch::Phi3 => super::phi3::layer(&w, i),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let norm = w.norm("model.norm")?;
    // A missing lm_head means tied embeddings (GGUF files omit the copy).
    let lm_head = if !config.tie_word_embeddings && src.contains("lm_head.weight") {
        Some(w.linear("lm_head", [config.vocab_size, config.hidden_size], false)?)
    } else {
        None
    };
    let rope = Rope::new(
        config.head_dim,
        config.partial_rotary_factor,
        config.rope_theta,
        config.rope_scaling.as_ref(),
        opts.device,
    )?;
    Ok(CausalLm {
        config,
        embed_tokens,
        layers,
        norm,
        lm_head,
        rope,
        device: opts.device,
        kind,
        eager_attention: opts.attn == AttnImplementation::Eager,
        saved_modules: Vec::new(),
        active_adapter: None,
    })
}

/// The architecture of a GGUF file from its metadata.
pub fn gguf_config(path: &Path, file: &GgufFile) -> Result<ArchConfig, ModelError> {
    let h = file
        .llama_hparams()
        .map_err(|e| ModelError::file(path, e.to_string()))?;
    let arch = match h.architecture.as_str() {
        "llama" | "mistral" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        "phi3" => Arch::Phi3,
        other => {
            return Err(ModelError::file(
                path,
                format!(
                    "GGUF architecture `{other}` is not supported (supported: llama, qwen2, phi3)"
                ),
            ))
        }
    };
    let head_dim = h.head_dim as i64;
    let rotary_dim = h.rope_dimension_count.unwrap_or(h.head_dim);
    let rope_scaling = gguf_rope_scaling(path, file, &h, rotary_dim / 2)?;
    let specials = file.special_tokens();
    Ok(ArchConfig {
        arch,
        vocab_size: h.vocab_size as i64,
        hidden_size: h.embedding_length as i64,
        intermediate_size: h.feed_forward_length as i64,
        num_hidden_layers: h.block_count as i64,
        num_attention_heads: h.head_count as i64,
        num_key_value_heads: h.head_count_kv as i64,
        head_dim,
        rms_norm_eps: h.rms_norm_eps as f64,
        rope_theta: h.rope_freq_base as f64,
        rope_scaling,
        partial_rotary_factor: rotary_dim as f64 / head_dim as f64,
        max_position_embeddings: h.context_length as i64,
        tie_word_embeddings: !file.tensor_names().any(|n| n == "output.weight"),
        qkv_bias: arch == Arch::Qwen2,
        o_bias: false,
        mlp_bias: false,
        bos_token_id: specials.bos.map(i64::from),
        eos_token_ids: specials.eos.map(i64::from).into_iter().collect(),
        pad_token_id: specials.pad.map(i64::from),
        // Qwen2 slides only with `use_sliding_window`, which GGUF does not carry.
        sliding_window: h
            .sliding_window
            .filter(|_| arch != Arch::Qwen2)
            .map(|w| w as i64),
    })
}

/// The rope scaling a GGUF file states: `rope.scaling.type` linear, or llama.cpp's
/// `rope_freqs` factors (llama3 scaling as its converter writes it), applied as llama.cpp
/// applies them. Other kinds are refused rather than silently ignored.
fn gguf_rope_scaling(
    path: &Path,
    file: &GgufFile,
    h: &GgufLlamaParams,
    rotary_pairs: usize,
) -> Result<Option<RopeScaling>, ModelError> {
    let unsupported = |what: &str| {
        ModelError::file(
            path,
            format!("{what} is not supported (supported rope scaling: linear, llama3)"),
        )
    };
    if file.tensor_info("rope_factors_long.weight").is_some() {
        return Err(unsupported("longrope rope scaling (`rope_factors_long`)"));
    }
    let kind = h.rope_scaling_type.as_deref().unwrap_or("none");
    match (kind, &h.rope_freq_factors) {
        ("none", None) => Ok(None),
        ("none", Some(factors)) if factors.len() == rotary_pairs => {
            Ok(Some(RopeScaling::FreqFactors(factors.clone())))
        }
        ("none", Some(factors)) => Err(ModelError::file(
            path,
            format!(
                "rope_freqs.weight has {} values, expected {rotary_pairs} (one per rotary pair)",
                factors.len()
            ),
        )),
        // llama.cpp reads a missing or zero factor as no scaling.
        ("linear", None) => Ok(h
            .rope_scaling_factor
            .filter(|&f| f > 0.0)
            .map(|factor| RopeScaling::Linear { factor })),
        ("linear", Some(_)) => Err(unsupported(
            "linear rope scaling combined with `rope_freqs`",
        )),
        (other, _) => Err(unsupported(&format!("`{other}` rope scaling"))),
    }
}
