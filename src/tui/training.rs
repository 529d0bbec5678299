//! The Training pane: the runs of the config's output folder, and the one
//! attached to — the live one unless another is picked — followed through its
//! folder: progress with the time left, the loss over the whole run or the
//! recent steps, the latest numbers, warnings and the run's error, the log's
//! tail. Start, pause, resume, stop and save go out as [`Launch`] effects
//! (a detached process, the run's socket); the run lives on without the
//! workbench. Files are read on the tick only, a bounded amount each time.

use super::app::human;
use super::attached::{folder_name, LogKind, Watch, RECENT_POINTS};
use super::keys::Action;
use super::launch::{Launch, LaunchReply, RunCommand};
use super::pane::{Ctx, Effect, Pane, Status};
use super::runs::{find_runs, RunEntry, RunInfo, RunStatus, LOG_FILE, METRICS_FILE};
use super::theme::Theme;
use crate::engine::protocol::Request;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, Gauge, GraphType, Paragraph, Row, Table,
    Wrap,
};
use ratatui::Frame;
use std::path::{Path, PathBuf};

/// Ticks between looks for new runs.
const RESCAN_TICKS: u64 = 8;

/// A chart series.
type Points = Vec<(f64, f64)>;

#[derive(Default)]
pub struct TrainingPane {
    runs: Vec<RunEntry>,
    cursor: usize,
    watch: Option<Watch>,
    /// The run picked from the list; none: follow the live (or newest) one.
    chosen: Option<PathBuf>,
    scanned: bool,
    ticks: u64,
    confirm_stop: bool,
    recent: bool,
}

impl TrainingPane {
    /// The run to follow: the one picked, else the live one, else the newest.
    fn target(&self) -> Option<PathBuf> {
        if let Some(c) = &self.chosen {
            return Some(c.clone());
        }
        self.runs
            .iter()
            .find(|r| r.info.is_live())
            .or(self.runs.first())
            .map(|r| r.dir.clone())
    }

    fn attach(&mut self, dir: PathBuf) {
        if self.watch.as_ref().is_none_or(|w| w.dir != dir) {
            self.watch = Some(Watch::new(dir));
        }
    }

    /// A command for the followed run, if it is live.
    fn control(&self, command: RunCommand) -> Effect {
        match &self.watch {
            Some(w) if w.is_live() => Effect::Launch(Launch::Control {
                dir: w.dir.clone(),
                command,
            }),
            Some(w) => Effect::Status(Status::error(format!(
                "cannot {}: the run in {} is {}",
                command.as_str(),
                w.name(),
                w.info.as_ref().map_or("not started", RunInfo::shown_status)
            ))),
            None => Effect::Status(Status::error(format!(
                "cannot {}: no run is attached",
                command.as_str()
            ))),
        }
    }

    fn start(&mut self, ctx: &Ctx) -> Effect {
        if ctx.dirty {
            return Effect::Status(Status::error(
                "save the config first (s in Config): the run reads its file",
            ));
        }
        if let Some(w) = self.watch.as_ref().filter(|w| w.is_live()) {
            return Effect::Status(Status::error(format!(
                "the run in {} is still going: stop it first, or watch it",
                w.name()
            )));
        }
        self.chosen = None;
        Effect::Launch(Launch::Start {
            config: ctx.config_path.clone(),
        })
    }

    fn chat_with_run(&self) -> Vec<Effect> {
        let Some(w) = &self.watch else {
            return vec![Effect::Status(Status::error("no run is attached"))];
        };
        let Some(dir) = &w.adapter else {
            return vec![Effect::Status(Status::error(format!(
                "the run in {} has no adapter yet (none at the end, no checkpoint)",
                w.name()
            )))];
        };
        let name = if *dir == w.dir {
            w.name()
        } else {
            format!("{}-{}", w.name(), folder_name(dir))
        };
        vec![
            Effect::Submit(Request::LoadAdapter {
                dir: dir.clone(),
                name: name.clone(),
            }),
            Effect::ShowPane("chat"),
            Effect::Status(Status::info(format!(
                "loading adapter `{name}`; b puts the base model beside it"
            ))),
        ]
    }

    fn draw_runs(&self, f: &mut Frame, area: Rect, t: &Theme) {
        let attached = self.watch.as_ref().map(|w| &w.dir);
        let rows = self.runs.iter().enumerate().map(|(i, r)| {
            // The attached run as it reads now, the others as of the last look.
            let info = match &self.watch {
                Some(w) if w.dir == r.dir => w.info.as_ref().unwrap_or(&r.info),
                _ => &r.info,
            };
            let mark = if Some(&r.dir) == attached {
                "▶ "
            } else {
                "  "
            };
            let status_style = status_style(t, info);
            let row = Row::new(vec![
                Cell::from(format!("{mark}{}", r.name())),
                Cell::from(info.shown_status()).style(status_style),
                Cell::from(steps(info)),
                Cell::from(r.last_loss.map_or("—".into(), |l| format!("{l:.4}"))),
                Cell::from(info.started.clone()),
            ]);
            if i == self.cursor {
                row.style(t.selected)
            } else {
                row
            }
        });
        let header = Row::new(["  run", "status", "step", "loss", "started"]).style(t.accent);
        let table = Table::new(
            rows,
            [
                Constraint::Fill(2),
                Constraint::Length(9),
                Constraint::Length(11),
                Constraint::Length(7),
                Constraint::Length(20),
            ],
        )
        .header(header)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.border)
                .title(" Runs (Enter attaches) "),
        );
        // Keep the cursor in view.
        let visible = area.height.saturating_sub(3) as usize;
        let skip = (self.cursor + 1).saturating_sub(visible);
        let mut state = ratatui::widgets::TableState::default().with_offset(skip);
        f.render_stateful_widget(table, area, &mut state);
    }

    fn draw_progress(&self, f: &mut Frame, area: Rect, w: &Watch, t: &Theme) {
        let Some(info) = &w.info else {
            f.render_widget(Paragraph::new("no run.json yet").style(t.dim), area);
            return;
        };
        let ratio = match info.max_steps {
            Some(m) if m > 0 => (info.step as f64 / m as f64).clamp(0.0, 1.0),
            _ => 0.0,
        };
        let mut label = format!("{} · {}", info.shown_status(), steps(info));
        if info.max_steps.is_some() {
            label.push_str(&format!(" · {:.0}%", ratio * 100.0));
        }
        match (info.eta_seconds(), info.elapsed_seconds()) {
            (Some(eta), _) if info.is_live() && info.status == RunStatus::Running => {
                label.push_str(&format!(" · ETA {}", duration(eta)))
            }
            (_, Some(took)) if info.status.is_over() => {
                label.push_str(&format!(" · took {}", duration(took)))
            }
            _ => {}
        }
        f.render_widget(
            Gauge::default()
                .ratio(ratio)
                .label(label)
                .gauge_style(status_style(t, info)),
            area,
        );
    }

    fn draw_chart(&self, f: &mut Frame, area: Rect, w: &Watch, t: &Theme) {
        let (train, eval): (Points, Points) = if self.recent {
            let train: Vec<_> = w.recent_loss.iter().copied().collect();
            let from = train.first().map_or(0.0, |p| p.0);
            let eval = w
                .recent_eval
                .iter()
                .copied()
                .filter(|p| p.0 >= from)
                .collect();
            (train, eval)
        } else {
            (w.loss.points().to_vec(), w.eval.points().to_vec())
        };
        let window = if self.recent {
            format!("last {RECENT_POINTS} logged steps (v: whole run) ")
        } else {
            "whole run (v: recent) ".to_string()
        };
        let title = Line::from(vec![
            Span::raw(" loss: "),
            Span::styled("train", t.accent),
            Span::raw(", "),
            Span::styled("• eval", t.ok),
            Span::raw(format!(", {window}")),
        ]);
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.border)
            .title(title);
        let all = train.iter().chain(eval.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in all {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if train.is_empty() && eval.is_empty() {
            f.render_widget(
                Paragraph::new("no loss logged yet")
                    .style(t.dim)
                    .block(block),
                area,
            );
            return;
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let pad = ((y1 - y0) * 0.05).max(1e-3);
        (y0, y1) = ((y0 - pad).max(0.0), y1 + pad);
        let mut sets = vec![Dataset::default()
            .name("train")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.accent)
            .data(&train)];
        if !eval.is_empty() {
            sets.push(
                Dataset::default()
                    .name("eval")
                    .marker(Marker::Dot)
                    .graph_type(GraphType::Scatter)
                    .style(t.ok)
                    .data(&eval),
            );
        }
        let chart = Chart::new(sets)
            .legend_position(None)
            .block(block)
            .x_axis(
                Axis::default()
                    .style(t.dim)
                    .bounds([x0, x1])
                    .labels([format!("{x0:.0}"), format!("step {x1:.0}")]),
            )
            .y_axis(
                Axis::default()
                    .style(t.dim)
                    .bounds([y0, y1])
                    .labels([format!("{y0:.2}"), format!("{y1:.2}")]),
            );
        f.render_widget(chart, area);
    }

    fn draw_numbers(&self, f: &mut Frame, area: Rect, w: &Watch, t: &Theme) {
        let row = |k: &str, v: String| {
            Line::from(vec![
                Span::styled(format!("{k:<11}"), t.dim),
                Span::styled(v, t.text),
            ])
        };
        let opt = |v: Option<f64>, fmt: &dyn Fn(f64) -> String| v.map_or("—".into(), fmt);
        let mut lines = Vec::new();
        if let Some(l) = &w.last {
            lines.extend([
                row(
                    "loss",
                    opt(l.loss, &|v| format!("{v:.4}")).replace('—', "NaN"),
                ),
                row("epoch", opt(l.epoch, &|v| format!("{v:.2}"))),
                row("lr", opt(l.learning_rate, &|v| format!("{v:.2e}"))),
                row("grad norm", opt(l.grad_norm, &|v| format!("{v:.3}"))),
                row("tokens/s", opt(l.tokens_per_second, &|v| format!("{v:.0}"))),
                row("tokens", opt(l.num_tokens, &|v| human(v, ""))),
                row(
                    "memory",
                    l.memory_bytes.map_or("—".into(), |m| human(m as f64, "B")),
                ),
                row(
                    "accuracy",
                    opt(l.mean_token_accuracy, &|v| format!("{v:.3}")),
                ),
            ]);
        } else {
            lines.push(Line::styled("no step logged yet", t.dim));
        }
        if let Some((step, loss)) = w.last_eval {
            lines.push(row("eval loss", format!("{loss:.4} @{step}")));
        }
        if let Some(info) = &w.info {
            if !info.engine.is_empty() {
                lines.push(row("engine", info.engine.clone()));
            }
        }
        f.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(t.border)
                    .title(" latest "),
            ),
            area,
        );
    }

    fn draw_log(&self, f: &mut Frame, area: Rect, w: &Watch, t: &Theme) {
        let style = |k: LogKind| match k {
            LogKind::Info => t.text,
            LogKind::Warning => t.warning,
            LogKind::Error => t.error,
        };
        let mut entries: Vec<Line> = Vec::new();
        if w.skipped > 0 {
            entries.push(Line::styled(
                format!("{} lines of {METRICS_FILE} could not be read", w.skipped),
                t.warning,
            ));
        }
        if let Some(e) = &w.read_error {
            entries.push(Line::styled(e.clone(), t.error));
        }
        // The run's error has its own place above.
        let error = w.info.as_ref().and_then(|i| i.error.as_deref());
        let log: Vec<&(LogKind, String)> = w
            .log
            .iter()
            .filter(|(_, text)| Some(text.as_str()) != error)
            .collect();
        let line = |(k, text): &(LogKind, String)| {
            let mark = if *k == LogKind::Warning { "! " } else { "" };
            Line::styled(format!("{mark}{text}"), style(*k))
        };
        let room = area.height.saturating_sub(2) as usize;
        let mut skip = (log.len() + entries.len()).saturating_sub(room);
        // The last warning stays in view when newer lines would push it out.
        let last_warning = log.iter().rposition(|(k, _)| *k == LogKind::Warning);
        let mut lines: Vec<Line> = Vec::new();
        if let Some(i) = last_warning.filter(|&i| i < skip) {
            lines.push(line(log[i]));
            skip += 1;
        }
        lines.extend(log.iter().skip(skip).map(|l| line(l)));
        lines.extend(entries);
        let warnings = w.log.iter().filter(|(k, _)| *k == LogKind::Warning).count();
        let title = match warnings {
            0 => " log ".to_string(),
            1 => " log: 1 warning ".to_string(),
            n => format!(" log: {n} warnings "),
        };
        let border = if warnings > 0 { t.warning } else { t.border };
        f.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(border)
                    .title(title),
            ),
            area,
        );
    }

    fn draw_confirm(&self, f: &mut Frame, area: Rect, t: &Theme) {
        let name = self.watch.as_ref().map(Watch::name).unwrap_or_default();
        let w = 60.min(area.width);
        let h = 5.min(area.height);
        let box_area = Rect::new(
            area.x + (area.width - w) / 2,
            area.y + (area.height - h) / 2,
            w,
            h,
        );
        f.render_widget(Clear, box_area);
        f.render_widget(
            Paragraph::new(format!(
                "Stop the run in {name}? It finishes its step, writes a checkpoint and ends. (y/n)"
            ))
            .wrap(Wrap { trim: true })
            .style(t.text)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(t.warning)
                    .title(" Stop "),
            ),
            box_area,
        );
    }
}

/// `40/100`, or `40` when the total is not known yet.
fn steps(info: &RunInfo) -> String {
    match info.max_steps {
        Some(m) => format!("{}/{m}", info.step),
        None => info.step.to_string(),
    }
}

fn status_style(t: &Theme, info: &RunInfo) -> Style {
    match info.status {
        _ if info.is_dead() => t.error,
        RunStatus::Failed => t.error,
        RunStatus::Paused | RunStatus::Stopping | RunStatus::Stopped => t.warning,
        RunStatus::Finished => t.ok,
        RunStatus::Starting | RunStatus::Running => t.accent,
    }
}

/// `1h 02m`, `3m 20s`, `45s`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

impl Pane for TrainingPane {
    fn name(&self) -> &'static str {
        "training"
    }

    fn title(&self) -> &'static str {
        "Training"
    }

    fn actions(&self) -> &'static [Action] {
        &[
            Action::StartTraining,
            Action::PauseTraining,
            Action::ResumeTraining,
            Action::StopTraining,
            Action::SaveCheckpoint,
            Action::ChartWindow,
            Action::ChatWithRun,
            Action::Up,
            Action::Down,
            Action::Select,
            Action::Back,
        ]
    }

    fn hints(&self) -> &'static [Action] {
        &[
            Action::StartTraining,
            Action::PauseTraining,
            Action::ResumeTraining,
            Action::StopTraining,
            Action::SaveCheckpoint,
            Action::ChartWindow,
            Action::ChatWithRun,
        ]
    }

    /// While the stop question is open, every key answers it.
    fn is_typing(&self) -> bool {
        self.confirm_stop
    }

    fn on_key(&mut self, key: &KeyEvent, action: Option<Action>, ctx: &Ctx) -> Vec<Effect> {
        if self.confirm_stop {
            self.confirm_stop = false;
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => vec![self.control(RunCommand::Stop)],
                _ => vec![Effect::Status(Status::info("the run goes on"))],
            };
        }
        match action {
            Some(Action::StartTraining) => return vec![self.start(ctx)],
            Some(Action::PauseTraining) => return vec![self.control(RunCommand::Pause)],
            Some(Action::ResumeTraining) => return vec![self.control(RunCommand::Resume)],
            Some(Action::SaveCheckpoint) => return vec![self.control(RunCommand::Save)],
            Some(Action::StopTraining) => match self.control(RunCommand::Stop) {
                Effect::Launch(_) => self.confirm_stop = true,
                refused => return vec![refused],
            },
            Some(Action::ChartWindow) => self.recent = !self.recent,
            Some(Action::ChatWithRun) => return self.chat_with_run(),
            Some(Action::Up) => self.cursor = self.cursor.saturating_sub(1),
            Some(Action::Down) => {
                self.cursor = (self.cursor + 1).min(self.runs.len().saturating_sub(1))
            }
            Some(Action::Select) => {
                if let Some(r) = self.runs.get(self.cursor) {
                    let dir = r.dir.clone();
                    self.chosen = Some(dir.clone());
                    self.attach(dir);
                }
            }
            Some(Action::Back) => {
                self.chosen = None;
                if let Some(dir) = self.target() {
                    self.attach(dir);
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn on_tick(&mut self, ctx: &Ctx) {
        if !self.scanned || self.ticks.is_multiple_of(RESCAN_TICKS) {
            self.runs = find_runs(Path::new(&ctx.config.training.output_dir));
            self.cursor = self.cursor.min(self.runs.len().saturating_sub(1));
            self.scanned = true;
            if let Some(w) = &mut self.watch {
                w.look_for_adapter = true;
            }
        }
        self.ticks += 1;
        if let Some(dir) = self.target() {
            self.attach(dir);
        }
        if let Some(w) = &mut self.watch {
            w.poll();
        }
    }

    fn on_launched(&mut self, reply: &LaunchReply) {
        if let LaunchReply::Started { dir } = reply {
            self.chosen = Some(dir.clone());
            self.attach(dir.clone());
            self.scanned = false;
        }
    }

    fn farewell(&self) -> Option<String> {
        let w = self.watch.as_ref().filter(|w| w.is_live())?;
        let info = w.info.as_ref()?;
        Some(format!(
            "The run in {} goes on ({} at step {}); run ftui again to watch it.",
            w.dir.display(),
            info.shown_status(),
            steps(info)
        ))
    }

    fn draw(&self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        let t = &ctx.theme;
        let Some(w) = &self.watch else {
            let text = if self.scanned {
                format!(
                    "No runs under {} yet.\n\nr starts one from {} (as saved), in the background: \
                     it goes on if the workbench closes, and the workbench finds it again.",
                    ctx.config.training.output_dir,
                    ctx.config_path.display()
                )
            } else {
                format!("Looking for runs under {}…", ctx.config.training.output_dir)
            };
            f.render_widget(
                Paragraph::new(text)
                    .wrap(Wrap { trim: false })
                    .style(t.text)
                    .block(
                        Block::default()
                            .borders(Borders::ALL)
                            .border_style(t.border)
                            .title(" Training "),
                    ),
                area,
            );
            return;
        };
        let table_height = self.runs.len().clamp(1, 3) as u16 + 3;
        let error: Vec<String> = w
            .info
            .as_ref()
            .and_then(|i| i.error.as_deref())
            .map(|e| e.split("; ").map(str::to_string).collect())
            .unwrap_or_default();
        let error_height = if error.is_empty() {
            0
        } else {
            error.len().min(4) as u16 + 1
        };
        let log_height = if area.height >= 30 { 8 } else { 5 };
        let [runs, gauge, err, main, log] = Layout::vertical([
            Constraint::Length(table_height),
            Constraint::Length(1),
            Constraint::Length(error_height),
            Constraint::Min(5),
            Constraint::Length(log_height),
        ])
        .areas(area);
        self.draw_runs(f, runs, t);
        self.draw_progress(f, gauge, w, t);
        if !error.is_empty() {
            let mut lines = vec![Line::styled("The run failed:", t.error)];
            lines.extend(
                error
                    .into_iter()
                    .map(|e| Line::styled(format!("  {e}"), t.error)),
            );
            f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), err);
        }
        let [chart, numbers] =
            Layout::horizontal([Constraint::Min(20), Constraint::Length(26)]).areas(main);
        self.draw_chart(f, chart, w, t);
        self.draw_numbers(f, numbers, w, t);
        if w.output.is_empty() || log.width < 100 {
            self.draw_log(f, log, w, t);
        } else {
            let [events, output] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(log);
            self.draw_log(f, events, w, t);
            let room = output.height.saturating_sub(2) as usize;
            let lines: Vec<Line> = w.output[w.output.len().saturating_sub(room)..]
                .iter()
                .map(|l| Line::styled(l.clone(), t.dim))
                .collect();
            f.render_widget(
                Paragraph::new(lines).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .border_style(t.border)
                        .title(format!(" {LOG_FILE} ")),
                ),
                output,
            );
        }
        if self.confirm_stop {
            self.draw_confirm(f, area, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_short() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(200), "3m 20s");
        assert_eq!(duration(3720), "1h 02m");
        assert_eq!(duration(-5), "0s");
    }
}
