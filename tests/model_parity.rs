//! ftui's forward pass against transformers' fp32 logits for tiny random models
//! of each architecture (made by tools/make_fixtures.py): right-padded,
//! left-padded and packed batches, with SDPA and eager attention.

use ftui::config::{AttnImplementation, DType};
use ftui::model::LoadOptions;
use ftui::source::{load_model, ModelSource};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(arch)
}

fn golden(arch: &str) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture(arch).join("golden.safetensors"))
        .expect("golden.safetensors")
        .into_iter()
        .collect()
}

/// Max |a - b| over positions where `mask` is 1 (padding logits mean nothing).
fn max_diff(a: &Tensor, b: &Tensor, mask: Option<&Tensor>) -> f64 {
    let d = (a - b).abs().amax([-1], false);
    let d = match mask {
        Some(m) => d * m.to_kind(Kind::Float),
        None => d,
    };
    d.max().double_value(&[])
}

fn check(arch: &str, attn: AttnImplementation) {
    tch::set_num_threads(1);
    let opts = LoadOptions {
        dtype: DType::Float32,
        device: Device::Cpu,
        attn,
        quantization: None,
    };
    let m = load_model(&ModelSource::Dir(fixture(arch)), &opts, &mut |_, _, _| {}).expect("loads");
    let g = golden(arch);
    for case in ["right", "left"] {
        let ids = &g[&format!("{case}.input_ids")];
        let mask = &g[&format!("{case}.attention_mask")];
        let logits = m
            .model
            .forward(ids, Some(mask), None, None)
            .expect("forward");
        let d = max_diff(&logits, &g[&format!("{case}.logits")], Some(mask));
        assert!(d < 1e-3, "{arch} {attn:?} {case}: max logit difference {d}");
    }
    let ids = &g["packed.input_ids"];
    let pos = &g["packed.position_ids"];
    let logits = m
        .model
        .forward(ids, None, Some(pos), None)
        .expect("forward");
    let d = max_diff(&logits, &g["packed.logits"], None);
    assert!(d < 1e-3, "{arch} {attn:?} packed: max logit difference {d}");
}

#[test]
fn llama_matches_transformers() {
    check("llama", AttnImplementation::Sdpa);
    check("llama", AttnImplementation::Eager);
}

#[test]
fn qwen2_matches_transformers() {
    check("qwen2", AttnImplementation::Sdpa);
    check("qwen2", AttnImplementation::Eager);
}

#[test]
fn phi3_matches_transformers() {
    check("phi3", AttnImplementation::Sdpa);
    check("phi3", AttnImplementation::Eager);
}

#[test]
fn packed_row_equals_sequences_run_alone() {
    // Independent of the fixture's logits: a packed row must give each sequence
    // exactly what it gets alone.
    tch::set_num_threads(1);
    let opts = LoadOptions {
        dtype: DType::Float32,
        device: Device::Cpu,
        attn: AttnImplementation::Sdpa,
        quantization: None,
    };
    let m = load_model(
        &ModelSource::Dir(fixture("llama")),
        &opts,
        &mut |_, _, _| {},
    )
    .expect("loads");
    let a = [5i64, 9, 13, 2, 7];
    let b = [11i64, 4, 8];
    let packed = Tensor::from_slice(&[&a[..], &b[..]].concat()).view([1, 8]);
    let pos = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0, 1, 2]).view([1, 8]);
    let out = m
        .model
        .forward(&packed, None, Some(&pos), None)
        .expect("packed");
    let alone_a = m
        .model
        .forward(&Tensor::from_slice(&a).view([1, 5]), None, None, None)
        .expect("a");
    let alone_b = m
        .model
        .forward(&Tensor::from_slice(&b).view([1, 3]), None, None, None)
        .expect("b");
    let joined = Tensor::cat(&[alone_a, alone_b], 1);
    let d = max_diff(&out, &joined, None);
    assert!(d < 1e-4, "packed vs alone: {d}");
}

#[test]
fn sharded_weights_load_like_one_file() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().expect("tmp");
    let src = fixture("llama");
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy");
    }
    let tensors = Tensor::read_safetensors(src.join("model.safetensors")).expect("weights");
    let half = tensors.len() / 2;
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [&tensors[..half], &tensors[half..]].iter().enumerate() {
        let name = format!("model-{:05}-of-00002.safetensors", i + 1);
        let refs: Vec<(&str, &Tensor)> = part.iter().map(|(n, t)| (n.as_str(), t)).collect();
        Tensor::write_safetensors(&refs, dir.path().join(&name)).expect("shard");
        for (n, _) in part.iter() {
            weight_map.insert(n.clone(), serde_json::Value::String(name.clone()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .expect("index");
    let opts = LoadOptions {
        dtype: DType::Float32,
        device: Device::Cpu,
        attn: AttnImplementation::Sdpa,
        quantization: None,
    };
    let sharded = load_model(
        &ModelSource::Dir(dir.path().to_path_buf()),
        &opts,
        &mut |_, _, _| {},
    )
    .expect("sharded");
    let whole = load_model(&ModelSource::Dir(src), &opts, &mut |_, _, _| {}).expect("whole");
    let ids = Tensor::from_slice(&[5i64, 9, 13, 2, 7]).view([1, 5]);
    let a = sharded.model.forward(&ids, None, None, None).expect("fwd");
    let b = whole.model.forward(&ids, None, None, None).expect("fwd");
    assert!(a.equal(&b));
    // A shard the index names but the folder lacks is named in the error.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).expect("rm");
    let e = load_model(
        &ModelSource::Dir(dir.path().to_path_buf()),
        &opts,
        &mut |_, _, _| {},
    )
    .err()
    .expect("missing shard");
    assert!(
        e.to_string().contains("model-00002-of-00002.safetensors"),
        "{e}"
    );
}
