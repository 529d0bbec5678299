//! The code books of bitsandbytes and its blockwise nearest-code quantizer.
//!
//! Everything here reproduces bitsandbytes' PyTorch reference backend
//! (`bitsandbytes/backends/default/ops.py`) op for op, in float32 and with the
//! same libtorch operations, so that ftui's codes are bit-identical to the ones
//! bitsandbytes writes:
//!
//! - a block's scale is its absmax; full blocks are scaled by *multiplying* with
//!   `1 / max(absmax, 1e-38)`, the trailing partial block by *dividing*, and the
//!   stored absmax of a trailing partial block is the clamped one;
//! - the nearest code is found with `bucketize` over the float32 midpoints of the
//!   sorted table, so a value exactly on a midpoint takes the lower code;
//! - FP4's table is not sorted: its sorted order (with `+0` before `-0`) maps the
//!   bucket back to the bitsandbytes code.
//!
//! bitsandbytes' CUDA kernels choose the same codes, except for an all-zero
//! block (CUDA: NaN scale, NF4 code 0; here code 7, the reference's) and FP4
//! values within 0.0026 of zero (CUDA picks code 0 or 8 by the sign); both
//! dequantize to the same numbers. Its
//! native CPU kernel for the 8-bit map goes through a 65536-entry lookup table
//! and can miss the nearest code by one table step; see `tests/quant.rs`.

use tch::{Device, Kind, Tensor};

use crate::torch::TchResult;

/// Elements per absmax block of 4-bit weights (bitsandbytes' default, and the
/// only size transformers' `BitsAndBytesConfig` uses).
pub const BLOCKSIZE_4BIT: i64 = 64;

/// Absmax values per block when the absmax values are themselves quantized
/// (`bnb_4bit_use_double_quant`).
pub const NESTED_BLOCKSIZE: i64 = 256;

/// The smallest scale bitsandbytes divides by (`absmax.clamp(min=1e-38)`).
const MIN_ABSMAX: f64 = 1e-38;

/// NF4 as `get_4bit_type("nf4")` writes it: quantiles of N(0, 1), normalised
/// to [-1, 1]; code `i` is entry `i`, and the table is sorted.
const NF4: [f64; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

/// FP4 (1 sign, 2 exponent, 1 mantissa bit) by bit pattern, before bitsandbytes
/// divides it by its absmax (12). Code 8 ("-0") is the Python integer `-0` in
/// `get_4bit_type`, so its value is +0.0.
const FP4_RAW: [f32; 16] = [
    0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, 0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0,
];

/// `torch.argsort` of the FP4 table: the codes in increasing value. The two
/// zeros keep their index order (code 0, then code 8), so a value in
/// `[-0.0026, 0]` gets code 0 and a tiny positive one code 8.
const FP4_SORTED_CODES: [u8; 16] = [11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3];

/// The two 4-bit data types of `bnb_4bit_quant_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FourBitType {
    Nf4,
    Fp4,
}

impl FourBitType {
    /// bitsandbytes' name (`quant_state.quant_type`).
    pub fn name(self) -> &'static str {
        match self {
            FourBitType::Nf4 => "nf4",
            FourBitType::Fp4 => "fp4",
        }
    }

    /// The code book indexed by code, exactly as `get_4bit_type` returns it
    /// (float32 values of the Python literals, FP4 divided by 12 in float32).
    pub fn table(self) -> [f32; 16] {
        match self {
            // Python parses the literal as a double and torch rounds it to float32.
            FourBitType::Nf4 => NF4.map(|v| v as f32),
            FourBitType::Fp4 => FP4_RAW.map(|v| v / 12.0),
        }
    }

    /// Codes in increasing value of their table entries.
    fn sorted_codes(self) -> [u8; 16] {
        match self {
            FourBitType::Nf4 => std::array::from_fn(|i| i as u8),
            FourBitType::Fp4 => FP4_SORTED_CODES,
        }
    }

    /// The 15 float32 midpoints between neighbouring sorted entries
    /// (`(code[order[:-1]] + code[order[1:]]) / 2`).
    pub fn midpoints(self) -> [f32; 15] {
        let table = self.table();
        let order = self.sorted_codes();
        std::array::from_fn(|i| (table[order[i] as usize] + table[order[i + 1] as usize]) / 2.0)
    }

    /// Quantizes values that are already scaled to [-1, 1] (float32, any
    /// shape): the bitsandbytes code of each, as `Uint8`.
    pub(crate) fn nearest_codes(self, scaled: &Tensor) -> TchResult<Tensor> {
        let device = scaled.device();
        let bounds = Tensor::f_from_slice(&self.midpoints())?.f_to_device(device)?;
        let bucket = scaled.f_bucketize(&bounds, true, false)?;
        let codes = match self {
            FourBitType::Nf4 => bucket,
            FourBitType::Fp4 => {
                let order =
                    Tensor::f_from_slice(&FP4_SORTED_CODES.map(i32::from))?.f_to_device(device)?;
                order.f_index_select(0, &bucket.f_reshape([-1])?)?
            }
        };
        codes.f_to_kind(Kind::Uint8)
    }

    /// A `[256, 2]` float32 table: row `b` holds the values of the two codes
    /// packed in byte `b` (high nibble first). One `index_select` with the packed
    /// bytes unpacks and looks up in a single step.
    pub(crate) fn byte_pair_table(self, device: Device) -> TchResult<Tensor> {
        let table = self.table();
        let pairs: Vec<f32> = (0..256usize)
            .flat_map(|b| [table[b >> 4], table[b & 0x0F]])
            .collect();
        Tensor::f_from_slice(&pairs)?
            .f_view([256, 2])?
            .f_to_device(device)
    }
}

impl From<crate::config::QuantType> for FourBitType {
    fn from(t: crate::config::QuantType) -> Self {
        match t {
            crate::config::QuantType::Nf4 => FourBitType::Nf4,
            crate::config::QuantType::Fp4 => FourBitType::Fp4,
        }
    }
}

/// bitsandbytes' signed 8-bit dynamic map (`create_dynamic_map()`), the code
/// book of double quantization: 256 sorted float32 values in [-1, 1] with a
/// dynamic exponent, dense near zero.
///
/// Built with the same libtorch operations as the Python original (on the CPU,
/// so `linspace` and the float32 products round identically), then moved.
pub fn dynamic_map(device: Device) -> TchResult<Tensor> {
    const MAX_EXPONENT_BITS: i32 = 7;
    let mut parts = Vec::with_capacity(2 * MAX_EXPONENT_BITS as usize + 1);
    for i in 0..MAX_EXPONENT_BITS {
        let items = (1i64 << i) + 1;
        let b = Tensor::f_linspace(0.1, 1.0, items, (Kind::Float, Device::Cpu))?;
        let means = b
            .f_narrow(0, 0, items - 1)?
            .f_add(&b.f_narrow(0, 1, items - 1)?)?
            .f_div_scalar(2.0)?;
        // Python: `(10 ** (-(max_exponent_bits - 1) + i)) * means`, a double
        // scalar times a float32 tensor.
        let scale = 10f64.powi(i - (MAX_EXPONENT_BITS - 1));
        parts.push(means.f_mul_scalar(scale)?);
        parts.push(means.f_mul_scalar(-scale)?);
    }
    parts.push(Tensor::f_from_slice(&[0f32, 1.0])?);
    let (sorted, _) = Tensor::f_cat(&parts, 0)?.f_sort(0, false)?;
    sorted.f_to_device(device)
}

/// Float32 midpoints of a sorted code book (`(code[:-1] + code[1:]) / 2`).
fn sorted_midpoints(code: &Tensor) -> TchResult<Tensor> {
    let n = code.size()[0];
    code.f_narrow(0, 0, n - 1)?
        .f_add(&code.f_narrow(0, 1, n - 1)?)?
        .f_div_scalar(2.0)
}

/// Splits flat float32 `values` into blocks of `blocksize` and scales each by
/// its absmax, as bitsandbytes' reference backend does. Returns the scaled
/// values in [-1, 1] and the absmax of each block.
pub fn blockwise_scale(values: &Tensor, blocksize: i64) -> TchResult<(Tensor, Tensor)> {
    let n = values.size()[0];
    let rem = n % blocksize;
    let full = n - rem;
    let mut scaled = Vec::with_capacity(2);
    let mut absmax = Vec::with_capacity(2);
    if full > 0 {
        let blocks = values
            .f_narrow(0, 0, full)?
            .f_view([full / blocksize, blocksize])?;
        let am = blocks.f_abs()?.f_amax([-1], false)?;
        let inv = am
            .f_clamp_min(MIN_ABSMAX)?
            .f_reciprocal()?
            .f_view([-1, 1])?;
        scaled.push(blocks.f_mul(&inv)?.f_clamp(-1.0, 1.0)?.f_reshape([-1])?);
        absmax.push(am);
    }
    if rem > 0 {
        let tail = values.f_narrow(0, full, rem)?;
        let am = tail.f_abs()?.f_max()?.f_clamp_min(MIN_ABSMAX)?;
        scaled.push(tail.f_div(&am)?.f_clamp(-1.0, 1.0)?);
        absmax.push(am.f_reshape([1])?);
    }
    Ok((Tensor::f_cat(&scaled, 0)?, Tensor::f_cat(&absmax, 0)?))
}

/// `values * absmax` block by block (flat float32 `values`, one absmax per
/// block of `blocksize`; the last block may be partial).
pub fn blockwise_rescale(values: &Tensor, absmax: &Tensor, blocksize: i64) -> TchResult<Tensor> {
    let n = values.size()[0];
    let rem = n % blocksize;
    let full = n - rem;
    let blocks = full / blocksize;
    let mut out = Vec::with_capacity(2);
    if full > 0 {
        out.push(
            values
                .f_narrow(0, 0, full)?
                .f_view([blocks, blocksize])?
                .f_mul(&absmax.f_narrow(0, 0, blocks)?.f_view([-1, 1])?)?
                .f_reshape([-1])?,
        );
    }
    if rem > 0 {
        out.push(
            values
                .f_narrow(0, full, rem)?
                .f_mul(&absmax.f_select(0, blocks)?)?,
        );
    }
    if out.len() == 1 {
        return Ok(out.remove(0));
    }
    Tensor::f_cat(&out, 0)
}

/// `quantize_blockwise` with the 8-bit dynamic map: flat float32 `values` ->
/// (`Uint8` codes, float32 absmax per block).
pub fn quantize_blockwise_8bit(
    values: &Tensor,
    code: &Tensor,
    blocksize: i64,
) -> TchResult<(Tensor, Tensor)> {
    let (scaled, absmax) = blockwise_scale(values, blocksize)?;
    let bucket = scaled.f_bucketize(&sorted_midpoints(code)?, true, false)?;
    Ok((bucket.f_to_kind(Kind::Uint8)?, absmax))
}

/// `dequantize_blockwise`: `code[q] * absmax[block]` in float32.
pub fn dequantize_blockwise_8bit(
    codes: &Tensor,
    absmax: &Tensor,
    code: &Tensor,
    blocksize: i64,
) -> TchResult<Tensor> {
    let values = code.f_index_select(0, &codes.f_reshape([-1])?.f_to_kind(Kind::Int)?)?;
    blockwise_rescale(&values, absmax, blocksize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf4_is_sorted_and_spans_minus_one_to_one() {
        let t = FourBitType::Nf4.table();
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((t[0], t[7], t[15]), (-1.0, 0.0, 1.0));
    }

    #[test]
    fn fp4_order_sorts_the_table_zeros_in_index_order() {
        let t = FourBitType::Fp4.table();
        let order = FourBitType::Fp4.sorted_codes();
        let sorted: Vec<f32> = order.iter().map(|&c| t[c as usize]).collect();
        assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "{sorted:?}");
        assert_eq!((order[7], order[8]), (0, 8));
        assert_eq!((t[0].to_bits(), t[8].to_bits()), (0, 0));
        assert_eq!(t[1], 0.0625f32 / 12.0);
        assert_eq!(t[3], 1.0);
    }

    #[test]
    fn midpoints_lie_between_neighbours() {
        for ty in [FourBitType::Nf4, FourBitType::Fp4] {
            let m = ty.midpoints();
            assert!(m.windows(2).all(|w| w[0] <= w[1]), "{ty:?} {m:?}");
        }
    }

    #[test]
    fn a_midpoint_takes_the_lower_code_and_just_above_it_the_upper() {
        for ty in [FourBitType::Nf4, FourBitType::Fp4] {
            let m = ty.midpoints();
            let order = ty.sorted_codes();
            let above: Vec<f32> = m.iter().map(|v| next_up(*v)).collect();
            let at = ty.nearest_codes(&Tensor::from_slice(&m)).unwrap();
            let up = ty.nearest_codes(&Tensor::from_slice(&above)).unwrap();
            for i in 0..15 {
                assert_eq!(at.int64_value(&[i as i64]) as u8, order[i], "{ty:?} {i}");
                assert_eq!(
                    up.int64_value(&[i as i64]) as u8,
                    order[i + 1],
                    "{ty:?} {i}"
                );
            }
        }
    }

    fn next_up(v: f32) -> f32 {
        if v == 0.0 {
            f32::from_bits(1)
        } else if v > 0.0 {
            f32::from_bits(v.to_bits() + 1)
        } else {
            f32::from_bits(v.to_bits() - 1)
        }
    }

    #[test]
    fn byte_pairs_put_the_first_code_in_the_high_nibble() {
        let t = FourBitType::Nf4.table();
        let pairs = FourBitType::Nf4.byte_pair_table(Device::Cpu).unwrap();
        let row = 0x1E_i64; // codes 1 then 14
        assert_eq!(pairs.double_value(&[row, 0]) as f32, t[1]);
        assert_eq!(pairs.double_value(&[row, 1]) as f32, t[14]);
    }

    #[test]
    fn dynamic_map_has_256_sorted_values_from_minus_one_to_one() {
        let m = dynamic_map(Device::Cpu).unwrap();
        let v: Vec<f32> = Vec::try_from(&m).unwrap();
        assert_eq!(v.len(), 256);
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(v[255], 1.0);
        assert!(v.contains(&0.0));
        assert!(v[0] > -1.0 && v[0] < -0.99);
    }

    #[test]
    fn blockwise_scale_handles_a_partial_last_block() {
        let v = Tensor::from_slice(&[1f32, -2.0, 0.5, 4.0, -1.0]);
        let (s, am) = blockwise_scale(&v, 2).unwrap();
        let s: Vec<f32> = Vec::try_from(&s).unwrap();
        let am: Vec<f32> = Vec::try_from(&am).unwrap();
        assert_eq!(am, vec![2.0, 4.0, 1.0]);
        assert_eq!(s, vec![0.5, -1.0, 0.125, 1.0, -1.0]);
        let back = blockwise_rescale(&Tensor::from_slice(&s), &Tensor::from_slice(&am), 2).unwrap();
        let back: Vec<f32> = Vec::try_from(&back).unwrap();
        assert_eq!(back, vec![1.0, -2.0, 0.5, 4.0, -1.0]);
    }

    #[test]
    fn zero_blocks_scale_to_zero() {
        // A full zero block keeps absmax 0; a partial one stores the 1e-38 clamp.
        let v = Tensor::zeros([5], (Kind::Float, Device::Cpu));
        let (s, am) = blockwise_scale(&v, 4).unwrap();
        assert_eq!(s.abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(am.double_value(&[0]), 0.0);
        assert_eq!(am.double_value(&[1]) as f32, 1e-38f32);
    }

    #[test]
    fn eight_bit_codes_are_the_nearest_entries_of_the_map() {
        tch::manual_seed(3);
        let code = dynamic_map(Device::Cpu).unwrap();
        let v = Tensor::randn([700], (Kind::Float, Device::Cpu));
        let (q, am) = quantize_blockwise_8bit(&v, &code, 256).unwrap();
        let (scaled, _) = blockwise_scale(&v, 256).unwrap();
        let chosen = code.index_select(0, &q.to_kind(Kind::Int64));
        let dist = (&chosen - &scaled).abs();
        let best = (scaled.unsqueeze(1) - code.unsqueeze(0))
            .abs()
            .amin([1], false);
        assert_eq!(dist, best);
        let back = dequantize_blockwise_8bit(&q, &am, &code, 256).unwrap();
        assert_eq!(back.size(), vec![700]);
    }
}
