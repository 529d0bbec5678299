//! The workbench on ratatui's TestBackend: every pane drawn from fixture state
//! and compared with a stored snapshot named after the pane
//! (tests/snapshots/NAME-WxH.txt; a missing or different one fails, and
//! UPDATE_SNAPSHOTS=1 rewrites them after a deliberate change), and key-driven
//! tests for routing, text input, config edits, chat and the quit confirmation.
//! Keys go to a recorder of engine requests: no engine thread is needed, except
//! in the one test that checks keys stay quick while a real engine loads a model.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ftui::config::RunConfig;
use ftui::engine::protocol::{
    Control, DataView, EngineError, Event, GenerationResult, GenerationStats, JobId, JobOutput,
    Jobs, ModelInfo, Progress, Request, Stage, Task,
};
use ftui::engine::Engine;
use ftui::generate::FinishReason;
use ftui::source::{load_tokenizer, ModelSource};
use ftui::tui::launch::{Launch, LaunchReply, Launcher, RunCommand};
use ftui::tui::App;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

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

/// The data panes' view of a config, built as the engine builds it.
fn try_data_view(c: &RunConfig) -> Result<DataView, EngineError> {
    let path = ftui::paths::default_model()
        .unwrap_or_else(|| panic!("{}", ftui::paths::default_model_missing()));
    let tok = load_tokenizer(&ModelSource::Gguf(path), &mut |_, _, _| {}).expect("tokenizer");
    let d = ftui::data::load_dataset(c.data.as_ref().expect("data"), &mut |_, _, _| {})
        .expect("dataset");
    ftui::engine::views::data_view(c, &tok, &d, &|| false)
}

fn data_view(c: &RunConfig) -> DataView {
    try_data_view(c).expect("view")
}

fn model_info() -> ModelInfo {
    ModelInfo {
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

/// Takes the app's engine requests and gives them ids; runs nothing.
#[derive(Default)]
struct Recorder {
    last: Cell<u64>,
    requests: RefCell<Vec<(JobId, Request)>>,
    controls: RefCell<Vec<(JobId, Control)>>,
}

impl Jobs for Recorder {
    fn submit(&self, request: Request) -> JobId {
        self.last.set(self.last.get() + 1);
        let job = JobId(self.last.get());
        self.requests.borrow_mut().push((job, request));
        job
    }
    fn control(&self, job: JobId, control: Control) {
        self.controls.borrow_mut().push((job, control));
    }
}

impl Recorder {
    /// The requests since the last call.
    fn take(&self) -> Vec<(JobId, Request)> {
        std::mem::take(&mut self.requests.borrow_mut())
    }
}

fn finished(job: JobId, outcome: Result<JobOutput, EngineError>) -> Event {
    Event::Finished { job, outcome }
}

/// An app in a known state, as if the engine had loaded the model and the data.
fn app() -> App {
    let c = sample_config();
    let mut a = App::new(c.clone(), PathBuf::from("sample-data/ftui.toml"));
    a.on_engine(finished(
        JobId(1000),
        Ok(JobOutput::Model(Box::new(model_info()))),
    ));
    a.on_engine(finished(
        JobId(1001),
        Ok(JobOutput::Data(Box::new(data_view(&c)))),
    ));
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
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, text).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "snapshot {} is missing; UPDATE_SNAPSHOTS=1 writes it. The screen:\n{text}",
            path.display()
        )
    });
    assert_eq!(
        text, expected,
        "snapshot {name} differs; UPDATE_SNAPSHOTS=1 rewrites it"
    );
}

fn press(jobs: &dyn Jobs, app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE), jobs);
}

fn type_text(jobs: &dyn Jobs, app: &mut App, text: &str) {
    for c in text.chars() {
        press(jobs, app, KeyCode::Char(c));
    }
}

/// Selects pane `name` with its number key.
fn select(jobs: &dyn Jobs, app: &mut App, name: &str) {
    let i = app
        .pane_names()
        .iter()
        .position(|n| *n == name)
        .expect("a pane by that name");
    let digit = char::from_digit(i as u32 + 1, 10).expect("digit");
    press(jobs, app, KeyCode::Char(digit));
    assert_eq!(app.pane(), name);
}

fn answer(job: JobId, text: &str) -> Event {
    let result = GenerationResult {
        prompt_text: "<|im_start|>user\n…".into(),
        prompt_ids: vec![1, 2, 3],
        token_ids: vec![4, 5],
        text: text.into(),
        finish: FinishReason::Eos,
    };
    finished(
        job,
        Ok(JobOutput::Generated {
            results: vec![result],
            stats: GenerationStats {
                prompt_tokens: 3,
                new_tokens: 12,
                prompt_seconds: 0.1,
                decode_seconds: 1.0,
            },
        }),
    )
}

/// Types `message` in the Chat pane and sends it; returns the generation requests.
fn send_message(jobs: &Recorder, app: &mut App, message: &str) -> Vec<(JobId, Request)> {
    select(jobs, app, "chat");
    press(jobs, app, KeyCode::Char('i'));
    type_text(jobs, app, message);
    press(jobs, app, KeyCode::Enter);
    jobs.take()
}

#[test]
fn every_pane_matches_its_snapshot_at_80x24_and_120x40() {
    let jobs = Recorder::default();
    let mut a = app();
    let asked = send_message(&jobs, &mut a, "The Force is strong in you!");
    a.on_engine(answer(
        asked[0].0,
        "Strong in you, the Force is. Yes, hrrmmm.",
    ));
    for name in a.pane_names() {
        select(&jobs, &mut a, name);
        check_snapshot(&format!("{name}-80x24"), &render(&a, 80, 24));
        check_snapshot(&format!("{name}-120x40"), &render(&a, 120, 40));
    }
    press(&jobs, &mut a, KeyCode::Char('?'));
    check_snapshot("help-100x40", &render(&a, 100, 40));
}

#[test]
fn a_wrapped_answer_continues_under_its_text() {
    let jobs = Recorder::default();
    let mut a = app();
    let asked = send_message(&jobs, &mut a, "Tell me about the Force, at length please.");
    a.on_engine(answer(
        asked[0].0,
        "Surrounds us and binds us, the Force does. Luminous beings are we, not this crude matter. Feel it you must, between you, me, the tree, the rock, everywhere.",
    ));
    let screen = render(&a, 60, 20);
    check_snapshot("chat-wrapped-60x20", &screen);
    let lines: Vec<&str> = screen.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains("assistant: Surrounds"))
        .expect("the answer");
    // Continuation lines start in the text column, after the border and the role column.
    for l in &lines[first + 1..first + 4] {
        assert!(
            l.starts_with("│           ") && !l.starts_with("│            "),
            "{l:?}"
        );
    }
}

#[test]
fn number_keys_tab_and_clicks_select_panes() {
    let jobs = Recorder::default();
    let mut a = app();
    assert_eq!(a.pane(), "config");
    press(&jobs, &mut a, KeyCode::Char('2'));
    assert_eq!(a.pane(), "data");
    press(&jobs, &mut a, KeyCode::Tab);
    assert_eq!(a.pane(), "batches");
    press(&jobs, &mut a, KeyCode::BackTab);
    press(&jobs, &mut a, KeyCode::BackTab);
    press(&jobs, &mut a, KeyCode::BackTab);
    assert_eq!(a.pane(), "export", "back from the first is the last");
    press(&jobs, &mut a, KeyCode::Char('9'));
    assert_eq!(a.pane(), "export", "no ninth pane");
    // A click on the tab bar selects the tab under the pointer.
    a.on_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 14,
        row: 0,
        modifiers: KeyModifiers::NONE,
    });
    assert_eq!(a.pane(), "data");
    assert!(
        jobs.take().is_empty(),
        "moving around asks the engine nothing"
    );
}

#[test]
fn help_lists_every_pane_and_its_actions() {
    let jobs = Recorder::default();
    let mut a = app();
    press(&jobs, &mut a, KeyCode::Char('?'));
    assert!(a.show_help);
    let screen = render(&a, 160, 60);
    // The help box alone: from its title to its bottom border.
    let help: String = screen
        .lines()
        .skip_while(|l| !l.contains(" Keys "))
        .take_while(|l| !l.contains('└'))
        .collect::<Vec<_>>()
        .join("\n");
    for title in [
        "Config",
        "Data & template",
        "Batches",
        "Training",
        "Chat",
        "Export",
    ] {
        assert!(help.contains(title), "{title} missing:\n{help}");
    }
    for action in [
        "masking",
        "side by side",
        "search",
        "save",
        "next batch",
        "clear the chat",
        "start training",
        "stop the run",
        "save a checkpoint now",
        "chat with the run's adapter",
    ] {
        assert!(help.contains(action), "{action} missing:\n{help}");
    }
    assert!(help.contains("1-6") && help.contains("go to pane"));
    press(&jobs, &mut a, KeyCode::Char('x'));
    assert!(!a.show_help, "any key closes help");
}

#[test]
fn e_in_config_starts_a_text_input_with_a_cursor() {
    let jobs = Recorder::default();
    let mut a = app();
    press(&jobs, &mut a, KeyCode::Char('e'));
    assert!(
        render(&a, 100, 30).contains("\"default\"▏"),
        "the value, cursor at its end"
    );
    // Typing goes to the input, not to the keys it would otherwise be.
    press(&jobs, &mut a, KeyCode::Home);
    press(&jobs, &mut a, KeyCode::Delete);
    type_text(&jobs, &mut a, "q2");
    assert!(!a.quit, "q is a character while typing");
    assert_eq!(a.pane(), "config", "2 is a character while typing");
    press(&jobs, &mut a, KeyCode::End);
    press(&jobs, &mut a, KeyCode::Left);
    press(&jobs, &mut a, KeyCode::Backspace);
    let screen = render(&a, 100, 30);
    assert!(screen.contains("q2defaul▏\""), "{screen}");
    press(&jobs, &mut a, KeyCode::Esc);
    assert!(render(&a, 100, 30).contains("\"default\""));
    assert!(jobs.take().is_empty());
}

#[test]
fn searching_the_data_edits_the_filter() {
    let jobs = Recorder::default();
    let mut a = app();
    select(&jobs, &mut a, "data");
    press(&jobs, &mut a, KeyCode::Char('/'));
    type_text(&jobs, &mut a, "forcx");
    press(&jobs, &mut a, KeyCode::Backspace);
    type_text(&jobs, &mut a, "e");
    let screen = render(&a, 100, 30);
    assert!(screen.contains("/force▏ ("), "{screen}");
    press(&jobs, &mut a, KeyCode::Enter);
    let screen = render(&a, 100, 30);
    assert!(screen.contains("/force ("), "{screen}");
    press(&jobs, &mut a, KeyCode::Char('1'));
    assert_eq!(a.pane(), "config", "keys act again after the search");
}

#[test]
fn bad_config_edit_shows_an_error_and_saves_nothing() {
    let jobs = Recorder::default();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("run.toml");
    let mut a = app();
    a.ctx.config_path = path.clone();
    let before = a.ctx.config.clone();
    // Select [lora] r and type a negative rank.
    let r = ftui::config::FIELDS
        .iter()
        .position(|f| f.section == "lora" && f.key == "r")
        .expect("r");
    for _ in 0..r {
        press(&jobs, &mut a, KeyCode::Char('j'));
    }
    press(&jobs, &mut a, KeyCode::Enter);
    for _ in 0..4 {
        press(&jobs, &mut a, KeyCode::Backspace);
    }
    type_text(&jobs, &mut a, "-4");
    press(&jobs, &mut a, KeyCode::Enter);
    assert_eq!(a.ctx.config, before, "a refused edit changes nothing");
    let screen = render(&a, 100, 30);
    assert!(screen.contains("must be a positive rank"), "{screen}");
    assert!(jobs.take().is_empty());
    press(&jobs, &mut a, KeyCode::Esc);
    press(&jobs, &mut a, KeyCode::Char('s'));
    assert!(path.exists());
    // A good edit, saved: the file loads back equal, and the data is prepared again.
    press(&jobs, &mut a, KeyCode::Enter);
    press(&jobs, &mut a, KeyCode::Backspace);
    type_text(&jobs, &mut a, "6");
    press(&jobs, &mut a, KeyCode::Enter);
    assert_eq!(a.ctx.config.lora.as_ref().expect("lora").r, 6);
    let asked = jobs.take();
    assert!(
        matches!(&asked[..], [(_, Request::PrepareData(c))] if **c == a.ctx.config),
        "{asked:?}"
    );
    assert!(render(&a, 100, 30).contains("(unsaved: s saves)"));
    press(&jobs, &mut a, KeyCode::Char('s'));
    assert_eq!(
        RunConfig::load(&path).expect("saved config loads"),
        a.ctx.config
    );
    assert!(!render(&a, 100, 30).contains("(unsaved"));
}

/// The data preparation the last key asked for.
fn prepare_request(jobs: &Recorder) -> (JobId, RunConfig) {
    match jobs.take().pop() {
        Some((job, Request::PrepareData(c))) => (job, *c),
        other => panic!("expected a data preparation, got {other:?}"),
    }
}

#[test]
fn masking_key_changes_the_batch_view() {
    let jobs = Recorder::default();
    let mut a = app();
    select(&jobs, &mut a, "batches");
    let before = render(&a, 120, 40);
    // First stop: assistant-only, which SmolLM2's template (no generation
    // blocks) cannot do; the engine's refusal shows in the status line.
    press(&jobs, &mut a, KeyCode::Char('m'));
    let (job, config) = prepare_request(&jobs);
    assert!(config.training.assistant_only_loss);
    assert!(render(&a, 120, 40).contains("(preparing…)"));
    let error = try_data_view(&config).expect_err("no generation blocks");
    a.on_engine(finished(job, Err(error)));
    let screen = render(&a, 200, 40);
    assert!(screen.contains("prepare data failed") && screen.contains("{% generation %}"));
    // Next: every token trained. What the engine answers is built here directly.
    press(&jobs, &mut a, KeyCode::Char('m'));
    let (job, config) = prepare_request(&jobs);
    a.on_engine(finished(
        job,
        Ok(JobOutput::Data(Box::new(data_view(&config)))),
    ));
    let after = render(&a, 120, 40);
    assert_ne!(before, after);
    assert!(after.contains("all tokens"), "{after}");
    // Two changes in a row: each is sent; only the latest one's data is shown,
    // and the older one's answer (superseded by the engine) changes nothing.
    press(&jobs, &mut a, KeyCode::Char('d'));
    let (first, _) = prepare_request(&jobs);
    press(&jobs, &mut a, KeyCode::Char('d'));
    let (second, config) = prepare_request(&jobs);
    a.on_engine(finished(first, Err(EngineError::Superseded { by: second })));
    assert!(render(&a, 120, 40).contains("(preparing…)"));
    assert!(!render(&a, 200, 40).contains("superseded"), "not a failure");
    a.on_engine(finished(
        second,
        Ok(JobOutput::Data(Box::new(data_view(&config)))),
    ));
    assert!(!render(&a, 120, 40).contains("(preparing…)"));
    // Packing flattens the batch into one padding-free row.
    press(&jobs, &mut a, KeyCode::Char('p'));
    let (job, config) = prepare_request(&jobs);
    a.on_engine(finished(
        job,
        Ok(JobOutput::Data(Box::new(data_view(&config)))),
    ));
    assert!(render(&a, 120, 40).contains("padding-free"));
}

#[test]
fn side_by_side_names_each_adapter_and_streams_into_its_column() {
    let jobs = Recorder::default();
    let mut a = app();
    select(&jobs, &mut a, "chat");
    press(&jobs, &mut a, KeyCode::Char('b'));
    let asked = send_message(&jobs, &mut a, "Hello");
    let adapters: Vec<Option<&str>> = asked
        .iter()
        .map(|(_, r)| match r {
            Request::Generate(g) => g.adapter.as_deref(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(adapters, [None, Some("trained")], "base, then the adapter");
    let (base, tuned) = (asked[0].0, asked[1].0);
    for (job, text) in [(base, "Hi from base"), (tuned, "Hello, young one")] {
        a.on_engine(Event::Started {
            job,
            task: Task::Generate,
        });
        a.on_engine(Event::Text {
            job,
            row: 0,
            text: text.into(),
        });
    }
    let screen = render(&a, 120, 30);
    assert!(screen.contains("[generating]"), "{screen}");
    let row = screen
        .lines()
        .find(|l| l.contains("Hi from base"))
        .expect("base answer");
    assert!(row.contains("Hello, young one"), "side by side:\n{screen}");
    assert!(
        row.find("Hi from base") < row.find("Hello, young one"),
        "base on the left"
    );
    // Esc stops both.
    press(&jobs, &mut a, KeyCode::Esc);
    assert_eq!(
        *jobs.controls.borrow(),
        [(base, Control::Stop), (tuned, Control::Stop)]
    );
    a.on_engine(answer(base, "Hi from base, done"));
    a.on_engine(answer(tuned, "Hello, young one, done"));
    let screen = render(&a, 120, 30);
    assert!(screen.contains("[ready]") && screen.contains("last answer"));
}

#[test]
fn a_refused_adapter_switch_says_why() {
    let jobs = Recorder::default();
    let mut a = app();
    let asked = send_message(&jobs, &mut a, "Hello");
    press(&jobs, &mut a, KeyCode::Char('a'));
    let switch = match &jobs.take()[..] {
        [(job, Request::SetAdapter(None))] => *job,
        other => panic!("{other:?}"),
    };
    a.on_engine(finished(
        switch,
        Err(EngineError::ModelBusy {
            task: Task::SetAdapter,
            holder: asked[0].0,
            holder_task: Task::Generate,
        }),
    ));
    let screen = render(&a, 200, 30);
    assert!(
        screen.contains(
            "switch adapter failed: cannot switch adapter while job #1 (generate) uses the model"
        ),
        "{screen}"
    );
}

#[test]
fn a_model_reload_refused_while_chatting_keeps_the_model() {
    let jobs = Recorder::default();
    let mut a = app();
    let chat = send_message(&jobs, &mut a, "Hello")[0].0;
    select(&jobs, &mut a, "config");
    let dtype = ftui::config::FIELDS
        .iter()
        .position(|f| f.section == "model" && f.key == "dtype")
        .expect("dtype");
    for _ in 0..dtype {
        press(&jobs, &mut a, KeyCode::Char('j'));
    }
    press(&jobs, &mut a, KeyCode::Char('e'));
    for _ in 0.."\"auto\"".len() {
        press(&jobs, &mut a, KeyCode::Backspace);
    }
    type_text(&jobs, &mut a, "\"float32\"");
    press(&jobs, &mut a, KeyCode::Enter);
    let asked = jobs.take();
    let load = match &asked[..] {
        [(job, Request::LoadModel(spec)), .., (_, Request::PrepareData(_))] => {
            assert_eq!(spec.dtype, ftui::config::DType::Float32);
            *job
        }
        other => panic!("{other:?}"),
    };
    a.on_engine(finished(
        load,
        Err(EngineError::ModelBusy {
            task: Task::LoadModel,
            holder: chat,
            holder_task: Task::Generate,
        }),
    ));
    let screen = render(&a, 200, 24);
    assert!(
        screen.contains("SmolLM2-135M-Instruct.Q4_1.gguf · llama"),
        "{screen}"
    );
    assert!(
        screen.contains(
            "load model failed: cannot load model while job #1 (generate) uses the model"
        ),
        "{screen}"
    );
}

#[test]
fn progress_on_a_local_file_reads_rather_than_downloads() {
    let jobs = Recorder::default();
    let mut a = App::new(sample_config(), PathBuf::from("sample-data/ftui.toml"));
    a.start(&jobs);
    let job = jobs
        .take()
        .into_iter()
        .find(|(_, r)| r.task() == Task::PrepareData)
        .expect("data asked for")
        .0;
    a.on_engine(Event::Started {
        job,
        task: Task::PrepareData,
    });
    a.on_engine(Event::Progress {
        job,
        progress: Progress {
            stage: Stage::Read,
            item: "sample-data/yoda_sentences.jsonl".into(),
            done: 50,
            total: 100,
        },
    });
    let screen = render(&a, 160, 24);
    assert!(
        screen.contains("[preparing data] read sample-data/yoda_sentences.jsonl 50%"),
        "{screen}"
    );
    assert!(!screen.contains("download"));
}

#[test]
fn quit_asks_while_a_job_runs() {
    let jobs = Recorder::default();
    let mut a = app();
    a.start(&jobs);
    press(&jobs, &mut a, KeyCode::Char('q'));
    assert!(a.confirm_quit && !a.quit);
    assert!(render(&a, 80, 24).contains("Quit anyway?"));
    press(&jobs, &mut a, KeyCode::Char('n'));
    assert!(!a.confirm_quit && !a.quit);
    press(&jobs, &mut a, KeyCode::Char('q'));
    press(&jobs, &mut a, KeyCode::Char('y'));
    assert!(a.quit);
    // With every job finished, q quits at once.
    let mut b = app();
    b.start(&jobs);
    for (job, _) in jobs.take() {
        b.on_engine(finished(job, Err(EngineError::Stopped)));
    }
    press(&jobs, &mut b, KeyCode::Char('q'));
    assert!(b.quit && !b.confirm_quit);
}

#[test]
fn keys_are_handled_at_once_while_the_engine_loads_a_model() {
    // The UI thread never waits on the engine: with a model loading, each key
    // and the redraw after it take far less than the 100 ms budget.
    let engine = Engine::start();
    let mut a = app();
    a.start(&engine);
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
        press(&engine, &mut a, code);
        while let Ok(e) = engine.events().try_recv() {
            a.on_engine(e);
        }
        t.draw(|f| a.draw(f)).expect("draw");
        worst = worst.max(start.elapsed());
    }
    assert!(
        worst < std::time::Duration::from_millis(100),
        "slowest key took {worst:?}"
    );
}

// ---------------------------------------------------------------------------
// The Training pane, from run folders written here, with a recording launcher.

/// Takes the app's launches and hands back the replies a test queues.
#[derive(Clone, Default)]
struct Launches {
    asked: Rc<RefCell<Vec<Launch>>>,
    replies: Rc<RefCell<Vec<LaunchReply>>>,
}

impl Launcher for Launches {
    fn launch(&self, launch: Launch) {
        self.asked.borrow_mut().push(launch);
    }
    fn replies(&self) -> Vec<LaunchReply> {
        std::mem::take(&mut self.replies.borrow_mut())
    }
}

impl Launches {
    fn take(&self) -> Vec<Launch> {
        std::mem::take(&mut self.asked.borrow_mut())
    }
}

/// A run folder: `run.json` from `info` (pid and host filled in) and
/// `metrics.jsonl` from `lines`.
fn write_run(dir: &Path, info: serde_json::Value, alive: bool, lines: &[serde_json::Value]) {
    std::fs::create_dir_all(dir).expect("run folder");
    let mut info = info;
    info["pid"] = if alive {
        std::process::id().into()
    } else {
        2_147_483_646u32.into()
    };
    info["host"] = ftui::process::hostname().into();
    info["engine"] = "ftui".into();
    std::fs::write(dir.join("run.json"), info.to_string()).expect("run.json");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("metrics.jsonl"), text).expect("metrics");
}

/// `train` lines for steps 1..=last, with an eval every 10 steps and a
/// checkpoint at 20.
fn train_lines(last: u64) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for step in 1..=last {
        let loss = 0.8 + 2.0 * (-(step as f64) / 15.0).exp() + 0.05 * ((step % 3) as f64);
        lines.push(serde_json::json!({
            "kind": "train", "step": step, "epoch": step as f64 / 50.0, "loss": loss,
            "learning_rate": 2e-4 * (1.0 - step as f64 / 100.0), "grad_norm": 1.0 + 1.0 / step as f64,
            "num_tokens": (step * 2048) as f64, "mean_token_accuracy": 0.4 + step as f64 / 200.0,
            "entropy": 1.5, "tokens_per_second": 850.0, "memory_bytes": 1_288_490_188u64,
        }));
        if step % 10 == 0 {
            lines.push(serde_json::json!({
                "kind": "eval", "step": step, "eval_loss": loss + 0.1, "eval_mean_token_accuracy": 0.5,
            }));
        }
        if step == 20 {
            lines.push(serde_json::json!({
                "kind": "checkpoint", "step": 20, "path": "/somewhere/checkpoint-20",
            }));
        }
    }
    lines
}

fn info(status: &str, step: u64, max: u64, took: u64) -> serde_json::Value {
    serde_json::json!({
        "status": status, "step": step, "max_steps": max,
        "started": "2025-01-31T12:00:00Z",
        "updated": format!("2025-01-31T12:{:02}:{:02}Z", took / 60, took % 60),
    })
}

/// Writes one scenario's runs under `root/<scenario>/runs/` and returns the
/// output_dir the config names.
fn scenario(root: &Path, name: &str) -> PathBuf {
    let runs = root.join(name).join("runs");
    let out = runs.join("yoda");
    match name {
        "running" => {
            let mut lines = train_lines(40);
            lines.insert(
                5,
                serde_json::json!({"kind": "warning", "message": "out of memory at 8 rows per micro-batch: retrying with 4"}),
            );
            write_run(&out, info("running", 40, 100, 120), true, &lines);
            std::fs::write(
                out.join("train.log"),
                "ftui: 100 steps of 8 rows, 2 epochs\nstep 39/100 loss 1.02\rstep 40/100 loss 0.99\n",
            )
            .expect("train.log");
            let mut older = info("finished", 100, 100, 300);
            older["started"] = "2025-01-30T09:00:00Z".into();
            let mut done = train_lines(100);
            done.push(serde_json::json!({"kind": "end", "status": "finished", "train_runtime": 300.0, "train_loss": 1.1}));
            write_run(&runs.join("older"), older, false, &done);
            let mut crashed = info("running", 7, 100, 30);
            crashed["started"] = "2025-01-29T09:00:00Z".into();
            write_run(&runs.join("crashed"), crashed, false, &train_lines(7));
        }
        "paused" => write_run(&out, info("paused", 25, 100, 75), true, &train_lines(25)),
        "finished" => {
            let mut lines = train_lines(100);
            lines.push(serde_json::json!({"kind": "end", "status": "finished", "train_runtime": 300.0, "train_loss": 1.1}));
            write_run(&out, info("finished", 100, 100, 300), false, &lines);
            std::fs::write(out.join("adapter_config.json"), "{}").expect("adapter");
        }
        "failed-check" => {
            let error = "[training] learning_rate: must be above 0 (got 0); [lora] r: must be a positive rank (got 0)";
            let mut i = info("failed", 0, 0, 1);
            i["max_steps"] = serde_json::Value::Null;
            i["error"] = error.into();
            let end = serde_json::json!({"kind": "end", "status": "failed", "train_runtime": 1.0, "train_loss": null, "error": error});
            write_run(&out, i, false, &[end]);
        }
        "nan" => {
            let error =
                "the loss became NaN at step 13; lower the learning rate or turn on max_grad_norm";
            let mut i = info("failed", 13, 100, 40);
            i["error"] = error.into();
            let mut lines = train_lines(12);
            let mut bad = train_lines(13).pop().expect("a line");
            bad["loss"] = serde_json::Value::Null;
            lines.push(bad);
            lines.push(serde_json::json!({"kind": "end", "status": "failed", "train_runtime": 40.0, "train_loss": null, "error": error}));
            write_run(&out, i, false, &lines);
        }
        other => panic!("no scenario {other}"),
    }
    out
}

/// An app whose config trains into `out`, with a recording launcher, after
/// one tick, on the Training pane.
fn training_app(out: &Path, jobs: &Recorder) -> (App, Launches) {
    let mut a = app();
    let mut c = a.ctx.config.clone();
    c.training.output_dir = out.display().to_string();
    a.ctx.config = c;
    let launches = Launches::default();
    a.set_launcher(Box::new(launches.clone()));
    a.on_tick();
    select(jobs, &mut a, "training");
    (a, launches)
}

fn render_in(a: &App, tmp: &Path, w: u16, h: u16) -> String {
    render(a, w, h).replace(&tmp.display().to_string(), "<tmp>")
}

#[test]
fn the_training_pane_matches_its_snapshots_for_each_kind_of_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let jobs = Recorder::default();
    for name in ["running", "paused", "finished", "failed-check", "nan"] {
        let out = scenario(tmp.path(), name);
        let (a, _) = training_app(&out, &jobs);
        for (w, h) in [(80, 24), (120, 40)] {
            let screen = render_in(&a, tmp.path(), w, h);
            assert!(!screen.contains("<tmp>"), "no path on screen:\n{screen}");
            check_snapshot(&format!("training-{name}-{w}x{h}"), &screen);
        }
    }
}

#[test]
fn the_training_pane_shows_what_each_run_says() {
    let tmp = tempfile::tempdir().expect("tmp");
    let jobs = Recorder::default();
    let (a, _) = training_app(&scenario(tmp.path(), "running"), &jobs);
    let screen = render(&a, 120, 40);
    assert!(
        screen.contains("▶ yoda"),
        "the live run is attached:\n{screen}"
    );
    assert!(screen.contains("ETA 3m 00s"), "{screen}");
    assert!(
        screen.contains("dead"),
        "a running run whose process is gone:\n{screen}"
    );
    assert!(screen.contains("! out of memory"), "the warning:\n{screen}");
    assert!(
        screen.contains("checkpoint at step 20: checkpoint-20"),
        "{screen}"
    );
    assert!(screen.contains("memory     1.3GB"), "memory:\n{screen}");
    assert!(
        screen.contains("step 40/100 loss 0.99"),
        "the output's tail:\n{screen}"
    );
    assert!(
        !screen.contains("step 39/100"),
        "a rewritten line as it stands last"
    );

    let (a, _) = training_app(&scenario(tmp.path(), "failed-check"), &jobs);
    let screen = render(&a, 120, 40);
    assert!(
        screen.contains("[training] learning_rate: must be above 0"),
        "{screen}"
    );
    assert!(
        screen.contains("[lora] r: must be a positive rank"),
        "each problem on its line:\n{screen}"
    );

    let (a, _) = training_app(&scenario(tmp.path(), "nan"), &jobs);
    let screen = render(&a, 120, 40);
    assert!(
        screen.contains("the loss became NaN at step 13"),
        "{screen}"
    );
    assert!(screen.contains("NaN"), "{screen}");
}

#[test]
fn start_spawns_a_detached_run_and_attaches_to_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let jobs = Recorder::default();
    let out = tmp.path().join("runs/yoda");
    let (mut a, launches) = training_app(&out, &jobs);
    assert!(render(&a, 100, 30).contains("No runs under"));
    press(&jobs, &mut a, KeyCode::Char('r'));
    assert_eq!(
        launches.take(),
        [Launch::Start {
            config: PathBuf::from("sample-data/ftui.toml")
        }]
    );
    // The run comes up and says where it is.
    write_run(&out, info("running", 3, 100, 9), true, &train_lines(3));
    launches
        .replies
        .borrow_mut()
        .push(LaunchReply::Started { dir: out.clone() });
    a.on_tick();
    let screen = render_in(&a, tmp.path(), 220, 40);
    assert!(
        screen.contains("training started in <tmp>/runs/yoda"),
        "{screen}"
    );
    assert!(
        screen.contains("▶ yoda") && screen.contains("running · 3/100"),
        "{screen}"
    );
    // A second start while it runs is refused here, before any process.
    press(&jobs, &mut a, KeyCode::Char('r'));
    assert!(launches.take().is_empty());
    assert!(render(&a, 220, 40).contains("is still going"));
    assert!(jobs.take().is_empty(), "the engine is not asked");
    assert_eq!(a.farewell().len(), 1, "quitting says the run goes on");
}

#[test]
fn start_refuses_an_unsaved_config() {
    let tmp = tempfile::tempdir().expect("tmp");
    let jobs = Recorder::default();
    let (mut a, launches) = training_app(&tmp.path().join("runs/yoda"), &jobs);
    a.ctx.dirty = true;
    press(&jobs, &mut a, KeyCode::Char('r'));
    assert!(launches.take().is_empty());
    assert!(render(&a, 220, 30).contains("save the config first"));
}

#[test]
fn pause_resume_save_and_stop_go_to_the_runs_socket() {
    let tmp = tempfile::tempdir().expect("tmp");
    let jobs = Recorder::default();
    let out = scenario(tmp.path(), "running");
    let (mut a, launches) = training_app(&out, &jobs);
    let control = |command| Launch::Control {
        dir: out.clone(),
        command,
    };
    press(&jobs, &mut a, KeyCode::Char(' '));
    press(&jobs, &mut a, KeyCode::Char('u'));
    press(&jobs, &mut a, KeyCode::Char('w'));
    assert_eq!(
        launches.take(),
        [
            control(RunCommand::Pause),
            control(RunCommand::Resume),
            control(RunCommand::Save)
        ]
    );
    launches.replies.borrow_mut().push(LaunchReply::Replied {
        command: RunCommand::Save,
        message: "a checkpoint will be written after the current step".into(),
    });
    a.on_tick();
    assert!(render(&a, 220, 30).contains("save: a checkpoint will be written"));
    // Stop asks first; anything but y keeps the run going, and q is an answer.
    press(&jobs, &mut a, KeyCode::Char('x'));
    assert!(launches.take().is_empty());
    assert!(render(&a, 120, 30).contains("Stop the run in yoda?"));
    press(&jobs, &mut a, KeyCode::Char('q'));
    assert!(!a.quit && launches.take().is_empty());
    assert!(render(&a, 220, 30).contains("the run goes on"));
    press(&jobs, &mut a, KeyCode::Char('x'));
    press(&jobs, &mut a, KeyCode::Char('y'));
    assert_eq!(launches.take(), [control(RunCommand::Stop)]);
    launches.replies.borrow_mut().push(LaunchReply::Failed {
        what: "stop".into(),
        error: "no run answers on control.sock".into(),
    });
    a.on_tick();
    assert!(render(&a, 220, 30).contains("stop: no run answers on control.sock"));
    assert!(jobs.take().is_empty());
}

#[test]
fn a_finished_run_takes_no_commands_but_opens_chat_with_its_adapter() {
    let tmp = tempfile::tempdir().expect("tmp");
    let jobs = Recorder::default();
    let out = scenario(tmp.path(), "finished");
    let (mut a, launches) = training_app(&out, &jobs);
    press(&jobs, &mut a, KeyCode::Char(' '));
    press(&jobs, &mut a, KeyCode::Char('x'));
    assert!(launches.take().is_empty());
    assert!(render(&a, 220, 30).contains("cannot stop: the run in yoda is finished"));
    press(&jobs, &mut a, KeyCode::Char('C'));
    assert_eq!(a.pane(), "chat");
    let asked = jobs.take();
    assert!(
        matches!(&asked[..], [(_, Request::LoadAdapter { dir, name })] if *dir == out && name == "yoda"),
        "{asked:?}"
    );
}

#[test]
fn enter_attaches_to_a_listed_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let jobs = Recorder::default();
    let (mut a, _) = training_app(&scenario(tmp.path(), "running"), &jobs);
    let row = |screen: &str, name: &str| -> String {
        screen
            .lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no row {name}:\n{screen}"))
            .to_string()
    };
    let screen = render(&a, 120, 40);
    assert!(row(&screen, "yoda").contains("▶"), "{screen}");
    // The list is newest first: yoda, older, crashed.
    press(&jobs, &mut a, KeyCode::Char('j'));
    press(&jobs, &mut a, KeyCode::Enter);
    a.on_tick();
    let screen = render(&a, 120, 40);
    assert!(row(&screen, "older").contains("▶"), "{screen}");
    assert!(!row(&screen, "yoda").contains("▶"), "{screen}");
    assert!(screen.contains("ended finished after 5m 00s"), "{screen}");
    // Esc follows the live run again.
    press(&jobs, &mut a, KeyCode::Esc);
    a.on_tick();
    assert!(row(&render(&a, 120, 40), "yoda").contains("▶"));
}

#[test]
fn the_chart_switches_between_the_whole_run_and_the_recent_steps() {
    let tmp = tempfile::tempdir().expect("tmp");
    let jobs = Recorder::default();
    let out = tmp.path().join("runs/long");
    write_run(
        &out,
        info("running", 500, 1000, 600),
        true,
        &train_lines(500),
    );
    let (mut a, _) = training_app(&out, &jobs);
    let whole = render(&a, 120, 40);
    assert!(
        whole.contains("eval, whole run") && whole.contains("step 500"),
        "{whole}"
    );
    press(&jobs, &mut a, KeyCode::Char('v'));
    let recent = render(&a, 120, 40);
    assert!(recent.contains("eval, last 100 logged steps"), "{recent}");
    assert!(
        recent.contains("401"),
        "the recent window starts later:\n{recent}"
    );
}

#[test]
fn keys_stay_quick_while_a_long_run_streams_in() {
    let tmp = tempfile::tempdir().expect("tmp");
    let jobs = Recorder::default();
    let out = tmp.path().join("runs/long");
    // About 8 MB of metrics: read a bounded piece per tick.
    write_run(
        &out,
        info("running", 30_000, 60_000, 3000),
        true,
        &train_lines(30_000),
    );
    let mut a = app();
    a.ctx.config.training.output_dir = out.display().to_string();
    a.set_launcher(Box::new(Launches::default()));
    select(&jobs, &mut a, "training");
    let mut t = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
    let mut worst = std::time::Duration::ZERO;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(out.join("metrics.jsonl"))
        .expect("metrics");
    for (i, line) in train_lines(30_100)
        .into_iter()
        .skip(33_000)
        .take(60)
        .enumerate()
    {
        use std::io::Write;
        writeln!(file, "{line}").expect("append");
        let start = std::time::Instant::now();
        a.on_tick();
        press(
            &jobs,
            &mut a,
            if i % 2 == 0 {
                KeyCode::Char('v')
            } else {
                KeyCode::Char('j')
            },
        );
        t.draw(|f| a.draw(f)).expect("draw");
        worst = worst.max(start.elapsed());
    }
    assert!(
        worst < std::time::Duration::from_millis(100),
        "slowest tick, key and frame took {worst:?}"
    );
}
