//! The process side of a run folder: claiming the folder (one live run per
//! folder), keeping `run.json` current, writing `metrics.jsonl` from the
//! trainer's callbacks, and serving `control.sock`.

use super::control::{self, Command};
use super::{io_error, utc_now, Liveness, RunError, RunInfo, RunStatus};
use crate::config::RunConfig;
use crate::train::{setup::Plan, Control, EvalLog, Observer, Summary, TrainError, TrainLog};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often `run.json` is rewritten for step progress alone.
const STEP_WRITE_INTERVAL: Duration = Duration::from_millis(500);

/// What the run's threads share: `run.json`'s content and the trainer's controls.
struct Shared {
    dir: PathBuf,
    info: Mutex<RunInfo>,
    control: Control,
}

impl Shared {
    fn info(&self) -> MutexGuard<'_, RunInfo> {
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes `run.json` and writes it (under the lock, so writes keep their order).
    fn update(&self, change: impl FnOnce(&mut RunInfo)) -> Result<RunInfo, RunError> {
        let mut info = self.info();
        change(&mut info);
        info.updated = utc_now();
        write_info(&self.dir, &info)?;
        Ok(info.clone())
    }
}

pub(super) fn write_info(dir: &Path, info: &RunInfo) -> Result<(), RunError> {
    let path = dir.join(super::RUN_FILE);
    let text = serde_json::to_string_pretty(info).map_err(|e| RunError::BadRunFile {
        path: path.clone(),
        message: e.to_string(),
    })?;
    crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(io_error(&path))
}

/// A handle on a live run for other threads: the control socket, signal handlers.
#[derive(Clone)]
pub struct RunHandle(Arc<Shared>);

impl RunHandle {
    /// The controls the trainer obeys.
    pub fn control(&self) -> &Control {
        &self.0.control
    }

    pub fn info(&self) -> RunInfo {
        self.0.info().clone()
    }

    /// Carries out a control command; the reply is `run.json`'s fields with
    /// `ok` and a `message`.
    pub fn apply(&self, command: Command) -> serde_json::Value {
        let control = &self.0.control;
        let over = self.0.info().status.is_over();
        let (ok, message, status) = match command {
            _ if over && command != Command::Status => {
                (false, "the run has ended".to_string(), None)
            }
            Command::Stop => {
                control.stop();
                (
                    true,
                    "stopping: the run finishes its current step, writes a checkpoint and ends"
                        .into(),
                    Some(RunStatus::Stopping),
                )
            }
            Command::Pause => {
                control.pause();
                (
                    true,
                    "pausing after the current step; `ftui resume` continues".into(),
                    Some(RunStatus::Paused),
                )
            }
            Command::Resume => {
                control.resume();
                (true, "resumed".into(), Some(RunStatus::Running))
            }
            Command::Save => {
                control.save_now();
                (
                    true,
                    "a checkpoint will be written after the current step".into(),
                    None,
                )
            }
            Command::Status => (true, String::new(), None),
        };
        let info = match status {
            Some(to) => self.0.update(|i| {
                // A stop is final; resume only moves a paused run.
                if i.status != RunStatus::Stopping
                    && (to != RunStatus::Running || i.status == RunStatus::Paused)
                {
                    i.status = to;
                }
            }),
            None => Ok(self.info()),
        };
        let mut reply = serde_json::Map::new();
        reply.insert("ok".into(), ok.into());
        match info {
            Ok(info) => {
                let message = if message.is_empty() {
                    format!(
                        "{} at step {}{}",
                        info.status,
                        info.step,
                        info.max_steps
                            .map(|m| format!(" of {m}"))
                            .unwrap_or_default()
                    )
                } else {
                    message
                };
                reply.insert("message".into(), message.into());
                if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&info) {
                    reply.extend(fields);
                }
            }
            Err(e) => {
                reply.insert("ok".into(), false.into());
                reply.insert("message".into(), e.to_string().into());
            }
        }
        serde_json::Value::Object(reply)
    }

    /// Marks the run failed with `reason` and removes its socket, for an exit
    /// that skips the normal ending (a second Ctrl-C).
    pub fn abandon(&self, reason: &str) {
        let _ = self.0.update(|i| {
            i.status = RunStatus::Failed;
            i.error = Some(reason.into());
        });
        let _ = std::fs::remove_file(self.0.dir.join(super::SOCKET_FILE));
    }
}

/// A run this process owns: its folder claimed, `run.json` written, the
/// control socket listening. Dropping it closes the socket.
pub struct Run {
    shared: Arc<Shared>,
    metrics: std::fs::File,
    server: Option<control::Server>,
    started: Instant,
    /// Said once the recorder starts: a stale run taken over, a socket that
    /// could not be opened.
    notes: Vec<String>,
}

impl Run {
    /// Claims `dir` for a run of `config`: refused while another run there
    /// lives; a dead one's leftovers are taken over (and said so in
    /// [`Run::notes`]). `resumed` keeps the metrics of the run it continues.
    pub fn start(dir: &Path, config: &RunConfig, resumed: bool) -> Result<Run, RunError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut notes = Vec::new();
        match super::liveness(dir)? {
            Liveness::Live(info) => {
                return Err(RunError::Busy {
                    dir: dir.to_path_buf(),
                    pid: info.pid,
                    host: info.host,
                    status: info.status,
                })
            }
            Liveness::Stale(info) => notes.push(super::stale_note(dir, &info)),
            Liveness::Free => {}
        }
        let config_path = dir.join(super::CONFIG_FILE);
        crate::fsutil::write_atomic(&config_path, config.to_toml().as_bytes())
            .map_err(io_error(&config_path))?;
        let now = utc_now();
        let info = RunInfo {
            pid: std::process::id(),
            host: super::hostname(),
            engine: "ftui".into(),
            status: RunStatus::Starting,
            step: 0,
            max_steps: usize::try_from(config.training.max_steps).ok(),
            started: now.clone(),
            updated: now,
            error: None,
        };
        write_info(dir, &info)?;
        let metrics_path = dir.join(super::METRICS_FILE);
        if !resumed {
            match std::fs::remove_file(&metrics_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error(&metrics_path)(e))
                }
                _ => {}
            }
        }
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(io_error(&metrics_path))?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            info: Mutex::new(info),
            control: Control::default(),
        });
        let server =
            match control::Server::bind(&dir.join(super::SOCKET_FILE), RunHandle(shared.clone())) {
                Ok(s) => Some(s),
                Err(e) => {
                    notes.push(format!(
                        "{e}; `ftui stop` cannot reach this run (Ctrl-C and SIGTERM still stop it)"
                    ));
                    None
                }
            };
        Ok(Run {
            shared,
            metrics,
            server,
            started: Instant::now(),
            notes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn handle(&self) -> RunHandle {
        RunHandle(self.shared.clone())
    }

    /// What starting the run had to say (also written as `warning` lines).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The trainer's observer for this run: it writes the folder's files, tells
    /// `face` (a progress bar, or nothing) everything, and copies each metrics
    /// line to `echo` (stdout for `--json`).
    pub fn recorder<'a>(
        &'a mut self,
        face: &'a mut dyn Observer,
        echo: Option<&'a mut dyn Write>,
    ) -> Recorder<'a> {
        let notes = std::mem::take(&mut self.notes);
        let mut r = Recorder {
            run: self,
            face,
            echo,
            last_write: None,
            failed_write: false,
        };
        for n in &notes {
            r.warning(n);
        }
        r.run.notes = notes;
        r
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Stops the socket's thread and removes control.sock.
        self.server.take();
    }
}

/// Writes a run's files as the trainer reports; see [`Run::recorder`].
pub struct Recorder<'a> {
    run: &'a mut Run,
    face: &'a mut dyn Observer,
    echo: Option<&'a mut dyn Write>,
    last_write: Option<Instant>,
    failed_write: bool,
}

/// A metrics line: `kind` first, then `fields`' own.
fn metrics_line(kind: &str, fields: &impl Serialize) -> String {
    let mut line = serde_json::Map::new();
    line.insert("kind".into(), kind.into());
    if let Ok(serde_json::Value::Object(f)) = serde_json::to_value(fields) {
        line.extend(f);
    }
    serde_json::Value::Object(line).to_string()
}

impl Recorder<'_> {
    fn append(&mut self, kind: &str, fields: &impl Serialize) {
        let line = metrics_line(kind, fields);
        let written = writeln!(self.run.metrics, "{line}");
        if let Some(echo) = self.echo.as_mut() {
            let _ = writeln!(echo, "{line}");
            let _ = echo.flush();
        }
        if let Err(e) = written {
            let path = self.run.dir().join(super::METRICS_FILE);
            self.report_write_failure(&RunError::Io { path, source: e });
        }
    }

    fn update(&mut self, change: impl FnOnce(&mut RunInfo)) {
        if let Err(e) = self.run.shared.update(change) {
            self.report_write_failure(&e);
        }
        self.last_write = Some(Instant::now());
    }

    /// A folder that cannot be written is said once; training goes on.
    fn report_write_failure(&mut self, e: &RunError) {
        if !self.failed_write {
            self.failed_write = true;
            self.face
                .warning(&format!("{e}: the run folder is not kept up to date"));
        }
    }

    /// Writes the `end` line and the final `run.json`.
    pub fn finish(mut self, result: &Result<(Plan, Option<Summary>), TrainError>) {
        let runtime = self.run.started.elapsed().as_secs_f64();
        let (status, step, line) = match result {
            Ok((_, Some(s))) => (
                match s.status {
                    crate::train::EndStatus::Finished => RunStatus::Finished,
                    crate::train::EndStatus::Stopped => RunStatus::Stopped,
                },
                Some(s.global_step),
                serde_json::json!({
                    "status": s.status,
                    "train_runtime": s.train_runtime,
                    "train_loss": s.train_loss,
                }),
            ),
            Ok((_, None)) => (
                RunStatus::Finished,
                None,
                serde_json::json!({"status": "finished", "train_runtime": runtime, "train_loss": null}),
            ),
            Err(e) => (
                RunStatus::Failed,
                None,
                serde_json::json!({
                    "status": "failed",
                    "train_runtime": runtime,
                    "train_loss": null,
                    "error": one_line(&e.to_string()),
                }),
            ),
        };
        self.append("end", &line);
        let error = result.as_ref().err().map(|e| one_line(&e.to_string()));
        self.update(|i| {
            i.status = status;
            if let Some(s) = step {
                i.step = s;
            }
            i.error = error;
        });
    }
}

/// A message on one line (run.json's `error`).
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Observer for Recorder<'_> {
    fn plan(&mut self, plan: &Plan) {
        self.update(|i| {
            i.max_steps = Some(plan.steps);
            if i.status == RunStatus::Starting {
                i.status = RunStatus::Running;
            }
        });
        self.face.plan(plan);
    }

    fn step(&mut self, step: usize, total: usize, loss: f64) {
        let due = self
            .last_write
            .is_none_or(|t| t.elapsed() >= STEP_WRITE_INTERVAL);
        if due {
            self.update(|i| {
                i.step = step;
                i.max_steps = Some(total);
            });
        } else {
            let mut info = self.run.shared.info();
            info.step = step;
            info.max_steps = Some(total);
        }
        self.face.step(step, total, loss);
    }

    fn log(&mut self, log: &TrainLog) {
        #[derive(Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            log: &'a TrainLog,
            memory_bytes: Option<i64>,
        }
        self.append(
            "train",
            &Line {
                log,
                memory_bytes: crate::device::peak_rss_bytes(),
            },
        );
        self.face.log(log);
    }

    fn eval(&mut self, log: &EvalLog) {
        self.append("eval", log);
        self.face.eval(log);
    }

    fn checkpoint(&mut self, step: usize, path: &Path) {
        // Absolute: watchers read the folder from anywhere.
        let at = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.append(
            "checkpoint",
            &serde_json::json!({"step": step, "path": at.display().to_string()}),
        );
        self.update(|i| i.step = step);
        self.face.checkpoint(step, path);
    }

    fn warning(&mut self, message: &str) {
        self.append("warning", &serde_json::json!({ "message": message }));
        self.face.warning(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_lines_put_kind_first() {
        let line = metrics_line("checkpoint", &serde_json::json!({"step": 2, "path": "x"}));
        assert_eq!(line, r#"{"kind":"checkpoint","step":2,"path":"x"}"#);
        assert_eq!(one_line("a\n  b\n"), "a; b");
    }
}
