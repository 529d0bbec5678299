//! The engine's jobs on the tiny Llama fixture: ids, events, per-job stop,
//! controls reaching a running generation, model changes refused while a
//! generation needs the model, typed errors, adapters named per request, and
//! data preparation beside a busy model with the newest request winning.

use ftui::config::{AttnImplementation, DType, RunConfig};
use ftui::engine::{
    Control, Engine, EngineError, Event, GenerateRequest, JobId, JobOutput, Jobs, ModelSpec,
    Prompt, Request, ScoreRequest, Task,
};
use ftui::generate::{FinishReason, SamplingParams};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tiny_llama() -> String {
    root()
        .join("tests/fixtures/models/llama")
        .display()
        .to_string()
}

fn load(source: &str) -> Request {
    Request::LoadModel(ModelSpec {
        source: source.into(),
        dtype: DType::Float32,
        device: "cpu".into(),
        attn: AttnImplementation::Sdpa,
        quantization: None,
    })
}

/// A generation that runs until stopped (or for `tokens` tokens).
fn generate(tokens: usize, adapter: Option<&str>) -> Request {
    Request::Generate(GenerateRequest {
        prompts: vec![Prompt::Text("Hello there".into())],
        params: SamplingParams {
            max_new_tokens: tokens,
            ignore_eos: true,
            ..SamplingParams::default()
        },
        adapter: adapter.map(String::from),
        chat_template: None,
    })
}

fn score(adapter: Option<&str>) -> Request {
    Request::Score(ScoreRequest {
        prompt: Prompt::Text("The Force is strong in you".into()),
        adapter: adapter.map(String::from),
        chat_template: None,
    })
}

/// The next event, failing after a generous wait instead of hanging.
fn next(engine: &Engine) -> Event {
    engine
        .events()
        .recv_timeout(Duration::from_secs(120))
        .expect("an event within two minutes")
}

/// Events until `job` finishes; returns its outcome and every event seen.
fn until_finished(engine: &Engine, job: JobId) -> (Result<JobOutput, EngineError>, Vec<Event>) {
    let mut seen = Vec::new();
    loop {
        let e = next(engine);
        if let Event::Finished { job: j, outcome } = &e {
            if *j == job {
                return (outcome.clone(), seen);
            }
        }
        seen.push(e);
    }
}

/// Waits for the first text of generation `job`.
fn first_text(engine: &Engine, job: JobId) {
    loop {
        match next(engine) {
            Event::Text { job: j, .. } if j == job => return,
            Event::Finished { job: j, outcome } if j == job => {
                panic!("finished before any text: {outcome:?}")
            }
            _ => {}
        }
    }
}

fn loaded_engine() -> Engine {
    let engine = Engine::start();
    let out = engine.run(load(&tiny_llama()), |_| {});
    assert!(matches!(out, Ok(JobOutput::Model(_))), "{out:?}");
    engine
}

fn generation(out: Result<JobOutput, EngineError>) -> ftui::engine::GenerationResult {
    match out {
        Ok(JobOutput::Generated { results, .. }) => results.into_iter().next().expect("one"),
        other => panic!("expected a generation, got {other:?}"),
    }
}

#[test]
fn job_ids_are_distinct_and_every_event_names_its_job() {
    let engine = Engine::start();
    let load_job = engine.submit(load(&tiny_llama()));
    let gen_job = engine.submit(generate(5, None));
    assert_ne!(load_job, gen_job);
    let mut started = Vec::new();
    let mut finished = Vec::new();
    let mut texts = 0;
    while finished.len() < 2 {
        match next(&engine) {
            Event::Started { job, task } => started.push((job, task)),
            Event::Text { job, .. } => {
                assert_eq!(job, gen_job);
                texts += 1;
            }
            Event::Finished { job, outcome } => {
                assert!(outcome.is_ok(), "{job}: {outcome:?}");
                finished.push(job);
            }
            Event::Progress { job, .. } => assert_eq!(job, load_job),
        }
    }
    assert_eq!(
        started,
        [(load_job, Task::LoadModel), (gen_job, Task::Generate)]
    );
    assert_eq!(finished, [load_job, gen_job], "model jobs run in order");
    assert!(texts > 0, "the generation streamed text");
    assert!(!engine.is_busy());
}

#[test]
fn a_stop_reaches_only_its_own_job() {
    let engine = loaded_engine();
    let long = engine.submit(generate(100_000, None));
    let queued = engine.submit(generate(4, None));
    let stopped_early = engine.submit(generate(4, None));
    // Stopped while it waits: it never starts.
    engine.control(stopped_early, Control::Stop);
    first_text(&engine, long);
    engine.control(long, Control::Stop);
    let (out, _) = until_finished(&engine, long);
    assert_eq!(generation(out).finish, FinishReason::Cancelled);
    let (out, _) = until_finished(&engine, queued);
    assert_eq!(generation(out).finish, FinishReason::Length, "not stopped");
    let (out, events) = until_finished(&engine, stopped_early);
    assert_eq!(out.err(), Some(EngineError::Stopped));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Started { job, .. } if *job == stopped_early)),
        "a job stopped while waiting never starts"
    );
}

#[test]
fn pause_and_resume_reach_a_running_generation() {
    let engine = loaded_engine();
    let job = engine.submit(generate(100_000, None));
    first_text(&engine, job);
    engine.control(job, Control::Pause);
    // What was made before the pause came is still on its way.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(e) = engine.events().try_recv() {
        assert!(!matches!(e, Event::Finished { .. }), "{e:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        engine.events().try_recv().is_err(),
        "nothing comes while paused"
    );
    assert!(engine.is_busy());
    engine.control(job, Control::Resume);
    first_text(&engine, job);
    // SaveNow means nothing to a generation; it carries on.
    engine.control(job, Control::SaveNow);
    first_text(&engine, job);
    engine.control(job, Control::Stop);
    let (out, _) = until_finished(&engine, job);
    assert_eq!(generation(out).finish, FinishReason::Cancelled);
}

#[test]
fn model_changes_are_refused_while_a_generation_runs() {
    let engine = loaded_engine();
    let job = engine.submit(generate(100_000, None));
    first_text(&engine, job);
    for change in [
        load(&tiny_llama()),
        Request::UnloadModel,
        Request::SetAdapter(None),
    ] {
        let task = change.task();
        let refused = engine.submit(change);
        let (out, _) = until_finished(&engine, refused);
        assert_eq!(
            out.err(),
            Some(EngineError::ModelBusy {
                task,
                holder: job,
                holder_task: Task::Generate
            })
        );
    }
    engine.control(job, Control::Stop);
    let (out, _) = until_finished(&engine, job);
    assert_eq!(generation(out).finish, FinishReason::Cancelled);
    // Once the generation is over the same change goes through.
    let out = engine.run(Request::UnloadModel, |_| {});
    assert!(matches!(out, Ok(JobOutput::Unloaded)), "{out:?}");
}

#[test]
fn failures_come_back_as_typed_errors() {
    let engine = Engine::start();
    let out = engine.run(generate(3, None), |_| {});
    assert_eq!(out.err(), Some(EngineError::NoModel));
    let missing = root().join("tests/fixtures/models/no-such-model");
    match engine.run(load(&missing.display().to_string()), |_| {}) {
        Err(EngineError::ModelNotFound(message)) => {
            assert!(message.contains("no-such-model"), "{message}")
        }
        other => panic!("expected ModelNotFound, got {other:?}"),
    }
    let mut bad_device = load(&tiny_llama());
    if let Request::LoadModel(spec) = &mut bad_device {
        spec.device = "tpu".into();
    }
    assert!(matches!(
        engine.run(bad_device, |_| {}),
        Err(EngineError::Device(_))
    ));
    engine.run(load(&tiny_llama()), |_| {}).expect("loads");
    assert_eq!(
        engine
            .run(Request::SetAdapter(Some("nope".into())), |_| {})
            .err(),
        Some(EngineError::UnknownAdapter {
            name: "nope".into(),
            loaded: vec![]
        })
    );
    let out = engine.run(
        Request::LoadAdapter {
            dir: root().join("tests/fixtures/lora/no-such-adapter"),
            name: "x".into(),
        },
        |_| {},
    );
    assert!(matches!(out, Err(EngineError::Adapter(_))), "{out:?}");
    let mut no_data = data_config(64);
    no_data.data = None;
    let out = engine.run(Request::PrepareData(no_data), |_| {});
    assert_eq!(out.err(), Some(EngineError::NoDataSection));
}

fn mean_nll(out: Result<JobOutput, EngineError>) -> f64 {
    match out {
        Ok(JobOutput::Scored(s)) => s.mean_nll,
        other => panic!("expected a score, got {other:?}"),
    }
}

#[test]
fn each_request_names_its_adapter_and_the_active_one_stays() {
    let engine = loaded_engine();
    let base = mean_nll(engine.run(score(None), |_| {}));
    let out = engine.run(
        Request::LoadAdapter {
            dir: root().join("tests/fixtures/lora/peft-llama"),
            name: "yoda".into(),
        },
        |_| {},
    );
    match out {
        Ok(JobOutput::Model(info)) => assert_eq!(info.active_adapter.as_deref(), Some("yoda")),
        other => panic!("{other:?}"),
    }
    // The base model, asked for by name while the adapter is active.
    assert_eq!(mean_nll(engine.run(score(None), |_| {})), base);
    let with = mean_nll(engine.run(score(Some("yoda")), |_| {}));
    assert!((with - base).abs() > 1e-4, "the adapter changes the score");
    let base_text = generation(engine.run(generate(6, None), |_| {})).text;
    engine
        .run(Request::SetAdapter(None), |_| {})
        .expect("deactivates");
    let adapter_text = generation(engine.run(generate(6, Some("yoda")), |_| {})).text;
    let out = engine.run(Request::SetAdapter(None), |_| {});
    match out {
        Ok(JobOutput::Model(info)) => {
            assert_eq!(
                info.active_adapter, None,
                "a request's adapter does not stay"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        base_text,
        generation(engine.run(generate(6, None), |_| {})).text
    );
    assert_eq!(
        mean_nll(engine.run(score(Some("yoda")), |_| {})),
        with,
        "{adapter_text:?}"
    );
}

/// A config for the tiny model and the Yoda sample data.
fn data_config(max_length: usize) -> Box<RunConfig> {
    let text = format!(
        "[model]\nsource = {:?}\n[data]\nsource = {:?}\nformat = \"prompt_completion\"\ncolumns = {{ sentence = \"prompt\", translation_extra = \"completion\" }}\n[training]\nmax_length = {max_length}\n",
        tiny_llama(),
        root()
            .join("sample-data/yoda_sentences.jsonl")
            .display()
            .to_string(),
    );
    Box::new(RunConfig::parse(&text, Path::new("engine-test.toml")).expect("config"))
}

#[test]
fn data_is_prepared_beside_a_busy_model_and_the_latest_request_wins() {
    let engine = loaded_engine();
    let busy = engine.submit(generate(100_000, None));
    first_text(&engine, busy);
    let first = engine.submit(Request::PrepareData(data_config(64)));
    let second = engine.submit(Request::PrepareData(data_config(32)));
    let start = Instant::now();
    let (out, events) = until_finished(&engine, first);
    assert_eq!(out.err(), Some(EngineError::Superseded { by: second }));
    let (out, events_2) = until_finished(&engine, second);
    let view = match out {
        Ok(JobOutput::Data(view)) => view,
        other => panic!("expected data, got {other:?}"),
    };
    assert_eq!(view.options.max_length, 32, "the newer request's settings");
    assert!(view.report.examples > 0);
    assert!(
        !events
            .iter()
            .chain(&events_2)
            .any(|e| matches!(e, Event::Finished { job, .. } if *job == busy)),
        "the data came while the generation was still running"
    );
    // Progress for a local file says it is read, not downloaded.
    assert!(events_2.iter().chain(&events).all(|e| match e {
        Event::Progress { progress, .. } => progress.stage == ftui::engine::Stage::Read,
        _ => true,
    }));
    assert!(engine.is_busy());
    engine.control(busy, Control::Stop);
    let (out, _) = until_finished(&engine, busy);
    assert_eq!(generation(out).finish, FinishReason::Cancelled);
    assert!(start.elapsed() < Duration::from_secs(120));
}

/// The `use` paths of every Rust file under `dir`, with the file they are in.
fn uses(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(uses(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read");
            for line in text.lines().map(str::trim) {
                if line.starts_with("use ") || line.starts_with("pub use ") {
                    out.push((path.clone(), line.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn the_workbench_speaks_to_the_engine_through_the_protocol_only() {
    let protocol = std::fs::read_to_string(root().join("src/engine/protocol.rs")).expect("read");
    assert!(
        !protocol.contains("tch::") && !protocol.contains("use tch"),
        "the protocol is free of libtorch"
    );
    for (file, line) in uses(&root().join("src/tui")) {
        let engine_outside_protocol =
            line.contains("crate::engine") && !line.contains("crate::engine::protocol");
        let below_the_engine = ["crate::model", "crate::lora", "crate::generate", "tch::"]
            .iter()
            .any(|m| line.contains(m));
        assert!(
            !engine_outside_protocol && !below_the_engine,
            "{}: {line}",
            file.display()
        );
    }
}
