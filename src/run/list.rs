//! `ftui runs`: the run folders found, each as one row read from its
//! `run.json` and the last `train` line of its `metrics.jsonl`.

use super::{read_info, shown_status, METRICS_FILE, RUN_FILE};
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// How much of the end of `metrics.jsonl` is searched for the last loss first.
const TAIL_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRow {
    pub folder: String,
    pub engine: String,
    /// `run.json`'s status, or `dead` for a run whose process is gone.
    pub status: String,
    pub step: usize,
    pub max_steps: Option<usize>,
    pub last_loss: Option<f64>,
    pub pid: u32,
    pub updated: String,
    pub error: Option<String>,
}

/// The run folders (folders with a `run.json`) directly under `dir`, by name.
pub fn folders_under(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(RUN_FILE).is_file())
        .collect();
    found.sort();
    found
}

/// One row per run folder among `dirs` (others skipped; each folder once).
pub fn list_runs(dirs: &[PathBuf]) -> Vec<RunRow> {
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for dir in dirs {
        let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if !seen.insert(key) {
            continue;
        }
        let Ok(Some(info)) = read_info(dir) else {
            continue;
        };
        rows.push(RunRow {
            folder: dir.display().to_string(),
            engine: info.engine.clone(),
            status: shown_status(&info),
            step: info.step,
            max_steps: info.max_steps,
            last_loss: last_loss(&dir.join(METRICS_FILE)),
            pid: info.pid,
            updated: info.updated.clone(),
            error: info.error.clone(),
        });
    }
    rows
}

/// The `loss` of the last `train` line of a metrics file.
pub fn last_loss(path: &Path) -> Option<f64> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let from_tail = |file: &mut std::fs::File, start: u64| -> Option<Option<f64>> {
        file.seek(SeekFrom::Start(start)).ok()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        // The first line of a tail may be cut: it is skipped unless the tail is the file.
        let lines: Vec<&str> = text.lines().skip(usize::from(start > 0)).collect();
        Some(lines.into_iter().rev().find_map(train_loss))
    };
    match from_tail(&mut file, len.saturating_sub(TAIL_BYTES))? {
        Some(loss) => Some(loss),
        None if len > TAIL_BYTES => from_tail(&mut file, 0)?,
        None => None,
    }
}

fn train_loss(line: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    (v["kind"] == "train").then(|| v["loss"].as_f64())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_train_line_gives_the_loss() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(METRICS_FILE);
        assert_eq!(last_loss(&path), None);
        let mut text = String::new();
        for step in 1..=3000 {
            text.push_str(&format!(
                "{{\"kind\":\"train\",\"step\":{step},\"loss\":{}.5}}\n",
                step
            ));
        }
        text.push_str("{\"kind\":\"checkpoint\",\"step\":3000,\"path\":\"x\"}\n");
        text.push_str("{\"kind\":\"end\",\"status\":\"finished\"}\n");
        std::fs::write(&path, &text).expect("write");
        assert!(text.len() as u64 > TAIL_BYTES);
        assert_eq!(last_loss(&path), Some(3000.5));
        // Beyond the tail: the whole file is read.
        for _ in 0..3000 {
            text.push_str("{\"kind\":\"warning\",\"message\":\"m\"}\n");
        }
        std::fs::write(&path, &text).expect("write");
        assert_eq!(last_loss(&path), Some(3000.5));
        std::fs::write(&path, "{\"kind\":\"warning\",\"message\":\"m\"}\n").expect("write");
        assert_eq!(last_loss(&path), None);
    }
}
