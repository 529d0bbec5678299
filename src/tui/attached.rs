//! What the Training pane knows of the run it follows, built from the run's
//! folder alone: `run.json` as it reads now, and the metrics taken in so
//! far as chart series (the whole run, bounded; the recent steps, in full),
//! the latest numbers and a log of what happened.

use super::history::BoundedSeries;
use super::runs::{
    adapter_dir, tail, Metric, MetricsReader, RunInfo, TrainLine, LOG_FILE, METRICS_FILE,
    POLL_BYTES, TAIL_BYTES,
};
use super::training::duration;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// Points the whole-run chart keeps, however long the run.
pub(super) const FULL_POINTS: usize = 400;
/// Steps the recent chart shows, at full resolution.
pub(super) const RECENT_POINTS: usize = 100;
/// Log lines kept.
pub(super) const LOG_LINES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum LogKind {
    Info,
    Warning,
    Error,
}

/// What the pane knows of the run it follows, built from its files.
pub(super) struct Watch {
    pub(super) dir: PathBuf,
    pub(super) info: Option<RunInfo>,
    pub(super) reader: MetricsReader,
    pub(super) loss: BoundedSeries,
    pub(super) eval: BoundedSeries,
    pub(super) recent_loss: VecDeque<(f64, f64)>,
    pub(super) recent_eval: VecDeque<(f64, f64)>,
    pub(super) last: Option<TrainLine>,
    pub(super) last_eval: Option<(u64, f64)>,
    pub(super) log: VecDeque<(LogKind, String)>,
    pub(super) skipped: usize,
    pub(super) read_error: Option<String>,
    /// The adapter to chat with, looked for when a checkpoint or the end shows.
    pub(super) adapter: Option<PathBuf>,
    pub(super) look_for_adapter: bool,
    /// The last lines of the run's own output, and that file's size then.
    pub(super) output: Vec<String>,
    output_len: Option<u64>,
}

impl Watch {
    pub(super) fn new(dir: PathBuf) -> Self {
        Watch {
            dir,
            info: None,
            reader: MetricsReader::default(),
            loss: BoundedSeries::new(FULL_POINTS),
            eval: BoundedSeries::new(FULL_POINTS),
            recent_loss: VecDeque::new(),
            recent_eval: VecDeque::new(),
            last: None,
            last_eval: None,
            log: VecDeque::new(),
            skipped: 0,
            read_error: None,
            adapter: None,
            look_for_adapter: true,
            output: Vec::new(),
            output_len: None,
        }
    }

    pub(super) fn name(&self) -> String {
        folder_name(&self.dir)
    }

    pub(super) fn is_live(&self) -> bool {
        self.info.as_ref().is_some_and(RunInfo::is_live)
    }

    /// Reads `run.json` and what `metrics.jsonl` gained.
    pub(super) fn poll(&mut self) {
        self.info = RunInfo::read(&self.dir);
        match self.reader.poll(&self.dir.join(METRICS_FILE), POLL_BYTES) {
            Ok(polled) => {
                self.read_error = None;
                if polled.restarted {
                    // Another run took the folder: what was shown is not its.
                    let fresh = Watch::new(self.dir.clone());
                    let old = std::mem::replace(self, fresh);
                    self.info = old.info;
                    self.reader = old.reader;
                }
                self.skipped += polled.skipped;
                for m in polled.metrics {
                    self.take(m);
                }
            }
            Err(e) => self.read_error = Some(format!("{}: {e}", METRICS_FILE)),
        }
        let log = self.dir.join(LOG_FILE);
        let len = std::fs::metadata(&log).ok().map(|m| m.len());
        if len != self.output_len {
            self.output_len = len;
            // A progress line rewritten in place shows as it stands last.
            self.output = tail(&log, TAIL_BYTES)
                .unwrap_or_default()
                .iter()
                .map(|l| l.rsplit('\r').next().unwrap_or("").to_string())
                .filter(|l| !l.trim().is_empty())
                .collect();
        }
        if self.look_for_adapter {
            self.adapter = adapter_dir(&self.dir);
            self.look_for_adapter = false;
        }
    }

    fn take(&mut self, m: Metric) {
        match m {
            Metric::Train(t) => {
                if let Some(loss) = t.loss.filter(|l| l.is_finite()) {
                    let x = t.step as f64;
                    self.loss.push(x, loss);
                    push_bounded(&mut self.recent_loss, (x, loss), RECENT_POINTS);
                }
                self.last = Some(t);
            }
            Metric::Eval {
                step,
                eval_loss: Some(loss),
                ..
            } if loss.is_finite() => {
                self.eval.push(step as f64, loss);
                push_bounded(&mut self.recent_eval, (step as f64, loss), RECENT_POINTS);
                self.last_eval = Some((step, loss));
                self.log(
                    LogKind::Info,
                    format!("eval at step {step}: loss {loss:.4}"),
                );
            }
            Metric::Eval { step, .. } => {
                self.log(
                    LogKind::Warning,
                    format!("eval at step {step}: no finite loss"),
                );
            }
            Metric::Checkpoint { step, path } => {
                let shown = Path::new(&path)
                    .file_name()
                    .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
                self.log(LogKind::Info, format!("checkpoint at step {step}: {shown}"));
                self.look_for_adapter = true;
            }
            Metric::Warning { message } => self.log(LogKind::Warning, message),
            Metric::End {
                status,
                train_runtime,
                train_loss,
                error,
            } => {
                let mut text = format!("ended {status}");
                if let Some(t) = train_runtime {
                    text.push_str(&format!(" after {}", duration(t.round() as i64)));
                }
                if let Some(l) = train_loss {
                    text.push_str(&format!(", train loss {l:.4}"));
                }
                let kind = if status == "failed" {
                    LogKind::Error
                } else {
                    LogKind::Info
                };
                self.log(kind, text);
                if let Some(e) = error {
                    self.log(LogKind::Error, e);
                }
                self.look_for_adapter = true;
            }
        }
    }

    fn log(&mut self, kind: LogKind, text: String) {
        push_bounded(&mut self.log, (kind, text), LOG_LINES);
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, max: usize) {
    if q.len() == max {
        q.pop_front();
    }
    q.push_back(item);
}

pub(super) fn folder_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
