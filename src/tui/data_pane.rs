//! The Data & template pane: browse the examples — the conversation as the
//! data gives it, the text the chat template makes of it (special tokens
//! highlighted), its token count — search them, and read the pre-flight report:
//! length histogram, truncated and empty-label counts, PAD==EOS and stop-token
//! warnings.

use super::keys::Action;
use super::pane::{Ctx, Effect, Pane};
use super::text_input::{InputOutcome, TextInput};
use super::theme::Theme;
use crate::engine::protocol::DataView;
use crossterm::event::KeyEvent;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

#[derive(Debug, Default)]
pub struct DataPane {
    selected: usize,
    search: TextInput,
    searching: bool,
    detail_scroll: u16,
}

impl DataPane {
    /// Indexes of the examples matching the search.
    fn visible(&self, view: &DataView) -> Vec<usize> {
        let needle = self.search.value().to_lowercase();
        view.examples
            .iter()
            .enumerate()
            .filter(|(_, e)| needle.is_empty() || e.rendered.to_lowercase().contains(&needle))
            .map(|(i, _)| i)
            .collect()
    }

    /// The list, the selected example and the pre-flight report.
    fn draw_view(&self, f: &mut Frame, area: Rect, view: &DataView, theme: &Theme) {
        let [top, report] =
            Layout::vertical([Constraint::Min(6), Constraint::Length(9)]).areas(area);
        let [list, detail] =
            Layout::horizontal([Constraint::Length(24), Constraint::Min(20)]).areas(top);
        let visible = self.visible(view);
        let height = list.height.saturating_sub(2) as usize;
        let first = self.selected.saturating_sub(height.saturating_sub(1));
        let items: Vec<Line> = visible
            .iter()
            .enumerate()
            .skip(first)
            .take(height)
            .map(|(k, &i)| {
                let e = &view.examples[i];
                let style = if k == self.selected {
                    theme.selected
                } else {
                    theme.text
                };
                Line::styled(
                    format!("{i:>5} {:>4} tok {:>3} tr", e.tokens, e.trained),
                    style,
                )
            })
            .collect();
        let title = if self.searching {
            format!(" /{} ({}) ", self.search.display(), visible.len())
        } else if !self.search.is_empty() {
            format!(" /{} ({}) ", self.search.value(), visible.len())
        } else {
            format!(" {} examples ", view.examples.len())
        };
        f.render_widget(
            Paragraph::new(items).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border)
                    .title(title),
            ),
            list,
        );
        let mut lines: Vec<Line> = Vec::new();
        if let Some(&i) = visible.get(self.selected) {
            let e = &view.examples[i];
            lines.push(Line::styled(
                format!("example {i} — {} tokens, {} trained", e.tokens, e.trained),
                theme.accent,
            ));
            for l in e.example.lines() {
                lines.push(Line::styled(l.to_string(), theme.dim));
            }
            lines.push(Line::styled(
                format!(
                    "rendered with the chat template ({}):",
                    view.chat_template_source
                ),
                theme.accent,
            ));
            for l in e.rendered.split('\n') {
                lines.push(highlight_specials(l, view, theme));
            }
        }
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .scroll((self.detail_scroll, 0))
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .border_style(theme.border)
                        .title(format!(" {} ({}) ", view.source, view.format)),
                ),
            detail,
        );
        self.draw_report(f, report, view, theme);
    }

    fn draw_report(&self, f: &mut Frame, area: Rect, view: &DataView, theme: &Theme) {
        let r = &view.report;
        let [hist, text] =
            Layout::horizontal([Constraint::Length(34), Constraint::Min(20)]).areas(area);
        let max = r.lengths.iter().copied().max().unwrap_or(0);
        let width = max.div_ceil(6).max(1);
        let mut buckets = [0usize; 6];
        for &l in &r.lengths {
            buckets[(l.saturating_sub(1) / width).min(5)] += 1;
        }
        let top = buckets.iter().copied().max().unwrap_or(1).max(1);
        let limit = view.options.max_length;
        let hist_lines: Vec<Line> = buckets
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let lo = i * width + 1;
                let style = if lo > limit { theme.warning } else { theme.ok };
                Line::from(vec![
                    Span::styled(format!("{:>4}-{:<4}", lo, (i + 1) * width), theme.dim),
                    Span::styled("█".repeat((n * 16).div_ceil(top)), style),
                    Span::styled(format!(" {n}"), theme.dim),
                ])
            })
            .collect();
        f.render_widget(
            Paragraph::new(hist_lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border)
                    .title(" tokens per example "),
            ),
            hist,
        );
        let trained: usize = r.trained_tokens.iter().sum();
        let mut lines = vec![
            Line::from(format!(
                "{} records ({} skipped) → {} train, {} eval examples → {} rows",
                view.total_records,
                view.skipped.len(),
                r.examples,
                view.eval_examples,
                r.rows
            )),
            Line::from(format!(
                "{} truncated at max_length {}, {} dropped with no trained token; {trained} trained tokens",
                r.truncated, limit, r.dropped_no_labels
            )),
            Line::from(format!(
                "{} of {} answers end with a trained stop token; padding with `{}`",
                r.ends_with_stop,
                r.trained_tokens.len(),
                r.pad_token
            )),
        ];
        for w in &r.warnings {
            lines.push(Line::styled(format!("⚠ {w}"), theme.warning));
        }
        for s in view.skipped.iter().take(3) {
            lines.push(Line::styled(format!("skipped: {s}"), theme.error));
        }
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: true }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border)
                    .title(" pre-flight "),
            ),
            text,
        );
    }
}

impl Pane for DataPane {
    fn name(&self) -> &'static str {
        "data"
    }

    fn title(&self) -> &'static str {
        "Data & template"
    }

    fn actions(&self) -> &'static [Action] {
        &[
            Action::Up,
            Action::Down,
            Action::Home,
            Action::End,
            Action::PageUp,
            Action::PageDown,
            Action::Search,
        ]
    }

    fn hints(&self) -> &'static [Action] {
        &[Action::Down, Action::Search, Action::PageDown]
    }

    fn is_typing(&self) -> bool {
        self.searching
    }

    fn on_key(&mut self, key: &KeyEvent, action: Option<Action>, ctx: &Ctx) -> Vec<Effect> {
        if self.searching {
            // Enter and Esc both end the search and keep its filter.
            if matches!(
                self.search.on_key(key),
                InputOutcome::Submit | InputOutcome::Cancel
            ) {
                self.searching = false;
            }
            self.selected = 0;
            return Vec::new();
        }
        let n = ctx.data.as_ref().map_or(0, |v| self.visible(v).len());
        match action {
            Some(Action::Search) => {
                self.searching = true;
                self.search.clear();
            }
            Some(Action::Down) => {
                self.selected = (self.selected + 1).min(n.saturating_sub(1));
                self.detail_scroll = 0;
            }
            Some(Action::Up) => {
                self.selected = self.selected.saturating_sub(1);
                self.detail_scroll = 0;
            }
            Some(Action::Home) => self.selected = 0,
            Some(Action::End) => self.selected = n.saturating_sub(1),
            Some(Action::PageDown) => self.detail_scroll += 5,
            Some(Action::PageUp) => self.detail_scroll = self.detail_scroll.saturating_sub(5),
            _ => {}
        }
        Vec::new()
    }

    fn on_scroll(&mut self, delta: i32) {
        self.detail_scroll = (self.detail_scroll as i32 + delta).max(0) as u16;
    }

    fn draw(&self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        match &ctx.data {
            Some(view) => self.draw_view(f, area, view, &ctx.theme),
            None => f.render_widget(
                Paragraph::new(if ctx.preparing() {
                    "reading the dataset…"
                } else {
                    "no data: the config needs a [data] section"
                })
                .style(ctx.theme.dim),
                area,
            ),
        }
    }
}

/// One rendered line with the special tokens in it highlighted.
fn highlight_specials<'a>(line: &'a str, view: &DataView, theme: &Theme) -> Line<'a> {
    let specials: Vec<&str> = view
        .special_ids
        .iter()
        .filter_map(|id| view.pieces.get(id).map(String::as_str))
        .filter(|s| !s.is_empty())
        .collect();
    let mut spans = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let next = specials
            .iter()
            .filter_map(|s| rest.find(s).map(|i| (i, *s)))
            .min_by_key(|(i, s)| (*i, usize::MAX - s.len()));
        match next {
            Some((i, s)) => {
                if i > 0 {
                    spans.push(Span::styled(&rest[..i], theme.text));
                }
                spans.push(Span::styled(&rest[i..i + s.len()], theme.special));
                rest = &rest[i + s.len()..];
            }
            None => {
                spans.push(Span::styled(rest, theme.text));
                rest = "";
            }
        }
    }
    Line::from(spans)
}
