//! From a model source (local folder, GGUF file, hub repo id, or the embedded
//! default) to a [`CausalLm`] with its tokenizer.

use super::config::{Arch, ArchConfig, RopeScaling};
use super::layers::{Linear, RmsNorm, Rope};
use super::weights::WeightSource;
use super::{CausalLm, ModelError};
use crate::config::{AttnImplementation, DType};
use crate::gguf::{GgufFile, GgufLlamaParams};
use crate::hub::{HubSettings, RepoRef};
use crate::tokenizer::TextTokenizer;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Dir(PathBuf),
    Gguf(PathBuf),
    Hub(RepoRef),
}

impl ModelSource {
    /// Interprets a config's `source`: `default`, an existing path, or a repo id.
    pub fn parse(spec: &str) -> Result<Self, ModelError> {
        if spec == crate::paths::DEFAULT_MODEL_SOURCE {
            return crate::paths::default_model()
                .map(ModelSource::Gguf)
                .ok_or_else(|| ModelError::Other(crate::paths::default_model_missing()));
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(ModelSource::Dir(path.to_path_buf()));
        }
        if path.is_file() {
            return if spec.ends_with(".gguf") {
                Ok(ModelSource::Gguf(path.to_path_buf()))
            } else {
                Err(ModelError::file(
                    path,
                    "is a file but not a .gguf; give a model folder, a .gguf file or a hub repo id"
                        .into(),
                ))
            };
        }
        match RepoRef::parse(spec) {
            Some(r) if !spec.starts_with('/') && !spec.starts_with('.') => Ok(ModelSource::Hub(r)),
            _ => Err(ModelError::file(
                path,
                "not found: expected a model folder (config.json, *.safetensors, tokenizer.json), a .gguf file, or a hub repo id like owner/name".into(),
            )),
        }
    }
}

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

pub struct LoadedModel {
    pub model: CausalLm,
    pub tokenizer: TextTokenizer,
    /// What was loaded, for display (`path` or `repo@rev`).
    pub name: String,
    /// The local folder or file the weights came from.
    pub path: PathBuf,
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
        let mut l = Linear::new(Tensor::new(), bias);
        l.weight = weight;
        Ok(l)
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
    let rope = Rope::new(&config, opts.device)?;
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
fn gguf_config(path: &Path, file: &GgufFile) -> Result<ArchConfig, ModelError> {
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

/// The small files a model repo may have beside its weights.
const REPO_FILES: [&str; 6] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

/// Those of `REPO_FILES` the repo has.
fn repo_files(listing: &[String]) -> Vec<String> {
    REPO_FILES
        .iter()
        .filter(|f| listing.iter().any(|x| x == *f))
        .map(|f| f.to_string())
        .collect()
}

/// The files fetched first for a hub model: the small files and the weights, or
/// the shard index (the shards it names are fetched once it is read).
fn choose_model_files(listing: &[String]) -> Result<Vec<String>, String> {
    let has = |f: &str| listing.iter().any(|x| x == f);
    if !has("config.json") {
        return Err("the repo has no config.json (is it a model repo?)".into());
    }
    let mut files = repo_files(listing);
    if has("model.safetensors.index.json") {
        files.push("model.safetensors.index.json".into());
    } else if has("model.safetensors") {
        files.push("model.safetensors".into());
    } else {
        return Err("the repo has no safetensors weights (model.safetensors or an index)".into());
    }
    Ok(files)
}

/// The shard files a `model.safetensors.index.json` names.
pub(crate) fn index_shards(index: &Path) -> Result<Vec<String>, ModelError> {
    let text =
        std::fs::read_to_string(index).map_err(|e| ModelError::file(index, e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::file(index, format!("not valid JSON: {e}")))?;
    let mut shards: Vec<String> = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::file(index, "has no weight_map".into()))?
        .values()
        .filter_map(|f| f.as_str().map(String::from))
        .collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// Loads a model and its tokenizer. `progress(file, done, total)` reports
/// downloads from the hub.
pub fn load_model(
    source: &ModelSource,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<LoadedModel, ModelError> {
    match source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path).map_err(|e| ModelError::Other(e.to_string()))?;
            let config = gguf_config(path, &file)?;
            let tokenizer =
                TextTokenizer::from_gguf(&file).map_err(|e| ModelError::Other(e.to_string()))?;
            let src = WeightSource::gguf(path, file)?;
            let model = build(config, &src, path, opts)?;
            Ok(LoadedModel {
                model,
                tokenizer,
                name: path.display().to_string(),
                path: path.clone(),
            })
        }
        ModelSource::Dir(dir) => load_dir(dir, dir.display().to_string(), opts),
        ModelSource::Hub(repo) => {
            let settings = HubSettings::from_env();
            let paths = crate::hub::fetch(
                &settings,
                repo,
                hf_hub::RepoType::Model,
                &choose_model_files,
                progress,
            )?;
            let dir = paths
                .first()
                .and_then(|p| p.parent())
                .map(Path::to_path_buf)
                .ok_or_else(|| ModelError::Other(format!("{}: nothing was downloaded", repo.id)))?;
            let index = dir.join("model.safetensors.index.json");
            if index.is_file() {
                let shards = index_shards(&index)?;
                crate::hub::fetch(
                    &settings,
                    repo,
                    hf_hub::RepoType::Model,
                    &|_| Ok(shards.clone()),
                    progress,
                )?;
            }
            load_dir(&dir, format!("{}@{}", repo.id, repo.revision), opts)
        }
    }
}

fn load_dir(dir: &Path, name: String, opts: &LoadOptions) -> Result<LoadedModel, ModelError> {
    let config = ArchConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = TextTokenizer::from_dir(dir).map_err(|e| ModelError::Other(e.to_string()))?;
    let src = WeightSource::safetensors_dir(dir)?;
    let model = build(config, &src, dir, opts)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        name,
        path: dir.to_path_buf(),
    })
}

/// Loads only the tokenizer (and chat template) of a source: no weights.
pub fn load_tokenizer(
    source: &ModelSource,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<TextTokenizer, ModelError> {
    let as_model_error = |e: crate::tokenizer::TokenizerError| ModelError::Other(e.to_string());
    match source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path).map_err(|e| ModelError::Other(e.to_string()))?;
            TextTokenizer::from_gguf(&file).map_err(as_model_error)
        }
        ModelSource::Dir(dir) => TextTokenizer::from_dir(dir).map_err(as_model_error),
        ModelSource::Hub(repo) => {
            let settings = HubSettings::from_env();
            let choose =
                |listing: &[String]| -> Result<Vec<String>, String> { Ok(repo_files(listing)) };
            let paths =
                crate::hub::fetch(&settings, repo, hf_hub::RepoType::Model, &choose, progress)?;
            let dir = paths.first().and_then(|p| p.parent()).ok_or_else(|| {
                ModelError::Other(format!("{}: the repo has no tokenizer files", repo.id))
            })?;
            TextTokenizer::from_dir(dir).map_err(as_model_error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::testfile::llama_file;
    use crate::gguf::GgufValue;

    /// The rope scaling of a hand-built file with `extra` keys and `rope_freqs`, for a
    /// head of 4 rotary pairs.
    fn scaling(
        extra: &[(&str, GgufValue)],
        rope_freqs: Option<&[f32]>,
    ) -> Result<Option<RopeScaling>, String> {
        let path = Path::new("m.gguf");
        let file =
            GgufFile::from_bytes(path, llama_file(extra, rope_freqs)).map_err(|e| e.to_string())?;
        let h = file.llama_hparams().map_err(|e| e.to_string())?;
        gguf_rope_scaling(path, &file, &h, 4).map_err(|e| e.to_string())
    }

    fn kind(name: &str) -> (&'static str, GgufValue) {
        ("llama.rope.scaling.type", GgufValue::String(name.into()))
    }

    #[test]
    fn gguf_rope_scaling_is_read_or_refused() {
        assert_eq!(scaling(&[], None), Ok(None));
        let factors = [1.0, 2.0, 8.0, 8.0];
        assert_eq!(
            scaling(&[], Some(&factors)),
            Ok(Some(RopeScaling::FreqFactors(factors.to_vec())))
        );
        let linear = [
            kind("linear"),
            ("llama.rope.scaling.factor", GgufValue::F32(2.0)),
        ];
        assert_eq!(
            scaling(&linear, None),
            Ok(Some(RopeScaling::Linear { factor: 2.0 }))
        );
        // llama.cpp reads linear scaling without a factor as none.
        assert_eq!(scaling(&[kind("linear")], None), Ok(None));

        let err = |extra: &[(&str, GgufValue)], freqs: Option<&[f32]>| {
            scaling(extra, freqs).expect_err("refused")
        };
        assert_eq!(
            err(&[], Some(&[1.0, 2.0])),
            "m.gguf: rope_freqs.weight has 2 values, expected 4 (one per rotary pair)"
        );
        assert!(err(&[kind("yarn")], None).contains("`yarn` rope scaling is not supported"));
        assert!(err(&linear, Some(&factors)).contains("combined with `rope_freqs`"));
    }
}
