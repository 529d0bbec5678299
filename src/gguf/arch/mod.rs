//! How llama.cpp's converter (`convert_hf_to_gguf.py`) names and lays out each
//! architecture's tensors, and the way back to the Hugging Face checkpoint they came
//! from. One file per tensor layout holds its name table (GGUF stem, Hugging Face stem),
//! usable in both directions, and any reordering the converter applied:
//! [`llama`] (Llama, Mistral, SmolLM, Qwen2: separate projections) and [`phi3`] (fused
//! `attn_qkv`, and `ffn_up` holding gate and up).

pub mod llama;
pub mod phi3;

use std::collections::HashMap;

use super::{GgufError, GgufFile, Result};

/// Tensors outside the decoder layers, named alike in every layout here.
const GLOBAL_TENSORS: [(&str, &str); 3] = [
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

/// The tensor layout of a GGUF architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorLayout {
    /// Separate q/k/v and gate/up projections. `rope_permuted`: llama.cpp stored the rows
    /// of q and k in its rope order (the `llama` architecture only, as transformers
    /// assumes).
    Llama { rope_permuted: bool },
    /// Phi-3: q, k and v fused into one projection, gate and up into another.
    Phi3,
}

impl TensorLayout {
    /// The `general.architecture` values [`TensorLayout::of`] knows, for messages.
    pub const SUPPORTED: &'static str = "llama, mistral, qwen2, phi3";

    /// The layout of `general.architecture`.
    pub fn of(architecture: &str) -> Option<TensorLayout> {
        Some(match architecture {
            "llama" => TensorLayout::Llama {
                rope_permuted: true,
            },
            "mistral" | "qwen2" => TensorLayout::Llama {
                rope_permuted: false,
            },
            "phi3" => TensorLayout::Phi3,
            _ => return None,
        })
    }

    /// `(GGUF stem, Hugging Face stem)` of every tensor in decoder layer `blk.N`.
    pub fn layer_tensors(self) -> &'static [(&'static str, &'static str)] {
        match self {
            TensorLayout::Llama { .. } => &llama::LAYER_TENSORS,
            TensorLayout::Phi3 => &phi3::LAYER_TENSORS,
        }
    }

    /// The Hugging Face name of a GGUF tensor, or `None` for names without one (e.g.
    /// llama.cpp's `rope_freqs.weight`, which holds rope frequency factors).
    pub fn hf_name(self, gguf_name: &str) -> Option<String> {
        let (stem, suffix) = gguf_name.rsplit_once('.')?;
        if suffix != "weight" && suffix != "bias" {
            return None;
        }
        if let Some((_, hf)) = GLOBAL_TENSORS.iter().find(|(g, _)| *g == stem) {
            return Some(format!("{hf}.{suffix}"));
        }
        let (layer, part) = stem.strip_prefix("blk.")?.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (_, hf) = self.layer_tensors().iter().find(|(g, _)| *g == part)?;
        Some(format!("model.layers.{layer}.{hf}.{suffix}"))
    }

    /// The GGUF name of a Hugging Face tensor ([`TensorLayout::hf_name`] the other way),
    /// or `None` for a tensor this layout has no place for.
    pub fn gguf_name(self, hf_name: &str) -> Option<String> {
        let (stem, suffix) = hf_name.rsplit_once('.')?;
        if suffix != "weight" && suffix != "bias" {
            return None;
        }
        if let Some((g, _)) = GLOBAL_TENSORS.iter().find(|(_, h)| *h == stem) {
            return Some(format!("{g}.{suffix}"));
        }
        let (layer, part) = stem.strip_prefix("model.layers.")?.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (g, _) = self.layer_tensors().iter().find(|(_, h)| *h == part)?;
        Some(format!("blk.{layer}.{g}.{suffix}"))
    }
}

/// A GGUF file seen through Hugging Face tensor names and layouts: what a model built for
/// a Hugging Face checkpoint reads.
pub struct HfTensors {
    file: GgufFile,
    layout: TensorLayout,
    /// Hugging Face name -> GGUF name.
    names: HashMap<String, String>,
}

impl HfTensors {
    /// Maps the file's tensors by its `general.architecture`.
    pub fn new(file: GgufFile) -> Result<HfTensors> {
        let architecture = file.get_str("general.architecture")?;
        let layout =
            TensorLayout::of(architecture).ok_or_else(|| GgufError::UnsupportedArchitecture {
                path: file.path().to_path_buf(),
                architecture: architecture.to_string(),
            })?;
        let names = file
            .tensor_names()
            .filter_map(|g| layout.hf_name(g).map(|h| (h, g.to_string())))
            .collect();
        Ok(HfTensors {
            file,
            layout,
            names,
        })
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    pub fn layout(&self) -> TensorLayout {
        self.layout
    }

    /// Whether the file has the tensor the checkpoint calls `hf_name`.
    pub fn contains(&self, hf_name: &str) -> bool {
        self.names.contains_key(hf_name)
    }

    /// Every mapped tensor, by Hugging Face name, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.keys().map(String::as_str)
    }

    /// The tensor the checkpoint calls `hf_name`, as `f32` values in the checkpoint's
    /// layout, with its row-major shape.
    pub fn dequantize(&self, hf_name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let gguf_name = self
            .names
            .get(hf_name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.file.path().to_path_buf(),
                name: hf_name.to_string(),
            })?;
        let (data, shape) = self.file.dequantize(gguf_name)?;
        match self.layout {
            TensorLayout::Llama {
                rope_permuted: true,
            } => llama::undo_rope_permutation(&self.file, gguf_name, data, shape),
            TensorLayout::Llama { .. } | TensorLayout::Phi3 => Ok((data, shape)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_names() {
        let hf = |g: &str| TensorLayout::of("llama").and_then(|l| l.hf_name(g));
        let cases = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"),
            (
                "blk.12.attn_q.weight",
                "model.layers.12.self_attn.q_proj.weight",
            ),
            (
                "blk.0.attn_output.weight",
                "model.layers.0.self_attn.o_proj.weight",
            ),
            (
                "blk.3.ffn_down.weight",
                "model.layers.3.mlp.down_proj.weight",
            ),
            (
                "blk.3.ffn_norm.weight",
                "model.layers.3.post_attention_layernorm.weight",
            ),
            (
                "blk.3.attn_norm.weight",
                "model.layers.3.input_layernorm.weight",
            ),
            ("blk.1.attn_k.bias", "model.layers.1.self_attn.k_proj.bias"),
            ("blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight"),
        ];
        for (g, h) in cases {
            assert_eq!(hf(g).as_deref(), Some(h), "{g}");
        }
        let layout = TensorLayout::of("llama").expect("llama");
        for (g, h) in cases {
            assert_eq!(layout.gguf_name(h).as_deref(), Some(g), "{h}");
        }
        assert_eq!(
            layout.gguf_name("model.layers.0.self_attn.qkv_proj.weight"),
            None
        );
        assert_eq!(hf("rope_freqs.weight"), None);
        assert_eq!(hf("blk.x.attn_q.weight"), None);
        assert_eq!(hf("blk.0.attn_qkv.weight"), None);
    }

    #[test]
    fn phi3_names() {
        let hf = |g: &str| TensorLayout::Phi3.hf_name(g);
        assert_eq!(
            hf("blk.1.attn_qkv.weight").as_deref(),
            Some("model.layers.1.self_attn.qkv_proj.weight")
        );
        assert_eq!(
            hf("blk.1.ffn_up.weight").as_deref(),
            Some("model.layers.1.mlp.gate_up_proj.weight")
        );
        assert_eq!(
            hf("blk.0.attn_output.weight").as_deref(),
            Some("model.layers.0.self_attn.o_proj.weight")
        );
        assert_eq!(hf("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(
            TensorLayout::Phi3
                .gguf_name("model.layers.1.mlp.gate_up_proj.weight")
                .as_deref(),
            Some("blk.1.ffn_up.weight")
        );
        assert_eq!(hf("blk.0.attn_q.weight"), None);
        assert_eq!(hf("rope_factors_long.weight"), None);
        assert_eq!(TensorLayout::of("gemma3"), None);
    }
}
