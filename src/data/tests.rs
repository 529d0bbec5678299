//! Unit tests of the rules that turn records into examples, and of the split.

use super::*;
use serde_json::json;

fn cfg(toml_text: &str) -> DataConfig {
    toml::from_str(&format!("source = \"mem.jsonl\"\n{toml_text}")).expect("a [data] table")
}

/// Loads in-memory rows (lines 1, 2, ... of `mem.jsonl`) as `load_dataset` would.
fn load(cfg: &DataConfig, rows: Value) -> Result<Dataset, DataError> {
    let records: Vec<Record> = rows
        .as_array()
        .expect("a list of rows")
        .iter()
        .enumerate()
        .map(|(i, row)| Record {
            file: 0,
            line: i + 1,
            row: row.as_object().expect("an object").clone(),
        })
        .collect();
    let total_records = records.len();
    let (columns, records) = rename_columns(&cfg.columns, records)?;
    let raw = RawData {
        source: cfg.source.clone(),
        files: vec!["mem.jsonl".into()],
        columns,
        records,
        skipped: Vec::new(),
        total_records,
    };
    to_examples(cfg, raw)
}

fn err(r: Result<Dataset, DataError>) -> String {
    match r {
        Ok(d) => panic!("expected an error, got {d:?}"),
        Err(e) => e.to_string(),
    }
}

fn user(content: &str) -> Value {
    json!({"role": "user", "content": content})
}
fn assistant(content: &str) -> Value {
    json!({"role": "assistant", "content": content})
}
fn system(content: &str) -> Value {
    json!({"role": "system", "content": content})
}

#[test]
fn formats_are_detected_from_the_columns() {
    let d = load(&cfg(""), json!([{"messages": [user("hi")], "id": 1}])).expect("messages");
    assert_eq!(d.format, DataFormat::Messages);
    assert_eq!(d.columns, ["messages", "id"]);
    let d = load(&cfg(""), json!([{"prompt": "p", "completion": "c"}])).expect("p/c");
    assert_eq!(d.format, DataFormat::PromptCompletion);
    let d = load(&cfg(""), json!([{"text": "t", "prompt": "p"}])).expect("text");
    assert_eq!(d.train, vec![Example::Text("t".into())]);
    let e = err(load(
        &cfg(""),
        json!([{"sentence": "s", "translation": "t"}]),
    ));
    assert_eq!(
        e,
        "mem.jsonl: cannot tell the format from the columns (found: sentence, translation); expected a `messages` column (conversations), `prompt` and `completion` columns, or a `text` column: rename columns with [data] columns, or write a [data] formatting_template"
    );
    let e = err(load(
        &cfg("format = \"prompt_completion\""),
        json!([{"prompt": "p", "answer": "a"}]),
    ));
    assert!(
        e.starts_with("mem.jsonl: format = \"prompt_completion\" needs `prompt` and `completion` (found: prompt, answer)"),
        "{e}"
    );
}

#[test]
fn renames_come_first_and_are_checked() {
    let c = cfg("columns = { sentence = \"prompt\", translation_extra = \"completion\" }");
    let d = load(
        &c,
        json!([{"sentence": "s", "translation": "t", "translation_extra": "te"}]),
    )
    .expect("renamed");
    assert_eq!(d.columns, ["prompt", "translation", "completion"]);
    assert_eq!(
        d.train,
        vec![Example::PromptCompletion {
            prompt: vec![user("s")],
            completion: vec![assistant("te")]
        }]
    );
    let e = err(load(
        &cfg("columns = { sentense = \"prompt\" }"),
        json!([{"sentence": "s"}]),
    ));
    assert_eq!(
        e,
        "[data] columns: `sentense` is not a column of the data (columns: sentence)"
    );
    let e = err(load(
        &cfg("columns = { a = \"text\" }"),
        json!([{"a": "x", "text": "y"}]),
    ));
    assert!(e.contains("two columns named `text`"), "{e}");
    // Swapping two names is fine.
    let d = load(
        &cfg("columns = { prompt = \"completion\", completion = \"prompt\" }"),
        json!([{"prompt": "c", "completion": "p"}]),
    )
    .expect("swap");
    assert_eq!(d.columns, ["completion", "prompt"]);
}

#[test]
fn rows_get_every_column() {
    let c = cfg("on_bad_record = \"skip\"");
    let d = load(
        &c,
        json!([{"prompt": "a", "completion": "b"}, {"completion": "d", "prompt": "c", "x": 1}, {"prompt": "e"}]),
    )
    .expect("loads");
    assert_eq!(d.columns, ["prompt", "completion", "x"]);
    assert_eq!(d.train.len(), 2);
    assert_eq!(d.total_records, 3);
    assert_eq!(d.skipped.len(), 1);
    assert_eq!(
        d.skipped[0].to_string(),
        "mem.jsonl:3: field `completion`: missing"
    );
}

#[test]
fn messages_are_checked_field_by_field() {
    let c = cfg("");
    let one = |messages: Value| load(&c, json!([{ "messages": messages }]));
    assert_eq!(
        err(one(json!([user("a"), assistant("b"), {"role": "user", "content": 3}]))),
        "mem.jsonl:1: field `messages[2].content`: expected a string or a list of content parts, got a number"
    );
    assert_eq!(
        err(one(json!([{"role": "human", "content": "a"}]))),
        "mem.jsonl:1: field `messages[0].role`: `human` is not one of system, user, assistant, tool"
    );
    assert_eq!(
        err(one(json!([{"content": "a"}]))),
        "mem.jsonl:1: field `messages[0].role`: missing"
    );
    assert!(err(one(json!([{"from": "human", "value": "a"}]))).contains("ShareGPT"));
    assert_eq!(
        err(one(json!("[{\"role\": \"user\"}]"))),
        "mem.jsonl:1: field `messages`: expected a list of messages, got a string"
    );
    assert_eq!(
        err(one(json!([]))),
        "mem.jsonl:1: field `messages`: no messages"
    );
    assert_eq!(
        err(one(
            json!([{"role": "user", "content": [{"type": "text", "text": 1}]}])
        )),
        "mem.jsonl:1: field `messages[0].content[0].text`: expected a string, got a number"
    );
    // Content parts, tool calls and extra keys pass through untouched.
    let conversation = json!([
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image"}]},
        {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}]},
        {"role": "tool", "content": "42", "name": "f"},
        assistant("done")
    ]);
    let d = one(conversation.clone()).expect("valid");
    assert_eq!(
        d.train,
        vec![Example::Messages(
            conversation.as_array().expect("list").clone()
        )]
    );
    assert_eq!(
        err(one(json!([{"role": "assistant", "content": null}]))),
        "mem.jsonl:1: field `messages[0].content`: missing"
    );
}

#[test]
fn prompt_and_completion_take_strings_or_messages() {
    let c = cfg("system_prompt = \"Talk like Yoda.\"");
    let d = load(
        &c,
        json!([
            {"prompt": "p", "completion": "c"},
            {"prompt": [system("Be brief."), user("q")], "completion": [assistant("a")]},
            {"prompt": [user("q2")], "completion": "a2"}
        ]),
    )
    .expect("loads");
    assert_eq!(
        d.train,
        vec![
            Example::PromptCompletion {
                prompt: vec![system("Talk like Yoda."), user("p")],
                completion: vec![assistant("c")]
            },
            Example::PromptCompletion {
                prompt: vec![system("Be brief."), user("q")],
                completion: vec![assistant("a")]
            },
            Example::PromptCompletion {
                prompt: vec![system("Talk like Yoda."), user("q2")],
                completion: vec![assistant("a2")]
            },
        ]
    );
    assert_eq!(
        d.train[0].conversation(),
        Some(vec![system("Talk like Yoda."), user("p"), assistant("c")])
    );
    assert_eq!(
        err(load(&cfg(""), json!([{"prompt": 1, "completion": "c"}]))),
        "mem.jsonl:1: field `prompt`: expected a string or a list of messages, got a number"
    );
    assert_eq!(
        err(load(&cfg(""), json!([{"prompt": "p", "completion": [{"role": "bot", "content": "x"}]}]))),
        "mem.jsonl:1: field `completion[0].role`: `bot` is not one of system, user, assistant, tool"
    );
    let d = load(&c, json!([{"messages": [user("u"), assistant("a")]}])).expect("messages");
    assert_eq!(
        d.train,
        vec![Example::Messages(vec![
            system("Talk like Yoda."),
            user("u"),
            assistant("a")
        ])]
    );
    let e = err(load(&c, json!([{"text": "t"}])));
    assert!(
        e.starts_with("[data] system_prompt: applies to messages"),
        "{e}"
    );
    assert_eq!(
        err(load(&cfg(""), json!([{"text": ["t"]}]))),
        "mem.jsonl:1: field `text`: expected a string, got a list"
    );
}

#[test]
fn formatting_template_gives_text_or_messages() {
    // Text, with transformers' whitespace rules and Python's None.
    let c = cfg(
        "formatting_template = \"\"\"\n{% if instruction %}\n### Instruction: {{ instruction }}\n{% endif %}\n### Answer: {{ output }} ({{ extra }})\n\"\"\"",
    );
    let d = load(
        &c,
        json!([{"instruction": "Add.", "output": "2", "extra": null}, {"instruction": "", "output": "3", "extra": true}]),
    )
    .expect("text");
    assert_eq!(d.format, DataFormat::Text);
    assert_eq!(
        d.train,
        vec![
            Example::Text("### Instruction: Add.\n### Answer: 2 (None)".into()),
            Example::Text("### Answer: 3 (True)".into()),
        ]
    );
    // Messages, from a JSON list the template writes.
    let c = cfg(
        "system_prompt = \"S\"\nformatting_template = '[{\"role\": \"user\", \"content\": {{ q|tojson }}}, {\"role\": \"assistant\", \"content\": {{ a|upper|tojson }}}]'",
    );
    let d = load(&c, json!([{"q": "say \"hi\"", "a": "<hi>"}])).expect("messages");
    assert_eq!(d.format, DataFormat::Messages);
    assert_eq!(
        d.train,
        vec![Example::Messages(vec![
            system("S"),
            user("say \"hi\""),
            assistant("<HI>")
        ])]
    );
    // The same template as prompt/completion: the trailing assistant turns complete.
    let mut pc = c.clone();
    pc.format = Some(DataFormat::PromptCompletion);
    let d = load(&pc, json!([{"q": "x", "a": "y"}])).expect("p/c");
    assert_eq!(
        d.train,
        vec![Example::PromptCompletion {
            prompt: vec![system("S"), user("x")],
            completion: vec![assistant("Y")]
        }]
    );
    // An explicit text format keeps the JSON as text.
    let mut text = c.clone();
    text.format = Some(DataFormat::Text);
    text.system_prompt = None;
    let d = load(&text, json!([{"q": "x", "a": "y"}])).expect("text");
    assert!(matches!(&d.train[0], Example::Text(t) if t.starts_with("[{\"role\"")));
}

#[test]
fn formatting_template_errors() {
    let e = err(load(
        &cfg("formatting_template = \"{{ a \""),
        json!([{"a": 1}]),
    ));
    assert!(
        e.starts_with("[data] formatting_template: line 1: syntax error"),
        "{e}"
    );
    // A misspelt column is an error, not an empty string.
    let e = err(load(
        &cfg("formatting_template = \"{{ promt }}\""),
        json!([{"prompt": "p"}]),
    ));
    assert!(
        e.starts_with("mem.jsonl:1: formatting_template: line 1: undefined value"),
        "{e}"
    );
    // Under an explicit messages format, text output is a bad record.
    let e = err(load(
        &cfg("format = \"messages\"\nformatting_template = \"{{ a }}\""),
        json!([{"a": "plain"}]),
    ));
    assert!(
        e.starts_with("mem.jsonl:1: formatting_template output is not a JSON list of messages (format = \"messages\")"),
        "{e}"
    );
    // Detected from the first record, then every record must agree.
    let c = cfg(
        "on_bad_record = \"skip\"\nformatting_template = \"{% if m %}[{\\\"role\\\": \\\"user\\\", \\\"content\\\": \\\"x\\\"}]{% else %}plain{% endif %}\"",
    );
    let d = load(&c, json!([{"m": true}, {"m": false}, {"m": true}])).expect("loads");
    assert_eq!(d.format, DataFormat::Messages);
    assert_eq!(d.train.len(), 2);
    assert_eq!(
        d.skipped[0].to_string(),
        "mem.jsonl:2: formatting_template gave text here, but messages for the first record"
    );
    let e = err(load(
        &cfg("format = \"prompt_completion\"\nformatting_template = '[{\"role\": \"user\", \"content\": \"x\"}]'"),
        json!([{"a": 1}]),
    ));
    assert!(e.contains("must end with assistant messages"), "{e}");
}

#[test]
fn nothing_to_train_on_is_an_error() {
    let e = err(load(&cfg(""), json!([])));
    assert_eq!(e, "mem.jsonl: cannot tell the format from the columns (found: none); expected a `messages` column (conversations), `prompt` and `completion` columns, or a `text` column: rename columns with [data] columns, or write a [data] formatting_template");
    let e = err(load(&cfg("format = \"text\""), json!([])));
    assert_eq!(e, "mem.jsonl: no examples: the data holds no records");
    let e = err(load(
        &cfg("format = \"text\"\non_bad_record = \"skip\""),
        json!([{"text": 1}, {"text": 2}]),
    ));
    assert_eq!(
        e,
        "mem.jsonl: no examples: all 2 records were skipped as malformed; the first: mem.jsonl:1: field `text`: expected a string, got a number"
    );
}

#[test]
fn splitmix64_matches_the_reference() {
    // Vigna's splitmix64.c from state 0.
    let mut rng = SplitMix64::new(0);
    assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    let mut rng = SplitMix64::new(42);
    assert_eq!(rng.next_u64(), 0xBDD7_3226_2FEB_6E95);
    for n in [1u64, 2, 3, 7, 1000, u64::MAX] {
        for _ in 0..100 {
            assert!(rng.below(n) < n);
        }
    }
}

fn texts(examples: &[Example]) -> Vec<String> {
    examples
        .iter()
        .map(|e| match e {
            Example::Text(t) => t.clone(),
            other => panic!("not text: {other:?}"),
        })
        .collect()
}

#[test]
fn split_is_reproducible_and_sized_like_datasets() {
    let examples: Vec<Example> = (0..20).map(|i| Example::Text(i.to_string())).collect();
    let (train, eval) = split(examples.clone(), 0.0, 1).expect("no split");
    assert_eq!(train, examples);
    assert!(eval.is_empty());

    let (train, eval) = split(examples.clone(), 0.1, 42).expect("split");
    assert_eq!((train.len(), eval.len()), (18, 2));
    let (train2, eval2) = split(examples.clone(), 0.1, 42).expect("split");
    assert_eq!((&train, &eval), (&train2, &eval2));
    let mut all = texts(&train);
    all.extend(texts(&eval));
    all.sort_by_key(|t| t.parse::<usize>().unwrap_or(0));
    assert_eq!(all, texts(&examples));
    let (train3, _) = split(examples.clone(), 0.1, 7).expect("split");
    assert_ne!(texts(&train), texts(&train3), "another seed, another order");

    assert_eq!(split(examples.clone(), 0.01, 0).expect("split").1.len(), 1);
    assert_eq!(split(examples.clone(), 0.5, 0).expect("split").1.len(), 10);
    let e = split(examples[..1].to_vec(), 0.5, 0).expect_err("nothing left");
    assert_eq!(
        e.to_string(),
        "[data] eval_split_ratio: 0.5 of 1 examples holds out 1 for evaluation and leaves none to train on"
    );

    let p = permutation(1000, 3);
    let mut sorted = p.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    assert_ne!(p, sorted);
}

#[test]
fn bad_record_display() {
    let b = BadRecord {
        file: "data/x.jsonl".into(),
        line: 3,
        field: None,
        message: "not valid JSON:\n  EOF".into(),
    };
    assert_eq!(b.to_string(), "data/x.jsonl:3: not valid JSON: EOF");
    let b = BadRecord {
        field: Some("text".into()),
        ..b
    };
    assert_eq!(
        b.to_string(),
        "data/x.jsonl:3: field `text`: not valid JSON: EOF"
    );
}

#[test]
fn missing_sources_say_what_was_expected() {
    let mut c = cfg("");
    for source in ["no/such/file.jsonl", "./nope", "/abs/nope", "nope"] {
        c.source = source.into();
        let e = load_dataset(&c, &mut |_, _, _| {}).expect_err("missing");
        assert_eq!(
            e.to_string(),
            format!("{source}: not found: expected a .jsonl, .json, .csv or .parquet file, or a hub dataset id like owner/name")
        );
    }
}
