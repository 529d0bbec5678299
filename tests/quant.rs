//! ftui's quantization against bitsandbytes 0.50.2 itself: the golden file
//! `tests/fixtures/quant/bnb.safetensors` (+ `bnb.json`) was written by
//! `tools/make_quant_fixtures.py` running bitsandbytes and transformers on CPU.
//!
//! Codes, absmax values and nested state must be identical; dequantized weights
//! may differ by at most 1e-6 (float32); forward passes by float rounding only.

use ftui::config::{DType, QuantType, QuantizationConfig};
use ftui::quant::codebook::{self, FourBitType};
use ftui::quant::{Absmax4bit, Int8Weight, LinearWeight, NestedAbsmax, Packed4bit, QuantPlan};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Golden {
    t: HashMap<String, Tensor>,
    meta: serde_json::Value,
}

impl Golden {
    fn load() -> Golden {
        tch::set_num_threads(1);
        let dir = fixture_dir().join("quant");
        let t = Tensor::read_safetensors(dir.join("bnb.safetensors"))
            .expect("bnb.safetensors")
            .into_iter()
            .collect();
        let meta =
            serde_json::from_str(&std::fs::read_to_string(dir.join("bnb.json")).expect("bnb.json"))
                .expect("bnb.json parses");
        Golden { t, meta }
    }

    fn get(&self, name: &str) -> &Tensor {
        self.t
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no `{name}`"))
    }

    fn meta_str(&self, key: &str) -> &str {
        self.meta[key]
            .as_str()
            .unwrap_or_else(|| panic!("bnb.json has no `{key}`"))
    }
}

/// Bit patterns of a float32 tensor: equality that tells -0 from +0.
fn bits(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = Vec::try_from(&t.to_kind(Kind::Float).reshape([-1])).expect("floats");
    v.into_iter().map(f32::to_bits).collect()
}

fn bytes(t: &Tensor) -> Vec<u8> {
    Vec::try_from(&t.reshape([-1])).expect("bytes")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Float) - b.to_kind(Kind::Float))
        .abs()
        .max()
        .double_value(&[])
}

fn assert_same_codes(ours: &Tensor, theirs: &Tensor, what: &str) {
    assert_eq!(ours.kind(), theirs.kind(), "{what}: kind");
    assert_eq!(ours.size(), theirs.size(), "{what}: shape");
    let (a, b) = (bytes(ours), bytes(theirs));
    let wrong: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    assert!(
        wrong.is_empty(),
        "{what}: {} codes differ, first at {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(8)]
    );
}

fn plain_absmax(p: &Packed4bit) -> &Tensor {
    match p.absmax() {
        Absmax4bit::Plain(a) => a,
        Absmax4bit::Nested(_) => panic!("expected plain absmax"),
    }
}

fn nested_absmax(p: &Packed4bit) -> &NestedAbsmax {
    match p.absmax() {
        Absmax4bit::Nested(n) => n,
        Absmax4bit::Plain(_) => panic!("expected nested absmax"),
    }
}

/// bitsandbytes' native CPU 8-bit quantizer looks codes up through a
/// 65536-step table over [-1, 1], so its code may be farther from the value
/// than the nearest one (ours, the reference's) by up to one table step.
fn assert_within_one_lut_step(ours: &Tensor, cpu: &Tensor, scaled: &Tensor, map: &Tensor) {
    let pick = |q: &Tensor| map.index_select(0, &q.reshape([-1]).to_kind(Kind::Int64));
    let d_ours = (pick(ours) - scaled).abs();
    let d_cpu = (pick(cpu) - scaled).abs();
    let step = 2.0 / 65535.0;
    let excess = (d_cpu - &d_ours).max().double_value(&[]);
    assert!(
        excess <= step,
        "the CPU kernel's code is {excess} farther than the nearest"
    );
    // And ours is never farther than the CPU kernel's.
    let d_cpu = (pick(cpu) - scaled).abs();
    assert!(bool::try_from(d_ours.le_tensor(&d_cpu).all()).expect("bool"));
}

#[test]
fn code_tables_equal_bitsandbytes() {
    let g = Golden::load();
    for ty in [FourBitType::Nf4, FourBitType::Fp4] {
        let ours = Tensor::from_slice(&ty.table());
        assert_eq!(
            bits(&ours),
            bits(g.get(&format!("{}.code", ty.name()))),
            "{ty:?}"
        );
    }
    let map = codebook::dynamic_map(Device::Cpu).expect("map");
    assert_eq!(bits(&map), bits(g.get("dynamic_map")));
}

#[test]
fn four_bit_codes_and_absmax_equal_bitsandbytes() {
    let g = Golden::load();
    let w = g.get("weight");
    for ty in [FourBitType::Nf4, FourBitType::Fp4] {
        let name = ty.name();
        let p = Packed4bit::quantize(w, ty, false, Kind::Float).expect("quantizes");
        assert_same_codes(p.codes(), g.get(&format!("{name}.codes")), name);
        assert_eq!(
            bits(plain_absmax(&p)),
            bits(g.get(&format!("{name}.absmax"))),
            "{name} absmax"
        );
        let d = max_diff(
            &p.dequantize(Kind::Float).expect("dequantizes"),
            g.get(&format!("{name}.dequant")),
        );
        assert!(d <= 1e-6, "{name}: dequantized weights differ by {d}");
    }
}

#[test]
fn double_quantization_equals_bitsandbytes() {
    let g = Golden::load();
    let w = g.get("weight");
    let map = codebook::dynamic_map(Device::Cpu).expect("map");
    for ty in [FourBitType::Nf4, FourBitType::Fp4] {
        let name = format!("{}dq", ty.name());
        let p = Packed4bit::quantize(w, ty, true, Kind::Float).expect("quantizes");
        assert_same_codes(p.codes(), g.get(&format!("{}.codes", ty.name())), &name);
        let n = nested_absmax(&p);
        assert_same_codes(&n.codes, g.get(&format!("{name}.absmax_codes")), &name);
        assert_eq!(
            bits(&n.nested_absmax),
            bits(g.get(&format!("{name}.nested_absmax")))
        );
        assert_eq!(bits(&n.offset), bits(g.get(&format!("{name}.offset"))));
        // The native CPU kernel's codes for the same absmax values.
        let plain = Packed4bit::quantize(w, ty, false, Kind::Float).expect("quantizes");
        let centered = plain_absmax(&plain) - &n.offset;
        let (scaled, _) = codebook::blockwise_scale(&centered, 256).expect("scales");
        let cpu = g.get(&format!("{name}.absmax_codes_cpu"));
        assert_within_one_lut_step(&n.codes, cpu, &scaled, &map);
    }
    let p = Packed4bit::quantize(w, FourBitType::Nf4, true, Kind::Float).expect("quantizes");
    let d = max_diff(
        &p.dequantize(Kind::Float).expect("dequantizes"),
        g.get("nf4dq.dequant"),
    );
    assert!(d <= 1e-6, "nf4+dq: dequantized weights differ by {d}");
}

#[test]
fn eight_bit_blockwise_quantizer_equals_the_reference_backend() {
    let g = Golden::load();
    let map = codebook::dynamic_map(Device::Cpu).expect("map");
    let v = g.get("blockwise.input");
    let (q, absmax) = codebook::quantize_blockwise_8bit(v, &map, 256).expect("quantizes");
    assert_same_codes(&q, g.get("blockwise.codes"), "blockwise");
    assert_eq!(bits(&absmax), bits(g.get("blockwise.absmax")));
    let back = codebook::dequantize_blockwise_8bit(&q, &absmax, &map, 256).expect("dequantizes");
    assert!(max_diff(&back, g.get("blockwise.dequant")) <= 1e-6);
    // Where bitsandbytes' native CPU kernel chose differently, and by how much.
    let cpu = g.get("blockwise.codes_cpu");
    let (a, b) = (bytes(&q), bytes(cpu));
    let differs: Vec<i64> = (0..a.len())
        .filter(|&i| a[i] != b[i])
        .map(|i| i as i64)
        .collect();
    let listed: Vec<i64> =
        serde_json::from_str(g.meta_str("blockwise.cpu_differs_at")).expect("index list");
    assert_eq!(differs, listed);
    let (scaled, _) = codebook::blockwise_scale(v, 256).expect("scales");
    assert_within_one_lut_step(&q, cpu, &scaled, &map);
}

#[test]
fn bf16_and_partial_block_weights_equal_bitsandbytes() {
    let g = Golden::load();
    for case in ["bf16", "rem", "odd"] {
        let w = g.get(&format!("{case}.weight"));
        let p = Packed4bit::quantize(w, FourBitType::Nf4, false, Kind::Float).expect("quantizes");
        assert_same_codes(p.codes(), g.get(&format!("{case}.nf4.codes")), case);
        assert_eq!(
            bits(plain_absmax(&p)),
            bits(g.get(&format!("{case}.nf4.absmax"))),
            "{case}"
        );
        let back = p.dequantize_default().expect("dequantizes");
        let theirs = g.get(&format!("{case}.nf4.dequant"));
        assert_eq!(back.kind(), theirs.kind(), "{case}");
        let d = max_diff(&back, theirs);
        assert!(d <= 1e-6, "{case}: dequantized weights differ by {d}");
    }
}

#[test]
fn four_bit_forward_equals_bitsandbytes() {
    let g = Golden::load();
    let w = g.get("weight");
    // matmul_4bit with NF4 + double quantization, float32.
    let p = Packed4bit::quantize(w, FourBitType::Nf4, true, Kind::Float).expect("quantizes");
    let y = p.linear(g.get("nf4dq.x"), None).expect("forward");
    let d = max_diff(&y, g.get("nf4dq.y"));
    assert!(d <= 1e-5, "nf4+dq forward differs by {d}");
    // Linear4bit (NF4, double quantization) with compute dtype bfloat16 on a
    // float16 input: the product is taken in bfloat16, returned as float16.
    let p = Packed4bit::quantize(w, FourBitType::Nf4, true, Kind::BFloat16).expect("quantizes");
    let y = p
        .linear(g.get("lin4.x16"), Some(g.get("lin4.bias")))
        .expect("forward");
    let theirs = g.get("lin4.y16");
    assert_eq!(y.kind(), Kind::Half);
    let d = max_diff(&y, theirs);
    assert!(d == 0.0, "Linear4bit forward differs by {d}");
}

#[test]
fn int8_codes_and_scales_equal_bitsandbytes() {
    let g = Golden::load();
    let q = Int8Weight::quantize(g.get("weight")).expect("quantizes");
    assert_same_codes(q.cb(), g.get("int8.cb"), "CB");
    assert_eq!(bits(q.scb()), bits(g.get("int8.scb")), "SCB");
    let d = max_diff(
        &q.dequantize(Kind::Float).expect("dequantizes"),
        g.get("int8.dequant"),
    );
    assert!(d <= 1e-6, "int8 dequantized weights differ by {d}");
}

#[test]
fn llm_int8_inference_equals_bitsandbytes() {
    let g = Golden::load();
    let q = Int8Weight::quantize(g.get("weight")).expect("quantizes");
    let y = q
        .linear_llm_int8(g.get("int8.x"), Some(g.get("lin4.bias")), 6.0)
        .expect("forward");
    let theirs = g.get("int8.y_lt");
    assert_eq!(y.kind(), Kind::Half);
    // float16 results: allow one unit in the last place.
    let tol = theirs.to_kind(Kind::Float).abs() * 2f64.powi(-10) + 1e-6;
    let diff = (y.to_kind(Kind::Float) - theirs.to_kind(Kind::Float)).abs();
    assert!(
        bool::try_from(diff.le_tensor(&tol).all()).expect("bool"),
        "LLM.int8 forward differs by up to {}",
        diff.max().double_value(&[])
    );
}

fn config(bits4: bool, skip: Option<Vec<String>>) -> QuantizationConfig {
    QuantizationConfig {
        load_in_4bit: bits4,
        load_in_8bit: !bits4,
        bnb_4bit_quant_type: QuantType::Nf4,
        bnb_4bit_use_double_quant: true,
        bnb_4bit_compute_dtype: DType::Float32,
        llm_int8_skip_modules: skip,
        llm_int8_threshold: 6.0,
    }
}

/// The tiny Llama fixture quantized: the same modules as transformers, and the
/// same `get_memory_footprint()`.
#[test]
fn tiny_llama_quantizes_like_transformers() {
    let g = Golden::load();
    let weights: Vec<(String, Tensor)> =
        Tensor::read_safetensors(fixture_dir().join("models/llama/model.safetensors"))
            .expect("model.safetensors");
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("models/llama/config.json")).expect("config"),
    )
    .expect("config.json");
    let head_dim = cfg["head_dim"].as_i64().expect("head_dim");
    // transformers' rotary embedding holds `inv_freq` and `original_inv_freq`.
    let rope_buffers = 2 * (head_dim / 2) * 4;

    let dense: i64 = weights
        .iter()
        .map(|(_, t)| ftui::quant::dense_bytes(t))
        .sum();
    let fp32: i64 = g.meta_str("llama.fp32.footprint").parse().expect("number");
    assert_eq!(dense + rope_buffers, fp32);

    for (case, cfg) in [
        ("nf4dq", config(true, None)),
        ("int8", config(false, None)),
        ("int8_skip_o", config(false, Some(vec!["o_proj".into()]))),
    ] {
        let plan = QuantPlan::from_config(&cfg).expect("a plan");
        let mut quantized = BTreeSet::new();
        let mut footprint = rope_buffers;
        for (name, t) in &weights {
            let module = name.strip_suffix(".weight").unwrap_or(name);
            let w = if t.dim() == 2 {
                plan.load_linear(module, t.shallow_clone()).expect("loads")
            } else {
                LinearWeight::Dense(t.shallow_clone())
            };
            if w.is_quantized() {
                quantized.insert(module.to_string());
            }
            footprint += w.hf_footprint_bytes();
        }
        let theirs: BTreeSet<String> =
            serde_json::from_str(g.meta_str(&format!("llama.{case}.quantized"))).expect("list");
        assert_eq!(quantized, theirs, "{case}: quantized modules");
        let theirs: i64 = g
            .meta_str(&format!("llama.{case}.footprint"))
            .parse()
            .expect("number");
        assert_eq!(footprint, theirs, "{case}: get_memory_footprint()");
    }

    // The weight transformers quantized for q_proj of layer 0.
    let q_proj = weights
        .iter()
        .find(|(n, _)| n == "model.layers.0.self_attn.q_proj.weight")
        .map(|(_, t)| t)
        .expect("q_proj");
    let p = Packed4bit::quantize(q_proj, FourBitType::Nf4, true, Kind::Float).expect("quantizes");
    assert_same_codes(p.codes(), g.get("llama.q_proj.codes"), "q_proj");
    let n = nested_absmax(&p);
    assert_eq!(
        bits(&n.nested_absmax),
        bits(g.get("llama.q_proj.nested_absmax"))
    );
    assert_eq!(bits(&n.offset), bits(g.get("llama.q_proj.offset")));
    let plain = Packed4bit::quantize(q_proj, FourBitType::Nf4, false, Kind::Float).expect("ok");
    let (scaled, _) =
        codebook::blockwise_scale(&(plain_absmax(&plain) - &n.offset), 256).expect("scales");
    let map = codebook::dynamic_map(Device::Cpu).expect("map");
    assert_within_one_lut_step(
        &n.codes,
        g.get("llama.q_proj.absmax_codes_cpu"),
        &scaled,
        &map,
    );
}
