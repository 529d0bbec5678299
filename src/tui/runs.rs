//! The watcher's side of a training run's folder (DESIGN.md, "A training
//! run's folder"): `run.json` read as it is, `metrics.jsonl` followed from
//! where it was last read, whole lines only, a bounded amount per call. The
//! workbench reads runs only through these files, so a run started by
//! another terminal, an earlier workbench or another engine looks the same.
//! Nothing here links libtorch.

use crate::process::{hostname, pid_alive};
use serde::Deserialize;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const RUN_FILE: &str = "run.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SOCKET_FILE: &str = "control.sock";
/// A detached run's own output (stdout and stderr).
pub const LOG_FILE: &str = "train.log";

/// Where a run stands, as `run.json` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopping => "stopping",
            Self::Finished => "finished",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

/// `run.json`. What a foreign engine may leave out has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunInfo {
    pub pid: u32,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub engine: String,
    pub status: RunStatus,
    #[serde(default)]
    pub step: u64,
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// ISO 8601 UTC, `2025-01-31T12:00:00Z`.
    #[serde(default)]
    pub started: String,
    #[serde(default)]
    pub updated: String,
    #[serde(default)]
    pub error: Option<String>,
}

impl RunInfo {
    /// Reads `dir/run.json`; `None` when there is none or it cannot be read
    /// (a writer replaces it atomically, so a half-written one is not seen).
    pub fn read(dir: &Path) -> Option<RunInfo> {
        let text = std::fs::read_to_string(dir.join(RUN_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// A run that has not ended but whose process is gone (killed, crashed).
    /// A run on another host is taken as alive: this machine cannot tell.
    pub fn is_dead(&self) -> bool {
        !self.status.is_over()
            && (self.host.is_empty() || self.host == hostname())
            && !pid_alive(self.pid)
    }

    /// Whether the run's process is at work: not ended, not dead.
    pub fn is_live(&self) -> bool {
        !self.status.is_over() && !self.is_dead()
    }

    /// The status to show: `dead` for a run whose process is gone.
    pub fn shown_status(&self) -> &'static str {
        if self.is_dead() {
            "dead"
        } else {
            self.status.as_str()
        }
    }

    /// Seconds from `started` to `updated`.
    pub fn elapsed_seconds(&self) -> Option<i64> {
        Some(utc_seconds(&self.updated)? - utc_seconds(&self.started)?)
    }

    /// The time left at the pace so far, in seconds.
    pub fn eta_seconds(&self) -> Option<i64> {
        let total = self.max_steps?;
        if self.step == 0 || self.status.is_over() {
            return None;
        }
        let per_step = self.elapsed_seconds()? as f64 / self.step as f64;
        Some((per_step * total.saturating_sub(self.step) as f64).round() as i64)
    }
}

/// `2025-01-31T12:00:00Z` (or with an offset, or fractional seconds) as
/// seconds since the Unix epoch.
pub fn utc_seconds(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |a: usize, b: usize| -> Option<i64> { s.get(a..b)?.parse().ok() };
    if s.len() < 19 || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    // The offset, if any, after optional fractional seconds.
    let rest = s[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match rest {
        "" | "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

/// A run folder and what its `run.json` said when last read.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub dir: PathBuf,
    pub info: RunInfo,
    /// The loss of the last `train` line.
    pub last_loss: Option<f64>,
}

impl RunEntry {
    /// The folder's last component, for lists.
    pub fn name(&self) -> String {
        self.dir.file_name().map_or_else(
            || self.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// The runs that belong with `output_dir`: the folder itself, the runs
/// inside it, and its siblings in the runs folder. Newest first.
pub fn find_runs(output_dir: &Path) -> Vec<RunEntry> {
    let mut dirs = vec![output_dir.to_path_buf()];
    dirs.extend(subfolders(output_dir));
    if let Some(parent) = output_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        dirs.extend(subfolders(parent));
    }
    dirs.sort();
    dirs.dedup();
    let mut runs: Vec<RunEntry> = dirs
        .into_iter()
        .filter_map(|dir| {
            Some(RunEntry {
                info: RunInfo::read(&dir)?,
                last_loss: last_loss(&dir.join(METRICS_FILE)),
                dir,
            })
        })
        .collect();
    runs.sort_by(|a, b| (b.info.started.as_str(), &b.dir).cmp(&(a.info.started.as_str(), &a.dir)));
    runs
}

/// How much of a run's output the pane shows the end of.
pub const TAIL_BYTES: u64 = 16 * 1024;
/// How much of `metrics.jsonl` [`last_loss`] looks at: a few lines.
const LAST_LOSS_BYTES: u64 = 4096;

/// The whole lines among the last `bytes` of `path` (a line cut by the
/// start of the window is dropped), oldest first; `None` without the file.
pub fn tail(path: &Path, bytes: u64) -> Option<Vec<String>> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let from = len.saturating_sub(bytes);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if from > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    Some(lines)
}

/// The loss of the last `train` line among the file's last few lines.
pub fn last_loss(path: &Path) -> Option<f64> {
    tail(path, LAST_LOSS_BYTES)?
        .iter()
        .rev()
        .find_map(|l| match parse_metric(l)? {
            Metric::Train(t) => t.loss,
            _ => None,
        })
}

fn subfolders(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// The adapter a run leaves: the final one, else its newest checkpoint.
pub fn adapter_dir(run: &Path) -> Option<PathBuf> {
    let has_adapter = |d: &Path| d.join("adapter_config.json").is_file();
    if has_adapter(run) {
        return Some(run.to_path_buf());
    }
    subfolders(run)
        .into_iter()
        .filter(|d| has_adapter(d))
        .filter_map(|d| {
            let step: u64 = d
                .file_name()?
                .to_str()?
                .strip_prefix("checkpoint-")?
                .parse()
                .ok()?;
            Some((step, d))
        })
        .max_by_key(|(step, _)| *step)
        .map(|(_, d)| d)
}

/// One `train` line. A loss that was not finite is written as `null`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrainLine {
    pub step: u64,
    #[serde(default)]
    pub epoch: Option<f64>,
    #[serde(default)]
    pub loss: Option<f64>,
    #[serde(default)]
    pub learning_rate: Option<f64>,
    #[serde(default)]
    pub grad_norm: Option<f64>,
    #[serde(default)]
    pub num_tokens: Option<f64>,
    #[serde(default)]
    pub mean_token_accuracy: Option<f64>,
    #[serde(default)]
    pub entropy: Option<f64>,
    #[serde(default)]
    pub tokens_per_second: Option<f64>,
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Metric {
    Train(TrainLine),
    Eval {
        step: u64,
        #[serde(default)]
        eval_loss: Option<f64>,
        #[serde(default)]
        eval_mean_token_accuracy: Option<f64>,
    },
    Checkpoint {
        step: u64,
        #[serde(default)]
        path: String,
    },
    Warning {
        message: String,
    },
    End {
        status: String,
        #[serde(default)]
        train_runtime: Option<f64>,
        #[serde(default)]
        train_loss: Option<f64>,
        #[serde(default)]
        error: Option<String>,
    },
}

/// A line, or `None` for one that is not a metric this reader knows (a
/// newer writer's kind, a torn line): skipped, never fatal.
pub fn parse_metric(line: &str) -> Option<Metric> {
    serde_json::from_str(line.trim()).ok()
}

/// How much of `metrics.jsonl` one poll reads at most, so a long run's file
/// is taken in over several ticks and a key is never kept waiting.
pub const POLL_BYTES: u64 = 256 * 1024;

/// What one poll found.
#[derive(Debug, Default, PartialEq)]
pub struct Polled {
    pub metrics: Vec<Metric>,
    /// Lines that were not metrics.
    pub skipped: usize,
    /// The file got shorter (a new run in the folder): read again from the
    /// start; what was shown belongs to another run.
    pub restarted: bool,
    /// More is there than this poll read.
    pub more: bool,
}

/// Follows `metrics.jsonl`: each poll reads what was added since the last
/// one, whole lines only; a last line still being written waits for its end.
#[derive(Debug, Default)]
pub struct MetricsReader {
    offset: u64,
    partial: Vec<u8>,
}

impl MetricsReader {
    /// Reads at most `limit` new bytes of `path`. A missing file is empty.
    pub fn poll(&mut self, path: &Path, limit: u64) -> std::io::Result<Polled> {
        let mut polled = Polled::default();
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(polled),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            *self = MetricsReader::default();
            polled.restarted = true;
        }
        if len == self.offset {
            return Ok(polled);
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut chunk = Vec::new();
        file.take(limit).read_to_end(&mut chunk)?;
        self.offset += chunk.len() as u64;
        polled.more = self.offset < len;
        for line in self.take_lines(&chunk) {
            match parse_metric(&line) {
                Some(m) => polled.metrics.push(m),
                None if line.trim().is_empty() => {}
                None => polled.skipped += 1,
            }
        }
        Ok(polled)
    }

    /// Adds `chunk` to what is held and returns the lines it completes.
    fn take_lines(&mut self, chunk: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(chunk);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let whole = std::mem::replace(&mut self.partial, rest);
        String::from_utf8_lossy(&whole)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TRAIN: &str = r#"{"kind":"train","step":1,"epoch":0.1,"loss":2.5,"learning_rate":0.0002,"grad_norm":1.5,"num_tokens":512.0,"mean_token_accuracy":0.4,"entropy":1.9,"tokens_per_second":800.0,"memory_bytes":1048576}"#;

    #[test]
    fn parses_every_kind() {
        let Some(Metric::Train(t)) = parse_metric(TRAIN) else {
            panic!("a train line");
        };
        assert_eq!(
            (t.step, t.loss, t.memory_bytes),
            (1, Some(2.5), Some(1 << 20))
        );
        assert_eq!(
            parse_metric(
                r#"{"kind":"eval","step":5,"eval_loss":2.1,"eval_mean_token_accuracy":0.5}"#
            ),
            Some(Metric::Eval {
                step: 5,
                eval_loss: Some(2.1),
                eval_mean_token_accuracy: Some(0.5)
            })
        );
        assert_eq!(
            parse_metric(r#"{"kind":"warning","message":"out of memory: halving"}"#),
            Some(Metric::Warning {
                message: "out of memory: halving".into()
            })
        );
        assert!(matches!(
            parse_metric(
                r#"{"kind":"end","status":"failed","train_runtime":3.5,"train_loss":null,"error":"the loss became NaN"}"#
            ),
            Some(Metric::End {
                train_loss: None,
                error: Some(_),
                ..
            })
        ));
        // A NaN loss is written as null.
        let nan = TRAIN.replace("\"loss\":2.5", "\"loss\":null");
        assert!(matches!(
            parse_metric(&nan),
            Some(Metric::Train(TrainLine { loss: None, .. }))
        ));
        assert_eq!(parse_metric(r#"{"kind":"future","x":1}"#), None);
        assert_eq!(parse_metric(r#"{"kind":"train","st"#), None);
    }

    #[test]
    fn follows_whole_lines_and_waits_for_a_partial_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let mut r = MetricsReader::default();
        assert_eq!(
            r.poll(&path, POLL_BYTES).unwrap(),
            Polled::default(),
            "no file yet"
        );
        let mut f = std::fs::File::create(&path).unwrap();
        let (head, tail) = TRAIN.split_at(40);
        write!(f, "{TRAIN}\n{head}").unwrap();
        let p = r.poll(&path, POLL_BYTES).unwrap();
        assert_eq!(p.metrics.len(), 1, "the partial line waits");
        assert_eq!(p.skipped, 0);
        writeln!(f, "{tail}").unwrap();
        writeln!(f, "not json").unwrap();
        let p = r.poll(&path, POLL_BYTES).unwrap();
        assert_eq!(p.metrics.len(), 1, "the finished line");
        assert_eq!(p.skipped, 1);
        assert_eq!(
            r.poll(&path, POLL_BYTES).unwrap(),
            Polled::default(),
            "nothing new"
        );
    }

    #[test]
    fn reads_a_bounded_amount_per_poll_and_restarts_on_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let text: String = (0..100).map(|_| format!("{TRAIN}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let mut r = MetricsReader::default();
        let mut seen = 0;
        let mut polls = 0;
        loop {
            let p = r.poll(&path, 1000).unwrap();
            seen += p.metrics.len();
            polls += 1;
            if !p.more {
                break;
            }
        }
        assert_eq!(seen, 100);
        assert!(polls > 10, "{polls} polls");
        std::fs::write(&path, format!("{TRAIN}\n")).unwrap();
        let p = r.poll(&path, POLL_BYTES).unwrap();
        assert!(p.restarted);
        assert_eq!(p.metrics.len(), 1);
    }

    #[test]
    fn the_tail_holds_whole_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        assert_eq!(tail(&path, TAIL_BYTES), None);
        std::fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(tail(&path, TAIL_BYTES).unwrap(), ["one", "two"]);
        let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, long).unwrap();
        let lines = tail(&path, TAIL_BYTES).unwrap();
        assert_eq!(lines.last().map(String::as_str), Some("line 4999"));
        assert!(lines[0].starts_with("line ") && lines.len() < 5000);
        let first: usize = lines[0]["line ".len()..].parse().unwrap();
        assert_eq!(lines.len(), 5000 - first, "no cut line");
    }

    #[test]
    fn timestamps_and_eta() {
        assert_eq!(utc_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(utc_seconds("2000-03-01T00:00:01Z"), Some(951_868_801));
        assert_eq!(utc_seconds("2000-03-01T01:00:01+01:00"), Some(951_868_801));
        assert_eq!(utc_seconds("2000-03-01T00:00:01.25Z"), Some(951_868_801));
        assert_eq!(utc_seconds("yesterday"), None);
        let info: RunInfo = serde_json::from_str(
            r#"{"pid":1,"status":"running","step":25,"max_steps":100,"started":"2025-01-31T12:00:00Z","updated":"2025-01-31T12:00:50Z"}"#,
        )
        .unwrap();
        assert_eq!(info.elapsed_seconds(), Some(50));
        assert_eq!(info.eta_seconds(), Some(150));
    }

    #[test]
    fn a_running_run_whose_process_is_gone_is_dead() {
        let live = format!(
            r#"{{"pid":{},"host":"{}","status":"running"}}"#,
            std::process::id(),
            hostname()
        );
        let info: RunInfo = serde_json::from_str(&live).unwrap();
        assert_eq!(info.shown_status(), "running");
        assert!(info.is_live());
        let gone: RunInfo = serde_json::from_str(
            &live.replace(&format!(":{},", std::process::id()), ":2147483646,"),
        )
        .unwrap();
        assert_eq!(gone.shown_status(), "dead");
        assert!(!gone.is_live());
        let elsewhere: RunInfo = serde_json::from_str(
            r#"{"pid":2147483646,"host":"another-host.invalid","status":"running"}"#,
        )
        .unwrap();
        assert_eq!(elsewhere.shown_status(), "running", "cannot tell: alive");
    }

    #[test]
    fn finds_the_runs_beside_the_output_dir_and_their_adapters() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        for (name, started) in [("a", "2025-01-01T00:00:00Z"), ("b", "2025-02-01T00:00:00Z")] {
            std::fs::create_dir_all(runs.join(name)).unwrap();
            std::fs::write(
                runs.join(name).join(RUN_FILE),
                format!(r#"{{"pid":1,"status":"finished","started":"{started}"}}"#),
            )
            .unwrap();
        }
        std::fs::create_dir_all(runs.join("not-a-run")).unwrap();
        let found = find_runs(&runs.join("a"));
        let names: Vec<String> = found.iter().map(RunEntry::name).collect();
        assert_eq!(names, ["b", "a"], "newest first");
        assert!(find_runs(&dir.path().join("none/x")).is_empty());

        let a = runs.join("a");
        assert_eq!(adapter_dir(&a), None);
        for step in [5, 10] {
            let c = a.join(format!("checkpoint-{step}"));
            std::fs::create_dir_all(&c).unwrap();
            std::fs::write(c.join("adapter_config.json"), "{}").unwrap();
        }
        assert_eq!(adapter_dir(&a), Some(a.join("checkpoint-10")));
        std::fs::write(a.join("adapter_config.json"), "{}").unwrap();
        assert_eq!(adapter_dir(&a), Some(a.clone()), "the final adapter first");
    }
}
