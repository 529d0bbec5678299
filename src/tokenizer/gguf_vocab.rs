//! Tokenizers built from a GGUF file's vocabulary metadata (`tokenizer.ggml.*`), so that
//! a GGUF model tokenizes as its Hugging Face tokenizer does.

use std::collections::HashSet;
use std::fmt;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::TokenizerError;
use crate::gguf::{GgufFile, GgufValue};

/// A vocabulary that cannot be built, named by the file it came from; foreign error texts
/// (tokenizers) are kept to one line.
fn vocab_error(file: &GgufFile, what: impl fmt::Display) -> TokenizerError {
    TokenizerError::File {
        file: file.path().display().to_string(),
        message: format!(
            "vocabulary: {}",
            what.to_string().replace(['\n', '\r'], " ")
        ),
    }
}

/// The tokenizer the metadata describes (`tokenizer.ggml.model`).
pub fn tokenizer(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
    match file.get_str("tokenizer.ggml.model")? {
        "gpt2" => byte_level(file),
        other => Err(vocab_error(
            file,
            format!("tokenizer.ggml.model is '{other}'; only 'gpt2' (byte-level BPE) is supported"),
        )),
    }
}

/// A byte-level BPE (`tokenizer.ggml.model == "gpt2"`), built the way transformers'
/// `integrations/gguf/gguf_tokenizer_mapping.py` builds it, so that token ids match
/// `AutoTokenizer.from_pretrained(dir, gguf_file=...)`:
/// - vocabulary from `tokenizer.ggml.tokens` (a token that uses characters outside
///   the GPT-2 byte alphabet is respelled byte by byte), merges from
///   `tokenizer.ggml.merges`; BPE without unk token, dropout or subword affixes;
/// - the GPT-2 `ByteLevel` pre-tokenizer (no prefix space, GPT-2 regex), except for
///   the `tokenizer.ggml.pre` names transformers maps to their own split regex
///   (llama-bpe, qwen2, ...); llama.cpp's other names (`smollm`, ...) are ignored by
///   transformers and so here;
/// - `ByteLevel` decoder;
/// - control tokens (`token_type` 3) as special added tokens, user-defined ones (4)
///   as plain added tokens, plus the bos/eos/unk/pad tokens and GPT-2's default
///   `<|endoftext|>` as special tokens when they are in the vocabulary;
/// - a template post-processor that prepends BOS / appends EOS only when
///   `tokenizer.ggml.add_bos_token` / `add_eos_token` say so (SmolLM2: neither).
fn byte_level(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
    let err = |what: String| vocab_error(file, what);
    let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
    let merge_lines = file.get_str_array("tokenizer.ggml.merges")?;
    let token_types = file.optional("tokenizer.ggml.token_type", GgufFile::get_i64_array)?;

    let alphabet = byte_alphabet();
    let in_alphabet: HashSet<char> = alphabet.iter().copied().collect();
    let spelled_in_alphabet = |t: &str| t.chars().all(|c| in_alphabet.contains(&c));

    let mut vocab = Vocab::default();
    for (id, token) in tokens.iter().enumerate() {
        let spelled = if spelled_in_alphabet(token) {
            (*token).to_string()
        } else {
            token.bytes().map(|b| alphabet[usize::from(b)]).collect()
        };
        let id = u32::try_from(id).map_err(|_| err("more than 2^32 tokens".to_string()))?;
        // As in the Python dict comprehension, a later duplicate wins.
        vocab.insert(spelled, id);
    }
    let mut merges = Vec::with_capacity(merge_lines.len());
    for (i, line) in merge_lines.iter().enumerate() {
        match line.split_once(' ') {
            Some((a, b)) if !b.contains(' ') => merges.push((a.to_string(), b.to_string())),
            _ => {
                return Err(err(format!(
                    "merge #{i} {line:?} is not two tokens separated by one space"
                )))
            }
        }
    }

    // Special and user-defined tokens, collected before `vocab` moves into the model.
    let mut special: Vec<String> = Vec::new();
    let mut user_defined: Vec<String> = Vec::new();
    if let Some(types) = &token_types {
        for (token, &ty) in tokens.iter().zip(types) {
            if ty == 3 && spelled_in_alphabet(token) {
                // A "control" token outside the byte alphabet is a llama.cpp mislabel;
                // transformers skips it rather than grow the vocabulary.
                special.push((*token).to_string());
            } else if ty == 4 && vocab.contains_key(*token) {
                user_defined.push((*token).to_string());
            }
        }
    }
    // transformers constructs a GPT2Tokenizer, whose default special tokens are
    // `<|endoftext|>`, then passes the file's bos/eos/unk/pad as special tokens; each is
    // registered as a special added token. (A name that is not in the vocabulary would
    // get a new id past the embedding matrix there; we leave such names out.)
    let ids = file.special_tokens();
    let named = [ids.bos, ids.eos, ids.unk, ids.pad]
        .into_iter()
        .flatten()
        .filter_map(|id| tokens.get(id as usize).map(|t| (*t).to_string()));
    for token in std::iter::once("<|endoftext|>".to_string()).chain(named) {
        if vocab.contains_key(&token) && !special.contains(&token) {
            special.push(token);
        }
    }

    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        // transformers spells these as empty strings rather than None; same behaviour,
        // and it keeps `to_string()` identical to the Python tokenizer's JSON.
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .build()
        .map_err(|e| err(format!("cannot build the BPE model: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);

    let pre_type = file
        .get("tokenizer.ggml.pre")
        .and_then(GgufValue::as_str)
        .unwrap_or("");
    let pre_tokenizer: PreTokenizerWrapper = match split_regex_for(pre_type) {
        Some(regex) => {
            let split = Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| {
                err(format!(
                    "cannot compile the split regex for '{pre_type}': {e}"
                ))
            })?;
            PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ]))
        }
        None => ByteLevel::new(false, true, true).into(),
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    // transformers' update_post_processor: "{bos}:0 $A:0 {eos}:0" with each part only
    // when asked for. The default for a gpt2-type vocabulary is neither.
    let add_bos = file
        .optional("tokenizer.ggml.add_bos_token", GgufFile::get_bool)?
        .unwrap_or(false);
    let add_eos = file
        .optional("tokenizer.ggml.add_eos_token", GgufFile::get_bool)?
        .unwrap_or(false);
    let token_of = |id: Option<u32>, wanted: bool| {
        id.filter(|_| wanted)
            .and_then(|i| tokens.get(i as usize).map(|t| ((*t).to_string(), i)))
    };
    let bos = token_of(ids.bos, add_bos);
    let eos = token_of(ids.eos, add_eos);
    let piece = |t: &Option<(String, u32)>, seq: u32| t.as_ref().map(|(s, _)| format!("{s}:{seq}"));
    let single: Vec<String> = [piece(&bos, 0), Some("$A:0".into()), piece(&eos, 0)]
        .into_iter()
        .flatten()
        .collect();
    let pair: Vec<String> = single
        .iter()
        .cloned()
        .chain(
            [piece(&bos, 1), Some("$B:1".into()), piece(&eos, 1)]
                .into_iter()
                .flatten(),
        )
        .collect();
    let template_specials: Vec<(String, u32)> = bos.iter().chain(eos.iter()).cloned().collect();
    let post = TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| err(format!("cannot build the post-processor template: {e}")))?
        .special_tokens(template_specials)
        .build()
        .map_err(|e| err(format!("cannot build the post-processor: {e}")))?;
    tokenizer.with_post_processor(Some(post));

    tokenizer
        .add_special_tokens(special.into_iter().map(|t| AddedToken::from(t, true)))
        .map_err(|e| err(format!("cannot add special tokens: {e}")))?;
    tokenizer
        .add_tokens(
            user_defined
                .into_iter()
                .map(|t| AddedToken::from(t, false).normalized(false)),
        )
        .map_err(|e| err(format!("cannot add user-defined tokens: {e}")))?;
    Ok(tokenizer)
}

/// GPT-2's byte-to-character table (`bytes_to_unicode`): printable Latin-1 bytes stand for
/// themselves, the other 68 bytes map to U+0100.. in byte order.
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).unwrap_or('\u{fffd}');
    }
    table
}

// The split regexes transformers substitutes for the GPT-2 one, by `tokenizer.ggml.pre`
// (`GGUF_PRE_TOKENIZER_SPLITS` in gguf_tokenizer_mapping.py, transformers 5.x).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn split_regex_for(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::testfile::tiny_file;
    use crate::gguf::SpecialTokenIds;

    fn ids(tok: &Tokenizer, text: &str) -> Result<Vec<u32>, String> {
        tok.encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn byte_level_from_hand_built_vocab() -> Result<(), TokenizerError> {
        let f = GgufFile::from_bytes("tiny.gguf", tiny_file())?;
        let tok = tokenizer(&f)?;
        // add_bos_token is set, so <s> (3) comes first; " ab" merges to "Ġab" (5).
        assert_eq!(ids(&tok, "ab ab"), Ok(vec![3, 2, 5]));
        // The control token <s> is matched whole; <x> (user-defined) too.
        assert_eq!(ids(&tok, "<s>a<x>"), Ok(vec![3, 3, 0, 6]));
        assert_eq!(
            f.special_tokens(),
            SpecialTokenIds {
                bos: Some(3),
                ..Default::default()
            }
        );
        Ok(())
    }

    /// The embedded default model's vocabulary, when present. Reference ids come from
    /// transformers 5.24 (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`).
    #[test]
    fn embedded_smollm2() -> Result<(), TokenizerError> {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        ));
        if !path.exists() {
            return Ok(());
        }
        let tok = tokenizer(&GgufFile::open(path)?)?;
        assert_eq!(
            ids(&tok, "What is the capital of France?"),
            Ok(vec![1780, 314, 260, 3575, 282, 4649, 47])
        );
        Ok(())
    }
}
