//! The workbench on ratatui's TestBackend: every pane drawn from fixture state
//! and compared with a stored snapshot (tests/snapshots/*.txt; set
//! UPDATE_SNAPSHOTS=1 to rewrite them after a deliberate change), and key-driven
//! tests for navigation, config edits and the quit confirmation.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ftui::config::RunConfig;
use ftui::engine::{Command, Engine, Event};
use ftui::source::{load_tokenizer, ModelSource};
use ftui::tui::{App, Pane, Turn};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sample config with paths relative to the package root (the tests' working
/// folder), so no machine's absolute path reaches a snapshot.
fn sample_config() -> RunConfig {
    let mut c = RunConfig::load(&root().join("sample-data/ftui.toml")).expect("sample config");
    c.resolve(std::path::Path::new("sample-data"));
    c
}

/// The data panes' view of the sample config, built as the engine builds it.
fn try_data_view(c: &RunConfig) -> Result<ftui::dataview::DataView, String> {
    let path = ftui::paths::default_model()
        .unwrap_or_else(|| panic!("{}", ftui::paths::default_model_missing()));
    let tok = load_tokenizer(&ModelSource::Gguf(path), &mut |_, _, _| {}).expect("tokenizer");
    let d = ftui::data::load_dataset(c.data.as_ref().expect("data"), &mut |_, _, _| {})
        .expect("dataset");
    ftui::dataview::build(c, &tok, &d)
}

fn data_view(c: &RunConfig) -> ftui::dataview::DataView {
    try_data_view(c).expect("view")
}

fn model_info() -> ftui::engine::ModelInfo {
    ftui::engine::ModelInfo {
        name: "models/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        arch: "llama".into(),
        device: "cpu".into(),
        dtype: "float32".into(),
        parameters: 134_515_008,
        memory_footprint: 538_060_288,
        layers: 30,
        vocab_size: 49152,
        chat_template: true,
        bos: Some("<|im_start|>".into()),
        eos: Some("<|im_end|>".into()),
        pad: Some("<|im_end|>".into()),
        pad_equals_eos: true,
        adapters: vec!["trained".into()],
        active_adapter: Some("trained".into()),
        weights: "dense".into(),
    }
}

/// An app in a known state, with no engine work behind it.
fn app() -> App {
    let c = sample_config();
    let mut a = App::new(c.clone(), PathBuf::from("sample-data/ftui.toml"));
    a.on_engine(Event::ModelLoaded(Box::new(model_info())));
    a.on_engine(Event::DataReady(Box::new(data_view(&c))));
    a
}

fn render(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    t.draw(|f| app.draw(f)).expect("draw");
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    // Filters: nothing machine-specific may reach a snapshot.
    out.replace(&root().display().to_string(), "<root>")
}

fn check_snapshot(name: &str, text: &str) {
    let path = root().join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() || !path.exists() {
        std::fs::write(&path, text).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("snapshot");
    assert_eq!(
        text, expected,
        "snapshot {name} differs; UPDATE_SNAPSHOTS=1 rewrites it"
    );
}

fn key(engine: &Engine, app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE), engine);
}

fn idle_engine() -> Engine {
    Engine::start()
}

#[test]
fn every_pane_matches_its_snapshot_at_80x24_and_120x40() {
    let engine = idle_engine();
    let mut a = app();
    for (i, pane) in Pane::ALL.iter().enumerate() {
        a.pane = *pane;
        if *pane == Pane::Chat {
            a.chat.turns = vec![
                Turn {
                    role: "user".into(),
                    content: "The Force is strong in you!".into(),
                    base: None,
                },
                Turn {
                    role: "assistant".into(),
                    content: "Strong in you, the Force is. Yes, hrrmmm.".into(),
                    base: None,
                },
            ];
        }
        check_snapshot(&format!("pane{}-80x24", i + 1), &render(&a, 80, 24));
        check_snapshot(&format!("pane{}-120x40", i + 1), &render(&a, 120, 40));
    }
    key(&engine, &mut a, KeyCode::Char('?'));
    check_snapshot("help-100x40", &render(&a, 100, 40));
}

#[test]
fn tab_and_number_keys_move_between_panes() {
    let engine = idle_engine();
    let mut a = app();
    assert_eq!(a.pane, Pane::Config);
    key(&engine, &mut a, KeyCode::Tab);
    assert_eq!(a.pane, Pane::Data);
    key(&engine, &mut a, KeyCode::BackTab);
    key(&engine, &mut a, KeyCode::BackTab);
    assert_eq!(a.pane, Pane::Chat);
    key(&engine, &mut a, KeyCode::Char('3'));
    assert_eq!(a.pane, Pane::Batches);
    // A click on the tab bar selects the tab under the pointer.
    a.on_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 14,
        row: 0,
        modifiers: KeyModifiers::NONE,
    });
    assert_eq!(a.pane, Pane::Data);
    key(&engine, &mut a, KeyCode::Char('?'));
    assert!(a.show_help);
    key(&engine, &mut a, KeyCode::Char('x'));
    assert!(!a.show_help, "any key closes help");
}

#[test]
fn bad_config_edit_shows_an_error_and_saves_nothing() {
    let engine = idle_engine();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("run.toml");
    let mut a = app();
    a.config_path = path.clone();
    let before = a.config.clone();
    // Select [lora] r and type a negative rank.
    let r = ftui::config::FIELDS
        .iter()
        .position(|f| f.section == "lora" && f.key == "r")
        .expect("r");
    a.config_pane.selected = r;
    key(&engine, &mut a, KeyCode::Enter);
    for _ in 0..4 {
        key(&engine, &mut a, KeyCode::Backspace);
    }
    key(&engine, &mut a, KeyCode::Char('-'));
    key(&engine, &mut a, KeyCode::Char('4'));
    key(&engine, &mut a, KeyCode::Enter);
    assert_eq!(a.config, before, "a refused edit changes nothing");
    let screen = render(&a, 100, 30);
    assert!(screen.contains("must be a positive rank"), "{screen}");
    key(&engine, &mut a, KeyCode::Esc);
    key(&engine, &mut a, KeyCode::Char('s'));
    assert!(path.exists());
    // A good edit, saved: the file loads back equal.
    key(&engine, &mut a, KeyCode::Enter);
    key(&engine, &mut a, KeyCode::Backspace);
    key(&engine, &mut a, KeyCode::Char('6'));
    key(&engine, &mut a, KeyCode::Enter);
    assert_eq!(a.config.lora.as_ref().expect("lora").r, 6);
    key(&engine, &mut a, KeyCode::Char('s'));
    assert_eq!(
        RunConfig::load(&path).expect("saved config loads"),
        a.config
    );
}

#[test]
fn masking_key_changes_the_batch_view() {
    let engine = idle_engine();
    let mut a = app();
    a.pane = Pane::Batches;
    let before = render(&a, 120, 40);
    // First stop: assistant-only, which SmolLM2's template (no generation
    // blocks) cannot do; the engine's refusal shows in the status line.
    key(&engine, &mut a, KeyCode::Char('m'));
    assert!(a.preparing, "the change asks the engine to prepare again");
    let message = try_data_view(&a.config).expect_err("no generation blocks");
    a.on_engine(Event::Error {
        task: "prepare data".into(),
        message,
    });
    assert!(render(&a, 200, 40).contains("{% generation %}"));
    // Next: every token trained. What the engine answers is built here directly.
    key(&engine, &mut a, KeyCode::Char('m'));
    let view = data_view(&a.config);
    a.on_engine(Event::DataReady(Box::new(view)));
    let after = render(&a, 120, 40);
    assert_ne!(before, after);
    assert!(after.contains("all tokens"), "{after}");
    // Two changes in a row while the first is being prepared: the second waits
    // and goes out as one request when the first is done.
    key(&engine, &mut a, KeyCode::Char('d'));
    assert!(a.preparing && !a.prepare_again);
    key(&engine, &mut a, KeyCode::Char('d'));
    assert!(a.prepare_again, "the second change is held back");
    a.on_engine(Event::DataReady(Box::new(data_view(&a.config))));
    a.on_tick(&engine);
    assert!(
        a.preparing && !a.prepare_again,
        "one request for both changes"
    );
    a.on_engine(Event::DataReady(Box::new(data_view(&a.config))));
    // Packing flattens the batch into one padding-free row.
    key(&engine, &mut a, KeyCode::Char('p'));
    let view = data_view(&a.config);
    a.on_engine(Event::DataReady(Box::new(view)));
    assert!(render(&a, 120, 40).contains("padding-free"));
}

#[test]
fn quit_asks_while_the_engine_is_busy() {
    let engine = Engine::start();
    let mut a = app();
    // Loading the default model keeps the engine busy for a moment.
    engine.send(Command::LoadModel {
        source: "default".into(),
        dtype: ftui::config::DType::Float32,
        device: "cpu".into(),
        attn: ftui::config::AttnImplementation::Sdpa,
        quantization: None,
    });
    key(&engine, &mut a, KeyCode::Char('q'));
    assert!(a.confirm_quit && !a.quit);
    assert!(render(&a, 80, 24).contains("Quit anyway?"));
    key(&engine, &mut a, KeyCode::Char('n'));
    assert!(!a.confirm_quit && !a.quit);
    key(&engine, &mut a, KeyCode::Char('q'));
    key(&engine, &mut a, KeyCode::Char('y'));
    assert!(a.quit);
}

#[test]
fn keys_are_handled_at_once_while_the_engine_loads_a_model() {
    // The UI thread never waits on the engine: with a model loading, each key
    // and the redraw after it take far less than the 100 ms budget.
    let engine = Engine::start();
    let mut a = app();
    engine.send(Command::LoadModel {
        source: "default".into(),
        dtype: ftui::config::DType::Float32,
        device: "cpu".into(),
        attn: ftui::config::AttnImplementation::Sdpa,
        quantization: None,
    });
    let mut t = Terminal::new(TestBackend::new(100, 30)).expect("terminal");
    let mut worst = std::time::Duration::ZERO;
    for code in [
        KeyCode::Tab,
        KeyCode::Tab,
        KeyCode::Char('n'),
        KeyCode::Tab,
        KeyCode::Char('1'),
        KeyCode::Char('j'),
    ] {
        assert!(engine.is_busy(), "the engine should still be loading");
        let start = std::time::Instant::now();
        key(&engine, &mut a, code);
        t.draw(|f| a.draw(f)).expect("draw");
        worst = worst.max(start.elapsed());
    }
    assert!(
        worst < std::time::Duration::from_millis(100),
        "slowest key took {worst:?}"
    );
}
