//! The shape of a llama-family network (Llama, Mistral, Qwen2, Phi-3, ...) as the
//! `{arch}.*` metadata keys of a GGUF file state it, with llama.cpp's defaults.

use super::{GgufError, GgufFile, GgufValue, Result};

/// llama.cpp's tensor of rope frequency divisors.
const ROPE_FREQS: &str = "rope_freqs.weight";

#[derive(Debug, Clone, PartialEq)]
pub struct GgufLlamaParams {
    /// `general.architecture`, e.g. `"llama"`; the prefix of the keys below.
    pub architecture: String,
    /// `{arch}.block_count`: number of transformer layers.
    pub block_count: usize,
    /// `{arch}.embedding_length`: hidden size.
    pub embedding_length: usize,
    /// `{arch}.feed_forward_length`: MLP intermediate size.
    pub feed_forward_length: usize,
    /// `{arch}.attention.head_count`.
    pub head_count: usize,
    /// `{arch}.attention.head_count_kv`; llama.cpp defaults it to `head_count`.
    pub head_count_kv: usize,
    /// Per-head dimension: `{arch}.attention.key_length` if present, else
    /// `embedding_length / head_count`.
    pub head_dim: usize,
    /// `{arch}.attention.layer_norm_rms_epsilon`. GGUF stores it as an f32, and so do we:
    /// widening it gives exactly the value transformers puts in its config.
    pub rms_norm_eps: f32,
    /// `{arch}.rope.freq_base` (an f32 in GGUF); llama.cpp defaults it to 10000.
    pub rope_freq_base: f32,
    /// `{arch}.rope.dimension_count`, if present.
    pub rope_dimension_count: Option<usize>,
    /// `{arch}.rope.scaling.type` (`none`, `linear`, `yarn`, `longrope`), if present.
    pub rope_scaling_type: Option<String>,
    /// `{arch}.rope.scaling.factor`, if present.
    pub rope_scaling_factor: Option<f64>,
    /// The `rope_freqs.weight` tensor, if present: llama.cpp divides the frequency of
    /// rotary pair `i` by entry `i`. Its converter writes llama3 rope scaling this way,
    /// with no `rope.scaling.*` keys.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// `{arch}.attention.sliding_window`, if present and not 0 (0 means none).
    pub sliding_window: Option<usize>,
    /// `{arch}.context_length`: the training context.
    pub context_length: usize,
    /// `{arch}.vocab_size`, else the number of tokens, else `token_embd`'s row count.
    pub vocab_size: usize,
    /// True when there is no `output.weight`: the LM head reuses the token embeddings.
    pub tie_word_embeddings: bool,
}

impl GgufFile {
    /// The model's shape, read from `general.architecture` and the `{arch}.*` keys.
    pub fn llama_hparams(&self) -> Result<GgufLlamaParams> {
        let arch = self.get_str("general.architecture")?.to_string();
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let head_count = self.get_usize(&key("attention.head_count"))?;
        let embedding_length = self.get_usize(&key("embedding_length"))?;
        if head_count == 0 {
            return Err(GgufError::Malformed {
                path: self.path().to_path_buf(),
                what: format!("{} is 0", key("attention.head_count")),
            });
        }
        let head_count_kv = self
            .optional(&key("attention.head_count_kv"), GgufFile::get_usize)?
            .unwrap_or(head_count);
        let head_dim = self
            .optional(&key("attention.key_length"), GgufFile::get_usize)?
            .unwrap_or(embedding_length / head_count);
        let vocab_size = match self.optional(&key("vocab_size"), GgufFile::get_usize)? {
            Some(n) => n,
            None => match self
                .get("tokenizer.ggml.tokens")
                .and_then(GgufValue::as_array)
            {
                Some(tokens) => tokens.len(),
                None => {
                    let embd = self.require_tensor("token_embd.weight")?;
                    embd.dims.get(1).copied().unwrap_or(1) as usize
                }
            },
        };
        Ok(GgufLlamaParams {
            block_count: self.get_usize(&key("block_count"))?,
            embedding_length,
            feed_forward_length: self.get_usize(&key("feed_forward_length"))?,
            head_count,
            head_count_kv,
            head_dim,
            rms_norm_eps: self.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32,
            rope_freq_base: self
                .optional(&key("rope.freq_base"), GgufFile::get_f64)?
                .map_or(10_000.0, |v| v as f32),
            rope_dimension_count: self
                .optional(&key("rope.dimension_count"), GgufFile::get_usize)?,
            rope_scaling_type: self
                .get(&key("rope.scaling.type"))
                .map(|_| self.get_str(&key("rope.scaling.type")).map(str::to_string))
                .transpose()?,
            rope_scaling_factor: self.optional(&key("rope.scaling.factor"), GgufFile::get_f64)?,
            rope_freq_factors: match self.tensor_info(ROPE_FREQS) {
                Some(_) => Some(self.dequantize(ROPE_FREQS)?.0),
                None => None,
            },
            sliding_window: self
                .optional(&key("attention.sliding_window"), GgufFile::get_usize)?
                .filter(|&w| w > 0),
            context_length: self.get_usize(&key("context_length"))?,
            vocab_size,
            tie_word_embeddings: self.tensor_info("output.weight").is_none(),
            architecture: arch,
        })
    }
}
