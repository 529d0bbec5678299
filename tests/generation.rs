//! Generation and scoring on the embedded default model (SmolLM2-135M-Instruct,
//! Q4_1 GGUF) against transformers loading the same file
//! (tests/fixtures/smollm2_gguf.json, made by tools/make_fixtures.py), and the KV
//! cache against full recomputation.

use ftui::config::{AttnImplementation, DType};
use ftui::generate::{generate, FinishReason, SamplingParams};
use ftui::model::LoadOptions;
use ftui::source::LoadedModel;
use ftui::source::{load_model, ModelSource};
use std::path::Path;
use tch::Device;

fn opts() -> LoadOptions {
    LoadOptions {
        dtype: DType::Float32,
        device: Device::Cpu,
        attn: AttnImplementation::Sdpa,
        quantization: None,
    }
}

thread_local! {
    // libtorch tensors are not Sync: one model per test thread (one thread under
    // `make test`, which runs tests one at a time).
    static MODEL: &'static LoadedModel = {
        let path = ftui::paths::default_model().unwrap_or_else(|| panic!("{}", ftui::paths::default_model_missing()));
        Box::leak(Box::new(load_model(&ModelSource::Gguf(path), &opts(), &mut |_, _, _| {}).expect("loads the default model")))
    };
}

/// The default model, loaded once per thread.
fn smollm2() -> &'static LoadedModel {
    MODEL.with(|m| *m)
}

fn golden() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_gguf.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn score_matches_transformers_on_the_gguf() {
    let g = golden();
    let m = smollm2();
    let text = g["score"]["text"].as_str().expect("text");
    let expected_ids = ids(&g["score"]["token_ids"]);
    let got_ids = m.tokenizer.encode(text, true).expect("encode");
    assert_eq!(got_ids, expected_ids, "token ids");
    let s = ftui::score::score(&m.model, &got_ids).expect("score");
    let expected: Vec<f64> = g["score"]["logprobs"]
        .as_array()
        .expect("lp")
        .iter()
        .map(|x| x.as_f64().expect("f"))
        .collect();
    assert_eq!(s.logprobs.len(), expected.len());
    let worst = s
        .logprobs
        .iter()
        .zip(&expected)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-3, "max logprob difference {worst}");
    assert!((s.mean_nll - g["score"]["mean_nll"].as_f64().expect("nll")).abs() < 1e-3);
}

#[test]
fn tokenizer_matches_transformers_on_the_gguf() {
    let g = golden();
    let m = smollm2();
    for case in g["tokenize"].as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        assert_eq!(
            m.tokenizer.encode(text, false).expect("encode"),
            ids(&case["input_ids"]),
            "{text:?}"
        );
    }
    assert_eq!(
        m.tokenizer.chat_template.as_deref(),
        g["chat_template"].as_str()
    );
    assert_eq!(m.tokenizer.specials.eos.as_ref().map(|t| t.id), Some(2));
}

#[test]
fn greedy_chat_answer_matches_transformers() {
    let g = golden();
    let m = smollm2();
    // The prompt ids transformers built from the chat template.
    let prompt = ids(&g["chat"]["input_ids"]);
    let p = SamplingParams {
        max_new_tokens: g["greedy"]["max_new_tokens"].as_u64().expect("n") as usize,
        ..SamplingParams::default()
    };
    let (out, _) =
        generate(&m.model, &m.tokenizer, &[prompt], &p, &mut |_, _| true).expect("generate");
    assert_eq!(out[0].token_ids, ids(&g["greedy"]["token_ids"]));
    assert_eq!(out[0].finish, FinishReason::Eos);
    assert!(out[0].text.contains("Paris"), "{}", out[0].text);
}

#[test]
fn kv_cache_gives_the_same_tokens_as_recomputation() {
    let m = smollm2();
    let a = m
        .tokenizer
        .encode("Once upon a time, in a small village,", true)
        .expect("a");
    let b = m
        .tokenizer
        .encode("The three primary colours are", true)
        .expect("b");
    let p = SamplingParams {
        max_new_tokens: 12,
        ignore_eos: true,
        ..SamplingParams::default()
    };
    // Batched with left padding (the prompts differ in length) and one alone.
    let prompts = [a.clone(), b.clone()];
    let (cached, _) =
        generate(&m.model, &m.tokenizer, &prompts, &p, &mut |_, _| true).expect("cached");
    let full = SamplingParams {
        no_cache: true,
        ..p.clone()
    };
    let (recomputed, _) =
        generate(&m.model, &m.tokenizer, &prompts, &full, &mut |_, _| true).expect("full");
    let (alone, _) = generate(&m.model, &m.tokenizer, &[b], &p, &mut |_, _| true).expect("alone");
    for row in 0..2 {
        assert_eq!(
            cached[row].token_ids, recomputed[row].token_ids,
            "row {row}"
        );
        assert_eq!(cached[row].token_ids.len(), 12);
    }
    assert_eq!(
        cached[1].token_ids, alone[0].token_ids,
        "left padding changed the answer"
    );
}

#[test]
fn streamed_text_adds_up_to_the_answer() {
    let m = smollm2();
    let prompt = m
        .tokenizer
        .encode("Write a short poem about the sea.", true)
        .expect("encode");
    let mut streamed = String::new();
    let p = SamplingParams {
        max_new_tokens: 16,
        temperature: 0.8,
        top_p: 0.9,
        top_k: 40,
        seed: Some(7),
        ..SamplingParams::default()
    };
    let (out, _) = generate(
        &m.model,
        &m.tokenizer,
        std::slice::from_ref(&prompt),
        &p,
        &mut |_, t| {
            streamed.push_str(t);
            true
        },
    )
    .expect("generate");
    assert_eq!(streamed, out[0].text);
    // Same seed, same answer.
    let (again, _) =
        generate(&m.model, &m.tokenizer, &[prompt], &p, &mut |_, _| true).expect("again");
    assert_eq!(again[0].token_ids, out[0].token_ids);
}

#[test]
fn stop_strings_and_cancel_end_generation() {
    let m = smollm2();
    let prompt = m
        .tokenizer
        .encode("Count: 1, 2, 3, 4,", true)
        .expect("encode");
    let p = SamplingParams {
        max_new_tokens: 20,
        ignore_eos: true,
        stop_strings: vec!["7".into()],
        ..SamplingParams::default()
    };
    let mut streamed = String::new();
    let (out, _) = generate(
        &m.model,
        &m.tokenizer,
        std::slice::from_ref(&prompt),
        &p,
        &mut |_, t| {
            streamed.push_str(t);
            true
        },
    )
    .expect("generate");
    if out[0].finish == FinishReason::StopString {
        assert!(!out[0].text.contains('7'), "{}", out[0].text);
    }
    assert_eq!(
        streamed, out[0].text,
        "the stream shows exactly the final text"
    );
    // A stop string spanning tokens (", 6"): nothing of it reaches the stream.
    let p2 = SamplingParams {
        stop_strings: vec![", 6".into(), "日本".into()],
        ..p.clone()
    };
    let mut streamed = String::new();
    let (out, _) = generate(
        &m.model,
        &m.tokenizer,
        std::slice::from_ref(&prompt),
        &p2,
        &mut |_, t| {
            streamed.push_str(t);
            true
        },
    )
    .expect("generate");
    assert_eq!(streamed, out[0].text);
    assert!(!out[0].text.contains(", 6"), "{}", out[0].text);
    let mut calls = 0;
    let (cancelled, _) = generate(&m.model, &m.tokenizer, &[prompt], &p, &mut |_, _| {
        calls += 1;
        calls < 3
    })
    .expect("generate");
    assert_eq!(cancelled[0].finish, FinishReason::Cancelled);
    // The callback hears every token, so the stop lands on the third.
    assert_eq!(cancelled[0].token_ids.len(), 3);
}

#[test]
fn footprint_and_parameters_match_transformers() {
    // transformers on the same GGUF in float32: get_memory_footprint() and
    // num_parameters() (tied lm_head counted once).
    let g = golden();
    let m = smollm2();
    assert_eq!(Some(m.model.num_parameters()), g["num_parameters"].as_i64());
    assert_eq!(
        Some(m.model.memory_footprint()),
        g["memory_footprint"].as_i64()
    );
}

#[test]
fn default_lora_config_counts_match_peft_on_the_default_model() {
    // peft's get_nb_trainable_parameters() for sample-data/ftui.toml's [lora] on
    // the same GGUF (tests/fixtures/lora/trainable.json).
    let t: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora/trainable.json"),
        )
        .expect("read"),
    )
    .expect("json");
    let sample = ftui::config::RunConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/ftui.toml"),
    )
    .expect("sample");
    let path = ftui::paths::default_model().expect("default model");
    let mut m = load_model(&ModelSource::Gguf(path), &opts(), &mut |_, _, _| {}).expect("loads");
    let targeted = ftui::lora::add_adapter(
        &mut m.model,
        "yoda",
        sample.lora.as_ref().expect("[lora]"),
        0,
    )
    .expect("adapter");
    let expected = &t["smollm2_gguf"]["all-linear"];
    assert_eq!(
        targeted.len() as u64,
        expected["num_targeted_modules"].as_u64().expect("n")
    );
    let (trainable, total) = ftui::lora::parameter_counts(&m.model, "yoda");
    assert_eq!(Some(trainable), expected["trainable"].as_i64());
    assert_eq!(Some(total), expected["total"].as_i64());
}

#[test]
fn nf4_double_quant_footprint_is_far_below_fp32() {
    let path = ftui::paths::default_model().expect("default model");
    let q: ftui::config::QuantizationConfig = toml::from_str(
        "load_in_4bit = true\nbnb_4bit_quant_type = \"nf4\"\nbnb_4bit_use_double_quant = true\n",
    )
    .expect("q");
    let o = LoadOptions {
        quantization: Some(q),
        ..opts()
    };
    let m = load_model(&ModelSource::Gguf(path), &o, &mut |_, _, _| {}).expect("loads in 4 bits");
    let fp32 = smollm2().model.memory_footprint();
    let nf4 = m.model.memory_footprint();
    assert_eq!(m.model.weight_format(), "nf4+dq");
    assert_eq!(m.model.num_parameters(), smollm2().model.num_parameters());
    // The decoder linears shrink 8x; embeddings and norms stay fp32.
    assert!(nf4 < fp32 / 2, "nf4 {nf4} vs fp32 {fp32}");
    // Still a working model: the chat answer keeps Paris.
    let g = golden();
    let prompt = ids(&g["chat"]["input_ids"]);
    let p = SamplingParams {
        max_new_tokens: 10,
        ..SamplingParams::default()
    };
    let (out, _) =
        generate(&m.model, &m.tokenizer, &[prompt], &p, &mut |_, _| true).expect("generate");
    assert!(out[0].text.contains("Paris"), "{}", out[0].text);
}
