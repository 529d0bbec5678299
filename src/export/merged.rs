//! The merged model as a Hugging Face folder, laid out as transformers'
//! `save_pretrained` and the tokenizer's `save_pretrained` lay it out:
//! - `config.json` with `dtype` (transformers 5) and `torch_dtype` (4.x), the
//!   architecture class and every key the model class reads, rope settings spelled the
//!   pre-5 way (`rope_theta`, `rope_scaling`), which both read;
//! - `model.safetensors`, or shards `model-0000i-of-0000n.safetensors` with
//!   `model.safetensors.index.json` above [`DEFAULT_SHARD_BYTES`], written tensor by
//!   tensor; a tied head is not saved;
//! - `tokenizer.json`, `tokenizer_config.json` holding the chat template, and
//!   `chat_template.jinja` (transformers 5 reads that file first; older tools the config);
//! - `generation_config.json` whose EOS list holds the template's end-of-turn token, so
//!   `generate` stops at the end of the answer.

use super::tensors::MergedTensor;
use super::{io_err, merged_tensors, ExportError, Prepared, Progress, Result};
use crate::model::Arch;
use crate::nn::RopeScaling;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use tch::Kind;

/// Shards hold at most this many bytes (decimal 5 GB, as unsloth and transformers 4 save).
pub const DEFAULT_SHARD_BYTES: u64 = 5_000_000_000;

/// What a merged export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedReport {
    /// File names inside the folder, sorted.
    pub files: Vec<String>,
    pub tensors: usize,
    /// Bytes of tensor data.
    pub weight_bytes: u64,
    pub shards: usize,
    pub dtype: &'static str,
}

/// Writes the merged model into `dir` (replaced once the new folder is complete).
pub fn write_merged(
    p: &Prepared,
    dir: &Path,
    max_shard_bytes: u64,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<MergedReport> {
    if let Some(RopeScaling::FreqFactors(_)) = &p.model().config.rope_scaling {
        return Err(ExportError::Unsupported(format!(
            "{}: the rope frequencies come as llama.cpp's per-pair factors (rope_freqs), which a Hugging Face config.json cannot state",
            p.source_name
        )));
    }
    let (tensors, tied) = merged_tensors(p.model());
    let mut report = MergedReport {
        files: Vec::new(),
        tensors: tensors.len(),
        weight_bytes: 0,
        shards: 0,
        dtype: crate::device::kind_name(p.kind),
    };
    super::write_folder_atomic(dir, |tmp| {
        let (shards, bytes) = write_weights(&tensors, p.kind, tmp, max_shard_bytes, progress)?;
        report.shards = shards;
        report.weight_bytes = bytes;
        write_json(
            &tmp.join("config.json"),
            &Value::Object(config_json(p, tied)?),
        )?;
        write_json(
            &tmp.join("generation_config.json"),
            &Value::Object(generation_config(p)?),
        )?;
        write_tokenizer_files(p, tmp)?;
        Ok(())
    })?;
    report.files = crate::fsutil::relative_files(dir, true);
    Ok(report)
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(v)
        .map_err(|e| ExportError::Unsupported(format!("{}: {e}", path.display())))?;
    text.push('\n');
    std::fs::write(path, text).map_err(io_err(path))
}

/// safetensors' dtype name of a kind.
fn st_dtype(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "BF16",
        Kind::Half => "F16",
        _ => "F32",
    }
}

/// Writes the tensors as one file or as shards of at most `max_shard_bytes` (a larger
/// tensor gets a shard of its own), with the index. Returns shards and data bytes.
fn write_weights(
    tensors: &[MergedTensor<'_>],
    kind: Kind,
    dir: &Path,
    max_shard_bytes: u64,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<(usize, u64)> {
    let elt = kind.elt_size_in_bytes() as u64;
    let size = |t: &MergedTensor<'_>| t.numel() as u64 * elt;
    // Greedy, in module order, as huggingface_hub's split_torch_state_dict_into_shards.
    let mut shards: Vec<Vec<&MergedTensor<'_>>> = Vec::new();
    let mut current = 0u64;
    for t in tensors {
        let n = size(t);
        match shards.last_mut() {
            Some(shard) if current + n <= max_shard_bytes => shard.push(t),
            _ => {
                shards.push(vec![t]);
                current = 0;
            }
        }
        current += n;
    }
    let total_bytes: u64 = tensors.iter().map(size).sum();
    let count = shards.len();
    let name = |i: usize| {
        if count == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{count:05}.safetensors", i + 1)
        }
    };
    let mut done = 0u64;
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = name(i);
        write_safetensors(&dir.join(&file), shard, kind, &mut |t| {
            done += 1;
            progress(&Progress {
                what: format!("writing {}", t.name),
                done,
                total: tensors.len() as u64,
            })
        })?;
        for t in shard {
            weight_map.insert(t.name.clone(), Value::String(file.clone()));
        }
    }
    if count > 1 {
        let total_parameters: i64 = tensors.iter().map(MergedTensor::numel).sum();
        let index = json!({
            "metadata": {"total_parameters": total_parameters, "total_size": total_bytes},
            "weight_map": weight_map,
        });
        write_json(&dir.join("model.safetensors.index.json"), &index)?;
    }
    Ok((count, total_bytes))
}

/// One safetensors file: the header (padded to 8 bytes, `format: pt`), then each
/// tensor's bytes as it is read.
fn write_safetensors(
    path: &Path,
    tensors: &[&MergedTensor<'_>],
    kind: Kind,
    on_tensor: &mut dyn FnMut(&MergedTensor<'_>) -> bool,
) -> Result<()> {
    let elt = kind.elt_size_in_bytes() as u64;
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for t in tensors {
        let end = offset + t.numel() as u64 * elt;
        header.insert(
            t.name.clone(),
            json!({"dtype": st_dtype(kind), "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut text = Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let mut w = std::io::BufWriter::new(file);
    w.write_all(&(text.len() as u64).to_le_bytes())
        .and_then(|_| w.write_all(text.as_bytes()))
        .map_err(io_err(path))?;
    for t in tensors {
        w.write_all(&t.bytes(kind)?).map_err(io_err(path))?;
        if !on_tensor(t) {
            return Err(ExportError::Stopped);
        }
    }
    w.flush().map_err(io_err(path))
}

/// transformers' class for a `model_type`.
fn architecture_class(model_type: &str) -> &'static str {
    match model_type {
        "mistral" => "MistralForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        "phi3" => "Phi3ForCausalLM",
        _ => "LlamaForCausalLM",
    }
}

/// `config.json`: the source's (a folder's keys kept, so nothing transformers reads is
/// lost) with every key ftui knows set from the model as exported.
fn config_json(p: &Prepared, tied: bool) -> Result<Map<String, Value>> {
    let c = &p.model().config;
    let mut m = p.source_json("config.json")?.unwrap_or_default();
    let model_type = match m.get("model_type").and_then(Value::as_str) {
        Some(t @ ("llama" | "mistral" | "qwen2" | "phi3")) => t.to_string(),
        _ => c.arch_name().to_string(),
    };
    let specials = &p.loaded.tokenizer.specials;
    let id = |v: Option<i64>, t: &Option<crate::tokenizer::SpecialToken>| {
        v.or(t.as_ref().map(|t| i64::from(t.id)))
            .map_or(Value::Null, Value::from)
    };
    let eos = match c.eos_token_ids.as_slice() {
        [] => id(None, &specials.eos),
        [one] => json!(one),
        many => json!(many),
    };
    let dtype = crate::device::kind_name(p.kind);
    let rope_scaling = match &c.rope_scaling {
        None => Value::Null,
        Some(RopeScaling::Linear { factor }) => json!({"rope_type": "linear", "factor": factor}),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": *original_max_position_embeddings as i64,
        }),
        Some(RopeScaling::FreqFactors(_)) => Value::Null, // refused by the caller
    };
    let mut set = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    set("architectures", json!([architecture_class(&model_type)]));
    set("model_type", json!(model_type));
    set("vocab_size", json!(c.vocab_size));
    set("hidden_size", json!(c.hidden_size));
    set("intermediate_size", json!(c.intermediate_size));
    set("num_hidden_layers", json!(c.num_hidden_layers));
    set("num_attention_heads", json!(c.num_attention_heads));
    set("num_key_value_heads", json!(c.num_key_value_heads));
    set("max_position_embeddings", json!(c.max_position_embeddings));
    set("rms_norm_eps", json!(c.rms_norm_eps));
    set("rope_theta", json!(c.rope_theta));
    set("rope_scaling", rope_scaling);
    set("tie_word_embeddings", json!(tied));
    set("bos_token_id", id(c.bos_token_id, &specials.bos));
    set("eos_token_id", eos);
    set("pad_token_id", id(c.pad_token_id, &specials.pad));
    set("dtype", json!(dtype));
    set("torch_dtype", json!(dtype));
    let window = c.sliding_window.map_or(Value::Null, Value::from);
    match c.arch {
        Arch::Llama => {
            set("head_dim", json!(c.head_dim));
            set("attention_bias", json!(c.qkv_bias || c.o_bias));
            set("mlp_bias", json!(c.mlp_bias));
            if model_type == "mistral" {
                set("sliding_window", window);
            }
        }
        Arch::Qwen2 => {
            set("use_sliding_window", json!(c.sliding_window.is_some()));
            set("sliding_window", window);
        }
        Arch::Phi3 => {
            set("sliding_window", window);
            if c.partial_rotary_factor != 1.0 {
                set("partial_rotary_factor", json!(c.partial_rotary_factor));
            }
        }
    }
    // transformers 5's single rope dict would override the keys above.
    m.remove("rope_parameters");
    m.entry("hidden_act").or_insert(json!("silu"));
    m.entry("use_cache").or_insert(json!(true));
    if c.arch == Arch::Phi3 {
        m.entry("original_max_position_embeddings")
            .or_insert(json!(c.max_position_embeddings));
    }
    Ok(m)
}

/// `generation_config.json`: the source's, with the EOS list holding the tokenizer's EOS
/// and the chat template's end-of-turn token, and sampling from `[generation]`.
fn generation_config(p: &Prepared) -> Result<Map<String, Value>> {
    let mut m = p.source_json("generation_config.json")?.unwrap_or_default();
    let specials = &p.loaded.tokenizer.specials;
    let mut eos: Vec<i64> = match m.get("eos_token_id") {
        Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
        _ => p.model().config.eos_token_ids.clone(),
    };
    for id in specials
        .eos
        .iter()
        .chain(p.turns.end_of_turn.iter())
        .map(|t| i64::from(t.id))
    {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    if let Some(bos) = &specials.bos {
        m.entry("bos_token_id").or_insert(json!(bos.id));
    }
    m.insert(
        "eos_token_id".into(),
        match eos.as_slice() {
            [one] => json!(one),
            many => json!(many),
        },
    );
    if let Some(pad) = &specials.pad {
        m.entry("pad_token_id").or_insert(json!(pad.id));
    }
    if let Some(g) = p.config.as_ref().map(|c| &c.generation) {
        if g.temperature > 0.0 {
            m.insert("do_sample".into(), json!(true));
            m.insert("temperature".into(), json!(g.temperature));
            m.insert("top_p".into(), json!(g.top_p));
            m.insert("top_k".into(), json!(g.top_k));
        } else {
            m.insert("do_sample".into(), json!(false));
            for k in ["temperature", "top_p", "top_k"] {
                m.remove(k);
            }
        }
        if g.repetition_penalty != 1.0 {
            m.insert("repetition_penalty".into(), json!(g.repetition_penalty));
        }
    }
    Ok(m)
}

/// Files copied from a source folder as they are, when it has them.
const COPIED: [&str; 3] = [
    "tokenizer.json",
    "special_tokens_map.json",
    "tokenizer.model",
];

/// `tokenizer.json` (the source's, or the one ftui built from a GGUF vocabulary),
/// `tokenizer_config.json` with the chat template, and `chat_template.jinja`.
fn write_tokenizer_files(p: &Prepared, dir: &Path) -> Result<()> {
    let src = &p.loaded.path;
    for name in COPIED {
        let from = src.join(name);
        if src.is_dir() && from.is_file() {
            std::fs::copy(&from, dir.join(name)).map_err(io_err(&from))?;
        }
    }
    let tok = &p.loaded.tokenizer;
    let tokenizer_json = dir.join("tokenizer.json");
    if !tokenizer_json.is_file() {
        tok.inner
            .save(&tokenizer_json, true)
            .map_err(|e| ExportError::Unsupported(format!("{}: {e}", tokenizer_json.display())))?;
    }
    let mut m = p.source_json("tokenizer_config.json")?.unwrap_or_default();
    for (key, token) in [
        ("bos_token", &tok.specials.bos),
        ("eos_token", &tok.specials.eos),
        ("pad_token", &tok.specials.pad),
        ("unk_token", &tok.specials.unk),
    ] {
        m.entry(key)
            .or_insert(token.as_ref().map_or(Value::Null, |t| json!(t.text)));
    }
    if !m.contains_key("added_tokens_decoder") {
        let mut added: Vec<(u32, tokenizers::AddedToken)> =
            tok.inner.get_added_tokens_decoder().into_iter().collect();
        added.sort_by_key(|(id, _)| *id);
        let decoder: Map<String, Value> = added
            .into_iter()
            .map(|(id, t)| {
                (
                    id.to_string(),
                    json!({"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
                           "rstrip": t.rstrip, "single_word": t.single_word, "special": t.special}),
                )
            })
            .collect();
        m.insert("added_tokens_decoder".into(), Value::Object(decoder));
    }
    m.entry("tokenizer_class")
        .or_insert(json!("PreTrainedTokenizerFast"));
    m.entry("model_max_length")
        .or_insert(json!(p.model().config.max_position_embeddings));
    m.entry("clean_up_tokenization_spaces")
        .or_insert(json!(false));
    m.insert("chat_template".into(), json!(p.chat_template));
    write_json(&dir.join("tokenizer_config.json"), &Value::Object(m))?;
    let jinja = dir.join("chat_template.jinja");
    std::fs::write(&jinja, &p.chat_template).map_err(io_err(&jinja))
}
