//! The command-line contract: exit codes, one-line errors that name the file,
//! and `--json` documents with the promised keys.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ftui(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ftui"))
        .args(args)
        .env("FTUI_HOME", home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("runs ftui")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

fn fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(arch)
}

/// `ftui score --json` on `text` (plus `extra` arguments): the mean NLL.
fn mean_nll(home: &Path, model: &Path, text: &str, extra: &[&str]) -> f64 {
    let mut args = vec![
        "score",
        "--model",
        model.to_str().expect("utf8"),
        "--text",
        text,
        "--device",
        "cpu",
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = ftui(&args, home);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    v["mean_nll"].as_f64().expect("nll")
}

/// A copy of the llama fixture that a test may damage.
fn copy_fixture(dir: &Path) -> PathBuf {
    let dst = dir.join("model");
    std::fs::create_dir_all(&dst).expect("mkdir");
    for e in std::fs::read_dir(fixture("llama")).expect("fixture") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
    }
    dst
}

#[test]
fn doctor_json_has_every_key() {
    let home = tempfile::tempdir().expect("tmp");
    let o = ftui(&["doctor", "--json"], home.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    for key in [
        "ftui_version",
        "libtorch_version",
        "cuda_available",
        "cuda_device_count",
        "bf16_supported",
        "threads",
        "config_dir",
        "cache_dir",
        "data_dir",
        "hf_token_present",
        "hub_reachable",
        "default_model",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["libtorch_version"], "2.13.0");
    assert_eq!(
        v["hub_reachable"], false,
        "offline mode must not call the hub"
    );
    assert!(v["data_dir"]
        .as_str()
        .expect("str")
        .starts_with(home.path().to_str().expect("utf8")));
}

#[test]
fn doctor_never_prints_the_token() {
    let home = tempfile::tempdir().expect("tmp");
    let o = Command::new(env!("CARGO_BIN_EXE_ftui"))
        .args(["doctor", "--json"])
        .env("FTUI_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_TOKEN", "hf_secretvalue123")
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("hf_secretvalue123"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["hf_token_present"], true);
}

#[test]
fn broken_config_exits_2_naming_key_and_line() {
    let home = tempfile::tempdir().expect("tmp");
    let cfg = home.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[model]\nsource = \"default\"\n[lora]\nr = 8\nalpha = 16\n",
    )
    .expect("write");
    let o = ftui(&["--config", cfg.to_str().expect("utf8")], home.path());
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("bad.toml:5") && e.contains("alpha"), "{e}");

    std::fs::write(
        &cfg,
        "[model]\nsource = \"default\"\n[training]\nmax_length = \"long\"\n",
    )
    .expect("write");
    let o = ftui(&["--config", cfg.to_str().expect("utf8")], home.path());
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("bad.toml:4") && e.contains("max_length"), "{e}");
}

#[test]
fn truncated_safetensors_names_the_file() {
    let home = tempfile::tempdir().expect("tmp");
    let dir = copy_fixture(home.path());
    let w = dir.join("model.safetensors");
    let bytes = std::fs::read(&w).expect("read");
    std::fs::write(&w, &bytes[..bytes.len() / 2]).expect("truncate");
    let o = ftui(
        &[
            "score",
            "--model",
            dir.to_str().expect("utf8"),
            "--text",
            "hi",
            "--device",
            "cpu",
        ],
        home.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn unknown_model_type_names_config_json() {
    let home = tempfile::tempdir().expect("tmp");
    let dir = copy_fixture(home.path());
    let c = dir.join("config.json");
    let text = std::fs::read_to_string(&c)
        .expect("read")
        .replace("\"llama\"", "\"gemma3\"");
    std::fs::write(&c, text).expect("write");
    let o = ftui(
        &[
            "score",
            "--model",
            dir.to_str().expect("utf8"),
            "--text",
            "hi",
            "--device",
            "cpu",
        ],
        home.path(),
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(e.contains("config.json") && e.contains("gemma3"), "{e}");
}

#[test]
fn missing_tokenizer_names_tokenizer_json() {
    let home = tempfile::tempdir().expect("tmp");
    let dir = copy_fixture(home.path());
    std::fs::remove_file(dir.join("tokenizer.json")).expect("rm");
    let o = ftui(
        &[
            "score",
            "--model",
            dir.to_str().expect("utf8"),
            "--text",
            "hi",
            "--device",
            "cpu",
        ],
        home.path(),
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(e.contains("tokenizer.json"), "{e}");
}

#[test]
fn truncated_gguf_names_the_file() {
    let home = tempfile::tempdir().expect("tmp");
    let Some(model) = ftui::paths::default_model() else {
        panic!("{}", ftui::paths::default_model_missing());
    };
    // The header and metadata survive; the tensor data does not.
    let bytes = std::fs::read(&model).expect("read");
    let cut = home.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..4 << 20]).expect("write");
    let o = ftui(
        &[
            "score",
            "--model",
            cut.to_str().expect("utf8"),
            "--text",
            "hi",
            "--device",
            "cpu",
        ],
        home.path(),
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("cut.gguf"), "{e}");
}

#[test]
fn score_json_shape_on_fixture() {
    let home = tempfile::tempdir().expect("tmp");
    let dir = fixture("llama");
    let o = ftui(
        &[
            "score",
            "--model",
            dir.to_str().expect("utf8"),
            "--text",
            "Strong in you, the Force is.",
            "--device",
            "cpu",
            "--json",
        ],
        home.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let ids = v["token_ids"].as_array().expect("ids").len();
    let lps = v["logprobs"].as_array().expect("logprobs");
    assert_eq!(lps.len(), ids - 1);
    assert!(lps.iter().all(|x| x.as_f64().expect("f64") <= 0.0));
    let mean = -lps.iter().map(|x| x.as_f64().expect("f64")).sum::<f64>() / lps.len() as f64;
    assert!((mean - v["mean_nll"].as_f64().expect("nll")).abs() < 1e-4);
}

fn write_messages(dir: &Path, messages: serde_json::Value) -> PathBuf {
    let p = dir.join("messages.json");
    std::fs::write(&p, messages.to_string()).expect("write");
    p
}

fn golden_gguf() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_gguf.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

#[test]
fn generate_messages_on_the_default_model_answers_paris() {
    let home = tempfile::tempdir().expect("tmp");
    let g = golden_gguf();
    let msgs = write_messages(home.path(), g["chat"]["messages"].clone());
    let o = ftui(
        &[
            "generate",
            "--model",
            "default",
            "--device",
            "cpu",
            "--messages",
            msgs.to_str().expect("utf8"),
            "--max-new-tokens",
            "24",
            "--json",
        ],
        home.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert!(v["text"].as_str().expect("text").contains("Paris"), "{v}");
    assert_eq!(
        v["token_ids"], g["greedy"]["token_ids"],
        "greedy tokens differ from transformers"
    );
    assert!(v["tokens_per_second"].as_f64().expect("speed") > 0.0);
}

#[test]
fn template_json_matches_transformers_rendering() {
    let home = tempfile::tempdir().expect("tmp");
    let g = golden_gguf();
    let msgs = write_messages(home.path(), g["chat"]["messages"].clone());
    let o = ftui(
        &[
            "template",
            "--model",
            "default",
            "--messages",
            msgs.to_str().expect("utf8"),
            "--add-generation-prompt",
            "--json",
        ],
        home.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["text"], g["chat"]["text"]);
    assert_eq!(v["input_ids"], g["chat"]["input_ids"]);
    assert!(v["assistant_spans"].as_array().expect("spans").is_empty());
}

#[test]
fn template_builtin_and_bad_messages() {
    let home = tempfile::tempdir().expect("tmp");
    let msgs = write_messages(
        home.path(),
        serde_json::json!([{"role": "user", "content": "hi"}]),
    );
    let o = ftui(
        &[
            "template",
            "--model",
            "default",
            "--chat-template",
            "chatml",
            "--messages",
            msgs.to_str().expect("utf8"),
            "--json",
        ],
        home.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["text"], "<|im_start|>user\nhi<|im_end|>\n");
    let bad = home.path().join("bad.json");
    std::fs::write(&bad, "{\"role\": \"user\"}").expect("write");
    let o = ftui(
        &[
            "template",
            "--model",
            "default",
            "--messages",
            bad.to_str().expect("utf8"),
        ],
        home.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.json"), "{}", stderr(&o));
}

#[test]
fn launcher_explains_a_missing_engine_instead_of_a_loader_error() {
    let home = tempfile::tempdir().expect("tmp");
    let lonely = home.path().join("ftui");
    std::fs::copy(env!("CARGO_BIN_EXE_ftui"), &lonely).expect("copy launcher");
    let o = Command::new(&lonely).arg("doctor").output().expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("ftui-engine is missing") && e.contains("make build"),
        "{e}"
    );
}

#[test]
fn adapter_flag_changes_scores_and_bad_adapters_fail_cleanly() {
    let home = tempfile::tempdir().expect("tmp");
    let model = fixture("llama");
    let adapter = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora/peft-llama");
    let score = |extra: &[&str]| mean_nll(home.path(), &model, "Strong in you", extra);
    let base = score(&[]);
    let tuned = score(&["--adapter", adapter.to_str().expect("utf8")]);
    assert!(
        (base - tuned).abs() > 1e-3,
        "the adapter changed nothing: {base} vs {tuned}"
    );
    let o = ftui(
        &[
            "score",
            "--model",
            model.to_str().expect("utf8"),
            "--adapter",
            home.path().to_str().expect("utf8"),
            "--text",
            "x",
            "--device",
            "cpu",
        ],
        home.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("adapter_config.json"), "{}", stderr(&o));
}

#[test]
fn inspect_json_prints_one_batch_per_line_with_the_contract_keys() {
    let home = tempfile::tempdir().expect("tmp");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/ftui.toml");
    let o = ftui(
        &[
            "inspect",
            "--config",
            cfg.to_str().expect("utf8"),
            "--batches",
            "3",
            "--json",
        ],
        home.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object per line");
        let ids = v["input_ids"].as_array().expect("input_ids");
        let labels = v["labels"].as_array().expect("labels");
        assert_eq!(ids.len(), 8, "per_device_train_batch_size rows");
        assert_eq!(
            ids[0].as_array().expect("row").len(),
            labels[0].as_array().expect("row").len()
        );
        assert!(v["attention_mask"].is_array());
        assert!(v["position_ids"].is_null());
    }
}

#[test]
fn inspect_strict_and_broken_data_fail_with_the_cause() {
    let home = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = home.path().join("short.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nsource = \"default\"\n[data]\nsource = {:?}\nformat = \"prompt_completion\"\ncolumns = {{ sentence = \"prompt\", translation_extra = \"completion\" }}\n[training]\nmax_length = 40\n",
            root.join("sample-data/yoda_sentences.jsonl").display().to_string()
        ),
    )
    .expect("write");
    let o = ftui(
        &[
            "inspect",
            "--config",
            cfg.to_str().expect("utf8"),
            "--strict",
            "--json",
        ],
        home.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("truncated") && stderr(&o).contains("max_length"),
        "{}",
        stderr(&o)
    );
    let broken = root.join("tests/fixtures/data/broken.jsonl");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nsource = \"default\"\n[data]\nsource = {:?}\n",
            broken.display().to_string()
        ),
    )
    .expect("write");
    let o = ftui(
        &["inspect", "--config", cfg.to_str().expect("utf8")],
        home.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("broken.jsonl:"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn generate_and_score_take_quantization_from_the_config() {
    let home = tempfile::tempdir().expect("tmp");
    let model = fixture("llama");
    let cfg = home.path().join("q.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nsource = {:?}\n[quantization]\nload_in_4bit = true\nbnb_4bit_quant_type = \"nf4\"\n",
            model.display().to_string()
        ),
    )
    .expect("write");
    let nll = |extra: &[&str]| mean_nll(home.path(), &model, "Strong in you, the Force is.", extra);
    let dense = nll(&[]);
    let from_config = nll(&["--config", cfg.to_str().expect("utf8")]);
    let from_flags = nll(&["--load-in-4bit", "--quant-type", "nf4"]);
    assert!(
        (dense - from_config).abs() > 1e-6,
        "NF4 changed nothing: {dense}"
    );
    assert!(
        (dense - from_config).abs() < 0.5,
        "NF4 is far off: {dense} vs {from_config}"
    );
    assert_eq!(
        from_config, from_flags,
        "the config and the flags mean the same"
    );
}

#[test]
fn the_workbench_without_a_terminal_says_so_in_one_line() {
    // `output()` gives the program no terminal: stdin is empty, stdout a pipe.
    let home = tempfile::tempdir().expect("tmp");
    let o = ftui(&[], home.path());
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("ftui: the workbench needs a terminal (stdin is not one)"),
        "{e}"
    );
    for command in ["doctor", "inspect", "generate", "score"] {
        assert!(e.contains(command), "{command} missing: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn usage_errors_name_the_program_ftui() {
    let home = tempfile::tempdir().expect("tmp");
    let o = ftui(&["generate", "--no-such-flag"], home.path());
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("Usage: ftui generate"), "{e}");
    assert!(!e.contains("ftui-engine"), "{e}");
    let o = ftui(&["--help"], home.path());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Usage: ftui [OPTIONS]"), "{out}");
}
