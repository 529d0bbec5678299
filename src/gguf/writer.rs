//! Writing GGUF v3, streaming: the header, metadata and tensor directory first (every
//! tensor's type and shape is known before its data is), then each tensor's bytes in
//! directory order as the caller produces them, so a model is never held twice.
//!
//! The layout is the one llama.cpp's reader insists on (`gguf.cpp`): little-endian,
//! strings without NUL, no `general.alignment` key (so the default 32 applies), data
//! offsets exactly cumulative with every tensor padded to 32 bytes, names shorter than
//! 64 bytes, at most 4 dims, `ne[0]` a multiple of the type's block size.

use std::collections::HashSet;
use std::io::Write;

use super::{GgmlType, GgufValue};

/// llama.cpp's default (and ftui's only) alignment of the data section and its tensors.
pub const ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_NAME`: a name must be shorter.
const MAX_NAME: usize = 64;
const MAX_DIMS: usize = 4;

/// Why a file could not be written. One line each.
#[derive(Debug, thiserror::Error)]
pub enum GgufWriteError {
    #[error("writing GGUF: {0}")]
    Io(#[from] std::io::Error),
    /// Metadata or a tensor that llama.cpp would refuse to read.
    #[error("GGUF: {0}")]
    Invalid(String),
    /// Tensor data given out of directory order, with the wrong size, or missing.
    #[error("GGUF: {0}")]
    Sequence(String),
}

type Result<T> = std::result::Result<T, GgufWriteError>;

/// A tensor of the file, before its data is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorPlan {
    pub name: String,
    /// Dims in GGUF order (`dims[0]` the innermost): a row-major `[out, in]` weight is
    /// `[in, out]`.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
}

impl TensorPlan {
    /// A plan for a row-major (PyTorch) `shape`.
    pub fn from_shape(name: impl Into<String>, shape: &[usize], ggml_type: GgmlType) -> Self {
        TensorPlan {
            name: name.into(),
            dims: shape.iter().rev().map(|&d| d as u64).collect(),
            ggml_type,
        }
    }

    /// Bytes of data: `ne[0] / block * type_size * ne[1] * ...`.
    pub fn n_bytes(&self) -> u64 {
        let ty = self.ggml_type;
        let n: u64 = self.dims.iter().product();
        n / ty.block_size() as u64 * ty.type_size() as u64
    }

    fn check(&self) -> Result<()> {
        let invalid = |what: String| {
            Err(GgufWriteError::Invalid(format!(
                "tensor '{}': {what}",
                self.name
            )))
        };
        if self.name.len() >= MAX_NAME {
            return invalid(format!(
                "the name is {} bytes; llama.cpp takes fewer than {MAX_NAME}",
                self.name.len()
            ));
        }
        if self.dims.is_empty() || self.dims.len() > MAX_DIMS {
            return invalid(format!(
                "{} dims; GGUF takes 1 to {MAX_DIMS}",
                self.dims.len()
            ));
        }
        let block = self.ggml_type.block_size() as u64;
        if !self.dims[0].is_multiple_of(block) {
            return invalid(format!(
                "rows of {} values do not split into {} blocks of {block}",
                self.dims[0], self.ggml_type
            ));
        }
        Ok(())
    }
}

/// `n` rounded up to the alignment.
fn padded(n: u64) -> u64 {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// A GGUF file being written: after [`GgufWriter::start`], one
/// [`GgufWriter::write_tensor`] per planned tensor, in order, then
/// [`GgufWriter::finish`].
pub struct GgufWriter<W: Write> {
    out: W,
    plan: Vec<TensorPlan>,
    next: usize,
    written: u64,
}

/// The GGUF value type id of a value (`enum gguf_type`).
fn type_id(v: &GgufValue) -> u32 {
    match v {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// A value's bytes (without its type id). Arrays hold one element type.
fn put_value(buf: &mut Vec<u8>, key: &str, v: &GgufValue) -> Result<()> {
    match v {
        GgufValue::U8(x) => buf.push(*x),
        GgufValue::I8(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => buf.push(u8::from(*x)),
        GgufValue::String(s) => put_str(buf, s),
        GgufValue::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Array(items) => {
            // An empty array still states an element type; strings are the usual one.
            let elem = items.first().map_or(8, type_id);
            if items.iter().any(|i| type_id(i) != elem) {
                return Err(GgufWriteError::Invalid(format!(
                    "metadata '{key}': an array mixes element types"
                )));
            }
            buf.extend_from_slice(&elem.to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(buf, key, item)?;
            }
        }
    }
    Ok(())
}

impl<W: Write> GgufWriter<W> {
    /// Writes the header, `metadata` (in the order given) and the directory of `tensors`,
    /// padded to the data section. Refuses duplicate keys or names and tensors llama.cpp
    /// cannot read.
    pub fn start(
        mut out: W,
        metadata: &[(String, GgufValue)],
        tensors: Vec<TensorPlan>,
    ) -> Result<Self> {
        let mut keys = HashSet::new();
        for (k, _) in metadata {
            if !keys.insert(k.as_str()) {
                return Err(GgufWriteError::Invalid(format!(
                    "metadata key '{k}' appears twice"
                )));
            }
        }
        let mut names = HashSet::new();
        for t in &tensors {
            t.check()?;
            if !names.insert(t.name.as_str()) {
                return Err(GgufWriteError::Invalid(format!(
                    "tensor '{}' appears twice",
                    t.name
                )));
            }
        }
        let mut buf = Vec::new();
        buf.extend_from_slice(b"GGUF");
        buf.extend_from_slice(&3u32.to_le_bytes());
        buf.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        buf.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in metadata {
            put_str(&mut buf, k);
            buf.extend_from_slice(&type_id(v).to_le_bytes());
            put_value(&mut buf, k, v)?;
        }
        let mut offset = 0u64;
        for t in &tensors {
            put_str(&mut buf, &t.name);
            buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                buf.extend_from_slice(&d.to_le_bytes());
            }
            buf.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            buf.extend_from_slice(&offset.to_le_bytes());
            offset += padded(t.n_bytes());
        }
        buf.resize(padded(buf.len() as u64) as usize, 0);
        out.write_all(&buf)?;
        Ok(GgufWriter {
            out,
            plan: tensors,
            next: 0,
            written: buf.len() as u64,
        })
    }

    /// Writes the data of tensor `name`, which must be the next one planned, with the
    /// planned size, followed by its padding.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let Some(plan) = self.plan.get(self.next) else {
            return Err(GgufWriteError::Sequence(format!(
                "tensor '{name}' was not planned"
            )));
        };
        if plan.name != name {
            return Err(GgufWriteError::Sequence(format!(
                "tensor '{name}' given where '{}' comes next",
                plan.name
            )));
        }
        if data.len() as u64 != plan.n_bytes() {
            return Err(GgufWriteError::Sequence(format!(
                "tensor '{name}' has {} bytes, its plan {} ({} {:?})",
                data.len(),
                plan.n_bytes(),
                plan.ggml_type,
                plan.dims
            )));
        }
        let pad = (padded(data.len() as u64) - data.len() as u64) as usize;
        self.out.write_all(data)?;
        self.out.write_all(&[0u8; ALIGNMENT as usize][..pad])?;
        self.written += (data.len() + pad) as u64;
        self.next += 1;
        Ok(())
    }

    /// Checks every planned tensor was written and returns the output and the bytes
    /// written.
    pub fn finish(mut self) -> Result<(W, u64)> {
        if self.next != self.plan.len() {
            return Err(GgufWriteError::Sequence(format!(
                "{} of {} tensors written; '{}' is missing",
                self.next,
                self.plan.len(),
                self.plan[self.next].name
            )));
        }
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn the_reader_reads_what_the_writer_wrote() {
        let metadata = vec![
            (
                "general.architecture".to_string(),
                GgufValue::String("llama".into()),
            ),
            ("llama.block_count".to_string(), GgufValue::U32(1)),
            ("llama.rope.freq_base".to_string(), GgufValue::F32(10000.0)),
            (
                "tokenizer.ggml.add_bos_token".to_string(),
                GgufValue::Bool(true),
            ),
            (
                "tokenizer.ggml.tokens".to_string(),
                GgufValue::Array(vec![
                    GgufValue::String("a".into()),
                    GgufValue::String("é".into()),
                ]),
            ),
            (
                "tokenizer.ggml.token_type".to_string(),
                GgufValue::Array(vec![GgufValue::I32(1), GgufValue::I32(3)]),
            ),
            ("x.u64".to_string(), GgufValue::U64(1 << 40)),
            ("x.f64".to_string(), GgufValue::F64(-0.5)),
            ("x.i8".to_string(), GgufValue::I8(-3)),
        ];
        // 3 values (12 bytes, padded to 32), then a 2x3 matrix.
        let a = [1.0f32, 2.0, 3.0];
        let w = [0.5f32, -1.0, 2.0, 4.0, 8.0, -16.0];
        let plan = vec![
            TensorPlan::from_shape("a.weight", &[3], GgmlType::F32),
            TensorPlan::from_shape("w.weight", &[2, 3], GgmlType::F32),
        ];
        let mut g = GgufWriter::start(Vec::new(), &metadata, plan).expect("start");
        g.write_tensor("a.weight", &f32_bytes(&a)).expect("a");
        g.write_tensor("w.weight", &f32_bytes(&w)).expect("w");
        let (bytes, n) = g.finish().expect("finish");
        assert_eq!(n as usize, bytes.len());
        assert_eq!(bytes.len() % 32, 0);
        let f = GgufFile::from_bytes("mem.gguf", bytes).expect("parses");
        assert_eq!(f.version(), 3);
        for (k, v) in &metadata {
            assert_eq!(f.get(k), Some(v), "{k}");
        }
        assert_eq!(f.tensors()[1].offset, 32);
        assert_eq!(f.dequantize("a.weight").expect("a"), (a.to_vec(), vec![3]));
        assert_eq!(
            f.dequantize("w.weight").expect("w"),
            (w.to_vec(), vec![2, 3])
        );
    }

    #[test]
    fn refuses_what_llama_cpp_would_not_read() {
        let dup = vec![
            ("k".to_string(), GgufValue::U32(1)),
            ("k".to_string(), GgufValue::U32(2)),
        ];
        assert!(GgufWriter::start(Vec::new(), &dup, vec![]).is_err());
        let long = TensorPlan::from_shape("x".repeat(64), &[4], GgmlType::F32);
        assert!(GgufWriter::start(Vec::new(), &[], vec![long]).is_err());
        let odd = TensorPlan::from_shape("q.weight", &[2, 48], GgmlType::Q8_0);
        let e = GgufWriter::start(Vec::new(), &[], vec![odd])
            .err()
            .expect("refused");
        assert!(e.to_string().contains("blocks of 32"), "{e}");
        let plan = vec![
            TensorPlan::from_shape("a", &[2], GgmlType::F32),
            TensorPlan::from_shape("b", &[2], GgmlType::F32),
        ];
        let mut g = GgufWriter::start(Vec::new(), &[], plan.clone()).expect("start");
        assert!(g.write_tensor("b", &[0; 8]).is_err(), "out of order");
        assert!(g.write_tensor("a", &[0; 4]).is_err(), "wrong size");
        g.write_tensor("a", &[0; 8]).expect("a");
        assert!(g.finish().is_err(), "b is missing");
    }
}
