//! A reader for GGUF files (llama.cpp's single-file model format, versions 2 and 3).
//!
//! ftui fine-tunes LoRA adapters on top of a frozen base model held by libtorch. The
//! embedded default base model ships as one GGUF file (a quantized SmolLM2), and users
//! bring their own GGUF files too, so the crate needs to turn such a file into what the
//! training stack consumes: Hugging Face-layout `f32` weights, the architecture's
//! hyper-parameters, and a `tokenizers::Tokenizer` that gives the same token ids as
//! `transformers.AutoTokenizer.from_pretrained(dir, gguf_file=...)`.
//!
//! The file is memory-mapped and parsed once; every length, count and offset in it is
//! checked against the file size before it is used, so a truncated or corrupt file gives
//! a one-line [`GgufError`] naming the file and the problem, never a panic or a huge
//! allocation. Tensor data stays in the mapping until [`GgufFile::dequantize`] expands
//! it, block by block, with the same formulas as ggml's `dequantize_row_*`
//! (`ggml/src/ggml-quants.c`).
//!
//! Two llama.cpp conventions have to be undone to get Hugging Face tensors:
//! - GGUF lists a tensor's dims fastest-first (`ne[0]` is the column count), so the
//!   row-major PyTorch shape is the dims reversed ([`GgufTensorInfo::shape`]).
//! - llama.cpp's converter permutes the rows of Llama `attn_q`/`attn_k` weights for its
//!   rope kernel ([`unpermute_qk`] inverts it; [`GgufFile::dequantize_hf`] applies it
//!   where transformers does).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// `"GGUF"` as it appears at the start of every file.
const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data-section alignment when the file does not set `general.alignment`.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`: llama.cpp refuses tensors with more dims, and so do we.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal; this bounds the recursion on a malicious file.
const MAX_ARRAY_DEPTH: u32 = 8;
/// Tensors with fewer elements than this are dequantized on the calling thread: spawning
/// threads costs more than it saves on norms and small projections.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 18;

/// Result type of this module.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;

/// Everything that can go wrong reading a GGUF file. Each message is one line that starts
/// with the file's path, so it can be shown as is in the TUI's status line.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("{}: cannot read the file: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("{}: not a GGUF file: it starts with bytes {found:02x?}, expected \"GGUF\"", path.display())]
    BadMagic { path: PathBuf, found: Vec<u8> },
    /// A version this reader does not handle (1, big-endian files, future versions).
    #[error("{}: unsupported GGUF version {version}: {detail}", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        detail: &'static str,
    },
    /// Something the header or a tensor needs lies past the end of the file.
    #[error("{}: truncated: {what} needs bytes {start}..{end} but the file has {len}", path.display())]
    Truncated {
        path: PathBuf,
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    /// The bytes are there but make no sense (unknown type ids, bad UTF-8, overflowing
    /// sizes, duplicate names, shapes that do not fit the quantization, ...).
    #[error("{}: malformed: {what}", path.display())]
    Malformed { path: PathBuf, what: String },
    /// A metadata key the caller needs is absent.
    #[error("{}: metadata key '{key}' is missing", path.display())]
    MissingKey { path: PathBuf, key: String },
    /// A metadata key holds a value of another type than the caller needs.
    #[error("{}: metadata key '{key}' holds {found}, expected {expected}", path.display())]
    WrongType {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },
    /// No tensor of that name in the file.
    #[error("{}: no tensor named '{name}'", path.display())]
    MissingTensor { path: PathBuf, name: String },
    /// The tensor's ggml type has no dequantizer here.
    #[error("{}: tensor '{name}' has ggml type {ggml_type}, which this reader cannot dequantize (supported: {})", path.display(), GgmlType::supported_list())]
    UnsupportedType {
        path: PathBuf,
        name: String,
        ggml_type: GgmlType,
    },
    /// The tokenizer described by the metadata cannot be built.
    #[error("{}: tokenizer: {what}", path.display())]
    Tokenizer { path: PathBuf, what: String },
}

/// Keeps foreign error texts (tokenizers, io) to one line.
fn one_line(s: impl fmt::Display) -> String {
    s.to_string().replace(['\n', '\r'], " ")
}

// ---------------------------------------------------------------------------------------
// Metadata values
// ---------------------------------------------------------------------------------------

/// One metadata value. GGUF arrays are homogeneous, but may nest (arrays of arrays).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The GGUF name of this value's type (`"u32"`, `"string"`, `"array of string"`, ...),
    /// used in error messages.
    pub fn type_name(&self) -> String {
        match self {
            GgufValue::Array(items) => match items.first() {
                Some(first) => format!("array of {}", first.type_name()),
                None => "empty array".to_string(),
            },
            other => other.scalar_type_name().to_string(),
        }
    }

    fn scalar_type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "u8",
            GgufValue::I8(_) => "i8",
            GgufValue::U16(_) => "u16",
            GgufValue::I16(_) => "i16",
            GgufValue::U32(_) => "u32",
            GgufValue::I32(_) => "i32",
            GgufValue::U64(_) => "u64",
            GgufValue::I64(_) => "i64",
            GgufValue::F32(_) => "f32",
            GgufValue::F64(_) => "f64",
            GgufValue::Bool(_) => "bool",
            GgufValue::String(_) => "string",
            GgufValue::Array(_) => "array",
        }
    }

    /// Any integer that is not negative. Writers disagree on the integer width of counts
    /// (u32 vs u64, sometimes i32), so callers ask for a value, not a width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(u64::from(v)),
            GgufValue::U16(v) => Some(u64::from(v)),
            GgufValue::U32(v) => Some(u64::from(v)),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::U8(v) => Some(i64::from(v)),
            GgufValue::U16(v) => Some(i64::from(v)),
            GgufValue::U32(v) => Some(i64::from(v)),
            GgufValue::U64(v) => i64::try_from(v).ok(),
            GgufValue::I8(v) => Some(i64::from(v)),
            GgufValue::I16(v) => Some(i64::from(v)),
            GgufValue::I32(v) => Some(i64::from(v)),
            GgufValue::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Any number, floats and integers alike (an `f32` widens exactly).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(f64::from(v)),
            GgufValue::F64(v) => Some(v),
            // Integers above 2^53 round; no hyper-parameter comes near that.
            _ => self
                .as_i64()
                .map(|v| v as f64)
                .or(self.as_u64().map(|v| v as f64)),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

impl fmt::Display for GgufValue {
    /// A short rendering for a model-info view: long arrays (vocabularies) are elided.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 6;
        match self {
            GgufValue::U8(v) => write!(f, "{v}"),
            GgufValue::I8(v) => write!(f, "{v}"),
            GgufValue::U16(v) => write!(f, "{v}"),
            GgufValue::I16(v) => write!(f, "{v}"),
            GgufValue::U32(v) => write!(f, "{v}"),
            GgufValue::I32(v) => write!(f, "{v}"),
            GgufValue::U64(v) => write!(f, "{v}"),
            GgufValue::I64(v) => write!(f, "{v}"),
            GgufValue::F32(v) => write!(f, "{v}"),
            GgufValue::F64(v) => write!(f, "{v}"),
            GgufValue::Bool(v) => write!(f, "{v}"),
            GgufValue::String(s) => write!(f, "{s:?}"),
            GgufValue::Array(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().take(SHOWN).enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if items.len() > SHOWN {
                    write!(f, ", ... ({} items)", items.len())?;
                }
                write!(f, "]")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// ggml tensor types
// ---------------------------------------------------------------------------------------

/// A ggml tensor type, with the numeric ids of `enum ggml_type` (`ggml/include/ggml.h`).
/// Every type a GGUF file may hold is listed, so that the byte size of every tensor can be
/// checked at open time even where the data cannot be dequantized.
#[allow(non_camel_case_types)] // the ggml spellings are what users see in model cards
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

impl GgmlType {
    /// `(id, type, elements per block, bytes per block)`, from ggml's `type_traits`.
    const TABLE: [(u32, GgmlType, usize, usize); 32] = [
        (0, GgmlType::F32, 1, 4),
        (1, GgmlType::F16, 1, 2),
        (2, GgmlType::Q4_0, 32, 18),
        (3, GgmlType::Q4_1, 32, 20),
        (6, GgmlType::Q5_0, 32, 22),
        (7, GgmlType::Q5_1, 32, 24),
        (8, GgmlType::Q8_0, 32, 34),
        // ggml's block_q8_1 is two f16 plus 32 quants (gguf-py still says 40); it is
        // an intermediate type that no converter writes.
        (9, GgmlType::Q8_1, 32, 36),
        (10, GgmlType::Q2_K, 256, 84),
        (11, GgmlType::Q3_K, 256, 110),
        (12, GgmlType::Q4_K, 256, 144),
        (13, GgmlType::Q5_K, 256, 176),
        (14, GgmlType::Q6_K, 256, 210),
        (15, GgmlType::Q8_K, 256, 292),
        (16, GgmlType::IQ2_XXS, 256, 66),
        (17, GgmlType::IQ2_XS, 256, 74),
        (18, GgmlType::IQ3_XXS, 256, 98),
        (19, GgmlType::IQ1_S, 256, 50),
        (20, GgmlType::IQ4_NL, 32, 18),
        (21, GgmlType::IQ3_S, 256, 110),
        (22, GgmlType::IQ2_S, 256, 82),
        (23, GgmlType::IQ4_XS, 256, 136),
        (24, GgmlType::I8, 1, 1),
        (25, GgmlType::I16, 1, 2),
        (26, GgmlType::I32, 1, 4),
        (27, GgmlType::I64, 1, 8),
        (28, GgmlType::F64, 1, 8),
        (29, GgmlType::IQ1_M, 256, 56),
        (30, GgmlType::BF16, 1, 2),
        (34, GgmlType::TQ1_0, 256, 54),
        (35, GgmlType::TQ2_0, 256, 66),
        (39, GgmlType::MXFP4, 32, 17),
    ];

    /// The type with ggml id `id`, if it is one a GGUF file may hold.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Self::TABLE.iter().find(|row| row.0 == id).map(|row| row.1)
    }

    fn row(self) -> (u32, GgmlType, usize, usize) {
        // Every variant has a row; the fallback only keeps this total without a panic.
        Self::TABLE
            .iter()
            .copied()
            .find(|row| row.1 == self)
            .unwrap_or((0, GgmlType::F32, 1, 4))
    }

    /// ggml's numeric id.
    pub fn id(self) -> u32 {
        self.row().0
    }

    /// Elements per quantization block (1 for plain float/int types).
    pub fn block_size(self) -> usize {
        self.row().2
    }

    /// Bytes per quantization block.
    pub fn type_size(self) -> usize {
        self.row().3
    }

    /// Whether [`GgufFile::dequantize`] handles this type.
    pub fn can_dequantize(self) -> bool {
        matches!(
            self,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q8_0
                | GgmlType::Q2_K
                | GgmlType::Q3_K
                | GgmlType::Q4_K
                | GgmlType::Q5_K
                | GgmlType::Q6_K
        )
    }

    fn supported_list() -> String {
        Self::TABLE
            .iter()
            .filter(|row| row.1.can_dequantize())
            .map(|row| format!("{:?}", row.1))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Where one tensor lives and how it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Dims in GGUF order: `dims[0]` is the innermost (fastest-varying) one.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the file's data section.
    pub offset: u64,
    /// Absolute offset of the data in the file.
    pub file_offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl GgufTensorInfo {
    /// Number of elements (1 for a tensor without dims).
    pub fn n_elements(&self) -> u64 {
        // Checked at open time not to overflow.
        self.dims.iter().product()
    }

    /// The row-major (PyTorch) shape: the GGUF dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        // Every dim fits a usize: the data, at least one byte per 32 elements, is mapped.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// Token ids the tokenizer metadata names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecialTokenIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub unk: Option<u32>,
}

/// The hyper-parameters of a llama-family model, as GGUF names them.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufLlamaParams {
    /// `general.architecture`, e.g. `"llama"`; the prefix of the keys below.
    pub architecture: String,
    /// `{arch}.block_count`: number of transformer layers.
    pub block_count: usize,
    /// `{arch}.embedding_length`: hidden size.
    pub embedding_length: usize,
    /// `{arch}.feed_forward_length`: MLP intermediate size.
    pub feed_forward_length: usize,
    /// `{arch}.attention.head_count`.
    pub head_count: usize,
    /// `{arch}.attention.head_count_kv`; llama.cpp defaults it to `head_count`.
    pub head_count_kv: usize,
    /// Per-head dimension: `{arch}.attention.key_length` if present, else
    /// `embedding_length / head_count`.
    pub head_dim: usize,
    /// `{arch}.attention.layer_norm_rms_epsilon`. GGUF stores it as an f32, and so do we:
    /// widening it gives exactly the value transformers puts in its config.
    pub rms_norm_eps: f32,
    /// `{arch}.rope.freq_base` (an f32 in GGUF); llama.cpp defaults it to 10000.
    pub rope_freq_base: f32,
    /// `{arch}.rope.dimension_count`, if present.
    pub rope_dimension_count: Option<usize>,
    /// `{arch}.context_length`: the training context.
    pub context_length: usize,
    /// `{arch}.vocab_size`, else the number of tokens, else `token_embd`'s row count.
    pub vocab_size: usize,
    /// True when there is no `output.weight`: the LM head reuses the token embeddings.
    pub tie_word_embeddings: bool,
}

// ---------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------

/// The bytes of a GGUF file: normally a read-only mapping, or an owned buffer for files
/// built in memory (tests, downloads not yet written to disk).
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file: metadata and tensor directory in memory, tensor data mapped.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, GgufValue)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    // The derived form would print whole vocabularies.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses the file at `path`, checking the header, every metadata entry and
    /// every tensor's extent against the file size.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the mapping is read-only and private to this value. Like every mmap
        // reader, we rely on the file not being truncated or rewritten while it is open;
        // model files are written once and then only read.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Storage::Mapped(mmap))
    }

    /// Parses a GGUF image held in memory; `name` stands in for the path in messages.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse(name.into(), Storage::Owned(bytes))
    }

    fn parse(path: PathBuf, storage: Storage) -> Result<GgufFile> {
        let header = Parser {
            buf: storage.bytes(),
            pos: 0,
            path: &path,
        }
        .parse()?;
        Ok(GgufFile {
            path,
            storage,
            version: header.version,
            alignment: header.alignment,
            data_offset: header.data_offset,
            metadata: header.metadata,
            metadata_index: header.metadata_index,
            tensors: header.tensors,
            tensor_index: header.tensor_index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of each tensor in it.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// All metadata entries, in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &GgufValue)> + '_ {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&GgufValue> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &GgufValue) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
            found: match found {
                GgufValue::Array(_) => found.type_name(),
                _ => format!("{} {found}", found.type_name()),
            },
        }
    }

    /// A non-negative integer of any width.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer", v))
    }

    /// A non-negative integer that fits a `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.require(key)?;
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer", v))
    }

    /// Any number.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.as_f64()
            .ok_or_else(|| self.wrong_type(key, "a number", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| self.wrong_type(key, "a bool", v))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str()
            .ok_or_else(|| self.wrong_type(key, "a string", v))
    }

    pub fn get_array(&self, key: &str) -> Result<&[GgufValue]> {
        let v = self.require(key)?;
        v.as_array()
            .ok_or_else(|| self.wrong_type(key, "an array", v))
    }

    /// An array whose every element is a string.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        let wrong = || self.wrong_type(key, "an array of strings", v);
        v.as_array()
            .ok_or_else(wrong)?
            .iter()
            .map(|item| item.as_str().ok_or_else(wrong))
            .collect()
    }

    /// An array whose every element is an integer.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        let v = self.require(key)?;
        let wrong = || self.wrong_type(key, "an array of integers", v);
        v.as_array()
            .ok_or_else(wrong)?
            .iter()
            .map(|item| item.as_i64().ok_or_else(wrong))
            .collect()
    }

    /// Optional variant of a typed getter: `Ok(None)` when the key is absent, an error
    /// when it is present with the wrong type.
    fn optional<T>(
        &self,
        key: &str,
        get: impl FnOnce(&Self, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.get(key).is_some() {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Tensor names in file order.
    pub fn tensor_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    fn require_tensor(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    fn data_of(&self, info: &GgufTensorInfo) -> &[u8] {
        // The range was checked against the file size at open time.
        let start = info.file_offset as usize;
        &self.storage.bytes()[start..start + info.n_bytes as usize]
    }

    /// The tensor's stored (possibly quantized) bytes, for callers that keep weights
    /// quantized.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let info = self.require_tensor(name)?;
        Ok(self.data_of(info))
    }

    /// The tensor as `f32` values in row-major order, with its PyTorch shape (the GGUF
    /// dims reversed). No layout changes beyond that: see [`GgufFile::dequantize_hf`].
    pub fn dequantize(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let info = self.require_tensor(name)?;
        if !info.ggml_type.can_dequantize() {
            return Err(GgufError::UnsupportedType {
                path: self.path.clone(),
                name: name.to_string(),
                ggml_type: info.ggml_type,
            });
        }
        let mut out = vec![0f32; info.n_elements() as usize];
        dequantize_into(info.ggml_type, self.data_of(info), &mut out);
        Ok((out, info.shape()))
    }

    /// The tensor as Hugging Face stores it: [`GgufFile::dequantize`], then, for the
    /// `llama` architecture's `attn_q`/`attn_k` tensors, the inverse of llama.cpp's rope
    /// permutation ([`unpermute_qk`], with the head count for q and the kv-head count for
    /// k). This is what transformers' `LlamaTensorProcessor` does, and only for
    /// `general.architecture == "llama"`, as there.
    pub fn dequantize_hf(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let (data, shape) = self.dequantize(name)?;
        let is_q = name.contains(".attn_q.");
        let is_k = name.contains(".attn_k.");
        if !(is_q || is_k) || self.get_str("general.architecture")? != "llama" {
            return Ok((data, shape));
        }
        let heads = self.get_usize("llama.attention.head_count")?;
        let kv_heads = self
            .optional("llama.attention.head_count_kv", Self::get_usize)?
            .unwrap_or(heads);
        let n_head = if is_q { heads } else { kv_heads };
        let rows = shape.first().copied().unwrap_or(1);
        if n_head == 0 || rows % (2 * n_head) != 0 {
            return Err(GgufError::Malformed {
                path: self.path.clone(),
                what: format!(
                    "tensor '{name}' has {rows} rows, which do not split into {n_head} heads of \
                     rotary pairs"
                ),
            });
        }
        Ok((unpermute_qk(&data, &shape, n_head), shape))
    }

    /// Token ids named by `tokenizer.ggml.{bos,eos,padding,unknown}_token_id`.
    pub fn special_tokens(&self) -> SpecialTokenIds {
        let id = |key: &str| {
            self.get(key)
                .and_then(GgufValue::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        SpecialTokenIds {
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id"),
            pad: id("tokenizer.ggml.padding_token_id"),
            unk: id("tokenizer.ggml.unknown_token_id"),
        }
    }

    /// The Jinja chat template (`tokenizer.chat_template`), if the file has one.
    pub fn chat_template(&self) -> Option<String> {
        self.get("tokenizer.chat_template")
            .and_then(GgufValue::as_str)
            .map(str::to_string)
    }

    /// The model's shape, read from `general.architecture` and the `{arch}.*` keys.
    pub fn llama_hparams(&self) -> Result<GgufLlamaParams> {
        let arch = self.get_str("general.architecture")?.to_string();
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let head_count = self.get_usize(&key("attention.head_count"))?;
        let embedding_length = self.get_usize(&key("embedding_length"))?;
        if head_count == 0 {
            return Err(GgufError::Malformed {
                path: self.path.clone(),
                what: format!("{} is 0", key("attention.head_count")),
            });
        }
        let head_count_kv = self
            .optional(&key("attention.head_count_kv"), Self::get_usize)?
            .unwrap_or(head_count);
        let head_dim = self
            .optional(&key("attention.key_length"), Self::get_usize)?
            .unwrap_or(embedding_length / head_count);
        let vocab_size = match self.optional(&key("vocab_size"), Self::get_usize)? {
            Some(n) => n,
            None => match self
                .get("tokenizer.ggml.tokens")
                .and_then(GgufValue::as_array)
            {
                Some(tokens) => tokens.len(),
                None => {
                    let embd = self.require_tensor("token_embd.weight")?;
                    embd.dims.get(1).copied().unwrap_or(1) as usize
                }
            },
        };
        Ok(GgufLlamaParams {
            block_count: self.get_usize(&key("block_count"))?,
            embedding_length,
            feed_forward_length: self.get_usize(&key("feed_forward_length"))?,
            head_count,
            head_count_kv,
            head_dim,
            rms_norm_eps: self.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32,
            rope_freq_base: self
                .optional(&key("rope.freq_base"), Self::get_f64)?
                .map_or(10_000.0, |v| v as f32),
            rope_dimension_count: self.optional(&key("rope.dimension_count"), Self::get_usize)?,
            context_length: self.get_usize(&key("context_length"))?,
            vocab_size,
            tie_word_embeddings: self.tensor_info("output.weight").is_none(),
            architecture: arch,
        })
    }

    /// The tokenizer the metadata describes, built the way transformers'
    /// `integrations/gguf/gguf_tokenizer_mapping.py` builds it for
    /// `tokenizer.ggml.model == "gpt2"` (byte-level BPE), so that token ids match
    /// `AutoTokenizer.from_pretrained(dir, gguf_file=...)`:
    /// - vocabulary from `tokenizer.ggml.tokens` (a token that uses characters outside
    ///   the GPT-2 byte alphabet is respelled byte by byte), merges from
    ///   `tokenizer.ggml.merges`; BPE without unk token, dropout or subword affixes;
    /// - the GPT-2 `ByteLevel` pre-tokenizer (no prefix space, GPT-2 regex), except for
    ///   the `tokenizer.ggml.pre` names transformers maps to their own split regex
    ///   (llama-bpe, qwen2, ...); llama.cpp's other names (`smollm`, ...) are ignored by
    ///   transformers and so here;
    /// - `ByteLevel` decoder;
    /// - control tokens (`token_type` 3) as special added tokens, user-defined ones (4)
    ///   as plain added tokens, plus the bos/eos/unk/pad tokens and GPT-2's default
    ///   `<|endoftext|>` as special tokens when they are in the vocabulary;
    /// - a template post-processor that prepends BOS / appends EOS only when
    ///   `tokenizer.ggml.add_bos_token` / `add_eos_token` say so (SmolLM2: neither).
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let err = |what: String| GgufError::Tokenizer {
            path: self.path.clone(),
            what: one_line(what),
        };
        let model = self.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(err(format!(
                "tokenizer.ggml.model is '{model}'; only 'gpt2' (byte-level BPE) is supported"
            )));
        }
        let tokens = self.get_str_array("tokenizer.ggml.tokens")?;
        let merge_lines = self.get_str_array("tokenizer.ggml.merges")?;
        let token_types = self.optional("tokenizer.ggml.token_type", Self::get_i64_array)?;

        let alphabet = byte_alphabet();
        let in_alphabet: HashSet<char> = alphabet.iter().copied().collect();
        let spelled_in_alphabet = |t: &str| t.chars().all(|c| in_alphabet.contains(&c));

        let mut vocab = Vocab::default();
        for (id, token) in tokens.iter().enumerate() {
            let spelled = if spelled_in_alphabet(token) {
                (*token).to_string()
            } else {
                token.bytes().map(|b| alphabet[usize::from(b)]).collect()
            };
            let id = u32::try_from(id).map_err(|_| err("more than 2^32 tokens".to_string()))?;
            // As in the Python dict comprehension, a later duplicate wins.
            vocab.insert(spelled, id);
        }
        let mut merges = Vec::with_capacity(merge_lines.len());
        for (i, line) in merge_lines.iter().enumerate() {
            match line.split_once(' ') {
                Some((a, b)) if !b.contains(' ') => merges.push((a.to_string(), b.to_string())),
                _ => {
                    return Err(err(format!(
                        "merge #{i} {line:?} is not two tokens separated by one space"
                    )))
                }
            }
        }

        // Special and user-defined tokens, collected before `vocab` moves into the model.
        let mut special: Vec<String> = Vec::new();
        let mut user_defined: Vec<String> = Vec::new();
        if let Some(types) = &token_types {
            for (token, &ty) in tokens.iter().zip(types) {
                if ty == 3 && spelled_in_alphabet(token) {
                    // A "control" token outside the byte alphabet is a llama.cpp mislabel;
                    // transformers skips it rather than grow the vocabulary.
                    special.push((*token).to_string());
                } else if ty == 4 && vocab.contains_key(*token) {
                    user_defined.push((*token).to_string());
                }
            }
        }
        // transformers constructs a GPT2Tokenizer, whose default special tokens are
        // `<|endoftext|>`, then passes the file's bos/eos/unk/pad as special tokens; each is
        // registered as a special added token. (A name that is not in the vocabulary would
        // get a new id past the embedding matrix there; we leave such names out.)
        let ids = self.special_tokens();
        let named = [ids.bos, ids.eos, ids.unk, ids.pad]
            .into_iter()
            .flatten()
            .filter_map(|id| tokens.get(id as usize).map(|t| (*t).to_string()));
        for token in std::iter::once("<|endoftext|>".to_string()).chain(named) {
            if vocab.contains_key(&token) && !special.contains(&token) {
                special.push(token);
            }
        }

        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            // transformers spells these as empty strings rather than None; same behaviour,
            // and it keeps `to_string()` identical to the Python tokenizer's JSON.
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix(String::new())
            .fuse_unk(false)
            .build()
            .map_err(|e| err(format!("cannot build the BPE model: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);

        let pre_type = self
            .get("tokenizer.ggml.pre")
            .and_then(GgufValue::as_str)
            .unwrap_or("");
        let pre_tokenizer: PreTokenizerWrapper = match split_regex_for(pre_type) {
            Some(regex) => {
                let split = Split::new(
                    SplitPattern::Regex(regex.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| {
                    err(format!(
                        "cannot compile the split regex for '{pre_type}': {e}"
                    ))
                })?;
                PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(vec![
                    split.into(),
                    ByteLevel::new(false, true, false).into(),
                ]))
            }
            None => ByteLevel::new(false, true, true).into(),
        };
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

        // transformers' update_post_processor: "{bos}:0 $A:0 {eos}:0" with each part only
        // when asked for. The default for a gpt2-type vocabulary is neither.
        let add_bos = self
            .optional("tokenizer.ggml.add_bos_token", Self::get_bool)?
            .unwrap_or(false);
        let add_eos = self
            .optional("tokenizer.ggml.add_eos_token", Self::get_bool)?
            .unwrap_or(false);
        let token_of = |id: Option<u32>, wanted: bool| {
            id.filter(|_| wanted)
                .and_then(|i| tokens.get(i as usize).map(|t| ((*t).to_string(), i)))
        };
        let bos = token_of(ids.bos, add_bos);
        let eos = token_of(ids.eos, add_eos);
        let piece =
            |t: &Option<(String, u32)>, seq: u32| t.as_ref().map(|(s, _)| format!("{s}:{seq}"));
        let single: Vec<String> = [piece(&bos, 0), Some("$A:0".into()), piece(&eos, 0)]
            .into_iter()
            .flatten()
            .collect();
        let pair: Vec<String> = single
            .iter()
            .cloned()
            .chain(
                [piece(&bos, 1), Some("$B:1".into()), piece(&eos, 1)]
                    .into_iter()
                    .flatten(),
            )
            .collect();
        let template_specials: Vec<(String, u32)> = bos.iter().chain(eos.iter()).cloned().collect();
        let post = TemplateProcessing::builder()
            .try_single(single)
            .and_then(|b| b.try_pair(pair))
            .map_err(|e| err(format!("cannot build the post-processor template: {e}")))?
            .special_tokens(template_specials)
            .build()
            .map_err(|e| err(format!("cannot build the post-processor: {e}")))?;
        tokenizer.with_post_processor(Some(post));

        tokenizer
            .add_special_tokens(special.into_iter().map(|t| AddedToken::from(t, true)))
            .map_err(|e| err(format!("cannot add special tokens: {e}")))?;
        tokenizer
            .add_tokens(
                user_defined
                    .into_iter()
                    .map(|t| AddedToken::from(t, false).normalized(false)),
            )
            .map_err(|e| err(format!("cannot add user-defined tokens: {e}")))?;
        Ok(tokenizer)
    }
}

/// GPT-2's byte-to-character table (`bytes_to_unicode`): printable Latin-1 bytes stand for
/// themselves, the other 68 bytes map to U+0100.. in byte order.
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).unwrap_or('\u{fffd}');
    }
    table
}

// The split regexes transformers substitutes for the GPT-2 one, by `tokenizer.ggml.pre`
// (`GGUF_PRE_TOKENIZER_SPLITS` in gguf_tokenizer_mapping.py, transformers 5.x).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn split_regex_for(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// The Hugging Face (transformers `LlamaForCausalLM`) name of a llama-family GGUF tensor,
/// or `None` for names without one (e.g. llama.cpp's `rope_freqs.weight`).
pub fn hf_tensor_name(gguf_name: &str) -> Option<String> {
    let (stem, suffix) = gguf_name.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let top = match stem {
        "token_embd" => Some("model.embed_tokens"),
        "output_norm" => Some("model.norm"),
        "output" => Some("lm_head"),
        _ => None,
    };
    if let Some(top) = top {
        return Some(format!("{top}.{suffix}"));
    }
    let rest = stem.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf_part = match part {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_part}.{suffix}"))
}

/// llama.cpp's rope permutation of a q/k projection (`LlamaModel.permute` in
/// `convert_hf_to_gguf.py`): within each head, the rows `[first half | second half]`
/// become interleaved pairs. `shape` is the row-major shape; `shape[0]` is the row count.
/// Provided for tests and for writing GGUF files; see [`unpermute_qk`].
///
/// # Panics
/// If `shape[0]` is not a multiple of `2 * n_head`, or `data` does not match `shape`.
pub fn permute_qk(data: &[f32], shape: &[usize], n_head: usize) -> Vec<f32> {
    // Permuted row h*hd + 2i + j is original row h*hd + j*half + i.
    reorder_rows(data, shape, n_head, |h, hd, half, i, j| {
        (h * hd + j * half + i, h * hd + 2 * i + j)
    })
}

/// Undoes llama.cpp's rope permutation of an `attn_q`/`attn_k` weight (or bias), giving
/// the Hugging Face row order: `w.reshape(n_head, half, 2, rest).swapaxes(1, 2)` as in
/// transformers' `_reverse_permute_weights`. Pass the attention head count for q and the
/// kv-head count for k. `shape` is the row-major (PyTorch) shape.
///
/// # Panics
/// If `shape[0]` is not a multiple of `2 * n_head`, or `data` does not match `shape`
/// ([`GgufFile::dequantize_hf`] checks this and returns an error instead).
pub fn unpermute_qk(data: &[f32], shape: &[usize], n_head: usize) -> Vec<f32> {
    // HF row h*hd + j*half + i is GGUF row h*hd + 2i + j.
    reorder_rows(data, shape, n_head, |h, hd, half, i, j| {
        (h * hd + 2 * i + j, h * hd + j * half + i)
    })
}

/// Moves whole rows: for head `h` (of `hd` rows), pair index `i < hd/2` and member
/// `j < 2`, `pick(h, hd, half, i, j)` gives `(source row, destination row)`.
fn reorder_rows(
    data: &[f32],
    shape: &[usize],
    n_head: usize,
    pick: impl Fn(usize, usize, usize, usize, usize) -> (usize, usize),
) -> Vec<f32> {
    let rows = shape.first().copied().unwrap_or(1);
    let cols: usize = shape.iter().skip(1).product();
    assert!(
        n_head > 0 && rows % (2 * n_head) == 0,
        "rope permutation: {rows} rows do not split into {n_head} heads of pairs"
    );
    assert_eq!(
        data.len(),
        rows * cols,
        "rope permutation: data does not match shape {shape:?}"
    );
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..half {
                let (src, dst) = pick(h, hd, half, i, j);
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Header parsing
// ---------------------------------------------------------------------------------------

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

struct Header {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, GgufValue)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
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

    fn parse(mut self) -> Result<Header> {
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

fn le4(c: &[u8]) -> [u8; 4] {
    [c[0], c[1], c[2], c[3]]
}

fn le8(c: &[u8]) -> [u8; 8] {
    [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]
}

// ---------------------------------------------------------------------------------------
// Dequantization: ggml's dequantize_row_* (ggml/src/ggml-quants.c), block by block, with
// the same order of float operations so results match ggml and gguf-py bit for bit.
// ---------------------------------------------------------------------------------------

/// Expands `src` (whole blocks of `ty`) into `dst`. `ty` must be one that
/// [`GgmlType::can_dequantize`] accepts and the lengths must agree (the caller checked both
/// at open time); anything else leaves `dst` untouched.
fn dequantize_into(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    // Each arm instantiates `for_each_block` with its own kernel, so the kernel is
    // inlined into the block loop instead of being called through a pointer.
    match ty {
        GgmlType::F32 => for_each_block(ty, src, dst, block_f32),
        GgmlType::F16 => for_each_block(ty, src, dst, block_f16),
        GgmlType::BF16 => for_each_block(ty, src, dst, block_bf16),
        GgmlType::Q4_0 => for_each_block(ty, src, dst, block_q4_0),
        GgmlType::Q4_1 => for_each_block(ty, src, dst, block_q4_1),
        GgmlType::Q5_0 => for_each_block(ty, src, dst, block_q5_0),
        GgmlType::Q5_1 => for_each_block(ty, src, dst, block_q5_1),
        GgmlType::Q8_0 => for_each_block(ty, src, dst, block_q8_0),
        GgmlType::Q2_K => for_each_block(ty, src, dst, block_q2_k),
        GgmlType::Q3_K => for_each_block(ty, src, dst, block_q3_k),
        GgmlType::Q4_K => for_each_block(ty, src, dst, block_q4_k),
        GgmlType::Q5_K => for_each_block(ty, src, dst, block_q5_k),
        GgmlType::Q6_K => for_each_block(ty, src, dst, block_q6_k),
        _ => {}
    }
}

/// Runs `kernel` on every (block bytes, block output) pair. Float types are processed in
/// "blocks" of 64 elements so the per-call overhead vanishes. Large tensors are split into
/// one contiguous range of blocks per core with scoped threads.
fn for_each_block<K>(ty: GgmlType, src: &[u8], dst: &mut [f32], kernel: K)
where
    K: Fn(&[u8], &mut [f32]) + Copy + Send + Sync,
{
    let (mut block, mut size) = (ty.block_size(), ty.type_size());
    if block == 1 && dst.len().is_multiple_of(64) {
        block = 64;
        size *= 64;
    }
    let n_blocks = dst.len() / block;
    if src.len() != n_blocks * size || !dst.len().is_multiple_of(block) {
        return;
    }
    let threads = if dst.len() >= PARALLEL_MIN_ELEMENTS {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(n_blocks)
    } else {
        1
    };
    let serial = |src: &[u8], dst: &mut [f32]| {
        for (b, y) in src.chunks_exact(size).zip(dst.chunks_exact_mut(block)) {
            kernel(b, y);
        }
    };
    if threads <= 1 {
        serial(src, dst);
        return;
    }
    let per_thread = n_blocks.div_ceil(threads);
    std::thread::scope(|s| {
        for (src, dst) in src
            .chunks(per_thread * size)
            .zip(dst.chunks_mut(per_thread * block))
        {
            s.spawn(move || serial(src, dst));
        }
    });
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

fn block_f32(b: &[u8], y: &mut [f32]) {
    for (o, c) in y.iter_mut().zip(b.chunks_exact(4)) {
        *o = f32::from_le_bytes(le4(c));
    }
}

fn block_f16(b: &[u8], y: &mut [f32]) {
    for (o, c) in y.iter_mut().zip(b.chunks_exact(2)) {
        *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
    }
}

fn block_bf16(b: &[u8], y: &mut [f32]) {
    for (o, c) in y.iter_mut().zip(b.chunks_exact(2)) {
        *o = bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
    }
}

/// Q4_0: `{ f16 d; u8 qs[16] }`; low nibbles are elements 0..16, high nibbles 16..32;
/// `y = (q - 8) * d`.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[2..18]) {
        *l = ((q & 0x0f) as i32 - 8) as f32 * d;
        *h = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: `{ f16 d; f16 m; u8 qs[16] }`; `y = q * d + m`.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let (lo, hi) = y.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[4..20]) {
        *l = (q & 0x0f) as f32 * d + m;
        *h = (q >> 4) as f32 * d + m;
    }
}

/// Q5_0: `{ f16 d; u8 qh[4]; u8 qs[16] }`; bit j of `qh` is the fifth bit of element j;
/// `y = (q - 16) * d`.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes(le4(&b[2..6]));
    let (lo, hi) = y.split_at_mut(16);
    for (j, ((l, h), &q)) in lo.iter_mut().zip(hi).zip(&b[6..22]).enumerate() {
        let xh0 = ((qh >> j) << 4) & 0x10;
        let xh1 = (qh >> (j + 12)) & 0x10;
        *l = ((u32::from(q & 0x0f) | xh0) as i32 - 16) as f32 * d;
        *h = ((u32::from(q >> 4) | xh1) as i32 - 16) as f32 * d;
    }
}

/// Q5_1: `{ f16 d; f16 m; u8 qh[4]; u8 qs[16] }`; `y = q * d + m`.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes(le4(&b[4..8]));
    let (lo, hi) = y.split_at_mut(16);
    for (j, ((l, h), &q)) in lo.iter_mut().zip(hi).zip(&b[8..24]).enumerate() {
        let xh0 = ((qh >> j) << 4) & 0x10;
        let xh1 = (qh >> (j + 12)) & 0x10;
        *l = (u32::from(q & 0x0f) | xh0) as f32 * d + m;
        *h = (u32::from(q >> 4) | xh1) as f32 * d + m;
    }
}

/// Q8_0: `{ f16 d; i8 qs[32] }`; `y = q * d`.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[2..34]) {
        *o = (q as i8) as f32 * d;
    }
}

/// Q2_K: `{ u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }`; 16 groups of 16, each with a
/// 4-bit scale (low nibble) and 4-bit min (high nibble); 2-bit quants.
fn block_q2_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 80);
    let min = f16_at(b, 82);
    let scales = &b[0..16];
    let mut group = 0;
    for n in 0..2 {
        let q = &b[16 + 32 * n..16 + 32 * n + 32];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[group];
                let dl = d * (sc & 0x0f) as f32;
                let ml = min * (sc >> 4) as f32;
                let out = &mut y[16 * group..16 * group + 16];
                for (o, &qq) in out.iter_mut().zip(&q[16 * half..16 * half + 16]) {
                    *o = dl * ((qq >> shift) & 3) as f32 - ml;
                }
                group += 1;
            }
        }
    }
}

/// Q3_K: `{ u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }`; 16 groups of 16 with 6-bit
/// signed scales (offset 32) packed as in ggml; 2 low bits in `qs`, the third in `hmask`
/// (a clear bit subtracts 4).
fn block_q3_k(b: &[u8], y: &mut [f32]) {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let hm = &b[0..32];
    let d_all = f16_at(b, 108);
    let a0 = u32::from_le_bytes(le4(&b[96..100]));
    let a1 = u32::from_le_bytes(le4(&b[100..104]));
    let tmp = u32::from_le_bytes(le4(&b[104..108]));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut scales = [0i8; 16];
    for (dst, word) in scales.chunks_exact_mut(4).zip(aux) {
        for (s, byte) in dst.iter_mut().zip(word.to_le_bytes()) {
            *s = byte as i8;
        }
    }
    let mut group = 0;
    let mut m: u8 = 1;
    for n in 0..2 {
        let q = &b[32 + 32 * n..32 + 32 * n + 32];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * (i32::from(scales[group]) - 32) as f32;
                let out = &mut y[16 * group..16 * group + 16];
                let range = 16 * half..16 * half + 16;
                for ((o, &qq), &h) in out.iter_mut().zip(&q[range.clone()]).zip(&hm[range]) {
                    let low = i32::from((qq >> shift) & 3);
                    let sub = if h & m != 0 { 0 } else { 4 };
                    *o = dl * (low - sub) as f32;
                }
                group += 1;
            }
            m = m.wrapping_shl(1);
        }
    }
}

/// ggml's `get_scale_min_k4`: the j-th 6-bit scale and min of a Q4_K/Q5_K super-block.
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K: `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }`; 8 groups of 32 with 6-bit
/// scales and mins; `y = d*sc * q - dmin*m`.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..16];
    for (chunk, (q, out)) in b[16..144]
        .chunks_exact(32)
        .zip(y.chunks_exact_mut(64))
        .enumerate()
    {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        let (lo, hi) = out.split_at_mut(32);
        for ((l, h), &qq) in lo.iter_mut().zip(hi).zip(q) {
            *l = d1 * (qq & 0x0f) as f32 - m1;
            *h = d2 * (qq >> 4) as f32 - m2;
        }
    }
}

/// Q5_K: `{ f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }`; as Q4_K with a
/// fifth bit per element from `qh`.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    for (chunk, (ql, out)) in b[48..176]
        .chunks_exact(32)
        .zip(y.chunks_exact_mut(64))
        .enumerate()
    {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        let u1 = 1u8 << (2 * chunk);
        let u2 = 2u8 << (2 * chunk);
        let (lo, hi) = out.split_at_mut(32);
        for (((l, h), &q), &hb) in lo.iter_mut().zip(hi).zip(ql).zip(qh) {
            let b1 = if hb & u1 != 0 { 16 } else { 0 };
            let b2 = if hb & u2 != 0 { 16 } else { 0 };
            *l = d1 * ((q & 0x0f) + b1) as f32 - m1;
            *h = d2 * ((q >> 4) + b2) as f32 - m2;
        }
    }
}

/// Q6_K: `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }`; 16 groups of 16 with signed
/// 8-bit scales; 6-bit quants offset by 32; `y = d * sc * q`.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let out = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let h = qh[l];
            let q1 = i32::from((ql[l] & 0x0f) | ((h & 3) << 4)) - 32;
            let q2 = i32::from((ql[l + 32] & 0x0f) | (((h >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
            out[l] = d * f32::from(sc[is] as i8) * q1 as f32;
            out[l + 32] = d * f32::from(sc[is + 2] as i8) * q2 as f32;
            out[l + 64] = d * f32::from(sc[is + 4] as i8) * q3 as f32;
            out[l + 96] = d * f32::from(sc[is + 6] as i8) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Little-endian GGUF writer for building test files by hand.
    #[derive(Default)]
    struct Writer {
        buf: Vec<u8>,
    }

    impl Writer {
        fn u32(&mut self, v: u32) -> &mut Self {
            self.buf.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn u64(&mut self, v: u64) -> &mut Self {
            self.buf.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn str(&mut self, s: &str) -> &mut Self {
            self.u64(s.len() as u64);
            self.buf.extend_from_slice(s.as_bytes());
            self
        }
        fn header(&mut self, version: u32, n_tensors: u64, n_kv: u64) -> &mut Self {
            self.buf.extend_from_slice(b"GGUF");
            self.u32(version).u64(n_tensors).u64(n_kv)
        }
        fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
            self.str(key).u32(4).u32(v)
        }
        fn kv_f32(&mut self, key: &str, v: f32) -> &mut Self {
            self.str(key).u32(6);
            self.buf.extend_from_slice(&v.to_le_bytes());
            self
        }
        fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
            self.str(key).u32(8).str(v)
        }
        fn kv_bool(&mut self, key: &str, v: bool) -> &mut Self {
            self.str(key).u32(7);
            self.buf.push(u8::from(v));
            self
        }
        fn kv_str_array(&mut self, key: &str, items: &[&str]) -> &mut Self {
            self.str(key).u32(9).u32(8).u64(items.len() as u64);
            for s in items {
                self.str(s);
            }
            self
        }
        fn kv_i32_array(&mut self, key: &str, items: &[i32]) -> &mut Self {
            self.str(key).u32(9).u32(5).u64(items.len() as u64);
            for v in items {
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
            self
        }
        fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
            self.str(name).u32(dims.len() as u32);
            for &d in dims {
                self.u64(d);
            }
            self.u32(ty).u64(offset)
        }
        fn pad_to(&mut self, alignment: usize) -> &mut Self {
            while !self.buf.len().is_multiple_of(alignment) {
                self.buf.push(0);
            }
            self
        }
        fn bytes(&mut self, b: &[u8]) -> &mut Self {
            self.buf.extend_from_slice(b);
            self
        }
    }

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_bits().to_le_bytes()
    }

    fn run(ty: GgmlType, block: &[u8]) -> Vec<f32> {
        let mut y = vec![f32::NAN; ty.block_size() * block.len() / ty.type_size()];
        dequantize_into(ty, block, &mut y);
        y
    }

    #[test]
    fn q4_0_block_by_hand() {
        // d = 0.5; byte j = (lo = j % 16, hi = 15 - j % 16).
        let mut b = h(0.5).to_vec();
        b.extend((0u8..16).map(|j| j | ((15 - j) << 4)));
        let y = run(GgmlType::Q4_0, &b);
        assert_eq!(y[0], -4.0); // (0 - 8) * 0.5
        assert_eq!(y[3], -2.5); // (3 - 8) * 0.5
        assert_eq!(y[15], 3.5); // (15 - 8) * 0.5
        assert_eq!(y[16], 3.5); // high nibble of byte 0: 15
        assert_eq!(y[31], -4.0); // high nibble of byte 15: 0
    }

    #[test]
    fn q4_1_block_by_hand() {
        // d = 0.25, m = -1; byte j = (lo = j, hi = 2).
        let mut b = h(0.25).to_vec();
        b.extend_from_slice(&h(-1.0));
        b.extend((0u8..16).map(|j| j | (2 << 4)));
        let y = run(GgmlType::Q4_1, &b);
        assert_eq!(y[0], -1.0);
        assert_eq!(y[5], 0.25); // 5 * 0.25 - 1
        assert_eq!(y[15], 2.75); // 15 * 0.25 - 1
        assert!(y[16..].iter().all(|&v| v == -0.5)); // 2 * 0.25 - 1
    }

    #[test]
    fn q8_0_block_by_hand() {
        let mut b = h(0.125).to_vec();
        b.extend((0..32).map(|j: i32| ((j - 16) * 8) as i8 as u8));
        let y = run(GgmlType::Q8_0, &b);
        assert_eq!(y[0], -16.0); // -128 * 0.125
        assert_eq!(y[16], 0.0);
        assert_eq!(y[31], 15.0); // 120 * 0.125
    }

    #[test]
    fn q5_0_and_q5_1_blocks_by_hand() {
        // qh has bit 0 (element 0) and bit 17 (element 17) set.
        let qh: u32 = 1 | (1 << 17);
        let qs: Vec<u8> = (0u8..16).map(|j| j | (1 << 4)).collect();
        let mut b = h(2.0).to_vec();
        b.extend_from_slice(&qh.to_le_bytes());
        b.extend_from_slice(&qs);
        let y = run(GgmlType::Q5_0, &b);
        assert_eq!(y[0], 0.0); // (0 | 16) - 16
        assert_eq!(y[1], -30.0); // (1 - 16) * 2
        assert_eq!(y[16], -30.0); // (1 - 16) * 2
        assert_eq!(y[17], 2.0); // (1 | 16) - 16 = 1
        let mut b = h(0.5).to_vec();
        b.extend_from_slice(&h(1.0));
        b.extend_from_slice(&qh.to_le_bytes());
        b.extend_from_slice(&qs);
        let y = run(GgmlType::Q5_1, &b);
        assert_eq!(y[0], 9.0); // 16 * 0.5 + 1
        assert_eq!(y[2], 2.0); // 2 * 0.5 + 1
        assert_eq!(y[17], 9.5); // 17 * 0.5 + 1
    }

    #[test]
    fn q4_k_block_by_hand() {
        // d = 0.5, dmin = 0.25. Scales: groups 0..4 read the low 6 bits of bytes 0..4
        // (scale) and 4..8 (min); groups 4..8 combine nibbles of bytes 8..12 with the top
        // two bits of bytes 0..8.
        let mut b = h(0.5).to_vec();
        b.extend_from_slice(&h(0.25));
        let mut scales = [0u8; 12];
        scales[0] = 3; // group 0: scale 3
        scales[4] = 2; // group 0: min 2
        scales[1] = 5; // group 1: scale 5, min 0
                       // group 4: scale = (s[8] & 15) | (s[0] >> 6) << 4, min = (s[8] >> 4) | (s[4] >> 6) << 4
        scales[0] |= 1 << 6; // -> scale of group 4 gains 16
        scales[8] = 0x21; // scale low 1, min low 2
        scales[4] |= 2 << 6; // -> min of group 4 gains 32
        b.extend_from_slice(&scales);
        let mut qs = [0u8; 128];
        qs[0] = 0x07; // element 0 (group 0) = 7, element 32 (group 1) = 0
        qs[1] = 0xf0; // element 1 = 0, element 33 = 15
        qs[64] = 0x0a; // element 128 (group 4) = 10
        b.extend_from_slice(&qs);
        let y = run(GgmlType::Q4_K, &b);
        assert_eq!(y[0], 0.5 * 3.0 * 7.0 - 0.25 * 2.0); // 10.0
        assert_eq!(y[1], -0.5);
        assert_eq!(y[32], 0.0);
        assert_eq!(y[33], 0.5 * 5.0 * 15.0); // 37.5
                                             // group 4: scale 17, min 34 -> 0.5*17*10 - 0.25*34 = 85 - 8.5
        assert_eq!(y[128], 76.5);
        assert_eq!(y[129], -8.5);
    }

    #[test]
    fn q6_k_block_by_hand() {
        let mut b = vec![0u8; 210];
        // Element 0: ql[0] low nibble 5, qh[0] bits 0..2 = 2 -> q = 5 | 32 = 37 - 32 = 5.
        // Element 64: ql[0] high nibble 1, qh[0] bits 4..6 = 0 -> 1 - 32 = -31.
        b[0] = 0x15;
        b[128] = 0b0000_0010;
        // Element 32: ql[32] low nibble 15, qh[0] bits 2..4 = 3 -> 63 - 32 = 31.
        b[32] = 0x0f;
        b[128] |= 0b0000_1100;
        // Scales: group 0 = 2, group 2 = -3, group 4 = 4; d = 0.5.
        b[192] = 2;
        b[194] = (-3i8) as u8;
        b[196] = 4;
        b[208..210].copy_from_slice(&h(0.5));
        let y = run(GgmlType::Q6_K, &b);
        assert_eq!(y[0], 0.5 * 2.0 * 5.0);
        assert_eq!(y[32], 0.5 * -3.0 * 31.0);
        assert_eq!(y[64], 0.5 * 4.0 * -31.0);
        // Element 1: all zero bits -> q = -32, group 0 scale 2.
        assert_eq!(y[1], -32.0);
        // Element 128 (second half): scale byte 200 = 0 -> 0.
        assert_eq!(y[128], 0.0);
    }

    #[test]
    fn q2_k_and_q3_k_blocks_by_hand() {
        // Q2_K: group 0 scale 3 / min 1, d = 1, dmin = 0.5; element 0 q = 2, element 16
        // (group 1, q[16]) q = 1 with group 1 scale 2 / min 0.
        let mut b = vec![0u8; 84];
        b[0] = 0x13;
        b[1] = 0x02;
        b[16] = 0b10;
        b[16 + 16] = 0b01;
        b[80..82].copy_from_slice(&h(1.0));
        b[82..84].copy_from_slice(&h(0.5));
        let y = run(GgmlType::Q2_K, &b);
        assert_eq!(y[0], 3.0 * 2.0 - 0.5);
        assert_eq!(y[1], -0.5);
        assert_eq!(y[16], 2.0);
        // Element 32 is group 2 (shift 2 of q[0..16]): scale byte 2 = 0 -> 0.
        assert_eq!(y[32], 0.0);

        // Q3_K: group 0's scale is the low nibble of scales[0] plus bits 0..2 of
        // scales[8] << 4; set it to 32 + 3 = 35 -> (35 - 32) = 3. d = 0.5.
        let mut b = vec![0u8; 110];
        b[96] = 3; // low nibble 3
        b[104] = 2; // bits 0..2 = 2 -> +32
        b[0] = 1; // hmask bit for element 0 set: no -4
        b[32] = 0b11; // element 0 low bits 3; element 1 low bits 0 and hmask clear -> -4
        b[108..110].copy_from_slice(&h(0.5));
        let y = run(GgmlType::Q3_K, &b);
        assert_eq!(y[0], 0.5 * 3.0 * 3.0);
        assert_eq!(y[1], 0.5 * 3.0 * -4.0);
        // Group 1 scale is 0 - 32 = -32; element 16 has q = 0 - 4.
        assert_eq!(y[16], 0.5 * -32.0 * -4.0);
    }

    #[test]
    fn float_types() {
        let vals = [1.5f32, -2.25, 0.0, 65504.0];
        let f16s: Vec<u8> = vals.iter().flat_map(|&v| h(v)).collect();
        assert_eq!(run(GgmlType::F16, &f16s), vals);
        let bf16s: Vec<u8> = vals[..3]
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        assert_eq!(run(GgmlType::BF16, &bf16s), vals[..3]);
        let f32s: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(run(GgmlType::F32, &f32s), vals);
    }

    #[test]
    fn parallel_path_matches_serial() {
        // Enough Q8_0 blocks to take the threaded path; compare with one block at a time.
        let n_blocks = PARALLEL_MIN_ELEMENTS / 32 + 7;
        let mut src = Vec::with_capacity(n_blocks * 34);
        for i in 0..n_blocks {
            src.extend_from_slice(&h((i % 13) as f32 * 0.01));
            src.extend((0..32).map(|j| (i * 31 + j * 7) as u8));
        }
        let mut all = vec![0f32; n_blocks * 32];
        dequantize_into(GgmlType::Q8_0, &src, &mut all);
        for (i, chunk) in src.chunks_exact(34).enumerate().step_by(997) {
            assert_eq!(run(GgmlType::Q8_0, chunk), all[i * 32..i * 32 + 32]);
        }
    }

    #[test]
    fn unpermute_inverts_permute_and_matches_transformers() {
        // 2 heads of dim 4 (so 2 rotary pairs each), 3 columns.
        let shape = [8usize, 3];
        let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let permuted = permute_qk(&data, &shape, 2);
        // llama.cpp's permute: within a head, rows [r0 r1 | r2 r3] -> [r0 r2 r1 r3].
        let rows = |v: &[f32]| v.chunks(3).map(|r| r[0] as usize / 3).collect::<Vec<_>>();
        assert_eq!(rows(&permuted), [0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(unpermute_qk(&permuted, &shape, 2), data);
        // transformers' _reverse_permute_weights: w.reshape(n_head, dim, 2, cols)
        // .swapaxes(2, 1): output row (h, j, i) = input row h*hd + 2i + j.
        let input: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let out = unpermute_qk(&input, &shape, 2);
        assert_eq!(rows(&out), [0, 2, 1, 3, 4, 6, 5, 7]);
        // A bias (1-D) with 3 heads of dim 2: pairs are already in place.
        let bias = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(unpermute_qk(&bias, &[6], 3), bias);
        // 1 head of dim 6: [0 1 2 | 3 4 5] permutes to [0 3 1 4 2 5].
        assert_eq!(permute_qk(&bias, &[6], 1), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(unpermute_qk(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0], &[6], 1), bias);
    }

    #[test]
    fn hf_names() {
        assert_eq!(
            hf_tensor_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(
            hf_tensor_name("output_norm.weight").as_deref(),
            Some("model.norm.weight")
        );
        assert_eq!(
            hf_tensor_name("output.weight").as_deref(),
            Some("lm_head.weight")
        );
        assert_eq!(
            hf_tensor_name("blk.12.attn_q.weight").as_deref(),
            Some("model.layers.12.self_attn.q_proj.weight")
        );
        assert_eq!(
            hf_tensor_name("blk.0.attn_output.weight").as_deref(),
            Some("model.layers.0.self_attn.o_proj.weight")
        );
        assert_eq!(
            hf_tensor_name("blk.3.ffn_down.weight").as_deref(),
            Some("model.layers.3.mlp.down_proj.weight")
        );
        assert_eq!(
            hf_tensor_name("blk.3.ffn_norm.weight").as_deref(),
            Some("model.layers.3.post_attention_layernorm.weight")
        );
        assert_eq!(
            hf_tensor_name("blk.3.attn_norm.weight").as_deref(),
            Some("model.layers.3.input_layernorm.weight")
        );
        assert_eq!(
            hf_tensor_name("blk.1.attn_k.bias").as_deref(),
            Some("model.layers.1.self_attn.k_proj.bias")
        );
        assert_eq!(hf_tensor_name("rope_freqs.weight"), None);
        assert_eq!(hf_tensor_name("blk.x.attn_q.weight"), None);
    }

    /// A small llama-like file: metadata of several types and two tensors.
    fn tiny_file() -> Vec<u8> {
        let mut w = Writer::default();
        w.header(3, 2, 14)
            .kv_str("general.architecture", "llama")
            .kv_u32("llama.block_count", 1)
            .kv_u32("llama.embedding_length", 4)
            .kv_u32("llama.feed_forward_length", 8)
            .kv_u32("llama.attention.head_count", 2)
            .kv_u32("llama.attention.head_count_kv", 1)
            .kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
            .kv_u32("llama.context_length", 64)
            .kv_str("tokenizer.ggml.model", "gpt2")
            .kv_str_array(
                "tokenizer.ggml.tokens",
                &["a", "b", "ab", "<s>", "Ġ", "Ġab", "<x>"],
            )
            .kv_i32_array("tokenizer.ggml.token_type", &[1, 1, 1, 3, 1, 1, 4])
            .kv_str_array("tokenizer.ggml.merges", &["a b", "Ġ ab"])
            .kv_u32("tokenizer.ggml.bos_token_id", 3)
            .kv_bool("tokenizer.ggml.add_bos_token", true);
        // attn_q: 4 rows x 4 cols of F32 (GGUF dims [4, 4]); attn_norm: 4 F32.
        w.tensor("blk.0.attn_q.weight", &[4, 4], 0, 0)
            .tensor("blk.0.attn_norm.weight", &[4], 0, 64)
            .pad_to(32);
        let q: Vec<u8> = (0..16).flat_map(|v| (v as f32).to_le_bytes()).collect();
        w.bytes(&q);
        w.bytes(
            &[1.0f32, 2.0, 3.0, 4.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        );
        w.buf
    }

    #[test]
    fn parses_a_hand_built_file() -> Result<()> {
        let f = GgufFile::from_bytes("tiny.gguf", tiny_file())?;
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.data_offset() % 32, 0);
        assert_eq!(f.get_str("general.architecture")?, "llama");
        assert_eq!(f.get("llama.block_count"), Some(&GgufValue::U32(1)));
        assert_eq!(
            f.tensor_names().collect::<Vec<_>>(),
            ["blk.0.attn_q.weight", "blk.0.attn_norm.weight"]
        );
        let info = f
            .tensor_info("blk.0.attn_q.weight")
            .ok_or(GgufError::MissingTensor {
                path: "tiny".into(),
                name: "q".into(),
            })?;
        assert_eq!(info.dims, [4, 4]);
        assert_eq!(info.ggml_type, GgmlType::F32);
        let (norm, shape) = f.dequantize("blk.0.attn_norm.weight")?;
        assert_eq!((norm, shape), (vec![1.0, 2.0, 3.0, 4.0], vec![4]));
        // q has 2 heads of dim 2: one pair each, so the rope permutation is the identity.
        let (q, shape) = f.dequantize_hf("blk.0.attn_q.weight")?;
        assert_eq!(shape, [4, 4]);
        assert_eq!(q, (0..16).map(|v| v as f32).collect::<Vec<_>>());

        let hp = f.llama_hparams()?;
        assert_eq!(
            (hp.block_count, hp.embedding_length, hp.feed_forward_length),
            (1, 4, 8)
        );
        assert_eq!((hp.head_count, hp.head_count_kv, hp.head_dim), (2, 1, 2));
        assert_eq!(hp.rms_norm_eps, 1e-5f32);
        assert_eq!(hp.rope_freq_base, 10_000.0);
        assert_eq!(hp.vocab_size, 7); // from the token list
        assert!(hp.tie_word_embeddings);

        let err = f
            .get_u64("general.architecture")
            .map(|_| ())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("tiny.gguf: metadata key 'general.architecture' holds string \"llama\", expected a non-negative integer")
        );
        let err = f.get_str("nope").map(|_| ()).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("tiny.gguf: metadata key 'nope' is missing")
        );
        Ok(())
    }

    #[test]
    fn tokenizer_from_hand_built_vocab() -> Result<()> {
        let f = GgufFile::from_bytes("tiny.gguf", tiny_file())?;
        let tok = f.tokenizer()?;
        let enc = |s: &str| {
            tok.encode(s, true)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| e.to_string())
        };
        // add_bos_token is set, so <s> (3) comes first; " ab" merges to "Ġab" (5).
        assert_eq!(enc("ab ab"), Ok(vec![3, 2, 5]));
        // The control token <s> is matched whole; <x> (user-defined) too.
        assert_eq!(enc("<s>a<x>"), Ok(vec![3, 3, 0, 6]));
        assert_eq!(
            f.special_tokens(),
            SpecialTokenIds {
                bos: Some(3),
                ..Default::default()
            }
        );
        Ok(())
    }

    fn err_of(bytes: Vec<u8>) -> String {
        match GgufFile::from_bytes("models/x.gguf", bytes) {
            Ok(_) => "parsed".to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        assert_eq!(
            err_of(b"GGML\x03\0\0\0".to_vec()),
            "models/x.gguf: not a GGUF file: it starts with bytes [47, 47, 4d, 4c], expected \"GGUF\""
        );
        let mut w = Writer::default();
        w.header(1, 0, 0);
        assert!(err_of(w.buf).starts_with("models/x.gguf: unsupported GGUF version 1:"));
        let mut w = Writer::default();
        w.header(0x0300_0000, 0, 0);
        assert!(err_of(w.buf).contains("big-endian"));
        assert_eq!(
            err_of(b"GGUF\x03\0".to_vec()),
            "models/x.gguf: truncated: the header's version needs bytes 4..8 but the file has 6"
        );

        // Cut the tiny file inside its last tensor: the error names the tensor.
        let full = tiny_file();
        let cut = full[..full.len() - 4].to_vec();
        let len = cut.len();
        assert_eq!(
            err_of(cut),
            format!("models/x.gguf: truncated: tensor 'blk.0.attn_norm.weight' needs bytes {}..{} but the file has {len}", len - 12, len + 4)
        );
        // Cut inside the metadata.
        assert!(err_of(full[..100].to_vec())
            .starts_with("models/x.gguf: truncated: the value of metadata key"));

        // A string array claiming more elements than the file could hold.
        let mut w = Writer::default();
        w.header(3, 0, 1).str("k").u32(9).u32(8).u64(u64::MAX / 2);
        assert!(
            err_of(w.buf).starts_with("models/x.gguf: truncated: the value of metadata key 'k' (")
        );

        // Quantized tensor whose rows are not whole blocks.
        let mut w = Writer::default();
        w.header(3, 1, 0).tensor("t", &[20, 2], 2, 0);
        assert_eq!(
            err_of(w.buf),
            "models/x.gguf: malformed: tensor 't' has 20 columns, not a multiple of Q4_0's block size 32"
        );
        // Unknown type id, bad alignment, unknown value type.
        let mut w = Writer::default();
        w.header(3, 1, 0).tensor("t", &[32], 99, 0);
        assert!(err_of(w.buf).contains("unknown ggml type id 99"));
        let mut w = Writer::default();
        w.header(3, 0, 1).kv_u32("general.alignment", 24);
        assert!(err_of(w.buf).contains("general.alignment is 24"));
        let mut w = Writer::default();
        w.header(3, 0, 1).str("k").u32(13);
        assert!(err_of(w.buf).contains("unknown value type 13"));

        // Every message is one line.
        assert!(!err_of(Vec::new()).contains('\n'));
    }

    #[test]
    fn unsupported_type_is_named() -> Result<()> {
        let mut w = Writer::default();
        w.header(2, 1, 0)
            .tensor("blk.0.ffn_up.weight", &[256], 16, 0)
            .pad_to(32);
        w.bytes(&[0u8; 66]);
        let f = GgufFile::from_bytes("m.gguf", w.buf)?;
        assert_eq!(f.version(), 2);
        let msg = f
            .dequantize("blk.0.ffn_up.weight")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.starts_with("m.gguf: tensor 'blk.0.ffn_up.weight' has ggml type IQ2_XXS, which this reader cannot dequantize"));
        Ok(())
    }

    #[test]
    fn nested_arrays_and_all_scalar_types() -> Result<()> {
        let mut w = Writer::default();
        w.header(3, 0, 3);
        // An array of two arrays of u16.
        w.str("nested").u32(9).u32(9).u64(2);
        w.u32(2)
            .u64(2)
            .bytes(&1u16.to_le_bytes())
            .bytes(&2u16.to_le_bytes());
        w.u32(2).u64(1).bytes(&3u16.to_le_bytes());
        w.str("i64").u32(11).bytes(&(-5i64).to_le_bytes());
        w.str("f64").u32(12).bytes(&0.5f64.to_le_bytes());
        let f = GgufFile::from_bytes("n.gguf", w.buf)?;
        let nested = f.get_array("nested")?;
        assert_eq!(nested.len(), 2);
        assert_eq!(
            nested[0],
            GgufValue::Array(vec![GgufValue::U16(1), GgufValue::U16(2)])
        );
        assert_eq!(nested[1].as_array().map(|a| a.len()), Some(1));
        assert_eq!(f.get("i64").and_then(GgufValue::as_i64), Some(-5));
        assert_eq!(f.get("i64").and_then(GgufValue::as_u64), None);
        assert_eq!(f.get_f64("f64")?, 0.5);
        Ok(())
    }

    /// The embedded default model, when present: hparams, every tensor, the tokenizer.
    /// Reference ids come from transformers 5.24
    /// (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`).
    #[test]
    fn embedded_smollm2() -> Result<()> {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        ));
        if !path.exists() {
            return Ok(());
        }
        let f = GgufFile::open(&path)?;
        let hp = f.llama_hparams()?;
        assert_eq!(hp.architecture, "llama");
        assert_eq!(
            (hp.block_count, hp.embedding_length, hp.feed_forward_length),
            (30, 576, 1536)
        );
        assert_eq!((hp.head_count, hp.head_count_kv, hp.head_dim), (9, 3, 64));
        assert_eq!((hp.vocab_size, hp.context_length), (49152, 8192));
        assert_eq!(hp.rope_freq_base, 100_000.0);
        assert_eq!(hp.rope_dimension_count, Some(64));
        assert_eq!(hp.rms_norm_eps, 1e-5f32);
        assert!(hp.tie_word_embeddings);

        assert_eq!(f.tensors().len(), 272);
        let mut total = 0usize;
        for name in f.tensor_names() {
            let (data, shape) = f.dequantize_hf(name)?;
            assert_eq!(data.len(), shape.iter().product::<usize>());
            assert!(data.iter().all(|v| v.is_finite()), "{name}");
            assert!(hf_tensor_name(name).is_some(), "{name}");
            total += data.len();
        }
        assert_eq!(total, 134_515_008);
        let (embd, shape) = f.dequantize("token_embd.weight")?;
        assert_eq!(shape, [49152, 576]);
        assert_eq!(embd.len(), 49152 * 576);

        let tok = f.tokenizer()?;
        let ids = tok
            .encode("What is the capital of France?", true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| GgufError::Tokenizer {
                path: path.clone(),
                what: e.to_string(),
            })?;
        assert_eq!(ids, [1780, 314, 260, 3575, 282, 4649, 47]);
        assert_eq!(
            f.special_tokens(),
            SpecialTokenIds {
                bos: Some(1),
                eos: Some(2),
                pad: Some(2),
                unk: Some(0)
            }
        );
        assert!(f
            .chat_template()
            .is_some_and(|t| t.contains("<|im_start|>")));
        Ok(())
    }
}
