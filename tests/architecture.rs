//! The layers of the crate point one way: a module may use only modules of a
//! lower layer (DESIGN.md, "Layers"). This test reads `src/` and names every
//! import that points sideways or up, so a circle cannot creep back in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first. A module may import modules of lower rows only.
const LAYERS: &[&[&str]] = &[
    &["torch", "fsutil", "paths", "process"],
    &["config", "logging", "hub", "gguf"],
    &["device", "quant", "template"],
    &["nn", "tokenizer", "data"],
    &["model", "collate"],
    &["lora", "source", "dataview"],
    &["generate", "score", "doctor", "train", "export"],
    &["engine", "run"],
    &["cli", "tui"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a file's source names through `crate::`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c}`: the first segment of each item at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            for (j, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[j..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        let name: String = group[j..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        found.insert(name);
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found
}

#[test]
fn imports_point_down_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut unknown = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "bin" {
            continue;
        }
        let Some(own) = rank(&module) else {
            unknown.insert(module);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable");
        // Comments may name any module; code may not.
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for used in imports(&code) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => wrong.push(format!("{}: `{module}` imports `{used}`", rel.display())),
                None => {
                    unknown.insert(used);
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS (give each a layer): {unknown:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports that point sideways or up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_parser_sees_grouped_and_nested_imports() {
    let found =
        imports("use crate::{model::{CausalLm, x}, nn::Linear};\nlet a = crate::torch::f();");
    let names: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(names, ["model", "nn", "torch"]);
}
