//! Hub downloads against the local stand-in for the Hugging Face Hub in
//! `tests/common` (repo info API, `resolve` with `X-Repo-Commit`/`ETag`, LFS files
//! redirected to a "CDN" with `X-Linked-Etag`, ranged GETs answered with 206 and
//! `Content-Range`, `X-Error-Code` on 401/403/404), serving the tiny Llama fixture
//! as the model repo `test-org/tiny-llama` and a gated copy as `test-org/gated`.
//!
//! Environment variables are process-global and `HubSettings::from_env()` reads
//! them, so every test here holds an `Env` guard and restores what it changed.

mod common;

use common::{Env, FakeHub, RepoType, Request};
use ftui::config::{AttnImplementation, DType};
use ftui::hub::{HubSettings, RepoRef};
use ftui::model::LoadOptions;
use ftui::source::{load_model, load_tokenizer, LoadedModel, ModelSource};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
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
// Helpers.

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
    hub.publish(RepoType::Model, MODEL, COMMIT_A, fixture_files());
    hub.publish_gated(
        RepoType::Model,
        GATED,
        COMMIT_A,
        GATED_TOKEN,
        fixture_files(),
    );
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
        let blob = repo_dir
            .join("blobs")
            .join(hub.etag(RepoType::Model, MODEL, f));
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
    hub.publish(RepoType::Model, MODEL, COMMIT_B, files);
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
