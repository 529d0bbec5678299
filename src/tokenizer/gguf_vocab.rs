//! Tokenizers built from a GGUF file's vocabulary metadata (`tokenizer.ggml.*`), so that
//! a GGUF model tokenizes as the Hugging Face tokenizer it was converted from:
//! byte-level BPE (`gpt2`: SmolLM2, Llama 3, Qwen2, StarCoder, ...) and SentencePiece BPE
//! (`llama`: Llama 2, Mistral, TinyLlama, Phi-3). The shape of each follows transformers'
//! GGUF loader (`integrations/gguf/gguf_tokenizer_mapping.py`) and, where that loader
//! leaves out what the source tokenizer does (`ignore_merges`, digit splitting, Phi-3's
//! whitespace-eating chat tokens), llama.cpp (`src/llama-vocab.cpp`).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::TokenizerError;
use crate::gguf::{GgufFile, GgufValue, SpecialTokenIds};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// SentencePiece's word-boundary mark, standing for a space.
const SPACE_MARK: char = '\u{2581}';

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
        "llama" => sentencepiece(file),
        other => Err(vocab_error(
            file,
            format!(
                "tokenizer.ggml.model is '{other}'; supported: 'gpt2' (byte-level BPE) and \
                 'llama' (SentencePiece BPE)"
            ),
        )),
    }
}

/// What every GGUF vocabulary states besides its pieces.
struct Vocabulary<'a> {
    tokens: Vec<&'a str>,
    /// `tokenizer.ggml.token_type`, when the file has it.
    types: Option<Vec<i64>>,
    ids: SpecialTokenIds,
}

impl<'a> Vocabulary<'a> {
    fn read(file: &'a GgufFile) -> Result<Self, TokenizerError> {
        Ok(Vocabulary {
            tokens: file.get_str_array("tokenizer.ggml.tokens")?,
            types: file.optional("tokenizer.ggml.token_type", GgufFile::get_i64_array)?,
            ids: file.special_tokens(),
        })
    }

    /// Tokens of type `ty`, in id order.
    fn of_type(&self, ty: i64) -> impl Iterator<Item = &'a str> + '_ {
        let types = self.types.as_deref().unwrap_or_default();
        self.tokens
            .iter()
            .zip(types)
            .filter(move |(_, &t)| t == ty)
            .map(|(token, _)| *token)
    }

    /// The bos, eos, unk and pad tokens the metadata names.
    fn named(&self) -> impl Iterator<Item = &'a str> + '_ {
        [self.ids.bos, self.ids.eos, self.ids.unk, self.ids.pad]
            .into_iter()
            .flatten()
            .filter_map(|id| self.tokens.get(id as usize).copied())
    }

    /// transformers' `update_post_processor`: `{bos}:0 $A:0 {eos}:0` (and the pair form),
    /// each special part only when `tokenizer.ggml.add_bos_token` / `add_eos_token` ask
    /// for it; `add_bos` is the default when the file does not say.
    fn post_processor(
        &self,
        file: &GgufFile,
        add_bos: bool,
    ) -> Result<TemplateProcessing, TokenizerError> {
        let err = |what: String| vocab_error(file, what);
        let add_bos = file
            .optional("tokenizer.ggml.add_bos_token", GgufFile::get_bool)?
            .unwrap_or(add_bos);
        let add_eos = file
            .optional("tokenizer.ggml.add_eos_token", GgufFile::get_bool)?
            .unwrap_or(false);
        let token_of = |id: Option<u32>, wanted: bool| {
            id.filter(|_| wanted)
                .and_then(|i| self.tokens.get(i as usize).map(|t| ((*t).to_string(), i)))
        };
        let bos = token_of(self.ids.bos, add_bos);
        let eos = token_of(self.ids.eos, add_eos);
        let piece =
            |t: &Option<(String, u32)>, seq: u32| t.as_ref().map(|(s, _)| format!("{s}:{seq}"));
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
        let specials: Vec<(String, u32)> = bos.iter().chain(eos.iter()).cloned().collect();
        TemplateProcessing::builder()
            .try_single(single)
            .and_then(|b| b.try_pair(pair))
            .map_err(|e| err(format!("cannot build the post-processor template: {e}")))?
            .special_tokens(specials)
            .build()
            .map_err(|e| err(format!("cannot build the post-processor: {e}")))
    }
}

/// Registers added tokens: `special` ones (matched whole, skipped when decoding with
/// `skip_special_tokens`) and plain `user_defined` ones, both matched before
/// normalization.
fn add_tokens(
    file: &GgufFile,
    tokenizer: &mut Tokenizer,
    special: Vec<AddedToken>,
    user_defined: Vec<AddedToken>,
) -> Result<(), TokenizerError> {
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| vocab_error(file, format!("cannot add special tokens: {e}")))?;
    tokenizer
        .add_tokens(user_defined)
        .map_err(|e| vocab_error(file, format!("cannot add user-defined tokens: {e}")))?;
    Ok(())
}

/// How a byte-level vocabulary is split into pre-tokens, by `tokenizer.ggml.pre`, as
/// llama.cpp maps the name (`llama_vocab::impl::load` and `llm_tokenizer_bpe` in
/// `src/llama-vocab.cpp`) and as the source Hugging Face tokenizer does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PreTokenization {
    /// A split regex in place of the GPT-2 one.
    split: Option<&'static str>,
    /// Every `\p{N}` character becomes a piece of its own before the GPT-2 split
    /// (`Digits(individual_digits=true)`).
    digits: bool,
    /// A pre-token found whole in the vocabulary is emitted as it is, not merged
    /// (`BPE.ignore_merges`).
    ignore_merges: bool,
}

impl PreTokenization {
    fn of(pre: &str) -> PreTokenization {
        let (split, digits, ignore_merges) = match pre {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => (Some(LLAMA3_SPLIT), false, true),
            "dbrx" | "smaug-bpe" => (Some(LLAMA3_SPLIT), false, false),
            "tekken" => (Some(TEKKEN_SPLIT), false, true),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => {
                (Some(QWEN2_SPLIT), false, false)
            }
            "qwen35" => (Some(QWEN35_SPLIT), false, false),
            "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => {
                (Some(GPT4O_SPLIT), false, false)
            }
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => (None, true, false),
            _ => (None, false, false),
        };
        PreTokenization {
            split,
            digits,
            ignore_merges,
        }
    }

    fn pre_tokenizer(self, file: &GgufFile) -> Result<PreTokenizerWrapper, TokenizerError> {
        Ok(match (self.split, self.digits) {
            (Some(regex), _) => {
                let split = Split::new(
                    SplitPattern::Regex(regex.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| vocab_error(file, format!("cannot compile a split regex: {e}")))?;
                PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(vec![
                    split.into(),
                    ByteLevel::new(false, true, false).into(),
                ]))
            }
            (None, true) => PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])),
            (None, false) => ByteLevel::new(false, true, true).into(),
        })
    }
}

/// A byte-level BPE (`tokenizer.ggml.model == "gpt2"`), built as transformers builds it
/// (`GPT2Tokenizer` from the vocabulary and merges):
/// - vocabulary from `tokenizer.ggml.tokens` (a token that uses characters outside
///   the GPT-2 byte alphabet is respelled byte by byte), merges from
///   `tokenizer.ggml.merges`; BPE without unk token, dropout or subword affixes;
/// - pre-tokenization by `tokenizer.ggml.pre` ([`PreTokenization`]): the GPT-2 regex
///   unless the name has its own, with llama.cpp's digit splitting and `ignore_merges`
///   where the source tokenizer has them (transformers' loader drops both);
/// - `ByteLevel` decoder;
/// - control tokens (`token_type` 3) as special added tokens, user-defined ones (4)
///   as plain added tokens, plus the bos/eos/unk/pad tokens and GPT-2's default
///   `<|endoftext|>` as special tokens when they are in the vocabulary;
/// - BOS / EOS only when `tokenizer.ggml.add_bos_token` / `add_eos_token` say so
///   (SmolLM2: neither).
fn byte_level(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
    let err = |what: String| vocab_error(file, what);
    let vocabulary = Vocabulary::read(file)?;
    let tokens = &vocabulary.tokens;
    let merge_lines = file.get_str_array("tokenizer.ggml.merges")?;

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

    // A "control" token outside the byte alphabet is a llama.cpp mislabel; transformers
    // skips it rather than grow the vocabulary.
    let mut special: Vec<&str> = vocabulary
        .of_type(CONTROL)
        .filter(|t| spelled_in_alphabet(t))
        .collect();
    let user_defined: Vec<&str> = vocabulary
        .of_type(USER_DEFINED)
        .filter(|t| vocab.contains_key(*t))
        .collect();
    // transformers constructs a GPT2Tokenizer, whose default special tokens are
    // `<|endoftext|>`, then passes the file's bos/eos/unk/pad as special tokens; each is
    // registered as a special added token. (A name that is not in the vocabulary would
    // get a new id past the embedding matrix there; we leave such names out.)
    for token in std::iter::once("<|endoftext|>").chain(vocabulary.named()) {
        if vocab.contains_key(token) && !special.contains(&token) {
            special.push(token);
        }
    }

    let pre = PreTokenization::of(
        file.get("tokenizer.ggml.pre")
            .and_then(GgufValue::as_str)
            .unwrap_or(""),
    );
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        // transformers spells these as empty strings rather than None; same behaviour,
        // and it keeps `to_string()` identical to the Python tokenizer's JSON.
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| err(format!("cannot build the BPE model: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre.pre_tokenizer(file)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer.with_post_processor(Some(vocabulary.post_processor(file, false)?));
    add_tokens(
        file,
        &mut tokenizer,
        special
            .into_iter()
            .map(|t| AddedToken::from(t, true))
            .collect(),
        user_defined
            .into_iter()
            .map(|t| AddedToken::from(t, false).normalized(false))
            .collect(),
    )?;
    Ok(tokenizer)
}

/// A SentencePiece BPE vocabulary (`tokenizer.ggml.model == "llama"`: Llama 2, Mistral,
/// TinyLlama, Phi-3), built as transformers builds it from such a file (`LlamaTokenizer`,
/// or for the `phi3` architecture the shape of Phi-3's `tokenizer.json`):
/// - BPE over the pieces with byte fallback (`<0xNN>` pieces for bytes no piece covers)
///   and merges recovered from the piece scores ([`merges_from_scores`]);
/// - the leading-space prefix `▁`: a `Metaspace` pre-tokenizer that replaces spaces and
///   puts `▁` before the first piece of the text, or for Phi-3 a normalizer that puts it
///   before every segment between added tokens; no prefix when
///   `tokenizer.ggml.add_space_prefix` is false (as llama.cpp; transformers ignores it);
/// - decoder: `▁` back to spaces, byte pieces fused into characters, the prefix space
///   stripped;
/// - control tokens and the named bos/eos/unk/pad as special tokens, user-defined ones as
///   plain added tokens; for Phi-3 they eat the whitespace after them (`rstrip`), except
///   `<unk>`, `<s>` and `<|endoftext|>`, as in Phi-3's `tokenizer.json` (llama.cpp
///   restores the same from the model name; a GGUF has no such flag);
/// - BOS added unless `tokenizer.ggml.add_bos_token` is false (the default of llama.cpp
///   and transformers for this kind of vocabulary), EOS only when `add_eos_token`.
fn sentencepiece(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
    let err = |what: String| vocab_error(file, what);
    let vocabulary = Vocabulary::read(file)?;
    let tokens = &vocabulary.tokens;
    let scores: Vec<f64> = match file.get("tokenizer.ggml.scores") {
        Some(_) => file
            .get_array("tokenizer.ggml.scores")?
            .iter()
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| err("tokenizer.ggml.scores holds a non-number".to_string()))
            })
            .collect::<Result<_, _>>()?,
        None => return Err(err("tokenizer.ggml.scores is missing".to_string())),
    };
    if scores.len() != tokens.len() {
        return Err(err(format!(
            "{} scores for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let mut vocab = Vocab::default();
    for (id, token) in tokens.iter().enumerate() {
        let id = u32::try_from(id).map_err(|_| err("more than 2^32 tokens".to_string()))?;
        vocab.insert((*token).to_string(), id);
    }
    let merges = merges_from_scores(tokens, &scores);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| err(format!("cannot build the BPE model: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);

    let architecture = file.get_str("general.architecture")?;
    let phi3 = architecture == "phi3";
    let prefix = file
        .optional("tokenizer.ggml.add_space_prefix", GgufFile::get_bool)?
        .unwrap_or(true);
    let space = |what: &str| {
        Replace::new(" ", SPACE_MARK.to_string())
            .map_err(|e| err(format!("cannot build the {what}: {e}")))
    };
    if phi3 {
        let mut steps = Vec::new();
        if prefix {
            steps.push(Prepend::new(SPACE_MARK.to_string()).into());
        }
        steps.push(space("normalizer")?.into());
        tokenizer
            .with_normalizer(Some(NormalizerSequence::new(steps)))
            .map_err(|e| err(format!("cannot set the normalizer: {e}")))?;
    } else {
        let scheme = if prefix {
            PrependScheme::First
        } else {
            PrependScheme::Never
        };
        tokenizer.with_pre_tokenizer(Some(Metaspace::new(SPACE_MARK, scheme, false)));
    }
    let mut decoders = vec![
        Replace::new(SPACE_MARK.to_string(), " ")
            .map_err(|e| err(format!("cannot build the decoder: {e}")))?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    tokenizer.with_post_processor(Some(vocabulary.post_processor(file, true)?));

    // LlamaTokenizer's own defaults (`<unk>`, `<s>`, `</s>`), the control tokens and the
    // named ones are special; only tokens of the vocabulary are added.
    let in_vocab: HashSet<&str> = tokens.iter().copied().collect();
    let mut special: Vec<&str> = Vec::new();
    let candidates = ["<unk>", "<s>", "</s>"]
        .into_iter()
        .chain(vocabulary.of_type(CONTROL))
        .chain(vocabulary.named());
    for token in candidates {
        if in_vocab.contains(token) && !special.contains(&token) {
            special.push(token);
        }
    }
    let user_defined: Vec<&str> = vocabulary.of_type(USER_DEFINED).collect();
    let rstrip = |t: &str| phi3 && !matches!(t, "<unk>" | "<s>" | "<|endoftext|>");
    add_tokens(
        file,
        &mut tokenizer,
        special
            .into_iter()
            .map(|t| AddedToken::from(t, true).rstrip(rstrip(t)))
            .collect(),
        user_defined
            .into_iter()
            .map(|t| {
                AddedToken::from(t, false)
                    .normalized(false)
                    .rstrip(rstrip(t))
            })
            .collect(),
    )?;
    Ok(tokenizer)
}

/// BPE merges implied by a SentencePiece vocabulary, as transformers' `generate_merges`
/// recovers them: every split of a piece into two pieces of the vocabulary is a merge
/// (splits of one piece ordered by the ids of their halves), and merges are ranked by
/// the merged piece's score, highest first, then by the lengths of the halves, longest
/// first, keeping the vocabulary's order among equals. SentencePiece's BPE merges the
/// pair whose result scores highest, which this order reproduces.
fn merges_from_scores(tokens: &[&str], scores: &[f64]) -> Vec<(String, String)> {
    // As the Python dicts: the id of a piece is its last position, its score the last
    // one given, its place in the iteration its first position.
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut score_of: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    for (token, &score) in tokens.iter().zip(scores) {
        if score_of.insert(token, score).is_none() {
            order.push(token);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for piece in order {
        let score = score_of.get(piece).copied().unwrap_or_default();
        let mut local: Vec<(&str, &str)> = piece
            .char_indices()
            .skip(1)
            .map(|(at, _)| piece.split_at(at))
            .filter(|(left, right)| ids.contains_key(left) && ids.contains_key(right))
            .collect();
        local.sort_by_key(|(left, right)| (ids.get(left), ids.get(right)));
        merges.extend(local.into_iter().map(|(left, right)| (left, right, score)));
    }
    let chars = |s: &str| s.chars().count();
    merges.sort_by(|a, b| {
        b.2.partial_cmp(&a.2)
            .unwrap_or(Ordering::Equal)
            .then_with(|| chars(b.0).cmp(&chars(a.0)))
            .then_with(|| chars(b.1).cmp(&chars(a.1)))
    });
    merges
        .into_iter()
        .map(|(left, right, _)| (left.to_string(), right.to_string()))
        .collect()
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

// The split regexes that replace the GPT-2 one, by `tokenizer.ggml.pre`, as the Hugging
// Face tokenizers spell them (`GGUF_PRE_TOKENIZER_SPLITS` in transformers'
// gguf_tokenizer_mapping.py; llama.cpp's `llm_tokenizer_bpe` has the same patterns).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::testfile::tiny_file;

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

    #[test]
    fn merges_rank_by_the_merged_piece_score() {
        let tokens = ["a", "b", "c", "ab", "bc", "abc"];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0];
        let merges = merges_from_scores(&tokens, &scores);
        let pairs: Vec<(&str, &str)> = merges
            .iter()
            .map(|(l, r)| (l.as_str(), r.as_str()))
            .collect();
        // Highest score first; the two splits of "abc" by left length, longest first.
        assert_eq!(pairs, [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]);
    }

    #[test]
    fn pre_tokenization_by_name() {
        let of = PreTokenization::of;
        assert_eq!(
            of("llama-bpe"),
            PreTokenization {
                split: Some(LLAMA3_SPLIT),
                digits: false,
                ignore_merges: true
            }
        );
        assert!(!of("dbrx").ignore_merges);
        assert_eq!(of("dbrx").split, Some(LLAMA3_SPLIT));
        for digits in ["starcoder", "smollm", "command-r", "refact"] {
            assert!(of(digits).digits && of(digits).split.is_none(), "{digits}");
        }
        assert_eq!(
            of("gpt-2"),
            PreTokenization {
                split: None,
                digits: false,
                ignore_merges: false
            }
        );
    }
}
