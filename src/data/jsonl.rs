//! JSON Lines (`.jsonl`): one JSON object per line, the format the book's data comes
//! in and what `datasets`' "json" builder reads line by line. Empty lines are skipped
//! silently, as `datasets` skips them; any other line that is not a JSON object is a
//! bad record named by its 1-based line.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use super::{json_line_error, kind_of, DataError, Sink};

/// Progress is reported about every this many bytes.
const REPORT_EVERY: u64 = 1 << 22;

pub(super) fn read(path: &Path, sink: &mut Sink) -> Result<(), DataError> {
    let file = File::open(path).map_err(|e| sink.io_error(e))?;
    read_from(BufReader::new(file), sink)
}

/// Reads JSON Lines from `reader` (also used for `.json` files holding JSON Lines).
pub(super) fn read_from(mut reader: impl BufRead, sink: &mut Sink) -> Result<(), DataError> {
    let mut buf = Vec::new();
    let mut line = 0;
    let (mut done, mut reported) = (0u64, 0u64);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| sink.io_error(e))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        done += n as u64;
        if done - reported >= REPORT_EVERY {
            sink.report(done);
            reported = done;
        }
        let bytes = match buf.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) if line == 1 => rest,
            _ => &buf[..],
        };
        let text = match std::str::from_utf8(bytes) {
            // Trailing whitespace only, so that columns count from the line's start.
            Ok(text) => text.trim_end(),
            Err(e) => {
                sink.bad(
                    line,
                    None,
                    format!("not valid UTF-8 (at byte {})", e.valid_up_to() + 1),
                )?;
                continue;
            }
        };
        if text.trim_start().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(row)) => sink.record(line, row),
            Ok(other) => sink.bad(
                line,
                None,
                format!(
                    "expected a JSON object (one record per line), got {}",
                    kind_of(&other)
                ),
            )?,
            Err(e) => sink.bad(line, None, json_line_error(&e))?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_read, DataError, TestRead};
    use super::*;
    use crate::config::OnBadRecord;

    fn read_bytes(bytes: &[u8], policy: OnBadRecord) -> Result<TestRead, DataError> {
        test_read(policy, "t.jsonl", |sink| read_from(bytes, sink))
    }

    #[test]
    fn lines_records_and_blank_lines() {
        let text = "\u{feff}{\"a\": 1}\r\n\n   \n{\"a\": 2, \"b\": [1, {\"c\": null}]}\n{\"a\": 3}";
        let read = read_bytes(text.as_bytes(), OnBadRecord::Fail).expect("reads");
        let lines: Vec<usize> = read.records.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 4, 5]);
        assert_eq!(read.total, 3);
        assert_eq!(read.records[1].row["b"][1]["c"], Value::Null);
    }

    #[test]
    fn bad_lines_fail_or_are_skipped() {
        let text = b"{\"a\": 1}\n[1, 2]\n{\"a\": \n\"just a string\"\n{\"a\": 5}\n";
        let e = read_bytes(text, OnBadRecord::Fail).err().expect("fails");
        assert_eq!(
            e.to_string(),
            "t.jsonl:2: expected a JSON object (one record per line), got a list"
        );
        let read = read_bytes(text, OnBadRecord::Skip).expect("skips");
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.total, 5);
        let skipped: Vec<String> = read.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(
            skipped[0],
            "t.jsonl:2: expected a JSON object (one record per line), got a list"
        );
        assert!(
            skipped[1].starts_with("t.jsonl:3: not valid JSON: EOF while parsing a value"),
            "{}",
            skipped[1]
        );
        assert!(skipped[1].ends_with("at column 5"), "{}", skipped[1]);
        assert_eq!(
            skipped[2],
            "t.jsonl:4: expected a JSON object (one record per line), got a string"
        );
    }

    #[test]
    fn invalid_utf8_is_a_bad_record() {
        let read =
            read_bytes(b"{\"a\": \"\xff\"}\n{\"a\": 1}\n", OnBadRecord::Skip).expect("reads");
        assert_eq!(read.records.len(), 1);
        assert_eq!(
            read.skipped[0].to_string(),
            "t.jsonl:1: not valid UTF-8 (at byte 8)"
        );
    }
}
