//! What the workbench asks of training runs outside itself: start one as a
//! detached process (`ftui train --config FILE --detach`) and send commands
//! to a run's `control.sock`. A [`Launcher`] does each on a thread of its
//! own and hands the answers back when polled, so a slow or silent run never
//! holds up a key; tests put a recorder in its place.
//!
//! Any number of workbenches (and `ftui stop`, and scripts) may watch and
//! steer one run: the run carries out each command as it arrives, so the
//! last one asked wins, and every watcher sees the outcome in `run.json`.

use super::runs::SOCKET_FILE;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A command for a run's control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunCommand {
    Stop,
    Pause,
    Resume,
    Save,
}

impl RunCommand {
    /// As the socket spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunCommand::Stop => "stop",
            RunCommand::Pause => "pause",
            RunCommand::Resume => "resume",
            RunCommand::Save => "save",
        }
    }
}

/// What a pane asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// Start a detached run of the config file at this path.
    Start { config: PathBuf },
    /// Send a command to the run in `dir`.
    Control { dir: PathBuf, command: RunCommand },
}

/// How it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchReply {
    /// A run started in this folder.
    Started { dir: PathBuf },
    /// The run took the command and said this.
    Replied {
        command: RunCommand,
        message: String,
    },
    /// The start or the command failed, and why.
    Failed { what: String, error: String },
}

/// Starts runs and talks to them without blocking the caller.
pub trait Launcher {
    fn launch(&self, launch: Launch);
    /// The replies that came in since the last call.
    fn replies(&self) -> Vec<LaunchReply>;
}

/// How long a run's socket may take to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The real one: the current executable for starts, Unix sockets for commands.
pub struct ProcessLauncher {
    tx: Sender<LaunchReply>,
    rx: Receiver<LaunchReply>,
}

impl Default for ProcessLauncher {
    fn default() -> Self {
        let (tx, rx) = unbounded();
        ProcessLauncher { tx, rx }
    }
}

impl Launcher for ProcessLauncher {
    fn launch(&self, launch: Launch) {
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("ftui-launch".into())
            .spawn(move || {
                let _ = tx.send(carry_out(&launch));
            });
        if let Err(e) = spawned {
            let _ = self.tx.send(LaunchReply::Failed {
                what: "a launch thread".into(),
                error: e.to_string(),
            });
        }
    }

    fn replies(&self) -> Vec<LaunchReply> {
        self.rx.try_iter().collect()
    }
}

fn carry_out(launch: &Launch) -> LaunchReply {
    match launch {
        Launch::Start { config } => start(config).unwrap_or_else(|error| LaunchReply::Failed {
            what: "start training".into(),
            error,
        }),
        Launch::Control { dir, command } => match send(dir, *command) {
            Ok(message) => LaunchReply::Replied {
                command: *command,
                message,
            },
            Err(error) => LaunchReply::Failed {
                what: command.as_str().into(),
                error,
            },
        },
    }
}

/// Runs `<this exe> train --config FILE --detach`, which returns once the
/// run holds its folder and prints that folder on its first line.
fn start(config: &Path) -> Result<LaunchReply, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find ftui itself: {e}"))?;
    let out = Command::new(exe)
        .arg("train")
        .arg("--config")
        .arg(config)
        .arg("--detach")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr.trim().lines().last().unwrap_or("").to_string();
        return Err(format!("{}: {said}", out.status));
    }
    let dir = stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("ftui train --detach printed no run folder")?;
    Ok(LaunchReply::Started {
        dir: PathBuf::from(dir),
    })
}

/// Sends one command line and reads one reply line: `{"ok": .., "message": ..}`.
fn send(dir: &Path, command: RunCommand) -> Result<String, String> {
    let path = dir.join(SOCKET_FILE);
    let mut stream = UnixStream::connect(&path)
        .map_err(|e| format!("no run answers on {}: {e}", path.display()))?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(REPLY_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let request = serde_json::json!({ "command": command.as_str() });
    writeln!(stream, "{request}").map_err(|e| format!("cannot send: {e}"))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("no reply: {e}"))?;
    let reply: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("an unreadable reply ({e}): {line}"))?;
    let message = reply["message"].as_str().unwrap_or("").to_string();
    if reply["ok"] == serde_json::Value::Bool(true) {
        Ok(message)
    } else {
        Err(if message.is_empty() {
            "refused".into()
        } else {
            message
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A socket that answers like a run: ok for pause, refused for the rest.
    fn fake_run(dir: &Path) -> std::thread::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(dir.join(SOCKET_FILE)).unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (stream, _) = listener.accept().unwrap();
                let mut out = stream.try_clone().unwrap();
                let mut line = String::new();
                BufReader::new(stream).read_line(&mut line).unwrap();
                let reply = if line.contains("pause") {
                    r#"{"ok":true,"message":"pausing after the current step"}"#
                } else {
                    r#"{"ok":false,"message":"the run has ended"}"#
                };
                writeln!(out, "{reply}").unwrap();
                seen.push(line.trim().to_string());
            }
            seen
        })
    }

    #[test]
    fn commands_go_over_the_socket_and_replies_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let server = fake_run(dir.path());
        let l = ProcessLauncher::default();
        let dir = dir.path().to_path_buf();
        l.launch(Launch::Control {
            dir: dir.clone(),
            command: RunCommand::Pause,
        });
        let mut replies = Vec::new();
        while replies.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
            replies = l.replies();
        }
        l.launch(Launch::Control {
            dir: dir.clone(),
            command: RunCommand::Save,
        });
        while replies.len() < 2 {
            std::thread::sleep(Duration::from_millis(10));
            replies.extend(l.replies());
        }
        assert_eq!(
            replies,
            [
                LaunchReply::Replied {
                    command: RunCommand::Pause,
                    message: "pausing after the current step".into()
                },
                LaunchReply::Failed {
                    what: "save".into(),
                    error: "the run has ended".into()
                }
            ]
        );
        assert_eq!(
            server.join().unwrap(),
            [r#"{"command":"pause"}"#, r#"{"command":"save"}"#]
        );
    }

    #[test]
    fn a_folder_without_a_run_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = send(dir.path(), RunCommand::Stop).unwrap_err();
        assert!(err.starts_with("no run answers on"), "{err}");
    }
}
