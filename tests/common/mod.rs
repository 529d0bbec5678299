//! Test helpers shared by integration tests: a small stand-in for the Hugging Face
//! Hub on 127.0.0.1, and a guard for the hub's environment variables.
//!
//! The server is an HTTP/1.1 server that answers `hf-hub` 0.4's sync client the way
//! huggingface.co does, for model and dataset repos alike, routed by [`RepoType`]:
//!
//! - repo info: `/api/models/ID/revision/REV` and `/api/datasets/ID/revision/REV`,
//!   with the commit and the file list (public metadata, gated repos' too);
//! - files: `/ID/resolve/REV/FILE` and `/datasets/ID/resolve/REV/FILE`, with
//!   `X-Repo-Commit` and `ETag`, ranged GETs answered 206 with `Content-Range`;
//! - LFS: `*.safetensors` files are stored with Git LFS, so `resolve` redirects them
//!   to a "CDN" (`/cdn-lfs/ID/ETAG`, `/cdn-lfs/datasets/ID/ETAG`) and names them by
//!   `X-Linked-Etag`/`X-Linked-Size`; every other file is served directly;
//! - errors: the hub's JSON body with `X-Error-Code`/`X-Error-Message`: 401 to
//!   anonymous requests for a repo that does not exist, 404 with a token,
//!   `RevisionNotFound`, `EntryNotFound`, and for gated repos 401 without a token
//!   and 403 with one that was not granted access.
//!
//! It logs every request it sees, and repos can be republished at a new commit.

#![allow(dead_code)] // each test crate uses its own part of this module

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

// ---------------------------------------------------------------------------
// The fake hub.

/// One request as the server saw it (header names lowercased).
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

/// The kind of a hub repo, which decides its URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RepoType {
    Model,
    Dataset,
}

impl RepoType {
    /// The folder under `/api/`: `models` or `datasets`.
    fn api(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
        }
    }
    /// What comes before `ID` in a repo's URLs: nothing for models, `datasets/`
    /// for datasets.
    fn prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            RepoType::Model => "model",
            RepoType::Dataset => "dataset",
        }
    }
    /// Splits the `datasets/` prefix off a path: the repo type and the rest.
    fn split<'a, 'b>(segs: &'a [&'b str]) -> (RepoType, &'a [&'b str]) {
        match segs {
            ["datasets", rest @ ..] => (RepoType::Dataset, rest),
            rest => (RepoType::Model, rest),
        }
    }
}

struct HubFile {
    data: Vec<u8>,
    /// Stored with Git LFS: `resolve` redirects to the CDN.
    lfs: bool,
    /// The ETag: sha256-shaped for LFS files, git-blob-sha1-shaped otherwise.
    etag: String,
}

struct HubRepo {
    sha: String,
    /// For a gated repo, the one token granted access.
    gated: Option<String>,
    files: BTreeMap<String, HubFile>,
}

#[derive(Default)]
struct HubState {
    repos: HashMap<(RepoType, String), HubRepo>,
    log: Vec<Request>,
}

struct Response {
    status: u16,
    reason: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16, reason: &'static str) -> Self {
        Response {
            status,
            reason,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
    /// The hub's error shape: JSON body, `X-Error-Code`, `X-Error-Message`.
    fn error(status: u16, reason: &'static str, code: &str, message: &str) -> Self {
        Response::new(status, reason)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
            .body(
                serde_json::json!({ "error": message })
                    .to_string()
                    .into_bytes(),
            )
    }
}

/// A hex digest-shaped name for `data` (the real hub uses git sha1 / sha256;
/// nothing in the client verifies it, so any stable content hash will do).
fn fake_digest(data: &[u8], hex_len: usize) -> String {
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

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if let (b'%', Some(Ok(b))) = (bytes[i], hex.map(|h| u8::from_str_radix(h, 16))) {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct FakeHub {
    addr: SocketAddr,
    state: Arc<Mutex<HubState>>,
}

impl FakeHub {
    pub fn start() -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(HubState::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                std::thread::spawn(move || serve_connection(stream, addr, &state));
            }
        });
        FakeHub { addr, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes (or replaces) a public repo at commit `sha` with these files.
    pub fn publish<N: Into<String>>(
        &self,
        kind: RepoType,
        id: &str,
        sha: &str,
        files: Vec<(N, Vec<u8>)>,
    ) {
        self.insert(kind, id, sha, None, files);
    }

    /// Publishes (or replaces) a gated repo whose files only `token` may fetch.
    pub fn publish_gated<N: Into<String>>(
        &self,
        kind: RepoType,
        id: &str,
        sha: &str,
        token: &str,
        files: Vec<(N, Vec<u8>)>,
    ) {
        self.insert(kind, id, sha, Some(token.to_string()), files);
    }

    fn insert<N: Into<String>>(
        &self,
        kind: RepoType,
        id: &str,
        sha: &str,
        gated: Option<String>,
        files: Vec<(N, Vec<u8>)>,
    ) {
        let files = files
            .into_iter()
            .map(|(name, data)| {
                let name = name.into();
                let lfs = name.ends_with(".safetensors");
                let etag = fake_digest(&data, if lfs { 64 } else { 40 });
                (name, HubFile { data, lfs, etag })
            })
            .collect();
        self.lock().repos.insert(
            (kind, id.to_string()),
            HubRepo {
                sha: sha.into(),
                gated,
                files,
            },
        );
    }

    /// The ETag of a published file (what the hub cache names its blob).
    pub fn etag(&self, kind: RepoType, id: &str, file: &str) -> String {
        self.lock().repos[&(kind, id.to_string())].files[file]
            .etag
            .clone()
    }

    /// The requests made since the last call (and forgets them).
    pub fn take_log(&self) -> Vec<Request> {
        std::mem::take(&mut self.lock().log)
    }
}

fn serve_connection(stream: TcpStream, addr: SocketAddr, state: &Mutex<HubState>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        // Request line, then headers; GET/HEAD have no body. Keep-alive until EOF.
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
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let resp = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.log.push(req.clone());
            route(&st, &req, addr)
        };
        let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason);
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
        let mut out = head.into_bytes();
        if req.method != "HEAD" {
            out.extend_from_slice(&resp.body);
        }
        if writer.write_all(&out).and_then(|_| writer.flush()).is_err() || close {
            return;
        }
    }
}

/// Serves `data` honouring a `Range: bytes=a-b` / `bytes=a-` header.
fn ranged(req: &Request, data: &[u8], base: Response) -> Response {
    let len = data.len() as u64;
    let range = req.header("range").and_then(|r| {
        let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
        let a: u64 = a.trim().parse().ok()?;
        let b: u64 = match b.trim() {
            "" => len.saturating_sub(1),
            b => b.parse::<u64>().ok()?.min(len.saturating_sub(1)),
        };
        Some((a, b))
    });
    let base = base.header("Accept-Ranges", "bytes");
    match range {
        None => Response {
            status: 200,
            reason: "OK",
            ..base
        }
        .body(data.to_vec()),
        Some((a, b)) if a >= len || a > b => Response {
            status: 416,
            reason: "Range Not Satisfiable",
            ..base
        }
        .header("Content-Range", format!("bytes */{len}")),
        Some((a, b)) => Response {
            status: 206,
            reason: "Partial Content",
            ..base
        }
        .header("Content-Range", format!("bytes {a}-{b}/{len}"))
        .body(data[a as usize..=b as usize].to_vec()),
    }
}

/// The repo `{org}/{name}` of this type at `rev`, or the hub's error answer.
fn find_repo<'a>(
    st: &'a HubState,
    authorized: bool,
    kind: RepoType,
    org: &str,
    name: &str,
    rev: &str,
) -> Result<(String, &'a HubRepo), Response> {
    let id = format!("{org}/{name}");
    let Some(repo) = st.repos.get(&(kind, id.clone())) else {
        // Like huggingface.co: anonymous requests for a repo that does not exist
        // (or is private) get 401, authenticated ones 404.
        return Err(if authorized {
            Response::error(404, "Not Found", "RepoNotFound", "Repository not found")
        } else {
            Response::error(401, "Unauthorized", "RepoNotFound", "Repository not found")
        });
    };
    let rev = percent_decode(rev);
    if rev != "main" && rev != repo.sha {
        return Err(Response::error(
            404,
            "Not Found",
            "RevisionNotFound",
            &format!("Invalid rev id: {rev}"),
        ));
    }
    Ok((id, repo))
}

fn not_found() -> Response {
    Response::error(
        404,
        "Not Found",
        "EntryNotFound",
        "Sorry, we can't find the page you are looking for.",
    )
}

fn route(st: &HubState, req: &Request, addr: SocketAddr) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::new(405, "Method Not Allowed");
    }
    let path = req.path.split('?').next().unwrap_or_default();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let token = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "));
    let find = |kind: RepoType, org: &str, name: &str, rev: &str| {
        find_repo(st, token.is_some(), kind, org, name, rev)
    };
    match segs.as_slice() {
        // GET /api/{models,datasets}/{org}/{name}/revision/{rev}
        ["api", api, org, name, "revision", rev] => {
            let kind = match *api {
                "models" => RepoType::Model,
                "datasets" => RepoType::Dataset,
                _ => return not_found(),
            };
            match find(kind, org, name, rev) {
                Err(e) => e,
                Ok((id, repo)) => info(kind, org, &id, repo),
            }
        }
        ["api", ..] => not_found(),
        // The CDN: content by etag, ranged, no auth.
        ["cdn-lfs", rest @ ..] => match RepoType::split(rest) {
            (kind, [org, name, etag]) => cdn(st, req, kind, &format!("{org}/{name}"), etag),
            _ => not_found(),
        },
        // GET /[datasets/]{org}/{name}/resolve/{rev}/{file}
        segs => match RepoType::split(segs) {
            (kind, [org, name, "resolve", rev, file @ ..]) if !file.is_empty() => {
                match find(kind, org, name, rev) {
                    Err(e) => e,
                    Ok((id, repo)) => resolve(req, addr, token, kind, &id, repo, &file.join("/")),
                }
            }
            _ => not_found(),
        },
    }
}

/// The repo info API's answer: the commit and the file list.
fn info(kind: RepoType, org: &str, id: &str, repo: &HubRepo) -> Response {
    let siblings: Vec<_> = repo
        .files
        .keys()
        .map(|f| serde_json::json!({ "rfilename": f }))
        .collect();
    let mut body = serde_json::json!({
        "_id": fake_digest(id.as_bytes(), 24),
        "id": id,
        "author": org,
        "sha": repo.sha,
        "private": false,
        "gated": if repo.gated.is_some() { serde_json::json!("manual") } else { serde_json::json!(false) },
        "disabled": false,
        "siblings": siblings,
    });
    let extra = match kind {
        RepoType::Model => serde_json::json!({
            "modelId": id,
            "library_name": "transformers",
            "tags": ["transformers", "safetensors", "llama", "text-generation"],
            "pipeline_tag": "text-generation",
        }),
        RepoType::Dataset => serde_json::json!({
            "tags": ["format:parquet", "modality:text"],
        }),
    };
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    Response::new(200, "OK")
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body.to_string().into_bytes())
}

/// A file of a repo: served directly, or for LFS files redirected to the CDN.
fn resolve(
    req: &Request,
    addr: SocketAddr,
    token: Option<&str>,
    kind: RepoType,
    id: &str,
    repo: &HubRepo,
    file: &str,
) -> Response {
    if let Some(granted) = &repo.gated {
        let noun = kind.noun();
        let prefix = kind.prefix();
        match token {
            None => return Response::error(
                401,
                "Unauthorized",
                "GatedRepo",
                &format!("Access to {noun} {id} is restricted. You must have access to it and be authenticated to access it. Please log in."),
            ),
            Some(t) if t != granted => return Response::error(
                403,
                "Forbidden",
                "GatedRepo",
                &format!("Access to {noun} {id} is restricted and you are not in the authorized list. Visit https://huggingface.co/{prefix}{id} to ask for access."),
            ),
            Some(_) => {}
        }
    }
    let Some(f) = repo.files.get(file) else {
        return Response::error(404, "Not Found", "EntryNotFound", "Entry not found");
    };
    let base = Response::new(200, "OK").header("X-Repo-Commit", repo.sha.clone());
    if !f.lfs {
        let base = base
            .header("ETag", format!("\"{}\"", f.etag))
            .header("Content-Type", "text/plain; charset=utf-8");
        return ranged(req, &f.data, base);
    }
    // LFS: the hub answers with a redirect to its CDN (absolute URL, which hf-hub
    // does not follow for the metadata) and names the content by
    // `X-Linked-Etag`/`X-Linked-Size`.
    let location = format!(
        "http://{addr}/cdn-lfs/{}{id}/{}?response-content-disposition=inline%3B+filename%3D{file}",
        kind.prefix(),
        f.etag
    );
    let body = format!("Found. Redirecting to {location}").into_bytes();
    Response {
        status: 302,
        reason: "Found",
        ..base
    }
    .header("Location", location)
    .header("X-Linked-Etag", format!("\"{}\"", f.etag))
    .header("X-Linked-Size", f.data.len().to_string())
    .header("ETag", format!("W/\"{}\"", fake_digest(&f.data, 40)))
    .header("Content-Type", "text/plain; charset=utf-8")
    .body(body)
}

/// The CDN's answer for an LFS file of repo `id`, by its etag.
fn cdn(st: &HubState, req: &Request, kind: RepoType, id: &str, etag: &str) -> Response {
    let Some(f) = st
        .repos
        .get(&(kind, id.to_string()))
        .and_then(|r| r.files.values().find(|f| f.lfs && f.etag == etag))
    else {
        return Response::new(403, "Forbidden").body(b"AccessDenied".to_vec());
    };
    let base = Response::new(200, "OK")
        .header("ETag", format!("\"{etag}\""))
        .header("Content-Type", "binary/octet-stream");
    ranged(req, &f.data, base)
}

// ---------------------------------------------------------------------------
// The hub's environment variables.

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Saved by [`Env::clean`] and restored on drop; all but `HOME` are also unset.
const ENV_KEYS: [&str; 12] = [
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_TOKEN",
    "HF_HUB_OFFLINE",
    "HOME",
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

/// Holds the env lock, starts from a clean hub environment (no proxies: ureq
/// ignores NO_PROXY), and restores every variable on drop. Environment variables
/// are process-global and `HubSettings::from_env()` reads them, so every test that
/// touches them holds one of these.
pub struct Env {
    saved: Vec<(&'static str, Option<OsString>)>,
    _lock: MutexGuard<'static, ()>,
}

impl Env {
    pub fn clean() -> Env {
        let lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let saved = ENV_KEYS.iter().map(|k| (*k, std::env::var_os(k))).collect();
        for k in ENV_KEYS {
            if k != "HOME" {
                std::env::remove_var(k);
            }
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
