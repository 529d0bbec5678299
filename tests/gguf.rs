//! GGUF files as llama.cpp's converter writes them (made by tools/make_gguf_fixtures.py
//! from the tiny Hugging Face models and vocabularies beside them, see
//! tests/fixtures/gguf/README.md), read by ftui: a Phi-3 with fused projections and a
//! Llama with llama3 rope scaling stored as `rope_freqs` score like transformers on the
//! source folders; SentencePiece and byte-level vocabularies give the source tokenizers'
//! ids.

use ftui::config::{AttnImplementation, DType};
use ftui::gguf::GgufFile;
use ftui::model::LoadOptions;
use ftui::nn::RopeScaling;
use ftui::source::{load_model, ModelSource};
use ftui::tokenizer::TextTokenizer;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture");
    serde_json::from_str(&text).expect("json")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn tokenizer(gguf: &str) -> TextTokenizer {
    let file = GgufFile::open(fixture(gguf)).expect("opens");
    TextTokenizer::from_gguf(&file).expect("builds the vocabulary")
}

/// Every case of `variant` in `cases`, with and without special tokens; all mismatches
/// are listed before failing.
fn check_ids(variant: &str, gguf: &str, cases: &[Value]) {
    let tok = tokenizer(gguf);
    let mut wrong = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        for (add_special, key) in [(true, "with_special"), (false, "without_special")] {
            let expected = ids(&case[variant][key]);
            let got = tok.encode(text, add_special).expect("encodes");
            if got != expected {
                wrong.push(format!(
                    "{text:?} ({key}): got {got:?}, expected {expected:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{variant}: {} of {} encodings differ:\n{}",
        wrong.len(),
        2 * cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn sentencepiece_vocabularies_give_the_source_ids() {
    let fx = json("sentencepiece-texts.json");
    let cases = fx["cases"].as_array().expect("cases");
    assert!(cases.len() >= 250, "{} cases", cases.len());
    check_ids("sp-llama", "sp-llama.gguf", cases);
    check_ids("sp-phi3", "sp-phi3.gguf", cases);
}

#[test]
fn sentencepiece_specials_and_decoding() {
    let llama = tokenizer("sp-llama.gguf");
    let s = &llama.specials;
    assert_eq!(
        s.bos.as_ref().map(|t| (t.text.as_str(), t.id)),
        Some(("<s>", 1))
    );
    assert_eq!(s.eos.as_ref().map(|t| t.id), Some(2));
    assert_eq!(s.unk.as_ref().map(|t| t.id), Some(0));
    // The prefix `▁` and byte pieces decode back to the text.
    for text in ["Hello world", "tabs\tand\nnewlines", "emoji 🦙 and 日本語"] {
        let ids = llama.encode(text, true).expect("encodes");
        assert_eq!(llama.decode(&ids, true), text);
    }
    assert_eq!(s.stop_ids, [2]);
    let phi3 = tokenizer("sp-phi3.gguf");
    assert_eq!(phi3.specials.eos.as_ref().map(|t| t.id), Some(600));
    // Generation stops at the end of a turn too, as in llama.cpp.
    assert_eq!(phi3.specials.stop_ids, [600, 607]);
    assert!(phi3.chat_template.is_some());
    // No BOS for Phi-3; `<|user|>` eats the newline after it.
    let ids = phi3.encode("<|user|>\nHi", true).expect("encodes");
    assert_eq!(ids.first(), Some(&610));
    assert_eq!(ids, phi3.encode("<|user|>Hi", true).expect("encodes"));
}

#[test]
fn byte_level_pre_tokenizers_follow_the_source_tokenizers() {
    let fx = json("bpe-texts.json");
    for (variant, gguf) in [
        ("bpe-llama3", "bpe-llama3.gguf"),
        ("bpe-starcoder", "bpe-starcoder.gguf"),
    ] {
        let cases = fx[variant].as_array().expect("cases");
        assert!(!cases.is_empty());
        check_ids(variant, gguf, cases);
    }

    // Llama 3 (`llama-bpe`): a word found whole in the vocabulary is one token.
    let llama3 = tokenizer("bpe-llama3.gguf");
    let viet = fx["bpe-llama3.whole_words"][" Việt"].as_u64().expect("id") as u32;
    let ids = llama3.encode("Cửa Việt", false).expect("encodes");
    assert_eq!(ids.last(), Some(&viet), "{ids:?}");
    // StarCoder (`starcoder`): every numeric character is its own piece.
    let starcoder = tokenizer("bpe-starcoder.gguf");
    let space_half = fx["bpe-starcoder.space_half"].as_u64().expect("id") as u32;
    let ids = starcoder.encode("ied 4 ½ months", false).expect("encodes");
    assert!(!ids.contains(&space_half), "{ids:?}");
}

fn expected() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture("expected.safetensors"))
        .expect("expected.safetensors")
        .into_iter()
        .collect()
}

/// Max |ftui - transformers| of the logits of `gguf` on the fixture's input ids.
fn logit_difference(gguf: &str, reference: &Tensor) -> f64 {
    tch::set_num_threads(1);
    let opts = LoadOptions {
        dtype: DType::Float32,
        device: Device::Cpu,
        attn: AttnImplementation::Eager,
        quantization: None,
    };
    let m = load_model(&ModelSource::Gguf(fixture(gguf)), &opts, &mut |_, _, _| {}).expect("loads");
    let g = expected();
    let logits = m
        .model
        .forward(&g["input_ids"], None, None, None)
        .expect("forward");
    assert_eq!(logits.size(), reference.size());
    (logits - reference).abs().max().double_value(&[])
}

#[test]
fn phi3_gguf_scores_like_transformers_on_the_source_model() {
    let g = expected();
    let d = logit_difference("phi3.gguf", &g["phi3.logits"]);
    assert!(d < 1e-3, "max logit difference {d}");
}

#[test]
fn llama3_rope_freqs_are_applied() {
    let file = GgufFile::open(fixture("llama3-rope.gguf")).expect("opens");
    assert!(file.tensor_info("rope_freqs.weight").is_some());
    let g = expected();
    let d = logit_difference("llama3-rope.gguf", &g["llama3-rope.logits"]);
    assert!(d < 1e-3, "max logit difference {d}");
    // Without the factors the logits would be another model's.
    let plain = (&g["llama3-rope.logits"] - &g["llama3-rope.logits_without_rope_freqs"])
        .abs()
        .max()
        .double_value(&[]);
    assert!(
        plain > 1e-2,
        "the fixture's rope scaling changes nothing ({plain})"
    );

    let m = load_model(
        &ModelSource::Gguf(fixture("llama3-rope.gguf")),
        &LoadOptions::default(),
        &mut |_, _, _| {},
    )
    .expect("loads");
    match &m.model.config.rope_scaling {
        Some(RopeScaling::FreqFactors(f)) => {
            assert_eq!(f.len(), 8);
            assert_eq!((f[0], f[2]), (1.0, 8.0));
        }
        other => panic!("rope scaling {other:?}"),
    }
}
