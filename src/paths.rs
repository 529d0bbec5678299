//! Where ftui keeps things: the config, cache and data folders (from
//! `directories`), and where the embedded default model lives.

use std::path::{Path, PathBuf};

/// The file name of the embedded default model.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// What a config's `[model] source` says to mean the embedded default model.
pub const DEFAULT_MODEL_SOURCE: &str = "default";

pub struct Dirs {
    pub config: PathBuf,
    pub cache: PathBuf,
    pub data: PathBuf,
}

/// ftui's folders; `FTUI_HOME` puts them all under one folder (tests use it).
pub fn dirs() -> Dirs {
    if let Some(home) = std::env::var_os("FTUI_HOME") {
        let home = PathBuf::from(home);
        return Dirs {
            config: home.join("config"),
            cache: home.join("cache"),
            data: home.join("data"),
        };
    }
    match directories::ProjectDirs::from("", "", "ftui") {
        Some(p) => Dirs {
            config: p.config_dir().to_path_buf(),
            cache: p.cache_dir().to_path_buf(),
            data: p.data_dir().to_path_buf(),
        },
        None => {
            let tmp = std::env::temp_dir().join("ftui");
            Dirs {
                config: tmp.join("config"),
                cache: tmp.join("cache"),
                data: tmp.join("data"),
            }
        }
    }
}

/// The places the default model may be, in the order they are tried:
/// `FTUI_DEFAULT_MODEL`, `models/` under the current folder, `models/` in the
/// source tree ftui was built from (what `make model` fills), the data folder.
pub fn default_model_candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("FTUI_DEFAULT_MODEL") {
        v.push(PathBuf::from(p));
    }
    v.push(Path::new("models").join(DEFAULT_MODEL_FILE));
    v.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(DEFAULT_MODEL_FILE),
    );
    v.push(dirs().data.join("models").join(DEFAULT_MODEL_FILE));
    v
}

/// The embedded default model, if it has been fetched.
pub fn default_model() -> Option<PathBuf> {
    default_model_candidates().into_iter().find(|p| p.is_file())
}

/// The message given when the default model is missing.
pub fn default_model_missing() -> String {
    format!(
        "the embedded default model ({DEFAULT_MODEL_FILE}) is not fetched yet: run `make model` \
         in the ftui source folder, or set FTUI_DEFAULT_MODEL to its path"
    )
}
