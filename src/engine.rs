//! The engine: one worker thread that owns every libtorch object (model,
//! tokenizer) and talks to its callers over channels. The TUI and the headless
//! CLI drive the same [`Engine`]; long work reports progress, can be cancelled,
//! and a failure (a libtorch panic included) comes back as an [`Event::Error`].

use crate::config::{AttnImplementation, DType};
use crate::generate::{FinishReason, GenerationStats, SamplingParams};
use crate::model::LoadOptions;
use crate::source::{load_model, LoadedModel, ModelSource};
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What to generate from.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Plain text, tokenized with the tokenizer's special tokens (BOS where used).
    Text(String),
    /// A conversation rendered with the chat template and its generation prompt.
    Messages(Vec<serde_json::Value>),
    /// Token ids as they are.
    Ids(Vec<u32>),
}

#[derive(Debug, Clone)]
pub enum Command {
    LoadModel {
        source: String,
        dtype: DType,
        device: String,
        attn: AttnImplementation,
        quantization: Option<crate::config::QuantizationConfig>,
    },
    Generate {
        id: u64,
        prompts: Vec<Prompt>,
        params: SamplingParams,
    },
    Score {
        prompt: Prompt,
    },
    /// Loads a peft/ftui adapter folder under `name` and activates it.
    LoadAdapter {
        dir: std::path::PathBuf,
        name: String,
    },
    /// Activates a loaded adapter, or none (the base model).
    SetAdapter(Option<String>),
    /// The chat template conversations are rendered with (`[template]
    /// chat_template`), or none: the model's own.
    SetChatTemplate(Option<String>),
    /// Loads the config's dataset (cached while `[data]` is unchanged) and
    /// prepares it with the config's template and training settings.
    PrepareData(Box<crate::config::RunConfig>),
    Shutdown,
}

/// A summary of the loaded model, as plain data for the UI.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub arch: String,
    pub device: String,
    pub dtype: String,
    pub parameters: i64,
    pub memory_footprint: i64,
    pub layers: i64,
    pub vocab_size: i64,
    pub chat_template: bool,
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub pad: Option<String>,
    pub pad_equals_eos: bool,
    pub adapters: Vec<String>,
    pub active_adapter: Option<String>,
    /// How the decoder linears are stored: dense, nf4, fp4, nf4+dq, int8...
    pub weights: String,
}

#[derive(Debug, Clone)]
pub struct GenerationResult {
    pub prompt_text: String,
    pub prompt_ids: Vec<u32>,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// Long work advanced: `done` of `total` units (bytes, tensors...).
    Progress {
        task: String,
        done: u64,
        total: u64,
    },
    ModelLoaded(Box<ModelInfo>),
    /// A piece of generated text for prompt `row` of request `id`.
    Text {
        id: u64,
        row: usize,
        text: String,
    },
    Generated {
        id: u64,
        results: Vec<GenerationResult>,
        stats: GenerationStats,
    },
    Scored(crate::score::Score),
    DataReady(Box<crate::dataview::DataView>),
    Log(String),
    Error {
        task: String,
        message: String,
    },
}

/// Keeps a panic on the engine thread out of the terminal: the engine turns it
/// into an error event (one line, in the log and the UI); panics elsewhere go to
/// the hook installed before (which restores the terminal in the workbench).
pub fn quiet_engine_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(ENGINE_THREAD) {
            log::error!("engine panic: {info}");
        } else {
            previous(info);
        }
    }));
}

const ENGINE_THREAD: &str = "ftui-engine";

pub struct Engine {
    commands: Sender<Command>,
    pub events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    /// Commands sent and not yet finished.
    pending: Arc<AtomicUsize>,
    /// Set when the engine is dropped: queued commands are skipped.
    shutdown: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Engine {
    pub fn start() -> Self {
        let (commands, command_rx) = unbounded::<Command>();
        let (event_tx, events) = unbounded::<Event>();
        let cancel = Arc::new(AtomicBool::new(false));
        let pending = Arc::new(AtomicUsize::new(0));
        let shutdown = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            events: event_tx,
            cancel: cancel.clone(),
            model: None,
            dataset: None,
            chat_template: None,
        };
        let (p, stop) = (pending.clone(), shutdown.clone());
        let handle = std::thread::Builder::new()
            .name(ENGINE_THREAD.into())
            .spawn(move || worker.run(command_rx, p, stop))
            .ok();
        Engine {
            commands,
            events,
            cancel,
            pending,
            shutdown,
            handle,
        }
    }

    pub fn send(&self, command: Command) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let _ = self.commands.send(command);
    }

    /// Asks the running command to stop at its next check.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether a command is queued or running.
    pub fn is_busy(&self) -> bool {
        self.pending.load(Ordering::SeqCst) > 0
    }
}

impl Drop for Engine {
    /// Queued commands are skipped and the running one is asked to stop. Waiting
    /// for it is only worth it when it is quick to end: a download or a model
    /// load still running is left to the process exit.
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.cancel();
        let _ = self.commands.send(Command::Shutdown);
        if let Some(h) = self.handle.take() {
            if !self.is_busy() {
                let _ = h.join();
            }
        }
    }
}

struct Worker {
    events: Sender<Event>,
    cancel: Arc<AtomicBool>,
    model: Option<LoadedModel>,
    /// The last dataset read, with the `[data]` settings it was read with.
    dataset: Option<(crate::config::DataConfig, crate::data::Dataset)>,
    /// `[template] chat_template` for chat prompts.
    chat_template: Option<String>,
}

fn task_name(c: &Command) -> &'static str {
    match c {
        Command::LoadModel { .. } => "load model",
        Command::Generate { .. } => "generate",
        Command::Score { .. } => "score",
        Command::LoadAdapter { .. } => "load adapter",
        Command::SetAdapter(_) => "switch adapter",
        Command::SetChatTemplate(_) => "set chat template",
        Command::PrepareData(_) => "prepare data",
        Command::Shutdown => "shutdown",
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    let text = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    crate::torch::first_line_with_advice(&text)
}

impl Worker {
    fn run(
        mut self,
        commands: Receiver<Command>,
        pending: Arc<AtomicUsize>,
        shutdown: Arc<AtomicBool>,
    ) {
        while let Ok(command) = commands.recv() {
            if matches!(command, Command::Shutdown) || shutdown.load(Ordering::SeqCst) {
                break;
            }
            // A cancel is for the command running when it was asked.
            self.cancel.store(false, Ordering::SeqCst);
            let task = task_name(&command).to_string();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.handle(command)));
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(message)) => Some(message),
                Err(p) => Some(panic_message(p)),
            };
            if let Some(message) = error {
                log::error!("{task}: {message}");
                let _ = self.events.send(Event::Error { task, message });
            }
            pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn send(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn loaded(&self) -> Result<&LoadedModel, String> {
        self.model
            .as_ref()
            .ok_or_else(|| "no model is loaded".to_string())
    }

    fn handle(&mut self, command: Command) -> Result<(), String> {
        match command {
            Command::LoadModel {
                source,
                dtype,
                device,
                attn,
                quantization,
            } => {
                self.model = None;
                let device = crate::device::parse_device(&device).map_err(|e| e.to_string())?;
                let src = ModelSource::parse(&source).map_err(|e| e.to_string())?;
                self.send(Event::Log(format!("loading {source}")));
                let mut progress = download_progress(&self.events);
                let opts = LoadOptions {
                    dtype,
                    device,
                    attn,
                    quantization,
                };
                let loaded = load_model(&src, &opts, &mut progress).map_err(|e| e.to_string())?;
                let info = model_info(&loaded);
                self.model = Some(loaded);
                self.send(Event::ModelLoaded(Box::new(info)));
                Ok(())
            }
            Command::Generate {
                id,
                prompts,
                params,
            } => {
                let m = self.loaded()?;
                let rendered = prompts
                    .iter()
                    .map(|p| prompt_ids(m, self.chat_template.as_deref(), p))
                    .collect::<Result<Vec<_>, _>>()?;
                let ids: Vec<Vec<u32>> = rendered.iter().map(|r| r.1.clone()).collect();
                let events = self.events.clone();
                let cancel = self.cancel.clone();
                let mut on_text = |row: usize, text: &str| {
                    let _ = events.send(Event::Text {
                        id,
                        row,
                        text: text.to_string(),
                    });
                    !cancel.load(Ordering::SeqCst)
                };
                let (gens, stats) =
                    crate::generate::generate(&m.model, &m.tokenizer, &ids, &params, &mut on_text)
                        .map_err(|e| crate::torch::torch_message(&e))?;
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
                self.send(Event::Generated { id, results, stats });
                Ok(())
            }
            Command::Score { prompt } => {
                let m = self.loaded()?;
                let ids = prompt_ids(m, self.chat_template.as_deref(), &prompt)?.1;
                let s = crate::score::score(&m.model, &ids)
                    .map_err(|e| crate::torch::torch_message(&e))?;
                self.send(Event::Scored(s));
                Ok(())
            }
            Command::LoadAdapter { dir, name } => {
                let m = self.model.as_mut().ok_or("no model is loaded")?;
                crate::lora::load_adapter(&mut m.model, &dir, &name).map_err(|e| e.to_string())?;
                let info = model_info(m);
                self.send(Event::ModelLoaded(Box::new(info)));
                Ok(())
            }
            Command::SetAdapter(name) => {
                let m = self.model.as_mut().ok_or("no model is loaded")?;
                crate::lora::set_active(&mut m.model, name.as_deref())
                    .map_err(|e| e.to_string())?;
                let info = model_info(m);
                self.send(Event::ModelLoaded(Box::new(info)));
                Ok(())
            }
            Command::PrepareData(config) => {
                let data_cfg = config
                    .data
                    .clone()
                    .ok_or("the config has no [data] section: add one to see the dataset")?;
                if self.dataset.as_ref().is_none_or(|(c, _)| *c != data_cfg) {
                    let mut progress = download_progress(&self.events);
                    let d = crate::data::load_dataset(&data_cfg, &mut progress)
                        .map_err(|e| e.to_string())?;
                    self.dataset = Some((data_cfg, d));
                }
                let own;
                let tok = match &self.model {
                    Some(m) => &m.tokenizer,
                    None => {
                        let src =
                            ModelSource::parse(&config.model.source).map_err(|e| e.to_string())?;
                        own = crate::source::load_tokenizer(&src, &mut |_, _, _| {})
                            .map_err(|e| e.to_string())?;
                        &own
                    }
                };
                let dataset = self.dataset.as_ref().map(|(_, d)| d).ok_or("no dataset")?;
                let view = crate::dataview::build(&config, tok, dataset)?;
                self.send(Event::DataReady(Box::new(view)));
                Ok(())
            }
            Command::SetChatTemplate(spec) => {
                if let Some(s) = &spec {
                    crate::template::resolve_source(s)?;
                }
                self.chat_template = spec;
                Ok(())
            }
            Command::Shutdown => Ok(()),
        }
    }
}

/// A download-progress callback that reports to the UI as events.
fn download_progress(events: &Sender<Event>) -> impl FnMut(&str, u64, u64) {
    let events = events.clone();
    move |file, done, total| {
        let _ = events.send(Event::Progress {
            task: format!("download {file}"),
            done,
            total,
        });
    }
}

/// The text and token ids a prompt becomes.
fn prompt_ids(
    m: &LoadedModel,
    template: Option<&str>,
    p: &Prompt,
) -> Result<(String, Vec<u32>), String> {
    match p {
        Prompt::Text(t) => Ok((t.clone(), m.tokenizer.encode(t, true)?)),
        Prompt::Ids(ids) => Ok((m.tokenizer.decode(ids, false), ids.clone())),
        Prompt::Messages(msgs) => {
            let text = render_chat(m, template, msgs, true)?;
            // The template already wrote every special token it wants.
            let ids = m.tokenizer.encode(&text, false)?;
            Ok((text, ids))
        }
    }
}

/// Renders a conversation with `template` (a `[template] chat_template` value:
/// a built-in name, a file or a template) or else the model's own.
pub fn render_chat(
    m: &LoadedModel,
    template: Option<&str>,
    messages: &[serde_json::Value],
    add_generation_prompt: bool,
) -> Result<String, String> {
    let t = m.tokenizer.chat_template_with(template)?.ok_or_else(|| {
        format!(
            "{}: the model has no chat template; set [template] chat_template (a file or a built-in: chatml, llama3, phi3, mistral, zephyr)",
            m.name
        )
    })?;
    t.render(messages, add_generation_prompt)
        .map(|r| r.text)
        .map_err(|e| e.to_string())
}

pub fn model_info(m: &LoadedModel) -> ModelInfo {
    let adapters = crate::lora::adapter_names(&m.model);
    let s = &m.tokenizer.specials;
    let text = |t: &Option<crate::tokenizer::SpecialToken>| t.as_ref().map(|t| t.text.clone());
    ModelInfo {
        name: m.name.clone(),
        arch: m.model.config.arch_name().into(),
        device: crate::device::device_name(m.model.device),
        dtype: crate::device::kind_name(m.model.kind).into(),
        parameters: m.model.num_parameters(),
        memory_footprint: m.model.memory_footprint(),
        layers: m.model.config.num_hidden_layers,
        vocab_size: m.model.config.vocab_size,
        chat_template: m.tokenizer.chat_template.is_some(),
        bos: text(&s.bos),
        eos: text(&s.eos),
        pad: text(&s.pad),
        pad_equals_eos: s.pad.is_some()
            && s.pad.as_ref().map(|p| p.id) == s.eos.as_ref().map(|e| e.id),
        adapters,
        active_adapter: m.model.active_adapter.clone(),
        weights: m.model.weight_format(),
    }
}
