//! Fine-tuning data: from a `[data]` section to the examples a run trains on.
//!
//! ftui reads a dataset the way the book's code does with Hugging Face `datasets`
//! (`load_dataset("json" | "csv" | "parquet", ...)` or a hub dataset id), so the same
//! files mean the same rows: JSON Lines, JSON arrays, CSV (every value a string) and
//! Parquet, one reader per file in this folder, and hub datasets through
//! [`crate::hub::fetch`] into the hub's own cache. `tests/data.rs` checks the rows
//! against what `datasets` gives (`tools/make_data_fixtures.py`).
//!
//! Rows then become [`Example`]s in one of trl's three formats (DESIGN.md, "Formats,
//! as trl treats them"): the `columns` rename map is applied first (the book renames
//! `sentence` -> `prompt`, `translation_extra` -> `completion`), then the `format`
//! (detected from the columns when unset) or the `formatting_template` (the book's
//! "bring your own formatting function") decides what each row is.
//!
//! Bad input is never dropped silently: a malformed record either stops the load with
//! a one-line `FILE:LINE: ...` error (`on_bad_record = "fail"`) or is recorded in
//! [`Dataset::skipped`] (`"skip"`). The train/eval split is reproducible: a small
//! documented PRNG ([`SplitMix64`]) shuffles by `seed`, and the held-out size is
//! `ceil(ratio * n)` as in `datasets.Dataset.train_test_split`.

mod csv;
mod examples;
mod hub;
mod json;
mod jsonl;
mod parquet;
mod split;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::config::{DataConfig, DataFormat, OnBadRecord};
use crate::hub::HubError;
use crate::template::one_line;

pub use examples::to_examples;
use examples::{rename_columns, to_dataset, FormattingTemplate};
pub use hub::{choose_split_files, HubDataset};
pub use split::{permutation, split, SplitMix64};

/// One record: column name -> value, as `datasets` gives a row.
pub type Row = Map<String, Value>;

/// One training example, in one of trl's formats.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// A conversation: [{"role":..., "content":...}, ...]
    Messages(Vec<Value>),
    /// trl's conversational prompt/completion: prompt = [system?, user], completion = [assistant].
    PromptCompletion {
        prompt: Vec<Value>,
        completion: Vec<Value>,
    },
    /// Plain text ("bring your own formatted data"); EOS is appended later, at tokenization.
    Text(String),
}

impl Example {
    /// The format this example is in.
    pub fn format(&self) -> DataFormat {
        match self {
            Example::Messages(_) => DataFormat::Messages,
            Example::PromptCompletion { .. } => DataFormat::PromptCompletion,
            Example::Text(_) => DataFormat::Text,
        }
    }

    /// The whole conversation (a prompt/completion's prompt then completion); `None`
    /// for text.
    pub fn conversation(&self) -> Option<Vec<Value>> {
        match self {
            Example::Messages(m) => Some(m.clone()),
            Example::PromptCompletion { prompt, completion } => {
                Some(prompt.iter().chain(completion).cloned().collect())
            }
            Example::Text(_) => None,
        }
    }
}

/// A loaded dataset, split into train and eval examples.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub train: Vec<Example>,
    pub eval: Vec<Example>,
    /// Every example is in this format.
    pub format: DataFormat,
    /// The source as configured (a path or a hub id), for display.
    pub source: String,
    /// The columns after the rename map, in the order the data has them.
    pub columns: Vec<String>,
    /// Records left out under `on_bad_record = "skip"`, each with its cause.
    pub skipped: Vec<BadRecord>,
    /// Records read, skipped ones included (empty JSONL lines are not records).
    pub total_records: usize,
}

/// A malformed record and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The file as the user knows it: the configured path, or `owner/name/FILE` for
    /// a hub dataset.
    pub file: String,
    /// 1-based line for JSONL, CSV and JSON arrays (the line where the record
    /// starts); 0-based row index (`dataset[i]`) for Parquet.
    pub line: usize,
    /// The column or nested field at fault (`messages[2].content`), if one is.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_row_indexed(&self.file) {
            write!(f, "{}: row {}: ", self.file, self.line)?;
        } else {
            write!(f, "{}:{}: ", self.file, self.line)?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&one_line(&self.message))
    }
}

/// Parquet has rows, not lines.
fn is_row_indexed(file: &str) -> bool {
    FileKind::of(Path::new(file)) == Some(FileKind::Parquet)
}

/// Why a dataset could not be loaded. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: not found: expected a .jsonl, .json, .csv or .parquet file, or a hub dataset id like owner/name")]
    NotFound { path: String },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A malformed record under `on_bad_record = "fail"`, or a file that cannot be
    /// parsed at all (a JSON array with a syntax error).
    #[error("{0}")]
    Record(BadRecord),
    /// A file that cannot be read as its kind (not Parquet, not an array of records, ...).
    #[error("{file}: {message}")]
    File { file: String, message: String },
    /// The columns do not fit the format.
    #[error("{data}: {message}")]
    Columns { data: String, message: String },
    /// A `[data]` setting that cannot work.
    #[error("[data] {key}: {message}")]
    Config { key: String, message: String },
    #[error(transparent)]
    Hub(#[from] HubError),
    /// Nothing left to train on.
    #[error("{data}: no examples: {message}")]
    Empty { data: String, message: String },
}

/// The records of a dataset as read, columns renamed, before they become examples
/// (what a data view shows as the raw rows).
#[derive(Debug, Clone)]
pub struct RawData {
    /// The source as configured.
    pub source: String,
    /// The files read, as the user knows them; [`Record::file`] indexes this.
    pub files: Vec<String>,
    /// The columns after the rename map. Every row has all of them, in this order;
    /// a value a record lacks is `null`, as `datasets` unifies a schema.
    pub columns: Vec<String>,
    pub records: Vec<Record>,
    /// Records left out under `on_bad_record = "skip"`.
    pub skipped: Vec<BadRecord>,
    /// Records read, skipped ones included.
    pub total_records: usize,
}

/// One record and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Index into [`RawData::files`].
    pub file: usize,
    /// As in [`BadRecord::line`].
    pub line: usize,
    pub row: Row,
}

/// Reads the configured dataset and turns it into train and eval examples.
/// `progress(what, done, total)` hears about downloads (bytes) and files read (bytes).
pub fn load_dataset(
    cfg: &DataConfig,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Dataset, DataError> {
    // A broken template is a config error: say so before reading anything.
    let template = cfg
        .formatting_template
        .as_deref()
        .map(FormattingTemplate::new)
        .transpose()?;
    let raw = read_records(cfg, progress)?;
    to_dataset(cfg, raw, template.as_ref())
}

/// Reads the configured dataset's records and applies the `columns` rename map.
pub fn read_records(
    cfg: &DataConfig,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<RawData, DataError> {
    let files = resolve_source(cfg, progress)?;
    let mut sink = Sink::new(cfg.on_bad_record, progress);
    for (path, name) in files {
        read_file(&path, name, &mut sink)?;
    }
    let (columns, records) = rename_columns(&cfg.columns, sink.records)?;
    Ok(RawData {
        source: cfg.source.trim().to_string(),
        files: sink.files,
        columns,
        records,
        skipped: sink.skipped,
        total_records: sink.total,
    })
}

// ---------------------------------------------------------------------------------
// Sources and files.

/// The file kinds ftui reads, by extension (as `datasets` picks its builder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Jsonl,
    Json,
    Csv,
    Parquet,
}

impl FileKind {
    pub(crate) fn of(path: &Path) -> Option<FileKind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" => Some(FileKind::Jsonl),
            "json" => Some(FileKind::Json),
            "csv" => Some(FileKind::Csv),
            "parquet" => Some(FileKind::Parquet),
            _ => None,
        }
    }
}

/// The local files to read, each with the name errors give it.
fn resolve_source(
    cfg: &DataConfig,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Vec<(PathBuf, String)>, DataError> {
    let source = cfg.source.trim();
    let path = Path::new(source);
    if path.is_file() {
        return Ok(vec![(path.to_path_buf(), source.to_string())]);
    }
    if path.is_dir() {
        // A folder is read like a hub repo: the split's files in the usual layouts.
        let listing = hub::local_listing(path);
        let files =
            choose_split_files(&listing, &cfg.split, None).map_err(|message| DataError::File {
                file: source.to_string(),
                message,
            })?;
        return Ok(files
            .into_iter()
            .map(|f| (path.join(&f), path.join(&f).to_string_lossy().into_owned()))
            .collect());
    }
    let looks_local = FileKind::of(path).is_some()
        || path.is_absolute()
        || source.starts_with('.')
        || source.starts_with('~');
    match HubDataset::parse(source) {
        Some(dataset) if !looks_local => dataset.fetch(&cfg.split, progress),
        _ => Err(DataError::NotFound {
            path: source.to_string(),
        }),
    }
}

fn read_file(path: &Path, name: String, sink: &mut Sink) -> Result<(), DataError> {
    let kind = FileKind::of(path).ok_or_else(|| DataError::File {
        file: name.clone(),
        message: "unsupported file type: expected a .jsonl, .json, .csv or .parquet file".into(),
    })?;
    let size = std::fs::metadata(path)
        .map_err(|source| DataError::Io {
            path: name.clone(),
            source,
        })?
        .len();
    sink.begin_file(name, size);
    match kind {
        FileKind::Jsonl => jsonl::read(path, sink)?,
        FileKind::Json => json::read(path, sink)?,
        FileKind::Csv => csv::read(path, sink)?,
        FileKind::Parquet => parquet::read(path, sink)?,
    }
    sink.report(size);
    Ok(())
}

/// Where the readers put what they read: records, and bad records handled by the
/// `on_bad_record` policy.
pub(crate) struct Sink<'a> {
    policy: OnBadRecord,
    files: Vec<String>,
    records: Vec<Record>,
    skipped: Vec<BadRecord>,
    total: usize,
    /// The size of the file being read, in bytes.
    size: u64,
    progress: &'a mut dyn FnMut(&str, u64, u64),
}

impl<'a> Sink<'a> {
    fn new(policy: OnBadRecord, progress: &'a mut dyn FnMut(&str, u64, u64)) -> Self {
        Sink {
            policy,
            files: Vec::new(),
            records: Vec::new(),
            skipped: Vec::new(),
            total: 0,
            size: 0,
            progress,
        }
    }

    fn begin_file(&mut self, name: String, size: u64) {
        self.files.push(name);
        self.size = size;
        self.report(0);
    }

    /// The file being read, as errors name it.
    pub(crate) fn file(&self) -> &str {
        self.files.last().map_or("", String::as_str)
    }

    /// Progress through the current file, in bytes.
    pub(crate) fn report(&mut self, done: u64) {
        let name = self.files.last().cloned().unwrap_or_default();
        (self.progress)(&name, done.min(self.size), self.size);
    }

    pub(crate) fn record(&mut self, line: usize, row: Row) {
        self.total += 1;
        self.records.push(Record {
            file: self.files.len().saturating_sub(1),
            line,
            row,
        });
    }

    /// A malformed record: the error under `fail`, recorded under `skip`.
    pub(crate) fn bad(
        &mut self,
        line: usize,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Result<(), DataError> {
        self.total += 1;
        let bad = BadRecord {
            file: self.file().to_string(),
            line,
            field: field.map(str::to_string),
            message: message.into(),
        };
        match self.policy {
            OnBadRecord::Fail => Err(DataError::Record(bad)),
            OnBadRecord::Skip => {
                self.skipped.push(bad);
                Ok(())
            }
        }
    }

    /// The whole file cannot be read.
    pub(crate) fn file_error(&self, message: impl Into<String>) -> DataError {
        DataError::File {
            file: self.file().to_string(),
            message: one_line(&message.into()),
        }
    }

    pub(crate) fn io_error(&self, source: std::io::Error) -> DataError {
        DataError::Io {
            path: self.file().to_string(),
            source,
        }
    }
}

/// What a reader made of one file, for the readers' unit tests.
#[cfg(test)]
pub(crate) struct TestRead {
    pub records: Vec<Record>,
    pub skipped: Vec<BadRecord>,
    pub total: usize,
}

/// Runs `read` on a fresh [`Sink`] for a file called `name`.
#[cfg(test)]
pub(crate) fn test_read(
    policy: OnBadRecord,
    name: &str,
    read: impl FnOnce(&mut Sink) -> Result<(), DataError>,
) -> Result<TestRead, DataError> {
    let mut progress = |_: &str, _: u64, _: u64| {};
    let mut sink = Sink::new(policy, &mut progress);
    sink.begin_file(name.to_string(), 0);
    read(&mut sink)?;
    Ok(TestRead {
        records: sink.records,
        skipped: sink.skipped,
        total: sink.total,
    })
}

/// serde_json's message for a value on one line: "... at line 1 column 9" becomes
/// "... at column 9".
pub(crate) fn json_line_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = text
        .rfind(" at line ")
        .map_or(text.as_str(), |at| &text[..at]);
    format!("not valid JSON: {message} at column {}", e.column())
}

/// The JSON type of a value, in words.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
