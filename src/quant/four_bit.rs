//! 4-bit weights (QLoRA's NF4 and FP4) stored as bitsandbytes stores them: two
//! codes per byte, first element in the high nibble, one float32 absmax per
//! block of 64, and optionally the absmax values themselves quantized to 8 bits
//! around their mean (double quantization).
//!
//! A forward pass dequantizes the whole weight with tensor ops on its device and
//! multiplies in the compute dtype, which is what bitsandbytes' `gemm_4bit`
//! reference does; nothing is kept between calls but the packed state.

use super::codebook::{
    blockwise_rescale, blockwise_scale, dequantize_blockwise_8bit, dynamic_map,
    quantize_blockwise_8bit, FourBitType, BLOCKSIZE_4BIT, NESTED_BLOCKSIZE,
};
use super::QuantError;
use tch::{Device, Kind, Tensor};

use crate::torch::TchResult;

/// The per-block scales of a 4-bit weight.
#[derive(Debug)]
pub enum Absmax4bit {
    /// One float32 absmax per block (`quant_state.absmax`).
    Plain(Tensor),
    /// Double quantization (`bnb_4bit_use_double_quant`).
    Nested(NestedAbsmax),
}

/// Absmax values quantized with the 8-bit dynamic map: `absmax ≈
/// map[codes] * nested_absmax[block of 256] + offset`.
#[derive(Debug)]
pub struct NestedAbsmax {
    /// `Uint8`, one per 4-bit block (`quant_state.absmax` of a nested state).
    pub codes: Tensor,
    /// Float32, one per 256 codes (`quant_state.state2.absmax`).
    pub nested_absmax: Tensor,
    /// Float32 scalar (shape `[]`): the mean absmax subtracted before
    /// quantizing (`quant_state.offset`).
    pub offset: Tensor,
    /// The dynamic map, kept on the device for dequantization
    /// (`quant_state.state2.code`).
    map: Tensor,
}

impl NestedAbsmax {
    /// Quantizes float32 absmax values as `quantize_4bit(...,
    /// compress_statistics=True)` does.
    pub fn quantize(absmax: &Tensor) -> TchResult<NestedAbsmax> {
        let offset = absmax.f_mean(Kind::Float)?;
        let map = dynamic_map(absmax.device())?;
        let (codes, nested_absmax) =
            quantize_blockwise_8bit(&absmax.f_sub(&offset)?, &map, NESTED_BLOCKSIZE)?;
        Ok(NestedAbsmax {
            codes,
            nested_absmax,
            offset,
            map,
        })
    }

    /// The float32 absmax values (`dequantize_blockwise(...) + offset`).
    pub fn dequantize(&self) -> TchResult<Tensor> {
        dequantize_blockwise_8bit(
            &self.codes,
            &self.nested_absmax,
            &self.map,
            NESTED_BLOCKSIZE,
        )?
        .f_add(&self.offset)
    }

    fn memory_bytes(&self) -> i64 {
        bytes(&self.codes) + bytes(&self.nested_absmax) + bytes(&self.offset)
    }
}

impl Absmax4bit {
    /// Float32 absmax, one per block.
    pub fn values(&self) -> TchResult<Tensor> {
        match self {
            Absmax4bit::Plain(a) => Ok(a.shallow_clone()),
            Absmax4bit::Nested(n) => n.dequantize(),
        }
    }

    fn memory_bytes(&self) -> i64 {
        match self {
            Absmax4bit::Plain(a) => bytes(a),
            Absmax4bit::Nested(n) => n.memory_bytes(),
        }
    }
}

/// A weight quantized to 4 bits (bitsandbytes' `Params4bit` + `QuantState`).
#[derive(Debug)]
pub struct Packed4bit {
    quant_type: FourBitType,
    /// `Uint8 [(numel + 1) / 2, 1]`, the layout of `Params4bit.data`.
    codes: Tensor,
    absmax: Absmax4bit,
    /// The original weight's shape and kind (`quant_state.shape` / `.dtype`).
    shape: Vec<i64>,
    dtype: Kind,
    /// `bnb_4bit_compute_dtype`.
    compute_kind: Kind,
    /// Byte -> the two code values, on the weight's device (2 KiB).
    pairs: Tensor,
}

impl Packed4bit {
    /// `quantize_4bit(weight, blocksize=64, compress_statistics=double_quant,
    /// quant_type)`, on the weight's device. `compute_kind` is the
    /// `bnb_4bit_compute_dtype` used by [`Packed4bit::linear`].
    pub fn quantize(
        weight: &Tensor,
        quant_type: FourBitType,
        double_quant: bool,
        compute_kind: Kind,
    ) -> Result<Packed4bit, QuantError> {
        super::check_float(weight)?;
        let _guard = tch::no_grad_guard();
        let flat = weight.f_reshape([-1])?.f_to_kind(Kind::Float)?;
        let (mut scaled, absmax) = blockwise_scale(&flat, BLOCKSIZE_4BIT)?;
        if scaled.size()[0] % 2 == 1 {
            // bitsandbytes pads with a zero value before choosing codes.
            scaled = scaled.f_constant_pad_nd([0, 1])?;
        }
        let codes = pack_nibbles(&quant_type.nearest_codes(&scaled)?)?;
        let absmax = if double_quant {
            Absmax4bit::Nested(NestedAbsmax::quantize(&absmax)?)
        } else {
            Absmax4bit::Plain(absmax)
        };
        Ok(Packed4bit {
            quant_type,
            pairs: quant_type.byte_pair_table(weight.device())?,
            codes,
            absmax,
            shape: weight.size(),
            dtype: weight.kind(),
            compute_kind,
        })
    }

    /// The weight in float32 and then `kind`, as `dequantize_4bit` computes it:
    /// `table[code] * absmax[block]`.
    pub fn dequantize(&self, kind: Kind) -> TchResult<Tensor> {
        let _guard = tch::no_grad_guard();
        let n: i64 = self.shape.iter().product();
        let values = self
            .pairs
            .f_index_select(0, &self.codes.f_reshape([-1])?.f_to_kind(Kind::Int)?)?
            .f_reshape([-1])?
            .f_narrow(0, 0, n)?;
        blockwise_rescale(&values, &self.absmax.values()?, BLOCKSIZE_4BIT)?
            .f_view(self.shape.as_slice())?
            .f_to_kind(kind)
    }

    /// `y = x W^T + b` as bitsandbytes' `Linear4bit.forward` computes it:
    /// float32 and bfloat16 inputs compute in their own dtype, float16 inputs in
    /// `bnb_4bit_compute_dtype`; the weight is dequantized straight to that
    /// dtype and the result is returned in the input's dtype.
    pub fn linear(&self, x: &Tensor, bias: Option<&Tensor>) -> TchResult<Tensor> {
        let input = x.kind();
        let compute = effective_compute_kind(input, self.compute_kind);
        let w = self.dequantize(compute)?;
        let bias = bias.map(|b| b.f_to_kind(compute)).transpose()?;
        x.f_to_kind(compute)?
            .f_linear(&w, bias.as_ref())?
            .f_to_kind(input)
    }

    pub fn quant_type(&self) -> FourBitType {
        self.quant_type
    }
    /// The packed codes, `Uint8 [(numel + 1) / 2, 1]`.
    pub fn codes(&self) -> &Tensor {
        &self.codes
    }
    pub fn absmax(&self) -> &Absmax4bit {
        &self.absmax
    }
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }
    /// The kind of the weight that was quantized (and of [`Self::dequantize_default`]).
    pub fn dtype(&self) -> Kind {
        self.dtype
    }
    pub fn compute_kind(&self) -> Kind {
        self.compute_kind
    }
    pub fn device(&self) -> Device {
        self.codes.device()
    }
    /// Elements of the original weight.
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }

    /// `dequantize_4bit(codes, quant_state)`: back to the original kind.
    pub fn dequantize_default(&self) -> TchResult<Tensor> {
        self.dequantize(self.dtype)
    }

    /// Bytes held: packed codes, absmax and nested state. The code tables
    /// (bitsandbytes' `quant_map`, ftui's byte-pair table) are not counted.
    pub fn memory_bytes(&self) -> i64 {
        bytes(&self.codes) + self.absmax.memory_bytes()
    }

    /// What transformers' `get_memory_footprint()` counts for a `Params4bit`:
    /// the packed `uint8` parameter only (its quant state is neither a
    /// parameter nor a buffer).
    pub fn hf_footprint_bytes(&self) -> i64 {
        bytes(&self.codes)
    }
}

/// The dtype `Linear4bit` multiplies in for an input of kind `input`
/// (`Linear4bit.set_compute_type`): float32 and bfloat16 inputs keep theirs.
pub fn effective_compute_kind(input: Kind, compute_kind: Kind) -> Kind {
    match input {
        Kind::Float | Kind::BFloat16 => input,
        _ => compute_kind,
    }
}

/// Packs `Uint8` codes (< 16, even count) two per byte, the first in the high
/// nibble: `(q[0::2] << 4) | q[1::2]`, shaped `[n / 2, 1]`.
pub fn pack_nibbles(codes: &Tensor) -> TchResult<Tensor> {
    let pairs = codes.f_reshape([-1, 2])?;
    pairs
        .f_select(1, 0)?
        .f_bitwise_left_shift_tensor_scalar(4)?
        .f_bitwise_or_tensor(&pairs.f_select(1, 1)?)?
        .f_unsqueeze(1)
}

/// The first `n` codes of packed bytes, as `Uint8 [n]`.
pub fn unpack_nibbles(packed: &Tensor, n: i64) -> TchResult<Tensor> {
    let bytes = packed.f_reshape([-1])?;
    let high = bytes.f_bitwise_right_shift_tensor_scalar(4)?;
    let low = bytes.f_bitwise_and(0x0F)?;
    Tensor::f_stack(&[high, low], 1)?
        .f_reshape([-1])?
        .f_narrow(0, 0, n)
}

fn bytes(t: &Tensor) -> i64 {
    t.numel() as i64 * t.kind().elt_size_in_bytes() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(kind: Kind) -> (Kind, Device) {
        (kind, Device::Cpu)
    }

    #[test]
    fn packing_puts_the_first_element_in_the_high_nibble() {
        let codes = Tensor::from_slice(&[1u8, 2, 15, 0, 7, 8]);
        let packed = pack_nibbles(&codes).unwrap();
        assert_eq!(packed.size(), vec![3, 1]);
        let b: Vec<u8> = Vec::try_from(&packed.reshape([-1])).unwrap();
        assert_eq!(b, vec![0x12, 0xF0, 0x78]);
        let back: Vec<u8> = Vec::try_from(&unpack_nibbles(&packed, 5).unwrap()).unwrap();
        assert_eq!(back, vec![1, 2, 15, 0, 7]);
    }

    #[test]
    fn pack_unpack_round_trips_every_code_pair() {
        let all: Vec<u8> = (0..256u32)
            .flat_map(|b| [(b >> 4) as u8, (b & 15) as u8])
            .collect();
        let packed = pack_nibbles(&Tensor::from_slice(&all)).unwrap();
        let bytes: Vec<u8> = Vec::try_from(&packed.reshape([-1])).unwrap();
        assert_eq!(bytes, (0..=255u8).collect::<Vec<_>>());
        let back: Vec<u8> = Vec::try_from(&unpack_nibbles(&packed, 512).unwrap()).unwrap();
        assert_eq!(back, all);
    }

    /// Property: every code is the nearest table entry to its scaled value, so
    /// the round-trip error of an element is at most half the gap around it
    /// times its block's absmax.
    #[test]
    fn round_trip_error_is_at_most_half_a_code_step_times_absmax() {
        for (seed, shape) in [
            (0, vec![96i64, 192]),
            (1, vec![10, 30]),
            (2, vec![3, 5]),
            (3, vec![7, 64]),
        ] {
            tch::manual_seed(seed);
            let w = Tensor::randn(shape.as_slice(), cpu(Kind::Float)) * 0.05;
            for ty in [FourBitType::Nf4, FourBitType::Fp4] {
                let p = Packed4bit::quantize(&w, ty, false, Kind::Float).unwrap();
                let back = p.dequantize(Kind::Float).unwrap().reshape([-1]);
                let flat = w.reshape([-1]);
                let (scaled, absmax) = blockwise_scale(&flat, BLOCKSIZE_4BIT).unwrap();
                let n = flat.size()[0];
                let codes = unpack_nibbles(p.codes(), n).unwrap().to_kind(Kind::Int64);
                let table = Tensor::from_slice(&ty.table());
                let chosen = table.index_select(0, &codes);
                let best = (scaled.unsqueeze(1) - table.unsqueeze(0))
                    .abs()
                    .amin([1], false);
                assert_eq!((&chosen - &scaled).abs(), best, "{ty:?} {shape:?}");
                // Half the widest gap of the table bounds every element's error.
                let mut sorted = ty.table();
                sorted.sort_by(f32::total_cmp);
                let half_step = sorted.windows(2).map(|w| w[1] - w[0]).fold(0f32, f32::max) / 2.0;
                let block_absmax = absmax
                    .repeat_interleave_self_int(BLOCKSIZE_4BIT, 0, None)
                    .narrow(0, 0, n);
                let err = (&back - &flat).abs();
                let bound = block_absmax * (half_step as f64 * (1.0 + 1e-6));
                assert!(
                    bool::try_from(err.le_tensor(&bound).all()).unwrap(),
                    "{ty:?} {shape:?}"
                );
            }
        }
    }

    #[test]
    fn exact_table_values_survive_the_round_trip() {
        for ty in [FourBitType::Nf4, FourBitType::Fp4] {
            let mut v: Vec<f32> = ty.table().iter().map(|x| x * 0.5).collect();
            v.extend(std::iter::repeat_n(0.0, 48));
            let w = Tensor::from_slice(&v).view([1, 64]);
            let p = Packed4bit::quantize(&w, ty, false, Kind::Float).unwrap();
            assert_eq!(p.dequantize(Kind::Float).unwrap(), w, "{ty:?}");
        }
    }

    #[test]
    fn double_quant_keeps_absmax_within_half_a_map_step() {
        tch::manual_seed(5);
        let w = Tensor::randn([96, 192], cpu(Kind::Float)) * 0.05;
        let plain = Packed4bit::quantize(&w, FourBitType::Nf4, false, Kind::Float).unwrap();
        let nested = Packed4bit::quantize(&w, FourBitType::Nf4, true, Kind::Float).unwrap();
        assert_eq!(plain.codes(), nested.codes());
        let exact = plain.absmax().values().unwrap();
        let approx = nested.absmax().values().unwrap();
        let Absmax4bit::Nested(n) = nested.absmax() else {
            panic!("not nested")
        };
        assert_eq!(n.codes.kind(), Kind::Uint8);
        assert_eq!(n.codes.size(), vec![288]);
        assert_eq!(n.nested_absmax.size(), vec![2]);
        // The dynamic map's widest gap is about 0.014 (its top decade has 64
        // steps over [0.1, 1]), so each absmax is off by well under 0.05 times
        // its block's nested absmax.
        let nested_max = n.nested_absmax.max().double_value(&[]);
        let err = (&approx - &exact).abs().max().double_value(&[]);
        assert!(err <= 0.05 * nested_max, "{err} vs {nested_max}");
        // 288 bytes of codes + 2 floats + the offset instead of 288 floats.
        assert_eq!(nested.memory_bytes(), 9216 + 288 + 8 + 4);
        assert_eq!(plain.memory_bytes(), 9216 + 288 * 4);
        assert_eq!(nested.hf_footprint_bytes(), 9216);
    }

    #[test]
    fn dequantize_casts_to_the_requested_kind() {
        tch::manual_seed(6);
        let w = (Tensor::randn([4, 64], cpu(Kind::Float)) * 0.05).to_kind(Kind::BFloat16);
        let p = Packed4bit::quantize(&w, FourBitType::Nf4, false, Kind::Float).unwrap();
        assert_eq!(p.dtype(), Kind::BFloat16);
        assert_eq!(p.dequantize_default().unwrap().kind(), Kind::BFloat16);
        let f = p.dequantize(Kind::Float).unwrap();
        assert_eq!(f.kind(), Kind::Float);
        assert_eq!(f.size(), vec![4, 64]);
    }

    #[test]
    fn compute_kind_follows_linear4bit() {
        assert_eq!(
            effective_compute_kind(Kind::Float, Kind::BFloat16),
            Kind::Float
        );
        assert_eq!(
            effective_compute_kind(Kind::BFloat16, Kind::Float),
            Kind::BFloat16
        );
        assert_eq!(effective_compute_kind(Kind::Half, Kind::Float), Kind::Float);
        assert_eq!(
            effective_compute_kind(Kind::Half, Kind::BFloat16),
            Kind::BFloat16
        );
    }

    #[test]
    fn linear_lets_gradients_reach_the_input_only() {
        tch::manual_seed(7);
        let w = Tensor::randn([8, 64], cpu(Kind::Float)) * 0.05;
        let p = Packed4bit::quantize(&w, FourBitType::Nf4, true, Kind::Float).unwrap();
        let x = Tensor::randn([2, 3, 64], cpu(Kind::Float)).set_requires_grad(true);
        let y = p.linear(&x, None).unwrap();
        assert_eq!(y.size(), vec![2, 3, 8]);
        y.sum(Kind::Float).backward();
        let g = x.grad();
        let expected = p
            .dequantize(Kind::Float)
            .unwrap()
            .sum_dim_intlist(&[0i64][..], false, Kind::Float)
            .expand([2, 3, 64], false);
        assert!(g.allclose(&expected, 1e-6, 1e-6, false));
        assert!(!p.codes().requires_grad());
    }

    #[test]
    fn half_kinds_and_integers_are_checked() {
        let ints = Tensor::zeros([2, 64], cpu(Kind::Int64));
        assert!(Packed4bit::quantize(&ints, FourBitType::Nf4, false, Kind::Float).is_err());
        let half = Tensor::ones([2, 64], cpu(Kind::Half));
        let p = Packed4bit::quantize(&half, FourBitType::Fp4, false, Kind::Float).unwrap();
        assert_eq!(p.dequantize_default().unwrap(), half);
    }
}
