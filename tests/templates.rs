//! ftui renders chat templates exactly as transformers does.
//!
//! `tests/fixtures/templates/` holds real chat templates and, for each, what
//! transformers' `apply_chat_template` made of a few conversations (text, raised
//! errors, and the assistant spans of `{% generation %}` blocks), written by
//! `tools/make_template_fixtures.py`. `jinja-features.json` pins down the Jinja2
//! semantics templates rely on, one small template per feature.

use std::path::{Path, PathBuf};

use ftui::template::{
    builtin, ChatTemplate, RenderRequest, Rendered, SpecialTokens, TemplateError, BUILTIN_NAMES,
};
use serde_json::{Map, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates")
}

fn read_fixture(name: &str) -> String {
    let path = fixtures().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(name: &str) -> Value {
    serde_json::from_str(&read_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn special_tokens(doc: &Value) -> SpecialTokens {
    let token = |name: &str| doc["special_tokens"][name].as_str().map(str::to_string);
    SpecialTokens {
        bos: token("bos_token"),
        eos: token("eos_token"),
        pad: token("pad_token"),
        unk: token("unk_token"),
    }
}

fn list(case: &Value, key: &str) -> Option<Vec<Value>> {
    case.get(key).and_then(Value::as_array).cloned()
}

fn spans(case: &Value, key: &str) -> Vec<(usize, usize)> {
    serde_json::from_value(case[key].clone()).unwrap_or_default()
}

fn render_case(template: &ChatTemplate, case: &Value) -> Result<Rendered, TemplateError> {
    let messages = list(case, "messages").unwrap_or_default();
    let tools = list(case, "tools");
    let documents = list(case, "documents");
    let kwargs: Option<Map<String, Value>> = case.get("extra").and_then(Value::as_object).cloned();
    template.render_with(&RenderRequest {
        messages: &messages,
        add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap_or(false),
        tools: tools.as_deref(),
        documents: documents.as_deref(),
        kwargs: kwargs.as_ref(),
    })
}

/// Checks one fixture case; returns a description of the mismatch, if any.
fn check_case(template: &ChatTemplate, case: &Value) -> Option<String> {
    let got = render_case(template, case);
    match (case.get("expected").and_then(Value::as_str), got) {
        (Some(expected), Ok(rendered)) => {
            if rendered.text != expected {
                return Some(format!(
                    "text differs\n  want {expected:?}\n  got  {:?}",
                    rendered.text
                ));
            }
            let want_bytes = spans(case, "assistant_byte_spans");
            let want_chars = spans(case, "assistant_char_spans");
            if rendered.assistant_spans != want_bytes
                || rendered.assistant_char_spans() != want_chars
            {
                return Some(format!(
                    "spans differ: want bytes {want_bytes:?} chars {want_chars:?}, got bytes {:?} chars {:?}",
                    rendered.assistant_spans,
                    rendered.assistant_char_spans()
                ));
            }
            None
        }
        (Some(expected), Err(err)) => Some(format!("want {expected:?}, got error {err}")),
        (None, Ok(rendered)) => Some(format!(
            "want error {:?}, got text {:?}",
            case["error"], rendered.text
        )),
        (None, Err(err)) => {
            let want = case["error"].as_str().unwrap_or_default();
            // raise_exception's message must come through unchanged; for Jinja2's own
            // errors (undefined values ...) failing is what matters.
            match want.strip_prefix("TemplateError: ") {
                Some(message) => match &err {
                    TemplateError::Raised { message: got, .. } if got == message => None,
                    _ => Some(format!("want raised {message:?}, got {err}")),
                },
                None => None,
            }
        }
    }
}

fn check_template_fixture(name: &str) {
    let doc = read_json(&format!("{name}.json"));
    let file = doc["template"].as_str().unwrap_or_default();
    let source = read_fixture(file);
    let template = ChatTemplate::named(file, &source, &special_tokens(&doc))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let cases = doc["cases"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    assert!(!cases.is_empty(), "{name}: no cases");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check_case(&template, case).map(|why| format!("{name} / {}: {why}", case["name"]))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn smollm2_135m_instruct() {
    check_template_fixture("smollm2-135m-instruct");
}

#[test]
fn phi_3_mini_4k_instruct() {
    check_template_fixture("phi-3-mini-4k-instruct");
}

#[test]
fn llama_3_8b_instruct() {
    check_template_fixture("llama-3-8b-instruct");
}

#[test]
fn llama_3_1_8b_instruct() {
    check_template_fixture("llama-3.1-8b-instruct");
}

#[test]
fn llama_3_2_3b_instruct() {
    check_template_fixture("llama-3.2-3b-instruct");
}

#[test]
fn qwen2_5_7b_instruct() {
    check_template_fixture("qwen2.5-7b-instruct");
}

#[test]
fn mistral_7b_instruct_v0_3() {
    check_template_fixture("mistral-7b-instruct-v0.3");
}

#[test]
fn zephyr_7b_beta() {
    check_template_fixture("zephyr-7b-beta");
}

#[test]
fn chatml() {
    check_template_fixture("chatml");
}

#[test]
fn smollm2_with_generation_blocks() {
    check_template_fixture("smollm2-generation");
    let source = read_fixture("smollm2-generation.jinja");
    let template = ChatTemplate::new(&source, &SpecialTokens::default()).unwrap();
    assert!(template.has_generation_blocks());
    let plain = read_fixture("smollm2-135m-instruct.jinja");
    assert!(!ChatTemplate::new(&plain, &SpecialTokens::default())
        .unwrap()
        .has_generation_blocks());
}

#[test]
fn llama_3_2_with_generation_blocks() {
    check_template_fixture("llama-3.2-generation");
}

#[test]
fn jinja_features() {
    let doc = read_json("jinja-features.json");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() > 50);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let name = &case["name"];
            let source = case["template"].as_str().unwrap_or_default();
            let template = match ChatTemplate::new(source, &SpecialTokens::default()) {
                Ok(t) => t,
                Err(e) => return Some(format!("{name}: does not compile: {e}")),
            };
            check_case(&template, case).map(|why| format!("{name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} features differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn builtins_are_the_fixture_templates() {
    let files = [
        ("chatml", "chatml.jinja"),
        ("llama3", "llama-3-8b-instruct.jinja"),
        ("phi3", "phi-3-mini-4k-instruct.jinja"),
        ("mistral", "mistral-7b-instruct-v0.3.jinja"),
        ("zephyr", "zephyr-7b-beta.jinja"),
    ];
    assert_eq!(BUILTIN_NAMES.len(), files.len());
    for (name, file) in files {
        let fixture = read_fixture(file);
        assert_eq!(builtin(name), Some(fixture.as_str()), "{name}");
    }
    assert_eq!(builtin("nope"), None);
}

#[test]
fn raised_errors_carry_the_message_and_line() {
    let source = read_fixture("mistral-7b-instruct-v0.3.jinja");
    let template =
        ChatTemplate::named("mistral.jinja", &source, &SpecialTokens::default()).unwrap();
    let messages: Vec<Value> = serde_json::from_str(
        r#"[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]"#,
    )
    .unwrap();
    let err = template.render(&messages, false).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, TemplateError::Raised { line: 18, .. }),
        "{text}"
    );
    assert_eq!(
        text,
        "mistral.jinja line 18: the template raised: After the optional system message, \
         conversation roles must alternate user/assistant/user/assistant/..."
    );
}
