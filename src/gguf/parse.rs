//! The header parser: magic, version, metadata and the tensor directory, every length,
//! count and offset checked against the file size before it is used.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::{le4, le8, GgmlType, GgufError, GgufTensorInfo, GgufValue, Result};

/// `"GGUF"` as it appears at the start of every file.
const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data-section alignment when the file does not set `general.alignment`.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`: llama.cpp refuses tensors with more dims, and so do we.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal; this bounds the recursion on a malicious file.
const MAX_ARRAY_DEPTH: u32 = 8;

/// What a read was for, rendered only when it fails.
#[derive(Clone, Copy)]
enum Ctx<'a> {
    Header(&'static str),
    KeyName(u64),
    Value(&'a str),
    TensorName(u64),
    TensorField(&'a str, &'static str),
}

impl fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ctx::Header(field) => write!(f, "the header's {field}"),
            Ctx::KeyName(i) => write!(f, "the key of metadata entry #{i}"),
            Ctx::Value(key) => write!(f, "the value of metadata key '{key}'"),
            Ctx::TensorName(i) => write!(f, "the name of tensor info #{i}"),
            Ctx::TensorField(name, field) => write!(f, "the {field} of tensor info '{name}'"),
        }
    }
}

/// What the header says: the reader keeps all of it.
pub(super) struct Header {
    pub(super) version: u32,
    pub(super) alignment: u64,
    pub(super) data_offset: u64,
    pub(super) metadata: Vec<(String, GgufValue)>,
    pub(super) metadata_index: HashMap<String, usize>,
    pub(super) tensors: Vec<GgufTensorInfo>,
    pub(super) tensor_index: HashMap<String, usize>,
}

pub(super) struct Parser<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) path: &'a Path,
}

impl<'a> Parser<'a> {
    fn len(&self) -> u64 {
        self.buf.len() as u64
    }

    fn truncated(&self, what: String, start: u64, end: u64) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            what,
            start,
            end,
            len: self.len(),
        }
    }

    fn malformed(&self, what: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.to_path_buf(),
            what,
        }
    }

    fn take(&mut self, n: u64, ctx: Ctx<'_>) -> Result<&'a [u8]> {
        let start = self.pos as u64;
        let end = start.saturating_add(n);
        if end > self.len() {
            return Err(self.truncated(ctx.to_string(), start, end));
        }
        let slice = &self.buf[self.pos..end as usize];
        self.pos = end as usize;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, ctx: Ctx<'_>) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, ctx)?);
        Ok(out)
    }

    fn u32(&mut self, ctx: Ctx<'_>) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(ctx)?))
    }

    fn u64(&mut self, ctx: Ctx<'_>) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(ctx)?))
    }

    fn string(&mut self, ctx: Ctx<'_>) -> Result<String> {
        let n = self.u64(ctx)?;
        let bytes = self.take(n, ctx)?;
        // gguf-py decodes strictly too; a vocabulary with invalid UTF-8 is not one
        // transformers could load either.
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.malformed(format!("{ctx} is not valid UTF-8: {e}")))
    }

    pub(super) fn parse(mut self) -> Result<Header> {
        let magic = self.take(4, Ctx::Header("magic"))?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic {
                path: self.path.to_path_buf(),
                found: magic.to_vec(),
            });
        }
        let version = self.u32(Ctx::Header("version"))?;
        match version {
            2 | 3 => {}
            1 => return Err(self.unsupported(
                version,
                "version 1 (32-bit counts) predates llama.cpp's 2023 format; reconvert the model",
            )),
            v if v & 0xffff == 0 && matches!(v.swap_bytes(), 2 | 3) => {
                return Err(self.unsupported(
                    version,
                    "this looks like a big-endian file, which is not supported",
                ))
            }
            _ => return Err(self.unsupported(version, "only versions 2 and 3 are supported")),
        }
        let tensor_count = self.u64(Ctx::Header("tensor count"))?;
        let kv_count = self.u64(Ctx::Header("metadata count"))?;

        // Each entry takes some bytes, so a count beyond what the file could hold is a
        // lie; bound the allocations by it.
        let remaining = self.len() - self.pos as u64;
        let kv_cap = kv_count.min(remaining / 13) as usize; // key length, type, 1-byte value
        let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(kv_cap);
        let mut metadata_index = HashMap::with_capacity(kv_cap);
        for i in 0..kv_count {
            let key = self.string(Ctx::KeyName(i))?;
            let ty = self.u32(Ctx::Value(&key))?;
            let value = self.value(ty, Ctx::Value(&key), 0)?;
            if metadata_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(self.malformed(format!("metadata key '{key}' appears twice")));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata_index.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => match metadata[i].1.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(self.malformed(format!(
                        "general.alignment is {}, not a power of two",
                        metadata[i].1
                    )))
                }
            },
        };

        let remaining = self.len() - self.pos as u64;
        let tensor_cap = tensor_count.min(remaining / 24) as usize; // name length, n_dims, type, offset
        let mut tensors: Vec<GgufTensorInfo> = Vec::with_capacity(tensor_cap);
        let mut tensor_index = HashMap::with_capacity(tensor_cap);
        for i in 0..tensor_count {
            let info = self.tensor_info(i, alignment)?;
            if tensor_index
                .insert(info.name.clone(), tensors.len())
                .is_some()
            {
                return Err(self.malformed(format!("tensor '{}' appears twice", info.name)));
            }
            tensors.push(info);
        }

        // The data section starts at the next multiple of the alignment.
        let header_end = self.pos as u64;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        for t in &mut tensors {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= self.len() => t.file_offset = start,
                _ => {
                    return Err(self.truncated(
                        format!("tensor '{}'", t.name),
                        data_offset.saturating_add(t.offset),
                        data_offset
                            .saturating_add(t.offset)
                            .saturating_add(t.n_bytes),
                    ))
                }
            }
        }
        Ok(Header {
            version,
            alignment,
            data_offset,
            metadata,
            metadata_index,
            tensors,
            tensor_index,
        })
    }

    fn unsupported(&self, version: u32, detail: &'static str) -> GgufError {
        GgufError::UnsupportedVersion {
            path: self.path.to_path_buf(),
            version,
            detail,
        }
    }

    fn tensor_info(&mut self, index: u64, alignment: u64) -> Result<GgufTensorInfo> {
        let name = self.string(Ctx::TensorName(index))?;
        let n_dims = self.u32(Ctx::TensorField(&name, "dim count"))?;
        if n_dims > MAX_DIMS {
            return Err(self.malformed(format!(
                "tensor '{name}' has {n_dims} dims; ggml allows at most {MAX_DIMS}"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64(Ctx::TensorField(&name, "dims"))?);
        }
        let type_id = self.u32(Ctx::TensorField(&name, "type"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
            self.malformed(format!(
                "tensor '{name}' has unknown ggml type id {type_id}"
            ))
        })?;
        let offset = self.u64(Ctx::TensorField(&name, "offset"))?;

        // ggml stores whole blocks per row, so the innermost dim must be a multiple of the
        // block size; the element count must not overflow (ggml uses int64).
        let block = ggml_type.block_size() as u64;
        let ne0 = dims.first().copied().unwrap_or(1);
        if ne0 % block != 0 {
            return Err(self.malformed(format!(
                "tensor '{name}' has {ne0} columns, not a multiple of {ggml_type}'s block size {block}"
            )));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64);
        let n_bytes =
            n_elements.and_then(|n| (n / block).checked_mul(ggml_type.type_size() as u64));
        let Some(n_bytes) = n_bytes else {
            return Err(self.malformed(format!("tensor '{name}' dims {dims:?} overflow")));
        };
        if offset % alignment != 0 {
            return Err(self.malformed(format!(
                "tensor '{name}' has data offset {offset}, not a multiple of the alignment {alignment}"
            )));
        }
        Ok(GgufTensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            file_offset: 0, // set once the data section's start is known
            n_bytes,
        })
    }

    fn value(&mut self, ty: u32, ctx: Ctx<'_>, depth: u32) -> Result<GgufValue> {
        Ok(match ty {
            0 => GgufValue::U8(u8::from_le_bytes(self.array(ctx)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array(ctx)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(ctx)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(ctx)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(ctx)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(ctx)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(ctx)?)),
            7 => {
                let [b] = self.array::<1>(ctx)?;
                GgufValue::Bool(self.bool_byte(b, ctx)?)
            }
            8 => GgufValue::String(self.string(ctx)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(format!(
                        "{ctx} nests arrays more than {MAX_ARRAY_DEPTH} deep"
                    )));
                }
                let elem = self.u32(ctx)?;
                let n = self.u64(ctx)?;
                self.array_value(elem, n, ctx, depth + 1)?
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.array(ctx)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(ctx)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(ctx)?)),
            other => return Err(self.malformed(format!("{ctx} has unknown value type {other}"))),
        })
    }

    fn bool_byte(&self, b: u8, ctx: Ctx<'_>) -> Result<bool> {
        match b {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.malformed(format!("{ctx} is a bool stored as {other}"))),
        }
    }

    fn array_value(&mut self, elem: u32, n: u64, ctx: Ctx<'_>, depth: u32) -> Result<GgufValue> {
        let fixed: Option<u64> = match elem {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        if let Some(size) = fixed {
            // Fixed-size elements: take all the bytes at once (one bounds check, and the
            // error names the whole range), then decode in a tight loop.
            let Some(total) = n.checked_mul(size) else {
                return Err(self.malformed(format!("{ctx} claims {n} elements")));
            };
            let bytes = self.take(total, ctx)?;
            let items: Vec<GgufValue> = match elem {
                0 => bytes.iter().map(|&b| GgufValue::U8(b)).collect(),
                1 => bytes.iter().map(|&b| GgufValue::I8(b as i8)).collect(),
                7 => bytes
                    .iter()
                    .map(|&b| self.bool_byte(b, ctx).map(GgufValue::Bool))
                    .collect::<Result<_>>()?,
                2 => bytes
                    .chunks_exact(2)
                    .map(|c| GgufValue::U16(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                3 => bytes
                    .chunks_exact(2)
                    .map(|c| GgufValue::I16(i16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                4 => bytes
                    .chunks_exact(4)
                    .map(|c| GgufValue::U32(u32::from_le_bytes(le4(c))))
                    .collect(),
                5 => bytes
                    .chunks_exact(4)
                    .map(|c| GgufValue::I32(i32::from_le_bytes(le4(c))))
                    .collect(),
                6 => bytes
                    .chunks_exact(4)
                    .map(|c| GgufValue::F32(f32::from_le_bytes(le4(c))))
                    .collect(),
                10 => bytes
                    .chunks_exact(8)
                    .map(|c| GgufValue::U64(u64::from_le_bytes(le8(c))))
                    .collect(),
                11 => bytes
                    .chunks_exact(8)
                    .map(|c| GgufValue::I64(i64::from_le_bytes(le8(c))))
                    .collect(),
                _ => bytes
                    .chunks_exact(8)
                    .map(|c| GgufValue::F64(f64::from_le_bytes(le8(c))))
                    .collect(),
            };
            return Ok(GgufValue::Array(items));
        }
        // Strings (8-byte length) and arrays (4-byte type + 8-byte count) take at least
        // that much each; a count the rest of the file cannot hold is a truncation.
        let min_size: u64 = match elem {
            8 => 8,
            9 => 12,
            other => {
                return Err(
                    self.malformed(format!("{ctx} is an array of unknown value type {other}"))
                )
            }
        };
        let start = self.pos as u64;
        let remaining = self.len() - start;
        if n > remaining / min_size {
            return Err(self.truncated(
                format!("{ctx} ({n} elements)"),
                start,
                start.saturating_add(n.saturating_mul(min_size)),
            ));
        }
        let mut items = Vec::with_capacity(n as usize);
        for _ in 0..n {
            items.push(self.value(elem, ctx, depth)?);
        }
        Ok(GgufValue::Array(items))
    }
}
