//! The real binary in a real terminal: tmux runs `ftui` on a tiny model, keys
//! are sent, the screen is read back. Visits every pane, changes the masking
//! mode and sees the batch view change, chats and sees streamed text, quits, and
//! checks the terminal was restored. Needs tmux (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    session: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux is installed (apt-get install tmux)");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        self.run(&args);
        std::thread::sleep(Duration::from_millis(150));
    }
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", &self.session])
    }
    /// Waits until the screen contains `text`, or fails with the screen.
    fn wait_for(&self, text: &str, secs: u64) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "waited {secs}s for {text:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .output();
    }
}

fn write_config(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = format!(
        "[model]\nsource = {:?}\ndevice = \"cpu\"\n\n[data]\nsource = {:?}\nformat = \"prompt_completion\"\ncolumns = {{ sentence = \"prompt\", translation_extra = \"completion\" }}\n\n[training]\nmax_length = 64\nper_device_train_batch_size = 4\noutput_dir = {:?}\n\n[generation]\nmax_new_tokens = 12\n",
        root.join("tests/fixtures/models/llama").display().to_string(),
        root.join("sample-data/yoda_sentences.jsonl").display().to_string(),
        dir.join("out").display().to_string(),
    );
    let path = dir.join("e2e.toml");
    std::fs::write(&path, cfg).expect("config");
    path
}

#[test]
fn workbench_in_tmux_visits_every_pane_chats_and_quits_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path());
    let stty = dir.path().join("stty.txt");
    let session = format!("ftui-e2e-{}", std::process::id());
    let t = Tmux {
        session: session.clone(),
    };
    let cmd = format!(
        "FTUI_HOME={home} {bin} --config {cfg}; stty -a > {stty}; echo FTUI-EXITED-$?; sleep 60",
        home = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_ftui"),
        cfg = config.display(),
        stty = stty.display(),
    );
    t.run(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    t.wait_for("1 Config", 20);
    t.wait_for("llama", 20);
    t.wait_for("[ready]", 30);
    // Data & template pane: the first example and the pre-flight report.
    t.keys(&["2"]);
    let s = t.wait_for("pre-flight", 20);
    assert!(s.contains("examples"), "{s}");
    // Batches: switch masking mode and see the view change.
    t.keys(&["3"]);
    let before = t.wait_for("masking", 10);
    assert!(before.contains("completion only"), "{before}");
    t.keys(&["m"]);
    let after = t.wait_for("assistant only", 10);
    assert_ne!(before, after);
    t.keys(&["m"]);
    t.wait_for("all tokens", 10);
    // Training: no run yet, and how to start one.
    t.keys(&["4"]);
    t.wait_for("No runs under", 10);
    // Chat: one message, streamed back.
    t.keys(&["5"]);
    t.keys(&["i"]);
    t.keys(&["-l", "Hello there"]);
    t.keys(&["Enter"]);
    let s = t.wait_for("tokens/s", 30);
    assert!(s.contains("user: Hello there"), "{s}");
    assert!(s.contains("assistant:"), "{s}");
    // Back to Config, then quit.
    t.keys(&["1"]);
    t.wait_for("[lora]", 5);
    t.keys(&["q"]);
    let s = t.wait_for("FTUI-EXITED-0", 10);
    assert!(!s.contains("panicked"), "{s}");
    let modes = std::fs::read_to_string(&stty).expect("stty output");
    assert!(
        modes.contains(" icanon") && modes.contains(" echo "),
        "terminal left in raw mode: {modes}"
    );
}
