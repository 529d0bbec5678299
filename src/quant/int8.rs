//! LLM.int8 weights (`load_in_8bit`): each output row scaled by its absmax to
//! int8, as bitsandbytes' `Int8Params` stores them (`CB` codes, `SCB` scales).
//!
//! Two forward passes: [`Int8Weight::linear`] dequantizes and multiplies in the
//! input's dtype (bitsandbytes' `MatMul8bitFp`, its training path on CPU), and
//! [`Int8Weight::linear_llm_int8`] runs the LLM.int8 inference algorithm
//! (`MatMul8bitLt`): the input is quantized row-wise too, multiplied as int8,
//! and the input columns holding an outlier (|x| >= `llm_int8_threshold`) are
//! multiplied in float16 instead.

use super::QuantError;
use tch::{Device, Kind, Tensor};

use crate::torch::TchResult;

/// `1 / 127` as bitsandbytes writes it in `int8_vectorwise_dequant`.
const INV_127: f64 = 7.874015718698502e-3;
/// `1 / 127^2` as bitsandbytes writes it in `int8_mm_dequant`.
const INV_127_SQ: f64 = 6.200124e-05;
/// int8 x int8 products summed in float32 are exact integers up to 2^24; 1024
/// terms of at most 127 * 127 stay below that.
const EXACT_CHUNK: i64 = 1024;

/// A 2-D weight `[out, in]` in LLM.int8 format.
#[derive(Debug)]
pub struct Int8Weight {
    /// `Int8 [out, in]`: `round(w * 127 / absmax_row)` (`Int8Params.CB`).
    cb: Tensor,
    /// Float32 `[out]`: each row's absmax (`Int8Params.SCB`).
    scb: Tensor,
    /// The kind of the weight that was quantized.
    dtype: Kind,
    /// `llm_int8_threshold` for [`Int8Weight::linear_llm_int8`] through
    /// `LinearWeight::linear_inference` (0: no outlier columns).
    threshold: f64,
}

impl Int8Weight {
    /// `Int8Params._quantize`: the weight goes to float16 first, then
    /// `int8_vectorwise_quant`. A row of zeros gets codes 0 and scale 0.
    pub fn quantize(weight: &Tensor) -> Result<Int8Weight, QuantError> {
        super::check_float(weight)?;
        if weight.dim() != 2 {
            return Err(QuantError::Shape {
                shape: weight.size(),
            });
        }
        let _guard = tch::no_grad_guard();
        let (cb, scb) = rowwise_quant(&weight.f_to_kind(Kind::Half)?)?;
        Ok(Int8Weight {
            cb,
            scb,
            dtype: weight.kind(),
            threshold: 0.0,
        })
    }

    /// Sets the outlier threshold used by `LinearWeight::linear_inference`.
    pub fn with_threshold(mut self, threshold: f64) -> Int8Weight {
        self.threshold = threshold;
        self
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// `int8_vectorwise_dequant(CB, SCB)` (float32), then `kind`.
    pub fn dequantize(&self, kind: Kind) -> TchResult<Tensor> {
        let _guard = tch::no_grad_guard();
        self.cb
            .f_mul(&self.scb.f_view([-1, 1])?)?
            .f_mul_scalar(INV_127)?
            .f_to_kind(kind)
    }

    /// `y = x W^T + b` with the weight dequantized to the input's dtype, as
    /// `MatMul8bitFp` does (`CB.to(x.dtype) * (SCB * (1 / 127))`).
    pub fn linear(&self, x: &Tensor, bias: Option<&Tensor>) -> TchResult<Tensor> {
        let kind = x.kind();
        let w = {
            let _guard = tch::no_grad_guard();
            let scale = self.scb.f_unsqueeze(1)?.f_mul_scalar(1.0 / 127.0)?;
            self.cb.f_to_kind(kind)?.f_mul(&scale)?.f_to_kind(kind)?
        };
        let bias = bias.map(|b| b.f_to_kind(kind)).transpose()?;
        x.f_linear(&w, bias.as_ref())
    }

    /// LLM.int8 inference as bitsandbytes' `MatMul8bitLt` computes it with
    /// `threshold` (`llm_int8_threshold`; 0 = no outlier columns): the result
    /// has the input's dtype. The int8 product is exact (int32 semantics).
    pub fn linear_llm_int8(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        threshold: f64,
    ) -> TchResult<Tensor> {
        let _guard = tch::no_grad_guard();
        let kind = x.kind();
        let shape = x.size();
        let k = shape.last().copied().unwrap_or(0);
        let a = x.f_reshape([-1, k])?;
        let mut a16 = a.f_to_kind(Kind::Half)?;
        let mut outlier_cols = None;
        if threshold > 0.0 {
            let outliers = a16.f_abs()?.f_ge(threshold)?;
            if bool::try_from(&outliers.f_any()?)? {
                outlier_cols = Some(outliers.f_any_dim(0, false)?.f_nonzero()?.f_view([-1])?);
                a16 = a16.f_masked_fill(&outliers, 0.0)?;
            }
        }
        let (mut ca, sca) = rowwise_quant(&a16)?;
        if let Some(cols) = &outlier_cols {
            ca = ca.f_index_fill(1, cols, 0)?;
        }
        // int8_mm_dequant: i32 * (row_stats * col_stats) / 127^2 (+ bias).
        let mut out = int8_matmul(&ca, &self.cb)?
            .f_mul(&sca.f_unsqueeze(1)?.f_mul(&self.scb.f_unsqueeze(0)?)?)?
            .f_mul_scalar(INV_127_SQ)?;
        if let Some(b) = bias {
            out = out.f_add(&b.f_to_kind(kind)?)?;
        }
        out = out.f_to_kind(kind)?;
        if let Some(cols) = &outlier_cols {
            let sub_a = a.f_index_select(1, cols)?;
            let sub_b = self
                .cb
                .f_index_select(1, cols)?
                .f_mul(&self.scb.f_view([-1, 1])?)?
                .f_mul_scalar(INV_127)?
                .f_to_kind(kind)?
                .f_transpose(0, 1)?;
            out = out.f_addmm(&sub_a, &sub_b)?;
        }
        let mut out_shape = shape;
        if let Some(last) = out_shape.last_mut() {
            *last = self.cb.size()[0];
        }
        out.f_reshape(out_shape.as_slice())
    }

    /// `Int8 [out, in]` codes (`CB`).
    pub fn cb(&self) -> &Tensor {
        &self.cb
    }
    /// Float32 `[out]` row absmax (`SCB`).
    pub fn scb(&self) -> &Tensor {
        &self.scb
    }
    pub fn dtype(&self) -> Kind {
        self.dtype
    }
    pub fn shape(&self) -> Vec<i64> {
        self.cb.size()
    }
    pub fn device(&self) -> Device {
        self.cb.device()
    }
    pub fn numel(&self) -> i64 {
        self.cb.numel() as i64
    }

    /// Bytes held: codes and row scales.
    pub fn memory_bytes(&self) -> i64 {
        self.numel() + self.scb.numel() as i64 * 4
    }

    /// What transformers' `get_memory_footprint()` counts for an `Int8Params`:
    /// the int8 parameter only (`SCB` is neither a parameter nor a buffer).
    pub fn hf_footprint_bytes(&self) -> i64 {
        self.numel()
    }
}

/// `int8_vectorwise_quant(A)` for a float16 `[rows, cols]` tensor: the row
/// absmax (float32) and `round(A * (127 / absmax))` as int8. bitsandbytes
/// writes `127.0 / row_stats`, which torch evaluates as
/// `row_stats.reciprocal() * 127`; a zero row gives NaN there, stored as 0.
fn rowwise_quant(a: &Tensor) -> TchResult<(Tensor, Tensor)> {
    let stats = a.f_abs()?.f_amax([1], false)?.f_to_kind(Kind::Float)?;
    let scale = stats.f_reciprocal()?.f_mul_scalar(127.0)?.f_unsqueeze(-1)?;
    let codes = a
        .f_mul(&scale)?
        .f_round()?
        .f_nan_to_num(0.0, 0.0, 0.0)?
        .f_to_kind(Kind::Int8)?;
    Ok((codes, stats))
}

/// `A @ B^T` for int8 `A [m, k]`, `B [n, k]`, exactly, as int32.
fn int8_matmul(a: &Tensor, b: &Tensor) -> TchResult<Tensor> {
    let k = a.size()[1];
    let mut acc: Option<Tensor> = None;
    let mut start = 0;
    while start < k {
        let len = EXACT_CHUNK.min(k - start);
        let part = a
            .f_narrow(1, start, len)?
            .f_to_kind(Kind::Float)?
            .f_matmul(
                &b.f_narrow(1, start, len)?
                    .f_to_kind(Kind::Float)?
                    .f_transpose(0, 1)?,
            )?
            .f_to_kind(Kind::Int64)?;
        acc = Some(match acc {
            Some(sum) => sum.f_add(&part)?,
            None => part,
        });
        start += len;
    }
    match acc {
        Some(sum) => sum.f_to_kind(Kind::Int),
        None => Tensor::f_zeros([a.size()[0], b.size()[0]], (Kind::Int, a.device())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_rounded_half_to_even() {
        let w = Tensor::from_slice(&[127f32, 0.5, 1.5, 2.5, -0.5, -1.5, 3.5, 126.5]).view([1, 8]);
        let q = Int8Weight::quantize(&w).unwrap();
        let c: Vec<i8> = Vec::try_from(&q.cb().reshape([-1])).unwrap();
        assert_eq!(c, vec![127, 0, 2, 2, 0, -2, 4, 126]);
        assert_eq!(q.scb().double_value(&[0]), 127.0);
    }

    #[test]
    fn a_zero_row_has_zero_codes_and_scale() {
        let w = Tensor::randn([3, 16], (Kind::Float, Device::Cpu));
        let _ = w.get(1).fill_(0.0);
        let q = Int8Weight::quantize(&w).unwrap();
        assert_eq!(q.cb().get(1).abs().sum(Kind::Int64).int64_value(&[]), 0);
        assert_eq!(q.scb().double_value(&[1]), 0.0);
        assert_eq!(
            q.dequantize(Kind::Float)
                .unwrap()
                .get(1)
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
    }

    /// Property: the error is at most half a step (absmax / 127 / 2) plus the
    /// float16 rounding of the weight.
    #[test]
    fn round_trip_error_is_at_most_half_a_step() {
        tch::manual_seed(11);
        let w = Tensor::randn([33, 70], (Kind::Float, Device::Cpu)) * 0.1;
        let q = Int8Weight::quantize(&w).unwrap();
        let back = q.dequantize(Kind::Float).unwrap();
        let half_step = q.scb().unsqueeze(1) / 254.0;
        let fp16 = w.abs() * 2f64.powi(-11);
        let err = (&back - &w).abs();
        assert!(bool::try_from(err.le_tensor(&(half_step * 1.0001 + fp16 + 1e-7)).all()).unwrap());
        assert_eq!(q.memory_bytes(), 33 * 70 + 33 * 4);
        assert_eq!(q.hf_footprint_bytes(), 33 * 70);
    }

    #[test]
    fn llm_int8_without_outliers_approximates_the_dense_product() {
        tch::manual_seed(12);
        let w = Tensor::randn([16, 2500], (Kind::Float, Device::Cpu)) * 0.05;
        let x = Tensor::randn([2, 3, 2500], (Kind::Float, Device::Cpu));
        let q = Int8Weight::quantize(&w).unwrap();
        let dense = x.linear(&q.dequantize(Kind::Float).unwrap(), None::<Tensor>);
        let y = q.linear_llm_int8(&x, None, 6.0).unwrap();
        assert_eq!(y.size(), vec![2, 3, 16]);
        let rel = (&y - &dense).abs().max().double_value(&[]) / dense.abs().max().double_value(&[]);
        assert!(rel < 0.02, "{rel}");
        // Outlier columns go through float16 exactly as the dense product does.
        let xo = x.copy();
        let _ = xo.narrow(2, 7, 1).fill_(50.0);
        let y = q.linear_llm_int8(&xo, None, 6.0).unwrap();
        let dense = xo.linear(&q.dequantize(Kind::Float).unwrap(), None::<Tensor>);
        let rel = (&y - &dense).abs().max().double_value(&[]) / dense.abs().max().double_value(&[]);
        assert!(rel < 0.02, "{rel}");
    }

    #[test]
    fn int8_matmul_is_exact_beyond_float32_integers() {
        let k = 3000;
        let a = Tensor::full([1, k], 127, (Kind::Int8, Device::Cpu));
        let b = Tensor::full([2, k], -127, (Kind::Int8, Device::Cpu));
        let p = int8_matmul(&a, &b).unwrap();
        assert_eq!(p.int64_value(&[0, 1]), -127 * 127 * k);
    }

    #[test]
    fn only_matrices_are_accepted() {
        let v = Tensor::ones([8], (Kind::Float, Device::Cpu));
        assert!(matches!(
            Int8Weight::quantize(&v),
            Err(QuantError::Shape { .. })
        ));
    }
}
