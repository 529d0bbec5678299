//! Test helpers shared by integration tests: a small stand-in for the Hugging Face
//! Hub on 127.0.0.1, and a guard for the hub's environment variables.
//!
//! The server answers `hf-hub` 0.4's sync client as huggingface.co does for model and
//! dataset repos (`/api/{models,datasets}/ID/revision/REV` with the commit and file
//! list; `[datasets/]ID/resolve/REV/FILE` with `X-Repo-Commit`, `ETag` and ranged
//! GETs answered 206 with `Content-Range`; `X-Error-Code` on 401/404). It serves
//! every file directly (no LFS redirect: `tests/hub.rs` covers that path) and logs
//! the requests it saw.

#![allow(dead_code)] // each test crate uses its own part of this module

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Model,
    Dataset,
}

struct Repo {
    sha: String,
    files: BTreeMap<String, Vec<u8>>,
}

#[derive(Default)]
struct State {
    repos: HashMap<(Kind, String), Repo>,
    log: Vec<Request>,
}

pub struct FakeHub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

/// A hex digest-shaped name for `data` (nothing in the client checks it).
pub fn fake_digest(data: &[u8], hex_len: usize) -> String {
    let mut out = String::new();
    let mut round = 0u64;
    while out.len() < hex_len {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
        round += 1;
    }
    out.truncate(hex_len);
    out
}

impl FakeHub {
    pub fn start() -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        FakeHub { addr, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes (or replaces) a repo at commit `sha` with these files.
    pub fn publish(&self, kind: Kind, id: &str, sha: &str, files: Vec<(String, Vec<u8>)>) {
        self.lock().repos.insert(
            (kind, id.to_string()),
            Repo {
                sha: sha.to_string(),
                files: files.into_iter().collect(),
            },
        );
    }

    /// The requests made since the last call (and forgets them).
    pub fn take_log(&self) -> Vec<Request> {
        std::mem::take(&mut self.lock().log)
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let req = Request {
            method: method.to_string(),
            path: path.to_string(),
            headers,
        };
        let (status, reason, resp_headers, body) = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.log.push(req.clone());
            route(&st, &req)
        };
        let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
        for (k, v) in &resp_headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut out = head.into_bytes();
        if req.method != "HEAD" {
            out.extend_from_slice(&body);
        }
        if writer.write_all(&out).and_then(|_| writer.flush()).is_err() {
            return;
        }
    }
}

type Answer = (u16, &'static str, Vec<(String, String)>, Vec<u8>);

fn error(status: u16, reason: &'static str, code: &str) -> Answer {
    (
        status,
        reason,
        vec![("X-Error-Code".into(), code.into())],
        format!("{{\"error\": \"{code}\"}}").into_bytes(),
    )
}

fn route(st: &State, req: &Request) -> Answer {
    let path = req.path.split('?').next().unwrap_or_default();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let authorized = req.header("authorization").is_some();
    let find = |kind: Kind, org: &str, name: &str, rev: &str| -> Result<&Repo, Answer> {
        let repo = st
            .repos
            .get(&(kind, format!("{org}/{name}")))
            .ok_or_else(|| {
                if authorized {
                    error(404, "Not Found", "RepoNotFound")
                } else {
                    error(401, "Unauthorized", "RepoNotFound")
                }
            })?;
        if rev != "main" && rev != repo.sha {
            return Err(error(404, "Not Found", "RevisionNotFound"));
        }
        Ok(repo)
    };
    let (kind, rest): (Kind, &[&str]) = match segs.as_slice() {
        ["api", "models", rest @ ..] => (Kind::Model, rest),
        ["api", "datasets", rest @ ..] => (Kind::Dataset, rest),
        ["datasets", rest @ ..] => (Kind::Dataset, rest),
        rest => (Kind::Model, rest),
    };
    let api = segs.first() == Some(&"api");
    match rest {
        [org, name, "revision", rev] if api => match find(kind, org, name, rev) {
            Err(e) => e,
            Ok(repo) => {
                let siblings: Vec<_> = repo
                    .files
                    .keys()
                    .map(|f| serde_json::json!({ "rfilename": f }))
                    .collect();
                let body = serde_json::json!({
                    "id": format!("{org}/{name}"),
                    "sha": repo.sha,
                    "private": false,
                    "siblings": siblings,
                });
                (
                    200,
                    "OK",
                    vec![("Content-Type".into(), "application/json".into())],
                    body.to_string().into_bytes(),
                )
            }
        },
        [org, name, "resolve", rev, file @ ..] if !api && !file.is_empty() => {
            let repo = match find(kind, org, name, rev) {
                Ok(r) => r,
                Err(e) => return e,
            };
            let Some(data) = repo.files.get(&file.join("/")) else {
                return error(404, "Not Found", "EntryNotFound");
            };
            let mut headers = vec![
                ("X-Repo-Commit".to_string(), repo.sha.clone()),
                ("ETag".to_string(), format!("\"{}\"", fake_digest(data, 40))),
                ("Accept-Ranges".to_string(), "bytes".to_string()),
            ];
            let len = data.len();
            let range = req.header("range").and_then(|r| {
                let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
                let a: usize = a.trim().parse().ok()?;
                let b: usize = match b.trim() {
                    "" => len.saturating_sub(1),
                    b => b.parse::<usize>().ok()?.min(len.saturating_sub(1)),
                };
                Some((a, b))
            });
            match range {
                None => (200, "OK", headers, data.clone()),
                Some((a, b)) if a >= len || a > b => {
                    headers.push(("Content-Range".into(), format!("bytes */{len}")));
                    (416, "Range Not Satisfiable", headers, Vec::new())
                }
                Some((a, b)) => {
                    headers.push(("Content-Range".into(), format!("bytes {a}-{b}/{len}")));
                    (206, "Partial Content", headers, data[a..=b].to_vec())
                }
            }
        }
        _ => error(404, "Not Found", "EntryNotFound"),
    }
}

static ENV_LOCK: Mutex<()> = Mutex::new(());

const ENV_KEYS: [&str; 11] = [
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_TOKEN",
    "HF_HUB_OFFLINE",
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

/// Holds the env lock, starts from a clean hub environment (no proxies: ureq
/// ignores NO_PROXY), and restores every variable on drop.
pub struct Env {
    saved: Vec<(&'static str, Option<OsString>)>,
    _lock: MutexGuard<'static, ()>,
}

impl Env {
    pub fn clean() -> Env {
        let lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let saved = ENV_KEYS.iter().map(|k| (*k, std::env::var_os(k))).collect();
        for k in ENV_KEYS {
            std::env::remove_var(k);
        }
        Env { saved, _lock: lock }
    }
    pub fn set(&self, k: &str, v: impl AsRef<std::ffi::OsStr>) {
        std::env::set_var(k, v);
    }
    pub fn unset(&self, k: &str) {
        std::env::remove_var(k);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (k, v) in &self.saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}
