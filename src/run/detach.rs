//! `ftui train --detach`: the same run started as a background process in a
//! session of its own (no controlling terminal, stdin from /dev/null, output
//! appended to `train.log`), so closing the terminal or losing the SSH
//! connection does not reach it.

use super::{io_error, RunError, RunInfo, RunStatus};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

/// Starts `exe args` detached for the run folder `dir`, its stdout and
/// stderr appended to `dir/train.log`, and claims the folder for it at once
/// (`run.json`, `starting`, its pid), so a watcher started right after sees
/// the run while it is still loading. Returns the run's pid.
pub fn spawn(exe: &Path, args: &[OsString], dir: &Path) -> Result<u32, RunError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let log = dir.join(super::LOG_FILE);
    let log = log.as_path();
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_error(log))?;
    let err = out.try_clone().map_err(io_error(log))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(io_error(exe))?;
    // The run rewrites this itself once it starts, as its own claim.
    let now = super::utc_now();
    super::session::write_info(
        dir,
        &RunInfo {
            pid: child.id(),
            host: crate::process::hostname(),
            engine: "ftui".into(),
            status: RunStatus::Starting,
            step: 0,
            max_steps: None,
            started: now.clone(),
            updated: now,
            error: None,
        },
    )?;
    Ok(child.id())
}
