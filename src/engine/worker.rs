//! The model's thread: it owns the loaded model (libtorch tensors are not
//! `Sync`) and runs the jobs that use it one at a time, one method per
//! request. A failure, a libtorch panic included, ends the job with a typed
//! [`EngineError`]; the thread carries on.

use super::jobs::{EventSink, JobControl};
use super::protocol::{
    EngineError, Event, GenerateRequest, GenerationResult, JobId, JobOutput, ModelSpec, Prompt,
    Request, ScoreRequest,
};
use super::views::model_info;
use crate::model::LoadOptions;
use crate::source::{load_model, LoadedModel, ModelSource};
use crossbeam_channel::Receiver;
use std::panic::AssertUnwindSafe;
use std::path::Path;

/// A job for the model's thread.
pub(crate) struct ModelJob {
    pub(crate) job: JobId,
    pub(crate) request: Request,
    pub(crate) control: JobControl,
}

pub(crate) struct ModelWorker {
    sink: EventSink,
    model: Option<LoadedModel>,
}

/// A panic's message, cut to one line.
pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    let text = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    crate::torch::first_line_with_advice(&text)
}

/// Runs `job` with a panic turned into [`EngineError::Panic`], and says
/// `Started` first unless it was stopped while it waited.
pub(crate) fn run_job(
    sink: &EventSink,
    job: JobId,
    task: super::protocol::Task,
    control: &JobControl,
    work: impl FnOnce() -> Result<JobOutput, EngineError>,
) -> Result<JobOutput, EngineError> {
    if control.should_stop() {
        return Err(EngineError::Stopped);
    }
    sink.send(Event::Started { job, task });
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|p| Err(EngineError::Panic(panic_message(p))));
    if let Err(e) = &outcome {
        log::error!("{task} {job}: {e}");
    }
    outcome
}

impl ModelWorker {
    pub(crate) fn new(sink: EventSink) -> Self {
        ModelWorker { sink, model: None }
    }

    pub(crate) fn run(mut self, jobs: Receiver<ModelJob>) {
        while let Ok(ModelJob {
            job,
            request,
            control,
        }) = jobs.recv()
        {
            let sink = self.sink.clone();
            let outcome = run_job(&sink, job, request.task(), &control, || {
                self.handle(job, &control, request)
            });
            sink.finish(job, outcome);
        }
    }

    fn handle(
        &mut self,
        job: JobId,
        control: &JobControl,
        request: Request,
    ) -> Result<JobOutput, EngineError> {
        match request {
            Request::LoadModel(spec) => self.load_model(job, &spec),
            Request::UnloadModel => self.unload_model(),
            Request::LoadAdapter { dir, name } => self.load_adapter(&dir, &name),
            Request::SetAdapter(name) => self.set_adapter(name.as_deref()),
            Request::Generate(g) => self.generate(job, control, &g),
            Request::Score(s) => self.score(&s),
            // The engine sends these to the data thread; this one has no dataset.
            Request::PrepareData(_) => Err(EngineError::Panic(
                "data preparation was sent to the model's thread".into(),
            )),
        }
    }

    fn loaded(&self) -> Result<&LoadedModel, EngineError> {
        self.model.as_ref().ok_or(EngineError::NoModel)
    }

    fn loaded_mut(&mut self) -> Result<&mut LoadedModel, EngineError> {
        self.model.as_mut().ok_or(EngineError::NoModel)
    }

    fn model_output(&self) -> Result<JobOutput, EngineError> {
        Ok(JobOutput::Model(Box::new(model_info(self.loaded()?))))
    }

    /// Drops the model first: the old and the new one need not fit together.
    fn load_model(&mut self, job: JobId, spec: &ModelSpec) -> Result<JobOutput, EngineError> {
        self.model = None;
        let device = crate::device::parse_device(&spec.device)
            .map_err(|e| EngineError::Device(e.to_string()))?;
        let source = ModelSource::parse(&spec.source)
            .map_err(|e| EngineError::ModelNotFound(e.to_string()))?;
        let opts = LoadOptions {
            dtype: spec.dtype,
            device,
            attn: spec.attn,
            quantization: spec.quantization.clone(),
        };
        let local = !matches!(source, ModelSource::Hub(_));
        let mut progress = self.sink.progress(job, local);
        let loaded = load_model(&source, &opts, &mut progress)
            .map_err(|e| EngineError::ModelLoad(e.to_string()))?;
        self.model = Some(loaded);
        self.model_output()
    }

    fn unload_model(&mut self) -> Result<JobOutput, EngineError> {
        self.model = None;
        Ok(JobOutput::Unloaded)
    }

    fn load_adapter(&mut self, dir: &Path, name: &str) -> Result<JobOutput, EngineError> {
        let m = self.loaded_mut()?;
        crate::lora::load_adapter(&mut m.model, dir, name)
            .map_err(|e| EngineError::Adapter(e.to_string()))?;
        self.model_output()
    }

    fn set_adapter(&mut self, name: Option<&str>) -> Result<JobOutput, EngineError> {
        activate(self.loaded_mut()?, name)?;
        self.model_output()
    }

    fn generate(
        &mut self,
        job: JobId,
        control: &JobControl,
        req: &GenerateRequest,
    ) -> Result<JobOutput, EngineError> {
        let sink = &self.sink;
        let m = self.model.as_mut().ok_or(EngineError::NoModel)?;
        with_adapter(m, req.adapter.as_deref(), |m| {
            let rendered = req
                .prompts
                .iter()
                .map(|p| prompt_ids(m, req.chat_template.as_deref(), p))
                .collect::<Result<Vec<_>, _>>()?;
            let ids: Vec<Vec<u32>> = rendered.iter().map(|r| r.1.clone()).collect();
            // Called for each new token: the job's check point.
            let mut on_text = |row: usize, text: &str| {
                if !text.is_empty() {
                    sink.send(Event::Text {
                        job,
                        row,
                        text: text.to_string(),
                    });
                }
                control.wait_if_paused();
                !control.should_stop()
            };
            let (gens, stats) =
                crate::generate::generate(&m.model, &m.tokenizer, &ids, &req.params, &mut on_text)
                    .map_err(|e| EngineError::Torch(crate::torch::torch_message(&e)))?;
            let results = gens
                .into_iter()
                .zip(rendered)
                .map(|(g, (prompt_text, prompt_ids))| GenerationResult {
                    prompt_text,
                    prompt_ids,
                    token_ids: g.token_ids,
                    text: g.text,
                    finish: g.finish,
                })
                .collect();
            Ok(JobOutput::Generated { results, stats })
        })
    }

    fn score(&mut self, req: &ScoreRequest) -> Result<JobOutput, EngineError> {
        with_adapter(self.loaded_mut()?, req.adapter.as_deref(), |m| {
            let ids = prompt_ids(m, req.chat_template.as_deref(), &req.prompt)?.1;
            let s = crate::score::score(&m.model, &ids)
                .map_err(|e| EngineError::Torch(crate::torch::torch_message(&e)))?;
            Ok(JobOutput::Scored(s))
        })
    }
}

/// Activates adapter `name` (or none: the base model).
fn activate(m: &mut LoadedModel, name: Option<&str>) -> Result<(), EngineError> {
    if let Some(n) = name {
        let loaded = crate::lora::adapter_names(&m.model);
        if !loaded.iter().any(|a| a == n) {
            return Err(EngineError::UnknownAdapter {
                name: n.to_string(),
                loaded,
            });
        }
    }
    crate::lora::set_active(&mut m.model, name).map_err(|e| EngineError::Adapter(e.to_string()))
}

/// Runs `work` with adapter `name` active, then puts the active adapter back
/// as it was (after a panic too), so one request's choice never leaks into
/// the next.
fn with_adapter<T>(
    m: &mut LoadedModel,
    name: Option<&str>,
    work: impl FnOnce(&LoadedModel) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    let previous = m.model.active_adapter.clone();
    if previous.as_deref() == name {
        return work(m);
    }
    activate(m, name)?;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| work(m)));
    let restored = activate(m, previous.as_deref());
    let out = result.unwrap_or_else(|p| std::panic::resume_unwind(p))?;
    restored?;
    Ok(out)
}

/// The text and token ids a prompt becomes.
fn prompt_ids(
    m: &LoadedModel,
    template: Option<&str>,
    p: &Prompt,
) -> Result<(String, Vec<u32>), EngineError> {
    let encode = |text: &str, special: bool| {
        m.tokenizer
            .encode(text, special)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    };
    match p {
        Prompt::Text(t) => Ok((t.clone(), encode(t, true)?)),
        Prompt::Ids(ids) => Ok((m.tokenizer.decode(ids, false), ids.clone())),
        Prompt::Messages(msgs) => {
            let text = render_chat(m, template, msgs)?;
            // The template already wrote every special token it wants.
            let ids = encode(&text, false)?;
            Ok((text, ids))
        }
    }
}

/// Renders a conversation, with its generation prompt, with `template` (a
/// `[template] chat_template` value: a built-in name, a file or a template)
/// or else the model's own.
fn render_chat(
    m: &LoadedModel,
    template: Option<&str>,
    messages: &[serde_json::Value],
) -> Result<String, EngineError> {
    let t = m
        .tokenizer
        .chat_template_with(template)
        .map_err(|e| EngineError::ChatTemplate(e.to_string()))?
        .ok_or_else(|| {
            EngineError::ChatTemplate(format!(
                "{}: the model has no chat template; set [template] chat_template (a file or a built-in: chatml, llama3, phi3, mistral, zephyr)",
                m.name
            ))
        })?;
    t.render(messages, true)
        .map(|r| r.text)
        .map_err(|e| EngineError::ChatTemplate(e.to_string()))
}
