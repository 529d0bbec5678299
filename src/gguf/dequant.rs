//! Dequantization: ggml's `dequantize_row_*` (`ggml/src/ggml-quants.c`), block by block,
//! with the same order of float operations so results match ggml and gguf-py bit for bit.
//! Large tensors are expanded on all cores.

use half::{bf16, f16};

use super::{le4, GgmlType};

/// Tensors with fewer elements than this are dequantized on the calling thread: spawning
/// threads costs more than it saves on norms and small projections.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 18;

/// Expands `src` (whole blocks of `ty`) into `dst`. `ty` must be one that
/// [`GgmlType::can_dequantize`] accepts and the lengths must agree (the caller checked both
/// at open time); anything else leaves `dst` untouched.
pub(super) fn dequantize_into(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
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
}
