//! The Chat pane: a multi-turn conversation with the loaded model, answers
//! streamed token by token, the exact prompt text on request, a stop key, and a
//! side-by-side mode that sends each message to the base model and to the model
//! with its adapter. Each request names its adapter, so the two answers never
//! depend on which adapter happens to be active.

use super::keys::Action;
use super::pane::{Ctx, Effect, Pane, Status};
use super::text_input::{InputOutcome, TextInput};
use super::theme::Theme;
use super::wrap::wrap;
use crate::config::RunConfig;
use crate::engine::protocol::{
    Control, Event, GenerateRequest, GenerationStats, JobId, JobOutput, Prompt, Request,
    SamplingParams, Task,
};
use crossterm::event::KeyEvent;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use std::collections::VecDeque;

/// Who says a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// As chat templates spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    /// The answer of the model as configured (with its adapter).
    pub content: String,
    /// In side-by-side mode, the base model's answer.
    pub base: Option<String>,
}

/// Which answer a generation fills.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Main,
    Base,
}

/// The width of the role column: `assistant: `.
const ROLE_WIDTH: usize = 11;

pub struct ChatPane {
    turns: Vec<Turn>,
    input: TextInput,
    editing: bool,
    system_prompt: Option<String>,
    params: SamplingParams,
    /// Generations asked for whose job ids have not come back yet, in order.
    awaiting: VecDeque<Column>,
    /// Generations running, by job.
    pending: Vec<(JobId, Column)>,
    last_prompt: Option<String>,
    show_prompt: bool,
    side_by_side: bool,
    stats: Option<GenerationStats>,
    scroll: u16,
}

impl ChatPane {
    pub fn new(config: &RunConfig) -> Self {
        ChatPane {
            turns: Vec::new(),
            input: TextInput::default(),
            editing: false,
            system_prompt: config.data.as_ref().and_then(|d| d.system_prompt.clone()),
            params: (&config.generation).into(),
            awaiting: VecDeque::new(),
            pending: Vec::new(),
            last_prompt: None,
            show_prompt: false,
            side_by_side: false,
            stats: None,
            scroll: 0,
        }
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

    fn is_generating(&self) -> bool {
        !self.pending.is_empty() || !self.awaiting.is_empty()
    }

    /// The adapter side by side compares against: the active one, else the
    /// first loaded.
    fn compared_adapter(ctx: &Ctx) -> Option<String> {
        let m = ctx.model.as_ref()?;
        m.active_adapter
            .clone()
            .or_else(|| m.adapters.first().cloned())
    }

    fn active_adapter(ctx: &Ctx) -> Option<String> {
        ctx.model.as_ref().and_then(|m| m.active_adapter.clone())
    }

    fn generate(
        &mut self,
        ctx: &Ctx,
        messages: &[serde_json::Value],
        column: Column,
        adapter: Option<String>,
    ) -> Effect {
        self.awaiting.push_back(column);
        Effect::Submit(Request::Generate(GenerateRequest {
            prompts: vec![Prompt::Messages(messages.to_vec())],
            params: self.params.clone(),
            adapter,
            chat_template: ctx.config.template.chat_template.clone(),
        }))
    }

    fn send(&mut self, ctx: &Ctx) -> Vec<Effect> {
        let text = self.input.value().trim().to_string();
        if text.is_empty() || self.is_generating() {
            return Vec::new();
        }
        self.input.clear();
        self.editing = false;
        self.turns.push(Turn {
            role: Role::User,
            content: text,
            base: None,
        });
        let message = |role: Role, content: &str| serde_json::json!({"role": role.as_str(), "content": content});
        let mut messages: Vec<serde_json::Value> = Vec::new();
        if let Some(s) = &self.system_prompt {
            messages.push(message(Role::System, s));
        }
        messages.extend(self.turns.iter().map(|t| message(t.role, &t.content)));
        let compared = Self::compared_adapter(ctx).filter(|_| self.side_by_side);
        self.turns.push(Turn {
            role: Role::Assistant,
            content: String::new(),
            base: compared.is_some().then(String::new),
        });
        match compared {
            Some(a) => vec![
                self.generate(ctx, &messages, Column::Base, None),
                self.generate(ctx, &messages, Column::Main, Some(a)),
            ],
            None => vec![self.generate(ctx, &messages, Column::Main, Self::active_adapter(ctx))],
        }
    }

    fn toggle_adapter(ctx: &Ctx) -> Vec<Effect> {
        let Some(m) = &ctx.model else {
            return Vec::new();
        };
        let effect = match (&m.active_adapter, m.adapters.first()) {
            (Some(_), _) => Effect::Submit(Request::SetAdapter(None)),
            (None, Some(a)) => Effect::Submit(Request::SetAdapter(Some(a.clone()))),
            (None, None) => Effect::Status(Status::error(format!(
                "no adapter loaded: train one, or put it in {}",
                ctx.config.training.output_dir
            ))),
        };
        vec![effect]
    }

    fn column(&self, job: JobId) -> Option<Column> {
        self.pending
            .iter()
            .find(|(j, _)| *j == job)
            .map(|(_, c)| *c)
    }

    /// The answer `column` of the last turn.
    fn answer(&mut self, column: Column) -> Option<&mut String> {
        let t = self.turns.last_mut()?;
        Some(match column {
            Column::Main => &mut t.content,
            Column::Base => t.base.get_or_insert_with(String::new),
        })
    }

    /// The last generation failed: drop an answer that never started.
    fn failed(&mut self, job: JobId) {
        self.pending.retain(|(j, _)| *j != job);
        if self.is_generating() {
            return;
        }
        if self
            .turns
            .last()
            .is_some_and(|t| t.role == Role::Assistant && t.content.is_empty())
        {
            self.turns.pop();
        }
    }

    fn history_lines(&self, theme: &Theme, column: Column, width: u16) -> Vec<Line<'static>> {
        // Inside the borders, after the role column.
        let text_width = (width as usize).saturating_sub(2 + ROLE_WIDTH).max(1);
        let mut lines = Vec::new();
        let mut push = |role: Role, content: &str, style: Style, text_style: Style| {
            for (k, l) in wrap(content, text_width).into_iter().enumerate() {
                let prefix = if k == 0 {
                    format!("{:>9}: ", role.as_str())
                } else {
                    " ".repeat(ROLE_WIDTH)
                };
                lines.push(Line::from(vec![
                    Span::styled(prefix, style),
                    Span::styled(l, text_style),
                ]));
            }
        };
        if let Some(s) = &self.system_prompt {
            push(Role::System, s, theme.dim, theme.dim);
        }
        for t in &self.turns {
            let style = match t.role {
                Role::User => theme.user,
                Role::Assistant | Role::System => theme.assistant,
            };
            let content = match (column, &t.base) {
                (Column::Base, Some(b)) => b.as_str(),
                _ => t.content.as_str(),
            };
            push(t.role, content, style, theme.text);
        }
        lines
    }

    fn history(&self, theme: &Theme, column: Column, area: Rect, title: String) -> Paragraph<'_> {
        Paragraph::new(self.history_lines(theme, column, area.width))
            .scroll((self.scroll, 0))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border)
                    .title(title),
            )
    }
}

impl Pane for ChatPane {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn title(&self) -> &'static str {
        "Chat"
    }

    fn actions(&self) -> &'static [Action] {
        &[
            Action::Edit,
            Action::Select,
            Action::StopGeneration,
            Action::ToggleAdapter,
            Action::SideBySide,
            Action::ShowPrompt,
            Action::ClearChat,
            Action::Up,
            Action::Down,
        ]
    }

    fn hints(&self) -> &'static [Action] {
        &[
            Action::Edit,
            Action::StopGeneration,
            Action::ToggleAdapter,
            Action::SideBySide,
            Action::ShowPrompt,
        ]
    }

    fn is_typing(&self) -> bool {
        self.editing
    }

    fn on_key(&mut self, key: &KeyEvent, action: Option<Action>, ctx: &Ctx) -> Vec<Effect> {
        if self.editing {
            match self.input.on_key(key) {
                InputOutcome::Submit => return self.send(ctx),
                InputOutcome::Cancel => self.editing = false,
                _ => {}
            }
            return Vec::new();
        }
        match action {
            Some(Action::Edit | Action::Select) => self.editing = true,
            Some(Action::StopGeneration) => {
                return self
                    .pending
                    .iter()
                    .map(|(job, _)| Effect::Control(*job, Control::Stop))
                    .collect()
            }
            Some(Action::ToggleAdapter) => return Self::toggle_adapter(ctx),
            Some(Action::ShowPrompt) => self.show_prompt = !self.show_prompt,
            Some(Action::SideBySide) => self.side_by_side = !self.side_by_side,
            Some(Action::ClearChat) if !self.is_generating() => {
                self.turns.clear();
                self.last_prompt = None;
            }
            Some(Action::Up) => self.on_scroll(-1),
            Some(Action::Down) => self.on_scroll(1),
            _ => {}
        }
        Vec::new()
    }

    fn on_scroll(&mut self, delta: i32) {
        self.scroll = (self.scroll as i32 + delta).max(0) as u16;
    }

    fn on_submitted(&mut self, job: JobId, task: Task) {
        if task == Task::Generate {
            if let Some(column) = self.awaiting.pop_front() {
                self.pending.push((job, column));
            }
        }
    }

    fn on_job(&mut self, event: &Event) {
        let Some(column) = self.column(event.job()) else {
            return;
        };
        match event {
            Event::Text { text, .. } => {
                if let Some(a) = self.answer(column) {
                    a.push_str(text);
                }
            }
            Event::Finished {
                job,
                outcome: Ok(JobOutput::Generated { results, stats }),
            } => {
                self.pending.retain(|(j, _)| j != job);
                if let Some(r) = results.first() {
                    if let Some(a) = self.answer(column) {
                        a.clone_from(&r.text);
                    }
                    self.last_prompt = Some(r.prompt_text.clone());
                }
                self.stats = Some(stats.clone());
            }
            Event::Finished { job, .. } => self.failed(*job),
            Event::Started { .. } | Event::Progress { .. } => {}
        }
    }

    /// Takes up `[generation]` and the system prompt after a config edit.
    fn on_context(&mut self, ctx: &Ctx) {
        self.params = (&ctx.config.generation).into();
        self.system_prompt = ctx
            .config
            .data
            .as_ref()
            .and_then(|d| d.system_prompt.clone());
    }

    fn draw(&self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        let theme = &ctx.theme;
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
        let compared = Self::compared_adapter(ctx);
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
                    .block(
                        Block::default()
                            .borders(Borders::ALL)
                            .border_style(theme.border)
                            .title(" exact prompt text sent (P hides) "),
                    ),
                history,
            );
        } else if let (true, Some(adapter)) = (self.side_by_side, &compared) {
            let [left, right] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(history);
            let base = self.history(theme, Column::Base, left, " base model ".into());
            f.render_widget(base, left);
            let title = format!(" with adapter `{adapter}` — {status} ");
            f.render_widget(self.history(theme, Column::Main, right, title), right);
        } else {
            let who = match Self::active_adapter(ctx) {
                Some(a) => format!("adapter `{a}`"),
                None => "base model".into(),
            };
            let note = if self.side_by_side {
                " (side by side needs an adapter)"
            } else {
                ""
            };
            let title = format!(" Chat — {who}{note} {status} ");
            f.render_widget(self.history(theme, Column::Main, history, title), history);
        }
        let shown = if self.editing {
            self.input.display()
        } else if !self.input.is_empty() {
            self.input.value().to_string()
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
