//! The Config pane: every config key, grouped by section, with its value, a
//! mark where it differs from the default, and one line on what it does and
//! what it costs.

use super::app::Binding;
use crate::config::{RunConfig, FIELDS};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use std::path::Path;

#[derive(Debug, Default)]
pub struct ConfigPane {
    pub selected: usize,
}

/// A key's current value and its default, as TOML text (`None`: not set).
fn value_of(config: &toml::Value, section: &str, key: &str) -> Option<String> {
    config.get(section)?.get(key).map(|v| v.to_string())
}

fn defaults() -> toml::Value {
    let full = "[model]\nsource = \"\"\n[quantization]\n[lora]\n[data]\nsource = \"\"\n";
    toml::from_str::<RunConfig>(full)
        .ok()
        .and_then(|c| toml::Value::try_from(c).ok())
        .unwrap_or(toml::Value::Table(Default::default()))
}

impl ConfigPane {
    pub const BINDINGS: &'static [Binding] = &[("↑/↓ j/k", "select key"), ("PgUp/PgDn", "page")];

    pub fn on_key(&mut self, key: KeyEvent, _config: &RunConfig) {
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::PageDown => self.move_by(10),
            KeyCode::PageUp => self.move_by(-10),
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = FIELDS.len() - 1,
            _ => {}
        }
    }

    pub fn scroll(&mut self, delta: i32, _config: &RunConfig) {
        self.move_by(delta);
    }

    fn move_by(&mut self, delta: i32) {
        let n = FIELDS.len() as i32;
        self.selected = (self.selected as i32 + delta).clamp(0, n - 1) as usize;
    }

    pub fn draw(&self, f: &mut Frame, area: Rect, config: &RunConfig, path: &Path) {
        let [list, help] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(4)]).areas(area);
        let current =
            toml::Value::try_from(config).unwrap_or(toml::Value::Table(Default::default()));
        let defaults = defaults();
        let height = list.height.saturating_sub(2) as usize;
        let first = self.selected.saturating_sub(height.saturating_sub(1) / 2);
        let mut lines = Vec::new();
        let mut last_section = "";
        for (i, field) in FIELDS.iter().enumerate() {
            if field.section != last_section {
                last_section = field.section;
                lines.push((
                    i,
                    Line::styled(
                        format!("[{}]", field.section),
                        Style::default()
                            .fg(Color::Cyan)
                            .add_modifier(Modifier::BOLD),
                    ),
                ));
            }
            let value = value_of(&current, field.section, field.key);
            let default = value_of(&defaults, field.section, field.key);
            let changed = value.is_some() && value != default;
            let shown = value
                .clone()
                .or(default.map(|d| format!("{d} (default)")))
                .unwrap_or_else(|| "—".into());
            let mut style = Style::default();
            if changed {
                style = style.fg(Color::Yellow);
            }
            if i == self.selected {
                style = style.add_modifier(Modifier::REVERSED);
            }
            lines.push((
                i,
                Line::from(vec![
                    Span::raw(if changed { " * " } else { "   " }),
                    Span::styled(format!("{:<30}", field.key), style),
                    Span::raw(format!(" {shown}")),
                ]),
            ));
        }
        let start = lines
            .iter()
            .position(|(i, _)| *i >= first)
            .unwrap_or(0)
            .saturating_sub(1);
        let visible: Vec<Line> = lines.into_iter().skip(start).map(|(_, l)| l).collect();
        f.render_widget(
            Paragraph::new(visible).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {} — * differs from the default ", path.display())),
            ),
            list,
        );
        let field = &FIELDS[self.selected];
        f.render_widget(
            Paragraph::new(field.help).wrap(Wrap { trim: true }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" [{}] {} ", field.section, field.key)),
            ),
            help,
        );
    }
}
