//! Records to examples: the `columns` rename map, the format (given or detected
//! from the columns), trl's three formats row by row, and the formatting template
//! (the book's "bring your own formatting function").

use super::*;

/// Turns records into examples and splits them (see [`load_dataset`]).
pub fn to_examples(cfg: &DataConfig, raw: RawData) -> Result<Dataset, DataError> {
    let template = cfg
        .formatting_template
        .as_deref()
        .map(FormattingTemplate::new)
        .transpose()?;
    to_dataset(cfg, raw, template.as_ref())
}

pub(super) fn to_dataset(
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
// Columns.

/// Applies the rename map (as `Dataset.rename_columns`: every column to rename must
/// exist and no new name may clash) and gives every row every column, in order.
pub(super) fn rename_columns(
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
pub(super) struct FormattingTemplate {
    env: Environment<'static>,
}

const TEMPLATE_NAME: &str = "formatting_template";

impl FormattingTemplate {
    pub(super) fn new(source: &str) -> Result<Self, DataError> {
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
