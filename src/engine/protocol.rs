//! What the engine and its callers say to each other, as plain data: the
//! requests a job can run, the controls a running job hears, the events that
//! come back, and typed errors. Nothing here touches libtorch, so the workbench
//! imports this module (with config and collate types) and nothing else of the
//! engine; the tch-bound work lives in the engine's worker.
//!
//! Every request becomes a job with a [`JobId`]. A job reports
//! [`Event::Started`], any number of [`Event::Progress`] and [`Event::Text`],
//! and exactly one [`Event::Finished`] — also when it is refused, stopped
//! before it ran, or superseded by a newer request of its kind.

use crate::collate::{CollateOptions, Report, Row};
use crate::config::{AttnImplementation, DType, QuantizationConfig, RunConfig};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// The generation settings, outcome and speed as the generator defines them;
/// they are plain data, and pass through here unchanged.
pub use crate::generate::{FinishReason, GenerationStats, SamplingParams};
/// Per-token log-probabilities, plain data.
pub use crate::score::Score;

/// One job's name, unique within an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Plain text, tokenized with the tokenizer's special tokens (BOS where used).
    Text(String),
    /// A conversation rendered with the chat template and its generation prompt.
    Messages(Vec<serde_json::Value>),
    /// Token ids as they are.
    Ids(Vec<u32>),
}

/// Which model to load and how (`[model]` and `[quantization]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// A model folder, a .gguf file, a hub repo id or `default`.
    pub source: String,
    pub dtype: DType,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub attn: AttnImplementation,
    pub quantization: Option<QuantizationConfig>,
}

impl ModelSpec {
    /// The model a run config names.
    pub fn from_config(c: &RunConfig) -> Self {
        ModelSpec {
            source: c.model.source.clone(),
            dtype: c.model.dtype,
            device: c.model.device.clone(),
            attn: c.model.attn_implementation,
            quantization: c.quantization.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// Generated together, as one batch.
    pub prompts: Vec<Prompt>,
    pub params: SamplingParams,
    /// The adapter to generate with (`None`: the base model), for this request
    /// only: the model's active adapter is back as it was afterwards.
    pub adapter: Option<String>,
    /// `[template] chat_template` for `Prompt::Messages` (`None`: the model's own).
    pub chat_template: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRequest {
    pub prompt: Prompt,
    /// As in [`GenerateRequest::adapter`].
    pub adapter: Option<String>,
    pub chat_template: Option<String>,
}

/// The work a job does.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Drops the loaded model (and its adapters), then loads this one.
    LoadModel(ModelSpec),
    /// Drops the loaded model, freeing its memory.
    UnloadModel,
    /// Loads a peft/ftui adapter folder under `name` and activates it.
    LoadAdapter {
        dir: PathBuf,
        name: String,
    },
    /// Activates a loaded adapter, or none (the base model).
    SetAdapter(Option<String>),
    Generate(GenerateRequest),
    Score(ScoreRequest),
    /// Reads the config's dataset (kept while `[data]` is unchanged) and
    /// prepares it with the config's template and training settings. Runs off
    /// the model's thread; a newer one supersedes one still waiting or running.
    PrepareData(Box<RunConfig>),
}

/// The kind of a request, for status lines and the rules on what may run together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Task {
    LoadModel,
    UnloadModel,
    LoadAdapter,
    SetAdapter,
    Generate,
    Score,
    PrepareData,
}

impl Request {
    pub fn task(&self) -> Task {
        match self {
            Request::LoadModel(_) => Task::LoadModel,
            Request::UnloadModel => Task::UnloadModel,
            Request::LoadAdapter { .. } => Task::LoadAdapter,
            Request::SetAdapter(_) => Task::SetAdapter,
            Request::Generate(_) => Task::Generate,
            Request::Score(_) => Task::Score,
            Request::PrepareData(_) => Task::PrepareData,
        }
    }
}

impl Task {
    /// Whether the job changes the model (which model, which adapters).
    pub fn changes_model(self) -> bool {
        matches!(
            self,
            Task::LoadModel | Task::UnloadModel | Task::LoadAdapter | Task::SetAdapter
        )
    }

    /// Whether the job needs the model to stay as it was when the job was
    /// accepted, until it finishes: a model change is refused meanwhile.
    pub fn needs_model_unchanged(self) -> bool {
        matches!(self, Task::Generate | Task::Score)
    }

    /// The job as a verb phrase: "load model".
    pub fn name(self) -> &'static str {
        match self {
            Task::LoadModel => "load model",
            Task::UnloadModel => "unload model",
            Task::LoadAdapter => "load adapter",
            Task::SetAdapter => "switch adapter",
            Task::Generate => "generate",
            Task::Score => "score",
            Task::PrepareData => "prepare data",
        }
    }

    /// The job while it runs: "loading model".
    pub fn doing(self) -> &'static str {
        match self {
            Task::LoadModel => "loading model",
            Task::UnloadModel => "unloading model",
            Task::LoadAdapter => "loading adapter",
            Task::SetAdapter => "switching adapter",
            Task::Generate => "generating",
            Task::Score => "scoring",
            Task::PrepareData => "preparing data",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a running (or waiting) job can be told. A job hears it at its next
/// check: generation between tokens, data preparation between stages; a job
/// with nothing to save ignores `SaveNow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Control {
    /// Finish early: a generation keeps what it has (finish reason
    /// `cancelled`); a job that had not started ends with [`EngineError::Stopped`].
    Stop,
    /// Wait at the next check until `Resume` or `Stop`.
    Pause,
    Resume,
    /// Write a checkpoint at the next check (training).
    SaveNow,
}

/// A unit of long work, for progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Stage {
    /// Bytes fetched from the hub.
    Download,
    /// Bytes of a local file (or a file already downloaded) read.
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    pub stage: Stage,
    /// The file being downloaded or read.
    pub item: String,
    pub done: u64,
    pub total: u64,
}

impl fmt::Display for Progress {
    /// `download model.safetensors 42%`, `read data.jsonl 7%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.stage {
            Stage::Download => "download",
            Stage::Read => "read",
        };
        write!(f, "{verb} {}", self.item)?;
        if self.total > 0 {
            write!(f, " {:.0}%", 100.0 * self.done as f64 / self.total as f64)?;
        }
        Ok(())
    }
}

/// A summary of the loaded model, as plain data for the UI.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub arch: String,
    pub device: String,
    pub dtype: String,
    pub parameters: i64,
    pub memory_footprint: i64,
    pub layers: i64,
    pub vocab_size: i64,
    pub chat_template: bool,
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub pad: Option<String>,
    pub pad_equals_eos: bool,
    pub adapters: Vec<String>,
    pub active_adapter: Option<String>,
    /// How the decoder linears are stored: dense, nf4, fp4, nf4+dq, int8...
    pub weights: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationResult {
    pub prompt_text: String,
    pub prompt_ids: Vec<u32>,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExampleView {
    /// The example as the data gave it (after the rename map), pretty JSON.
    pub example: String,
    /// The text the chat template made of it (or the text itself, EOS added).
    pub rendered: String,
    pub tokens: usize,
    pub trained: usize,
}

/// What the Data & template and Batches panes show: each example as a
/// conversation, its rendered template text and token count, the prepared rows
/// with the text of every token, and the pre-flight report. Collating rows into
/// a batch is cheap and pure, so the UI collates the batch it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct DataView {
    pub source: String,
    pub format: String,
    pub columns: Vec<String>,
    pub total_records: usize,
    pub skipped: Vec<String>,
    pub eval_examples: usize,
    pub examples: Vec<ExampleView>,
    pub rows: Vec<Row>,
    pub report: Report,
    pub options: CollateOptions,
    pub pad_id: u32,
    /// The display text of every token id that occurs in `rows`.
    pub pieces: HashMap<u32, String>,
    /// Special token ids (shown highlighted).
    pub special_ids: Vec<u32>,
    pub chat_template_source: String,
}

/// What a job that succeeded produced.
#[derive(Debug, Clone)]
pub enum JobOutput {
    /// The model as it is now (after a load, an adapter load or a switch).
    Model(Box<ModelInfo>),
    /// The model was dropped.
    Unloaded,
    Generated {
        results: Vec<GenerationResult>,
        stats: GenerationStats,
    },
    Scored(Score),
    Data(Box<DataView>),
}

/// Why a job failed. Each variant carries its context as text (the causes
/// below the engine are not `Clone`), already cut to one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("no model is loaded")]
    NoModel,
    #[error(
        "cannot {task} while job {holder} ({holder_task}) uses the model: stop it or wait for it"
    )]
    ModelBusy {
        task: Task,
        holder: JobId,
        holder_task: Task,
    },
    /// The source names no model that exists (no such folder, file or repo id).
    #[error("{0}")]
    ModelNotFound(String),
    #[error("{0}")]
    ModelLoad(String),
    #[error("{0}")]
    Device(String),
    #[error("no adapter named `{name}` is loaded (loaded: {})", names_or_none(.loaded))]
    UnknownAdapter { name: String, loaded: Vec<String> },
    #[error("{0}")]
    Adapter(String),
    #[error("{0}")]
    ChatTemplate(String),
    #[error("{0}")]
    Tokenizer(String),
    #[error("the config has no [data] section: add one to see the dataset")]
    NoDataSection,
    #[error("{0}")]
    Data(String),
    /// The dataset cannot be prepared with these settings.
    #[error("{0}")]
    Prepare(String),
    /// libtorch failed (out of memory, shapes...), with advice where there is some.
    #[error("libtorch: {0}")]
    Torch(String),
    #[error("the engine failed: {0}")]
    Panic(String),
    #[error("stopped before it started")]
    Stopped,
    #[error("superseded by job {by}")]
    Superseded { by: JobId },
    #[error("the engine stopped")]
    Disconnected,
}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// What the engine tells its callers.
#[derive(Debug, Clone)]
pub enum Event {
    /// The job began running.
    Started { job: JobId, task: Task },
    /// Long work advanced.
    Progress { job: JobId, progress: Progress },
    /// A piece of generated text for prompt `row` of a generation.
    Text {
        job: JobId,
        row: usize,
        text: String,
    },
    /// The job ended; nothing more comes for it.
    Finished {
        job: JobId,
        outcome: Result<JobOutput, EngineError>,
    },
}

impl Event {
    pub fn job(&self) -> JobId {
        match self {
            Event::Started { job, .. }
            | Event::Progress { job, .. }
            | Event::Text { job, .. }
            | Event::Finished { job, .. } => *job,
        }
    }
}

/// Where requests go: the engine, or in tests anything that records them.
/// Both calls return at once.
pub trait Jobs {
    /// Starts `request` as a new job.
    fn submit(&self, request: Request) -> JobId;
    /// Tells a waiting or running job; a job that has finished ignores it.
    fn control(&self, job: JobId, control: Control);
}
