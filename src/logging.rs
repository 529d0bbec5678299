//! A log file in the data folder: the TUI owns the terminal, so log lines go to
//! `<data>/ftui.log` (and, in the workbench, to the log view through events).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

struct FileLogger {
    file: Mutex<std::fs::File>,
    level: log::LevelFilter,
}

impl log::Log for FileLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(
                f,
                "{secs:.3} {:5} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {
        if let Ok(mut f) = self.file.lock() {
            let _ = f.flush();
        }
    }
}

/// Starts logging to `<data>/ftui.log` (level from `FTUI_LOG`, default info) and
/// returns the file's path. Logging is best effort: a read-only home is no error.
pub fn init() -> Option<PathBuf> {
    let dir = crate::paths::dirs().data;
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("ftui.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let level = std::env::var("FTUI_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(log::LevelFilter::Info);
    let logger = FileLogger {
        file: Mutex::new(file),
        level,
    };
    log::set_boxed_logger(Box::new(logger)).ok()?;
    log::set_max_level(level);
    Some(path)
}
