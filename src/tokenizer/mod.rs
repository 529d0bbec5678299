//! The tokenizer with what ftui needs beside it: the special tokens (BOS, EOS —
//! possibly several —, PAD, UNK), whether BOS is added, and the chat template.
//! It comes from `tokenizer.json` + `tokenizer_config.json` (+ the EOS ids of
//! `generation_config.json` and `config.json`), or from GGUF metadata ([`gguf_vocab`]).

pub mod gguf_vocab;

use crate::gguf::{GgufError, GgufFile};
use std::path::Path;
use tokenizers::Tokenizer;

/// Tokens that end a turn, from llama.cpp's list of end-of-generation texts
/// (`llama_vocab::impl::load`). A GGUF file has no generation config naming them, and
/// its EOS alone would let a Phi-3 answer run past `<|end|>` or a Llama 3 one past
/// `<|eot_id|>`.
const END_OF_TURN: [&str; 8] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<EOT>",
];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpecialToken {
    pub text: String,
    pub id: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Specials {
    pub bos: Option<SpecialToken>,
    /// The tokenizer's EOS token.
    pub eos: Option<SpecialToken>,
    pub pad: Option<SpecialToken>,
    pub unk: Option<SpecialToken>,
    /// Every id that ends generation (tokenizer EOS, config and generation-config EOS).
    pub stop_ids: Vec<u32>,
}

pub struct TextTokenizer {
    pub inner: Tokenizer,
    pub specials: Specials,
    pub chat_template: Option<String>,
    /// Where the chat template came from, for display.
    pub chat_template_source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A tokenizer file, or a GGUF vocabulary, that cannot be used.
    #[error("{file}: {message}")]
    File { file: String, message: String },
    /// GGUF metadata the vocabulary needs is missing or mistyped; the message names the
    /// file.
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

fn err(path: &Path, message: impl Into<String>) -> TokenizerError {
    TokenizerError::File {
        file: path.display().to_string(),
        message: message.into(),
    }
}

/// `"<s>"` or `{"content": "<s>", ...}` as `tokenizer_config.json` writes them.
fn token_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(String::from),
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| err(path, format!("not valid JSON: {e}")))
}

fn json_ids(v: Option<&serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| x as u32).into_iter().collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

impl TextTokenizer {
    /// Loads a Hugging Face model folder's tokenizer.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(err(
                &path,
                "missing: ftui needs the fast tokenizer file tokenizer.json (save it with tokenizer.save_pretrained)",
            ));
        }
        let inner =
            Tokenizer::from_file(&path).map_err(|e| err(&path, format!("cannot load: {e}")))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = read_json(&cfg_path)?.unwrap_or_default();
        let lookup = |key: &str| -> Option<SpecialToken> {
            let text = token_text(cfg.get(key))?;
            let id = inner.token_to_id(&text)?;
            Some(SpecialToken { text, id })
        };
        let mut specials = Specials {
            bos: lookup("bos_token"),
            eos: lookup("eos_token"),
            pad: lookup("pad_token"),
            unk: lookup("unk_token"),
            stop_ids: Vec::new(),
        };
        let mut stop: Vec<u32> = specials.eos.iter().map(|t| t.id).collect();
        for file in ["generation_config.json", "config.json"] {
            if let Some(v) = read_json(&dir.join(file))? {
                stop.extend(json_ids(v.get("eos_token_id")));
            }
        }
        stop.sort_unstable();
        stop.dedup();
        specials.stop_ids = stop;
        let (chat_template, chat_template_source) = crate::template::from_tokenizer_config(dir)
            .map_err(|e| err(dir, e.to_string()))?
            .map_or((None, String::new()), |t| {
                (Some(t), "tokenizer_config".to_string())
            });
        let chat_template_source = if dir.join("chat_template.jinja").is_file() {
            "chat_template.jinja".to_string()
        } else {
            chat_template_source
        };
        Ok(TextTokenizer {
            inner,
            specials,
            chat_template,
            chat_template_source,
        })
    }

    /// The tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let inner = gguf_vocab::tokenizer(file)?;
        let ids = file.special_tokens();
        let tok = |id: Option<u32>| {
            id.and_then(|id| inner.id_to_token(id).map(|text| SpecialToken { text, id }))
        };
        let eos = tok(ids.eos);
        let mut stop_ids: Vec<u32> = eos
            .iter()
            .map(|t| t.id)
            .chain(END_OF_TURN.iter().filter_map(|t| inner.token_to_id(t)))
            .collect();
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let specials = Specials {
            bos: tok(ids.bos),
            pad: tok(ids.pad),
            unk: tok(ids.unk),
            stop_ids,
            eos,
        };
        Ok(TextTokenizer {
            inner,
            specials,
            chat_template: file.chat_template(),
            chat_template_source: "gguf".into(),
        })
    }

    /// Token ids of `text`; `add_special` applies the tokenizer's post-processor
    /// (BOS where the model adds one), as transformers' default does.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, String> {
        self.inner
            .encode(text, add_special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        self.inner.decode(ids, skip_special).unwrap_or_default()
    }

    /// The chat template to render with: `spec` (a `[template] chat_template`
    /// value: a built-in name, a file or a template) or else the tokenizer's
    /// own; `None` when there is neither.
    pub fn chat_template_with(
        &self,
        spec: Option<&str>,
    ) -> Result<Option<crate::template::ChatTemplate>, String> {
        let source = match spec {
            Some(spec) => Some(crate::template::resolve_source(spec)?),
            None => self.chat_template.clone(),
        };
        source
            .map(|s| {
                crate::template::ChatTemplate::new(&s, &self.template_specials())
                    .map_err(|e| e.to_string())
            })
            .transpose()
    }

    /// The special-token strings a chat template may use.
    pub fn template_specials(&self) -> crate::template::SpecialTokens {
        let s = |t: &Option<SpecialToken>| t.as_ref().map(|t| t.text.clone());
        crate::template::SpecialTokens {
            bos: s(&self.specials.bos),
            eos: s(&self.specials.eos),
            pad: s(&self.specials.pad),
            unk: s(&self.specials.unk),
        }
    }
}
