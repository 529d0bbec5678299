//! What a pane is to the workbench: a [`Pane`] has a title, the actions it
//! answers to (for the help screen and the hint bar), key handling that
//! returns [`Effect`]s instead of calling the engine, and a drawing of itself
//! from the read-only [`Ctx`]. The app keeps one list of panes; tabs, number
//! keys, help and routing all come from it.

use super::keys::Action;
use super::launch::{Launch, LaunchReply};
use super::theme::Theme;
use crate::config::RunConfig;
use crate::engine::protocol::{Control, DataView, Event, JobId, ModelInfo, Request, Task};
use crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::Frame;
use std::path::PathBuf;

/// What every pane may read: the config, the model and the data as the
/// engine last reported them, and how to draw.
pub struct Ctx {
    pub config: RunConfig,
    pub config_path: PathBuf,
    /// The config was changed and not saved.
    pub dirty: bool,
    pub model: Option<ModelInfo>,
    pub data: Option<DataView>,
    /// Counts the data views received, so a pane can tell a new one from the old.
    pub data_version: u64,
    /// The data preparation asked for last, while it runs.
    pub data_job: Option<JobId>,
    pub theme: Theme,
}

impl Ctx {
    pub fn preparing(&self) -> bool {
        self.data_job.is_some()
    }
}

/// Whether a status message reports a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Info,
    Error,
}

/// The message on the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub kind: StatusKind,
}

impl Status {
    pub fn info(text: impl Into<String>) -> Self {
        Status {
            text: text.into(),
            kind: StatusKind::Info,
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Status {
            text: text.into(),
            kind: StatusKind::Error,
        }
    }
}

/// What a key asks of the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Run this on the engine. The pane hears the job's id in
    /// [`Pane::on_submitted`] and its events in [`Pane::on_job`].
    Submit(Request),
    Control(JobId, Control),
    /// Use this config from now on (already validated); the app reloads the
    /// model or prepares the data again as the change needs.
    SetConfig(Box<RunConfig>),
    /// Write the config to its file.
    SaveConfig,
    Status(Status),
    /// Start a training run, or steer one, outside the workbench.
    Launch(Launch),
    /// Show the pane with this [`Pane::name`].
    ShowPane(&'static str),
}

pub trait Pane {
    /// A short, stable name (`config`, `chat`): snapshot files and tests use it.
    fn name(&self) -> &'static str;

    /// The tab's title.
    fn title(&self) -> &'static str;

    /// Every action the pane answers to, for the key map and the help screen.
    fn actions(&self) -> &'static [Action];

    /// The few actions the hint bar shows.
    fn hints(&self) -> &'static [Action];

    /// Whether the pane is taking text: it then gets every key without Ctrl
    /// before the global bindings see it.
    fn is_typing(&self) -> bool {
        false
    }

    /// Handles a key; `action` is what the key map makes of it among
    /// [`Pane::actions`].
    fn on_key(&mut self, key: &KeyEvent, action: Option<Action>, ctx: &Ctx) -> Vec<Effect>;

    /// The mouse wheel, in lines.
    fn on_scroll(&mut self, _delta: i32) {}

    /// The id of a job this pane asked for, once per [`Effect::Submit`], in order.
    fn on_submitted(&mut self, _job: JobId, _task: Task) {}

    /// An event of a job this pane asked for.
    fn on_job(&mut self, _event: &Event) {}

    /// The config or the data in `ctx` changed.
    fn on_context(&mut self, _ctx: &Ctx) {}

    /// A few times a second, shown or not: the time to look at files, a
    /// bounded amount each time. Keys and drawing never touch the disk.
    fn on_tick(&mut self, _ctx: &Ctx) {}

    /// The answer to a [`Effect::Launch`] this pane asked for.
    fn on_launched(&mut self, _reply: &LaunchReply) {}

    /// What to tell the user on quitting (a run that goes on without us).
    fn farewell(&self) -> Option<String> {
        None
    }

    fn draw(&self, f: &mut Frame, area: Rect, ctx: &Ctx);
}
