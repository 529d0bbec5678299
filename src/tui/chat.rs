//! The Chat pane: a multi-turn conversation with the loaded model, answers
//! streamed token by token, the exact prompt text on request, a stop key, and a
//! side-by-side mode that sends each message to the base model and to the model
//! with its adapter.

use super::keys::Action;
use super::theme::Theme;
use crate::config::RunConfig;
use crate::engine::{Command, Engine, GenerationResult, Prompt};
use crate::generate::{GenerationStats, SamplingParams};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: String,
    /// The answer of the model as configured (with its active adapter).
    pub content: String,
    /// In side-by-side mode, the base model's answer.
    pub base: Option<String>,
}

/// Which answer a generation request fills.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Main,
    Base,
}

pub struct ChatPane {
    pub turns: Vec<Turn>,
    pub input: String,
    pub editing: bool,
    pub system_prompt: Option<String>,
    pub params: SamplingParams,
    pending: Vec<(u64, Column)>,
    pub next_id: u64,
    pub last_prompt: Option<String>,
    pub show_prompt: bool,
    pub side_by_side: bool,
    pub stats: Option<GenerationStats>,
    pub scroll: u16,
}

impl ChatPane {
    pub const ACTIONS: &'static [Action] = &[
        Action::Edit,
        Action::Select,
        Action::StopGeneration,
        Action::ToggleAdapter,
        Action::SideBySide,
        Action::ShowPrompt,
        Action::ClearChat,
        Action::Up,
        Action::Down,
    ];
    pub const HINTS: &'static [Action] = &[
        Action::Edit,
        Action::StopGeneration,
        Action::ToggleAdapter,
        Action::SideBySide,
        Action::ShowPrompt,
    ];

    pub fn new(config: &RunConfig) -> Self {
        ChatPane {
            turns: Vec::new(),
            input: String::new(),
            editing: false,
            system_prompt: config.data.as_ref().and_then(|d| d.system_prompt.clone()),
            params: (&config.generation).into(),
            pending: Vec::new(),
            next_id: 1,
            last_prompt: None,
            show_prompt: false,
            side_by_side: false,
            stats: None,
            scroll: 0,
        }
    }

    /// Takes up `[generation]` and the system prompt after a config edit.
    pub fn apply_config(&mut self, config: &RunConfig) {
        self.params = (&config.generation).into();
        self.system_prompt = config.data.as_ref().and_then(|d| d.system_prompt.clone());
    }

    /// The sampling settings in a few words, for the title.
    fn sampling(&self) -> String {
        let p = &self.params;
        if p.temperature == 0.0 {
            format!("greedy, ≤{} tokens", p.max_new_tokens)
        } else {
            format!(
                "T={} top-p={} top-k={}, ≤{} tokens",
                p.temperature, p.top_p, p.top_k, p.max_new_tokens
            )
        }
    }

    pub fn is_generating(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the pane wants this key before the global bindings see it.
    pub fn captures(&self, key: &KeyEvent) -> bool {
        self.editing && !key.modifiers.contains(KeyModifiers::CONTROL)
    }

    /// Handles a key; `adapter` is the adapter to compare against in
    /// side-by-side mode (the loaded one), if any.
    pub fn on_key(
        &mut self,
        key: KeyEvent,
        action: Option<Action>,
        engine: &Engine,
        adapter: Option<&str>,
    ) {
        if self.editing {
            match key.code {
                KeyCode::Enter => self.send(engine, adapter),
                KeyCode::Esc => self.editing = false,
                KeyCode::Backspace => {
                    self.input.pop();
                }
                KeyCode::Char(c) => self.input.push(c),
                _ => {}
            }
            return;
        }
        match action {
            Some(Action::Edit | Action::Select) => self.editing = true,
            Some(Action::StopGeneration) if self.is_generating() => engine.cancel(),
            Some(Action::ShowPrompt) => self.show_prompt = !self.show_prompt,
            Some(Action::SideBySide) => self.side_by_side = !self.side_by_side,
            Some(Action::ClearChat) if !self.is_generating() => {
                self.turns.clear();
                self.last_prompt = None;
            }
            Some(Action::Up) => self.scroll(-1),
            Some(Action::Down) => self.scroll(1),
            _ => {}
        }
    }

    pub fn scroll(&mut self, delta: i32) {
        self.scroll = (self.scroll as i32 + delta).max(0) as u16;
    }

    fn generate(&mut self, engine: &Engine, messages: &[serde_json::Value], column: Column) {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push((id, column));
        engine.send(Command::Generate {
            id,
            prompts: vec![Prompt::Messages(messages.to_vec())],
            params: self.params.clone(),
        });
    }

    fn send(&mut self, engine: &Engine, adapter: Option<&str>) {
        let text = self.input.trim().to_string();
        if text.is_empty() || self.is_generating() {
            return;
        }
        self.input.clear();
        self.editing = false;
        self.turns.push(Turn {
            role: "user".into(),
            content: text,
            base: None,
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
        let compare = self.side_by_side && adapter.is_some();
        self.turns.push(Turn {
            role: "assistant".into(),
            content: String::new(),
            base: compare.then(String::new),
        });
        match (compare, adapter) {
            (true, Some(a)) => {
                // The engine runs commands in order: base first, then the adapter.
                engine.send(Command::SetAdapter(None));
                self.generate(engine, &messages, Column::Base);
                engine.send(Command::SetAdapter(Some(a.to_string())));
                self.generate(engine, &messages, Column::Main);
            }
            _ => self.generate(engine, &messages, Column::Main),
        }
    }

    fn column(&self, id: u64) -> Option<Column> {
        self.pending.iter().find(|(i, _)| *i == id).map(|(_, c)| *c)
    }

    pub fn on_text(&mut self, id: u64, _row: usize, text: &str) {
        let Some(column) = self.column(id) else {
            return;
        };
        if let Some(t) = self.turns.last_mut() {
            match column {
                Column::Main => t.content.push_str(text),
                Column::Base => t.base.get_or_insert_with(String::new).push_str(text),
            }
        }
    }

    pub fn on_generated(&mut self, id: u64, results: &[GenerationResult], stats: &GenerationStats) {
        let Some(column) = self.column(id) else {
            return;
        };
        self.pending.retain(|(i, _)| *i != id);
        if let (Some(t), Some(r)) = (self.turns.last_mut(), results.first()) {
            match column {
                Column::Main => t.content = r.text.clone(),
                Column::Base => t.base = Some(r.text.clone()),
            }
            self.last_prompt = Some(r.prompt_text.clone());
        }
        self.stats = Some(stats.clone());
    }

    pub fn on_error(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.pending.clear();
        if let Some(t) = self.turns.last() {
            if t.role == "assistant" && t.content.is_empty() {
                self.turns.pop();
            }
        }
    }

    fn history_lines<'a>(&'a self, theme: &Theme, column: Column) -> Vec<Line<'a>> {
        let mut lines: Vec<Line> = Vec::new();
        if let Some(s) = &self.system_prompt {
            lines.push(Line::styled(format!("system: {s}"), theme.dim));
        }
        for t in &self.turns {
            let style = if t.role == "user" {
                theme.user
            } else {
                theme.assistant
            };
            let content = match (column, &t.base) {
                (Column::Base, Some(b)) => b.as_str(),
                _ => t.content.as_str(),
            };
            for (k, l) in content.split('\n').enumerate() {
                let prefix = if k == 0 {
                    format!("{:>9}: ", t.role)
                } else {
                    " ".repeat(11)
                };
                lines.push(Line::from(vec![
                    Span::styled(prefix, style),
                    Span::styled(l.to_string(), theme.text),
                ]));
            }
        }
        lines
    }

    pub fn draw(&self, f: &mut Frame, area: Rect, adapter: Option<&str>, theme: &Theme) {
        let [history, input] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(area);
        let status = match (self.is_generating(), &self.stats) {
            (true, _) => "generating (Esc stops)".to_string(),
            (false, Some(s)) => format!(
                "last answer {} tokens at {:.1} tokens/s",
                s.new_tokens,
                s.tokens_per_second()
            ),
            _ => self.sampling(),
        };
        let block = |title: String| {
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border)
                .title(title)
        };
        if self.show_prompt {
            let lines: Vec<Line> = self
                .last_prompt
                .as_deref()
                .unwrap_or("(nothing sent yet)")
                .split('\n')
                .map(|l| Line::styled(l.to_string(), theme.dim))
                .collect();
            f.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .scroll((self.scroll, 0))
                    .block(block(" exact prompt text sent (P hides) ".into())),
                history,
            );
        } else if self.side_by_side && adapter.is_some() {
            let [left, right] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(history);
            f.render_widget(
                Paragraph::new(self.history_lines(theme, Column::Base))
                    .wrap(Wrap { trim: false })
                    .scroll((self.scroll, 0))
                    .block(block(" base model ".into())),
                left,
            );
            f.render_widget(
                Paragraph::new(self.history_lines(theme, Column::Main))
                    .wrap(Wrap { trim: false })
                    .scroll((self.scroll, 0))
                    .block(block(format!(
                        " with adapter `{}` — {status} ",
                        adapter.unwrap_or_default()
                    ))),
                right,
            );
        } else {
            let who = match adapter {
                Some(a) => format!("adapter `{a}`"),
                None => "base model".into(),
            };
            let note = if self.side_by_side {
                " (side by side needs an adapter)"
            } else {
                ""
            };
            f.render_widget(
                Paragraph::new(self.history_lines(theme, Column::Main))
                    .wrap(Wrap { trim: false })
                    .scroll((self.scroll, 0))
                    .block(block(format!(" Chat — {who}{note} {status} "))),
                history,
            );
        }
        let shown = if self.editing || !self.input.is_empty() {
            format!("{}▏", self.input)
        } else {
            "press i to type a message".into()
        };
        f.render_widget(
            Paragraph::new(shown)
                .style(if self.editing { theme.text } else { theme.dim })
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(" Message ")
                        .border_style(if self.editing {
                            theme.border_focused
                        } else {
                            theme.border
                        }),
                ),
            input,
        );
    }
}
