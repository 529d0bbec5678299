//! Chat templates, rendered exactly as transformers' `apply_chat_template` renders them.
//!
//! What a model is trained on is the text its chat template makes of a conversation,
//! so ftui must reproduce transformers' rendering byte for byte (DESIGN.md,
//! "Correctness standard"). Hugging Face templates are Jinja2 programs run in a
//! sandboxed environment with `trim_blocks`, `lstrip_blocks`, loop controls, a
//! non-escaping `tojson`, and the globals `raise_exception` and `strftime_now`
//! (`transformers/utils/chat_template_utils.py`). This module runs them on minijinja
//! and closes the gaps between the two engines where chat templates meet them:
//! values print as Python's `str()` does (`None`, `True`, `['a', 1]`, `1e+16`),
//! `tojson` is Python's `json.dumps`, the `trim`/`strip`/`split` family uses Python's
//! idea of whitespace, type tests follow Jinja2 (`true is number`, `'x' is sequence`),
//! and the source's newlines are normalized as Jinja2's lexer does.
//!
//! `{% generation %}...{% endgeneration %}` blocks (which mark the assistant's text for
//! `return_assistant_tokens_mask`, and trl's `assistant_only_loss`) are not minijinja
//! syntax. Before compiling, they become `{% filter %}` blocks, which trim and strip
//! whitespace exactly like the Jinja2 block tags they replace, and whose filter wraps
//! the block's text in two private-use characters. After rendering, those marks are
//! removed and their places become [`Rendered::assistant_spans`].

mod builtin;
mod python;
mod source;

pub use builtin::{builtin, BUILTIN_NAMES};
pub use source::resolve_source;

use std::path::{Path, PathBuf};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Serde, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value};
use serde_json::{Map, Value as Json};

use python::{join, py_str, python_method, round, strftime_now, tojson, trim};

/// Template name used in messages when the caller gives none.
const DEFAULT_NAME: &str = "chat template";
/// The filter that `{% generation %}` blocks are rewritten to use.
const GENERATION_FILTER: &str = "__ftui_generation";
/// The render-context variable holding the two marks a generation block is wrapped in.
const GENERATION_MARKS: &str = "__ftui_generation_marks";
/// Arguments transformers passes itself; extra keyword arguments may not repeat them.
const RESERVED_KWARGS: [&str; 4] = ["messages", "tools", "documents", "add_generation_prompt"];
/// Names transformers gives a message's reasoning; the first is what templates read.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// Why a template could not be loaded, compiled or rendered. Always one line.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse.
    #[error("{name}{}: {message}", at_line(*line))]
    Syntax {
        name: String,
        line: usize,
        message: String,
    },
    /// Rendering failed (an undefined value used wrongly, a bad filter argument, ...).
    #[error("{name}{}: {message}", at_line(*line))]
    Render {
        name: String,
        line: usize,
        message: String,
    },
    /// The template called `raise_exception(message)`, e.g. "Conversation roles must
    /// alternate user/assistant/user/assistant/...".
    #[error("{name}{}: the template raised: {message}", at_line(*line))]
    Raised {
        name: String,
        line: usize,
        message: String,
    },
    /// The messages, tools, documents or keyword arguments are not what a template takes.
    #[error("chat template input: {0}")]
    Input(String),
    /// A tokenizer file could not be read or holds no usable template.
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
}

/// " line N" for a known line (minijinja counts from 1; 0 means unknown).
fn at_line(line: usize) -> String {
    if line > 0 {
        format!(" line {line}")
    } else {
        String::new()
    }
}

/// The tokenizer's special tokens, passed to the template as `bos_token`,
/// `eos_token`, `pad_token` and `unk_token` (transformers passes
/// `tokenizer.special_tokens_map`). A token that is `None` is left undefined, as
/// transformers leaves it out. The rarely used `sep_token`, `cls_token` and
/// `mask_token` can be passed in [`RenderRequest::kwargs`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub pad: Option<String>,
    pub unk: Option<String>,
}

impl SpecialTokens {
    /// The tokens as the template sees them: `("bos_token", "<s>")`, ...
    pub fn named(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("bos_token", &self.bos),
            ("eos_token", &self.eos),
            ("unk_token", &self.unk),
            ("pad_token", &self.pad),
        ]
        .into_iter()
        .filter_map(|(name, token)| token.as_deref().map(|t| (name, t)))
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "bos_token" => &mut self.bos,
            "eos_token" => &mut self.eos,
            "pad_token" => &mut self.pad,
            "unk_token" => &mut self.unk,
            _ => return None,
        })
    }
}

/// Everything `apply_chat_template` passes to a template.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderRequest<'a> {
    /// The conversation: JSON objects such as `{"role": "user", "content": "..."}`
    /// (content may also be a list of parts, and messages may carry `tool_calls` ...).
    pub messages: &'a [Json],
    /// Append the header that opens the assistant's reply.
    pub add_generation_prompt: bool,
    /// JSON schemas of the tools the model may call (`None`: the template sees `none`).
    pub tools: Option<&'a [Json]>,
    /// Documents for retrieval-augmented templates (`None`: the template sees `none`).
    pub documents: Option<&'a [Json]>,
    /// Other keyword arguments, e.g. `date_string`, `enable_thinking`; they override
    /// special tokens of the same name, as in transformers.
    pub kwargs: Option<&'a Map<String, Json>>,
}

/// A rendered conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text to tokenize (with `add_special_tokens=False`: BOS comes from the template).
    pub text: String,
    /// The text of each `{% generation %}` block as `(start, end)` **UTF-8 byte
    /// offsets into `text`** (end exclusive), in the order the blocks closed: what
    /// tokenizers' byte offsets need. transformers reports the same blocks in
    /// characters; see [`Rendered::assistant_char_spans`].
    pub assistant_spans: Vec<(usize, usize)>,
}

impl Rendered {
    /// [`Rendered::assistant_spans`] in characters (Unicode scalar values), as
    /// transformers' `AssistantTracker` counts them.
    pub fn assistant_char_spans(&self) -> Vec<(usize, usize)> {
        let chars = |byte: usize| self.text.get(..byte).map_or(0, |s| s.chars().count());
        self.assistant_spans
            .iter()
            .map(|&(start, end)| (chars(start), chars(end)))
            .collect()
    }

    /// The text of each generation block.
    pub fn assistant_texts(&self) -> impl Iterator<Item = &str> {
        self.assistant_spans
            .iter()
            .map(|&(start, end)| self.text.get(start..end).unwrap_or_default())
    }
}

/// A compiled chat template with the tokenizer's special tokens bound to it.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    name: String,
    /// The source as compiled, to keep the generation marks out of its literals.
    source: String,
    special: SpecialTokens,
    has_generation: bool,
}

impl ChatTemplate {
    /// Compiles `source` (a Hugging Face `chat_template`).
    pub fn new(source: &str, special: &SpecialTokens) -> Result<Self, TemplateError> {
        Self::named(DEFAULT_NAME, source, special)
    }

    /// Like [`ChatTemplate::new`], naming the template (e.g. its file) in errors.
    pub fn named(name: &str, source: &str, special: &SpecialTokens) -> Result<Self, TemplateError> {
        let (source, has_generation) = rewrite_generation_tags(&normalize_newlines(source));
        let mut env = environment();
        env.add_template_owned(name.to_string(), source.clone())
            .map_err(|err| syntax_error(name, &err))?;
        Ok(Self {
            env,
            name: name.to_string(),
            source,
            special: special.clone(),
            has_generation,
        })
    }

    /// Whether the template marks the assistant's text with `{% generation %}` blocks
    /// (needed for assistant-only loss).
    pub fn has_generation_blocks(&self) -> bool {
        self.has_generation
    }

    /// The special tokens the template sees.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Renders a conversation with no tools, documents or extra arguments.
    pub fn render(
        &self,
        messages: &[Json],
        add_generation_prompt: bool,
    ) -> Result<Rendered, TemplateError> {
        self.render_with(&RenderRequest {
            messages,
            add_generation_prompt,
            ..RenderRequest::default()
        })
    }

    /// Renders as `tokenizer.apply_chat_template(messages, tools=..., documents=...,
    /// add_generation_prompt=..., tokenize=False, **kwargs)` does.
    pub fn render_with(&self, request: &RenderRequest<'_>) -> Result<Rendered, TemplateError> {
        let messages = request
            .messages
            .iter()
            .map(prepare_message)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(documents) = request.documents {
            if documents.iter().any(|d| !d.is_object()) {
                return Err(TemplateError::Input(
                    "documents must be objects with \"title\" and \"text\"".into(),
                ));
            }
        }

        let mut context = Map::new();
        for (name, token) in self.special.named() {
            context.insert(name.to_string(), Json::String(token.to_string()));
        }
        if let Some(kwargs) = request.kwargs {
            for (key, value) in kwargs {
                if RESERVED_KWARGS.contains(&key.as_str()) || key == GENERATION_MARKS {
                    return Err(TemplateError::Input(format!(
                        "keyword argument {key:?} is set by ftui itself"
                    )));
                }
                context.insert(key.clone(), value.clone());
            }
        }
        let marks = if self.has_generation {
            let inputs = [
                request.messages,
                request.tools.unwrap_or_default(),
                request.documents.unwrap_or_default(),
            ];
            let marks = free_marks(&self.source, &inputs, &context)?;
            context.insert(
                GENERATION_MARKS.into(),
                Json::String([marks.0, marks.1].iter().collect()),
            );
            Some(marks)
        } else {
            None
        };
        let list = |items: Option<&[Json]>| items.map_or(Json::Null, |v| Json::Array(v.to_vec()));
        context.insert("messages".into(), Json::Array(messages));
        context.insert("tools".into(), list(request.tools));
        context.insert("documents".into(), list(request.documents));
        context.insert(
            "add_generation_prompt".into(),
            Json::Bool(request.add_generation_prompt),
        );

        let template = self
            .env
            .get_template(&self.name)
            .map_err(|err| syntax_error(&self.name, &err))?;
        let text = template
            .render(Value::from(Serde(Json::Object(context))))
            .map_err(|err| render_error(&self.name, &err))?;
        match marks {
            Some(marks) => extract_spans(&text, marks).map_err(|message| TemplateError::Render {
                name: self.name.clone(),
                line: 0,
                message,
            }),
            None => Ok(Rendered {
                text,
                assistant_spans: Vec::new(),
            }),
        }
    }
}

/// Reads a Hugging Face model folder's chat template: `chat_template.jinja` if present
/// (where transformers 4.43+ saves it), else `tokenizer_config.json`'s `chat_template`,
/// a string or a list of `{"name", "template"}` of which "default" is used. `None`
/// when the tokenizer has no template (a base model) or no such files.
pub fn from_tokenizer_config(dir: &Path) -> Result<Option<String>, TemplateError> {
    let jinja_path = dir.join("chat_template.jinja");
    if jinja_path.is_file() {
        return std::fs::read_to_string(&jinja_path)
            .map(Some)
            .map_err(|err| config_error(&jinja_path, err.to_string()));
    }
    let config_path = dir.join("tokenizer_config.json");
    match read_json_object(&config_path)?
        .as_ref()
        .and_then(|c| c.get("chat_template"))
    {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Array(list)) => default_template(&config_path, list).map(Some),
        Some(_) => Err(config_error(
            &config_path,
            "chat_template is neither a string nor a list".into(),
        )),
    }
}

/// Reads the special tokens a template sees from `tokenizer_config.json` (each a string
/// or an object with `content`), falling back to the legacy `special_tokens_map.json`
/// for tokens the config leaves out, as transformers does.
pub fn special_tokens_from_config(dir: &Path) -> Result<SpecialTokens, TemplateError> {
    let mut special = SpecialTokens::default();
    for file in ["tokenizer_config.json", "special_tokens_map.json"] {
        let path = dir.join(file);
        for (key, value) in read_json_object(&path)?.iter().flatten() {
            let Some(slot) = special.slot(key) else {
                continue;
            };
            if slot.is_some() {
                continue; // tokenizer_config.json wins
            }
            *slot = match value {
                Json::Null => None,
                Json::String(s) => Some(s.clone()),
                Json::Object(o) => match o.get("content") {
                    Some(Json::String(s)) => Some(s.clone()),
                    _ => return Err(config_error(&path, format!("{key} has no \"content\""))),
                },
                _ => return Err(config_error(&path, format!("{key} is not a string"))),
            };
        }
    }
    Ok(special)
}

fn default_template(path: &Path, list: &[Json]) -> Result<String, TemplateError> {
    let mut names = Vec::new();
    for entry in list {
        let name = entry.get("name").and_then(Json::as_str);
        let template = entry.get("template").and_then(Json::as_str);
        match (name, template) {
            (Some("default"), Some(template)) => return Ok(template.to_string()),
            (Some(name), Some(_)) => names.push(name.to_string()),
            _ => {
                return Err(config_error(
                    path,
                    "chat_template list entries need \"name\" and \"template\"".into(),
                ))
            }
        }
    }
    Err(config_error(
        path,
        format!(
            "several chat templates and none is \"default\" (found {})",
            names.join(", ")
        ),
    ))
}

fn read_json_object(path: &Path) -> Result<Option<Map<String, Json>>, TemplateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(config_error(path, err.to_string())),
    };
    match serde_json::from_str(&text) {
        Ok(Json::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(config_error(path, "not a JSON object".into())),
        Err(err) => Err(config_error(path, err.to_string())),
    }
}

fn config_error(path: &Path, message: String) -> TemplateError {
    TemplateError::Config {
        path: path.to_path_buf(),
        message: one_line(&message),
    }
}

// ---------------------------------------------------------------------------------
// Preparing the inputs as apply_chat_template does.

/// transformers drops the keys whose value is None (`_normalize_chat_messages`) and
/// copies a message's reasoning to `thinking` and `reasoning_content`
/// (`_alias_reasoning_fields`), in that order.
fn prepare_message(message: &Json) -> Result<Json, TemplateError> {
    let Json::Object(fields) = message else {
        return Err(TemplateError::Input(format!(
            "messages must be JSON objects, got {}",
            one_line(&message.to_string())
        )));
    };
    let fields: Map<String, Json> = fields
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let reasoning = REASONING_FIELDS
        .iter()
        .find_map(|key| fields.get(*key))
        .cloned();
    let Some(reasoning) = reasoning else {
        return Ok(Json::Object(fields));
    };
    // {"thinking": r, **message, "reasoning_content": r}: an existing key keeps its place.
    let mut aliased = Map::new();
    aliased.insert("thinking".into(), reasoning.clone());
    aliased.extend(fields);
    aliased.insert("reasoning_content".into(), reasoning);
    Ok(Json::Object(aliased))
}

/// Two private-use characters that appear nowhere in the template or its inputs, so
/// that they can only come from the generation filter.
fn free_marks(
    source: &str,
    lists: &[&[Json]],
    context: &Map<String, Json>,
) -> Result<(char, char), TemplateError> {
    fn collect(value: &Json, out: &mut String) {
        match value {
            Json::String(s) => out.push_str(s),
            Json::Array(items) => items.iter().for_each(|v| collect(v, out)),
            Json::Object(map) => map.iter().for_each(|(k, v)| {
                out.push_str(k);
                collect(v, out);
            }),
            _ => {}
        }
    }
    let mut text = source.to_string();
    lists
        .iter()
        .flat_map(|list| list.iter())
        .chain(context.values())
        .for_each(|value| collect(value, &mut text));
    let mut free = ('\u{E000}'..='\u{F8FF}').filter(|c| !text.contains(*c));
    match (free.next(), free.next()) {
        (Some(open), Some(close)) => Ok((open, close)),
        _ => Err(TemplateError::Input(
            "the conversation uses every private-use character".into(),
        )),
    }
}

/// Removes the marks the generation filter put around each block and returns where
/// the blocks' text ends up.
fn extract_spans(marked: &str, (open, close): (char, char)) -> Result<Rendered, String> {
    let mut text = String::with_capacity(marked.len());
    let mut starts = Vec::new();
    let mut spans = Vec::new();
    for c in marked.chars() {
        if c == open {
            starts.push(text.len());
        } else if c == close {
            let start = starts
                .pop()
                .ok_or("a generation block closed twice (its text was cut by the template)")?;
            spans.push((start, text.len()));
        } else {
            text.push(c);
        }
    }
    if !starts.is_empty() {
        return Err("a generation block never closed (its text was cut by the template)".into());
    }
    Ok(Rendered {
        text,
        assistant_spans: spans,
    })
}

// ---------------------------------------------------------------------------------
// Source rewriting.

/// Jinja2's lexer turns `\r\n` and `\r` into `\n` everywhere in the source.
fn normalize_newlines(source: &str) -> String {
    source.replace("\r\n", "\n").replace('\r', "\n")
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` (with any `-`/`+` modifiers)
/// into a `{% filter %}` block, leaving `{% raw %}` sections, comments and string
/// literals alone. Returns the new source and whether any block was found.
fn rewrite_generation_tags(source: &str) -> (String, bool) {
    let mut out = String::with_capacity(source.len());
    let mut found = false;
    let mut rest = source;
    while let Some(pos) = rest.find('{') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if rest.starts_with("{#") {
            let end = rest.find("#}").map_or(rest.len(), |e| e + 2);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else if rest.starts_with("{{") || rest.starts_with("{%") {
            let close = if rest.starts_with("{{") { "}}" } else { "%}" };
            let end = tag_end(rest, close);
            let tag = &rest[..end];
            match block_tag_name(tag) {
                Some("generation") => {
                    found = true;
                    out.push_str(&replace_tag_name(
                        tag,
                        "generation",
                        &format!("filter {GENERATION_FILTER}"),
                    ));
                }
                Some("endgeneration") => {
                    out.push_str(&replace_tag_name(tag, "endgeneration", "endfilter"));
                }
                Some("raw") => {
                    let raw_end = find_endraw(rest, end);
                    out.push_str(&rest[..raw_end]);
                    rest = &rest[raw_end..];
                    continue;
                }
                _ => out.push_str(tag),
            }
            rest = &rest[end..];
        } else {
            out.push('{');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    // `filter NAME` takes no arguments in the rewritten tag; the filter finds its marks
    // in the render context.
    (out, found)
}

/// Byte length of the tag starting at `tag[0]`, through its `close` delimiter,
/// skipping string literals (Mistral's template prints `"}}"`).
fn tag_end(tag: &str, close: &str) -> usize {
    let bytes = tag.as_bytes();
    let mut i = 2;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if bytes[i..].starts_with(close.as_bytes()) => return i + close.len(),
            None => {}
        }
        i += 1;
    }
    tag.len()
}

/// The statement name of a `{% ... %}` tag (`"if"`, `"generation"`, ...).
fn block_tag_name(tag: &str) -> Option<&str> {
    let inner = tag.strip_prefix("{%")?;
    let inner = inner.trim_start_matches(['-', '+']).trim_start();
    let end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    Some(&inner[..end]).filter(|name| !name.is_empty())
}

fn replace_tag_name(tag: &str, name: &str, with: &str) -> String {
    match tag.find(name) {
        Some(at) => format!("{}{}{}", &tag[..at], with, &tag[at + name.len()..]),
        None => tag.to_string(),
    }
}

/// End of the `{% endraw %}` tag that closes a raw block whose opening tag ends at
/// `after_open`.
fn find_endraw(rest: &str, after_open: usize) -> usize {
    let mut at = after_open;
    while let Some(pos) = rest[at..].find("{%") {
        let start = at + pos;
        let end = tag_end(&rest[start..], "%}") + start;
        if block_tag_name(&rest[start..end]) == Some("endraw") {
            return end;
        }
        at = start + 2;
    }
    rest.len()
}

// ---------------------------------------------------------------------------------
// The environment.

/// A minijinja environment set up as transformers sets up Jinja2 for chat
/// templates; the dataset's `formatting_template` uses it too.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Whitespace exactly as transformers sets up Jinja2 (keep_trailing_newline stays
    // off, Jinja2's default). The builder cannot fail with the default delimiters.
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(python_method);
    env.set_formatter(|out, _state, value| {
        if !value.is_undefined() {
            out.write_str(&py_str(value))?;
        }
        Ok(())
    });

    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);

    env.add_filter("tojson", tojson);
    env.add_filter("string", |value: Value| py_str(&value));
    env.add_filter("trim", trim);
    env.add_filter("join", join);
    env.add_filter("round", round);
    env.add_filter(GENERATION_FILTER, generation_filter);

    env.add_test("number", |v: Value| {
        matches!(v.kind(), ValueKind::Number | ValueKind::Bool)
    });
    env.add_test("integer", |v: Value| v.is_integer());
    env.add_test("float", |v: Value| {
        v.kind() == ValueKind::Number && !v.is_integer()
    });
    env.add_test("boolean", |v: Value| v.kind() == ValueKind::Bool);
    env.add_test("true", |v: Value| {
        v.kind() == ValueKind::Bool && v.is_true()
    });
    env.add_test("false", |v: Value| {
        v.kind() == ValueKind::Bool && !v.is_true()
    });
    // Jinja2: anything with len() and [] is a sequence, anything iter() takes iterable.
    env.add_test("sequence", |v: Value| {
        matches!(
            v.kind(),
            ValueKind::String | ValueKind::Seq | ValueKind::Map | ValueKind::Bytes
        )
    });
    env.add_test("iterable", |v: Value| {
        matches!(
            v.kind(),
            ValueKind::String
                | ValueKind::Seq
                | ValueKind::Map
                | ValueKind::Bytes
                | ValueKind::Iterable
                | ValueKind::Undefined
        )
    });
    env
}

/// `raise_exception(message)`: the template refuses the conversation.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, one_line(&message))
        .with_source(RaisedException(message)))
}

#[derive(Debug)]
struct RaisedException(String);

impl std::fmt::Display for RaisedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

fn generation_filter(state: &State, body: String) -> Result<Value, Error> {
    let marks = state
        .lookup(GENERATION_MARKS)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut chars = marks.chars();
    match (chars.next(), chars.next()) {
        (Some(open), Some(close)) => Ok(Value::from(format!("{open}{body}{close}"))),
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            "generation block rendered without ftui's marks",
        )),
    }
}

fn syntax_error(name: &str, err: &Error) -> TemplateError {
    TemplateError::Syntax {
        name: name.to_string(),
        line: err.line().unwrap_or(0),
        message: error_message(err),
    }
}

fn render_error(name: &str, err: &Error) -> TemplateError {
    let line = err.line().unwrap_or(0);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<RaisedException>() {
            return TemplateError::Raised {
                name: name.to_string(),
                line,
                message: one_line(&raised.0),
            };
        }
        source = e.source();
    }
    TemplateError::Render {
        name: name.to_string(),
        line,
        message: error_message(err),
    }
}

/// minijinja's message without its "(in name:line)" suffix, which we print ourselves.
fn error_message(err: &Error) -> String {
    let message = match err.detail() {
        Some(detail) => format!("{}: {}", err.kind(), detail),
        None => err.kind().to_string(),
    };
    one_line(&message)
}

/// Text on one line: runs of whitespace (newlines included) become one space.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
