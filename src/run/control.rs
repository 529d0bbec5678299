//! `control.sock`: a Unix socket in the run folder that takes one JSON
//! command per line (`{"command": "stop"}`) and answers one JSON line, so
//! `ftui stop`, the workbench or a script can steer a run they did not start.

use super::session::RunHandle;
use super::{io_error, RunError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the listener looks for its shutdown between connections.
const POLL: Duration = Duration::from_millis(50);
/// How long a client waits for a reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Finish the current step, write a checkpoint, end `stopped`.
    Stop,
    Pause,
    Resume,
    /// Write a checkpoint after the current step.
    Save,
    /// `run.json`'s fields, current.
    Status,
}

#[derive(Deserialize)]
struct Request {
    command: Command,
}

/// The listening side; dropping it stops the thread and removes the socket file.
pub(crate) struct Server {
    path: PathBuf,
    shutdown: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listens at `path` (a leftover socket file there is replaced: the caller
    /// has made sure no live run owns it).
    pub(crate) fn bind(path: &Path, handle: RunHandle) -> Result<Server, RunError> {
        if path.exists() {
            std::fs::remove_file(path).map_err(io_error(path))?;
        }
        let listener = UnixListener::bind(path).map_err(io_error(path))?;
        listener.set_nonblocking(true).map_err(io_error(path))?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let stop = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("control.sock".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let handle = handle.clone();
                            // A client may keep its connection open: one thread each.
                            let _ = std::thread::Builder::new()
                                .name("control client".into())
                                .spawn(move || serve(stream, &handle));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(POLL)
                        }
                        Err(e) => {
                            log::warn!("control.sock: {e}");
                            std::thread::sleep(POLL)
                        }
                    }
                }
            })
            .map_err(io_error(path))?;
        Ok(Server {
            path: path.to_path_buf(),
            shutdown,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers one client's lines until it hangs up.
fn serve(stream: UnixStream, handle: &RunHandle) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(r) => handle.apply(r.command),
            Err(e) => serde_json::json!({
                "ok": false,
                "message": format!("expected {{\"command\": \"stop\"|\"pause\"|\"resume\"|\"save\"|\"status\"}}: {e}"),
            }),
        };
        if writeln!(out, "{reply}").and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}

/// Sends `command` to the run in `dir` and returns its reply; a run that
/// does not answer is an error that says what `run.json` knows of it.
pub fn send(dir: &Path, command: Command) -> Result<serde_json::Value, RunError> {
    let path = dir.join(super::SOCKET_FILE);
    let unreachable = |why: String| RunError::Control(format!("{}: {why}", dir.display()));
    let mut stream = UnixStream::connect(&path).map_err(|e| unreachable(no_listener(dir, &e)))?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(|e| unreachable(e.to_string()))?;
    let request = serde_json::json!({ "command": command });
    writeln!(stream, "{request}").map_err(|e| unreachable(format!("cannot send: {e}")))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| unreachable(format!("no reply: {e}")))?;
    let reply: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| unreachable(format!("a reply ftui cannot read ({e}): {line}")))?;
    if reply["ok"] == serde_json::Value::Bool(true) {
        Ok(reply)
    } else {
        Err(unreachable(
            reply["message"].as_str().unwrap_or("refused").to_string(),
        ))
    }
}

/// Why nothing answers at `dir/control.sock`, from `run.json`.
fn no_listener(dir: &Path, e: &std::io::Error) -> String {
    let what = match super::read_info(dir) {
        Ok(None) => "not a run folder (no run.json)".to_string(),
        Err(e) => e.to_string(),
        Ok(Some(info)) => match super::shown_status(&info).as_str() {
            "dead" => format!(
                "the run died (pid {} is gone, run.json still says {} at step {}); resume it with --resume-from-checkpoint latest",
                info.pid, info.status, info.step
            ),
            status if info.status.is_over() => {
                format!("the run has ended ({status} at step {})", info.step)
            }
            status => format!("the run is {status} (pid {}) but does not listen", info.pid),
        },
    };
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("no {}: {what}", super::SOCKET_FILE)
    } else {
        format!("no run answers on {} ({e}): {what}", super::SOCKET_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{read_info, Run, RunStatus};

    #[test]
    fn commands_reach_the_controls_and_the_socket_goes_with_the_run() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = crate::config::RunConfig::parse(
            "[model]\nsource = \"x\"\n[training]\nmax_steps = 7\n",
            Path::new("t.toml"),
        )
        .expect("config");
        let run = Run::start(dir.path(), &config, false).expect("starts");
        let handle = run.handle();
        let reply = send(dir.path(), Command::Status).expect("status");
        assert_eq!(reply["status"], "starting");
        assert_eq!(reply["max_steps"], 7);
        send(dir.path(), Command::Pause).expect("pause");
        assert!(handle.control().is_paused());
        let info = read_info(dir.path()).expect("readable").expect("run.json");
        assert_eq!(info.status, RunStatus::Paused);
        send(dir.path(), Command::Resume).expect("resume");
        assert!(!handle.control().is_paused());
        send(dir.path(), Command::Stop).expect("stop");
        let info = read_info(dir.path()).expect("readable").expect("run.json");
        assert_eq!(info.status, RunStatus::Stopping);
        // A stop is final: resuming does not undo it.
        send(dir.path(), Command::Resume).expect("resume");
        assert_eq!(handle.info().status, RunStatus::Stopping);

        let mut raw =
            UnixStream::connect(dir.path().join(crate::run::SOCKET_FILE)).expect("connect");
        writeln!(raw, "{{\"command\": \"jump\"}}").expect("send");
        let mut line = String::new();
        BufReader::new(&raw).read_line(&mut line).expect("reply");
        let reply: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(reply["ok"], false);
        assert!(reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("stop")));

        drop(run);
        assert!(!dir.path().join(crate::run::SOCKET_FILE).exists());
        let e = send(dir.path(), Command::Stop).expect_err("nobody listens");
        assert!(e.to_string().contains("no control.sock"), "{e}");
    }
}
