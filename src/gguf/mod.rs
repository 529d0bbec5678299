//! GGUF, llama.cpp's single-file model format (versions 2 and 3).
//!
//! ftui fine-tunes LoRA adapters on top of a frozen base model held by libtorch. The
//! embedded default base model ships as one GGUF file (a quantized SmolLM2), users bring
//! their own GGUF files, and an exported model is written as one. This module is the
//! format alone, below every model and tokenizer concern:
//! - [`value`]: metadata values, and [`types`]: the ggml tensor types with their block
//!   sizes and the tensor directory entry — what a reader and a writer share;
//! - [`reader`] (with its header parser, `parse`) and [`hparams`]: a parsed file, its
//!   metadata and the architecture's hyper-parameters;
//! - `dequant`: ggml's block formats expanded to `f32`, and [`quantize`]: `f32` values
//!   stored in them, as the reference quantizers store them;
//! - [`writer`]: a file written in one streaming pass, as llama.cpp reads it;
//! - [`arch`]: how each architecture's GGUF tensors map to Hugging Face ones, both ways.
//!
//! The file is memory-mapped and parsed once; every length, count and offset in it is
//! checked against the file size before it is used, so a truncated or corrupt file gives
//! a one-line [`GgufError`] naming the file and the problem, never a panic or a huge
//! allocation. The tokenizer a file describes is built next to the other tokenizers,
//! in the tokenizer module, which reads this one.

pub mod arch;
mod dequant;
pub mod hparams;
mod parse;
pub mod quantize;
pub mod reader;
pub mod types;
pub mod value;
pub mod writer;

#[cfg(test)]
pub(crate) mod testfile;
#[cfg(test)]
mod tests;

pub use arch::{HfTensors, TensorLayout};
pub use hparams::GgufLlamaParams;
pub use reader::{GgufFile, SpecialTokenIds};
pub use types::{GgmlType, GgufTensorInfo};
pub use value::GgufValue;

use std::path::PathBuf;

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
    /// `general.architecture` names a network whose tensor layout is not mapped.
    #[error("{}: GGUF architecture `{architecture}` is not supported (supported: {})", path.display(), TensorLayout::SUPPORTED)]
    UnsupportedArchitecture { path: PathBuf, architecture: String },
}

/// Little-endian words of a slice whose length the caller has checked.
fn le4(c: &[u8]) -> [u8; 4] {
    [c[0], c[1], c[2], c[3]]
}

fn le8(c: &[u8]) -> [u8; 8] {
    [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]
}
