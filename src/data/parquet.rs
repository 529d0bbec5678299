//! Parquet files: what the hub stores datasets as (`push_to_hub` writes
//! `data/{split}-00000-of-00001.parquet`, and the hub converts every dataset to it).
//!
//! Read through the `parquet` crate's row API, without arrow: ftui needs rows of JSON
//! values, not columnar batches, and arrow would double the build. Values come through
//! as `datasets` gives them to Python: strings, integers, floats (a float32 widened
//! exactly, as Python does), booleans, nulls, lists, structs (a `messages` column is a
//! list<struct<role, content>>) and maps (objects). Other logical types become text:
//! dates and times as ISO strings, decimals as their digits; binary that is not UTF-8
//! becomes a list of byte values; NaN and infinities (which JSON lacks) become null.
//! A record is named by its 0-based row index in the file, as `dataset[i]`.

use std::path::Path;

use ::parquet::file::reader::{FileReader, SerializedFileReader};
use ::parquet::record::{Field, Row as ParquetRow};
use serde_json::{Map, Number, Value};

use super::{DataError, Sink};

/// Progress is reported every this many rows.
const REPORT_EVERY: usize = 10_000;

pub(super) fn read(path: &Path, sink: &mut Sink) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|e| sink.io_error(e))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| sink.file_error(format!("not a readable Parquet file: {e}")))?;
    let rows = reader.metadata().file_metadata().num_rows().max(1) as u64;
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let iter = reader
        .get_row_iter(None)
        .map_err(|e| sink.file_error(format!("cannot read the rows: {e}")))?;
    for (i, row) in iter.enumerate() {
        let row = row.map_err(|e| sink.file_error(format!("row {i} cannot be read: {e}")))?;
        sink.record(i, row_to_json(&row));
        if i % REPORT_EVERY == REPORT_EVERY - 1 {
            sink.report(size * i as u64 / rows);
        }
    }
    Ok(())
}

fn row_to_json(row: &ParquetRow) -> Map<String, Value> {
    row.get_column_iter()
        .map(|(name, field)| (name.clone(), field_to_json(field)))
        .collect()
}

fn float(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn field_to_json(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => Value::from(*n),
        Field::Short(n) => Value::from(*n),
        Field::Int(n) => Value::from(*n),
        Field::Long(n) => Value::from(*n),
        Field::UByte(n) => Value::from(*n),
        Field::UShort(n) => Value::from(*n),
        Field::UInt(n) => Value::from(*n),
        Field::ULong(n) => Value::from(*n),
        Field::Float16(x) => float(f64::from(*x)),
        Field::Float(x) => float(f64::from(*x)),
        Field::Double(x) => float(*x),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(text) => Value::String(text.to_string()),
            Err(_) => Value::Array(b.data().iter().map(|&x| Value::from(x)).collect()),
        },
        Field::Group(row) => Value::Object(row_to_json(row)),
        Field::ListInternal(list) => {
            Value::Array(list.elements().iter().map(field_to_json).collect())
        }
        Field::MapInternal(map) => Value::Object(
            map.entries()
                .iter()
                .map(|(key, value)| {
                    let key = match field_to_json(key) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, field_to_json(value))
                })
                .collect(),
        ),
        // Dates, times, timestamps and decimals: the crate's own text for them.
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_read, BadRecord};
    use super::*;
    use crate::config::OnBadRecord;

    #[test]
    fn not_parquet_fails_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.parquet");
        std::fs::write(&path, b"PAR1 not really").expect("write");
        let e = test_read(OnBadRecord::Skip, "x.parquet", |sink| read(&path, sink))
            .err()
            .expect("fails");
        assert!(
            e.to_string()
                .starts_with("x.parquet: not a readable Parquet file"),
            "{e}"
        );
    }

    #[test]
    fn values_become_json() {
        assert_eq!(
            field_to_json(&Field::Float(0.1)),
            Value::from(f64::from(0.1f32))
        );
        assert_eq!(field_to_json(&Field::Double(f64::NAN)), Value::Null);
        assert_eq!(
            field_to_json(&Field::ULong(u64::MAX)),
            Value::from(u64::MAX)
        );
        assert_eq!(
            field_to_json(&Field::Bytes(vec![0xffu8, 1].into())),
            serde_json::json!([255, 1])
        );
        assert_eq!(
            field_to_json(&Field::Bytes(b"abc".to_vec().into())),
            Value::from("abc")
        );
        assert_eq!(field_to_json(&Field::Date(0)), Value::from("1970-01-01"));
    }

    #[test]
    fn rows_are_named_by_index() {
        let bad = BadRecord {
            file: "d/train-00000-of-00001.parquet".into(),
            line: 4,
            field: Some("messages[0].role".into()),
            message: "missing".into(),
        };
        assert_eq!(
            bad.to_string(),
            "d/train-00000-of-00001.parquet: row 4: field `messages[0].role`: missing"
        );
    }
}
