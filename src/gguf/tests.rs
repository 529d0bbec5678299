//! Reader tests on hand-built files (every error names the file and the problem) and,
//! when present, on the embedded default model.

use std::path::PathBuf;

use super::testfile::{llama_file, tiny_file, Writer};
use super::*;

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
    let hf = HfTensors::new(GgufFile::from_bytes("tiny.gguf", tiny_file())?)?;
    let (q, shape) = hf.dequantize("model.layers.0.self_attn.q_proj.weight")?;
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
    assert!(err_of(w.buf).starts_with("models/x.gguf: truncated: the value of metadata key 'k' ("));

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

/// The embedded default model, when present: hparams, special tokens and every tensor.
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
    let (embd, shape) = f.dequantize("token_embd.weight")?;
    assert_eq!(shape, [49152, 576]);
    assert_eq!(embd.len(), 49152 * 576);
    assert!(f
        .chat_template()
        .is_some_and(|t| t.contains("<|im_start|>")));
    assert_eq!(
        f.special_tokens(),
        SpecialTokenIds {
            bos: Some(1),
            eos: Some(2),
            pad: Some(2),
            unk: Some(0)
        }
    );

    // Every tensor has a Hugging Face name.
    let hf = HfTensors::new(f)?;
    assert_eq!(hf.names().count(), 272);
    let mut total = 0usize;
    for name in hf.names() {
        let (data, shape) = hf.dequantize(name)?;
        assert_eq!(data.len(), shape.iter().product::<usize>());
        assert!(data.iter().all(|v| v.is_finite()), "{name}");
        total += data.len();
    }
    assert_eq!(total, 134_515_008);
    Ok(())
}

#[test]
fn rope_scaling_and_sliding_window_keys() -> Result<()> {
    let plain = GgufFile::from_bytes("p.gguf", llama_file(&[], None))?.llama_hparams()?;
    assert_eq!(
        (plain.rope_scaling_type, plain.rope_scaling_factor),
        (None, None)
    );
    assert_eq!(
        (plain.rope_freq_factors, plain.sliding_window),
        (None, None)
    );

    let extra = [
        (
            "llama.rope.scaling.type",
            GgufValue::String("linear".into()),
        ),
        ("llama.rope.scaling.factor", GgufValue::F32(4.0)),
        ("llama.attention.sliding_window", GgufValue::U32(0)),
    ];
    let f = GgufFile::from_bytes("s.gguf", llama_file(&extra, Some(&[1.0, 2.5])))?;
    let hp = f.llama_hparams()?;
    assert_eq!(hp.rope_scaling_type.as_deref(), Some("linear"));
    assert_eq!(hp.rope_scaling_factor, Some(4.0));
    assert_eq!(hp.rope_freq_factors, Some(vec![1.0, 2.5]));
    // 0 means no window.
    assert_eq!(hp.sliding_window, None);
    let windowed = [("llama.attention.sliding_window", GgufValue::U32(7))];
    let f = GgufFile::from_bytes("w.gguf", llama_file(&windowed, None))?;
    assert_eq!(f.llama_hparams()?.sliding_window, Some(7));
    Ok(())
}
