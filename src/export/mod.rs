//! Export: the fine-tuned model where it will be used. A run ends with an adapter on a
//! base model; users deploy a single model, in one of three shapes:
//! - [`merged`]: a Hugging Face folder (the adapter folded into a dequantized base) that
//!   `AutoModelForCausalLM.from_pretrained` and `apply_chat_template` read as they read
//!   the hub's models;
//! - [`gguf`]: one GGUF file for llama.cpp and Ollama, written natively, tensor by tensor;
//! - [`modelfile`]: an Ollama `Modelfile` beside the GGUF with an explicit `TEMPLATE`
//!   equivalent to the chat template the run trained with.
//!
//! Every shape starts from a [`Prepared`] model: the base loaded (with the run's
//! `[quantization]`, so a QLoRA adapter meets the base it was trained on), the adapter
//! merged as peft's `merge_and_unload` merges it, and the pre-export checks passed —
//! each a refusal that says what is wrong (a vocabulary larger than the embedding, no
//! chat template, an adapter made for another base). Files are written under temporary
//! names and renamed at the end, so an interrupted export leaves nothing that looks
//! finished.

pub mod gguf;
pub mod merged;
pub mod modelfile;
mod tensors;
pub mod turns;
mod vocab;

pub use tensors::{merged_tensors, MergedTensor};

use crate::config::{AttnImplementation, DType, RunConfig};
use crate::model::{CausalLm, LoadOptions};
use crate::source::{load_model, LoadedModel, ModelSource, SourceError};
use crate::template::ChatTemplate;
use std::path::{Path, PathBuf};
use tch::{Device, Kind};
use turns::ChatTurns;

/// The name the adapter is loaded and merged under.
const ADAPTER: &str = "export";

/// Why an export was refused or failed. One line each.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Source(#[from] SourceError),
    /// The adapter does not fit the base (another architecture, size or vocabulary).
    #[error("adapter {}: it does not fit the base model {base}: {message}", dir.display())]
    AdapterMismatch {
        dir: PathBuf,
        base: String,
        message: String,
    },
    /// The tokenizer knows more tokens than the embedding has rows.
    #[error("{model}: the tokenizer has {tokens} tokens but the embedding only {rows} rows; token ids past {last} would have no embedding (resize the embedding when adding tokens)", last = rows - 1)]
    VocabTooLarge {
        model: String,
        tokens: usize,
        rows: i64,
    },
    /// Neither the config nor the tokenizer gives a chat template.
    #[error("{model}: no chat template: the tokenizer has none and the config sets no [template] chat_template (a built-in name: chatml, llama3, phi3, mistral, zephyr; a file; or the template)")]
    NoChatTemplate { model: String },
    #[error("chat template: {0}")]
    Template(String),
    /// A Modelfile was asked for a chat template ftui cannot translate to Go.
    #[error("Modelfile: {0}")]
    Untranslatable(String),
    /// The model or an output cannot be written in the asked form.
    #[error("{0}")]
    Unsupported(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The caller's progress callback asked to stop; nothing was left behind.
    #[error("export stopped")]
    Stopped,
    #[error("{0}")]
    Gguf(#[from] crate::gguf::writer::GgufWriteError),
    #[error("libtorch: {}", crate::torch::torch_message(.0))]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How far an export is: `done` of `total` units of `what` (tensors, bytes). Writers
/// call a `FnMut(&Progress) -> bool` after each tensor; `false` stops the export.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub what: String,
    pub done: u64,
    pub total: u64,
}

/// What to export: the model (`SRC`), the adapter, and the run's config.
#[derive(Debug, Clone, Default)]
pub struct ExportSource {
    /// A model folder, a `.gguf`, a hub repo id or `default`.
    pub model: String,
    /// A peft adapter folder merged into the base (default: the config's `[model] adapter`).
    pub adapter: Option<PathBuf>,
    /// The run's config: `[model] dtype`, `[quantization]`, `[template]`,
    /// `[data] system_prompt`, `[generation]`.
    pub config: Option<RunConfig>,
}

/// The model ready to write: base + merged adapter, its tokenizer and chat template.
pub struct Prepared {
    pub loaded: LoadedModel,
    /// The source as given (for messages and `general.name`).
    pub source_name: String,
    /// The chat template the run trained with (Jinja source) and its compiled form.
    pub chat_template: String,
    pub template: ChatTemplate,
    /// The turn markers the chat template writes (end-of-turn token, ...).
    pub turns: ChatTurns,
    /// The kind a merged folder's weights are written in.
    pub kind: Kind,
    pub config: Option<RunConfig>,
}

impl Prepared {
    pub fn model(&self) -> &CausalLm {
        &self.loaded.model
    }

    /// The source folder's file `name`, parsed, when the source is a folder that has it.
    pub fn source_json(
        &self,
        name: &str,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        let path = self.loaded.path.join(name);
        if !self.loaded.path.is_dir() || !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(m)) => Ok(Some(m)),
            _ => Err(ExportError::Unsupported(format!(
                "{}: not a JSON object",
                path.display()
            ))),
        }
    }
}

/// The dtype a Hugging Face folder's `config.json` states (`dtype`, `torch_dtype`).
fn folder_kind(dir: &Path) -> Option<Kind> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    match v.get("dtype").or(v.get("torch_dtype"))?.as_str()? {
        "bfloat16" => Some(Kind::BFloat16),
        "float16" => Some(Kind::Half),
        "float32" => Some(Kind::Float),
        _ => None,
    }
}

/// Loads the base (with the config's `[quantization]`), merges the adapter, and runs the
/// pre-export checks. `progress` hears about downloads.
pub fn prepare(
    what: &ExportSource,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<Prepared> {
    let config = what.config.as_ref();
    let source = ModelSource::parse(&what.model)?;
    // The weights keep the config's `[model] dtype`, else the source's (a hub model's is
    // known once it is fetched: it loads in float32 and is written in its own dtype),
    // else float32 (GGUF sources, dequantized anyway).
    let explicit = match config.map(|c| c.model.dtype) {
        Some(d @ (DType::Float32 | DType::Bfloat16 | DType::Float16)) => {
            Some(crate::device::resolve_kind(d, Device::Cpu))
        }
        _ => None,
    };
    let load_kind = match &source {
        ModelSource::Dir(dir) => explicit.or_else(|| folder_kind(dir)),
        _ => explicit,
    }
    .unwrap_or(Kind::Float);
    let dtype = match load_kind {
        Kind::BFloat16 => DType::Bfloat16,
        Kind::Half => DType::Float16,
        _ => DType::Float32,
    };
    let opts = LoadOptions {
        dtype,
        device: Device::Cpu,
        attn: AttnImplementation::Sdpa,
        quantization: config.and_then(|c| c.quantization.clone()),
    };
    let mut loaded = load_model(&source, &opts, &mut |file, done, total| {
        // A download cannot be interrupted here; the answer is for the writers.
        let _ = progress(&Progress {
            what: format!("download {file}"),
            done,
            total,
        });
    })?;

    // The vocabulary must fit the embedding (fewer tokens than rows is padding).
    let tokens = loaded.tokenizer.inner.get_vocab_size(true);
    let rows = loaded.model.config.vocab_size;
    if tokens as i64 > rows {
        return Err(ExportError::VocabTooLarge {
            model: what.model.clone(),
            tokens,
            rows,
        });
    }

    let adapter = what
        .adapter
        .clone()
        .or_else(|| config.and_then(|c| c.model.adapter.as_ref().map(PathBuf::from)));
    if let Some(dir) = &adapter {
        merge_adapter(&mut loaded.model, dir, &what.model)?;
    }

    let spec = config.and_then(|c| c.template.chat_template.as_deref());
    let chat_template =
        match spec {
            Some(spec) => crate::template::resolve_source(spec).map_err(ExportError::Template)?,
            None => loaded.tokenizer.chat_template.clone().ok_or_else(|| {
                ExportError::NoChatTemplate {
                    model: what.model.clone(),
                }
            })?,
        };
    let template = ChatTemplate::new(&chat_template, &loaded.tokenizer.template_specials())
        .map_err(|e| ExportError::Template(e.to_string()))?;
    let turns = ChatTurns::of(&template, &loaded.tokenizer)?;
    let kind = explicit
        .or_else(|| folder_kind(&loaded.path).filter(|_| loaded.path.is_dir()))
        .unwrap_or(load_kind);
    Ok(Prepared {
        loaded,
        source_name: what.model.clone(),
        chat_template,
        template,
        turns,
        kind,
        config: what.config.clone(),
    })
}

/// Loads the adapter in `dir` and folds it into the weights, refusing one that does not
/// fit every one of its tensors to a module of this model.
fn merge_adapter(model: &mut CausalLm, dir: &Path, base: &str) -> Result<()> {
    let mismatch = |message: String| ExportError::AdapterMismatch {
        dir: dir.to_path_buf(),
        base: base.to_string(),
        message,
    };
    crate::lora::load_adapter(model, dir, ADAPTER).map_err(|e| mismatch(e.to_string()))?;
    // load_adapter skips tensors no module of this model has; for an export that is an
    // adapter made for another base (more layers, other module names).
    let file = dir.join("adapter_model.safetensors");
    let known: std::collections::HashSet<String> = crate::lora::parameters(model, ADAPTER)
        .into_iter()
        .map(|(n, _)| format!("base_model.model.{n}"))
        .collect();
    let unused: Vec<String> = safetensors_names(&file)?
        .into_iter()
        .filter(|n| !known.contains(n))
        .collect();
    if !unused.is_empty() {
        return Err(mismatch(format!(
            "{} of its tensors match no module of this model (e.g. {})",
            unused.len(),
            unused
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    crate::lora::merge(model, ADAPTER).map_err(|e| mismatch(e.to_string()))?;
    Ok(())
}

/// The tensor names of a safetensors file.
fn safetensors_names(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        ExportError::Unsupported(format!("{}: not a safetensors file: {e}", path.display()))
    })?;
    Ok(meta.tensors().keys().cloned().collect())
}

/// Writes a folder's files into `<dir>.part`, then puts it in place of `dir` (an
/// existing `dir` is replaced only once the new one is complete).
pub(crate) fn write_folder_atomic(
    dir: &Path,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let tmp = crate::fsutil::partial_path(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        let old = dir.with_file_name(format!(
            "{}.old",
            dir.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old).map_err(io_err(dir))?;
        std::fs::rename(&tmp, dir).map_err(io_err(dir))?;
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    } else {
        std::fs::rename(&tmp, dir).map_err(io_err(dir))?;
    }
    Ok(())
}
