//! The tokenizer as GGUF metadata (`tokenizer.ggml.*`), as llama.cpp's converter writes
//! it: the token list exactly as long as the embedding (ids without a token become
//! `[PAD{id}]`, type UNUSED), token types, merges (byte-level BPE) or scores
//! (SentencePiece), the special ids and both add-BOS/EOS flags stated explicitly, the
//! pre-tokenizer's llama.cpp name, the end-of-turn id and the chat template.
//!
//! A GGUF source keeps its own vocabulary keys verbatim (they were written for llama.cpp
//! already); a Hugging Face source is read from its `tokenizer.json`.

use super::{io_err, ExportError, Prepared, Result};
use crate::gguf::{GgufFile, GgufValue};
use crate::tokenizer::TextTokenizer;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// The score convert gives tokens it has no score for (added and padding tokens).
const NO_SCORE: f32 = -1000.0;

type Kv = (String, GgufValue);

fn kv(key: &str, v: GgufValue) -> Kv {
    (key.to_string(), v)
}

fn strings(items: impl IntoIterator<Item = String>) -> GgufValue {
    GgufValue::Array(items.into_iter().map(GgufValue::String).collect())
}

/// The `tokenizer.*` metadata for an embedding of `rows` rows.
pub fn tokenizer_metadata(p: &Prepared, rows: usize) -> Result<Vec<Kv>> {
    let mut out = if p.loaded.path.is_file() {
        from_gguf(p, rows)?
    } else {
        from_tokenizer_json(&p.loaded.path, &p.loaded.tokenizer, rows)?
    };
    out.retain(|(k, _)| k != "tokenizer.chat_template" && k != "tokenizer.ggml.eot_token_id");
    if let Some(eot) = &p.turns.end_of_turn {
        out.push(kv("tokenizer.ggml.eot_token_id", GgufValue::U32(eot.id)));
    }
    out.push(kv(
        "tokenizer.chat_template",
        GgufValue::String(p.chat_template.clone()),
    ));
    Ok(out)
}

/// A GGUF source's own keys, the token arrays padded to the embedding.
fn from_gguf(p: &Prepared, rows: usize) -> Result<Vec<Kv>> {
    let file =
        GgufFile::open(&p.loaded.path).map_err(|e| ExportError::Unsupported(e.to_string()))?;
    let mut out: Vec<Kv> = file
        .metadata()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for (key, value) in out.iter_mut() {
        let GgufValue::Array(items) = value else {
            continue;
        };
        let pad = |i: usize| match key.as_str() {
            "tokenizer.ggml.tokens" => Some(GgufValue::String(format!("[PAD{i}]"))),
            "tokenizer.ggml.token_type" => Some(GgufValue::I32(UNUSED)),
            "tokenizer.ggml.scores" => Some(GgufValue::F32(NO_SCORE)),
            _ => None,
        };
        while items.len() < rows {
            match pad(items.len()) {
                Some(v) => items.push(v),
                None => break,
            }
        }
    }
    Ok(out)
}

/// `tokenizer.json`'s `model.merges`, as `"left right"` lines: the old format as it is,
/// the new (pairs) with spaces inside a part spelled as byte-level `Ġ`, as convert does.
fn merge_lines(model: &Value) -> Vec<String> {
    let Some(merges) = model.get("merges").and_then(Value::as_array) else {
        return Vec::new();
    };
    merges
        .iter()
        .filter_map(|m| match m {
            Value::String(s) => Some(s.clone()),
            Value::Array(pair) => {
                let part = |i: usize| pair.get(i)?.as_str().map(|s| s.replace(' ', "\u{120}"));
                Some(format!("{} {}", part(0)?, part(1)?))
            }
            _ => None,
        })
        .collect()
}

/// Whether a JSON component tree (pre-tokenizer, decoder) holds a component of `type`.
fn has_type(v: &Value, ty: &str) -> bool {
    match v {
        Value::Object(o) => {
            o.get("type").and_then(Value::as_str) == Some(ty) || o.values().any(|x| has_type(x, ty))
        }
        Value::Array(a) => a.iter().any(|x| has_type(x, ty)),
        _ => false,
    }
}

/// llama.cpp's name for a byte-level pre-tokenizer, by its structure (the names whose
/// split rules llama.cpp's `llm_tokenizer_bpe` knows).
fn pre_name(pre: &Value) -> Option<&'static str> {
    let ty = |v: &Value| v.get("type").and_then(Value::as_str).map(str::to_string);
    let parts: Vec<&Value> = match ty(pre).as_deref() {
        Some("Sequence") => pre.get("pretokenizers")?.as_array()?.iter().collect(),
        _ => vec![pre],
    };
    let types: Vec<String> = parts.iter().filter_map(|p| ty(p)).collect();
    let flag = |p: &Value, k: &str| p.get(k).and_then(Value::as_bool);
    match types
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["ByteLevel"] if flag(parts[0], "use_regex") != Some(false) => Some("gpt-2"),
        ["Digits", "ByteLevel"] if flag(parts[0], "individual_digits") == Some(true) => {
            Some("smollm")
        }
        ["Split", "ByteLevel"] => {
            let regex = parts[0].get("pattern")?.get("Regex")?.as_str()?;
            if regex.contains(r"\p{N}{1,3}") {
                Some("llama-bpe")
            } else if regex.contains(r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|") {
                Some("qwen2")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A Hugging Face source's `tokenizer.json`, as convert's `_set_vocab_gpt2` (byte-level
/// BPE) or its SentencePiece path (a BPE with byte fallback: tokens, scores, types).
fn from_tokenizer_json(dir: &Path, tok: &TextTokenizer, rows: usize) -> Result<Vec<Kv>> {
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let j: Value = serde_json::from_str(&text)
        .map_err(|e| ExportError::Unsupported(format!("{}: {e}", path.display())))?;
    let unsupported =
        |what: String| ExportError::Unsupported(format!("{}: {what}", path.display()));
    let model = &j["model"];
    if model.get("type").and_then(Value::as_str) != Some("BPE") {
        return Err(unsupported(
            "ftui writes BPE vocabularies (byte-level or SentencePiece) into GGUF; this tokenizer is another model type".into(),
        ));
    }
    let mut by_id: HashMap<u64, (String, i32)> = HashMap::new();
    for (token, id) in model["vocab"].as_object().into_iter().flatten() {
        if let Some(id) = id.as_u64() {
            by_id.insert(id, (token.clone(), NORMAL));
        }
    }
    for t in j["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (t["id"].as_u64(), t["content"].as_str()) else {
            continue;
        };
        let special = t["special"].as_bool().unwrap_or(false);
        by_id.insert(
            id,
            (
                content.to_string(),
                if special { CONTROL } else { USER_DEFINED },
            ),
        );
    }
    if let Some(max) = by_id.keys().max().filter(|&&m| m as usize >= rows) {
        return Err(unsupported(format!(
            "token id {max} is past the embedding's {rows} rows"
        )));
    }
    let byte_level =
        has_type(&j["pre_tokenizer"], "ByteLevel") || has_type(&j["decoder"], "ByteLevel");
    let unk = tok.specials.unk.as_ref().map(|t| u64::from(t.id));
    let mut tokens = Vec::with_capacity(rows);
    let mut types = Vec::with_capacity(rows);
    for id in 0..rows as u64 {
        let (token, mut ty) = by_id
            .remove(&id)
            .unwrap_or_else(|| (format!("[PAD{id}]"), UNUSED));
        if !byte_level {
            if Some(id) == unk {
                ty = UNKNOWN;
            } else if ty == NORMAL
                && token.len() == 6
                && token.starts_with("<0x")
                && token.ends_with('>')
            {
                ty = BYTE;
            }
        }
        tokens.push(token);
        types.push(ty);
    }
    let merges = merge_lines(model);
    let mut out = Vec::new();
    if byte_level {
        let pre = pre_name(&j["pre_tokenizer"]).ok_or_else(|| {
            unsupported(format!(
                "its pre-tokenizer ({}) has no llama.cpp name ftui knows (gpt-2, smollm, llama-bpe, qwen2)",
                j["pre_tokenizer"]
            ))
        })?;
        out.push(kv("tokenizer.ggml.model", GgufValue::String("gpt2".into())));
        out.push(kv("tokenizer.ggml.pre", GgufValue::String(pre.into())));
        out.push(kv("tokenizer.ggml.tokens", strings(tokens)));
        out.push(kv(
            "tokenizer.ggml.token_type",
            GgufValue::Array(types.into_iter().map(GgufValue::I32).collect()),
        ));
        out.push(kv("tokenizer.ggml.merges", strings(merges)));
    } else {
        // SentencePiece merges the adjacent pair whose joined piece scores highest; a
        // piece made by merge rank r scores -r, so the order is the BPE's.
        let mut rank: HashMap<String, usize> = HashMap::new();
        for (r, line) in merges.iter().enumerate() {
            if let Some((a, b)) = line.split_once(' ') {
                rank.entry(format!("{a}{b}")).or_insert(r);
            }
        }
        let scores = tokens
            .iter()
            .zip(&types)
            .map(|(t, &ty)| match ty {
                NORMAL => GgufValue::F32(rank.get(t).map_or(0.0, |&r| -(r as f32))),
                _ => GgufValue::F32(NO_SCORE),
            })
            .collect();
        let prefix = has_type(&j["normalizer"], "Prepend")
            || j["pre_tokenizer"]
                .get("prepend_scheme")
                .and_then(Value::as_str)
                .is_some_and(|s| s != "never");
        out.push(kv(
            "tokenizer.ggml.model",
            GgufValue::String("llama".into()),
        ));
        out.push(kv(
            "tokenizer.ggml.pre",
            GgufValue::String("default".into()),
        ));
        out.push(kv("tokenizer.ggml.tokens", strings(tokens)));
        out.push(kv("tokenizer.ggml.scores", GgufValue::Array(scores)));
        out.push(kv(
            "tokenizer.ggml.token_type",
            GgufValue::Array(types.into_iter().map(GgufValue::I32).collect()),
        ));
        out.push(kv(
            "tokenizer.ggml.add_space_prefix",
            GgufValue::Bool(prefix),
        ));
    }
    for (key, t) in [
        ("bos", &tok.specials.bos),
        ("eos", &tok.specials.eos),
        ("unknown", &tok.specials.unk),
        ("padding", &tok.specials.pad),
    ] {
        if let Some(t) = t {
            out.push(kv(
                &format!("tokenizer.ggml.{key}_token_id"),
                GgufValue::U32(t.id),
            ));
        }
    }
    // What ftui's tokenizer (the source's post-processor) adds, stated for llama.cpp.
    let with = tok.encode("a", true).map_err(unsupported)?;
    let without = tok.encode("a", false).map_err(unsupported)?;
    let added = with.len() > without.len();
    let first = |t: &Option<crate::tokenizer::SpecialToken>| t.as_ref().map(|t| t.id);
    let add_bos = added && with.first().copied() == first(&tok.specials.bos);
    let add_eos = added && with.last().copied() == first(&tok.specials.eos);
    out.push(kv("tokenizer.ggml.add_bos_token", GgufValue::Bool(add_bos)));
    out.push(kv("tokenizer.ggml.add_eos_token", GgufValue::Bool(add_eos)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::writer::GgufWriter;
    use serde_json::json;

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    /// The texts of a fixture's tokenization cases.
    fn texts(file: &str, key: &str) -> Vec<String> {
        let text = std::fs::read_to_string(fixtures().join("gguf").join(file)).expect("fixture");
        let v: Value = serde_json::from_str(&text).expect("json");
        v[key]
            .as_array()
            .expect("cases")
            .iter()
            .map(|c| c["text"].as_str().expect("text").to_string())
            .collect()
    }

    /// A tokenizer.json written as GGUF metadata and rebuilt by ftui's GGUF vocabulary
    /// reader tokenizes every text as the source does.
    #[test]
    fn vocabularies_survive_the_trip_through_gguf() {
        let sp = texts("sentencepiece-texts.json", "cases");
        let bpe = texts("bpe-texts.json", "bpe-llama3");
        for (dir, texts, model, pre) in [
            ("gguf/sp-llama", &sp, "llama", "default"),
            ("gguf/bpe-llama3", &bpe, "gpt2", "llama-bpe"),
            ("models/qwen2", &bpe, "gpt2", "gpt-2"),
        ] {
            let dir = fixtures().join(dir);
            let tok = TextTokenizer::from_dir(&dir).expect("tokenizer");
            let rows = tok.inner.get_vocab_size(true) + 3;
            let mut md = vec![kv(
                "general.architecture",
                GgufValue::String("llama".into()),
            )];
            md.extend(from_tokenizer_json(&dir, &tok, rows).expect("metadata"));
            let (bytes, _) = GgufWriter::start(Vec::new(), &md, vec![])
                .and_then(GgufWriter::finish)
                .expect("written");
            let file = GgufFile::from_bytes("vocab.gguf", bytes).expect("parses");
            assert_eq!(file.get_str("tokenizer.ggml.model").ok(), Some(model));
            assert_eq!(file.get_str("tokenizer.ggml.pre").ok(), Some(pre));
            let tokens = file.get_str_array("tokenizer.ggml.tokens").expect("tokens");
            assert_eq!(tokens.len(), rows);
            assert_eq!(tokens[rows - 1], format!("[PAD{}]", rows - 1));
            let back = TextTokenizer::from_gguf(&file).expect("rebuilt");
            let mut wrong = Vec::new();
            for text in texts.iter() {
                for special in [true, false] {
                    let want = tok.encode(text, special).expect("source");
                    let got = back.encode(text, special).expect("gguf");
                    if want != got {
                        wrong.push(format!("{text:?} ({special}): {got:?} != {want:?}"));
                    }
                }
            }
            assert!(wrong.is_empty(), "{}: {}", dir.display(), wrong.join("\n"));
        }
    }

    #[test]
    fn pre_tokenizers_get_llama_cpp_names() {
        let gpt2 = json!({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true});
        assert_eq!(pre_name(&gpt2), Some("gpt-2"));
        let smollm = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "use_regex": true}]});
        assert_eq!(pre_name(&smollm), Some("smollm"));
        let split = |regex: &str| {
            json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated"},
            {"type": "ByteLevel", "use_regex": false}]})
        };
        let llama3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        let qwen2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        assert_eq!(pre_name(&split(llama3)), Some("llama-bpe"));
        assert_eq!(pre_name(&split(qwen2)), Some("qwen2"));
        assert_eq!(pre_name(&split(r"\w+")), None);
        assert_eq!(pre_name(&json!({"type": "Whitespace"})), None);
    }

    #[test]
    fn merges_of_both_formats_become_lines() {
        let old = json!({"merges": ["a b", "ab c"]});
        assert_eq!(merge_lines(&old), ["a b", "ab c"]);
        let new = json!({"merges": [["a", "b"], ["x y", "z"]]});
        assert_eq!(merge_lines(&new), ["a b", "x\u{120}y z"]);
    }
}
