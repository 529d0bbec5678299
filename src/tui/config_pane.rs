//! The Config pane: every config key grouped by section, its value (a mark where
//! it differs from the default), and one line on what it does and what it costs.
//! Values are edited in place as TOML literals; an edit is checked with the same
//! validation as loading, and a bad value shows its error and changes nothing.
//! `s` writes the file atomically.

use super::keys::Action;
use super::pane::{Ctx, Effect, Pane, Status};
use super::text_input::{InputOutcome, TextInput};
use crate::config::{RunConfig, FIELDS};
use crossterm::event::KeyEvent;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use std::path::Path;

#[derive(Debug, Default)]
pub struct ConfigPane {
    selected: usize,
    /// The value being typed for the selected key.
    editing: Option<TextInput>,
    /// The last edit's error, shown until the next edit.
    error: Option<String>,
}

/// A key's current value as TOML text (`None`: not set).
fn value_of(config: &toml::Value, section: &str, key: &str) -> Option<String> {
    config.get(section)?.get(key).map(|v| v.to_string())
}

/// Every key's default, as TOML values (computed once).
fn defaults() -> &'static toml::Value {
    static DEFAULTS: std::sync::LazyLock<toml::Value> = std::sync::LazyLock::new(|| {
        let full = "[model]\nsource = \"\"\n[quantization]\n[lora]\n[data]\nsource = \"\"\n";
        toml::from_str::<RunConfig>(full)
            .ok()
            .and_then(|c| toml::Value::try_from(c).ok())
            .unwrap_or(toml::Value::Table(Default::default()))
    });
    &DEFAULTS
}

/// `config` with `[section] key` set to the TOML literal `text` (empty: back to
/// the default), validated like a file.
pub fn apply_edit(
    config: &RunConfig,
    section: &str,
    key: &str,
    text: &str,
) -> Result<RunConfig, String> {
    let mut doc = toml::Value::try_from(config).map_err(|e| e.to_string())?;
    let table = doc.as_table_mut().ok_or("config is not a table")?;
    let sec = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(Default::default()));
    let sec = sec.as_table_mut().ok_or("section is not a table")?;
    if text.trim().is_empty() {
        sec.remove(key);
    } else {
        let parsed: toml::Table = toml::from_str(&format!("v = {text}")).map_err(|_| {
            format!("`{text}` is not a TOML value (strings need quotes, lists brackets)")
        })?;
        let v = parsed.get("v").cloned().ok_or("no value")?;
        sec.insert(key.to_string(), v);
    }
    let text = toml::to_string(&doc).map_err(|e| e.to_string())?;
    RunConfig::parse(&text, Path::new("edit")).map_err(|e| {
        // The line refers to the edited text, not the file: keep key and message.
        let s = e.to_string();
        s.split_once(": ")
            .map(|(_, rest)| rest.to_string())
            .unwrap_or(s)
    })
}

impl ConfigPane {
    const ACTIONS: &'static [Action] = &[
        Action::Up,
        Action::Down,
        Action::PageUp,
        Action::PageDown,
        Action::Home,
        Action::End,
        Action::Edit,
        Action::Select,
        Action::Save,
    ];

    fn move_by(&mut self, delta: i32) {
        let n = FIELDS.len() as i32;
        self.selected = (self.selected as i32 + delta).clamp(0, n - 1) as usize;
    }

    /// Enter on an edit: the config with the typed value, or the error.
    fn apply(&mut self, config: &RunConfig) -> Vec<Effect> {
        let Some(text) = &self.editing else {
            return Vec::new();
        };
        let f = &FIELDS[self.selected];
        match apply_edit(config, f.section, f.key, text.value()) {
            Ok(c) => {
                self.editing = None;
                self.error = None;
                vec![
                    Effect::SetConfig(Box::new(c)),
                    Effect::Status(Status::info("changed (s saves the file)")),
                ]
            }
            Err(e) => {
                self.error = Some(e);
                Vec::new()
            }
        }
    }
}

impl Pane for ConfigPane {
    fn name(&self) -> &'static str {
        "config"
    }

    fn title(&self) -> &'static str {
        "Config"
    }

    fn actions(&self) -> &'static [Action] {
        Self::ACTIONS
    }

    fn hints(&self) -> &'static [Action] {
        &[Action::Down, Action::Edit, Action::Save]
    }

    fn is_typing(&self) -> bool {
        self.editing.is_some()
    }

    fn on_key(&mut self, key: &KeyEvent, action: Option<Action>, ctx: &Ctx) -> Vec<Effect> {
        if let Some(input) = &mut self.editing {
            match input.on_key(key) {
                InputOutcome::Submit => return self.apply(&ctx.config),
                InputOutcome::Cancel => self.editing = None,
                _ => {}
            }
            return Vec::new();
        }
        match action {
            Some(Action::Down) => self.move_by(1),
            Some(Action::Up) => self.move_by(-1),
            Some(Action::PageDown) => self.move_by(10),
            Some(Action::PageUp) => self.move_by(-10),
            Some(Action::Home) => self.selected = 0,
            Some(Action::End) => self.selected = FIELDS.len() - 1,
            Some(Action::Edit | Action::Select) => {
                let f = &FIELDS[self.selected];
                let current = toml::Value::try_from(&ctx.config).ok();
                let value = current
                    .and_then(|c| value_of(&c, f.section, f.key))
                    .unwrap_or_default();
                self.editing = Some(TextInput::new(value));
                self.error = None;
            }
            Some(Action::Save) => return vec![Effect::SaveConfig],
            _ => {}
        }
        Vec::new()
    }

    fn on_scroll(&mut self, delta: i32) {
        self.move_by(delta);
    }

    fn draw(&self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        let theme = &ctx.theme;
        let [list, help] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(5)]).areas(area);
        let current =
            toml::Value::try_from(&ctx.config).unwrap_or(toml::Value::Table(Default::default()));
        let defaults = defaults();
        let height = list.height.saturating_sub(2) as usize;
        let mut lines: Vec<(usize, Line)> = Vec::new();
        let mut last_section = "";
        for (i, field) in FIELDS.iter().enumerate() {
            if field.section != last_section {
                last_section = field.section;
                lines.push((
                    i,
                    Line::styled(format!("[{}]", field.section), theme.accent),
                ));
            }
            let value = value_of(&current, field.section, field.key);
            let default = value_of(defaults, field.section, field.key);
            let changed = value.is_some() && value != default;
            let shown = match (&self.editing, i == self.selected) {
                (Some(input), true) => input.display(),
                _ => value
                    .clone()
                    .or(default.map(|d| format!("{d} (default)")))
                    .unwrap_or_else(|| "— (not set)".into()),
            };
            let mut key_style = if changed { theme.changed } else { theme.text };
            if i == self.selected {
                key_style = key_style.patch(theme.selected);
            }
            lines.push((
                i,
                Line::from(vec![
                    Span::styled(if changed { " * " } else { "   " }, theme.changed),
                    Span::styled(format!("{:<30}", field.key), key_style),
                    Span::styled(
                        format!(" {shown}"),
                        if changed { theme.changed } else { theme.dim },
                    ),
                ]),
            ));
        }
        // Keep the selection in view, with its section header when possible.
        let sel_line = lines
            .iter()
            .position(|(i, l)| *i == self.selected && !l.spans.is_empty() && l.spans.len() > 1)
            .unwrap_or(0);
        let start = sel_line
            .saturating_sub(height / 2)
            .min(lines.len().saturating_sub(height));
        let visible: Vec<Line> = lines
            .into_iter()
            .skip(start)
            .take(height)
            .map(|(_, l)| l)
            .collect();
        let title = format!(
            " {}{} — * differs from the default ",
            ctx.config_path.display(),
            if ctx.dirty { " (unsaved: s saves)" } else { "" }
        );
        f.render_widget(
            Paragraph::new(visible).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border)
                    .title(title),
            ),
            list,
        );
        let field = &FIELDS[self.selected];
        let mut text = vec![Line::styled(field.help, theme.text)];
        if let Some(e) = &self.error {
            text.push(Line::styled(
                format!("✗ {e} (nothing changed)"),
                theme.error,
            ));
        } else if self.editing.is_some() {
            text.push(Line::styled(
                "Enter applies (checked like the file), Esc cancels, empty = default",
                theme.dim,
            ));
        }
        f.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: true }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border)
                    .title(format!(" [{}] {} ", field.section, field.key)),
            ),
            help,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RunConfig {
        RunConfig::parse(
            "[model]\nsource = \"default\"\n[lora]\nr = 8\n",
            Path::new("t.toml"),
        )
        .expect("config")
    }

    #[test]
    fn good_edit_changes_the_value() {
        let c = apply_edit(&base(), "lora", "r", "16").expect("valid");
        assert_eq!(c.lora.expect("lora").r, 16);
        let c = apply_edit(&base(), "training", "packing", "true").expect("valid");
        assert!(c.training.packing);
    }

    #[test]
    fn bad_edits_are_refused_with_the_key() {
        let e = apply_edit(&base(), "lora", "r", "-3").expect_err("negative rank");
        assert!(e.contains("r") && e.contains("positive"), "{e}");
        let e = apply_edit(&base(), "lora", "r", "eight").expect_err("not TOML");
        assert!(e.contains("not a TOML value"), "{e}");
        let e = apply_edit(&base(), "quantization", "bnb_4bit_quant_type", "\"nf8\"")
            .expect_err("bad enum");
        assert!(e.contains("bnb_4bit_quant_type"), "{e}");
    }

    #[test]
    fn empty_edit_restores_the_default() {
        let c = apply_edit(&base(), "lora", "r", "").expect("default");
        assert_eq!(c.lora.expect("lora").r, 8);
    }
}
