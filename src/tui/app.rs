//! The app state and its updates; drawing reads it and changes nothing.

use super::chat::ChatPane;
use super::config_pane::ConfigPane;
use crate::config::RunConfig;
use crate::engine::{Command, Engine, Event, ModelInfo};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Tabs, Wrap};
use ratatui::Frame;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Config,
    Chat,
}

impl Pane {
    pub const ALL: [Pane; 2] = [Pane::Config, Pane::Chat];
    pub fn title(self) -> &'static str {
        match self {
            Pane::Config => "Config",
            Pane::Chat => "Chat",
        }
    }
}

/// A key and what it does, for the hint bar and the help screen.
pub type Binding = (&'static str, &'static str);

const GLOBAL_KEYS: &[Binding] = &[
    ("Tab/Shift-Tab", "next/previous pane"),
    ("1-2", "go to pane"),
    ("?", "help for every key"),
    ("q / Ctrl-C", "quit (asks while the engine is busy)"),
];

pub struct App {
    pub config: RunConfig,
    pub config_path: PathBuf,
    pub pane: Pane,
    pub model: Option<ModelInfo>,
    pub engine_state: String,
    pub progress: Option<(String, u64, u64)>,
    pub status: Option<(String, bool)>,
    pub show_help: bool,
    pub confirm_quit: bool,
    pub quit: bool,
    pub config_pane: ConfigPane,
    pub chat: ChatPane,
}

impl App {
    pub fn new(config: RunConfig, config_path: PathBuf) -> Self {
        let chat = ChatPane::new(&config);
        App {
            config_pane: ConfigPane::default(),
            chat,
            config,
            config_path,
            pane: Pane::Config,
            model: None,
            engine_state: "idle".into(),
            progress: None,
            status: None,
            show_help: false,
            confirm_quit: false,
            quit: false,
        }
    }

    /// Asks the engine for the configured model.
    pub fn start(&mut self, engine: &Engine) {
        let m = &self.config.model;
        engine.send(Command::LoadModel {
            source: m.source.clone(),
            dtype: m.dtype,
            device: m.device.clone(),
            attn: m.attn_implementation,
        });
        self.engine_state = format!("loading {}", m.source);
    }

    fn pane_bindings(&self) -> &'static [Binding] {
        match self.pane {
            Pane::Config => ConfigPane::BINDINGS,
            Pane::Chat => ChatPane::BINDINGS,
        }
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
        // The chat input takes plain characters while it is being typed in.
        if self.pane == Pane::Chat && self.chat.captures(&key) {
            self.chat.on_key(key, engine);
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.request_quit(engine),
            KeyCode::Char('?') => self.show_help = true,
            KeyCode::Tab => self.pane = next(self.pane, 1),
            KeyCode::BackTab => self.pane = next(self.pane, Pane::ALL.len() - 1),
            KeyCode::Char(c @ '1'..='9') => {
                if let Some(p) = Pane::ALL.get(c as usize - '1' as usize) {
                    self.pane = *p;
                }
            }
            _ => match self.pane {
                Pane::Config => self.config_pane.on_key(key, &self.config),
                Pane::Chat => self.chat.on_key(key, engine),
            },
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
            _ => return,
        };
        match self.pane {
            Pane::Config => self.config_pane.scroll(delta, &self.config),
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
                        "loaded {} ({} parameters)",
                        info.name,
                        human(info.parameters as f64, "")
                    ),
                    false,
                ));
                if info.pad_equals_eos {
                    self.status = Some((
                        "warning: PAD equals EOS — set [template] pad_token = \"unk\" or EOS will be masked in training".into(),
                        true,
                    ));
                }
                self.model = Some(info);
            }
            Event::Text { id, row, text } => self.chat.on_text(id, row, &text),
            Event::Generated { id, results, stats } => {
                self.engine_state = "ready".into();
                self.chat.on_generated(id, &results, &stats);
            }
            Event::Scored(_) => self.engine_state = "ready".into(),
            Event::Log(line) => self.status = Some((line, false)),
            Event::Error { task, message } => {
                self.engine_state = "ready".into();
                self.progress = None;
                self.chat.on_error();
                self.status = Some((format!("{task} failed: {message}"), true));
            }
        }
    }

    pub fn on_tick(&mut self, engine: &Engine) {
        if engine.is_busy() && self.engine_state == "ready" {
            self.engine_state = "busy".into();
        }
    }

    pub fn draw(&self, f: &mut Frame) {
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
                .highlight_style(
                    Style::default()
                        .fg(Color::Black)
                        .bg(Color::Cyan)
                        .add_modifier(Modifier::BOLD),
                )
                .divider("│"),
            tabs,
        );
        match self.pane {
            Pane::Config => self
                .config_pane
                .draw(f, body, &self.config, &self.config_path),
            Pane::Chat => self.chat.draw(f, body),
        }
        f.render_widget(Paragraph::new(self.status_line()), status);
        let keys: Vec<Span> = self
            .pane_bindings()
            .iter()
            .chain([("?", "help"), ("q", "quit")].iter())
            .flat_map(|(k, d)| {
                [
                    Span::styled(
                        format!(" {k} "),
                        Style::default().fg(Color::Black).bg(Color::Gray),
                    ),
                    Span::raw(format!(" {d} ")),
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
                    .block(Block::default().borders(Borders::ALL).title(" Quit ")),
                area,
            );
        }
    }

    fn status_line(&self) -> Line<'_> {
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
                Style::default().fg(Color::Black).bg(Color::Green),
            )),
            None => spans.push(Span::styled(
                " no model ",
                Style::default().fg(Color::Black).bg(Color::Yellow),
            )),
        }
        spans.push(Span::raw(" adapter: none "));
        spans.push(Span::styled(
            format!("[{}] ", self.engine_state),
            Style::default().fg(Color::Cyan),
        ));
        if let Some((task, done, total)) = &self.progress {
            if *total > 0 {
                spans.push(Span::raw(format!(
                    "{task} {:.0}% ",
                    100.0 * *done as f64 / *total as f64
                )));
            }
        }
        if let Some((text, is_error)) = &self.status {
            let style = if *is_error {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            };
            spans.push(Span::styled(text.clone(), style));
        }
        Line::from(spans)
    }

    fn draw_help(&self, f: &mut Frame) {
        let area = centered(f.area(), 70, 20);
        let mut lines = vec![Line::styled(
            "Everywhere",
            Style::default().add_modifier(Modifier::BOLD),
        )];
        for (k, d) in GLOBAL_KEYS {
            lines.push(Line::from(format!("  {k:<16} {d}")));
        }
        for p in Pane::ALL {
            lines.push(Line::styled(
                p.title(),
                Style::default().add_modifier(Modifier::BOLD),
            ));
            let b = match p {
                Pane::Config => ConfigPane::BINDINGS,
                Pane::Chat => ChatPane::BINDINGS,
            };
            for (k, d) in b {
                lines.push(Line::from(format!("  {k:<16} {d}")));
            }
        }
        lines.push(Line::from(""));
        lines.push(Line::from("Any key closes this help."));
        f.render_widget(Clear, area);
        f.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Keys ")),
            area,
        );
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
