//! A training run as a process with a run folder, on the real binary: the
//! folder's files, the dry run, refusals, a detached run that survives its
//! terminal and is listed, paused, stopped and resumed over its socket, and a
//! run killed with SIGKILL that resumes to the uninterrupted run's adapter.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The tiny llama fixture, LoRA r=4 with dropout, prompt/completion rows.
const CONFIG: &str = r#"
[model]
source = "MODEL"
device = "cpu"
dtype = "float32"

[lora]
r = 4
lora_alpha = 8
lora_dropout = 0.05
target_modules = "all-linear"

[data]
source = "data.jsonl"
format = "prompt_completion"

[training]
output_dir = "OUTPUT"
max_length = 64
per_device_train_batch_size = 4
gradient_checkpointing = false
max_steps = 4
learning_rate = 1e-3
# Constant: the learning rate does not depend on max_steps, so a run stopped
# or killed at any step can be compared with one told to end there.
lr_scheduler_type = "constant"
logging_steps = 1
save_steps = 2
"#;

/// A folder with `data.jsonl` and `ftui.toml` (`output_dir` = `output`, and
/// `[lora]` left out when `lora` is false).
fn setup(output: &str, lora: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut data = String::new();
    for i in 0..16 {
        let row = serde_json::json!({
            "prompt": format!("Count {i} stars for me."),
            "completion": format!("Stars {i}, counted I have."),
        });
        data.push_str(&format!("{row}\n"));
    }
    std::fs::write(dir.path().join("data.jsonl"), data).expect("data");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/llama");
    let mut text = CONFIG
        .replace("MODEL", model.to_str().expect("utf8"))
        .replace("OUTPUT", output);
    if !lora {
        let start = text.find("[lora]").expect("lora");
        let end = text.find("[data]").expect("data");
        text.replace_range(start..end, "");
    }
    let cfg = dir.path().join("ftui.toml");
    std::fs::write(&cfg, text).expect("config");
    (dir, cfg)
}

/// `ftui ARGS` in `cwd`, to completion.
fn ftui(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ftui"))
        .args(args)
        .current_dir(cwd)
        .env("FTUI_HOME", cwd.join(".ftui-home"))
        .env("HF_HUB_OFFLINE", "1")
        // One thread: several torch processes on a shared machine spin-wait badly.
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("runs ftui")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["kind"] == kind).collect()
}

fn run_json(dir: &Path) -> Value {
    // Written atomically: never half a file.
    serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).expect("run.json"))
        .expect("run.json is JSON")
}

/// Polls `done` until it holds; false after `secs`.
fn wait_for(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim().starts_with('Z'))
}

fn kill9(pid: u64) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// Kills a detached run left behind by a failing test.
struct Reap(PathBuf);
impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.0.join("run.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["pid"].as_u64())
        {
            if alive(pid) {
                kill9(pid);
            }
        }
    }
}

fn adapter(dir: &Path) -> Vec<(String, tch::Tensor)> {
    let mut t = tch::Tensor::read_safetensors(dir.join("adapter_model.safetensors"))
        .expect("adapter_model.safetensors");
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn a_foreground_run_leaves_a_complete_folder() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let (dir, cfg) = setup(out.to_str().expect("utf8"), true);
    let cfg = cfg.to_str().expect("utf8");
    let stdout = ok(&ftui(
        &["train", "--config", cfg, "--max-steps", "3", "--json"],
        dir.path(),
    ));
    // --json: exactly the metrics lines, as written.
    let written = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(stdout, written.trim());
    let lines = metrics(&out);
    assert!(lines.iter().all(|l| l
        .as_object()
        .and_then(|o| o.keys().next())
        .map(String::as_str)
        == Some("kind")));
    let train = of_kind(&lines, "train");
    assert_eq!(
        train.iter().map(|l| l["step"].as_u64()).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)],
        "--max-steps 3 overrides max_steps = 4"
    );
    for l in &train {
        for key in [
            "loss",
            "learning_rate",
            "grad_norm",
            "num_tokens",
            "mean_token_accuracy",
            "tokens_per_second",
        ] {
            assert!(l[key].as_f64().is_some_and(f64::is_finite), "{key} in {l}");
        }
        assert!(
            l["memory_bytes"].as_u64().is_some_and(|m| m > 1 << 20),
            "{l}"
        );
    }
    let ckpt = of_kind(&lines, "checkpoint");
    assert_eq!(ckpt.len(), 1);
    assert_eq!(ckpt[0]["step"], 2);
    assert!(Path::new(ckpt[0]["path"].as_str().expect("path"))
        .join("trainer_state.json")
        .is_file());
    let end = of_kind(&lines, "end");
    assert_eq!(end.len(), 1);
    assert_eq!(lines.last(), Some(end[0]));
    assert_eq!(end[0]["status"], "finished");
    assert!(end[0]["train_loss"].as_f64().is_some_and(f64::is_finite));

    let info = run_json(&out);
    assert_eq!(info["status"], "finished");
    assert_eq!(info["step"], 3);
    assert_eq!(info["max_steps"], 3);
    assert_eq!(info["engine"], "ftui");
    assert!(
        info["pid"].as_u64().is_some()
            && info["started"].as_str().is_some_and(|s| s.ends_with('Z'))
    );
    for file in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "README.md",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    assert!(
        !out.join("control.sock").exists(),
        "the socket goes with the run"
    );
    // The config as used, with the command line's override.
    let used = std::fs::read_to_string(out.join("ftui.toml")).expect("ftui.toml");
    let used: toml::Value = toml::from_str(&used).expect("toml");
    assert_eq!(used["training"]["max_steps"].as_integer(), Some(3));
    assert_eq!(used["lora"]["r"].as_integer(), Some(4));

    // `ftui runs --config` finds the config's output_dir.
    let rows: Value =
        serde_json::from_str(&ok(&ftui(&["runs", "--json", "--config", cfg], dir.path())))
            .expect("json");
    let rows = rows.as_array().expect("a list");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "finished");
    assert_eq!(rows[0]["step"], 3);
    assert_eq!(rows[0]["last_loss"], train[2]["loss"]);
}

#[test]
fn dry_run_plans_and_checks_refuse_with_exit_2() {
    let (dir, cfg) = setup("runs/plan", true);
    let cfg = cfg.to_str().expect("utf8");
    let plan: Value = serde_json::from_str(&ok(&ftui(
        &["train", "--config", cfg, "--dry-run", "--json"],
        dir.path(),
    )))
    .expect("one JSON document");
    assert_eq!(plan["steps"], 4);
    assert_eq!(plan["examples"], 16);
    assert!(plan["tokens_per_epoch"].as_u64().is_some_and(|t| t > 16));
    assert!(plan["trainable_parameters"].as_u64().is_some_and(|t| t > 0));
    assert!(
        !dir.path().join("runs/plan").exists(),
        "a dry run writes nothing"
    );

    let (dir, cfg) = setup("runs/nolora", false);
    let o = ftui(
        &["train", "--config", cfg.to_str().expect("utf8")],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(
        e.lines().any(|l| l.trim_start().starts_with("[lora]")),
        "{e}"
    );
    assert!(!dir.path().join("runs/nolora").exists());
}

#[test]
fn a_detached_run_is_listed_steered_stopped_and_resumed() {
    let (dir, cfg) = setup("runs/base", true);
    let cfg = cfg.to_str().expect("utf8");
    let cwd = dir.path();
    let run = cwd.join("runs/live");
    let _reap = Reap(run.clone());
    let printed = ok(&ftui(
        &[
            "train",
            "--config",
            cfg,
            "--output-dir",
            "runs/live",
            "--max-steps",
            "100000",
            "--detach",
        ],
        cwd,
    ));
    assert_eq!(printed, "runs/live");
    let pid = run_json(&run)["pid"].as_u64().expect("pid");
    assert!(alive(pid));
    // Its own session, no controlling terminal, stdin from /dev/null: a closed
    // terminal or a dropped SSH connection cannot reach it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .expect("fields")
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], pid.to_string(), "session leader");
    assert_eq!(fields[4], "0", "no controlling terminal");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/0")).expect("stdin"),
        Path::new("/dev/null")
    );

    let rows: Value = serde_json::from_str(&ok(&ftui(&["runs", "--json"], cwd))).expect("json");
    let row = &rows.as_array().expect("list")[0];
    assert_eq!(row["folder"], "runs/live");
    assert_eq!(row["pid"].as_u64(), Some(pid));
    assert!(
        row["status"] == "starting" || row["status"] == "running",
        "{row}"
    );

    // One live run per folder.
    let o = ftui(
        &["train", "--config", cfg, "--output-dir", "runs/live"],
        cwd,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("live run"), "{}", text(&o.stderr));

    assert!(
        wait_for(60, || of_kind(&metrics(&run), "train").len() >= 2),
        "the detached run trains"
    );
    assert!(ok(&ftui(&["pause", "runs/live"], cwd)).contains("paus"));
    assert!(wait_for(30, || run_json(&run)["status"] == "paused"));
    let trained = |run: &Path| of_kind(&metrics(run), "train").len();
    // The step under way when the pause came ends; then nothing moves.
    assert!(
        wait_for(30, || {
            let before = trained(&run);
            std::thread::sleep(Duration::from_millis(500));
            trained(&run) == before
        }),
        "a paused run takes no step"
    );
    let at_pause = trained(&run);
    ok(&ftui(&["resume", "runs/live"], cwd));
    assert!(wait_for(30, || trained(&run) > at_pause), "resumed");

    ok(&ftui(&["stop", "runs/live"], cwd));
    assert!(
        wait_for(60, || run_json(&run)["status"] == "stopped"),
        "stopped"
    );
    assert!(wait_for(30, || !alive(pid)), "the process ends");
    let stopped_at = run_json(&run)["step"].as_u64().expect("step");
    assert!(stopped_at >= 3);
    let lines = metrics(&run);
    assert_eq!(of_kind(&lines, "end")[0]["status"], "stopped");
    let last_ckpt = of_kind(&lines, "checkpoint")
        .last()
        .map(|c| c["step"].clone());
    assert_eq!(
        last_ckpt,
        Some(Value::from(stopped_at)),
        "a stop writes a checkpoint"
    );
    assert!(run.join(format!("checkpoint-{stopped_at}")).is_dir());
    assert!(!run.join("control.sock").exists());
    let o = ftui(&["stop", "runs/live"], cwd);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("ended"), "{e}");

    // Resume from the stop: the next step is the one after it.
    let until = (stopped_at + 2).to_string();
    ok(&ftui(
        &[
            "train",
            "--config",
            cfg,
            "--output-dir",
            "runs/live",
            "--max-steps",
            &until,
            "--resume-from-checkpoint",
            "latest",
        ],
        cwd,
    ));
    let lines = metrics(&run);
    let steps: Vec<u64> = of_kind(&lines, "train")
        .iter()
        .filter_map(|l| l["step"].as_u64())
        .collect();
    assert_eq!(steps.iter().filter(|s| **s > stopped_at).count(), 2);
    let resumed_first = steps
        .iter()
        .position(|s| *s == stopped_at + 1)
        .expect("continued");
    assert!(
        steps[..resumed_first].iter().all(|s| *s <= stopped_at),
        "{steps:?}"
    );
    assert_eq!(run_json(&run)["status"], "finished");
    assert_eq!(run_json(&run)["step"].as_u64(), Some(stopped_at + 2));
}

#[test]
fn ctrl_c_stops_after_the_step_with_a_checkpoint() {
    let (dir, cfg) = setup("runs/fg", true);
    let run = dir.path().join("runs/fg");
    let child = Command::new(env!("CARGO_BIN_EXE_ftui"))
        .args([
            "train",
            "--config",
            cfg.to_str().expect("utf8"),
            "--max-steps",
            "100000",
        ])
        .current_dir(dir.path())
        .env("FTUI_HOME", dir.path().join(".ftui-home"))
        .env("OMP_NUM_THREADS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let _reap = Reap(run.clone());
    assert!(wait_for(60, || of_kind(&metrics(&run), "train").len() >= 2));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let o = child.wait_with_output().expect("ends");
    let out = ok(&o);
    let info = run_json(&run);
    assert_eq!(info["status"], "stopped");
    let step = info["step"].as_u64().expect("step");
    let ckpt = run.join(format!("checkpoint-{step}"));
    assert!(ckpt.is_dir(), "{out}");
    assert!(
        out.contains(&format!("checkpoint: runs/fg/checkpoint-{step}")),
        "{out}"
    );
    assert!(out.contains("--resume-from-checkpoint latest"), "{out}");
    assert_eq!(of_kind(&metrics(&run), "end")[0]["status"], "stopped");
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_adapter() {
    let (dir, cfg) = setup("runs/whole", true);
    let cfg = cfg.to_str().expect("utf8");
    let cwd = dir.path();
    let run = cwd.join("runs/killed");
    let _reap = Reap(run.clone());
    // Too long to end by itself: it is killed after its first checkpoint.
    ok(&ftui(
        &[
            "train",
            "--config",
            cfg,
            "--output-dir",
            "runs/killed",
            "--max-steps",
            "100000",
            "--detach",
        ],
        cwd,
    ));
    let pid = run_json(&run)["pid"].as_u64().expect("pid");
    assert!(
        wait_for(60, || !of_kind(&metrics(&run), "checkpoint").is_empty()),
        "a first checkpoint"
    );
    kill9(pid);
    assert!(wait_for(30, || !alive(pid)));
    let rows: Value = serde_json::from_str(&ok(&ftui(&["runs", "--json"], cwd))).expect("json");
    let row = rows
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["folder"] == "runs/killed")
        .expect("listed");
    assert_eq!(row["status"], "dead");
    let o = ftui(&["stop", "runs/killed"], cwd);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("died"), "{}", text(&o.stderr));

    // Where it will continue from: the newest whole checkpoint.
    let latest = std::fs::read_dir(&run)
        .expect("run folder")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("checkpoint-")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .expect("a checkpoint");
    let end = (latest + 3).to_string();
    let o = ftui(
        &[
            "train",
            "--config",
            cfg,
            "--output-dir",
            "runs/killed",
            "--max-steps",
            &end,
            "--resume-from-checkpoint",
            "latest",
        ],
        cwd,
    );
    ok(&o);
    assert!(
        text(&o.stderr).contains("is gone"),
        "the stale run is named: {}",
        text(&o.stderr)
    );
    assert_eq!(run_json(&run)["status"], "finished");
    let lines = metrics(&run);
    let resumed: Vec<u64> = lines
        .iter()
        .skip_while(|l| !l["message"].as_str().is_some_and(|m| m.contains("is gone")))
        .filter(|l| l["kind"] == "train")
        .filter_map(|l| l["step"].as_u64())
        .collect();
    assert_eq!(
        resumed,
        [latest + 1, latest + 2, latest + 3],
        "continued from the checkpoint"
    );

    ok(&ftui(&["train", "--config", cfg, "--max-steps", &end], cwd));
    let whole = cwd.join("runs/whole");
    assert_eq!(run_json(&whole)["step"].as_u64(), Some(latest + 3));
    let a = adapter(&whole);
    let b = adapter(&run);
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let rel = (ta - tb).norm().double_value(&[]) / ta.norm().double_value(&[]).max(1e-30);
        assert!(rel < 1e-5, "{na}: resumed adapter differs by {rel}");
    }
}
