//! The trainer against trl/peft/transformers (tests/fixtures/train, made by
//! tools/make_train_fixtures.py): one step's loss and LoRA gradients per
//! architecture, padded and padding-free, with and without gradient
//! checkpointing; five optimizer steps of trl's SFTTrainer replayed; and the
//! equivalences a trainer must keep (accumulation, kill and resume).

use ftui::config::{
    AttnImplementation, DType, LrScheduler, QuantType, QuantizationConfig, TrainingConfig,
};
use ftui::lora;
use ftui::model::LoadOptions;
use ftui::source::{load_model, LoadedModel, ModelSource};
use ftui::train::{self, step, Batches, Control, FixedBatches, MicroBatch, Observer, TrainLog};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(path: &str) -> PathBuf {
    root().join("tests/fixtures/train").join(path)
}

fn read(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .expect("fixture")
        .into_iter()
        .collect()
}

/// A tiny fixture model in float32 with `adapter` loaded as `default`, trainable.
fn model_with(arch: &str, adapter: &Path) -> LoadedModel {
    model_quantized(arch, adapter, None)
}

fn model_quantized(
    arch: &str,
    adapter: &Path,
    quantization: Option<QuantizationConfig>,
) -> LoadedModel {
    tch::set_num_threads(1);
    let opts = LoadOptions {
        dtype: DType::Float32,
        device: Device::Cpu,
        attn: AttnImplementation::Sdpa,
        quantization,
    };
    let mut m = load_model(
        &ModelSource::Dir(root().join("tests/fixtures/models").join(arch)),
        &opts,
        &mut |_, _, _| {},
    )
    .expect("loads");
    lora::load_adapter(&mut m.model, adapter, "default").expect("adapter");
    lora::set_trainable(&m.model, "default", true).expect("trainable");
    m
}

/// The fixtures' adapter settings (r 4, alpha 8, all linear layers).
fn fixture_spec() -> lora::peft::AdapterSpec {
    lora::peft::AdapterSpec {
        r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.0,
        use_rslora: false,
        target_modules: ftui::config::TargetModules::Pattern("all-linear".into()),
        modules_to_save: Vec::new(),
        bias: "none".into(),
    }
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).norm().double_value(&[]);
    d / b.norm().double_value(&[]).max(1e-30)
}

fn micro(t: &HashMap<String, Tensor>, prefix: &str) -> MicroBatch {
    let get = |k: &str| t.get(&format!("{prefix}{k}")).map(|x| x.shallow_clone());
    let labels = get("labels").expect("labels");
    let items = labels
        .narrow(1, 1, labels.size()[1] - 1)
        .ne(-100)
        .sum(Kind::Int64)
        .int64_value(&[]);
    let input_ids = get("input_ids").expect("ids");
    let attention_mask = get("attention_mask");
    let tokens = attention_mask
        .as_ref()
        .map_or(input_ids.numel() as i64, |m| {
            m.sum(Kind::Int64).int64_value(&[])
        });
    MicroBatch {
        rows: input_ids.size()[0],
        input_ids,
        labels,
        attention_mask,
        position_ids: get("position_ids"),
        items,
        tokens,
    }
}

fn one_step(arch: &str, packed: bool, checkpointing: bool) {
    let dir = fixture(&format!("one-step-{arch}"));
    let m = model_with(arch, &dir.join("adapter"));
    let batch = read(&dir.join("batch.safetensors"));
    let want = read(&dir.join("expected.safetensors"));
    let (mb, pre) = if packed {
        (micro(&batch, "packed_"), "packed.")
    } else {
        (micro(&batch, ""), "")
    };
    assert_eq!(mb.items, want[&format!("{pre}num_items")].int64_value(&[]));
    let out =
        step::forward_backward(&m.model, &mb, mb.items as f64, checkpointing, None).expect("step");
    let loss = out.nll_sum.double_value(&[]) / mb.items as f64;
    let expected = want[&format!("{pre}loss")].double_value(&[]);
    assert!(
        ((loss - expected) / expected).abs() < 1e-5,
        "{arch} packed={packed} gc={checkpointing}: loss {loss} vs {expected}"
    );
    let params = lora::parameters(&m.model, "default");
    assert!(!params.is_empty());
    for (name, t) in params {
        let key = format!("{pre}base_model.model.{name}");
        let r = rel(&t.grad(), &want[&key]);
        assert!(
            r < 1e-4,
            "{arch} packed={packed} gc={checkpointing}: {name} grad off by {r}"
        );
    }
}

#[test]
fn one_step_on_an_nf4_base_matches_peft_and_bitsandbytes() {
    let q: QuantizationConfig = toml::from_str(
        "load_in_4bit = true\nbnb_4bit_quant_type = \"nf4\"\nbnb_4bit_compute_dtype = \"float32\"",
    )
    .expect("quantization");
    assert_eq!(q.bnb_4bit_quant_type, QuantType::Nf4);
    let m = model_quantized("llama", &fixture("one-step-llama/adapter"), Some(q));
    assert!(
        m.model.weight_format().starts_with("nf4"),
        "{}",
        m.model.weight_format()
    );
    let batch = read(&fixture("one-step-llama/batch.safetensors"));
    let want = read(&fixture("one-step-llama-nf4/expected.safetensors"));
    let mb = micro(&batch, "");
    for gc in [false, true] {
        let params = lora::parameters(&m.model, "default");
        for (_, t) in &params {
            let mut t = t.shallow_clone();
            t.zero_grad();
        }
        let out = step::forward_backward(&m.model, &mb, mb.items as f64, gc, None).expect("step");
        let loss = out.nll_sum.double_value(&[]) / mb.items as f64;
        let expected = want["loss"].double_value(&[]);
        assert!(
            ((loss - expected) / expected).abs() < 1e-3,
            "gc={gc}: loss {loss} vs {expected}"
        );
        for (name, t) in params {
            let r = rel(&t.grad(), &want[&format!("base_model.model.{name}")]);
            assert!(r < 1e-3, "gc={gc}: {name} grad off by {r}");
        }
    }
}

#[test]
fn one_step_matches_peft_for_every_architecture() {
    for arch in ["llama", "qwen2", "phi3"] {
        for packed in [false, true] {
            for gc in [false, true] {
                one_step(arch, packed, gc);
            }
        }
    }
}

/// Collects what a run reports.
#[derive(Default)]
struct Record {
    logs: Vec<TrainLog>,
    checkpoints: Vec<PathBuf>,
}

impl Observer for Record {
    fn log(&mut self, log: &TrainLog) {
        self.logs.push(log.clone());
    }
    fn checkpoint(&mut self, _step: usize, path: &Path) {
        self.checkpoints.push(path.to_path_buf());
    }
}

fn sft_config() -> TrainingConfig {
    TrainingConfig {
        per_device_train_batch_size: 1,
        gradient_accumulation_steps: 2,
        max_steps: 5,
        learning_rate: 1e-3,
        lr_scheduler_type: LrScheduler::Cosine,
        warmup_steps: 2.0,
        weight_decay: 0.1,
        max_grad_norm: 0.5,
        logging_steps: 1,
        gradient_checkpointing: false,
        save_steps: 0,
        ..Default::default()
    }
}

#[test]
fn five_sft_steps_replay_trl() {
    let dir = fixture("sft-llama");
    let m = model_with("llama", &dir.join("adapter-initial"));
    let initial: HashMap<String, Tensor> = lora::parameters(&m.model, "default")
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    let recorded = read(&dir.join("batches.safetensors"));
    let data = FixedBatches(
        (0..10)
            .map(|i| micro(&recorded, &format!("mb{i}.")))
            .collect(),
    );
    let cfg = sft_config();
    let spec = fixture_spec();
    let job = train::Job {
        model: &m.model,
        adapter: "default",
        spec: &spec,
        base_model: "llama",
        config: &cfg,
        output_dir: None,
        resume: None,
    };
    let mut rec = Record::default();
    let summary = train::train(&job, &data, None, &mut rec, &Control::default()).expect("trains");
    assert_eq!(summary.global_step, 5);
    let history: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("log_history.json")).expect("history"),
    )
    .expect("json");
    assert_eq!(rec.logs.len(), 5);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1e-8);
    for (ours, theirs) in rec.logs.iter().zip(&history) {
        let f = |k: &str| theirs[k].as_f64().expect(k);
        assert!(
            close(ours.loss, f("loss")),
            "step {}: loss {} vs {}",
            ours.step,
            ours.loss,
            f("loss")
        );
        assert!(
            close(ours.grad_norm, f("grad_norm")),
            "step {}: grad_norm {} vs {}",
            ours.step,
            ours.grad_norm,
            f("grad_norm")
        );
        assert!(
            (ours.learning_rate - f("learning_rate")).abs() < 1e-12,
            "step {} lr",
            ours.step
        );
        assert!(
            close(ours.mean_token_accuracy, f("mean_token_accuracy")),
            "step {} accuracy",
            ours.step
        );
        assert!(
            close(ours.entropy, f("entropy")),
            "step {}: entropy {} vs {}",
            ours.step,
            ours.entropy,
            f("entropy")
        );
        assert_eq!(
            ours.num_tokens,
            f("num_tokens"),
            "step {} num_tokens",
            ours.step
        );
    }
    let final_ = read(&dir.join("adapter-final/adapter_model.safetensors"));
    for (name, t) in lora::parameters(&m.model, "default") {
        let want = &final_[&format!("base_model.model.{name}")];
        assert!(rel(&t, want) < 1e-3, "{name}: final adapter");
        let update = &t - &initial[&name];
        let want_update = want - &initial[&name];
        let r = rel(&update, &want_update);
        assert!(r < 1e-3, "{name}: the update is off by {r}");
    }
}

/// Right-padded rows of token ids, every token after the first labelled.
struct Rows(Vec<Vec<i64>>);

impl Batches for Rows {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn order(&self, epoch: usize) -> Vec<usize> {
        train::data::randperm(self.0.len(), 7 + epoch as u64).expect("order")
    }
    fn collate(&self, rows: &[usize]) -> Result<MicroBatch, train::TrainError> {
        let longest = rows.iter().map(|&i| self.0[i].len()).max().unwrap_or(0);
        let pad = |v: &[i64], with: i64| {
            let mut p = v.to_vec();
            p.resize(longest, with);
            p
        };
        let ids: Vec<Vec<i64>> = rows.iter().map(|&i| pad(&self.0[i], 0)).collect();
        let labels: Vec<Vec<i64>> = rows
            .iter()
            .map(|&i| {
                let mut l = pad(&self.0[i], -100);
                l[0] = -100;
                l
            })
            .collect();
        let mask: Vec<Vec<i64>> = rows
            .iter()
            .map(|&i| pad(&vec![1; self.0[i].len()], 0))
            .collect();
        Ok(MicroBatch::from_rows(
            &ids,
            &labels,
            Some(&mask),
            None,
            Device::Cpu,
        )?)
    }
}

fn rows() -> Rows {
    Rows(
        (0..8)
            .map(|i| {
                (0..(5 + i % 4))
                    .map(|j| 3 + ((i * 7 + j * 13) % 290) as i64)
                    .collect()
            })
            .collect(),
    )
}

fn adapter_after(
    cfg: &TrainingConfig,
    dropout: f64,
    out: Option<&Path>,
    resume: Option<&Path>,
) -> (Vec<Tensor>, Record) {
    let mut m = model_with("llama", &fixture("one-step-llama/adapter"));
    for (_, l) in m.model.linears_mut() {
        if let Some(a) = l.adapters.get_mut("default") {
            a.dropout = dropout;
        }
    }
    let spec = fixture_spec();
    let job = train::Job {
        model: &m.model,
        adapter: "default",
        spec: &spec,
        base_model: "llama",
        config: cfg,
        output_dir: out,
        resume,
    };
    let mut rec = Record::default();
    train::train(&job, &rows(), None, &mut rec, &Control::default()).expect("trains");
    let params = lora::parameters(&m.model, "default")
        .into_iter()
        .map(|(_, t)| t.detach().copy())
        .collect();
    (params, rec)
}

#[test]
fn eight_by_one_equals_four_by_two() {
    let mut a = sft_config();
    a.per_device_train_batch_size = 8;
    a.gradient_accumulation_steps = 1;
    a.max_steps = 2;
    a.warmup_steps = 0.0;
    let mut b = a.clone();
    b.per_device_train_batch_size = 4;
    b.gradient_accumulation_steps = 2;
    let (pa, ra) = adapter_after(&a, 0.0, None, None);
    let (pb, rb) = adapter_after(&b, 0.0, None, None);
    for (x, y) in pa.iter().zip(&pb) {
        assert!(rel(x, y) < 1e-5, "adapters differ by {}", rel(x, y));
    }
    for (x, y) in ra.logs.iter().zip(&rb.logs) {
        assert!((x.loss - y.loss).abs() < 1e-5 * x.loss.abs());
        assert!((x.grad_norm - y.grad_norm).abs() < 1e-4 * x.grad_norm.abs());
    }
}

#[test]
fn a_resumed_run_ends_with_the_uninterrupted_adapter() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = sft_config();
    cfg.per_device_train_batch_size = 2;
    cfg.max_steps = 4;
    cfg.save_steps = 2;
    cfg.save_total_limit = Some(1);
    // Dropout on: the resumed run must replay the same masks.
    let (whole, rec) = adapter_after(&cfg, 0.1, Some(dir.path()), None);
    assert_eq!(
        rec.checkpoints.len(),
        1,
        "checkpoint-2 (the end writes the adapter, not a checkpoint)"
    );
    let ckpt = dir.path().join("checkpoint-2");
    assert!(ckpt.join("adapter_model.safetensors").is_file());
    assert!(
        dir.path().join("adapter_config.json").is_file(),
        "the final adapter"
    );
    // A fresh model from the same start, continued from step 2.
    let (resumed, rec2) = adapter_after(&cfg, 0.1, None, Some(&ckpt));
    assert_eq!(rec2.logs.first().map(|l| l.step), Some(3));
    for (x, y) in whole.iter().zip(&resumed) {
        assert!(rel(x, y) < 1e-6, "resumed adapter differs by {}", rel(x, y));
    }
    // The same run with gradient checkpointing recomputes blocks under the
    // same dropout masks, so it lands on the same adapter too.
    cfg.gradient_checkpointing = true;
    let (recomputed, _) = adapter_after(&cfg, 0.1, None, None);
    for (x, y) in whole.iter().zip(&recomputed) {
        assert!(
            rel(x, y) < 1e-5,
            "checkpointed adapter differs by {}",
            rel(x, y)
        );
    }
}

/// [`Rows`] on a device that runs out of memory above two rows a micro-batch.
struct Tight(Rows);

impl Batches for Tight {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn order(&self, epoch: usize) -> Vec<usize> {
        self.0.order(epoch)
    }
    fn collate(&self, rows: &[usize]) -> Result<MicroBatch, train::TrainError> {
        if rows.len() > 2 {
            return Err(tch::TchError::Torch(
                "CUDA out of memory. Tried to allocate 2.00 GiB".into(),
            )
            .into());
        }
        self.0.collate(rows)
    }
}

#[derive(Default)]
struct Warnings(Vec<String>, Vec<TrainLog>);

impl Observer for Warnings {
    fn warning(&mut self, message: &str) {
        self.0.push(message.to_string());
    }
    fn log(&mut self, log: &TrainLog) {
        self.1.push(log.clone());
    }
}

#[test]
fn out_of_memory_halves_the_micro_batch_and_keeps_the_numbers() {
    let mut cfg = sft_config();
    cfg.per_device_train_batch_size = 8;
    cfg.gradient_accumulation_steps = 1;
    cfg.max_steps = 2;
    cfg.warmup_steps = 0.0;
    let (plain, plain_rec) = adapter_after(&cfg, 0.0, None, None);
    let run = |cfg: &TrainingConfig| {
        let m = model_with("llama", &fixture("one-step-llama/adapter"));
        let spec = fixture_spec();
        let job = train::Job {
            model: &m.model,
            adapter: "default",
            spec: &spec,
            base_model: "llama",
            config: cfg,
            output_dir: None,
            resume: None,
        };
        let mut w = Warnings::default();
        let r = train::train(&job, &Tight(rows()), None, &mut w, &Control::default());
        let params: Vec<Tensor> = lora::parameters(&m.model, "default")
            .into_iter()
            .map(|(_, t)| t.detach().copy())
            .collect();
        (r, w, params)
    };
    // Without auto_find_batch_size the run stops with the out-of-memory.
    let (r, _, _) = run(&cfg);
    let e = r.expect_err("fails").to_string();
    assert!(
        e.contains("out of memory") && e.contains("per_device_train_batch_size"),
        "{e}"
    );
    cfg.auto_find_batch_size = true;
    let (r, w, params) = run(&cfg);
    r.expect("retries");
    assert_eq!(w.0.len(), 2, "8 rows -> 4 -> 2: {:?}", w.0);
    assert!(w.0[1].contains("4 parts"), "{:?}", w.0);
    for (x, y) in params.iter().zip(&plain) {
        assert!(rel(x, y) < 1e-5, "split adapter differs by {}", rel(x, y));
    }
    for (x, y) in w.1.iter().zip(&plain_rec.logs) {
        assert!((x.loss - y.loss).abs() < 1e-5 * y.loss.abs());
    }
}

#[test]
fn loss_scaling_leaves_the_numbers_as_they_are() {
    // float16's loss scaling, run on a float32 model: scaled backward, then
    // unscaled gradients, give the same steps.
    let mut cfg = sft_config();
    cfg.per_device_train_batch_size = 4;
    cfg.max_steps = 2;
    cfg.warmup_steps = 0.0;
    let (plain, plain_rec) = adapter_after(&cfg, 0.0, None, None);
    cfg.fp16 = true;
    let (scaled, scaled_rec) = adapter_after(&cfg, 0.0, None, None);
    for (x, y) in plain.iter().zip(&scaled) {
        assert!(rel(x, y) < 1e-5, "scaled adapter differs by {}", rel(x, y));
    }
    for (x, y) in plain_rec.logs.iter().zip(&scaled_rec.logs) {
        assert!((x.grad_norm - y.grad_norm).abs() < 1e-4 * x.grad_norm);
    }
}
