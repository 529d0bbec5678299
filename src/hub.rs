//! The Hugging Face Hub: settings from the environment (`HF_ENDPOINT`, `HF_HOME`,
//! `HF_HUB_CACHE`, `HF_TOKEN`, `HF_HUB_OFFLINE`), and fetching the files of a model
//! or dataset repo into the hub's own cache layout, so files downloaded by the
//! Python stack are reused and vice versa.

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct HubSettings {
    pub endpoint: String,
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    pub offline: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{repo}: offline mode (HF_HUB_OFFLINE) and `{file}` is not in the cache {cache}; download it once online or unset HF_HUB_OFFLINE")]
    NotCached {
        repo: String,
        file: String,
        cache: String,
    },
    #[error("{repo}: access denied (HTTP {status}); the repo is gated or private: accept its licence on the hub and set HF_TOKEN")]
    Denied { repo: String, status: u16 },
    #[error("{repo}: not found on {endpoint} (check the repo id and revision `{revision}`)")]
    NotFound {
        repo: String,
        endpoint: String,
        revision: String,
    },
    #[error("{repo}: `{file}` is missing from the repo")]
    MissingFile { repo: String, file: String },
    #[error("{repo}: the hub at {endpoint} did not answer ({message}); set HF_HUB_OFFLINE=1 to use the cache only")]
    Network {
        repo: String,
        endpoint: String,
        message: String,
    },
    #[error("{repo}: {message}")]
    Other { repo: String, message: String },
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

impl HubSettings {
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let hf_home = env("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let home = env("HOME").unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".cache").join("huggingface")
        });
        let cache_dir = env("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = env("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(hf_home.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        HubSettings {
            endpoint: env("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_string(),
            cache_dir,
            token,
            offline: env("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)),
        }
    }
}

/// A repo id with an optional revision: `owner/name` or `owner/name@rev`.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoRef {
    pub id: String,
    pub revision: String,
}

impl RepoRef {
    /// Parses `owner/name[@revision]`; `None` when the text is not shaped like one.
    pub fn parse(text: &str) -> Option<RepoRef> {
        let (id, revision) = match text.split_once('@') {
            Some((id, rev)) => (id, rev.to_string()),
            None => (text, "main".to_string()),
        };
        let mut parts = id.split('/');
        let ok = matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
            if !a.is_empty() && !b.is_empty() && !a.starts_with('.') && !id.ends_with(".gguf"));
        ok.then(|| RepoRef {
            id: id.to_string(),
            revision,
        })
    }
}

/// Download progress for one file, reported to a callback.
pub struct FileProgress<'a> {
    file: String,
    done: u64,
    total: u64,
    report: &'a mut dyn FnMut(&str, u64, u64),
}

impl hf_hub::api::Progress for FileProgress<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.file = filename.to_string();
        self.total = size as u64;
        self.done = 0;
        (self.report)(&self.file, 0, self.total);
    }
    fn update(&mut self, size: usize) {
        self.done += size as u64;
        (self.report)(&self.file, self.done, self.total);
    }
    fn finish(&mut self) {
        (self.report)(&self.file, self.total, self.total);
    }
}

fn map_error(repo: &RepoRef, s: &HubSettings, file: &str, e: hf_hub::api::sync::ApiError) -> HubError {
    use hf_hub::api::sync::ApiError;
    let r = repo.id.clone();
    match e {
        ApiError::RequestError(b) => match *b {
            ureq::Error::Status(401 | 403, _) => HubError::Denied { repo: r, status: 403 },
            ureq::Error::Status(404, _) if file.is_empty() => HubError::NotFound {
                repo: r,
                endpoint: s.endpoint.clone(),
                revision: repo.revision.clone(),
            },
            ureq::Error::Status(404, _) => HubError::MissingFile {
                repo: r,
                file: file.into(),
            },
            other => HubError::Network {
                repo: r,
                endpoint: s.endpoint.clone(),
                message: other.to_string(),
            },
        },
        other => HubError::Other {
            repo: r,
            message: other.to_string(),
        },
    }
}

/// Which files to fetch from a repo, given its file list.
pub type FileChooser<'a> = &'a dyn Fn(&[String]) -> Result<Vec<String>, String>;

/// Fetches the chosen files of a repo (from the cache when present) and returns
/// the local path of each. In offline mode only the cache is read; the file list
/// then comes from the cached snapshot folder.
pub fn fetch(
    settings: &HubSettings,
    repo: &RepoRef,
    kind: RepoType,
    choose: FileChooser,
    report: &mut dyn FnMut(&str, u64, u64),
) -> Result<Vec<PathBuf>, HubError> {
    let hub_repo = Repo::with_revision(repo.id.clone(), kind, repo.revision.clone());
    let cache = Cache::new(settings.cache_dir.clone());
    if settings.offline {
        let cached = cache.repo(hub_repo.clone());
        let listing = cached_listing(&cache, &hub_repo);
        let files = choose(&listing).map_err(|message| HubError::Other {
            repo: repo.id.clone(),
            message,
        })?;
        return files
            .iter()
            .map(|f| {
                cached.get(f).ok_or_else(|| HubError::NotCached {
                    repo: repo.id.clone(),
                    file: f.clone(),
                    cache: settings.cache_dir.display().to_string(),
                })
            })
            .collect();
    }
    let api = ApiBuilder::from_cache(cache)
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(false)
        .build()
        .map_err(|e| map_error(repo, settings, "", e))?;
    let api_repo = api.repo(hub_repo);
    let info = api_repo.info().map_err(|e| map_error(repo, settings, "", e))?;
    let listing: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let files = choose(&listing).map_err(|message| HubError::Other {
        repo: repo.id.clone(),
        message,
    })?;
    let mut paths = Vec::new();
    for f in &files {
        let progress = FileProgress {
            file: f.clone(),
            done: 0,
            total: 0,
            report: &mut *report,
        };
        let path = match api.cache().repo(api_repo_clone(repo, kind)).get(f) {
            Some(p) => p,
            None => api_repo
                .download_with_progress(f, progress)
                .map_err(|e| map_error(repo, settings, f, e))?,
        };
        paths.push(path);
    }
    Ok(paths)
}

fn api_repo_clone(repo: &RepoRef, kind: RepoType) -> Repo {
    Repo::with_revision(repo.id.clone(), kind, repo.revision.clone())
}

/// The files of a cached snapshot (relative paths), for offline mode.
fn cached_listing(cache: &Cache, repo: &Repo) -> Vec<String> {
    let root = cache.path().join(repo.folder_name());
    let commit = std::fs::read_to_string(root.join("refs").join(repo.revision()))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| repo.revision().to_string());
    let snapshot = root.join("snapshots").join(commit);
    let mut out = Vec::new();
    let mut stack = vec![snapshot.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(&snapshot) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_parse_with_revision() {
        assert_eq!(
            RepoRef::parse("HuggingFaceTB/SmolLM2-135M-Instruct@v1"),
            Some(RepoRef {
                id: "HuggingFaceTB/SmolLM2-135M-Instruct".into(),
                revision: "v1".into()
            })
        );
        assert_eq!(RepoRef::parse("gpt2"), None);
        assert_eq!(RepoRef::parse("./models/x"), None);
        assert_eq!(RepoRef::parse("a/b/c"), None);
        assert_eq!(RepoRef::parse("models/x.gguf"), None);
    }
}
