//! The Batches pane: a collated batch at token level. Every token shows its
//! text, coloured by what training does with it — trained, masked (-100),
//! padding — with a mark where a packed sequence starts; the selected token's
//! id, label and position id are spelled out. Masking mode, packing, padding
//! side and max_length can be switched here and the batch is rebuilt at once.

use super::keys::Action;
use super::theme::Theme;
use crate::collate::{collate, starts_sequence, token_kinds, Batch, TokenKind, IGNORE};
use crate::config::{PackingStrategy, PaddingSide, RunConfig};
use crate::dataview::DataView;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

#[derive(Debug, Default)]
pub struct BatchesPane {
    pub batch: usize,
    pub row: usize,
    pub token: usize,
}

/// What a key asks of the app: the pane only changes its own cursor; settings
/// changes go back to the app, which re-prepares the data.
#[derive(Debug, PartialEq)]
pub enum BatchRequest {
    None,
    /// The config changed (masking, packing, padding side, max_length).
    Reprepare,
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
    pub const ACTIONS: &'static [Action] = &[
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
    ];
    pub const HINTS: &'static [Action] = &[
        Action::NextBatch,
        Action::Right,
        Action::CycleMasking,
        Action::CyclePacking,
        Action::CyclePadding,
        Action::LongerMaxLength,
    ];

    fn batch_count(view: &DataView) -> usize {
        view.rows.len().div_ceil(view.options.batch_size.max(1))
    }

    /// The current batch, collated from the prepared rows.
    pub fn current(&self, view: &DataView) -> Option<Batch> {
        let bs = view.options.batch_size.max(1);
        let rows = view.rows.chunks(bs).nth(self.batch)?;
        Some(collate(rows, view.pad_id as i64, &view.options))
    }

    pub fn on_key(
        &mut self,
        action: Option<Action>,
        view: Option<&DataView>,
        config: &mut RunConfig,
    ) -> BatchRequest {
        match action {
            Some(Action::CycleMasking) => {
                cycle_masking(config);
                return BatchRequest::Reprepare;
            }
            Some(Action::CyclePacking) => {
                cycle_packing(config);
                return BatchRequest::Reprepare;
            }
            Some(Action::CyclePadding) => {
                config.template.padding_side = match config.template.padding_side {
                    PaddingSide::Right => PaddingSide::Left,
                    PaddingSide::Left => PaddingSide::Right,
                };
                return BatchRequest::Reprepare;
            }
            Some(Action::LongerMaxLength) => {
                config.training.max_length += 16;
                return BatchRequest::Reprepare;
            }
            Some(Action::ShorterMaxLength) => {
                config.training.max_length = config.training.max_length.saturating_sub(16).max(16);
                return BatchRequest::Reprepare;
            }
            _ => {}
        }
        let Some(view) = view else {
            return BatchRequest::None;
        };
        let Some(b) = self.current(view) else {
            return BatchRequest::None;
        };
        let rows = b.input_ids.len();
        let width = b.input_ids.first().map_or(0, Vec::len);
        match action {
            Some(Action::NextBatch) => {
                self.batch = (self.batch + 1).min(Self::batch_count(view).saturating_sub(1));
                self.row = 0;
                self.token = 0;
            }
            Some(Action::PrevBatch) => {
                self.batch = self.batch.saturating_sub(1);
                self.row = 0;
                self.token = 0;
            }
            Some(Action::Right) => self.token = (self.token + 1).min(width.saturating_sub(1)),
            Some(Action::Left) => self.token = self.token.saturating_sub(1),
            Some(Action::Down) => self.row = (self.row + 1).min(rows.saturating_sub(1)),
            Some(Action::Up) => self.row = self.row.saturating_sub(1),
            Some(Action::Home) => self.token = 0,
            Some(Action::End) => self.token = width.saturating_sub(1),
            _ => {}
        }
        BatchRequest::None
    }

    /// Keeps the cursor inside the data after it changed.
    pub fn clamp(&mut self, view: &DataView) {
        self.batch = self.batch.min(Self::batch_count(view).saturating_sub(1));
        if let Some(b) = self.current(view) {
            self.row = self.row.min(b.input_ids.len().saturating_sub(1));
            self.token = self
                .token
                .min(b.input_ids.first().map_or(0, Vec::len).saturating_sub(1));
        }
    }

    pub fn draw(
        &self,
        f: &mut Frame,
        area: Rect,
        view: Option<&DataView>,
        config: &RunConfig,
        busy: bool,
        theme: &Theme,
    ) {
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
        let Some(b) = self.current(view) else {
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
            let kinds = token_kinds(&b, r, view.pad_id as i64);
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
                if starts_sequence(&b, r, i, kinds[i]) {
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
