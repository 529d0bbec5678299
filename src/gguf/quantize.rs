//! `f32` values to ggml's storage types, bit for bit as the reference implementations
//! produce them: F16 and BF16 rounded to nearest even (numpy's `astype(float16)`,
//! ggml's `ggml_compute_fp32_to_bf16` with quiet NaNs), Q8_0 and Q4_0 as gguf-py's
//! `quants.py` (itself the port of `ggml-quants.c`'s `quantize_row_*_ref`), Q4_K as
//! `quantize_row_q4_K_ref` with its weighted scale/min search (`make_qkx2_quants`) and
//! Q6_K as `quantize_row_q6_K_ref` (`make_qx_quants`).
//!
//! Blocks run along the innermost dim, so a caller quantizes a whole tensor at once as
//! long as each row is a whole number of blocks.

use super::GgmlType;
use half::f16;

/// The types [`quantize`] writes.
pub const QUANTIZABLE: [GgmlType; 7] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

/// `values` stored as `ty`; `None` when `ty` is not one of [`QUANTIZABLE`] or the values
/// are not a whole number of its blocks.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    if !QUANTIZABLE.contains(&ty) || !values.len().is_multiple_of(ty.block_size()) {
        return None;
    }
    let blocks = values.chunks_exact(ty.block_size());
    let mut out = Vec::with_capacity(values.len() / ty.block_size() * ty.type_size());
    match ty {
        GgmlType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        GgmlType::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16_bits(*v).to_le_bytes())),
        GgmlType::Q8_0 => blocks.for_each(|b| q8_0_block(b, &mut out)),
        GgmlType::Q4_0 => blocks.for_each(|b| q4_0_block(b, &mut out)),
        GgmlType::Q4_K => blocks.for_each(|b| q4_k_block(b, &mut out)),
        _ => blocks.for_each(|b| q6_k_block(b, &mut out)),
    }
    Some(out)
}

/// ggml's `ggml_compute_fp32_to_bf16`: NaN made quiet, else round to nearest even.
fn bf16_bits(v: f32) -> u16 {
    let n = v.to_bits();
    if n & 0x7fff_ffff > 0x7f80_0000 {
        return ((n & 0xffff_0000) >> 16) as u16 | 64;
    }
    ((u64::from(n) + 0x7fff + u64::from((n >> 16) & 1)) >> 16) as u16
}

/// `d = max|x| / 127`, `q = round(x / d)` (half away from zero, C's `roundf`).
fn q8_0_block(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

/// `d = max / -8` with `max` the value of largest magnitude (the first one),
/// `q = min(15, trunc(x / d + 8.5))`; nibbles: low = first half of the block.
fn q4_0_block(x: &[f32], out: &mut Vec<u8>) {
    let mut max = 0f32;
    for &v in x {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q = |v: f32| ((v * id + 8.5).trunc() as u8).min(15);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let half = x.len() / 2;
    out.extend((0..half).map(|j| q(x[j]) | (q(x[j + half]) << 4)));
}

/// ggml's `nearest_int`: round half to even through the float mantissa.
fn nearest_int(f: f32) -> i32 {
    let v = f + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// `make_qkx2_quants`: the scale and (negated) min of a sub-block whose levels `l`
/// (0..=nmax) minimise the weighted squared error, searched over `nstep + 1` candidate
/// scales around `nmax / (max - min)`.
#[allow(clippy::too_many_arguments)] // the reference function's own signature
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = if x[i] < min { x[i] } else { min };
        max = if x[i] > max { x[i] } else { max };
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.iter_mut().for_each(|v| *v = 0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, lf) = (weights[i], q as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min.
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// `quantize_row_q4_K_ref` for one 256-value block: 8 sub-blocks of 32 with 6-bit
/// scales and mins under f16 super-scales, 4-bit levels.
fn q4_k_block(x: &[f32], out: &mut Vec<u8>) {
    let mut l = [0u8; 256];
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; 8];
    let mut scales = [0f32; 8];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let sub = &x[32 * j..32 * j + 32];
        let sum_x2 = sub.iter().fold(0f32, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(sub) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            15,
            sub,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut laux,
            -1.0,
            0.1,
            20,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        // The reference stores nearest_int's result in a uint8_t before the MIN.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dj = d.to_f32() * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * f32::from(m);
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dj).clamp(0, 15) as u8;
        }
    }
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&dmin.to_le_bytes());
    out.extend_from_slice(&packed);
    for chunk in (0..256).step_by(64) {
        out.extend((0..32).map(|i| l[chunk + i] | (l[chunk + i + 32] << 4)));
    }
}

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below this is all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// `make_qx_quants` with `rmse_type = 1` and no weights (what Q6_K uses): signed levels
/// `-nmax..nmax` (stored `+ nmax`) and the scale minimising the `x²`-weighted error over
/// 19 candidate scales around `-nmax / max`.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.iter_mut().for_each(|v| *v = 0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let q = level(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (li, &v) in l.iter_mut().zip(x) {
        *li = (level(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l.iter_mut().zip(x) {
                *li = (level(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `quantize_row_q6_K_ref` for one 256-value block: 16 sub-blocks of 16 with signed
/// 8-bit scales under one f16 scale, 6-bit levels split into low nibbles (`ql`) and
/// high bit pairs (`qh`); `d` last.
fn q6_k_block(x: &[f32], out: &mut Vec<u8>) {
    let mut l = [0i8; 256];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for ib in 0..16 {
        let scale = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
        scales[ib] = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        out.extend_from_slice(&[0u8; 210]);
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = f16::from_f32(1.0 / iscale);
    let mut sc = [0i8; 16];
    for (s, &scale) in sc.iter_mut().zip(&scales) {
        *s = nearest_int(iscale * scale).min(127) as i8;
    }
    for j in 0..16 {
        let dj = d.to_f32() * f32::from(sc[j]);
        if dj == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = (nearest_int(x[16 * j + ii] / dj).clamp(-32, 31) + 32) as i8;
        }
    }
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for (half, j) in (0..256).step_by(128).enumerate() {
        let (ql, qh) = (&mut ql[64 * half..], &mut qh[32 * half..]);
        for i in 0..32 {
            let q = |o: usize| l[j + i + o] as u8;
            ql[i] = (q(0) & 0xF) | ((q(64) & 0xF) << 4);
            ql[i + 32] = (q(32) & 0xF) | ((q(96) & 0xF) << 4);
            qh[i] = (q(0) >> 4) | ((q(32) >> 4) << 2) | ((q(64) >> 4) << 4) | ((q(96) >> 4) << 6);
        }
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(sc.iter().map(|&s| s as u8));
    out.extend_from_slice(&d.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequant::dequantize_into;

    /// Deterministic values of varied magnitude, with a block of zeros and an outlier.
    fn values(n: usize) -> Vec<f32> {
        let mut s = 0x2545_f491u32;
        let mut v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * 0.2
            })
            .collect();
        v[..32].iter_mut().for_each(|x| *x = 0.0);
        v[300] = 3.0;
        v
    }

    #[test]
    fn every_type_round_trips_within_its_precision() {
        let x = values(1024);
        let amax = 0.1f32;
        for (ty, tol) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 1e-4),
            (GgmlType::BF16, 1e-3),
            (GgmlType::Q8_0, amax / 127.0),
            (GgmlType::Q4_0, amax / 8.0 * 1.01),
            (GgmlType::Q4_K, amax / 8.0),
            (GgmlType::Q6_K, amax / 32.0),
        ] {
            let bytes = quantize(ty, &x).expect("quantizes");
            assert_eq!(bytes.len(), 1024 / ty.block_size() * ty.type_size(), "{ty}");
            let mut back = vec![0f32; x.len()];
            dequantize_into(ty, &bytes, &mut back);
            // The outlier's blocks are coarse; judge the others.
            let worst = x
                .iter()
                .zip(&back)
                .enumerate()
                .filter(|(i, _)| i / 256 != 1)
                .map(|(_, (a, b))| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= tol, "{ty}: {worst} > {tol}");
            assert!((back[300] - 3.0).abs() < 3.0 / 100.0, "{ty}: {}", back[300]);
            assert!(
                back[..32].iter().all(|v| *v == 0.0),
                "{ty}: zeros stay zero"
            );
        }
        assert_eq!(quantize(GgmlType::Q8_0, &x[..48]), None);
        assert_eq!(quantize(GgmlType::Q4_1, &x), None);
    }

    #[test]
    fn rounding_follows_the_references() {
        // bf16: nearest even, NaN quiet.
        assert_eq!(bf16_bits(1.0), 0x3f80);
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80); // tie to even
        assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        // nearest_int rounds half to even, as the float trick does.
        assert_eq!(
            [nearest_int(0.5), nearest_int(1.5), nearest_int(-2.5)],
            [0, 2, -2]
        );
        // Q8_0: 127 * x / max, half away from zero.
        let mut x = [0f32; 32];
        x[0] = 1.27;
        x[1] = -0.005;
        let b = quantize(GgmlType::Q8_0, &x).expect("q8");
        assert_eq!((b[2] as i8, b[3] as i8), (127, -1));
        // Q4_0: the largest magnitude maps to level 0 (d = max / -8).
        x[2] = -2.0;
        let b = quantize(GgmlType::Q4_0, &x).expect("q4");
        assert_eq!(f16::from_le_bytes([b[0], b[1]]).to_f32(), 0.25);
        assert_eq!(b[2 + 2] & 0xF, 0);
    }
}
