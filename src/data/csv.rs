//! CSV files (RFC 4180): a header row naming the columns, then one record per row;
//! quoted fields may hold commas, doubled quotes and newlines.
//!
//! Every value is a string (an empty field is `""`): a prompt of digits stays text,
//! where pandas would guess a number. `tests/data.rs` checks this against
//! `datasets.load_dataset("csv", ...)` told that every column is a string. A record
//! is named by the line where it starts; a row with more or fewer fields than the
//! header is a bad record (pandas refuses the first and pads the second with nulls).

use std::path::Path;

use ::csv::{ByteRecord, ReaderBuilder};
use serde_json::{Map, Value};

use super::{DataError, Sink};

pub(super) fn read(path: &Path, sink: &mut Sink) -> Result<(), DataError> {
    let bytes = std::fs::read(path).map_err(|e| sink.io_error(e))?;
    read_bytes(&bytes, sink)
}

/// The line where a record starts. The csv crate puts a record's position before the
/// blank lines it skips on the way to it, so those are stepped over here (which is
/// why the file is read whole: CSV files for fine-tuning are small, and pandas reads
/// them whole too).
fn start_line(bytes: &[u8], position: Option<&::csv::Position>) -> usize {
    let Some(position) = position else {
        return 0;
    };
    let from = usize::try_from(position.byte()).unwrap_or(usize::MAX);
    let skipped = bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .filter(|b| **b == b'\n')
        .count();
    position.line() as usize + skipped
}

fn read_bytes(bytes: &[u8], sink: &mut Sink) -> Result<(), DataError> {
    let mut reader = ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| sink.file_error(format!("cannot read the header row: {e}")))?
        .clone();
    let mut columns: Vec<String> = Vec::with_capacity(header.len());
    for name in &header {
        let name = std::str::from_utf8(name)
            .map_err(|_| sink.file_error("the header row is not valid UTF-8"))?;
        if columns.iter().any(|c| c == name) {
            return Err(sink.file_error(format!("the header names column `{name}` twice")));
        }
        columns.push(name.to_string());
    }

    let mut record = ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                // With `flexible`, only reading itself can fail here.
                let line = start_line(bytes, e.position());
                let message = e.to_string();
                if let ::csv::ErrorKind::Io(io) = e.into_kind() {
                    return Err(sink.io_error(io));
                }
                sink.bad(line, None, message)?;
                continue;
            }
        }
        let line = start_line(bytes, record.position());
        sink.report(record.position().map_or(0, |p| p.byte()));
        if record.len() != columns.len() {
            sink.bad(
                line,
                None,
                format!(
                    "{} field{}, but the header has {} ({})",
                    record.len(),
                    if record.len() == 1 { "" } else { "s" },
                    columns.len(),
                    columns.join(", ")
                ),
            )?;
            continue;
        }
        let mut row = Map::with_capacity(columns.len());
        let mut bad_field = None;
        for (name, field) in columns.iter().zip(record.iter()) {
            match std::str::from_utf8(field) {
                Ok(text) => {
                    row.insert(name.clone(), Value::String(text.to_string()));
                }
                Err(_) => {
                    bad_field = Some(name.as_str());
                    break;
                }
            }
        }
        match bad_field {
            Some(name) => sink.bad(line, Some(name), "not valid UTF-8")?,
            None => sink.record(line, row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_read, TestRead};
    use super::*;
    use crate::config::OnBadRecord;

    fn read_text(text: &str, policy: OnBadRecord) -> Result<TestRead, DataError> {
        test_read(policy, "q.csv", |sink| read_bytes(text.as_bytes(), sink))
    }

    #[test]
    fn quoted_fields_and_start_lines() {
        let text = "\u{feff}a,b\n1,\"x, \"\"y\"\"\nz\"\n\n2,\n\"3\r\nthree\",ok\r\n\r\n\n4,x\n";
        let read = read_text(text, OnBadRecord::Fail).expect("reads");
        let rows: Vec<(usize, String, String)> = read
            .records
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.row["a"].as_str().unwrap_or_default().to_string(),
                    r.row["b"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (2, "1".into(), "x, \"y\"\nz".into()),
                (5, "2".into(), "".into()),
                (6, "3\r\nthree".into(), "ok".into()),
                (10, "4".into(), "x".into()),
            ]
        );
        assert_eq!(read.records[0].row.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn wrong_field_counts_are_bad_records() {
        let text = "a,b\n1,2\n3,4,5\n6\n7,8\n";
        let e = read_text(text, OnBadRecord::Fail).err().expect("fails");
        assert_eq!(
            e.to_string(),
            "q.csv:3: 3 fields, but the header has 2 (a, b)"
        );
        let read = read_text(text, OnBadRecord::Skip).expect("skips");
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.total, 4);
        assert_eq!(
            read.skipped[1].to_string(),
            "q.csv:4: 1 field, but the header has 2 (a, b)"
        );
    }

    #[test]
    fn header_problems_fail_the_file() {
        let e = read_text("a,a\n1,2\n", OnBadRecord::Skip)
            .err()
            .expect("fails");
        assert_eq!(e.to_string(), "q.csv: the header names column `a` twice");
        assert_eq!(read_text("", OnBadRecord::Fail).expect("empty").total, 0);
    }
}
