//! Where a model comes from: a local Hugging Face folder, a GGUF file, a hub
//! repo id, or `default` (the embedded model). This module resolves the source,
//! fetches what the hub has, and hands weights and tokenizer to [`crate::model`],
//! which knows nothing of hubs or defaults.

use crate::gguf::GgufFile;
use crate::hub::{HubSettings, RepoRef};
use crate::model::load::{build, gguf_config, LoadOptions};
use crate::model::weights::{index_shards, WeightSource};
use crate::model::{ArchConfig, CausalLm, ModelError};
use crate::tokenizer::TextTokenizer;
use std::path::{Path, PathBuf};

/// Why a model could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    Hub(#[from] crate::hub::HubError),
    #[error("{0}")]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error("{0}")]
    Other(String),
}

impl SourceError {
    fn file(path: &Path, message: String) -> Self {
        SourceError::Model(ModelError::file(path, message))
    }
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Dir(PathBuf),
    Gguf(PathBuf),
    Hub(RepoRef),
}

impl ModelSource {
    /// Interprets a config's `source`: `default`, an existing path, or a repo id.
    pub fn parse(spec: &str) -> Result<Self, SourceError> {
        if spec == crate::paths::DEFAULT_MODEL_SOURCE {
            return crate::paths::default_model()
                .map(ModelSource::Gguf)
                .ok_or_else(|| SourceError::Other(crate::paths::default_model_missing()));
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(ModelSource::Dir(path.to_path_buf()));
        }
        if path.is_file() {
            return if spec.ends_with(".gguf") {
                Ok(ModelSource::Gguf(path.to_path_buf()))
            } else {
                Err(SourceError::file(
                    path,
                    "is a file but not a .gguf; give a model folder, a .gguf file or a hub repo id"
                        .into(),
                ))
            };
        }
        match RepoRef::parse(spec) {
            Some(r) if !spec.starts_with('/') && !spec.starts_with('.') => Ok(ModelSource::Hub(r)),
            _ => Err(SourceError::file(
                path,
                "not found: expected a model folder (config.json, *.safetensors, tokenizer.json), a .gguf file, or a hub repo id like owner/name".into(),
            )),
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

/// Loads a model and its tokenizer. `progress(file, done, total)` reports
/// downloads from the hub.
pub fn load_model(
    source: &ModelSource,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<LoadedModel, SourceError> {
    match source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path).map_err(|e| SourceError::Other(e.to_string()))?;
            let config = gguf_config(path, &file)?;
            let tokenizer = TextTokenizer::from_gguf(&file)?;
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
                .ok_or_else(|| {
                    SourceError::Other(format!("{}: nothing was downloaded", repo.id))
                })?;
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

fn load_dir(dir: &Path, name: String, opts: &LoadOptions) -> Result<LoadedModel, SourceError> {
    let config = ArchConfig::from_file(&dir.join("config.json")).map_err(ModelError::from)?;
    let tokenizer = TextTokenizer::from_dir(dir)?;
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
) -> Result<TextTokenizer, SourceError> {
    match source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path).map_err(|e| SourceError::Other(e.to_string()))?;
            Ok(TextTokenizer::from_gguf(&file)?)
        }
        ModelSource::Dir(dir) => Ok(TextTokenizer::from_dir(dir)?),
        ModelSource::Hub(repo) => {
            let settings = HubSettings::from_env();
            let choose =
                |listing: &[String]| -> Result<Vec<String>, String> { Ok(repo_files(listing)) };
            let paths =
                crate::hub::fetch(&settings, repo, hf_hub::RepoType::Model, &choose, progress)?;
            let dir = paths.first().and_then(|p| p.parent()).ok_or_else(|| {
                SourceError::Other(format!("{}: the repo has no tokenizer files", repo.id))
            })?;
            Ok(TextTokenizer::from_dir(dir)?)
        }
    }
}
