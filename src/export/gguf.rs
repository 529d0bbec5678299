//! The merged model as one GGUF file for llama.cpp and Ollama, written natively in one
//! streaming pass, tensor by tensor, as llama.cpp's `convert_hf_to_gguf.py` would write it
//! (`crate::gguf::writer` is the format; this module decides what goes in):
//! - architecture `llama` (Llama, Mistral, SmolLM2; q/k rows permuted for llama.cpp's
//!   rope), `qwen2` or `phi3` (fused `attn_qkv`/`ffn_up`, nothing permuted), with the
//!   `{arch}.*` hyper-parameters typed as llama.cpp's loader demands;
//! - llama3 rope scaling as the `rope_freqs` tensor, linear scaling as keys;
//! - norms, biases and other 1-D tensors in F32, weights in the chosen type, falling
//!   back per tensor (reported) where a row is not a whole number of blocks;
//! - the tokenizer and the chat template ([`super::vocab`]).

use super::tensors::MergedTensor;
use super::{io_err, merged_tensors, ExportError, Prepared, Progress, Result};
use crate::gguf::arch::llama::permute_qk;
use crate::gguf::quantize::quantize;
use crate::gguf::writer::{GgufWriter, TensorPlan};
use crate::gguf::{GgmlType, GgufValue, TensorLayout};
use crate::model::{Arch, ArchConfig};
use crate::nn::RopeScaling;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The file types `ftui export --type` offers, named as llama.cpp names them.
#[allow(non_camel_case_types)] // llama.cpp's spellings
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    /// Q4_K for most weights, Q6_K where llama-quantize puts it (the head, half the
    /// `attn_v` and `ffn_down`) and for Phi-3's fused `attn_qkv` (Q5_K there).
    Q4_K_M,
}

impl FromStr for FileType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => FileType::F32,
            "f16" => FileType::F16,
            "bf16" => FileType::BF16,
            "q8_0" => FileType::Q8_0,
            "q4_0" => FileType::Q4_0,
            "q4_k_m" => FileType::Q4_K_M,
            _ => {
                return Err(format!(
                    "GGUF type `{s}`: choose f32, f16, bf16, q8_0, q4_0 or q4_k_m"
                ))
            }
        })
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl FileType {
    /// `general.file_type` (llama.cpp's `LlamaFileType`).
    fn id(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q8_0 => 7,
            FileType::Q4_K_M => 15,
            FileType::BF16 => 32,
        }
    }

    /// The type llama-quantize would give tensor `name` of decoder layer `layer` (of
    /// `layers`) in this file, before any fallback; `tied`: the embedding is the head.
    fn wanted(
        self,
        name: &str,
        shape: &[usize],
        layer: Option<usize>,
        layers: usize,
        tied: bool,
    ) -> GgmlType {
        if shape.len() < 2 || name.ends_with("_norm.weight") || !name.ends_with(".weight") {
            return GgmlType::F32;
        }
        let head = name == "output.weight" || (tied && name == "token_embd.weight");
        // llama-quantize's `use_more_bits`: the first and last eighth of the layers and
        // every third one between.
        let more_bits = layer
            .is_some_and(|i| i < layers / 8 || i >= 7 * layers / 8 || (i - layers / 8) % 3 == 2);
        let stem = name.rsplit('.').nth(1).unwrap_or_default();
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::BF16 => GgmlType::BF16,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q4_0 | FileType::Q4_K_M if head => GgmlType::Q6_K,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q4_K_M => match stem {
                "attn_qkv" => GgmlType::Q6_K,
                "attn_v" | "ffn_down" if more_bits => GgmlType::Q6_K,
                _ => GgmlType::Q4_K,
            },
        }
    }
}

/// The type a row of `row` values can take, from `wanted` down llama.cpp's fallbacks
/// (K-quants to 32-value blocks: Q4_K to Q4_0 where llama.cpp takes Q5_0, Q6_K to Q8_0;
/// then F16).
fn fitting(wanted: GgmlType, row: usize) -> GgmlType {
    let chain: &[GgmlType] = match wanted {
        GgmlType::Q4_K => &[GgmlType::Q4_K, GgmlType::Q4_0, GgmlType::Q8_0],
        GgmlType::Q6_K => &[GgmlType::Q6_K, GgmlType::Q8_0],
        GgmlType::Q4_0 => &[GgmlType::Q4_0, GgmlType::Q8_0],
        other => &[other, GgmlType::F16],
    };
    chain
        .iter()
        .copied()
        .find(|t| row.is_multiple_of(t.block_size()))
        .unwrap_or(GgmlType::F16)
}

/// What a GGUF export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufReport {
    pub tensors: usize,
    pub bytes: u64,
    pub file_type: FileType,
    /// Tensors stored in another type than the file's, and why.
    pub fallbacks: Vec<String>,
}

/// `general.architecture` for the model.
fn arch_name(c: &ArchConfig) -> &'static str {
    match c.arch {
        Arch::Llama => "llama",
        Arch::Qwen2 => "qwen2",
        Arch::Phi3 => "phi3",
    }
}

/// llama.cpp's per-pair rope divisors for llama3 scaling (`generate_extra_tensors`),
/// identical to transformers' `_compute_llama3_parameters` ratio.
fn llama3_rope_freqs(c: &ArchConfig, rope: &RopeScaling) -> Option<Vec<f32>> {
    match rope {
        RopeScaling::FreqFactors(f) => Some(f.clone()),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let dim = (c.head_dim as f64 * c.partial_rotary_factor) as i64;
            let old = *original_max_position_embeddings as f32;
            let (factor, lo, hi) = (
                *factor as f32,
                *low_freq_factor as f32,
                *high_freq_factor as f32,
            );
            let (lo_wl, hi_wl) = (old / lo, old / hi);
            Some(
                (0..dim / 2)
                    .map(|i| {
                        let freq = 1.0 / (c.rope_theta as f32).powf((2 * i) as f32 / dim as f32);
                        let wl = 2.0 * std::f32::consts::PI / freq;
                        if wl < hi_wl {
                            1.0
                        } else if wl > lo_wl {
                            factor
                        } else {
                            let s = (old / wl - lo) / (hi - lo);
                            1.0 / ((1.0 - s) / factor + s)
                        }
                    })
                    .collect(),
            )
        }
        RopeScaling::Linear { .. } => None,
    }
}

/// The `general.*` and `{arch}.*` keys.
fn model_metadata(p: &Prepared, ft: FileType) -> Vec<(String, GgufValue)> {
    let c = &p.model().config;
    let a = arch_name(c);
    let u = |v: i64| GgufValue::U32(v as u32);
    // The folder or file the weights came from, without extension.
    let name = p.loaded.path.file_stem().map_or_else(
        || p.source_name.clone(),
        |s| s.to_string_lossy().into_owned(),
    );
    let mut m = vec![
        (
            "general.architecture".to_string(),
            GgufValue::String(a.into()),
        ),
        ("general.type".into(), GgufValue::String("model".into())),
        ("general.name".into(), GgufValue::String(name)),
        ("general.file_type".into(), GgufValue::U32(ft.id())),
        ("general.quantization_version".into(), GgufValue::U32(2)),
    ];
    let rotary = (c.head_dim as f64 * c.partial_rotary_factor) as i64;
    let mut k = |key: &str, v: GgufValue| m.push((format!("{a}.{key}"), v));
    k("context_length", u(c.max_position_embeddings));
    k("embedding_length", u(c.hidden_size));
    k("block_count", u(c.num_hidden_layers));
    k("feed_forward_length", u(c.intermediate_size));
    k("attention.head_count", u(c.num_attention_heads));
    k("attention.head_count_kv", u(c.num_key_value_heads));
    k(
        "attention.layer_norm_rms_epsilon",
        GgufValue::F32(c.rms_norm_eps as f32),
    );
    k("rope.freq_base", GgufValue::F32(c.rope_theta as f32));
    if c.head_dim != c.hidden_size / c.num_attention_heads {
        k("attention.key_length", u(c.head_dim));
        k("attention.value_length", u(c.head_dim));
    }
    match c.arch {
        Arch::Llama => {
            k("vocab_size", u(c.vocab_size));
            k("rope.dimension_count", u(rotary));
        }
        Arch::Qwen2 => {}
        Arch::Phi3 => {
            k("rope.dimension_count", u(rotary));
            k("attention.sliding_window", u(c.sliding_window.unwrap_or(0)));
        }
    }
    if let Some(RopeScaling::Linear { factor }) = &c.rope_scaling {
        k("rope.scaling.type", GgufValue::String("linear".into()));
        k("rope.scaling.factor", GgufValue::F32(*factor as f32));
    }
    m
}

/// One tensor to write: its plan, where its values come from, and its layer.
struct Item<'a> {
    plan: TensorPlan,
    source: Source<'a>,
    /// For q/k in the `llama` architecture: the head count to permute rows by.
    permute_heads: Option<usize>,
}

enum Source<'a> {
    Model(MergedTensor<'a>),
    Values(Vec<f32>),
}

/// Writes the model as a GGUF file at `path` (`<path>.part` renamed at the end).
pub fn write_gguf(
    p: &Prepared,
    path: &Path,
    ft: FileType,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<GgufReport> {
    let c = &p.model().config;
    let layout = match c.arch {
        Arch::Llama => TensorLayout::Llama {
            rope_permuted: true,
        },
        Arch::Qwen2 => TensorLayout::Llama {
            rope_permuted: false,
        },
        Arch::Phi3 => TensorLayout::Phi3,
    };
    let (mut tensors, tied) = merged_tensors(p.model());
    // llama.cpp (up to early 2025) needs Phi-3's head even when tied.
    if tied && c.arch == Arch::Phi3 {
        let head = tensors
            .iter()
            .find(|t| t.name == "model.embed_tokens.weight")
            .map(|t| t.renamed("lm_head.weight"));
        tensors.extend(head);
    }
    let mut items = Vec::new();
    if let Some(factors) = c
        .rope_scaling
        .as_ref()
        .and_then(|r| llama3_rope_freqs(c, r))
    {
        if c.arch != Arch::Llama {
            return Err(ExportError::Unsupported(format!(
                "{}: llama3 rope scaling on a {} model",
                p.source_name,
                arch_name(c)
            )));
        }
        items.push(Item {
            plan: TensorPlan::from_shape("rope_freqs.weight", &[factors.len()], GgmlType::F32),
            source: Source::Values(factors),
            permute_heads: None,
        });
    }
    let layers = c.num_hidden_layers as usize;
    let mut fallbacks = Vec::new();
    for t in tensors {
        let name = layout.gguf_name(&t.name).ok_or_else(|| {
            ExportError::Unsupported(format!(
                "tensor `{}` has no GGUF name in the {} layout",
                t.name,
                arch_name(c)
            ))
        })?;
        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        let layer = name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|i| i.parse().ok());
        let wanted = ft.wanted(&name, &shape, layer, layers, tied && c.arch != Arch::Phi3);
        let row = shape.last().copied().unwrap_or(1);
        let ty = fitting(wanted, row);
        if ty != wanted {
            fallbacks.push(format!(
                "{name}: {ty} (rows of {row} values are not whole {wanted} blocks of {})",
                wanted.block_size()
            ));
        }
        let permute_heads = match (layout, name.split('.').nth(2)) {
            (
                TensorLayout::Llama {
                    rope_permuted: true,
                },
                Some("attn_q"),
            ) => Some(c.num_attention_heads as usize),
            (
                TensorLayout::Llama {
                    rope_permuted: true,
                },
                Some("attn_k"),
            ) => Some(c.num_key_value_heads as usize),
            _ => None,
        };
        items.push(Item {
            plan: TensorPlan::from_shape(name, &shape, ty),
            source: Source::Model(t),
            permute_heads,
        });
    }
    let mut metadata = model_metadata(p, ft);
    metadata.extend(super::vocab::tokenizer_metadata(p, c.vocab_size as usize)?);

    let tmp = crate::fsutil::partial_path(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let result = write_items(&tmp, &metadata, &items, progress);
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(GgufReport {
        tensors: items.len(),
        bytes,
        file_type: ft,
        fallbacks,
    })
}

fn write_items(
    tmp: &Path,
    metadata: &[(String, GgufValue)],
    items: &[Item<'_>],
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<u64> {
    let file = std::fs::File::create(tmp).map_err(io_err(tmp))?;
    let plans = items.iter().map(|i| i.plan.clone()).collect();
    let mut w = GgufWriter::start(std::io::BufWriter::new(file), metadata, plans)?;
    for (n, item) in items.iter().enumerate() {
        let values = match &item.source {
            Source::Model(t) => {
                let v = t.read_f32()?;
                match item.permute_heads {
                    Some(heads) => {
                        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
                        permute_qk(&v, &shape, heads)
                    }
                    None => v,
                }
            }
            Source::Values(v) => v.clone(),
        };
        let bytes = quantize(item.plan.ggml_type, &values).ok_or_else(|| {
            ExportError::Unsupported(format!(
                "{}: cannot store as {}",
                item.plan.name, item.plan.ggml_type
            ))
        })?;
        w.write_tensor(&item.plan.name, &bytes)?;
        let go_on = progress(&Progress {
            what: format!("{} ({})", item.plan.name, item.plan.ggml_type),
            done: n as u64 + 1,
            total: items.len() as u64,
        });
        if !go_on {
            return Err(ExportError::Stopped);
        }
    }
    let (out, bytes) = w.finish()?;
    let file = out.into_inner().map_err(|e| ExportError::Io {
        path: tmp.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(tmp))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_types_follow_llama_cpp() {
        let w = |ft: FileType, name: &str, layer| ft.wanted(name, &[576, 576], layer, 30, false);
        let norm = FileType::Q8_0.wanted("blk.0.attn_norm.weight", &[576], Some(0), 30, false);
        assert_eq!(norm, GgmlType::F32);
        let bias = FileType::Q8_0.wanted("blk.0.attn_q.bias", &[576], Some(0), 30, false);
        assert_eq!(bias, GgmlType::F32);
        assert_eq!(w(FileType::F16, "token_embd.weight", None), GgmlType::F16);
        assert_eq!(w(FileType::Q4_0, "output.weight", None), GgmlType::Q6_K);
        assert_eq!(w(FileType::Q4_0, "token_embd.weight", None), GgmlType::Q4_0);
        let tied = FileType::Q4_K_M.wanted("token_embd.weight", &[576, 576], None, 30, true);
        assert_eq!(tied, GgmlType::Q6_K);
        assert_eq!(
            w(FileType::Q4_K_M, "blk.0.ffn_down.weight", Some(0)),
            GgmlType::Q6_K
        );
        assert_eq!(
            w(FileType::Q4_K_M, "blk.4.ffn_down.weight", Some(4)),
            GgmlType::Q4_K
        );
        assert_eq!(
            w(FileType::Q4_K_M, "blk.5.ffn_down.weight", Some(5)),
            GgmlType::Q6_K
        );
        assert_eq!(
            w(FileType::Q4_K_M, "blk.8.attn_v.weight", Some(8)),
            GgmlType::Q6_K
        );
        assert_eq!(
            w(FileType::Q4_K_M, "blk.8.attn_q.weight", Some(8)),
            GgmlType::Q4_K
        );
        assert_eq!(w(FileType::Q8_0, "output.weight", None), GgmlType::Q8_0);
        // SmolLM2's 576-wide rows are no whole Q4_K blocks.
        assert_eq!(fitting(GgmlType::Q4_K, 576), GgmlType::Q4_0);
        assert_eq!(fitting(GgmlType::Q4_K, 1536), GgmlType::Q4_K);
        assert_eq!(fitting(GgmlType::Q6_K, 576), GgmlType::Q8_0);
        assert_eq!(fitting(GgmlType::Q8_0, 48), GgmlType::F16);
        assert_eq!("Q4_K_M".parse::<FileType>(), Ok(FileType::Q4_K_M));
        assert!("q5".parse::<FileType>().is_err());
    }
}
