//! The app state and its updates; drawing reads it and changes nothing.

use super::batches::{BatchRequest, BatchesPane};
use super::chat::ChatPane;
use super::config_pane::{ConfigPane, ConfigRequest};
use super::data_pane::DataPane;
use super::keys::{Action, KeyMap};
use super::theme::Theme;
use crate::config::RunConfig;
use crate::dataview::DataView;
use crate::engine::{Command, Engine, Event, ModelInfo};
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Tabs, Wrap};
use ratatui::Frame;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Config,
    Data,
    Batches,
    Chat,
}

impl Pane {
    pub const ALL: [Pane; 4] = [Pane::Config, Pane::Data, Pane::Batches, Pane::Chat];
    pub fn title(self) -> &'static str {
        match self {
            Pane::Config => "Config",
            Pane::Data => "Data & template",
            Pane::Batches => "Batches",
            Pane::Chat => "Chat",
        }
    }
    /// Every action the pane answers to (for the key map and the help screen).
    fn actions(self) -> &'static [Action] {
        match self {
            Pane::Config => ConfigPane::ACTIONS,
            Pane::Data => DataPane::ACTIONS,
            Pane::Batches => BatchesPane::ACTIONS,
            Pane::Chat => ChatPane::ACTIONS,
        }
    }
    /// The few the hint bar shows.
    fn hints(self) -> &'static [Action] {
        match self {
            Pane::Config => ConfigPane::HINTS,
            Pane::Data => DataPane::HINTS,
            Pane::Batches => BatchesPane::HINTS,
            Pane::Chat => ChatPane::HINTS,
        }
    }
}

/// Actions available in every pane.
const GLOBAL_ACTIONS: &[Action] = &[
    Action::NextPane,
    Action::PrevPane,
    Action::CycleTheme,
    Action::Help,
    Action::Quit,
];

pub struct App {
    pub config: RunConfig,
    pub config_path: PathBuf,
    pub pane: Pane,
    pub model: Option<ModelInfo>,
    pub data: Option<DataView>,
    pub preparing: bool,
    /// The config changed while data was being prepared.
    pub prepare_again: bool,
    pub engine_state: String,
    pub progress: Option<(String, u64, u64)>,
    pub status: Option<(String, bool)>,
    pub show_help: bool,
    pub confirm_quit: bool,
    pub quit: bool,
    pub theme: Theme,
    pub theme_name: String,
    pub keys: KeyMap,
    pub config_pane: ConfigPane,
    pub data_pane: DataPane,
    pub batches: BatchesPane,
    pub chat: ChatPane,
}

impl App {
    pub fn new(config: RunConfig, config_path: PathBuf) -> Self {
        let chat = ChatPane::new(&config);
        let theme_name = config.ui.theme.clone();
        let (theme, mut status) = match Theme::load(&theme_name) {
            Ok(t) => (t, None),
            Err(e) => (
                Theme::default(),
                Some((format!("theme: {e}; using dark"), true)),
            ),
        };
        let keys = KeyMap::load().unwrap_or_else(|e| {
            status = Some((format!("{e}; using the default keys"), true));
            KeyMap::default()
        });
        App {
            config_pane: ConfigPane::default(),
            data_pane: DataPane::default(),
            batches: BatchesPane::default(),
            chat,
            config,
            config_path,
            pane: Pane::Config,
            model: None,
            data: None,
            preparing: false,
            prepare_again: false,
            engine_state: "idle".into(),
            progress: None,
            status,
            show_help: false,
            confirm_quit: false,
            quit: false,
            theme,
            theme_name,
            keys,
        }
    }

    /// Asks the engine for the configured model, a trained adapter in the
    /// output folder if there is one, and the prepared data.
    pub fn start(&mut self, engine: &Engine) {
        let m = &self.config.model;
        engine.send(Command::LoadModel {
            source: m.source.clone(),
            dtype: m.dtype,
            device: m.device.clone(),
            attn: m.attn_implementation,
            quantization: self.config.quantization.clone(),
        });
        self.engine_state = format!("loading {}", m.source);
        let out = PathBuf::from(&self.config.training.output_dir);
        if out.join("adapter_config.json").is_file() {
            engine.send(Command::LoadAdapter {
                dir: out,
                name: "trained".into(),
            });
        }
        self.prepare(engine);
    }

    /// Asks for the data prepared with the current config. While one request
    /// runs, further changes wait and are sent as one when it ends.
    fn prepare(&mut self, engine: &Engine) {
        if self.preparing {
            self.prepare_again = true;
            return;
        }
        engine.send(Command::SetChatTemplate(
            self.config.template.chat_template.clone(),
        ));
        if self.config.data.is_some() {
            self.preparing = true;
            engine.send(Command::PrepareData(Box::new(self.config.clone())));
        }
    }

    /// The adapter the chat compares against: the active one, else the first loaded.
    fn adapter(&self) -> Option<String> {
        let m = self.model.as_ref()?;
        m.active_adapter
            .clone()
            .or_else(|| m.adapters.first().cloned())
    }

    pub fn on_key(&mut self, key: KeyEvent, engine: &Engine) {
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
            self.request_quit(engine);
            return;
        }
        // A pane that is taking text gets every plain key first.
        let typing = match self.pane {
            Pane::Config => self.config_pane.captures(),
            Pane::Data => self.data_pane.captures(),
            Pane::Chat => self.chat.captures(&key),
            Pane::Batches => false,
        };
        if !typing {
            match self.keys.action(&key, GLOBAL_ACTIONS) {
                Some(Action::Quit) => return self.request_quit(engine),
                Some(Action::Help) => {
                    self.show_help = true;
                    return;
                }
                Some(Action::NextPane) => return self.pane = next(self.pane, 1),
                Some(Action::PrevPane) => return self.pane = next(self.pane, Pane::ALL.len() - 1),
                Some(Action::CycleTheme) => return self.cycle_theme(),
                _ => {}
            }
            if let KeyCode::Char(c @ '1'..='4') = key.code {
                self.pane = Pane::ALL[c as usize - '1' as usize];
                return;
            }
        }
        let action = self.keys.action(&key, self.pane.actions());
        match self.pane {
            Pane::Config => {
                let before = self.config.clone();
                match self.config_pane.on_key(key, action, &mut self.config) {
                    ConfigRequest::Changed => {
                        self.status = Some(("changed (s saves the file)".into(), false));
                        self.chat.apply_config(&self.config);
                        if self.config.model != before.model
                            || self.config.quantization != before.quantization
                        {
                            self.start(engine);
                        } else {
                            self.prepare(engine);
                        }
                    }
                    ConfigRequest::Save => self.save(),
                    ConfigRequest::None => {}
                }
            }
            Pane::Data => self.data_pane.on_key(key, action, self.data.as_ref()),
            Pane::Batches => {
                if self
                    .batches
                    .on_key(action, self.data.as_ref(), &mut self.config)
                    == BatchRequest::Reprepare
                {
                    self.config_pane.dirty = true;
                    self.prepare(engine);
                }
            }
            Pane::Chat => {
                if action == Some(Action::ToggleAdapter) && !self.chat.editing {
                    self.toggle_adapter(engine);
                } else {
                    let adapter = self.adapter();
                    self.chat.on_key(key, action, engine, adapter.as_deref());
                }
            }
        }
    }

    fn toggle_adapter(&mut self, engine: &Engine) {
        let Some(m) = &self.model else {
            return;
        };
        match (&m.active_adapter, m.adapters.first()) {
            (Some(_), _) => engine.send(Command::SetAdapter(None)),
            (None, Some(a)) => engine.send(Command::SetAdapter(Some(a.clone()))),
            (None, None) => {
                self.status = Some((
                    format!(
                        "no adapter loaded: train one, or put it in {}",
                        self.config.training.output_dir
                    ),
                    true,
                ))
            }
        }
    }

    fn save(&mut self) {
        match self.config.save(&self.config_path) {
            Ok(()) => {
                self.config_pane.dirty = false;
                self.status = Some((format!("saved {}", self.config_path.display()), false));
            }
            Err(e) => self.status = Some((e.to_string(), true)),
        }
    }

    fn cycle_theme(&mut self) {
        let name = Theme::next_builtin(&self.theme_name);
        if let Some(t) = Theme::builtin(name) {
            self.theme = t;
            self.theme_name = name.to_string();
            self.status = Some((format!("theme: {name}"), false));
        }
    }

    fn request_quit(&mut self, engine: &Engine) {
        if engine.is_busy() {
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
                for (i, p) in Pane::ALL.iter().enumerate() {
                    let width = format!("{} {}", i + 1, p.title()).chars().count() as u16 + 2;
                    if m.column < x + width {
                        self.pane = *p;
                        return;
                    }
                    x += width + 1;
                }
                return;
            }
            _ => return,
        };
        match self.pane {
            Pane::Config => self.config_pane.scroll(delta),
            Pane::Data => self.data_pane.scroll(delta),
            Pane::Batches => {}
            Pane::Chat => self.chat.scroll(delta),
        }
    }

    pub fn on_engine(&mut self, e: Event) {
        match e {
            Event::Progress { task, done, total } => self.progress = Some((task, done, total)),
            Event::ModelLoaded(info) => {
                self.engine_state = "ready".into();
                self.progress = None;
                self.status = Some((
                    format!(
                        "{} ({} parameters, {})",
                        info.name,
                        human(info.parameters as f64, ""),
                        human(info.memory_footprint as f64, "B")
                    ),
                    false,
                ));
                self.model = Some(*info);
            }
            Event::Text { id, row, text } => self.chat.on_text(id, row, &text),
            Event::Generated { id, results, stats } => {
                self.engine_state = "ready".into();
                self.chat.on_generated(id, &results, &stats);
            }
            Event::Scored(_) => self.engine_state = "ready".into(),
            Event::DataReady(view) => {
                self.preparing = false;
                self.batches.clamp(&view);
                self.data = Some(*view);
            }
            Event::Log(line) => self.status = Some((line, false)),
            Event::Error { task, message } => {
                self.engine_state = "ready".into();
                self.progress = None;
                match task.as_str() {
                    "prepare data" => self.preparing = false,
                    // The engine dropped the old model before trying the new one.
                    "load model" => self.model = None,
                    "generate" => self.chat.on_error(),
                    _ => {}
                }
                self.status = Some((format!("{task} failed: {message}"), true));
            }
        }
    }

    pub fn on_tick(&mut self, engine: &Engine) {
        if self.prepare_again && !self.preparing {
            self.prepare_again = false;
            self.prepare(engine);
        }
        let busy = engine.is_busy();
        if busy && self.engine_state == "ready" {
            self.engine_state = "busy".into();
        } else if !busy && self.engine_state == "busy" {
            self.engine_state = "ready".into();
        }
    }

    pub fn draw(&self, f: &mut Frame) {
        let t = &self.theme;
        f.render_widget(Block::default().style(t.text), f.area());
        let [tabs, body, status, hints] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let titles: Vec<Line> = Pane::ALL
            .iter()
            .enumerate()
            .map(|(i, p)| Line::from(format!("{} {}", i + 1, p.title())))
            .collect();
        let selected = Pane::ALL.iter().position(|p| *p == self.pane).unwrap_or(0);
        f.render_widget(
            Tabs::new(titles)
                .select(selected)
                .style(t.dim)
                .highlight_style(t.tab_active)
                .divider("│"),
            tabs,
        );
        let adapter = self.model.as_ref().and_then(|m| m.active_adapter.clone());
        match self.pane {
            Pane::Config => self
                .config_pane
                .draw(f, body, &self.config, &self.config_path, t),
            Pane::Data => self
                .data_pane
                .draw(f, body, self.data.as_ref(), self.preparing, t),
            Pane::Batches => {
                self.batches
                    .draw(f, body, self.data.as_ref(), &self.config, self.preparing, t)
            }
            Pane::Chat => self.chat.draw(f, body, adapter.as_deref(), t),
        }
        f.render_widget(Paragraph::new(self.status_line()), status);
        let keys: Vec<Span> = self
            .pane
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

    fn status_line(&self) -> Line<'_> {
        let t = &self.theme;
        let mut spans = Vec::new();
        match &self.model {
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
        let adapter = self.model.as_ref().and_then(|m| m.active_adapter.clone());
        spans.push(Span::styled(
            format!(" adapter: {} ", adapter.as_deref().unwrap_or("none")),
            t.status,
        ));
        spans.push(Span::styled(format!("[{}] ", self.engine_state), t.accent));
        if let Some((task, done, total)) = &self.progress {
            if *total > 0 {
                spans.push(Span::styled(
                    format!("{task} {:.0}% ", 100.0 * *done as f64 / *total as f64),
                    t.accent,
                ));
            }
        }
        if let Some((text, is_error)) = &self.status {
            spans.push(Span::styled(
                text.clone(),
                if *is_error { t.error } else { t.dim },
            ));
        }
        Line::from(spans)
    }

    fn draw_help(&self, f: &mut Frame) {
        let t = &self.theme;
        let area = centered(f.area(), 110, 36);
        let row = |k: String, d: &str| Line::styled(format!("  {k:<12} {d}"), t.text);
        let section = |p: Pane| {
            let mut lines = vec![Line::styled(p.title(), t.accent)];
            lines.extend(
                p.actions()
                    .iter()
                    .map(|&a| row(self.keys.label(a), a.description())),
            );
            lines
        };
        let mut left = vec![Line::styled("Everywhere", t.accent)];
        left.extend(
            GLOBAL_ACTIONS
                .iter()
                .map(|&a| row(self.keys.label(a), a.description())),
        );
        left.push(row("1-4".into(), "go to pane"));
        left.push(row("Ctrl-C".into(), "quit (asks while the engine is busy)"));
        left.extend(section(Pane::Config));
        left.extend(section(Pane::Data));
        let mut right = section(Pane::Batches);
        right.extend(section(Pane::Chat));
        right.push(Line::styled("Any key closes this help.", t.dim));
        right.push(Line::styled(
            "Keys can be changed in keys.toml in the config folder (see ftui doctor).",
            t.dim,
        ));
        f.render_widget(Clear, area);
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.border_focused)
            .title(" Keys ");
        let inner = block.inner(area);
        f.render_widget(block, area);
        let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(inner);
        f.render_widget(Paragraph::new(left), l);
        f.render_widget(Paragraph::new(right), r);
    }
}

fn next(p: Pane, step: usize) -> Pane {
    let i = Pane::ALL.iter().position(|x| *x == p).unwrap_or(0);
    Pane::ALL[(i + step) % Pane::ALL.len()]
}

/// The last path component of a model name.
fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// `123456789` -> `123.5M`.
pub fn human(x: f64, unit: &str) -> String {
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

pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}
