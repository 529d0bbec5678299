//! The ggml tensor types (ids, elements per block, bytes per block) and the entry of a
//! file's tensor directory: what a reader needs to size every tensor and a writer needs to
//! lay one out.

use std::fmt;

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

    /// Whether [`crate::gguf::GgufFile::dequantize`] handles this type.
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

    pub(super) fn supported_list() -> String {
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
