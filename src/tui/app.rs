//! The app: the list of panes, the state they read ([`Ctx`]), and the routing
//! between keys, panes and the engine. Panes answer keys with [`Effect`]s; the
//! app applies them, submitting engine requests through [`Jobs`], and hands
//! each engine event to the pane whose job it is. Drawing reads the state and
//! changes nothing.

use super::batches::BatchesPane;
use super::chat::ChatPane;
use super::config_pane::ConfigPane;
use super::data_pane::DataPane;
use super::export_pane::ExportPane;
use super::keys::{Action, KeyMap};
use super::launch::{LaunchReply, Launcher, ProcessLauncher};
use super::pane::{Ctx, Effect, Pane, Status, StatusKind};
use super::theme::Theme;
use super::training::TrainingPane;
use crate::config::RunConfig;
use crate::engine::protocol::{
    EngineError, Event, JobId, JobOutput, Jobs, ModelSpec, Progress, Request, Task,
};
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Tabs, Wrap};
use ratatui::Frame;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Actions available in every pane.
const GLOBAL_ACTIONS: &[Action] = &[
    Action::NextPane,
    Action::PrevPane,
    Action::CycleTheme,
    Action::Help,
    Action::Quit,
];

/// Actions that move around a pane, the same in every pane.
const MOVING: &[Action] = &[
    Action::Up,
    Action::Down,
    Action::Left,
    Action::Right,
    Action::PageUp,
    Action::PageDown,
    Action::Home,
    Action::End,
];

/// A job the app submitted and has not seen finish.
struct JobEntry {
    task: Task,
    /// The pane that asked for it (none: the app itself).
    owner: Option<usize>,
    started: bool,
}

pub struct App {
    pub ctx: Ctx,
    panes: Vec<Box<dyn Pane>>,
    selected: usize,
    keys: KeyMap,
    theme_name: String,
    /// Starts training runs and steers them; its replies go to `launch_owner`.
    launcher: Box<dyn Launcher>,
    launch_owner: Option<usize>,
    jobs: BTreeMap<JobId, JobEntry>,
    progress: Option<(JobId, Progress)>,
    pub status: Option<Status>,
    pub show_help: bool,
    pub confirm_quit: bool,
    pub quit: bool,
}

impl App {
    pub fn new(config: RunConfig, config_path: PathBuf) -> Self {
        let theme_name = config.ui.theme.clone();
        let (theme, mut status) = match Theme::load(&theme_name) {
            Ok(t) => (t, None),
            Err(e) => (
                Theme::default(),
                Some(Status::error(format!("theme: {e}; using dark"))),
            ),
        };
        let keys = KeyMap::load().unwrap_or_else(|e| {
            status = Some(Status::error(format!("{e}; using the default keys")));
            KeyMap::default()
        });
        // The panes, in tab order: the only list of them.
        let panes: Vec<Box<dyn Pane>> = vec![
            Box::new(ConfigPane::default()),
            Box::new(DataPane::default()),
            Box::new(BatchesPane::default()),
            Box::new(TrainingPane::default()),
            Box::new(ChatPane::new(&config)),
            Box::new(ExportPane),
        ];
        App {
            ctx: Ctx {
                config,
                config_path,
                dirty: false,
                model: None,
                data: None,
                data_version: 0,
                data_job: None,
                theme,
            },
            theme_name,
            panes,
            selected: 0,
            keys,
            launcher: Box::new(ProcessLauncher::default()),
            launch_owner: None,
            jobs: BTreeMap::new(),
            progress: None,
            status,
            show_help: false,
            confirm_quit: false,
            quit: false,
        }
    }

    /// The selected pane's name.
    pub fn pane(&self) -> &'static str {
        self.panes[self.selected].name()
    }

    /// Every pane's name, in tab order.
    pub fn pane_names(&self) -> Vec<&'static str> {
        self.panes.iter().map(|p| p.name()).collect()
    }

    /// Puts `launcher` in place of the one that starts real processes.
    pub fn set_launcher(&mut self, launcher: Box<dyn Launcher>) {
        self.launcher = launcher;
    }

    /// What the panes have to say on quitting (a run that goes on).
    pub fn farewell(&self) -> Vec<String> {
        self.panes.iter().filter_map(|p| p.farewell()).collect()
    }

    /// The periodic tick: replies from runs, then each pane's look at its files.
    pub fn on_tick(&mut self) {
        for reply in self.launcher.replies() {
            self.status = Some(match &reply {
                LaunchReply::Started { dir } => {
                    Status::info(format!("training started in {}", dir.display()))
                }
                LaunchReply::Replied { command, message } => {
                    Status::info(format!("{}: {message}", command.as_str()))
                }
                LaunchReply::Failed { what, error } => Status::error(format!("{what}: {error}")),
            });
            if let Some(p) = self.launch_owner {
                self.panes[p].on_launched(&reply);
            }
        }
        for p in &mut self.panes {
            p.on_tick(&self.ctx);
        }
    }

    /// Whether a job the app asked for has not finished.
    pub fn is_busy(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Asks for the configured model, a trained adapter in the output folder
    /// if there is one, and the prepared data.
    pub fn start(&mut self, jobs: &dyn Jobs) {
        let spec = ModelSpec::from_config(&self.ctx.config);
        self.submit(Request::LoadModel(spec), None, jobs);
        let out = PathBuf::from(&self.ctx.config.training.output_dir);
        if out.join("adapter_config.json").is_file() {
            let load = Request::LoadAdapter {
                dir: out,
                name: "trained".into(),
            };
            self.submit(load, None, jobs);
        }
        self.prepare(jobs);
    }

    /// Asks for the data prepared with the current config; the engine drops
    /// an older request still in the works.
    fn prepare(&mut self, jobs: &dyn Jobs) {
        if self.ctx.config.data.is_some() {
            let config = Box::new(self.ctx.config.clone());
            self.submit(Request::PrepareData(config), None, jobs);
        }
    }

    fn submit(&mut self, request: Request, owner: Option<usize>, jobs: &dyn Jobs) -> JobId {
        let task = request.task();
        let job = jobs.submit(request);
        self.jobs.insert(
            job,
            JobEntry {
                task,
                owner,
                started: false,
            },
        );
        if task == Task::PrepareData {
            self.ctx.data_job = Some(job);
        }
        job
    }

    fn apply(&mut self, pane: usize, effects: Vec<Effect>, jobs: &dyn Jobs) {
        for effect in effects {
            match effect {
                Effect::Submit(request) => {
                    let task = request.task();
                    let job = self.submit(request, Some(pane), jobs);
                    self.panes[pane].on_submitted(job, task);
                }
                Effect::Control(job, control) => jobs.control(job, control),
                Effect::SetConfig(config) => self.set_config(*config, jobs),
                Effect::SaveConfig => self.save(),
                Effect::Status(s) => self.status = Some(s),
                Effect::Launch(launch) => {
                    self.launch_owner = Some(pane);
                    self.launcher.launch(launch);
                }
                Effect::ShowPane(name) => {
                    if let Some(i) = self.panes.iter().position(|p| p.name() == name) {
                        self.selected = i;
                    }
                }
            }
        }
    }

    fn set_config(&mut self, config: RunConfig, jobs: &dyn Jobs) {
        let reload = config.model != self.ctx.config.model
            || config.quantization != self.ctx.config.quantization;
        self.ctx.config = config;
        self.ctx.dirty = true;
        self.context_changed();
        if reload {
            self.start(jobs);
        } else {
            self.prepare(jobs);
        }
    }

    fn context_changed(&mut self) {
        for p in &mut self.panes {
            p.on_context(&self.ctx);
        }
    }

    pub fn on_key(&mut self, key: KeyEvent, jobs: &dyn Jobs) {
        if key.kind != KeyEventKind::Press {
            return;
        }
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if self.confirm_quit {
            match key.code {
                KeyCode::Char('y') | KeyCode::Char('q') => self.quit = true,
                _ if ctrl_c => self.quit = true,
                _ => self.confirm_quit = false,
            }
            return;
        }
        if self.show_help {
            self.show_help = false;
            return;
        }
        if ctrl_c {
            self.request_quit();
            return;
        }
        let pane = self.selected;
        // A pane that is taking text gets every plain key first.
        let typing = self.panes[pane].is_typing() && !key.modifiers.contains(KeyModifiers::CONTROL);
        if !typing {
            let n = self.panes.len();
            match self.keys.action(&key, GLOBAL_ACTIONS) {
                Some(Action::Quit) => return self.request_quit(),
                Some(Action::Help) => return self.show_help = true,
                Some(Action::NextPane) => return self.selected = (pane + 1) % n,
                Some(Action::PrevPane) => return self.selected = (pane + n - 1) % n,
                Some(Action::CycleTheme) => return self.cycle_theme(),
                _ => {}
            }
            if let Some(i) = digit(&key).filter(|&d| (1..=n).contains(&d)) {
                self.selected = i - 1;
                return;
            }
        }
        let action = self.keys.action(&key, self.panes[pane].actions());
        let effects = self.panes[pane].on_key(&key, action, &self.ctx);
        self.apply(pane, effects, jobs);
    }

    fn save(&mut self) {
        let path = &self.ctx.config_path;
        self.status = Some(match self.ctx.config.save(path) {
            Ok(()) => {
                self.ctx.dirty = false;
                Status::info(format!("saved {}", path.display()))
            }
            Err(e) => Status::error(e.to_string()),
        });
    }

    fn cycle_theme(&mut self) {
        let name = Theme::next_builtin(&self.theme_name);
        if let Some(t) = Theme::builtin(name) {
            self.ctx.theme = t;
            self.theme_name = name.to_string();
            self.status = Some(Status::info(format!("theme: {name}")));
        }
    }

    fn request_quit(&mut self) {
        if self.is_busy() {
            self.confirm_quit = true;
        } else {
            self.quit = true;
        }
    }

    pub fn on_mouse(&mut self, m: MouseEvent) {
        let delta = match m.kind {
            MouseEventKind::ScrollDown => 3,
            MouseEventKind::ScrollUp => -3,
            MouseEventKind::Down(MouseButton::Left) if m.row == 0 => {
                // The tab bar: " 1 Config │ 2 Data & template │ ..."
                let mut x = 0u16;
                for (i, p) in self.panes.iter().enumerate() {
                    let width = tab_label(i, p.as_ref()).chars().count() as u16 + 2;
                    if m.column < x + width {
                        self.selected = i;
                        return;
                    }
                    x += width + 1;
                }
                return;
            }
            _ => return,
        };
        self.panes[self.selected].on_scroll(delta);
    }

    pub fn on_engine(&mut self, event: Event) {
        let job = event.job();
        let owner = self.jobs.get(&job).and_then(|j| j.owner);
        match &event {
            Event::Started { .. } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.started = true;
                }
            }
            Event::Progress { progress, .. } => self.progress = Some((job, progress.clone())),
            Event::Text { .. } => {}
            Event::Finished { outcome, .. } => {
                let entry = self.jobs.remove(&job);
                if self.progress.as_ref().is_some_and(|(j, _)| *j == job) {
                    self.progress = None;
                }
                self.finished(job, entry, outcome);
            }
        }
        if let Some(p) = owner {
            self.panes[p].on_job(&event);
        }
    }

    /// What a finished job changes for every pane; `entry` is `None` for a job
    /// this app did not submit.
    fn finished(
        &mut self,
        job: JobId,
        entry: Option<JobEntry>,
        outcome: &Result<JobOutput, EngineError>,
    ) {
        let latest_data = self.ctx.data_job.is_none_or(|j| j == job);
        if self.ctx.data_job == Some(job) {
            self.ctx.data_job = None;
        }
        match outcome {
            Ok(JobOutput::Model(info)) => {
                self.status = Some(Status::info(format!(
                    "{} ({} parameters, {})",
                    info.name,
                    human(info.parameters as f64, ""),
                    human(info.memory_footprint as f64, "B")
                )));
                self.ctx.model = Some((**info).clone());
            }
            Ok(JobOutput::Unloaded) => self.ctx.model = None,
            Ok(JobOutput::Data(view)) if latest_data => {
                self.ctx.data = Some((**view).clone());
                self.ctx.data_version += 1;
                self.context_changed();
            }
            Ok(_) | Err(EngineError::Superseded { .. }) => {}
            Err(e) => {
                let task = entry.as_ref().map(|j| j.task);
                if task == Some(Task::LoadModel) && entry.as_ref().is_some_and(|j| j.started) {
                    // The engine dropped the old model before trying the new one
                    // (a load refused or stopped before it started changed nothing).
                    self.ctx.model = None;
                }
                let what = task.map_or_else(|| format!("job {job}"), |t| t.name().to_string());
                self.status = Some(Status::error(format!("{what} failed: {e}")));
            }
        }
    }

    pub fn draw(&self, f: &mut Frame) {
        let t = &self.ctx.theme;
        f.render_widget(Block::default().style(t.text), f.area());
        let [tabs, body, status, hints] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let titles: Vec<Line> = self
            .panes
            .iter()
            .enumerate()
            .map(|(i, p)| Line::from(tab_label(i, p.as_ref())))
            .collect();
        f.render_widget(
            Tabs::new(titles)
                .select(self.selected)
                .style(t.dim)
                .highlight_style(t.tab_active)
                .divider("│"),
            tabs,
        );
        let pane = &self.panes[self.selected];
        pane.draw(f, body, &self.ctx);
        f.render_widget(Paragraph::new(self.status_line()), status);
        let keys: Vec<Span> = pane
            .hints()
            .iter()
            .chain([Action::Help, Action::Quit].iter())
            .flat_map(|&a| {
                [
                    Span::styled(format!(" {} ", self.keys.label(a)), t.key_hint_key),
                    Span::styled(format!(" {} ", a.description()), t.key_hint_text),
                ]
            })
            .collect();
        f.render_widget(Paragraph::new(Line::from(keys)), hints);
        if self.show_help {
            self.draw_help(f);
        }
        if self.confirm_quit {
            let area = centered(f.area(), 50, 5);
            f.render_widget(Clear, area);
            f.render_widget(
                Paragraph::new("The engine is busy. Quit anyway? (y/n)")
                    .wrap(Wrap { trim: true })
                    .style(t.text)
                    .block(
                        Block::default()
                            .borders(Borders::ALL)
                            .border_style(t.warning)
                            .title(" Quit "),
                    ),
                area,
            );
        }
    }

    /// What the engine is doing for this app, in a word or two.
    fn engine_state(&self) -> String {
        let mut running: Vec<&str> = Vec::new();
        for j in self.jobs.values().filter(|j| j.started) {
            if !running.contains(&j.task.doing()) {
                running.push(j.task.doing());
            }
        }
        match (running.is_empty(), self.jobs.is_empty(), &self.ctx.model) {
            (false, _, _) => running.join(", "),
            (true, false, _) => "waiting".into(),
            (true, true, Some(_)) => "ready".into(),
            (true, true, None) => "idle".into(),
        }
    }

    fn status_line(&self) -> Line<'_> {
        let t = &self.ctx.theme;
        let mut spans = Vec::new();
        match &self.ctx.model {
            Some(m) => spans.push(Span::styled(
                format!(
                    " {} · {} · {} · {} ",
                    short(&m.name),
                    m.arch,
                    m.device,
                    m.dtype
                ),
                t.status_model,
            )),
            None => spans.push(Span::styled(" no model ", t.warning)),
        }
        let adapter = self
            .ctx
            .model
            .as_ref()
            .and_then(|m| m.active_adapter.as_deref());
        spans.push(Span::styled(
            format!(" adapter: {} ", adapter.unwrap_or("none")),
            t.status,
        ));
        spans.push(Span::styled(
            format!("[{}] ", self.engine_state()),
            t.accent,
        ));
        if let Some((_, p)) = self.progress.as_ref().filter(|(_, p)| p.total > 0) {
            spans.push(Span::styled(format!("{p} "), t.accent));
        }
        if let Some(s) = &self.status {
            let style = match s.kind {
                StatusKind::Info => t.dim,
                StatusKind::Error => t.error,
            };
            spans.push(Span::styled(s.text.clone(), style));
        }
        Line::from(spans)
    }

    fn draw_help(&self, f: &mut Frame) {
        let t = &self.ctx.theme;
        let row = |k: String, d: &str| Line::styled(format!("  {k:<12} {d}"), t.text);
        let mut everywhere = vec![Line::styled("Everywhere", t.accent)];
        everywhere.extend(
            GLOBAL_ACTIONS
                .iter()
                .map(|&a| row(self.keys.label(a), a.description())),
        );
        everywhere.push(row(format!("1-{}", self.panes.len()), "go to pane"));
        everywhere.push(row("Ctrl-C".into(), "quit (asks while the engine is busy)"));
        // Moving around means the same in every pane: listed once.
        let mut moving = vec![Line::styled("Moving around", t.accent)];
        moving.extend(
            MOVING
                .iter()
                .filter(|a| self.panes.iter().any(|p| p.actions().contains(a)))
                .map(|&a| row(self.keys.label(a), a.description())),
        );
        let mut sections = vec![everywhere, moving];
        for p in &self.panes {
            let mut lines = vec![Line::styled(p.title(), t.accent)];
            lines.extend(
                p.actions()
                    .iter()
                    .filter(|a| !MOVING.contains(a))
                    .map(|&a| row(self.keys.label(a), a.description())),
            );
            sections.push(lines);
        }
        // Whole sections in columns of about equal length, as many columns
        // as the screen is wide enough for.
        let count = if f.area().width >= 150 { 3 } else { 2 };
        let lengths: Vec<usize> = sections.iter().map(Vec::len).collect();
        let starts = balanced_columns(&lengths, count);
        let mut columns: Vec<Vec<Line>> = vec![Vec::new(); starts.len()];
        for (i, section) in sections.into_iter().enumerate() {
            let column = starts.iter().rposition(|&s| s <= i).unwrap_or(0);
            columns[column].extend(section);
        }
        let tallest = columns.iter().map(Vec::len).max().unwrap_or(0) as u16;
        let area = centered(f.area(), 55 * count as u16, tallest + 5);
        f.render_widget(Clear, area);
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.border_focused)
            .title(" Keys ");
        let inner = block.inner(area);
        f.render_widget(block, area);
        let [body, footer] =
            Layout::vertical([Constraint::Min(1), Constraint::Length(2)]).areas(inner);
        let cells = Layout::horizontal(vec![Constraint::Ratio(1, count as u32); count]).split(body);
        for (column, cell) in columns.into_iter().zip(cells.iter()) {
            f.render_widget(Paragraph::new(column), *cell);
        }
        f.render_widget(
            Paragraph::new(vec![
                Line::styled("Any key closes this help.", t.dim),
                Line::styled(
                    "Keys can be changed in keys.toml in the config folder (see ftui doctor).",
                    t.dim,
                ),
            ]),
            footer,
        );
    }
}

/// Where each of `count` columns starts when sections of these lengths are
/// laid out in order, the longest column as short as can be (at most three
/// columns: every split is tried).
fn balanced_columns(lengths: &[usize], count: usize) -> Vec<usize> {
    let n = lengths.len();
    let sum = |a: usize, b: usize| lengths[a..b].iter().sum::<usize>();
    let mut best = (usize::MAX, vec![0]);
    for i in 1..=n {
        for j in i..=n {
            let starts = match count {
                0 | 1 => vec![0],
                2 => vec![0, i],
                _ => vec![0, i, j],
            };
            let tallest = match count {
                0 | 1 => sum(0, n),
                2 => sum(0, i).max(sum(i, n)),
                _ => sum(0, i).max(sum(i, j)).max(sum(j, n)),
            };
            if tallest < best.0 {
                best = (tallest, starts);
            }
        }
    }
    best.1
}

/// `1 Config`
fn tab_label(i: usize, p: &dyn Pane) -> String {
    format!("{} {}", i + 1, p.title())
}

/// The digit a plain number key gives.
fn digit(key: &KeyEvent) -> Option<usize> {
    match key.code {
        KeyCode::Char(c) if key.modifiers.is_empty() => c.to_digit(10).map(|d| d as usize),
        _ => None,
    }
}

/// The last path component of a model name.
fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// `123456789` -> `123.5M`.
pub(super) fn human(x: f64, unit: &str) -> String {
    let (v, s) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    format!("{v:.1}{s}{unit}")
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

#[cfg(test)]
mod tests {
    use super::balanced_columns;

    #[test]
    fn help_columns_keep_sections_whole_and_even() {
        assert_eq!(balanced_columns(&[8, 9, 4, 2, 8, 10, 8, 2], 2), [0, 4]);
        assert_eq!(balanced_columns(&[10, 10, 10], 3), [0, 1, 2]);
        assert_eq!(balanced_columns(&[3, 30, 4], 2), [0, 2]);
        assert_eq!(balanced_columns(&[5, 5], 1), [0]);
    }
}
