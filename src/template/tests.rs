use super::*;
use serde_json::json;

fn render(source: &str, messages: Json) -> Result<Rendered, TemplateError> {
    let messages = messages.as_array().cloned().unwrap_or_default();
    ChatTemplate::new(source, &SpecialTokens::default())?.render(&messages, false)
}

#[test]
fn strftime_now_renders_today() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let today = python::strftime(
        "%d %b %Y",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    let out = render("{{ strftime_now('%d %b %Y') }}", json!([])).unwrap();
    assert_eq!(out.text, today);
}

#[test]
fn generation_tags_are_rewritten_outside_raw_blocks_and_strings() {
    let (out, found) = rewrite_generation_tags(
        "{%- generation +%}a{%endgeneration-%}{{ '{% generation %}' }}{% raw %}{% generation %}{% endraw %}{# {% generation %} #}",
    );
    assert!(found);
    assert_eq!(
        out,
        "{%- filter __ftui_generation +%}a{%endfilter-%}{{ '{% generation %}' }}{% raw %}{% generation %}{% endraw %}{# {% generation %} #}"
    );
    assert!(!rewrite_generation_tags("{% if generation %}{{ \"}}\" }}{% endif %}").1);
    let (out, found) =
        rewrite_generation_tags("{% if ü %}é{% generation %}ü{{ 'ö}}😀' }}{% endgeneration %}ä{");
    assert!(found);
    assert_eq!(
        out,
        "{% if ü %}é{% filter __ftui_generation %}ü{{ 'ö}}😀' }}{% endfilter %}ä{"
    );
}

#[test]
fn spans_are_byte_offsets() {
    let out = render(
        "{% for m in messages %}{{ m.role }}:{% generation %}{{ m.content }}{% endgeneration %};{% endfor %}",
        json!([{"role": "user", "content": "é"}, {"role": "assistant", "content": "😀!"}]),
    )
    .unwrap();
    assert_eq!(out.text, "user:é;assistant:😀!;");
    assert_eq!(out.assistant_spans, vec![(5, 7), (18, 23)]);
    assert_eq!(out.assistant_texts().collect::<Vec<_>>(), ["é", "😀!"]);
    assert_eq!(out.assistant_char_spans(), vec![(5, 6), (17, 19)]);
}

#[test]
fn marks_avoid_characters_in_the_input() {
    let out = render(
        "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
        json!([{"role": "assistant", "content": "\u{E000}\u{E001}x"}]),
    )
    .unwrap();
    assert_eq!(out.text, "\u{E000}\u{E001}x");
    assert_eq!(out.assistant_spans, vec![(0, 7)]);
}

#[test]
fn raise_exception_is_its_own_error() {
    let err = render(
        "line one\n{{ raise_exception('Roles must alternate!') }}",
        json!([]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, TemplateError::Raised { message, line: 2, .. } if message == "Roles must alternate!"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "chat template line 2: the template raised: Roles must alternate!"
    );
}

#[test]
fn syntax_errors_name_the_template_and_line() {
    let err =
        ChatTemplate::named("tpl.jinja", "ok\n{% if %}", &SpecialTokens::default()).unwrap_err();
    assert!(
        matches!(err, TemplateError::Syntax { line: 2, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.starts_with("tpl.jinja line 2: "), "{text}");
    assert!(!text.contains('\n'));
}

#[test]
fn inputs_are_checked() {
    let template = ChatTemplate::new("{{ messages | length }}", &SpecialTokens::default()).unwrap();
    assert!(matches!(
        template.render(&[json!("not an object")], false),
        Err(TemplateError::Input(_))
    ));
    let kwargs = json!({"messages": []});
    let request = RenderRequest {
        kwargs: kwargs.as_object(),
        ..RenderRequest::default()
    };
    assert!(matches!(
        template.render_with(&request),
        Err(TemplateError::Input(_))
    ));
}

#[test]
fn special_tokens_and_kwargs_reach_the_template() {
    let special = SpecialTokens {
        bos: Some("<s>".into()),
        eos: Some("</s>".into()),
        ..SpecialTokens::default()
    };
    let template = ChatTemplate::new(
        "{{ bos_token }}{{ eos_token }}{{ pad_token is defined }}{{ date_string }}",
        &special,
    )
    .unwrap();
    let kwargs = json!({"date_string": "1 Jan 2025", "eos_token": "<eos>"});
    let out = template
        .render_with(&RenderRequest {
            kwargs: kwargs.as_object(),
            ..RenderRequest::default()
        })
        .unwrap();
    assert_eq!(out.text, "<s><eos>False1 Jan 2025");
}

#[test]
fn tokenizer_config_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "bos_token": {"content": "<s>", "lstrip": false, "__type": "AddedToken"},
        "eos_token": "</s>",
        "pad_token": null,
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "{{ bos_token }}default"}
        ]
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.path().join("special_tokens_map.json"),
        json!({"unk_token": "<unk>", "eos_token": "ignored"}).to_string(),
    )
    .unwrap();
    let source = from_tokenizer_config(dir.path()).unwrap().unwrap();
    assert_eq!(source, "{{ bos_token }}default");
    let special = special_tokens_from_config(dir.path()).unwrap();
    let expected = SpecialTokens {
        bos: Some("<s>".into()),
        eos: Some("</s>".into()),
        pad: None,
        unk: Some("<unk>".into()),
    };
    assert_eq!(special, expected);
    let rendered = ChatTemplate::new(&source, &special)
        .unwrap()
        .render(&[], false)
        .unwrap();
    assert_eq!(rendered.text, "<s>default");

    std::fs::write(dir.path().join("chat_template.jinja"), "from jinja").unwrap();
    let source = from_tokenizer_config(dir.path()).unwrap();
    assert_eq!(source.as_deref(), Some("from jinja"));
}

#[test]
fn tokenizer_config_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer_config.json");
    std::fs::write(
        &path,
        r#"{"chat_template": [{"name": "rag", "template": "x"}]}"#,
    )
    .unwrap();
    let err = from_tokenizer_config(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer_config.json: "), "{err}");
    assert!(err.contains("rag"), "{err}");
    std::fs::write(&path, "{not json").unwrap();
    let err = from_tokenizer_config(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer_config.json: "), "{err}");
    let err = special_tokens_from_config(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokenizer_config.json: "), "{err}");

    let empty = tempfile::tempdir().unwrap();
    assert_eq!(from_tokenizer_config(empty.path()).unwrap(), None);
    assert_eq!(
        special_tokens_from_config(empty.path()).unwrap(),
        SpecialTokens::default()
    );
}
