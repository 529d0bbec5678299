//! The llama layout (Llama 2/3.x, Mistral, SmolLM, TinyLlama, Qwen2): separate q, k, v
//! and gate, up projections, named as transformers' `LlamaForCausalLM` names them. For
//! the `llama` architecture llama.cpp's converter also permutes the rows of `attn_q` and
//! `attn_k` for its rope kernel (`LlamaModel.permute`); [`unpermute_qk`] undoes it.

use super::super::{GgufError, GgufFile, Result};

/// `(GGUF stem, Hugging Face stem)` of the tensors of one decoder layer.
pub const LAYER_TENSORS: [(&str, &str); 9] = [
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// `data` (tensor `gguf_name`, row-major `shape`) in the Hugging Face row order: for
/// `attn_q`/`attn_k` the inverse of llama.cpp's rope permutation, with the head count for
/// q and the kv-head count for k, as transformers' GGUF loader does; other tensors as
/// they are.
pub(super) fn undo_rope_permutation(
    file: &GgufFile,
    gguf_name: &str,
    data: Vec<f32>,
    shape: Vec<usize>,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let is_q = gguf_name.contains(".attn_q.");
    let is_k = gguf_name.contains(".attn_k.");
    if !(is_q || is_k) {
        return Ok((data, shape));
    }
    let arch = file.get_str("general.architecture")?;
    let heads = file.get_usize(&format!("{arch}.attention.head_count"))?;
    let kv_heads = file
        .optional(
            &format!("{arch}.attention.head_count_kv"),
            GgufFile::get_usize,
        )?
        .unwrap_or(heads);
    let n_head = if is_q { heads } else { kv_heads };
    let rows = shape.first().copied().unwrap_or(1);
    if n_head == 0 || rows % (2 * n_head) != 0 {
        return Err(GgufError::Malformed {
            path: file.path().to_path_buf(),
            what: format!(
                "tensor '{gguf_name}' has {rows} rows, which do not split into {n_head} heads \
                 of rotary pairs"
            ),
        });
    }
    Ok((unpermute_qk(&data, &shape, n_head), shape))
}

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
/// ([`undo_rope_permutation`] checks this and returns an error instead).
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
