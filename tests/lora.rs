//! LoRA against peft: adapters saved by peft load in ftui with the same logits
//! (tests/fixtures/lora, made by tools/make_lora_fixtures.py), merge/unmerge,
//! parameter counts, and ftui's own adapters round-trip in peft's format.

use ftui::config::{AttnImplementation, DType, LoraConfig};
use ftui::lora;
use ftui::model::LoadOptions;
use ftui::source::LoadedModel;
use ftui::source::{load_model, ModelSource};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(arch: &str) -> LoadedModel {
    tch::set_num_threads(1);
    let opts = LoadOptions {
        dtype: DType::Float32,
        device: Device::Cpu,
        attn: AttnImplementation::Sdpa,
        quantization: None,
    };
    load_model(
        &ModelSource::Dir(root().join("tests/fixtures/models").join(arch)),
        &opts,
        &mut |_, _, _| {},
    )
    .expect("loads")
}

fn expected() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(root().join("tests/fixtures/lora/expected.safetensors"))
        .expect("expected")
        .into_iter()
        .collect()
}

fn trainable() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/lora/trainable.json")).expect("read"),
    )
    .expect("json")
}

/// Max |a - b| over real (unpadded) positions.
fn diff(m: &LoadedModel, e: &HashMap<String, Tensor>, key: &str) -> f64 {
    let mask = &e["attention_mask"];
    let logits = m
        .model
        .forward(&e["input_ids"], Some(mask), None, None)
        .expect("forward");
    let d = (logits - &e[key]).abs().amax([-1], false) * mask.to_kind(Kind::Float);
    d.max().double_value(&[])
}

#[test]
fn peft_adapter_gives_peft_logits_and_merges() {
    let e = expected();
    let mut m = load("llama");
    assert!(diff(&m, &e, "base.logits") < 1e-3);
    lora::load_adapter(
        &mut m.model,
        &root().join("tests/fixtures/lora/peft-llama"),
        "yoda",
    )
    .expect("adapter");
    let d = diff(&m, &e, "peft-llama.logits");
    assert!(d < 1e-3, "adapter logits differ by {d}");
    assert!(
        diff(&m, &e, "base.logits") > 1e-2,
        "the adapter must change the logits"
    );
    lora::set_active(&mut m.model, None).expect("off");
    assert!(
        diff(&m, &e, "base.logits") < 1e-3,
        "base model with the adapter off"
    );
    lora::set_active(&mut m.model, Some("yoda")).expect("on");
    lora::merge(&mut m.model, "yoda").expect("merge");
    assert!(diff(&m, &e, "peft-llama.merged.logits") < 1e-3);
    lora::unmerge(&mut m.model, "yoda").expect("unmerge");
    assert!(diff(&m, &e, "peft-llama.logits") < 1e-3);
    lora::set_active(&mut m.model, None).expect("off");
    assert!(
        diff(&m, &e, "base.logits") < 1e-3,
        "unmerge restores the base weights"
    );
}

#[test]
fn rslora_all_linear_with_saved_lm_head() {
    let e = expected();
    let mut m = load("qwen2");
    assert!(diff(&m, &e, "qwen2-base.logits") < 1e-3);
    let dir = root().join("tests/fixtures/lora/peft-qwen2-rslora-all-linear");
    let spec = lora::load_adapter(&mut m.model, &dir, "all").expect("adapter");
    assert!((spec.scaling() - 16.0 / 8f64.sqrt()).abs() < 1e-12);
    let d = diff(&m, &e, "peft-qwen2-rslora-all-linear.logits");
    assert!(d < 1e-3, "rslora adapter logits differ by {d}");
}

fn config_of(v: &Value) -> LoraConfig {
    let mut c: LoraConfig = toml::from_str("").expect("defaults");
    c.r = v["r"].as_i64().expect("r");
    c.lora_alpha = v["lora_alpha"].as_f64().expect("alpha");
    c.use_rslora = v["use_rslora"].as_bool().unwrap_or(false);
    c.target_modules = Some(serde_json::from_value(v["target_modules"].clone()).expect("targets"));
    c.modules_to_save = serde_json::from_value(v["modules_to_save"].clone()).unwrap_or_default();
    c
}

#[test]
fn parameter_counts_match_peft() {
    let t = trainable();
    for (name, arch) in [
        ("peft-llama", "llama"),
        ("peft-qwen2-rslora-all-linear", "qwen2"),
    ] {
        let f = &t["fixtures"][name];
        let mut m = load(arch);
        let targeted =
            lora::add_adapter(&mut m.model, "new", &config_of(&f["config"]), 0).expect("add");
        assert_eq!(
            targeted.len() as u64,
            f["num_targeted_modules"].as_u64().expect("n"),
            "{name}"
        );
        let (tr, total) = lora::parameter_counts(&m.model, "new");
        assert_eq!(
            (Some(tr), Some(total)),
            (f["trainable"].as_i64(), f["total"].as_i64()),
            "{name}"
        );
    }
}

#[test]
fn new_adapter_starts_as_the_base_model_and_round_trips() {
    let e = expected();
    let mut m = load("llama");
    let t = trainable();
    let cfg = config_of(&t["fixtures"]["peft-llama"]["config"]);
    lora::add_adapter(&mut m.model, "fresh", &cfg, 1).expect("add");
    assert!(
        diff(&m, &e, "base.logits") < 1e-5,
        "B = 0 at init: no change"
    );
    // A random adapter (init_lora_weights = false), saved and read back.
    let mut random = cfg.clone();
    random.init_lora_weights = ftui::config::InitLoraWeights::Flag(false);
    lora::add_adapter(&mut m.model, "random", &random, 2).expect("add");
    let before = m
        .model
        .forward(&e["input_ids"], Some(&e["attention_mask"]), None, None)
        .expect("fwd");
    let dir = tempfile::tempdir().expect("tmp");
    let spec = lora::AdapterSpec::from_config(&random);
    lora::save_adapter(
        &m.model,
        "random",
        &spec,
        "tests/fixtures/models/llama",
        dir.path(),
    )
    .expect("save");
    // Same key names as peft's own file for the same targets.
    let ours: Vec<String> = Tensor::read_safetensors(dir.path().join("adapter_model.safetensors"))
        .expect("read")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let peft: Vec<String> = Tensor::read_safetensors(
        root().join("tests/fixtures/lora/peft-llama/adapter_model.safetensors"),
    )
    .expect("read")
    .into_iter()
    .map(|(k, _)| k)
    .collect();
    let (mut a, mut b) = (ours, peft);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter_config.json")).expect("cfg"),
    )
    .expect("json");
    assert_eq!(written["peft_type"], "LORA");
    assert_eq!(written["r"], 4);
    let mut fresh = load("llama");
    lora::load_adapter(&mut fresh.model, dir.path(), "random").expect("reload");
    let after = fresh
        .model
        .forward(&e["input_ids"], Some(&e["attention_mask"]), None, None)
        .expect("fwd");
    assert!((before - after).abs().max().double_value(&[]) < 1e-6);
    assert!(!dir.path().join("adapter_model.safetensors.part").exists());
}

#[test]
fn merged_generation_equals_active_adapter_generation() {
    let mut m = load("llama");
    lora::load_adapter(
        &mut m.model,
        &root().join("tests/fixtures/lora/peft-llama"),
        "yoda",
    )
    .expect("adapter");
    let prompt = m.tokenizer.encode("Strong in you", false).expect("ids");
    let p = ftui::generate::SamplingParams {
        max_new_tokens: 12,
        ignore_eos: true,
        ..Default::default()
    };
    let (with_adapter, _) = ftui::generate::generate(
        &m.model,
        &m.tokenizer,
        std::slice::from_ref(&prompt),
        &p,
        &mut |_, _| true,
    )
    .expect("gen");
    lora::merge(&mut m.model, "yoda").expect("merge");
    let (merged, _) =
        ftui::generate::generate(&m.model, &m.tokenizer, &[prompt], &p, &mut |_, _| true)
            .expect("gen");
    assert_eq!(with_adapter[0].token_ids, merged[0].token_ids);
}

#[test]
fn bad_adapter_folders_name_the_file() {
    let mut m = load("llama");
    let dir = tempfile::tempdir().expect("tmp");
    let e = lora::load_adapter(&mut m.model, dir.path(), "x").expect_err("empty folder");
    assert!(e.to_string().contains("adapter_config.json"), "{e}");
    std::fs::copy(
        root().join("tests/fixtures/lora/peft-llama/adapter_config.json"),
        dir.path().join("adapter_config.json"),
    )
    .expect("copy");
    let e = lora::load_adapter(&mut m.model, dir.path(), "x").expect_err("no weights");
    assert!(e.to_string().contains("adapter_model.safetensors"), "{e}");
    // An adapter for another architecture.
    let mut phi = load("phi3");
    let e = lora::load_adapter(
        &mut phi.model,
        &root().join("tests/fixtures/lora/peft-llama"),
        "x",
    )
    .expect_err("wrong arch");
    assert!(e.to_string().contains("adapter_model.safetensors"), "{e}");
}

/// Writes an ftui adapter (random weights, seeded) and ftui's logits with it to
/// `target/tmp/peft-check/`, for `make peft-check`, which loads the adapter with
/// peft (tools/check_ftui_adapter.py), compares, and keeps the adapter and peft's
/// logits as fixtures. Here: the adapter written now is the committed one.
#[test]
fn ftui_adapter_for_the_peft_check() {
    let e = expected();
    let mut m = load("llama");
    let t = trainable();
    let mut cfg = config_of(&t["fixtures"]["peft-llama"]["config"]);
    cfg.init_lora_weights = ftui::config::InitLoraWeights::Flag(false);
    lora::add_adapter(&mut m.model, "ftui", &cfg, 7).expect("add");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("peft-check");
    let adapter = dir.join("adapter");
    lora::save_adapter(
        &m.model,
        "ftui",
        &lora::AdapterSpec::from_config(&cfg),
        "tests/fixtures/models/llama",
        &adapter,
    )
    .expect("save");
    let logits = m
        .model
        .forward(&e["input_ids"], Some(&e["attention_mask"]), None, None)
        .expect("fwd");
    let out = dir.join("logits.safetensors");
    Tensor::write_safetensors(
        &[
            ("input_ids", &e["input_ids"]),
            ("attention_mask", &e["attention_mask"]),
            ("logits", &logits),
        ],
        &out,
    )
    .expect("write");
    assert!(
        adapter.join("adapter_config.json").is_file()
            && adapter.join("adapter_model.safetensors").is_file()
    );
    assert!(
        diff(&m, &e, "base.logits") > 1e-2,
        "the random adapter changes the logits"
    );
    let committed = root().join("tests/fixtures/lora/ftui-llama");
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert_eq!(
            std::fs::read(adapter.join(f)).expect("written"),
            std::fs::read(committed.join(f)).expect("committed"),
            "{f}: ftui no longer writes the adapter peft was checked on; run `make peft-check`"
        );
    }
}

#[test]
fn ftui_adapter_gives_in_ftui_the_logits_peft_gives() {
    // tests/fixtures/lora/ftui-llama was written by ftui; peft loaded it and
    // recorded its logits (make peft-check).
    let peft: HashMap<String, Tensor> = Tensor::read_safetensors(
        root().join("tests/fixtures/lora/ftui-llama-peft-logits.safetensors"),
    )
    .expect("peft logits")
    .into_iter()
    .collect();
    let mut m = load("llama");
    lora::load_adapter(
        &mut m.model,
        &root().join("tests/fixtures/lora/ftui-llama"),
        "ftui",
    )
    .expect("adapter");
    let d = diff(&m, &peft, "logits");
    assert!(d < 1e-3, "ftui vs peft on ftui's adapter: {d}");
}
