//! Hub datasets (and local dataset folders): which files hold a split.
//!
//! A dataset repo is a folder of data files whose names say the split, in a few
//! layouts that `datasets` recognises without a loading script
//! (`datasets/data_files.py`), tried in its order:
//!
//! 1. shards written by `push_to_hub`: `data/{split}-00000-of-00001.parquet`
//!    (the book's `dvgodoy/yoda_sentences` has `data/train-00000-of-00001.parquet`);
//! 2. the split as a folder: `train/0000.parquet`, `{config}/{split}/*.parquet`
//!    (the hub's parquet conversion), `data/train/shard_1.jsonl`;
//! 3. the split in the file name: `train.jsonl`, `data/test.csv`, `yoda_train.json`
//!    (the name between separators `-._ ` or digits, or at either end);
//! 4. no split names at all: every data file is the `train` split.
//!
//! Split names have the same synonyms as in `datasets` (`train`/`training`,
//! `validation`/`valid`/`dev`/`val`, `test`/`testing`/`eval`/`evaluation`). A dataset
//! with several configs keeps each in its own folder (`main/train-*.parquet`,
//! `socratic/train-*.parquet`); one is chosen as `owner/name:config`. When a split has
//! files of several kinds, Parquet is preferred (the hub converts everything to it),
//! then JSON Lines, JSON, CSV. Configs declared only in a README's YAML `configs:`
//! block are not read.
//!
//! The chosen files are downloaded with [`crate::hub::fetch`] as a `RepoType::Dataset`
//! into the hub cache (`datasets--owner--name`), shared with the Python stack, and
//! read offline from there under `HF_HUB_OFFLINE`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use hf_hub::RepoType;

use super::{DataError, FileKind};
use crate::hub::{HubSettings, RepoRef};

/// A hub dataset id: `owner/name`, optionally `:config` (a folder of a multi-config
/// dataset) and `@revision`: `openai/gsm8k:main@refs/convert/parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct HubDataset {
    pub repo: RepoRef,
    pub config: Option<String>,
}

impl HubDataset {
    /// `None` when the text is not shaped like a dataset id.
    pub fn parse(text: &str) -> Option<HubDataset> {
        let (id_part, revision) = match text.split_once('@') {
            Some((id, rev)) => (id, Some(rev)),
            None => (text, None),
        };
        let (id, config) = match id_part.split_once(':') {
            Some((id, config)) if !config.is_empty() && !config.contains('/') => {
                (id, Some(config.to_string()))
            }
            Some(_) => return None,
            None => (id_part, None),
        };
        let spec = match revision {
            Some(rev) => format!("{id}@{rev}"),
            None => id.to_string(),
        };
        RepoRef::parse(&spec).map(|repo| HubDataset { repo, config })
    }

    /// Downloads (or finds in the cache) the split's files; each comes back with the
    /// name errors give it, `owner/name/FILE`.
    pub(super) fn fetch(
        &self,
        split: &str,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<Vec<(PathBuf, String)>, DataError> {
        let settings = HubSettings::from_env();
        let chosen = RefCell::new(Vec::new());
        let choose = |listing: &[String]| {
            let files = choose_split_files(listing, split, self.config.as_deref())?;
            chosen.replace(files.clone());
            Ok(files)
        };
        let paths = crate::hub::fetch(&settings, &self.repo, RepoType::Dataset, &choose, progress)?;
        let names = chosen.into_inner();
        Ok(paths
            .into_iter()
            .zip(names)
            .map(|(path, file)| (path, format!("{}/{file}", self.repo.id)))
            .collect())
    }
}

/// The files of a local folder, as relative `/`-separated paths (what a hub repo's
/// file list looks like), hidden files and folders left out.
pub(super) fn local_listing(dir: &Path) -> Vec<String> {
    crate::fsutil::relative_files(dir, true)
}

/// The splits `datasets` knows by name, each with its synonyms.
const SPLIT_NAMES: [&[&str]; 3] = [
    &["train", "training"],
    &["validation", "valid", "dev", "val"],
    &["test", "testing", "eval", "evaluation"],
];

/// The names a split goes by.
fn keywords(split: &str) -> Vec<String> {
    let split = split.to_ascii_lowercase();
    SPLIT_NAMES
        .iter()
        .find(|names| names.contains(&split.as_str()))
        .map_or_else(
            || vec![split.clone()],
            |names| names.iter().map(|s| s.to_string()).collect(),
        )
}

fn is_separator(c: u8) -> bool {
    matches!(c, b'-' | b'.' | b'_' | b' ' | b'0'..=b'9')
}

/// Whether `keyword` occurs in `text` as a word: at the start or after a separator,
/// and before a separator (or, when `end_ok`, at the end).
fn has_word(text: &str, keyword: &str, end_ok: bool) -> bool {
    let text = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    text.match_indices(keyword).any(|(i, _)| {
        let before = i == 0 || bytes.get(i - 1).copied().is_some_and(is_separator);
        let after = match bytes.get(i + keyword.len()) {
            None => end_ok,
            Some(&c) => is_separator(c),
        };
        before && after
    })
}

/// `data/{split}-00000-of-00001...`: the split name of a `push_to_hub` shard.
fn shard_split(rel: &str) -> Option<&str> {
    let name = rel.strip_prefix("data/")?;
    if name.contains('/') {
        return None;
    }
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    name.match_indices("-of-").find_map(|(at, _)| {
        let before = name.get(..at)?;
        let after = name.get(at + 4..at + 9)?;
        let dash = before.len().checked_sub(6)?;
        let (split, shard) = (before.get(..dash)?, before.get(dash + 1..)?);
        (before.as_bytes().get(dash) == Some(&b'-')
            && digits(shard)
            && digits(after)
            && !split.is_empty())
        .then_some(split)
    })
}

/// A data file: its path in the repo, and its path below the config folder.
struct Candidate<'a> {
    path: &'a str,
    rel: &'a str,
}

impl Candidate<'_> {
    fn dirs(&self) -> impl Iterator<Item = &str> {
        let mut parts: Vec<&str> = self.rel.split('/').collect();
        parts.pop();
        parts.into_iter()
    }
    fn name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or(self.rel)
    }
    fn in_dir_of(&self, names: &[String]) -> bool {
        self.dirs()
            .any(|d| names.iter().any(|k| has_word(d, k, true)))
    }
    fn named_for(&self, names: &[String]) -> bool {
        names.iter().any(|k| has_word(self.name(), k, false))
    }
}

/// Picks the files of `split` from a repo's (or folder's) file list, as `datasets`
/// resolves data files (see the module docs). The message of an error says what the
/// list holds instead.
pub fn choose_split_files(
    listing: &[String],
    split: &str,
    config: Option<&str>,
) -> Result<Vec<String>, String> {
    let data: Vec<&str> = listing
        .iter()
        .map(String::as_str)
        .filter(|f| FileKind::of(Path::new(f)).is_some())
        .filter(|f| !f.split('/').any(|part| part.starts_with('.')))
        .collect();
    if data.is_empty() {
        return Err(format!(
            "no .parquet, .jsonl, .json or .csv files (files: {})",
            preview(listing.iter().map(String::as_str))
        ));
    }
    let candidates: Vec<Candidate> = match config {
        Some(config) => {
            let prefix = format!("{config}/");
            let inside: Vec<Candidate> = data
                .iter()
                .filter_map(|&path| {
                    path.strip_prefix(&prefix)
                        .map(|rel| Candidate { path, rel })
                })
                .collect();
            if inside.is_empty() {
                return Err(format!(
                    "no data files for config `{config}` (the data files: {})",
                    preview(data.iter().copied())
                ));
            }
            inside
        }
        None => data
            .iter()
            .map(|&path| Candidate { path, rel: path })
            .collect(),
    };
    let wanted = keywords(split);
    let mut known: Vec<Vec<String>> = SPLIT_NAMES
        .iter()
        .map(|names| names.iter().map(|s| s.to_string()).collect())
        .collect();
    if !known.contains(&wanted) {
        known.push(wanted.clone());
    }
    let splits_where = |test: &dyn Fn(&Candidate, &[String]) -> bool| -> Vec<String> {
        known
            .iter()
            .filter(|names| candidates.iter().any(|c| test(c, names)))
            .filter_map(|names| names.first().cloned())
            .collect()
    };

    let chosen: Vec<&Candidate> = if candidates.iter().any(|c| shard_split(c.rel).is_some()) {
        let mut found: Vec<&str> = candidates
            .iter()
            .filter_map(|c| shard_split(c.rel))
            .collect();
        let chosen: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| shard_split(c.rel).is_some_and(|s| s.eq_ignore_ascii_case(split)))
            .collect();
        if chosen.is_empty() {
            found.sort_unstable();
            found.dedup();
            return Err(no_split(split, &found.join(", ")));
        }
        chosen
    } else if candidates
        .iter()
        .any(|c| known.iter().any(|k| c.in_dir_of(k)))
    {
        let chosen: Vec<&Candidate> = candidates.iter().filter(|c| c.in_dir_of(&wanted)).collect();
        if chosen.is_empty() {
            let found = splits_where(&|c, k| c.in_dir_of(k));
            return Err(no_split(split, &found.join(", ")));
        }
        chosen
    } else if candidates
        .iter()
        .any(|c| known.iter().any(|k| c.named_for(k)))
    {
        let chosen: Vec<&Candidate> = candidates.iter().filter(|c| c.named_for(&wanted)).collect();
        if chosen.is_empty() {
            let found = splits_where(&|c, k| c.named_for(k));
            return Err(no_split(split, &found.join(", ")));
        }
        chosen
    } else if wanted.iter().any(|k| k == "train") {
        candidates.iter().collect()
    } else {
        return Err(format!(
            "no `{split}` split: the data files have no split names, so all of them are the `train` split ({})",
            preview(candidates.iter().map(|c| c.path))
        ));
    };

    if config.is_none() {
        let mut folders: Vec<&str> = chosen
            .iter()
            .filter_map(|c| c.rel.split_once('/').map(|(top, _)| top))
            .filter(|top| *top != "data" && !known.iter().flatten().any(|k| has_word(top, k, true)))
            .collect();
        folders.sort_unstable();
        folders.dedup();
        if folders.len() > 1 {
            return Err(format!(
                "the `{split}` files are in several folders ({}): a dataset with several configs; name one as owner/name:CONFIG",
                folders.join(", ")
            ));
        }
    }

    let kind_rank = |c: &Candidate| match FileKind::of(Path::new(c.path)) {
        Some(FileKind::Parquet) => 0,
        Some(FileKind::Jsonl) => 1,
        Some(FileKind::Json) => 2,
        _ => 3,
    };
    let best = chosen.iter().map(|c| kind_rank(c)).min().unwrap_or(0);
    let mut files: Vec<String> = chosen
        .into_iter()
        .filter(|c| kind_rank(c) == best)
        .map(|c| c.path.to_string())
        .collect();
    files.sort();
    Ok(files)
}

fn no_split(split: &str, found: &str) -> String {
    if found.is_empty() {
        format!("no data files for split `{split}`")
    } else {
        format!("no data files for split `{split}` (splits found: {found})")
    }
}

/// The first few names of a list, for messages.
fn preview<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let mut text = names.iter().take(8).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 8 {
        text.push_str(&format!(", ... ({} in all)", names.len()));
    }
    if text.is_empty() {
        text = "none".into();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(files: &[&str], split: &str, config: Option<&str>) -> Result<Vec<String>, String> {
        let listing: Vec<String> = files.iter().map(|s| s.to_string()).collect();
        choose_split_files(&listing, split, config)
    }

    #[test]
    fn dataset_ids_parse_with_config_and_revision() {
        let d = HubDataset::parse("dvgodoy/yoda_sentences").expect("an id");
        assert_eq!(d.repo.id, "dvgodoy/yoda_sentences");
        assert_eq!(d.repo.revision, "main");
        assert_eq!(d.config, None);
        let d = HubDataset::parse("openai/gsm8k:main@v2").expect("an id");
        assert_eq!(
            (d.repo.id.as_str(), d.repo.revision.as_str()),
            ("openai/gsm8k", "v2")
        );
        assert_eq!(d.config.as_deref(), Some("main"));
        assert_eq!(HubDataset::parse("yoda"), None);
        assert_eq!(HubDataset::parse("a/b:"), None);
        assert_eq!(HubDataset::parse("a/b/c"), None);
    }

    #[test]
    fn push_to_hub_shards() {
        let files = [
            ".gitattributes",
            "README.md",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "data/test-00000-of-00001.parquet",
        ];
        assert_eq!(
            choose(&files, "train", None).expect("train"),
            vec![
                "data/train-00000-of-00002.parquet",
                "data/train-00001-of-00002.parquet"
            ]
        );
        assert_eq!(
            choose(&files, "test", None).expect("test"),
            vec!["data/test-00000-of-00001.parquet"]
        );
        let e = choose(&files, "validation", None).expect_err("no such split");
        assert!(
            e.contains("`validation`") && e.contains("test, train"),
            "{e}"
        );
        // Split names in shards are taken as they are, hyphens included.
        let files = ["data/my-split-00000-of-00001.parquet"];
        assert_eq!(shard_split(files[0]), Some("my-split"));
        assert_eq!(choose(&files, "my-split", None).expect("found").len(), 1);
    }

    #[test]
    fn split_files_by_name_with_synonyms() {
        let files = ["train.jsonl", "dev.jsonl", "test.jsonl", "README.md"];
        assert_eq!(
            choose(&files, "train", None).expect("train"),
            vec!["train.jsonl"]
        );
        assert_eq!(
            choose(&files, "validation", None).expect("val"),
            vec!["dev.jsonl"]
        );
        let files = [
            "data/yoda_train.csv",
            "data/yoda_test.csv",
            "data/latest.csv",
        ];
        assert_eq!(
            choose(&files, "train", None).expect("train"),
            vec!["data/yoda_train.csv"]
        );
        assert_eq!(
            choose(&files, "test", None).expect("test"),
            vec!["data/yoda_test.csv"]
        );
        // "training" is a word of its own, not "train" plus letters.
        assert!(has_word("training.json", "training", false));
        assert!(!has_word("training.json", "train", false));
        assert!(!has_word("constrain.json", "train", false));
    }

    #[test]
    fn split_folders_and_configs() {
        let files = [
            "default/train/0000.parquet",
            "default/train/0001.parquet",
            "default/validation/0000.parquet",
        ];
        assert_eq!(choose(&files, "train", None).expect("train").len(), 2);
        assert_eq!(
            choose(&files, "train", Some("default"))
                .expect("train")
                .len(),
            2
        );
        let files = [
            "main/train-00000-of-00001.parquet",
            "main/test-00000-of-00001.parquet",
            "socratic/train-00000-of-00001.parquet",
            "socratic/test-00000-of-00001.parquet",
        ];
        let e = choose(&files, "train", None).expect_err("ambiguous");
        assert!(
            e.contains("main, socratic") && e.contains("owner/name:CONFIG"),
            "{e}"
        );
        assert_eq!(
            choose(&files, "train", Some("socratic")).expect("one config"),
            vec!["socratic/train-00000-of-00001.parquet"]
        );
        let e = choose(&files, "train", Some("nope")).expect_err("no such config");
        assert!(e.contains("`nope`"), "{e}");
    }

    #[test]
    fn unnamed_files_are_train_and_parquet_wins() {
        let files = ["data.jsonl", "more.jsonl"];
        assert_eq!(choose(&files, "train", None).expect("train").len(), 2);
        let e = choose(&files, "test", None).expect_err("no test split");
        assert!(e.contains("no split names"), "{e}");
        let files = ["train.jsonl", "train.parquet", "train.csv"];
        assert_eq!(
            choose(&files, "train", None).expect("train"),
            vec!["train.parquet"]
        );
        let e = choose(&["README.md", "script.py"], "train", None).expect_err("no data");
        assert!(e.contains("README.md, script.py"), "{e}");
    }
}
