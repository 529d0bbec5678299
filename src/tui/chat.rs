//! The Chat pane: a multi-turn conversation with the loaded model, answers
//! streamed token by token, the exact prompt text on request, and a stop key.

use super::app::Binding;
use crate::config::RunConfig;
use crate::engine::{Command, Engine, GenerationResult, Prompt};
use crate::generate::{GenerationStats, SamplingParams};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

#[derive(Debug, Clone)]
pub struct Turn {
    pub role: String,
    pub content: String,
}

pub struct ChatPane {
    pub turns: Vec<Turn>,
    pub input: String,
    pub editing: bool,
    pub system_prompt: Option<String>,
    pub params: SamplingParams,
    pub pending: Option<u64>,
    pub next_id: u64,
    pub last_prompt: Option<String>,
    pub show_prompt: bool,
    pub stats: Option<GenerationStats>,
    pub scroll: u16,
}

impl ChatPane {
    pub const BINDINGS: &'static [Binding] = &[
        ("i / Enter", "type a message"),
        ("Enter", "send (while typing)"),
        ("Esc", "stop typing / stop generation"),
        ("p", "show the exact prompt text"),
        ("c", "clear the conversation"),
    ];

    pub fn new(config: &RunConfig) -> Self {
        ChatPane {
            turns: Vec::new(),
            input: String::new(),
            editing: false,
            system_prompt: config.data.as_ref().and_then(|d| d.system_prompt.clone()),
            params: (&config.generation).into(),
            pending: None,
            next_id: 1,
            last_prompt: None,
            show_prompt: false,
            stats: None,
            scroll: 0,
        }
    }

    /// Whether the pane wants this key before the global bindings see it.
    pub fn captures(&self, key: &KeyEvent) -> bool {
        self.editing && !key.modifiers.contains(KeyModifiers::CONTROL)
    }

    pub fn on_key(&mut self, key: KeyEvent, engine: &Engine) {
        if self.editing {
            match key.code {
                KeyCode::Enter => self.send(engine),
                KeyCode::Esc => self.editing = false,
                KeyCode::Backspace => {
                    self.input.pop();
                }
                KeyCode::Char(c) => self.input.push(c),
                _ => {}
            }
            return;
        }
        match key.code {
            KeyCode::Char('i') | KeyCode::Enter => self.editing = true,
            KeyCode::Esc if self.pending.is_some() => engine.cancel(),
            KeyCode::Char('p') => self.show_prompt = !self.show_prompt,
            KeyCode::Char('c') if self.pending.is_none() => {
                self.turns.clear();
                self.last_prompt = None;
            }
            KeyCode::Up => self.scroll(-1),
            KeyCode::Down => self.scroll(1),
            _ => {}
        }
    }

    pub fn scroll(&mut self, delta: i32) {
        self.scroll = (self.scroll as i32 + delta).max(0) as u16;
    }

    fn send(&mut self, engine: &Engine) {
        let text = self.input.trim().to_string();
        if text.is_empty() || self.pending.is_some() {
            return;
        }
        self.input.clear();
        self.editing = false;
        self.turns.push(Turn {
            role: "user".into(),
            content: text,
        });
        let mut messages: Vec<serde_json::Value> = Vec::new();
        if let Some(s) = &self.system_prompt {
            messages.push(serde_json::json!({"role": "system", "content": s}));
        }
        messages.extend(
            self.turns
                .iter()
                .map(|t| serde_json::json!({"role": t.role, "content": t.content})),
        );
        self.turns.push(Turn {
            role: "assistant".into(),
            content: String::new(),
        });
        let id = self.next_id;
        self.next_id += 1;
        self.pending = Some(id);
        engine.send(Command::Generate {
            id,
            prompts: vec![Prompt::Messages(messages)],
            params: self.params.clone(),
        });
    }

    pub fn on_text(&mut self, id: u64, _row: usize, text: &str) {
        if self.pending == Some(id) {
            if let Some(t) = self.turns.last_mut() {
                t.content.push_str(text);
            }
        }
    }

    pub fn on_generated(&mut self, id: u64, results: &[GenerationResult], stats: &GenerationStats) {
        if self.pending != Some(id) {
            return;
        }
        self.pending = None;
        if let (Some(t), Some(r)) = (self.turns.last_mut(), results.first()) {
            t.content = r.text.clone();
            self.last_prompt = Some(r.prompt_text.clone());
        }
        self.stats = Some(stats.clone());
    }

    pub fn on_error(&mut self) {
        if self.pending.take().is_some() {
            if let Some(t) = self.turns.last() {
                if t.role == "assistant" && t.content.is_empty() {
                    self.turns.pop();
                }
            }
        }
    }

    pub fn draw(&self, f: &mut Frame, area: Rect) {
        let [history, input] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(area);
        let mut lines: Vec<Line> = Vec::new();
        if self.show_prompt {
            lines.push(Line::styled(
                "Prompt text sent to the model:",
                Style::default().fg(Color::Cyan),
            ));
            for l in self
                .last_prompt
                .as_deref()
                .unwrap_or("(nothing sent yet)")
                .lines()
            {
                lines.push(Line::styled(
                    l.to_string(),
                    Style::default().fg(Color::DarkGray),
                ));
            }
        } else {
            if let Some(s) = &self.system_prompt {
                lines.push(Line::styled(
                    format!("system: {s}"),
                    Style::default().fg(Color::DarkGray),
                ));
            }
            for t in &self.turns {
                let style = if t.role == "user" {
                    Style::default()
                        .fg(Color::Yellow)
                        .add_modifier(Modifier::BOLD)
                } else {
                    Style::default()
                        .fg(Color::Green)
                        .add_modifier(Modifier::BOLD)
                };
                let mut first = true;
                for l in t.content.split('\n') {
                    let prefix = if first {
                        format!("{:>9}: ", t.role)
                    } else {
                        " ".repeat(11)
                    };
                    first = false;
                    lines.push(Line::from(vec![
                        Span::styled(prefix, style),
                        Span::raw(l.to_string()),
                    ]));
                }
            }
        }
        let title = match (&self.pending, &self.stats) {
            (Some(_), _) => " Chat — generating (Esc stops) ".to_string(),
            (None, Some(s)) => format!(
                " Chat — last answer {} tokens at {:.1} tokens/s ",
                s.new_tokens,
                s.tokens_per_second()
            ),
            _ => " Chat ".to_string(),
        };
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .scroll((self.scroll, 0))
                .block(Block::default().borders(Borders::ALL).title(title)),
            history,
        );
        let style = if self.editing {
            Style::default().fg(Color::Yellow)
        } else {
            Style::default().fg(Color::DarkGray)
        };
        let shown = if self.editing || !self.input.is_empty() {
            format!("{}▏", self.input)
        } else {
            "press i to type a message".into()
        };
        f.render_widget(
            Paragraph::new(shown).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" Message ")
                    .border_style(style),
            ),
            input,
        );
    }
}
