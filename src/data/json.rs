//! `.json` files: a JSON array of records, or JSON Lines under a `.json` name (common
//! on the hub; `datasets`' "json" builder reads both).
//!
//! A record of an array is named by the line where it starts, not by its index, so
//! that `FILE:LINE` points an editor at it. An array with a syntax error cannot be cut
//! into records, so it fails whatever `on_bad_record` says (as `datasets` fails).

use std::io::Cursor;
use std::path::Path;

use serde_json::Value;

use super::{jsonl, kind_of, BadRecord, DataError, Sink};

pub(super) fn read(path: &Path, sink: &mut Sink) -> Result<(), DataError> {
    let bytes = std::fs::read(path).map_err(|e| sink.io_error(e))?;
    read_bytes(&bytes, sink)
}

fn read_bytes(bytes: &[u8], sink: &mut Sink) -> Result<(), DataError> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(()),
        Some(b'[') => read_array(body, sink),
        Some(b'{') if is_one_object(body) => Err(sink.file_error(
            "holds one JSON object, not records: expected an array of records or JSON Lines (records under a key, as datasets' `field=` picks them, are not supported)",
        )),
        Some(_) => jsonl::read_from(Cursor::new(bytes), sink),
    }
}

/// A single object spread over several lines (a JSON Lines file's object is on one).
fn is_one_object(body: &[u8]) -> bool {
    let trimmed = body.trim_ascii();
    trimmed.contains(&b'\n') && matches!(serde_json::from_slice(trimmed), Ok(Value::Object(_)))
}

fn read_array(body: &[u8], sink: &mut Sink) -> Result<(), DataError> {
    let items: Vec<Value> = serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let message = text
            .rfind(" at line ")
            .map_or(text.as_str(), |at| &text[..at]);
        DataError::Record(BadRecord {
            file: sink.file().to_string(),
            line: e.line(),
            field: None,
            message: format!("not valid JSON: {message} at column {}", e.column()),
        })
    })?;
    let lines = element_lines(body);
    for (i, item) in items.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(0);
        match item {
            Value::Object(row) => sink.record(line, row),
            other => sink.bad(
                line,
                None,
                format!("expected a JSON object (a record), got {}", kind_of(&other)),
            )?,
        }
    }
    Ok(())
}

/// The 1-based line where each element of a top-level JSON array starts. The text
/// is valid JSON (serde_json has parsed it), so tracking strings and nesting is
/// enough.
fn element_lines(body: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut line, mut depth) = (1usize, 0usize);
    let (mut in_string, mut escaped, mut expecting) = (false, false, false);
    for &b in body {
        if b == b'\n' {
            line += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        if depth == 1 && expecting && b != b']' && b != b',' {
            out.push(line);
            expecting = false;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth == 1 {
                    expecting = true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{test_read, TestRead};
    use super::*;
    use crate::config::OnBadRecord;

    fn read_text(text: &str, policy: OnBadRecord) -> Result<TestRead, DataError> {
        test_read(policy, "r.json", |sink| read_bytes(text.as_bytes(), sink))
    }

    #[test]
    fn array_records_are_named_by_their_line() {
        let text = "[\n  {\"a\": \"x,]}\\\"[{\"},\n  {\n    \"a\": [1, {\"b\": 2}]\n  },\n  3, {\"a\": null}\n]\n";
        assert_eq!(element_lines(text.as_bytes()), vec![2, 3, 6, 6]);
        let read = read_text(text, OnBadRecord::Skip).expect("reads");
        let lines: Vec<usize> = read.records.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 3, 6]);
        assert_eq!(read.total, 4);
        assert_eq!(
            read.skipped[0].to_string(),
            "r.json:6: expected a JSON object (a record), got a number"
        );
        assert_eq!(read.records[0].row["a"], "x,]}\"[{");
    }

    #[test]
    fn broken_arrays_fail_with_their_line() {
        let e = read_text("[\n {\"a\": 1},\n {\"a\" 2}\n]", OnBadRecord::Skip)
            .err()
            .expect("fails even under skip");
        assert_eq!(
            e.to_string(),
            "r.json:3: not valid JSON: expected `:` at column 7"
        );
    }

    #[test]
    fn json_lines_and_single_objects() {
        let read = read_text("{\"a\": 1}\n{\"a\": 2}\n", OnBadRecord::Fail).expect("jsonl");
        assert_eq!(read.records.len(), 2);
        let read = read_text("{\"a\": 1}", OnBadRecord::Fail).expect("one-line jsonl");
        assert_eq!(read.records.len(), 1);
        let e = read_text("{\n \"data\": [{\"a\": 1}]\n}\n", OnBadRecord::Fail)
            .err()
            .expect("an object of records");
        assert!(
            e.to_string().starts_with("r.json: holds one JSON object"),
            "{e}"
        );
        assert_eq!(
            read_text("  \n", OnBadRecord::Fail).expect("empty").total,
            0
        );
    }
}
