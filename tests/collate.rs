//! Token ids, labels and packed batches against trl's own preparation and
//! collator on the default model's tokenizer (tests/fixtures/collate/trl.json,
//! made by tools/make_collate_fixtures.py), plus properties that must hold for
//! any input.

use ftui::collate::{Preparer, IGNORE};
use ftui::config::RunConfig;
use ftui::data::Example;
use ftui::source::{load_tokenizer, ModelSource};
use ftui::tokenizer::TextTokenizer;
use serde_json::Value;
use std::path::Path;

fn golden() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/collate/trl.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

fn tokenizer() -> TextTokenizer {
    let path = ftui::paths::default_model()
        .unwrap_or_else(|| panic!("{}", ftui::paths::default_model_missing()));
    load_tokenizer(&ModelSource::Gguf(path), &mut |_, _, _| {}).expect("tokenizer")
}

fn config(extra: &str) -> RunConfig {
    RunConfig::parse(
        &format!("[model]\nsource = \"default\"\n{extra}"),
        Path::new("test.toml"),
    )
    .expect("config")
}

fn ids(v: &Value) -> Vec<Vec<i64>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_i64().expect("int"))
                .collect()
        })
        .collect()
}

fn prompt_completion(examples: &Value) -> Vec<Example> {
    examples
        .as_array()
        .expect("examples")
        .iter()
        .map(|e| Example::PromptCompletion {
            prompt: e["prompt"].as_array().expect("prompt").clone(),
            completion: e["completion"].as_array().expect("completion").clone(),
        })
        .collect()
}

fn conversations(examples: &Value) -> Vec<Example> {
    examples
        .as_array()
        .expect("examples")
        .iter()
        .map(|c| Example::Messages(c.as_array().expect("messages").clone()))
        .collect()
}

/// Prepares without packing and compares every example's ids and labels.
fn check_examples(case: &str, examples: Vec<Example>, extra: &str) {
    let g = golden();
    let tok = tokenizer();
    let c = config(&format!(
        "[training]\nmax_length = {}\n{extra}",
        g["max_length"]
    ));
    let p = Preparer::new(&c, &tok).expect("preparer");
    let (rows, report) = p.prepare(&examples).expect("prepare");
    let got_ids: Vec<Vec<i64>> = rows
        .iter()
        .map(|r| r.input_ids.iter().map(|&t| t as i64).collect())
        .collect();
    let got_labels: Vec<Vec<i64>> = rows.iter().map(|r| r.labels.clone()).collect();
    assert_eq!(
        got_ids,
        ids(&g["cases"][case]["input_ids"]),
        "{case}: input ids"
    );
    assert_eq!(
        got_labels,
        ids(&g["cases"][case]["labels"]),
        "{case}: labels"
    );
    assert_eq!(report.examples, examples.len());
}

#[test]
fn prompt_completion_labels_match_trl() {
    let g = golden();
    check_examples(
        "prompt_completion",
        prompt_completion(&g["cases"]["prompt_completion"]["examples"]),
        "",
    );
    check_examples(
        "prompt_completion_system",
        prompt_completion(&g["cases"]["prompt_completion_system"]["examples"]),
        "",
    );
}

#[test]
fn conversation_labels_match_trl() {
    let g = golden();
    check_examples(
        "messages_all",
        conversations(&g["cases"]["messages_all"]["examples"]),
        "",
    );
    let template = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/templates/smollm2-generation.jinja");
    check_examples(
        "messages_assistant_only",
        conversations(&g["cases"]["messages_assistant_only"]["examples"]),
        &format!(
            "assistant_only_loss = true\n[template]\nchat_template = {:?}\n",
            template.display().to_string()
        ),
    );
}

#[test]
fn text_gets_eos_like_trl() {
    let g = golden();
    let examples = g["cases"]["text"]["examples"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| Example::Text(t.as_str().expect("text").into()))
        .collect();
    check_examples("text", examples, "");
}

#[test]
fn bfd_packing_and_padding_free_batches_match_trl() {
    let g = golden();
    let case = &g["cases"]["packed_bfd"];
    let tok = tokenizer();
    let c = config(&format!(
        "[training]\nmax_length = {}\npacking = true\npacking_strategy = \"bfd\"\nper_device_train_batch_size = 4\n",
        g["packed_length"]
    ));
    let p = Preparer::new(&c, &tok).expect("preparer");
    let (rows, _) = p
        .prepare(&prompt_completion(&case["examples"]))
        .expect("prepare");
    let expected = case["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), expected.len());
    for (r, e) in rows.iter().zip(expected) {
        let ids: Vec<i64> = r.input_ids.iter().map(|&t| t as i64).collect();
        assert_eq!(Value::from(ids), e["input_ids"]);
        assert_eq!(Value::from(r.labels.clone()), e["labels"]);
        assert_eq!(Value::from(r.seq_lengths.clone()), e["seq_lengths"]);
    }
    for (chunk, b) in rows
        .chunks(4)
        .zip(case["batches"].as_array().expect("batches"))
    {
        let batch = p.collate(chunk);
        assert_eq!(batch.input_ids, ids(&b["input_ids"]));
        assert_eq!(batch.labels, ids(&b["labels"]));
        assert_eq!(
            batch.position_ids.expect("position ids"),
            ids(&b["position_ids"])
        );
        assert!(batch.attention_mask.is_none());
    }
}

#[test]
fn wrapped_packing_matches_trl() {
    let g = golden();
    let case = &g["cases"]["packed_wrapped"];
    let tok = tokenizer();
    let c = config(&format!(
        "[training]\nmax_length = {}\npacking = true\npacking_strategy = \"wrapped\"\n",
        g["packed_length"]
    ));
    let p = Preparer::new(&c, &tok).expect("preparer");
    let (rows, _) = p
        .prepare(&prompt_completion(&case["examples"]))
        .expect("prepare");
    let expected = case["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), expected.len());
    for (r, e) in rows.iter().zip(expected) {
        let ids: Vec<i64> = r.input_ids.iter().map(|&t| t as i64).collect();
        assert_eq!(Value::from(ids), e["input_ids"]);
        assert_eq!(Value::from(r.labels.clone()), e["labels"]);
    }
    let b = p.collate(&rows[..4]);
    let fb = &case["first_batch"];
    assert_eq!(b.input_ids, ids(&fb["input_ids"]));
    assert_eq!(b.labels, ids(&fb["labels"]));
    assert_eq!(b.attention_mask.expect("mask"), ids(&fb["attention_mask"]));
}

#[test]
fn labels_are_ignored_or_equal_to_inputs_and_stay_in_assistant_spans() {
    // Properties over the whole sample dataset, every label mode.
    let tok = tokenizer();
    let data: Vec<Value> = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/yoda_sentences.jsonl"),
    )
    .expect("sample data")
    .lines()
    .map(|l| serde_json::from_str(l).expect("row"))
    .collect();
    let examples: Vec<Example> = data
        .iter()
        .map(|r| {
            Example::Messages(vec![
                serde_json::json!({"role": "system", "content": "Speak like Yoda."}),
                serde_json::json!({"role": "user", "content": r["sentence"]}),
                serde_json::json!({"role": "assistant", "content": r["translation"]}),
            ])
        })
        .collect();
    let template = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/templates/smollm2-generation.jinja");
    for extra in [
        "".to_string(),
        "packing = true\n".into(),
        "packing = true\npacking_strategy = \"wrapped\"\n".into(),
        format!(
            "assistant_only_loss = true\n[template]\nchat_template = {:?}\n",
            template.display().to_string()
        ),
    ] {
        let c = config(&format!("[training]\nmax_length = 96\n{extra}"));
        let p = Preparer::new(&c, &tok).expect("preparer");
        let (rows, report) = p.prepare(&examples).expect("prepare");
        assert!(!rows.is_empty());
        for r in &rows {
            assert_eq!(r.input_ids.len(), r.labels.len());
            assert!(r.input_ids.len() <= 96);
            for (&id, &l) in r.input_ids.iter().zip(&r.labels) {
                assert!(l == IGNORE || l == id as i64, "label {l} at token {id}");
            }
        }
        if extra.contains("assistant_only_loss") {
            // Every trained token decodes to assistant text or the end of its turn.
            let assistant: Vec<String> = data
                .iter()
                .map(|r| r["translation"].as_str().expect("t").to_string())
                .collect();
            for r in &rows {
                let trained: Vec<u32> = r
                    .labels
                    .iter()
                    .filter(|&&l| l != IGNORE)
                    .map(|&l| l as u32)
                    .collect();
                let text = tok.decode(&trained, false);
                let text = text.trim_end_matches("<|im_end|>");
                assert!(
                    assistant.iter().any(|a| a == text),
                    "trained text outside the assistant turn: {text:?}"
                );
            }
            assert_eq!(
                report.ends_with_stop,
                report.trained_tokens.len(),
                "every answer ends with a trained <|im_end|>"
            );
        }
    }
}
