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
    #[error("{repo}: offline mode (HF_HUB_OFFLINE) and revision `{revision}` is not in the cache {cache}; download it once online or unset HF_HUB_OFFLINE")]
    RevisionNotCached {
        repo: String,
        revision: String,
        cache: String,
    },
    #[error("{repo}: access denied (HTTP {status}); the repo is gated or private: accept its licence on the hub and set HF_TOKEN")]
    Denied { repo: String, status: u16 },
    #[error("{repo}: not found on {endpoint} (check the repo id and revision `{revision}`; a private repo also needs HF_TOKEN)")]
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

fn map_error(
    repo: &RepoRef,
    s: &HubSettings,
    file: &str,
    e: hf_hub::api::sync::ApiError,
) -> HubError {
    use hf_hub::api::sync::ApiError;
    let r = repo.id.clone();
    let not_found = || HubError::NotFound {
        repo: repo.id.clone(),
        endpoint: s.endpoint.clone(),
        revision: repo.revision.clone(),
    };
    match e {
        ApiError::RequestError(b) => match *b {
            // The hub says which 4xx it is in `X-Error-Code`; it answers 401 (not
            // 404) to anonymous requests for a repo that does not exist.
            ureq::Error::Status(status @ (401 | 403 | 404), ref resp) => {
                match (status, resp.header("x-error-code")) {
                    (_, Some("RepoNotFound" | "RevisionNotFound")) => not_found(),
                    (401 | 403, _) => HubError::Denied { repo: r, status },
                    _ if file.is_empty() => not_found(),
                    _ => HubError::MissingFile {
                        repo: r,
                        file: file.into(),
                    },
                }
            }
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
    let repo_dir = cache.path().join(hub_repo.folder_name());
    if settings.offline {
        // The revision's commit from `refs/` (or the revision itself, when it is a
        // commit hash: the Python hub client writes no ref for those).
        let commit = std::fs::read_to_string(repo_dir.join("refs").join(hub_repo.revision()))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| hub_repo.revision().to_string());
        let snapshot = repo_dir.join("snapshots").join(commit);
        // Dot files (.gitattributes) are part of a repo: keep them.
        let listing = crate::fsutil::relative_files(&snapshot, false);
        if listing.is_empty() {
            return Err(HubError::RevisionNotCached {
                repo: repo.id.clone(),
                revision: repo.revision.clone(),
                cache: settings.cache_dir.display().to_string(),
            });
        }
        let files = choose(&listing).map_err(|message| HubError::Other {
            repo: repo.id.clone(),
            message: format!(
                "offline mode (HF_HUB_OFFLINE) and the cached snapshot {} is incomplete: {message}",
                snapshot.display()
            ),
        })?;
        return files
            .iter()
            .map(|f| {
                let path = snapshot.join(f);
                if path.exists() {
                    Ok(path)
                } else {
                    Err(HubError::NotCached {
                        repo: repo.id.clone(),
                        file: f.clone(),
                        cache: settings.cache_dir.display().to_string(),
                    })
                }
            })
            .collect();
    }
    let api = ApiBuilder::from_cache(cache.clone())
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(false)
        .build()
        .map_err(|e| map_error(repo, settings, "", e))?;
    let api_repo = api.repo(hub_repo.clone());
    let info = api_repo
        .info()
        .map_err(|e| map_error(repo, settings, "", e))?;
    let listing: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let files = choose(&listing).map_err(|message| HubError::Other {
        repo: repo.id.clone(),
        message,
    })?;
    // A file is up to date when the snapshot of the commit the hub names now has
    // it; `refs/<revision>` may still point at an older commit.
    let snapshot = repo_dir.join("snapshots").join(&info.sha);
    let mut paths = Vec::new();
    for f in &files {
        let cached = snapshot.join(f);
        if cached.exists() {
            paths.push(cached);
            continue;
        }
        if cached.symlink_metadata().is_ok() {
            // A link to a deleted blob: hf-hub would refuse to replace it.
            let _ = std::fs::remove_file(&cached);
        }
        let progress = FileProgress {
            file: f.clone(),
            done: 0,
            total: 0,
            report: &mut *report,
        };
        let path = api_repo
            .download_with_progress(f, progress)
            .map_err(|e| map_error(repo, settings, f, e))?;
        paths.push(path);
    }
    cache
        .repo(hub_repo)
        .create_ref(&info.sha)
        .map_err(|e| HubError::Other {
            repo: repo.id.clone(),
            message: format!("cannot write the ref in {}: {e}", repo_dir.display()),
        })?;
    Ok(paths)
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
