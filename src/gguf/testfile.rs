//! GGUF images built by hand for unit tests (here, in the tokenizer and in the model
//! loader), with a little-endian writer that spells out every field.

use super::GgufValue;

/// Little-endian GGUF writer for building test files by hand.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }
    pub(crate) fn header(&mut self, version: u32, n_tensors: u64, n_kv: u64) -> &mut Self {
        self.buf.extend_from_slice(b"GGUF");
        self.u32(version).u64(n_tensors).u64(n_kv)
    }
    pub(crate) fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    pub(crate) fn kv_f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.str(key).u32(6);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.str(key).u32(8).str(v)
    }
    pub(crate) fn kv_bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.str(key).u32(7);
        self.buf.push(u8::from(v));
        self
    }
    pub(crate) fn kv_str_array(&mut self, key: &str, items: &[&str]) -> &mut Self {
        self.str(key).u32(9).u32(8).u64(items.len() as u64);
        for s in items {
            self.str(s);
        }
        self
    }
    pub(crate) fn kv_i32_array(&mut self, key: &str, items: &[i32]) -> &mut Self {
        self.str(key).u32(9).u32(5).u64(items.len() as u64);
        for v in items {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        self
    }
    pub(crate) fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    pub(crate) fn pad_to(&mut self, alignment: usize) -> &mut Self {
        while !self.buf.len().is_multiple_of(alignment) {
            self.buf.push(0);
        }
        self
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
}

/// A small llama-like file: metadata of several types and two tensors.
pub(crate) fn tiny_file() -> Vec<u8> {
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

/// A one-layer llama file with every key [`super::GgufFile::llama_hparams`] needs, then
/// `extra` metadata (strings, u32 and f32 values) and, when given, a `rope_freqs.weight`
/// tensor.
pub(crate) fn llama_file(extra: &[(&str, GgufValue)], rope_freqs: Option<&[f32]>) -> Vec<u8> {
    let base = [
        ("general.architecture", GgufValue::String("llama".into())),
        ("llama.block_count", GgufValue::U32(1)),
        ("llama.embedding_length", GgufValue::U32(8)),
        ("llama.feed_forward_length", GgufValue::U32(16)),
        ("llama.attention.head_count", GgufValue::U32(2)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::F32(1e-5),
        ),
        ("llama.context_length", GgufValue::U32(64)),
        ("llama.vocab_size", GgufValue::U32(10)),
    ];
    let mut w = Writer::default();
    let n_kv = base.len() + extra.len();
    w.header(3, u64::from(rope_freqs.is_some()), n_kv as u64);
    for (key, value) in base
        .iter()
        .map(|(k, v)| (*k, v))
        .chain(extra.iter().map(|(k, v)| (*k, v)))
    {
        match value {
            GgufValue::String(s) => w.kv_str(key, s),
            GgufValue::U32(v) => w.kv_u32(key, *v),
            GgufValue::F32(v) => w.kv_f32(key, *v),
            other => panic!("llama_file: no writer for {other:?}"),
        };
    }
    if let Some(factors) = rope_freqs {
        w.tensor("rope_freqs.weight", &[factors.len() as u64], 0, 0)
            .pad_to(32);
        for f in factors {
            w.bytes(&f.to_le_bytes());
        }
    }
    w.buf
}
