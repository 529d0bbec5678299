//! Hub downloads against a local stand-in for the Hugging Face Hub: a small
//! HTTP/1.1 server on 127.0.0.1 that answers `hf-hub` 0.4's sync client the way
//! huggingface.co does (repo info API, `resolve` with `X-Repo-Commit`/`ETag`, LFS
//! files redirected to a "CDN" with `X-Linked-Etag`, ranged GETs answered with 206
//! and `Content-Range`, `X-Error-Code` on 401/403/404), serving the tiny Llama
//! fixture as `test-org/tiny-llama` and a gated copy as `test-org/gated`.
//!
//! Environment variables are process-global and `HubSettings::from_env()` reads
//! them, so every test here holds `ENV_LOCK` and restores what it changed.

use ftui::config::{AttnImplementation, DType};
use ftui::hub::{HubSettings, RepoRef};
use ftui::model::load::{load_model, load_tokenizer, LoadOptions, LoadedModel, ModelSource};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tch::{Device, Tensor};

const MODEL: &str = "test-org/tiny-llama";
const GATED: &str = "test-org/gated";
const GATED_TOKEN: &str = "hf_test_gated_access_granted";
const COMMIT_A: &str = "1111111111111111111111111111111111111111";
const COMMIT_B: &str = "2222222222222222222222222222222222222222";
const FIXTURE_FILES: [&str; 5] = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

// ---------------------------------------------------------------------------
// The fake hub.

/// One request as the server saw it (header names lowercased).
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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
    gated: bool,
    files: BTreeMap<String, HubFile>,
}

#[derive(Default)]
struct HubState {
    repos: HashMap<String, HubRepo>,
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

struct FakeHub {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<HubState>>,
}

impl FakeHub {
    fn start() -> FakeHub {
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

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes (or replaces) a repo at a commit with these files.
    fn publish(&self, id: &str, sha: &str, gated: bool, files: Vec<(&str, Vec<u8>)>) {
        let files = files
            .into_iter()
            .map(|(name, data)| {
                let lfs = name.ends_with(".safetensors");
                let etag = fake_digest(&data, if lfs { 64 } else { 40 });
                (name.to_string(), HubFile { data, lfs, etag })
            })
            .collect();
        self.lock().repos.insert(
            id.to_string(),
            HubRepo {
                sha: sha.into(),
                gated,
                files,
            },
        );
    }

    fn etag(&self, id: &str, file: &str) -> String {
        self.lock().repos[id].files[file].etag.clone()
    }

    /// The requests made since the last call (and forgets them).
    fn take_log(&self) -> Vec<Request> {
        std::mem::take(&mut self.lock().log)
    }
}

fn serve_connection(stream: TcpStream, addr: std::net::SocketAddr, state: &Mutex<HubState>) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = write_half;
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

/// The repo `{org}/{name}` at `rev`, or the hub's error answer.
fn find_repo<'a>(
    st: &'a HubState,
    authorized: bool,
    org: &str,
    name: &str,
    rev: &str,
) -> Result<(String, &'a HubRepo), Response> {
    let id = format!("{org}/{name}");
    let Some(repo) = st.repos.get(&id) else {
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

fn route(st: &HubState, req: &Request, addr: std::net::SocketAddr) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::new(405, "Method Not Allowed");
    }
    let path = req.path.split('?').next().unwrap_or_default();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let authorized = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "));
    let find =
        |org: &str, name: &str, rev: &str| find_repo(st, authorized.is_some(), org, name, rev);
    match segs.as_slice() {
        // GET /api/models/{org}/{name}/revision/{rev}: public metadata (gated
        // repos' too), with the commit and the file list.
        ["api", "models", org, name, "revision", rev] => match find(org, name, rev) {
            Err(e) => e,
            Ok((id, repo)) => {
                let siblings: Vec<_> = repo
                    .files
                    .keys()
                    .map(|f| serde_json::json!({ "rfilename": f }))
                    .collect();
                let body = serde_json::json!({
                    "_id": fake_digest(id.as_bytes(), 24),
                    "id": id,
                    "modelId": id,
                    "author": org,
                    "sha": repo.sha,
                    "private": false,
                    "gated": if repo.gated { serde_json::json!("manual") } else { serde_json::json!(false) },
                    "disabled": false,
                    "library_name": "transformers",
                    "tags": ["transformers", "safetensors", "llama", "text-generation"],
                    "pipeline_tag": "text-generation",
                    "siblings": siblings,
                });
                Response::new(200, "OK")
                    .header("Content-Type", "application/json; charset=utf-8")
                    .body(body.to_string().into_bytes())
            }
        },
        // GET /{org}/{name}/resolve/{rev}/{file}
        [org, name, "resolve", rev, file @ ..] if !file.is_empty() => {
            let (id, repo) = match find(org, name, rev) {
                Ok(x) => x,
                Err(e) => return e,
            };
            if repo.gated && authorized != Some(GATED_TOKEN) {
                return match authorized {
                    None => Response::error(
                        401,
                        "Unauthorized",
                        "GatedRepo",
                        &format!("Access to model {id} is restricted. You must have access to it and be authenticated to access it. Please log in."),
                    ),
                    Some(_) => Response::error(
                        403,
                        "Forbidden",
                        "GatedRepo",
                        &format!("Access to model {id} is restricted and you are not in the authorized list. Visit https://huggingface.co/{id} to ask for access."),
                    ),
                };
            }
            let file = file.join("/");
            let Some(f) = repo.files.get(&file) else {
                return Response::error(404, "Not Found", "EntryNotFound", "Entry not found");
            };
            let base = Response::new(200, "OK").header("X-Repo-Commit", repo.sha.clone());
            if f.lfs {
                // LFS: the hub answers with a redirect to its CDN (absolute URL,
                // which hf-hub does not follow for the metadata) and names the
                // content by `X-Linked-Etag`/`X-Linked-Size`.
                let location = format!(
                    "http://{addr}/cdn-lfs/{org}/{name}/{}?response-content-disposition=inline%3B+filename%3D{file}",
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
            } else {
                let base = base
                    .header("ETag", format!("\"{}\"", f.etag))
                    .header("Content-Type", "text/plain; charset=utf-8");
                ranged(req, &f.data, base)
            }
        }
        // The CDN: content by etag, ranged, no auth.
        ["cdn-lfs", org, name, etag] => {
            let id = format!("{org}/{name}");
            let Some(f) = st
                .repos
                .get(&id)
                .and_then(|r| r.files.values().find(|f| f.lfs && f.etag == *etag))
            else {
                return Response::new(403, "Forbidden").body(b"AccessDenied".to_vec());
            };
            let base = Response::new(200, "OK")
                .header("ETag", format!("\"{etag}\""))
                .header("Content-Type", "binary/octet-stream");
            ranged(req, &f.data, base)
        }
        _ => Response::error(
            404,
            "Not Found",
            "EntryNotFound",
            "Sorry, we can't find the page you are looking for.",
        ),
    }
}

// ---------------------------------------------------------------------------
// Helpers.

static ENV_LOCK: Mutex<()> = Mutex::new(());

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
/// ignores NO_PROXY), and restores every variable on drop.
struct Env {
    saved: Vec<(&'static str, Option<OsString>)>,
    _lock: MutexGuard<'static, ()>,
}

impl Env {
    fn clean() -> Env {
        let lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let saved = ENV_KEYS.iter().map(|k| (*k, std::env::var_os(k))).collect();
        for k in ENV_KEYS {
            if k != "HOME" {
                std::env::remove_var(k);
            }
        }
        Env { saved, _lock: lock }
    }
    fn set(&self, k: &str, v: impl AsRef<std::ffi::OsStr>) {
        std::env::set_var(k, v);
    }
    fn unset(&self, k: &str) {
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

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/llama")
}

fn fixture_files() -> Vec<(&'static str, Vec<u8>)> {
    let mut files: Vec<(&str, Vec<u8>)> = FIXTURE_FILES
        .iter()
        .map(|f| {
            (
                *f,
                std::fs::read(fixture_dir().join(f)).expect("fixture file"),
            )
        })
        .collect();
    // Files every hub repo has, which a model load must not fetch.
    files.push((
        ".gitattributes",
        b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n".to_vec(),
    ));
    files.push((
        "README.md",
        b"---\nlicense: mit\n---\n# tiny-llama\n".to_vec(),
    ));
    files
}

fn opts() -> LoadOptions {
    LoadOptions {
        dtype: DType::Float32,
        device: Device::Cpu,
        attn: AttnImplementation::Sdpa,
        quantization: None,
    }
}

fn hub_source(spec: &str) -> ModelSource {
    ModelSource::Hub(RepoRef::parse(spec).expect("a repo id"))
}

fn logits(m: &LoadedModel) -> Tensor {
    let ids = Tensor::from_slice(&[0i64, 17, 42, 99, 5, 250, 3, 2]).view([1, -1]);
    m.model.forward(&ids, None, None, None).expect("forward")
}

fn resolves(log: &[Request]) -> Vec<&Request> {
    log.iter()
        .filter(|r| r.path.contains("/resolve/"))
        .collect()
}

/// Loads `spec` from the hub, recording the progress reports.
/// Progress reports: (file, done, total).
type Reports = Vec<(String, u64, u64)>;

fn load_hub(spec: &str) -> (Result<LoadedModel, String>, Reports) {
    let mut reports = Vec::new();
    let r = load_model(&hub_source(spec), &opts(), &mut |f, done, total| {
        reports.push((f.to_string(), done, total))
    });
    (r.map_err(|e| e.to_string()), reports)
}

fn err_of<T>(r: Result<T, String>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn hub_download_cache_offline_and_errors() {
    tch::set_num_threads(1);
    let env = Env::clean();
    let hub = FakeHub::start();
    hub.publish(MODEL, COMMIT_A, false, fixture_files());
    hub.publish(GATED, COMMIT_A, true, fixture_files());
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("hf-home");
    let cache = tmp.path().join("hub-cache");
    std::fs::create_dir_all(&home).expect("mkdir");
    env.set("HF_ENDPOINT", hub.endpoint() + "/");
    env.set("HF_HOME", &home);
    env.set("HF_HUB_CACHE", &cache);

    assert_eq!(
        ModelSource::parse(MODEL).expect("parses"),
        hub_source(MODEL)
    );
    let direct = load_model(&ModelSource::Dir(fixture_dir()), &opts(), &mut |_, _, _| {})
        .expect("fixture loads");
    let want = logits(&direct);

    // 1. Online: downloads into the hub cache layout; same logits, bit for bit.
    let (r, reports) = load_hub(MODEL);
    let m = r.expect("loads from the hub");
    let repo_dir = cache.join("models--test-org--tiny-llama");
    let snap_a = repo_dir.join("snapshots").join(COMMIT_A);
    assert_eq!(m.path, snap_a);
    assert_eq!(m.name, "test-org/tiny-llama@main");
    assert!(
        logits(&m).equal(&want),
        "hub-loaded logits differ from the folder's"
    );
    let main_ref = std::fs::read_to_string(repo_dir.join("refs/main")).expect("refs/main");
    assert_eq!(main_ref.trim(), COMMIT_A);
    for f in FIXTURE_FILES {
        let p = snap_a.join(f);
        let link = std::fs::read_link(&p).unwrap_or_else(|e| panic!("{f} is not a symlink: {e}"));
        let blob = repo_dir.join("blobs").join(hub.etag(MODEL, f));
        assert_eq!(
            snap_a.join(&link).canonicalize().expect("link resolves"),
            blob.canonicalize().expect("blob")
        );
        let want_bytes = std::fs::read(fixture_dir().join(f)).expect("fixture");
        assert_eq!(
            std::fs::read(&p).expect("snapshot file"),
            want_bytes,
            "{f} differs"
        );
    }
    for f in [".gitattributes", "README.md"] {
        assert!(!snap_a.join(f).exists(), "{f} should not be fetched");
    }
    assert!(
        !home.join("hub").exists(),
        "HF_HUB_CACHE must win over HF_HOME/hub"
    );
    let size = std::fs::metadata(fixture_dir().join("model.safetensors"))
        .expect("fixture")
        .len();
    assert!(
        reports
            .iter()
            .any(|r| r == &("model.safetensors".to_string(), size, size)),
        "progress never reported model.safetensors complete: {reports:?}"
    );
    let log = hub.take_log();
    let infos: Vec<_> = log.iter().filter(|r| r.path.starts_with("/api/")).collect();
    assert_eq!(infos.len(), 1, "{log:#?}");
    assert_eq!(
        infos[0].path,
        "/api/models/test-org/tiny-llama/revision/main"
    );
    let metadata: Vec<_> = resolves(&log)
        .into_iter()
        .filter(|r| r.header("range") == Some("bytes=0-0"))
        .collect();
    assert_eq!(metadata.len(), FIXTURE_FILES.len(), "{log:#?}");
    assert!(
        log.iter().any(|r| r.path.starts_with("/cdn-lfs/")),
        "the LFS redirect was not followed"
    );
    assert!(
        log.iter().all(|r| r.header("authorization").is_none()),
        "a token was sent with none set"
    );

    // Online again at the same commit: one info call, nothing downloaded.
    let (r, _) = load_hub(MODEL);
    assert_eq!(r.expect("loads again").path, snap_a);
    let log = hub.take_log();
    assert_eq!(log.len(), 1, "only the info call was expected: {log:#?}");

    // 2. Offline: from the cache alone, zero requests.
    env.set("HF_HUB_OFFLINE", "1");
    let (r, _) = load_hub(MODEL);
    let m = r.expect("loads offline");
    assert_eq!(m.path, snap_a);
    assert!(logits(&m).equal(&want));
    load_tokenizer(&hub_source(MODEL), &mut |_, _, _| {}).expect("tokenizer offline");
    assert!(hub.take_log().is_empty(), "offline mode contacted the hub");
    // ... a pinned commit works offline too.
    let (r, _) = load_hub(&format!("{MODEL}@{COMMIT_A}"));
    assert_eq!(r.expect("pinned commit offline").path, snap_a);
    // ... and with an empty cache the error names the repo and the cache.
    let empty = tmp.path().join("empty-cache");
    env.set("HF_HUB_CACHE", &empty);
    let e = err_of(load_hub(MODEL).0);
    assert!(
        e.contains(MODEL) && e.contains("not in the cache") && e.contains("HF_HUB_OFFLINE"),
        "{e}"
    );
    let e =
        err_of(load_tokenizer(&hub_source(MODEL), &mut |_, _, _| {}).map_err(|e| e.to_string()));
    assert!(e.contains(MODEL) && e.contains("not in the cache"), "{e}");
    assert!(hub.take_log().is_empty(), "offline mode contacted the hub");
    // ... and a snapshot holding only the tokenizer says the weights are missing.
    env.unset("HF_HUB_OFFLINE");
    let partial = tmp.path().join("partial-cache");
    env.set("HF_HUB_CACHE", &partial);
    load_tokenizer(&hub_source(MODEL), &mut |_, _, _| {}).expect("tokenizer online");
    assert!(!partial
        .join("models--test-org--tiny-llama/snapshots")
        .join(COMMIT_A)
        .join("model.safetensors")
        .exists());
    env.set("HF_HUB_OFFLINE", "true");
    let e = err_of(load_hub(MODEL).0);
    assert!(
        e.contains(MODEL) && e.contains("HF_HUB_OFFLINE") && e.contains("model.safetensors"),
        "{e}"
    );
    env.unset("HF_HUB_OFFLINE");
    env.set("HF_HUB_CACHE", &cache);
    hub.take_log();

    // A new commit on main: the cached snapshot of the old one is not reused.
    let mut files = fixture_files();
    let gen_b = br#"{"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0, "temperature": 0.5}"#
        .to_vec();
    files
        .iter_mut()
        .find(|(f, _)| *f == "generation_config.json")
        .expect("gen")
        .1 = gen_b.clone();
    hub.publish(MODEL, COMMIT_B, false, files);
    let (r, _) = load_hub(MODEL);
    let m = r.expect("loads the new commit");
    let snap_b = repo_dir.join("snapshots").join(COMMIT_B);
    assert_eq!(m.path, snap_b);
    assert_eq!(
        std::fs::read(snap_b.join("generation_config.json")).expect("gen"),
        gen_b
    );
    assert!(logits(&m).equal(&want));
    let ref_b = std::fs::read_to_string(repo_dir.join("refs/main")).expect("refs/main");
    assert_eq!(ref_b.trim(), COMMIT_B);
    assert_eq!(
        resolves(&hub.take_log())
            .iter()
            .filter(|r| r.header("range") == Some("bytes=0-0"))
            .count(),
        FIXTURE_FILES.len()
    );

    // 3. Gated repo: 401 without a token, 403 with a wrong one, fine with the
    // right one (sent as a Bearer token, from HF_TOKEN or $HF_HOME/token).
    let tokenizer_of = |spec: &str| {
        load_tokenizer(&hub_source(spec), &mut |_, _, _| {}).map_err(|e| e.to_string())
    };
    let e = err_of(tokenizer_of(GATED));
    assert!(
        e.contains(GATED) && e.contains("HF_TOKEN") && e.contains("401"),
        "{e}"
    );
    assert!(hub
        .take_log()
        .iter()
        .all(|r| r.header("authorization").is_none()));
    env.set("HF_TOKEN", "hf_not_granted");
    let e = err_of(tokenizer_of(GATED));
    assert!(
        e.contains(GATED) && e.contains("HF_TOKEN") && e.contains("403"),
        "{e}"
    );
    let log = hub.take_log();
    assert!(
        !log.is_empty()
            && log
                .iter()
                .all(|r| r.header("authorization") == Some("Bearer hf_not_granted")),
        "{log:#?}"
    );
    env.set("HF_TOKEN", GATED_TOKEN);
    tokenizer_of(GATED).expect("the gated repo with its token");
    let log = hub.take_log();
    let want_auth = format!("Bearer {GATED_TOKEN}");
    assert!(resolves(&log).len() >= 4, "{log:#?}");
    assert!(
        resolves(&log)
            .iter()
            .all(|r| r.header("authorization") == Some(want_auth.as_str())),
        "{log:#?}"
    );
    env.unset("HF_TOKEN");
    std::fs::write(home.join("token"), format!("{GATED_TOKEN}\n")).expect("token file");
    env.set("HF_HUB_CACHE", tmp.path().join("gated-cache"));
    tokenizer_of(GATED).expect("the gated repo with the token from $HF_HOME/token");
    assert!(resolves(&hub.take_log())
        .iter()
        .all(|r| r.header("authorization") == Some(want_auth.as_str())));
    std::fs::remove_file(home.join("token")).expect("rm token");
    env.set("HF_HUB_CACHE", &cache);

    // Unknown repo: the hub says 401 to anonymous requests, 404 with a token;
    // both are "not found" naming the repo. So is an unknown revision.
    let e = err_of(load_hub("test-org/does-not-exist").0);
    assert!(
        e.contains("test-org/does-not-exist") && e.contains("not found"),
        "{e}"
    );
    env.set("HF_TOKEN", "hf_someone");
    let e = err_of(load_hub("test-org/does-not-exist").0);
    assert!(
        e.contains("test-org/does-not-exist") && e.contains("not found"),
        "{e}"
    );
    assert!(hub
        .take_log()
        .iter()
        .any(|r| r.header("authorization") == Some("Bearer hf_someone")));
    env.unset("HF_TOKEN");
    let e = err_of(load_hub(&format!("{MODEL}@no-such-branch")).0);
    assert!(
        e.contains(MODEL) && e.contains("not found") && e.contains("no-such-branch"),
        "{e}"
    );

    // A hub that does not answer: the error suggests offline mode.
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    env.set("HF_ENDPOINT", format!("http://{closed}"));
    let e = err_of(load_hub(MODEL).0);
    assert!(
        e.contains(MODEL) && e.contains("did not answer") && e.contains("HF_HUB_OFFLINE"),
        "{e}"
    );
    drop(env);
}

#[test]
fn settings_from_env() {
    let env = Env::clean();
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("hf");
    std::fs::create_dir_all(&home).expect("mkdir");

    // Defaults: ~/.cache/huggingface/hub, huggingface.co, no token, online.
    env.set("HOME", tmp.path());
    let s = HubSettings::from_env();
    assert_eq!(s.cache_dir, tmp.path().join(".cache/huggingface/hub"));
    assert_eq!(s.endpoint, "https://huggingface.co");
    assert_eq!(s.token, None);
    assert!(!s.offline);

    env.set("HF_HOME", &home);
    env.set("HF_ENDPOINT", "http://mirror.local:8080/");
    let s = HubSettings::from_env();
    assert_eq!(s.cache_dir, home.join("hub"));
    assert_eq!(s.endpoint, "http://mirror.local:8080");
    env.set("HF_HUB_CACHE", tmp.path().join("elsewhere"));
    assert_eq!(
        HubSettings::from_env().cache_dir,
        tmp.path().join("elsewhere")
    );

    // Token: HF_TOKEN first, then $HF_HOME/token (trimmed); empty means none.
    std::fs::write(home.join("token"), "  hf_from_file \n").expect("token file");
    assert_eq!(
        HubSettings::from_env().token.as_deref(),
        Some("hf_from_file")
    );
    env.set("HF_TOKEN", "hf_from_env");
    assert_eq!(
        HubSettings::from_env().token.as_deref(),
        Some("hf_from_env")
    );
    env.set("HF_TOKEN", "");
    assert_eq!(
        HubSettings::from_env().token.as_deref(),
        Some("hf_from_file")
    );
    std::fs::write(home.join("token"), "\n").expect("token file");
    assert_eq!(HubSettings::from_env().token, None);

    for v in ["1", "true", "TRUE", "True", "yes", "YES", "on", "ON"] {
        env.set("HF_HUB_OFFLINE", v);
        assert!(HubSettings::from_env().offline, "HF_HUB_OFFLINE={v}");
    }
    for v in ["0", "false", "no", "off", "", "2"] {
        env.set("HF_HUB_OFFLINE", v);
        assert!(!HubSettings::from_env().offline, "HF_HUB_OFFLINE={v}");
    }
    drop(env);
}
