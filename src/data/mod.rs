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
mod hub;
mod json;
mod jsonl;
mod parquet;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::config::{DataConfig, DataFormat, OnBadRecord};
use crate::hub::HubError;

pub use hub::{choose_split_files, HubDataset};

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

/// Turns records into examples and splits them (see [`load_dataset`]).
pub fn to_examples(cfg: &DataConfig, raw: RawData) -> Result<Dataset, DataError> {
    let template = cfg
        .formatting_template
        .as_deref()
        .map(FormattingTemplate::new)
        .transpose()?;
    to_dataset(cfg, raw, template.as_ref())
}

fn to_dataset(
    cfg: &DataConfig,
    raw: RawData,
    template: Option<&FormattingTemplate>,
) -> Result<Dataset, DataError> {
    let mut format = match (cfg.format, template) {
        (Some(format), _) => {
            if template.is_none() {
                check_columns(format, &raw)?;
            }
            Some(format)
        }
        (None, Some(_)) => None, // the template's output decides
        (None, None) => Some(detect_format(&raw)?),
    };
    check_system_prompt(cfg, format)?;

    let mut skipped = raw.skipped;
    let mut examples = Vec::with_capacity(raw.records.len());
    for record in raw.records {
        let converted = match template {
            // Only an explicit format binds the template; a detected one is checked below.
            Some(t) => from_template(cfg, t, &record.row, cfg.format),
            None => from_row(cfg, &record.row, format.unwrap_or(DataFormat::Text)),
        };
        let converted = converted.and_then(|example| match format {
            Some(f) if f != example.format() => Err(Fault::whole(format!(
                "formatting_template gave {} here, but {} for the first record",
                format_name(example.format()),
                format_name(f)
            ))),
            _ => Ok(example),
        });
        match converted {
            Ok(example) => {
                if format.is_none() {
                    format = Some(example.format());
                    check_system_prompt(cfg, format)?;
                }
                examples.push(example);
            }
            Err(fault) => {
                let bad = BadRecord {
                    file: raw.files.get(record.file).cloned().unwrap_or_default(),
                    line: record.line,
                    field: fault.field,
                    message: fault.message,
                };
                match cfg.on_bad_record {
                    OnBadRecord::Fail => return Err(DataError::Record(bad)),
                    OnBadRecord::Skip => skipped.push(bad),
                }
            }
        }
    }

    // In file order, whichever stage (reading or converting) found them.
    skipped.sort_by_key(|b| (raw.files.iter().position(|f| *f == b.file), b.line));
    let source = raw.source;
    let Some(format) = format.filter(|_| !examples.is_empty()) else {
        let message = match skipped.first() {
            Some(first) => format!(
                "all {} records were skipped as malformed; the first: {first}",
                raw.total_records
            ),
            None => "the data holds no records".into(),
        };
        return Err(DataError::Empty {
            data: source,
            message,
        });
    };
    let (train, eval) = split(examples, cfg.eval_split_ratio, cfg.seed)?;
    Ok(Dataset {
        train,
        eval,
        format,
        source,
        columns: raw.columns,
        skipped,
        total_records: raw.total_records,
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

use crate::template::one_line;

// ---------------------------------------------------------------------------------
// Columns.

/// Applies the rename map (as `Dataset.rename_columns`: every column to rename must
/// exist and no new name may clash) and gives every row every column, in order.
fn rename_columns(
    renames: &BTreeMap<String, String>,
    mut records: Vec<Record>,
) -> Result<(Vec<String>, Vec<Record>), DataError> {
    // The columns in order of first appearance, as `datasets` infers a JSON schema.
    let mut seen = std::collections::HashSet::new();
    let mut original: Vec<String> = Vec::new();
    for record in &records {
        for key in record.row.keys() {
            if seen.insert(key.as_str()) {
                original.push(key.clone());
            }
        }
    }
    let config_error = |message: String| DataError::Config {
        key: "columns".into(),
        message,
    };
    for (from, to) in renames {
        if !original.contains(from) {
            return Err(config_error(format!(
                "`{from}` is not a column of the data (columns: {})",
                list(&original)
            )));
        }
        let clash = original.contains(to) && !renames.contains_key(to);
        if clash || renames.values().filter(|t| *t == to).count() > 1 {
            return Err(config_error(format!(
                "renaming `{from}` to `{to}` would give two columns named `{to}`"
            )));
        }
    }
    let renamed: Vec<String> = original
        .iter()
        .map(|c| renames.get(c).unwrap_or(c).clone())
        .collect();
    let uniform = records
        .iter()
        .all(|r| r.row.len() == original.len() && r.row.keys().eq(original.iter()));
    if renames.is_empty() && uniform {
        return Ok((original, records));
    }
    for record in &mut records {
        let mut row = std::mem::take(&mut record.row);
        record.row = original
            .iter()
            .zip(&renamed)
            .map(|(old, new)| (new.clone(), row.remove(old).unwrap_or(Value::Null)))
            .collect();
    }
    Ok((renamed, records))
}

fn list(columns: &[String]) -> String {
    if columns.is_empty() {
        "none".into()
    } else {
        columns.join(", ")
    }
}

fn format_name(format: DataFormat) -> &'static str {
    match format {
        DataFormat::Messages => "messages",
        DataFormat::PromptCompletion => "prompt_completion",
        DataFormat::Text => "text",
    }
}

const EXPECTED_COLUMNS: &str =
    "a `messages` column (conversations), `prompt` and `completion` columns, or a `text` column";

/// The format the columns call for, as trl detects it.
fn detect_format(raw: &RawData) -> Result<DataFormat, DataError> {
    let has = |c: &str| raw.columns.iter().any(|k| k == c);
    if has("messages") {
        Ok(DataFormat::Messages)
    } else if has("prompt") && has("completion") {
        Ok(DataFormat::PromptCompletion)
    } else if has("text") {
        Ok(DataFormat::Text)
    } else {
        Err(DataError::Columns {
            data: raw.source.clone(),
            message: format!(
                "cannot tell the format from the columns (found: {}); expected {EXPECTED_COLUMNS}: rename columns with [data] columns, or write a [data] formatting_template",
                list(&raw.columns)
            ),
        })
    }
}

/// An explicit format needs its columns.
fn check_columns(format: DataFormat, raw: &RawData) -> Result<(), DataError> {
    let needed: &[&str] = match format {
        DataFormat::Messages => &["messages"],
        DataFormat::PromptCompletion => &["prompt", "completion"],
        DataFormat::Text => &["text"],
    };
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|c| !raw.columns.iter().any(|k| k == c))
        .collect();
    if missing.is_empty() || raw.records.is_empty() {
        return Ok(());
    }
    let needed = needed
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(" and ");
    Err(DataError::Columns {
        data: raw.source.clone(),
        message: format!(
            "format = \"{}\" needs {needed} (found: {}): rename columns with [data] columns, or write a [data] formatting_template",
            format_name(format),
            list(&raw.columns)
        ),
    })
}

fn check_system_prompt(cfg: &DataConfig, format: Option<DataFormat>) -> Result<(), DataError> {
    if cfg.system_prompt.is_some() && format == Some(DataFormat::Text) {
        return Err(DataError::Config {
            key: "system_prompt".into(),
            message: "applies to messages and prompt_completion data; text data is used as it is (put the system text into the text, or use a formatting_template)".into(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Rows to examples.

/// What is wrong with a record, and where in it.
#[derive(Debug)]
struct Fault {
    field: Option<String>,
    message: String,
}

impl Fault {
    fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        Fault {
            field: Some(field.into()),
            message: message.into(),
        }
    }
    fn whole(message: impl Into<String>) -> Self {
        Fault {
            field: None,
            message: message.into(),
        }
    }
}

const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

fn from_row(cfg: &DataConfig, row: &Row, format: DataFormat) -> Result<Example, Fault> {
    let get = |column: &str| row.get(column).filter(|v| !v.is_null());
    match format {
        DataFormat::Messages => {
            let value = get("messages").ok_or_else(|| Fault::at("messages", "missing"))?;
            let messages = checked_messages(value, "messages")?;
            Ok(Example::Messages(with_system(cfg, messages)))
        }
        DataFormat::PromptCompletion => {
            let prompt = get("prompt").ok_or_else(|| Fault::at("prompt", "missing"))?;
            let completion = get("completion").ok_or_else(|| Fault::at("completion", "missing"))?;
            let prompt = turn_or_messages(prompt, "prompt", "user")?;
            let completion = turn_or_messages(completion, "completion", "assistant")?;
            Ok(Example::PromptCompletion {
                prompt: with_system(cfg, prompt),
                completion,
            })
        }
        DataFormat::Text => match get("text") {
            Some(Value::String(text)) => Ok(Example::Text(text.clone())),
            Some(other) => Err(Fault::at(
                "text",
                format!("expected a string, got {}", kind_of(other)),
            )),
            None => Err(Fault::at("text", "missing")),
        },
    }
}

/// A prompt or completion: a string (one turn of `role`) or a list of messages.
fn turn_or_messages(value: &Value, field: &str, role: &str) -> Result<Vec<Value>, Fault> {
    match value {
        Value::String(text) => Ok(vec![message(role, text)]),
        Value::Array(_) => checked_messages(value, field),
        other => Err(Fault::at(
            field,
            format!(
                "expected a string or a list of messages, got {}",
                kind_of(other)
            ),
        )),
    }
}

fn message(role: &str, content: &str) -> Value {
    let mut m = Map::new();
    m.insert("role".into(), Value::String(role.into()));
    m.insert("content".into(), Value::String(content.into()));
    Value::Object(m)
}

/// Prepends the system prompt unless the conversation already starts with one.
fn with_system(cfg: &DataConfig, mut messages: Vec<Value>) -> Vec<Value> {
    if let Some(system) = &cfg.system_prompt {
        let has_system = messages
            .first()
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            == Some("system");
        if !has_system {
            messages.insert(0, message("system", system));
        }
    }
    messages
}

/// Checks a list of chat messages as `apply_chat_template` takes them: objects with
/// a known `role` and a `content` that is a string or a list of content parts (or
/// null beside `tool_calls`). Extra keys (`name`, `tool_call_id`, ...) pass through.
fn checked_messages(value: &Value, field: &str) -> Result<Vec<Value>, Fault> {
    let Value::Array(items) = value else {
        return Err(Fault::at(
            field,
            format!("expected a list of messages, got {}", kind_of(value)),
        ));
    };
    if items.is_empty() {
        return Err(Fault::at(field, "no messages"));
    }
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Value::Object(m) = item else {
            return Err(Fault::at(
                at,
                format!(
                    "expected a message object with `role` and `content`, got {}",
                    kind_of(item)
                ),
            ));
        };
        if !m.contains_key("role") && m.contains_key("from") && m.contains_key("value") {
            return Err(Fault::at(
                at,
                "this is ShareGPT's `from`/`value` shape; expected `role` and `content` (convert it with a formatting_template)",
            ));
        }
        match m.get("role") {
            Some(Value::String(role)) if ROLES.contains(&role.as_str()) => {}
            Some(Value::String(role)) => {
                return Err(Fault::at(
                    format!("{at}.role"),
                    format!("`{role}` is not one of {}", ROLES.join(", ")),
                ))
            }
            Some(other) if !other.is_null() => {
                return Err(Fault::at(
                    format!("{at}.role"),
                    format!("expected a string, got {}", kind_of(other)),
                ))
            }
            _ => return Err(Fault::at(format!("{at}.role"), "missing")),
        }
        let content_at = format!("{at}.content");
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => check_parts(parts, &content_at)?,
            None | Some(Value::Null) if m.get("tool_calls").is_some_and(|t| !t.is_null()) => {}
            None | Some(Value::Null) => return Err(Fault::at(content_at, "missing")),
            Some(other) => {
                return Err(Fault::at(
                    content_at,
                    format!(
                        "expected a string or a list of content parts, got {}",
                        kind_of(other)
                    ),
                ))
            }
        }
    }
    Ok(items.clone())
}

/// Content parts as Hugging Face chat templates take them: `{"type": "text", "text":
/// ...}`, `{"type": "image", ...}`.
fn check_parts(parts: &[Value], field: &str) -> Result<(), Fault> {
    for (i, part) in parts.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Value::Object(p) = part else {
            return Err(Fault::at(
                at,
                format!(
                    "expected a content part like {{\"type\": \"text\", \"text\": ...}}, got {}",
                    kind_of(part)
                ),
            ));
        };
        match p.get("type") {
            Some(Value::String(t)) if t == "text" => match p.get("text") {
                Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(Fault::at(
                        format!("{at}.text"),
                        format!("expected a string, got {}", kind_of(other)),
                    ))
                }
                None => return Err(Fault::at(format!("{at}.text"), "missing")),
            },
            Some(Value::String(_)) => {}
            _ => return Err(Fault::at(format!("{at}.type"), "expected a string")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The formatting template.

/// `[data] formatting_template`: a template over a record's columns (the book's "bring
/// your own formatting function"). Whitespace is handled as in transformers' chat
/// templates (`trim_blocks`, `lstrip_blocks`, no trailing newline kept); a column the
/// template uses but the record lacks is an error rather than an empty string, so a
/// misspelt column name cannot silently train on blanks (`{% if x is defined %}` and
/// `{% if x %}` still work).
struct FormattingTemplate {
    env: Environment<'static>,
}

const TEMPLATE_NAME: &str = "formatting_template";

impl FormattingTemplate {
    fn new(source: &str) -> Result<Self, DataError> {
        // Chat-template rules (whitespace, Python-style printing and string
        // methods), but a missing column is an error, not an empty string.
        let mut env = crate::template::environment();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.add_template_owned(TEMPLATE_NAME, source.replace("\r\n", "\n"))
            .map_err(|e| DataError::Config {
                key: TEMPLATE_NAME.into(),
                message: template_error(&e),
            })?;
        Ok(FormattingTemplate { env })
    }

    fn render(&self, row: &Row) -> Result<String, Fault> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Fault::whole(format!("{TEMPLATE_NAME}: {}", template_error(&e))))?;
        template
            .render(minijinja::Value::from(minijinja::value::Serde(row)))
            .map_err(|e| Fault::whole(format!("{TEMPLATE_NAME}: {}", template_error(&e))))
    }
}

fn template_error(e: &minijinja::Error) -> String {
    let what = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    match e.line() {
        Some(line) => format!("line {line}: {}", one_line(&what)),
        None => one_line(&what),
    }
}

/// A record through the template: messages when the output is a JSON list of
/// messages, otherwise text; an explicit `format` says which it must be.
fn from_template(
    cfg: &DataConfig,
    template: &FormattingTemplate,
    row: &Row,
    format: Option<DataFormat>,
) -> Result<Example, Fault> {
    let text = template.render(row)?;
    if format == Some(DataFormat::Text) {
        return Ok(Example::Text(text));
    }
    let parsed: Result<Value, _> = serde_json::from_str(text.trim());
    let looks_like_messages = matches!(&parsed, Ok(Value::Array(items))
        if !items.is_empty() && items.iter().all(|m| m.get("role").is_some()));
    let messages = match parsed {
        Ok(value) if looks_like_messages => checked_messages(&value, TEMPLATE_NAME)?,
        _ if format.is_none() => return Ok(Example::Text(text)),
        Ok(_) => {
            return Err(Fault::whole(format!(
                "{TEMPLATE_NAME} output is not a JSON list of messages (format = \"{}\")",
                format_name(format.unwrap_or(DataFormat::Messages))
            )))
        }
        Err(e) => {
            return Err(Fault::whole(format!(
                "{TEMPLATE_NAME} output is not a JSON list of messages (format = \"{}\"): {e}",
                format_name(format.unwrap_or(DataFormat::Messages))
            )))
        }
    };
    if format == Some(DataFormat::PromptCompletion) {
        // trl's conversational prompt/completion: the completion is the trailing
        // assistant turns, the prompt everything before them.
        let cut = messages
            .iter()
            .rposition(|m| m.get("role").and_then(Value::as_str) != Some("assistant"))
            .map_or(0, |i| i + 1);
        if cut == 0 || cut == messages.len() {
            return Err(Fault::whole(format!(
                "{TEMPLATE_NAME} output must end with assistant messages (the completion) after at least one other message (the prompt)"
            )));
        }
        let mut prompt = messages;
        let completion = prompt.split_off(cut);
        return Ok(Example::PromptCompletion {
            prompt: with_system(cfg, prompt),
            completion,
        });
    }
    Ok(Example::Messages(with_system(cfg, messages)))
}

// ---------------------------------------------------------------------------------
// Split and shuffle.

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014; constants of Vigna's reference `splitmix64.c`): one
/// 64-bit state, passes BigCrush, and is fully specified by these few lines, so the
/// same seed gives the same split on every platform and every ftui version.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias (Lemire's multiply-shift
    /// with rejection, "Fast random integer generation in an interval", 2019).
    pub fn below(&mut self, n: u64) -> u64 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

/// A permutation of `0..n` by Fisher-Yates with [`SplitMix64`] seeded by `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Holds out `ceil(ratio * n)` examples for evaluation, as
/// `datasets.Dataset.train_test_split(test_size=ratio)` sizes it: both parts drawn
/// from one shuffle by `seed`. With ratio 0 the examples keep their file order.
pub fn split(
    examples: Vec<Example>,
    ratio: f64,
    seed: u64,
) -> Result<(Vec<Example>, Vec<Example>), DataError> {
    if ratio <= 0.0 {
        return Ok((examples, Vec::new()));
    }
    let n = examples.len();
    let n_eval = (ratio * n as f64).ceil() as usize;
    if n_eval >= n {
        return Err(DataError::Config {
            key: "eval_split_ratio".into(),
            message: format!(
                "{ratio} of {n} examples holds out {n_eval} for evaluation and leaves none to train on"
            ),
        });
    }
    let mut slots: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
    let order = permutation(n, seed);
    let mut take = |i: usize| slots.get_mut(i).and_then(Option::take);
    let eval: Vec<Example> = order[..n_eval].iter().filter_map(|&i| take(i)).collect();
    let train: Vec<Example> = order[n_eval..].iter().filter_map(|&i| take(i)).collect();
    Ok((train, eval))
}

#[cfg(test)]
mod tests;
