//! A training run as a process with a run folder (DESIGN.md, "A training
//! run's folder"): `run.json` says who runs it and how far it is,
//! `metrics.jsonl` grows a line per log, `control.sock` takes commands. The
//! folder is the whole contract between the process that trains and whoever
//! watches it (`ftui runs`, `ftui stop`, the workbench, a script), so a run
//! outlives the terminal that started it and anyone can attach later.
//!
//! This layer sits on [`crate::train`]: it turns the trainer's [`Observer`]
//! callbacks into the folder's files and the socket's commands into its
//! [`Control`](crate::train::Control).
//!
//! [`Observer`]: crate::train::Observer

pub mod control;
pub mod detach;
pub mod list;
pub mod session;

pub use control::{send, Command};
pub use list::{list_runs, RunRow};
pub use session::{Recorder, Run, RunHandle};

use crate::process::{hostname, pid_alive};
use crate::train::setup::Problem;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const RUN_FILE: &str = "run.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CONFIG_FILE: &str = "ftui.toml";
pub const SOCKET_FILE: &str = "control.sock";
/// Where a detached run's stdout and stderr go.
pub const LOG_FILE: &str = "train.log";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a run.json ftui can read: {message}")]
    BadRunFile { path: PathBuf, message: String },
    #[error("{dir} holds a live run ({status}, pid {pid} on {host}): stop it with `ftui stop {dir}`, or choose another output_dir", dir = .dir.display())]
    Busy {
        dir: PathBuf,
        pid: u32,
        host: String,
        status: RunStatus,
    },
    #[error("{0}")]
    Control(String),
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a run stands, as `run.json` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Starting,
    Running,
    Paused,
    Stopping,
    Finished,
    Stopped,
    Failed,
}

impl RunStatus {
    /// Whether the run has ended (its process may be gone).
    pub fn is_over(self) -> bool {
        matches!(self, Self::Finished | Self::Stopped | Self::Failed)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        f.write_str(&name)
    }
}

/// `run.json`. Fields a foreign engine may leave out have defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub pid: u32,
    #[serde(default)]
    pub host: String,
    #[serde(default = "default_engine")]
    pub engine: String,
    pub status: RunStatus,
    #[serde(default)]
    pub step: usize,
    #[serde(default)]
    pub max_steps: Option<usize>,
    #[serde(default)]
    pub started: String,
    #[serde(default)]
    pub updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn default_engine() -> String {
    "ftui".into()
}

/// Reads `dir/run.json`; `None` when there is none.
pub fn read_info(dir: &Path) -> Result<Option<RunInfo>, RunError> {
    let path = dir.join(RUN_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| RunError::BadRunFile {
            path,
            message: e.to_string(),
        })
}

/// What a folder's `run.json` says about taking the folder over.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    /// No run, or one that has ended.
    Free,
    /// A run that did not end but whose process is gone (killed, crashed).
    Stale(RunInfo),
    /// A run whose process lives (or runs on another host, where ftui cannot tell).
    Live(RunInfo),
}

/// How a run's `run.json` reads now.
pub fn liveness_of(info: RunInfo) -> Liveness {
    let elsewhere = !info.host.is_empty() && info.host != hostname();
    // `ftui train --detach` claims the folder for the process it starts.
    if info.status.is_over() || (!elsewhere && info.pid == std::process::id()) {
        Liveness::Free
    } else if elsewhere || pid_alive(info.pid) {
        Liveness::Live(info)
    } else {
        Liveness::Stale(info)
    }
}

/// Whether `dir` holds a live run.
pub fn liveness(dir: &Path) -> Result<Liveness, RunError> {
    Ok(read_info(dir)?.map_or(Liveness::Free, liveness_of))
}

/// What to say when a new run takes over the folder of a dead one.
pub fn stale_note(dir: &Path, info: &RunInfo) -> String {
    format!(
        "{}: the earlier run (pid {}, {} at step {}) is gone; its folder is taken over",
        dir.display(),
        info.pid,
        info.status,
        info.step
    )
}

/// The status to show for a run: a run that did not end and whose process is
/// gone is `dead`.
pub fn shown_status(info: &RunInfo) -> String {
    match liveness_of(info.clone()) {
        Liveness::Stale(_) => "dead".into(),
        _ => info.status.to_string(),
    }
}

/// The run folder's pre-run checks: a live run in it, a checkpoint to
/// resume from that is not there.
pub fn folder_problems(dir: &Path, resume: Option<&str>) -> Vec<Problem> {
    let problem = |key: &str, message: String| Problem {
        key: key.into(),
        message,
    };
    let mut found = Vec::new();
    match liveness(dir) {
        Ok(Liveness::Live(info)) => found.push(problem(
            "[training] output_dir",
            RunError::Busy {
                dir: dir.to_path_buf(),
                pid: info.pid,
                host: info.host,
                status: info.status,
            }
            .to_string(),
        )),
        Err(e) => found.push(problem("[training] output_dir", e.to_string())),
        Ok(_) => {}
    }
    if let Some(spec) = resume {
        if let Err(e) = crate::train::checkpoint::resolve(spec, dir) {
            found.push(problem("[training] resume_from_checkpoint", e.to_string()));
        }
    }
    found
}

/// Now, as an ISO 8601 UTC timestamp (`2025-01-31T12:00:00Z`).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_timestamp(secs)
}

/// Seconds since the Unix epoch as an ISO 8601 UTC timestamp.
fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn this_process_lives_and_a_finished_run_frees_its_folder() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
        let mine = RunInfo {
            pid: std::process::id(),
            host: hostname(),
            engine: "ftui".into(),
            status: RunStatus::Starting,
            step: 0,
            max_steps: None,
            started: utc_now(),
            updated: utc_now(),
            error: None,
        };
        assert_eq!(
            liveness_of(mine),
            Liveness::Free,
            "claimed for this process"
        );
        let info = RunInfo {
            pid: std::os::unix::process::parent_id(),
            host: hostname(),
            engine: "ftui".into(),
            status: RunStatus::Running,
            step: 3,
            max_steps: Some(10),
            started: utc_now(),
            updated: utc_now(),
            error: None,
        };
        assert!(matches!(liveness_of(info.clone()), Liveness::Live(_)));
        let gone = RunInfo {
            pid: u32::MAX,
            ..info.clone()
        };
        assert!(matches!(liveness_of(gone.clone()), Liveness::Stale(_)));
        assert_eq!(shown_status(&gone), "dead");
        let done = RunInfo {
            status: RunStatus::Finished,
            ..gone
        };
        assert_eq!(liveness_of(done.clone()), Liveness::Free);
        assert_eq!(shown_status(&done), "finished");
    }
}
