//! The Batches pane: a collated batch at token level. Every token shows its
//! text, coloured by what training does with it — trained, masked (-100),
//! padding — with a mark where a packed sequence starts; the selected token's
//! id, label and position id are spelled out. Masking mode, packing, padding
//! side and max_length can be switched here: the changed config goes back to
//! the app, which has the data prepared again. The batch shown is collated
//! once per data view and batch, not per frame.

use super::keys::Action;
use super::pane::{Ctx, Effect, Pane};
use crate::collate::{collate, starts_sequence, token_kinds, Batch, TokenKind, IGNORE};
use crate::config::{PackingStrategy, PaddingSide, RunConfig};
use crate::engine::protocol::DataView;
use crossterm::event::KeyEvent;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

#[derive(Debug, Default)]
pub struct BatchesPane {
    batch: usize,
    row: usize,
    token: usize,
    /// The current batch, collated from the data view of `data_version`.
    collated: Option<Batch>,
    data_version: u64,
}

/// The masking modes, as the training settings express them.
pub fn masking_label(c: &RunConfig) -> &'static str {
    let t = &c.training;
    if t.assistant_only_loss {
        "assistant only"
    } else if t.completion_only_loss == Some(false) {
        "all tokens"
    } else {
        "completion only (prompt/completion data) / all tokens (others)"
    }
}

fn cycle_masking(c: &mut RunConfig) {
    let t = &mut c.training;
    (t.completion_only_loss, t.assistant_only_loss) =
        match (t.completion_only_loss, t.assistant_only_loss) {
            (_, true) => (Some(false), false),
            (Some(false), false) => (None, false),
            _ => (None, true),
        };
}

fn cycle_packing(c: &mut RunConfig) {
    let t = &mut c.training;
    (t.packing, t.packing_strategy) = match (t.packing, t.packing_strategy) {
        (false, _) => (true, PackingStrategy::Bfd),
        (true, PackingStrategy::Bfd) => (true, PackingStrategy::Wrapped),
        (true, PackingStrategy::Wrapped) => (false, PackingStrategy::Bfd),
    };
}

impl BatchesPane {
    fn batch_count(view: &DataView) -> usize {
        view.rows.len().div_ceil(view.options.batch_size.max(1))
    }

    /// Collates the current batch from the prepared rows (none: no such batch).
    fn recollate(&mut self, view: Option<&DataView>) {
        self.collated = view.and_then(|view| {
            let bs = view.options.batch_size.max(1);
            let rows = view.rows.chunks(bs).nth(self.batch)?;
            Some(collate(rows, view.pad_id as i64, &view.options))
        });
    }

    /// A settings key: the config with the setting changed.
    fn changed_config(action: Action, config: &RunConfig) -> Option<RunConfig> {
        let mut c = config.clone();
        match action {
            Action::CycleMasking => cycle_masking(&mut c),
            Action::CyclePacking => cycle_packing(&mut c),
            Action::CyclePadding => {
                c.template.padding_side = match c.template.padding_side {
                    PaddingSide::Right => PaddingSide::Left,
                    PaddingSide::Left => PaddingSide::Right,
                }
            }
            Action::LongerMaxLength => c.training.max_length += 16,
            Action::ShorterMaxLength => {
                c.training.max_length = c.training.max_length.saturating_sub(16).max(16)
            }
            _ => return None,
        }
        Some(c)
    }

    /// Moves the cursor within the data.
    fn navigate(&mut self, action: Action, view: &DataView) {
        let Some(b) = &self.collated else {
            return;
        };
        let rows = b.input_ids.len();
        let width = b.input_ids.first().map_or(0, Vec::len);
        match action {
            Action::NextBatch | Action::PrevBatch => {
                self.batch = if action == Action::NextBatch {
                    (self.batch + 1).min(Self::batch_count(view).saturating_sub(1))
                } else {
                    self.batch.saturating_sub(1)
                };
                self.row = 0;
                self.token = 0;
                self.recollate(Some(view));
            }
            Action::Right => self.token = (self.token + 1).min(width.saturating_sub(1)),
            Action::Left => self.token = self.token.saturating_sub(1),
            Action::Down => self.row = (self.row + 1).min(rows.saturating_sub(1)),
            Action::Up => self.row = self.row.saturating_sub(1),
            Action::Home => self.token = 0,
            Action::End => self.token = width.saturating_sub(1),
            _ => {}
        }
    }

    /// Keeps the cursor inside a new data view and collates its batch.
    fn take_view(&mut self, view: Option<&DataView>) {
        if let Some(view) = view {
            self.batch = self.batch.min(Self::batch_count(view).saturating_sub(1));
        }
        self.recollate(view);
        if let Some(b) = &self.collated {
            self.row = self.row.min(b.input_ids.len().saturating_sub(1));
            self.token = self
                .token
                .min(b.input_ids.first().map_or(0, Vec::len).saturating_sub(1));
        }
    }

    fn draw_batches(&self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        let (config, theme, busy) = (&ctx.config, &ctx.theme, ctx.preparing());
        let view = ctx.data.as_ref();
        let [head, body, detail] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Min(3),
            Constraint::Length(4),
        ])
        .areas(area);
        let t = &config.training;
        let packing = if t.packing {
            format!("{:?}", t.packing_strategy).to_lowercase()
        } else {
            "off".into()
        };
        let settings = Line::from(vec![
            Span::styled("masking ", theme.dim),
            Span::styled(masking_label(config), theme.accent),
            Span::styled("  packing ", theme.dim),
            Span::styled(packing, theme.accent),
            Span::styled("  padding ", theme.dim),
            Span::styled(
                format!("{:?}", config.template.padding_side).to_lowercase(),
                theme.accent,
            ),
            Span::styled("  max_length ", theme.dim),
            Span::styled(t.max_length.to_string(), theme.accent),
            Span::styled("  batch size ", theme.dim),
            Span::styled(t.per_device_train_batch_size.to_string(), theme.accent),
            Span::styled(if busy { "  (preparing…)" } else { "" }, theme.warning),
        ]);
        let legend = Line::from(vec![
            Span::styled(" trained ", theme.trained),
            Span::raw(" "),
            Span::styled(" masked -100 ", theme.masked),
            Span::raw(" "),
            Span::styled(" padding ", theme.pad),
            Span::raw(" "),
            Span::styled("▏", theme.boundary),
            Span::styled("sequence start ", theme.dim),
            Span::styled(" special ", theme.special),
        ]);
        f.render_widget(
            Paragraph::new(vec![settings, legend]).block(
                Block::default()
                    .borders(Borders::BOTTOM)
                    .border_style(theme.border),
            ),
            head,
        );
        let Some(view) = view else {
            f.render_widget(
                Paragraph::new(if busy {
                    "preparing the dataset…"
                } else {
                    "no data: the config needs a [data] section"
                })
                .style(theme.dim),
                body,
            );
            return;
        };
        let Some(b) = &self.collated else {
            f.render_widget(
                Paragraph::new("no batch: every example was dropped (see the Data pane)")
                    .style(theme.warning),
                body,
            );
            return;
        };
        let mut lines: Vec<Line> = Vec::new();
        let mut selected_kind = None;
        for r in 0..b.input_ids.len() {
            let kinds = token_kinds(b, r, view.pad_id as i64);
            if r == self.row {
                selected_kind = kinds.get(self.token).copied();
            }
            let mut spans = vec![Span::styled(
                format!("{r:>2} "),
                if r == self.row {
                    theme.accent
                } else {
                    theme.dim
                },
            )];
            for (i, &id) in b.input_ids[r].iter().enumerate() {
                if starts_sequence(b, r, i, kinds[i]) {
                    spans.push(Span::styled("▏", theme.boundary));
                }
                let piece = view
                    .pieces
                    .get(&(id as u32))
                    .map(String::as_str)
                    .unwrap_or("?");
                // Padding is shown one cell per token: its text says nothing.
                let text = if kinds[i] == TokenKind::Pad {
                    "░".to_string()
                } else {
                    piece.replace('\n', "⏎").replace(' ', "·")
                };
                let mut style: Style = match kinds[i] {
                    TokenKind::Trained => theme.trained,
                    TokenKind::Masked => theme.masked,
                    TokenKind::Pad => theme.pad,
                };
                if view.special_ids.contains(&(id as u32)) && kinds[i] != TokenKind::Pad {
                    style = style.patch(theme.special);
                }
                if r == self.row && i == self.token {
                    style = style.patch(theme.selected);
                }
                spans.push(Span::styled(text, style));
            }
            lines.push(Line::from(spans));
        }
        let title = format!(
            " batch {} of {} — {} rows{} ",
            self.batch + 1,
            Self::batch_count(view),
            b.input_ids.len(),
            if b.position_ids.is_some() {
                ", padding-free (one flattened row)"
            } else {
                ""
            }
        );
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border)
                    .title(title),
            ),
            body,
        );
        let mut info = vec![];
        if let (Some(ids), Some(labels)) = (b.input_ids.get(self.row), b.labels.get(self.row)) {
            if let (Some(&id), Some(&label), Some(kind)) =
                (ids.get(self.token), labels.get(self.token), selected_kind)
            {
                let pos = b.position_ids.as_ref().map_or(
                    b.attention_mask.as_ref().map_or(self.token as i64, |m| {
                        m[self.row][..self.token].iter().sum::<i64>()
                    }),
                    |p| p[self.row][self.token],
                );
                info.push(Line::from(format!(
                    "row {} token {}: id {id} {:?}  label {}  position {pos}  attention {}  → {}",
                    self.row,
                    self.token,
                    view.pieces.get(&(id as u32)).cloned().unwrap_or_default(),
                    if label == IGNORE {
                        "-100".to_string()
                    } else {
                        label.to_string()
                    },
                    b.attention_mask
                        .as_ref()
                        .map_or("—".to_string(), |m| m[self.row][self.token].to_string()),
                    match kind {
                        TokenKind::Trained => "trained: the loss includes predicting this token",
                        TokenKind::Masked => "masked: seen as context, not trained",
                        TokenKind::Pad => "padding: ignored",
                    }
                )));
            }
        }
        let r = &view.report;
        info.push(Line::styled(
            format!(
                "{} examples → {} rows; {} truncated, {} dropped with nothing to train; {} of {} end with a trained stop token",
                r.examples,
                r.rows,
                r.truncated,
                r.dropped_no_labels,
                r.ends_with_stop,
                r.trained_tokens.len()
            ),
            theme.dim,
        ));
        f.render_widget(
            Paragraph::new(info).wrap(Wrap { trim: true }).block(
                Block::default()
                    .borders(Borders::TOP)
                    .border_style(theme.border),
            ),
            detail,
        );
    }
}

impl Pane for BatchesPane {
    fn name(&self) -> &'static str {
        "batches"
    }

    fn title(&self) -> &'static str {
        "Batches"
    }

    fn actions(&self) -> &'static [Action] {
        &[
            Action::NextBatch,
            Action::PrevBatch,
            Action::Left,
            Action::Right,
            Action::Up,
            Action::Down,
            Action::Home,
            Action::End,
            Action::CycleMasking,
            Action::CyclePacking,
            Action::CyclePadding,
            Action::LongerMaxLength,
            Action::ShorterMaxLength,
        ]
    }

    fn hints(&self) -> &'static [Action] {
        &[
            Action::NextBatch,
            Action::Right,
            Action::CycleMasking,
            Action::CyclePacking,
            Action::CyclePadding,
            Action::LongerMaxLength,
        ]
    }

    fn on_key(&mut self, _key: &KeyEvent, action: Option<Action>, ctx: &Ctx) -> Vec<Effect> {
        let Some(action) = action else {
            return Vec::new();
        };
        if let Some(c) = Self::changed_config(action, &ctx.config) {
            return vec![Effect::SetConfig(Box::new(c))];
        }
        if let Some(view) = &ctx.data {
            self.navigate(action, view);
        }
        Vec::new()
    }

    fn on_context(&mut self, ctx: &Ctx) {
        if ctx.data_version != self.data_version {
            self.data_version = ctx.data_version;
            self.take_view(ctx.data.as_ref());
        }
    }

    fn draw(&self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        self.draw_batches(f, area, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collate::{CollateOptions, Report, Row};
    use crate::tui::theme::Theme;
    use std::path::{Path, PathBuf};

    fn view(lengths: &[usize]) -> DataView {
        let config = RunConfig::parse(
            "[model]\nsource = \"m\"\n[training]\nper_device_train_batch_size = 2\n",
            Path::new("t.toml"),
        )
        .expect("config");
        let rows = lengths
            .iter()
            .map(|&n| Row {
                input_ids: (1..=n as u32).collect(),
                labels: (1..=n as i64).collect(),
                seq_lengths: vec![n],
                sources: vec![0],
            })
            .collect();
        DataView {
            source: "d.jsonl".into(),
            format: "Text".into(),
            columns: vec![],
            total_records: lengths.len(),
            skipped: vec![],
            eval_examples: 0,
            examples: vec![],
            rows,
            report: Report::default(),
            options: CollateOptions::from_config(&config),
            pad_id: 0,
            pieces: Default::default(),
            special_ids: vec![],
            chat_template_source: String::new(),
        }
    }

    fn ctx(data: DataView, version: u64) -> Ctx {
        Ctx {
            config: RunConfig::parse("[model]\nsource = \"m\"\n", Path::new("t.toml"))
                .expect("config"),
            config_path: PathBuf::from("t.toml"),
            dirty: false,
            model: None,
            data: Some(data),
            data_version: version,
            data_job: None,
            theme: Theme::default(),
        }
    }

    fn rows(p: &BatchesPane) -> Vec<usize> {
        p.collated
            .as_ref()
            .map_or(vec![], |b| b.input_ids.iter().map(Vec::len).collect())
    }

    #[test]
    fn the_batch_is_collated_when_its_inputs_change_only() {
        let mut p = BatchesPane::default();
        let c = ctx(view(&[3, 2, 5]), 1);
        p.on_context(&c);
        assert_eq!(rows(&p), [3, 3], "padded to the longest");
        p.on_key(
            &KeyEvent::from(crossterm::event::KeyCode::Char('n')),
            Some(Action::NextBatch),
            &c,
        );
        assert_eq!(rows(&p), [5], "the second batch");
        // The same view again (a config or model change): nothing to collate.
        p.collated = None;
        p.on_context(&c);
        assert!(p.collated.is_none(), "not collated again");
        // A new view: collated once, the cursor kept inside it.
        p.on_context(&ctx(view(&[4]), 2));
        assert_eq!((p.batch, rows(&p)), (0, vec![4]));
    }
}
