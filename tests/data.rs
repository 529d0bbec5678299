//! Datasets from files and from the hub, against what Hugging Face `datasets` reads
//! from the same files (`tests/fixtures/data/expected.json`, written by
//! `tools/make_data_fixtures.py`), and the book's chapter-0 data preparation on
//! `sample-data/yoda_sentences.jsonl`.

mod common;

use common::{Env, FakeHub, RepoType};
use ftui::config::{DataConfig, DataFormat, OnBadRecord};
use ftui::data::{load_dataset, read_records, split, Dataset, Example, RawData};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn fixture(name: &str) -> String {
    fixtures().join(name).to_string_lossy().into_owned()
}

fn yoda_file() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample-data/yoda_sentences.jsonl")
        .to_string_lossy()
        .into_owned()
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

/// A `[data]` table for `source` with extra TOML lines.
fn cfg(source: &str, extra: &str) -> DataConfig {
    let text = format!("source = {}\n{extra}", toml_string(source));
    toml::from_str(&text).expect("a [data] table")
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string")
}

const BOOK_RENAME: &str = "columns = { sentence = \"prompt\", translation_extra = \"completion\" }";

fn load(cfg: &DataConfig) -> Result<Dataset, String> {
    load_dataset(cfg, &mut |_, _, _| {}).map_err(|e| e.to_string())
}

fn raw(cfg: &DataConfig) -> RawData {
    read_records(cfg, &mut |_, _, _| {}).expect("reads")
}

fn rows(raw: &RawData) -> Vec<Value> {
    raw.records
        .iter()
        .map(|r| Value::Object(r.row.clone()))
        .collect()
}

fn user(c: &str) -> Value {
    json!({"role": "user", "content": c})
}
fn assistant(c: &str) -> Value {
    json!({"role": "assistant", "content": c})
}
fn system(c: &str) -> Value {
    json!({"role": "system", "content": c})
}

#[test]
fn rows_match_datasets() {
    let expected = expected();
    let files = expected["files"].as_object().expect("files");
    let mut compared = 0;
    for (name, want) in files {
        let Some(want_rows) = want.get("rows") else {
            continue;
        };
        let data = raw(&cfg(&fixture(name), ""));
        let got_columns: Vec<Value> = data.columns.iter().map(|c| json!(c)).collect();
        assert_eq!(
            &Value::Array(got_columns),
            &want["columns"],
            "{name}: columns"
        );
        assert_eq!(&Value::Array(rows(&data)), want_rows, "{name}: rows");
        assert_eq!(data.total_records, data.records.len(), "{name}");
        assert!(data.skipped.is_empty(), "{name}");
        compared += 1;
    }
    // jsonl, json, csv, three parquet codecs, two hub-layout parquet files.
    assert_eq!(compared, 8);
}

#[test]
fn broken_jsonl_fails_at_its_line_or_is_skipped() {
    let expected = expected();
    assert!(
        expected["files"]["broken.jsonl"]["error"].is_string(),
        "datasets refuses the file too"
    );
    let path = fixture("broken.jsonl");
    let e = load(&cfg(&path, "")).expect_err("fails");
    assert_eq!(
        e,
        format!("{path}:3: not valid JSON: EOF while parsing a value at column 33")
    );
    let d = load(&cfg(&path, "on_bad_record = \"skip\"")).expect("skips");
    assert_eq!(d.skipped.len(), 1);
    assert_eq!(d.skipped[0].line, 3);
    assert_eq!(d.skipped[0].file, path);
    assert_eq!(d.total_records, 5);
    assert_eq!(d.format, DataFormat::PromptCompletion);
    let prompts: Vec<Value> = d
        .train
        .iter()
        .map(|e| match e {
            Example::PromptCompletion { prompt, .. } => prompt[0]["content"].clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        prompts,
        vec![json!("one"), json!("two"), json!("four"), json!("five")]
    );
}

#[test]
fn csv_with_wrong_field_counts() {
    let expected = expected();
    let error = expected["files"]["bad_fields.csv"]["error"]
        .as_str()
        .expect("datasets refuses it");
    assert!(error.contains("line 3"), "{error}");
    let path = fixture("bad_fields.csv");
    let e = load(&cfg(&path, "")).expect_err("fails");
    assert_eq!(
        e,
        format!("{path}:3: 3 fields, but the header has 2 (prompt, completion)")
    );
    let d = load(&cfg(&path, "on_bad_record = \"skip\"")).expect("skips");
    let skipped: Vec<usize> = d.skipped.iter().map(|b| b.line).collect();
    assert_eq!(
        skipped,
        vec![3, 6],
        "the second bad row starts after a quoted newline"
    );
    assert_eq!(d.total_records, 5);
    assert_eq!(
        d.train[1],
        Example::PromptCompletion {
            prompt: vec![user("multi\nline")],
            completion: vec![assistant("f")]
        }
    );
}

#[test]
fn formats_of_the_fixture_files() {
    let d = load(&cfg(&fixture("chat.parquet"), "")).expect("parquet");
    assert_eq!(d.format, DataFormat::Messages);
    assert_eq!(
        d.columns,
        ["id", "messages", "score", "weight", "ok", "tags", "meta"]
    );
    let expected = expected();
    let want: Vec<Example> = expected["files"]["chat.parquet"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| Example::Messages(r["messages"].as_array().expect("messages").clone()))
        .collect();
    assert_eq!(d.train, want);
    let jsonl = load(&cfg(&fixture("chat.jsonl"), "")).expect("jsonl");
    assert_eq!(jsonl.train, want, "the same conversations as JSON Lines");

    let d = load(&cfg(&fixture("quoted.csv"), "")).expect("csv");
    assert_eq!(d.format, DataFormat::PromptCompletion);
    assert_eq!(
        d.train[2],
        Example::PromptCompletion {
            prompt: vec![user("first line\nsecond line")],
            completion: vec![assistant("ends with a newline\n")]
        }
    );
    let d = load(&cfg(&fixture("records.json"), "")).expect("json");
    assert_eq!(d.format, DataFormat::Text);
    assert_eq!(d.train[2], Example::Text("Plain text, no template.".into()));

    // Columns that fit no format: the error lists them and says what is expected.
    let train = fixture("hub/data/train-00000-of-00001.parquet");
    let e = load(&cfg(&train, "")).expect_err("no format");
    assert_eq!(
        e,
        format!("{train}: cannot tell the format from the columns (found: sentence, translation, translation_extra); expected a `messages` column (conversations), `prompt` and `completion` columns, or a `text` column: rename columns with [data] columns, or write a [data] formatting_template")
    );
    let e = load(&cfg(&train, "format = \"messages\"")).expect_err("no messages column");
    assert!(e.contains("format = \"messages\" needs `messages`"), "{e}");
    let e = load(&cfg(&fixture("chat.parquet"), "format = \"text\"")).expect_err("no text");
    assert!(e.contains("needs `text` (found: id, messages,"), "{e}");
}

#[test]
fn messages_errors_name_the_row_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chat.jsonl");
    std::fs::write(
        &path,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}, {\"role\": \"user\", \"content\": 7}]}\n",
    )
    .expect("write");
    let path = path.to_string_lossy().into_owned();
    let e = load(&cfg(&path, "")).expect_err("bad content");
    assert_eq!(
        e,
        format!("{path}:2: field `messages[2].content`: expected a string or a list of content parts, got a number")
    );
}

#[test]
fn the_books_yoda_preparation() {
    let expected = expected();
    let yoda = &expected["yoda"];
    let c = cfg(&yoda_file(), BOOK_RENAME);
    let data = raw(&c);
    assert_eq!(
        data.records.len() as u64,
        yoda["num_rows"].as_u64().expect("n")
    );
    assert_eq!(
        json!(data.columns),
        yoda["columns"],
        "the same columns, in the same order, after the rename"
    );
    for (i, row) in yoda["picks"].as_object().expect("picks") {
        let i: usize = i.parse().expect("index");
        assert_eq!(&Value::Object(data.records[i].row.clone()), row, "row {i}");
    }

    let system_prompt = "You translate English into Yoda-speak.";
    let c = cfg(
        &yoda_file(),
        &format!(
            "{BOOK_RENAME}\nformat = \"prompt_completion\"\nsystem_prompt = {}",
            toml_string(system_prompt)
        ),
    );
    let d = load(&c).expect("loads");
    assert_eq!(d.format, DataFormat::PromptCompletion);
    assert_eq!(d.train.len(), 700);
    assert!(d.eval.is_empty());
    for (i, row) in yoda["picks"].as_object().expect("picks") {
        let i: usize = i.parse().expect("index");
        let p = row["prompt"].as_str().expect("prompt");
        let c = row["completion"].as_str().expect("completion");
        assert_eq!(
            d.train[i],
            Example::PromptCompletion {
                prompt: vec![system(system_prompt), user(p)],
                completion: vec![assistant(c)]
            },
            "example {i} keeps file order with no eval split"
        );
    }
}

#[test]
fn formatting_template_both_ways() {
    // Text: the book's "bring your own formatted data".
    let c = cfg(
        &yoda_file(),
        "formatting_template = \"\"\"\n### English: {{ sentence }}\n### Yoda: {{ translation }}\n\"\"\"",
    );
    let d = load(&c).expect("text");
    assert_eq!(d.format, DataFormat::Text);
    assert_eq!(
        d.train[1],
        Example::Text("### English: You are carrying the wounded pilot soon.\n### Yoda: Carrying the wounded pilot soon, you are.".into())
    );
    // Messages: the book's `format_dataset` written as a template.
    let c = cfg(
        &yoda_file(),
        r#"formatting_template = '''
[
  {"role": "user", "content": {{ sentence | tojson }}},
  {"role": "assistant", "content": {{ translation_extra | tojson }}}
]
'''"#,
    );
    let d = load(&c).expect("messages");
    assert_eq!(d.format, DataFormat::Messages);
    let renamed = load(&cfg(&yoda_file(), BOOK_RENAME)).expect("renamed");
    let as_messages: Vec<Example> = renamed
        .train
        .iter()
        .map(|e| Example::Messages(e.conversation().expect("a conversation")))
        .collect();
    assert_eq!(
        d.train, as_messages,
        "template and rename give the same conversations"
    );
}

#[test]
fn split_is_reproducible_and_sized_like_datasets() {
    let expected = expected();
    for case in expected["train_test_split"].as_array().expect("cases") {
        let n = case["n"].as_u64().expect("n") as usize;
        let ratio = case["ratio"].as_f64().expect("ratio");
        let examples: Vec<Example> = (0..n).map(|i| Example::Text(i.to_string())).collect();
        let (train, eval) = split(examples, ratio, 0).expect("splits");
        assert_eq!(
            (train.len() as u64, eval.len() as u64),
            (
                case["train"].as_u64().expect("train"),
                case["test"].as_u64().expect("test")
            ),
            "n = {n}, ratio = {ratio}"
        );
    }

    let with =
        |extra: &str| load(&cfg(&yoda_file(), &format!("{BOOK_RENAME}\n{extra}"))).expect("loads");
    let a = with("eval_split_ratio = 0.1\nseed = 42");
    assert_eq!((a.train.len(), a.eval.len()), (630, 70));
    let b = with("eval_split_ratio = 0.1\nseed = 42");
    assert_eq!(
        (&a.train, &a.eval),
        (&b.train, &b.eval),
        "same seed, same split"
    );
    let c = with("eval_split_ratio = 0.1\nseed = 43");
    assert_ne!(a.eval, c.eval, "another seed, another split");
    let all = with("");
    assert_ne!(a.train[..10], all.train[..10], "the split shuffles");
    let mut together: Vec<String> = a
        .train
        .iter()
        .chain(&a.eval)
        .map(|e| format!("{e:?}"))
        .collect();
    let mut original: Vec<String> = all.train.iter().map(|e| format!("{e:?}")).collect();
    together.sort();
    original.sort();
    assert_eq!(together, original, "train and eval partition the data");
}

#[test]
fn missing_files_and_folders() {
    let path = fixture("nope.jsonl");
    assert_eq!(
        load(&cfg(&path, "")).expect_err("missing"),
        format!("{path}: not found: expected a .jsonl, .json, .csv or .parquet file, or a hub dataset id like owner/name")
    );
    // A local folder is read like a hub repo: the split's files.
    let dir = fixture("hub");
    let d = load(&cfg(&dir, &format!("{BOOK_RENAME}\nsplit = \"test\""))).expect("test split");
    assert_eq!(d.train.len(), 4);
    let e = load(&cfg(&dir, "split = \"validation\"")).expect_err("no such split");
    assert!(
        e.contains("no data files for split `validation` (splits found: test, train)"),
        "{e}"
    );
}

#[test]
fn progress_reports_each_file() {
    let path = fixture("records.json");
    let size = std::fs::metadata(&path).expect("size").len();
    let mut reports = Vec::new();
    load_dataset(&cfg(&path, ""), &mut |f, done, total| {
        reports.push((f.to_string(), done, total))
    })
    .expect("loads");
    assert_eq!(reports.first(), Some(&(path.clone(), 0, size)));
    assert_eq!(reports.last(), Some(&(path, size, size)));
}

const DATASET: &str = "test-org/yoda_sentences";
const COMMIT: &str = "3333333333333333333333333333333333333333";

fn hub_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = ["train", "test"]
        .iter()
        .map(|split| {
            let name = format!("data/{split}-00000-of-00001.parquet");
            let bytes = std::fs::read(fixtures().join("hub").join(&name)).expect("fixture");
            (name, bytes)
        })
        .collect();
    files.push((
        ".gitattributes".into(),
        b"*.parquet filter=lfs diff=lfs merge=lfs -text\n".to_vec(),
    ));
    files.push((
        "README.md".into(),
        b"---\nlicense: mit\n---\n# yoda\n".to_vec(),
    ));
    files
}

#[test]
fn hub_dataset_download_cache_and_offline() {
    let env = Env::clean();
    let hub = FakeHub::start();
    hub.publish(RepoType::Dataset, DATASET, COMMIT, hub_files());
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("hub-cache");
    env.set("HF_ENDPOINT", hub.endpoint());
    env.set("HF_HOME", tmp.path().join("hf-home"));
    env.set("HF_HUB_CACHE", &cache);
    let expected = expected();
    let want_rows = &expected["files"]["hub/data/train-00000-of-00001.parquet"]["rows"];

    // Online: only the split's file is fetched, into the hub cache's dataset layout.
    let c = cfg(DATASET, BOOK_RENAME);
    let mut reports = Vec::new();
    let data = read_records(&c, &mut |f, done, total| {
        reports.push((f.to_string(), done, total))
    })
    .expect("reads from the hub");
    let file = "data/train-00000-of-00001.parquet";
    assert_eq!(data.files, vec![format!("{DATASET}/{file}")]);
    let renamed: Vec<Value> = want_rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            json!({"prompt": r["sentence"], "translation": r["translation"], "completion": r["translation_extra"]})
        })
        .collect();
    assert_eq!(rows(&data), renamed, "the rows datasets reads, renamed");
    let snapshot = cache
        .join("datasets--test-org--yoda_sentences/snapshots")
        .join(COMMIT);
    assert!(snapshot.join(file).exists());
    for other in [
        "data/test-00000-of-00001.parquet",
        "README.md",
        ".gitattributes",
    ] {
        assert!(
            !snapshot.join(other).exists(),
            "{other} should not be fetched"
        );
    }
    let size = hub_files()[0].1.len() as u64;
    assert!(
        reports.contains(&(file.to_string(), size, size)),
        "download progress: {reports:?}"
    );
    let log = hub.take_log();
    assert!(
        log.iter()
            .any(|r| r.path == format!("/api/datasets/{DATASET}/revision/main")),
        "{log:#?}"
    );
    assert!(log.iter().all(|r| !r.path.contains("test-000")), "{log:#?}");

    let d = load(&cfg(
        DATASET,
        &format!("{BOOK_RENAME}\neval_split_ratio = 0.25"),
    ))
    .expect("loads");
    assert_eq!(
        (d.train.len(), d.eval.len(), d.source.as_str()),
        (12, 4, DATASET)
    );

    // A bad record in a hub file is named by repo, file and row.
    let e = load(&cfg(DATASET, "columns = { sentence = \"messages\" }")).expect_err("not messages");
    assert_eq!(
        e,
        format!(
            "{DATASET}/{file}: row 0: field `messages`: expected a list of messages, got a string"
        )
    );

    // Offline: from the cache, with no request at all.
    hub.take_log();
    env.set("HF_HUB_OFFLINE", "1");
    let d = load(&cfg(DATASET, BOOK_RENAME)).expect("offline");
    assert_eq!(d.train.len(), 16);
    assert!(hub.take_log().is_empty(), "offline mode contacted the hub");
    let e =
        load(&cfg(DATASET, &format!("{BOOK_RENAME}\nsplit = \"test\""))).expect_err("not cached");
    assert!(e.contains(DATASET) && e.contains("HF_HUB_OFFLINE"), "{e}");
    env.unset("HF_HUB_OFFLINE");

    // Online again, the other split; then a split the repo lacks, and a missing repo.
    let d = load(&cfg(DATASET, &format!("{BOOK_RENAME}\nsplit = \"test\""))).expect("test split");
    assert_eq!(d.train.len(), 4);
    let e = load(&cfg(DATASET, "split = \"validation\"")).expect_err("no split");
    assert_eq!(
        e,
        format!("{DATASET}: no data files for split `validation` (splits found: test, train)")
    );
    let e = load(&cfg("test-org/nothing-here", "")).expect_err("no repo");
    assert!(
        e.contains("test-org/nothing-here") && e.contains("not found"),
        "{e}"
    );
    drop(env);
}

#[test]
fn hub_multi_config_datasets() {
    let env = Env::clean();
    let hub = FakeHub::start();
    let train = hub_files().swap_remove(0).1;
    hub.publish(
        RepoType::Dataset,
        "test-org/multi",
        COMMIT,
        vec![
            ("main/train-00000-of-00001.parquet", train.clone()),
            ("socratic/train-00000-of-00001.parquet", train),
        ],
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    env.set("HF_ENDPOINT", hub.endpoint());
    env.set("HF_HUB_CACHE", tmp.path());
    let e = load(&cfg("test-org/multi", BOOK_RENAME)).expect_err("ambiguous");
    assert!(e.contains("several folders (main, socratic)"), "{e}");
    let d = load(&cfg(
        &format!("test-org/multi:socratic@{COMMIT}"),
        BOOK_RENAME,
    ))
    .expect("one config");
    assert_eq!(d.train.len(), 16);
    drop(env);
}

#[test]
fn skip_counts_every_bad_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mixed.jsonl");
    std::fs::write(
        &path,
        "{\"text\": \"a\"}\n{\"text\": 1}\nnot json\n\n{\"text\": \"b\"}\n",
    )
    .expect("write");
    let path = path.to_string_lossy().into_owned();
    let d = load(&cfg(&path, "on_bad_record = \"skip\"")).expect("skips");
    assert_eq!(
        d.train,
        vec![Example::Text("a".into()), Example::Text("b".into())]
    );
    assert_eq!(d.total_records, 4);
    let skipped: Vec<String> = d.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(
        skipped,
        vec![
            format!("{path}:2: field `text`: expected a string, got a number"),
            format!("{path}:3: not valid JSON: expected ident at column 2"),
        ]
    );
    // `fail` stops while reading, at the syntax error; field checks come after.
    let mut c = cfg(&path, "");
    c.on_bad_record = OnBadRecord::Fail;
    assert_eq!(
        load(&c).expect_err("fails"),
        format!("{path}:3: not valid JSON: expected ident at column 2")
    );
}
