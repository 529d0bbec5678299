//! LoRA adapters, as peft makes them (`peft/tuners/lora`): a frozen linear layer
//! plus a trainable low-rank update `B(A(dropout(x))) * scaling`, with scaling
//! `lora_alpha / r` (or `lora_alpha / sqrt(r)` with rsLoRA). Adapters are named;
//! several can be loaded at once and one (or none: the base model) is active.
//! They save and load in peft's format (`adapter_config.json` +
//! `adapter_model.safetensors`, keys `base_model.model.<module>.lora_A.weight`),
//! so `PeftModel.from_pretrained` reads what ftui writes and the other way round.

use crate::config::{InitLoraWeights, LoraConfig, TargetModules};
use crate::model::layers::TchResult;
use crate::model::{CausalLm, SavedModule};
use serde_json::{json, Value};
use std::path::Path;
use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{0}")]
    Config(String),
    #[error("libtorch: {}", crate::model::torch_message(.0))]
    Torch(#[from] tch::TchError),
}

fn file_err(path: &Path, message: impl Into<String>) -> LoraError {
    LoraError::File {
        file: path.display().to_string(),
        message: message.into(),
    }
}

/// One adapter on one linear layer.
#[derive(Debug)]
pub struct LoraAdapter {
    pub name: String,
    /// `[r, in]`, float32.
    pub a: Tensor,
    /// `[out, r]`, float32.
    pub b: Tensor,
    pub scaling: f64,
    pub dropout: f64,
    /// Folded into the base weight (see [`merge`]).
    pub merged: bool,
}

impl LoraAdapter {
    /// `B(A(dropout(x))) * scaling`, computed in the adapter's kind and returned
    /// in `x`'s kind, as peft casts.
    pub fn delta(&self, x: &Tensor, training: bool) -> TchResult<Tensor> {
        let h = x.f_to_kind(self.a.kind())?;
        let h = if training && self.dropout > 0.0 {
            h.f_dropout(self.dropout, true)?
        } else {
            h
        };
        h.f_linear(&self.a, None::<Tensor>)?
            .f_linear(&self.b, None::<Tensor>)?
            .f_mul_scalar(self.scaling)?
            .f_to_kind(x.kind())
    }

    /// `B A * scaling`, the update to the base weight.
    fn weight_delta(&self) -> TchResult<Tensor> {
        self.b.f_matmul(&self.a)?.f_mul_scalar(self.scaling)
    }
}

/// The adapter settings peft records in `adapter_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSpec {
    pub r: i64,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub use_rslora: bool,
    pub target_modules: TargetModules,
    pub modules_to_save: Vec<String>,
    pub bias: String,
}

impl AdapterSpec {
    pub fn from_config(c: &LoraConfig) -> Self {
        AdapterSpec {
            r: c.r,
            lora_alpha: c.lora_alpha,
            lora_dropout: c.lora_dropout,
            use_rslora: c.use_rslora,
            target_modules: c
                .target_modules
                .clone()
                .unwrap_or_else(|| TargetModules::Pattern("all-linear".into())),
            modules_to_save: c.modules_to_save.clone(),
            bias: "none".into(),
        }
    }

    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }
}

/// Whether peft would put an adapter on `module` (`check_target_module_exists`):
/// a list matches a module by its full name or its last components; a string is
/// a regular expression over the full name; `all-linear` is every linear layer
/// but the output head.
pub fn is_target(module: &str, targets: &TargetModules) -> bool {
    match targets {
        TargetModules::Pattern(p) if p == "all-linear" => module != "lm_head",
        TargetModules::Pattern(p) => full_match(p, module),
        TargetModules::Names(names) => names
            .iter()
            .any(|t| module == t || module.ends_with(&format!(".{t}"))),
    }
}

/// `re.fullmatch` for the patterns people write in `target_modules`.
fn full_match(pattern: &str, text: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(text))
}

/// Uniform in `[-bound, bound)`: `kaiming_uniform_(a=sqrt(5))` has bound `1/sqrt(fan_in)`.
fn uniform(shape: [i64; 2], bound: f64, device: tch::Device) -> TchResult<Tensor> {
    Tensor::f_rand(shape, (Kind::Float, device))?
        .f_mul_scalar(2.0 * bound)?
        .f_sub_scalar(bound)
}

/// Adds a new adapter `name` to every targeted linear layer, initialised as
/// peft does, and makes it active. Returns the names of the targeted modules.
pub fn add_adapter(
    model: &mut CausalLm,
    name: &str,
    config: &LoraConfig,
    seed: u64,
) -> Result<Vec<String>, LoraError> {
    let spec = AdapterSpec::from_config(config);
    remove_adapter(model, name);
    tch::manual_seed(seed as i64);
    let device = model.device;
    let mut targeted = Vec::new();
    for (module, linear) in model.linears_mut() {
        if !is_target(&module, &spec.target_modules) {
            continue;
        }
        let shape = linear.weight.shape();
        let (out, inp) = (shape[0], shape[1]);
        let r = spec.r;
        let (a, b) = match &config.init_lora_weights {
            InitLoraWeights::Flag(true) => (
                uniform([r, inp], 1.0 / (inp as f64).sqrt(), device)?,
                Tensor::f_zeros([out, r], (Kind::Float, device))?,
            ),
            InitLoraWeights::Method(m) if m == "gaussian" => (
                Tensor::f_randn([r, inp], (Kind::Float, device))?.f_div_scalar(r as f64)?,
                Tensor::f_zeros([out, r], (Kind::Float, device))?,
            ),
            // No special init: both as nn.Linear's default (tests and experiments).
            _ => (
                uniform([r, inp], 1.0 / (inp as f64).sqrt(), device)?,
                uniform([out, r], 1.0 / (r as f64).sqrt(), device)?,
            ),
        };
        attach(linear, name, a, b, &spec);
        targeted.push(module);
    }
    if targeted.is_empty() {
        return Err(LoraError::Config(format!(
            "[lora] target_modules {:?} matches no linear layer; this model has {}",
            spec.target_modules,
            model_linear_names(model).join(", ")
        )));
    }
    for m in &spec.modules_to_save {
        let weight = base_module(model, m)?
            .f_detach_copy()?
            .f_to_kind(Kind::Float)?;
        model.saved_modules.push(SavedModule {
            adapter: name.into(),
            module: module_name(m),
            weight,
        });
    }
    set_active(model, Some(name))?;
    Ok(targeted)
}

/// The short names of a model's linear layers (for messages).
fn model_linear_names(model: &mut CausalLm) -> Vec<String> {
    let mut names: Vec<String> = model
        .linears_mut()
        .into_iter()
        .filter_map(|(n, _)| n.rsplit('.').next().map(String::from))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// peft names `modules_to_save` entries by their last component.
fn module_name(m: &str) -> String {
    match m.rsplit('.').next().unwrap_or(m) {
        "embed_tokens" => "model.embed_tokens".into(),
        other => other.into(),
    }
}

fn base_module<'a>(model: &'a CausalLm, m: &str) -> Result<&'a Tensor, LoraError> {
    match module_name(m).as_str() {
        "model.embed_tokens" => Ok(&model.embed_tokens),
        "lm_head" => model
            .lm_head
            .as_ref()
            .map_or(Some(&model.embed_tokens), |h| h.weight.as_dense())
            .ok_or_else(|| LoraError::Config("modules_to_save: lm_head is quantized".into())),
        other => Err(LoraError::Config(format!(
            "[lora] modules_to_save: `{other}` is not supported (embed_tokens and lm_head are)"
        ))),
    }
}

fn attach(
    linear: &mut crate::model::layers::Linear,
    name: &str,
    a: Tensor,
    b: Tensor,
    spec: &AdapterSpec,
) {
    linear.adapters.retain(|x| x.name != name);
    linear.adapters.push(LoraAdapter {
        name: name.into(),
        a,
        b,
        scaling: spec.scaling(),
        dropout: spec.lora_dropout,
        merged: false,
    });
}

/// Drops adapter `name` from every layer and its module copies.
pub fn remove_adapter(model: &mut CausalLm, name: &str) {
    for (_, l) in model.linears_mut() {
        l.adapters.retain(|a| a.name != name);
    }
    model.saved_modules.retain(|m| m.adapter != name);
    if model.active_adapter.as_deref() == Some(name) {
        model.active_adapter = None;
    }
}

/// Activates adapter `name`, or none (the base model).
pub fn set_active(model: &mut CausalLm, name: Option<&str>) -> Result<(), LoraError> {
    if let Some(n) = name {
        if !adapter_names(model).iter().any(|a| a == n) {
            return Err(LoraError::Config(format!(
                "no adapter named `{n}` is loaded"
            )));
        }
    }
    // A merged adapter lives in the weights: take it out when it stops being
    // active, as peft unmerges when adapters are disabled.
    for other in adapter_names(model) {
        if Some(other.as_str()) != name {
            unmerge(model, &other)?;
        }
    }
    for (_, l) in model.linears_mut() {
        l.active = name.and_then(|n| l.adapters.iter().position(|a| a.name == n));
    }
    model.active_adapter = name.map(String::from);
    Ok(())
}

/// Names of the loaded adapters.
pub fn adapter_names(model: &CausalLm) -> Vec<String> {
    let mut names: Vec<String> = model
        .saved_modules
        .iter()
        .map(|m| m.adapter.clone())
        .collect();
    for l in model.linears() {
        names.extend(l.adapters.iter().map(|a| a.name.clone()));
    }
    names.sort();
    names.dedup();
    names
}

/// Trainable and total parameters with adapter `name`, as peft's
/// `get_nb_trainable_parameters()` counts them: base weights (tied once) plus
/// the adapter's A and B and its full module copies.
pub fn parameter_counts(model: &CausalLm, name: &str) -> (i64, i64) {
    let base = model.num_parameters();
    let adapters: i64 = model
        .linears()
        .iter()
        .flat_map(|l| l.adapters.iter())
        .filter(|a| a.name == name)
        .map(|a| (a.a.numel() + a.b.numel()) as i64)
        .sum();
    let modules: i64 = model
        .saved_modules
        .iter()
        .filter(|m| m.adapter == name)
        .map(|m| m.weight.numel() as i64)
        .sum();
    let trainable = adapters + modules;
    (trainable, base + trainable)
}

/// Reads a peft (or ftui) adapter folder as adapter `name` and activates it.
pub fn load_adapter(
    model: &mut CausalLm,
    dir: &Path,
    name: &str,
) -> Result<AdapterSpec, LoraError> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| file_err(&cfg_path, format!("cannot read ({e}): an adapter folder holds adapter_config.json and adapter_model.safetensors")))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| file_err(&cfg_path, format!("not valid JSON: {e}")))?;
    if v.get("peft_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "LORA")
    {
        return Err(file_err(
            &cfg_path,
            format!("peft_type {} is not LORA", v["peft_type"]),
        ));
    }
    for pattern in ["alpha_pattern", "rank_pattern"] {
        if v.get(pattern)
            .and_then(Value::as_object)
            .is_some_and(|o| !o.is_empty())
        {
            return Err(file_err(
                &cfg_path,
                format!("`{pattern}` (per-layer ranks or alphas) is not supported"),
            ));
        }
    }
    for unsupported in ["use_dora", "fan_in_fan_out", "lora_bias"] {
        if v.get(unsupported).and_then(Value::as_bool) == Some(true) {
            return Err(file_err(
                &cfg_path,
                format!("`{unsupported}` adapters are not supported"),
            ));
        }
    }
    let target_modules = match v.get("target_modules") {
        Some(Value::String(s)) => TargetModules::Pattern(s.clone()),
        Some(Value::Array(a)) => TargetModules::Names(
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
        ),
        _ => return Err(file_err(&cfg_path, "target_modules is missing")),
    };
    let spec = AdapterSpec {
        r: v.get("r")
            .and_then(Value::as_i64)
            .ok_or_else(|| file_err(&cfg_path, "r is missing"))?,
        lora_alpha: v.get("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0),
        lora_dropout: v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
        use_rslora: v
            .get("use_rslora")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        target_modules,
        modules_to_save: v
            .get("modules_to_save")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        bias: v
            .get("bias")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .into(),
    };
    if spec.bias != "none" {
        return Err(file_err(
            &cfg_path,
            format!("bias = \"{}\" adapters are not supported yet", spec.bias),
        ));
    }
    let weights_path = dir.join("adapter_model.safetensors");
    if !weights_path.is_file() {
        return Err(file_err(
            &weights_path,
            "missing: ftui reads adapters in safetensors form",
        ));
    }
    let src =
        crate::model::weights::WeightSource::safetensors_files(std::slice::from_ref(&weights_path))
            .map_err(|e| file_err(&weights_path, e.to_string()))?;
    let device = model.device;
    let kind = model.kind;
    let read = |key: &str, kind: Kind| -> Result<Tensor, LoraError> {
        src.tensor(key, kind, device)
            .map_err(|e| file_err(&weights_path, e.to_string()))
    };
    // Read and check everything first: a bad file leaves the model as it was.
    let mut found: Vec<(String, Tensor, Tensor)> = Vec::new();
    for (module, linear) in model.linears_mut() {
        let a_key = format!("base_model.model.{module}.lora_A.weight");
        if !src.contains(&a_key) {
            continue;
        }
        let a = read(&a_key, Kind::Float)?;
        let b = read(
            &format!("base_model.model.{module}.lora_B.weight"),
            Kind::Float,
        )?;
        let shape = linear.weight.shape();
        let (out, inp) = (shape[0], shape[1]);
        if a.size() != [spec.r, inp] || b.size() != [out, spec.r] {
            return Err(file_err(
                &weights_path,
                format!("{module}: adapter shapes {:?}/{:?} do not fit the layer [{out}, {inp}] with r={}", a.size(), b.size(), spec.r),
            ));
        }
        found.push((module, a, b));
    }
    if found.is_empty() {
        return Err(file_err(&weights_path, "no lora_A/lora_B weight matches a layer of this model (is it an adapter for another architecture?)"));
    }
    let mut saved = Vec::new();
    for m in &spec.modules_to_save {
        let module = module_name(m);
        let key = format!("base_model.model.{module}.weight");
        if src.contains(&key) {
            // Full copies keep the model's kind, as peft keeps the module's dtype.
            saved.push(SavedModule {
                adapter: name.into(),
                module,
                weight: read(&key, kind)?,
            });
        }
    }
    remove_adapter(model, name);
    let used = 2 * found.len() + saved.len();
    let mut found = found.into_iter().peekable();
    for (module, linear) in model.linears_mut() {
        if found.peek().is_some_and(|(m, _, _)| *m == module) {
            if let Some((_, a, b)) = found.next() {
                attach(linear, name, a, b, &spec);
            }
        }
    }
    model.saved_modules.extend(saved);
    if used < src.names().len() {
        log::warn!(
            "{}: {} tensors were not used",
            weights_path.display(),
            src.names().len() - used
        );
    }
    set_active(model, Some(name))?;
    Ok(spec)
}

fn tensor_bytes(t: &Tensor) -> TchResult<Vec<u8>> {
    let v = Vec::<f32>::try_from(
        &t.f_to_kind(Kind::Float)?
            .f_to_device(tch::Device::Cpu)?
            .f_contiguous()?
            .f_flatten(0, -1)?,
    )?;
    Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Writes adapter `name` in peft's format into `dir` (each file written to a
/// temporary name and renamed).
pub fn save_adapter(
    model: &mut CausalLm,
    name: &str,
    spec: &AdapterSpec,
    base_model: &str,
    dir: &Path,
) -> Result<(), LoraError> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e.to_string()))?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    for (module, linear) in model.linears_mut() {
        for a in linear.adapters.iter().filter(|a| a.name == name) {
            for (part, t) in [("lora_A", &a.a), ("lora_B", &a.b)] {
                let shape = t.size().iter().map(|&d| d as usize).collect();
                tensors.push((
                    format!("base_model.model.{module}.{part}.weight"),
                    shape,
                    tensor_bytes(t)?,
                ));
            }
            targets.push(module.rsplit('.').next().unwrap_or(&module).to_string());
        }
    }
    for m in model.saved_modules.iter().filter(|m| m.adapter == name) {
        let shape = m.weight.size().iter().map(|&d| d as usize).collect();
        tensors.push((
            format!("base_model.model.{}.weight", m.module),
            shape,
            tensor_bytes(&m.weight)?,
        ));
    }
    if tensors.is_empty() {
        return Err(LoraError::Config(format!(
            "no adapter named `{name}` to save"
        )));
    }
    targets.sort();
    targets.dedup();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| LoraError::Config(format!("{n}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    let bytes =
        safetensors::serialize(views, metadata).map_err(|e| LoraError::Config(e.to_string()))?;
    let weights = dir.join("adapter_model.safetensors");
    crate::fsutil::write_atomic(&weights, &bytes).map_err(|e| file_err(&weights, e.to_string()))?;
    let target_value = match &spec.target_modules {
        TargetModules::Pattern(p) if p != "all-linear" => json!(p),
        _ => json!(targets),
    };
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": spec.r,
        "lora_alpha": spec.lora_alpha,
        "lora_dropout": spec.lora_dropout,
        "use_rslora": spec.use_rslora,
        "bias": spec.bias,
        "target_modules": target_value,
        "modules_to_save": if spec.modules_to_save.is_empty() { Value::Null } else { json!(spec.modules_to_save) },
        "init_lora_weights": true,
        "fan_in_fan_out": false,
        "use_dora": false,
        "inference_mode": true,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
    });
    let cfg = dir.join("adapter_config.json");
    let text =
        serde_json::to_string_pretty(&config).map_err(|e| LoraError::Config(e.to_string()))?;
    crate::fsutil::write_atomic(&cfg, text.as_bytes()).map_err(|e| file_err(&cfg, e.to_string()))
}

/// Folds adapter `name` into the base weights (`W += B A * scaling`); the layer
/// then skips the adapter's own path. A quantized base is dequantized to the
/// model's kind first and stays dense (as peft's merge into 4/8-bit layers does,
/// minus its re-quantization rounding).
pub fn merge(model: &mut CausalLm, name: &str) -> Result<(), LoraError> {
    fold(model, name, true)
}

/// Undoes [`merge`].
pub fn unmerge(model: &mut CausalLm, name: &str) -> Result<(), LoraError> {
    fold(model, name, false)
}

fn fold(model: &mut CausalLm, name: &str, merge: bool) -> Result<(), LoraError> {
    let _guard = tch::no_grad_guard();
    let kind = model.kind;
    for (_, l) in model.linears_mut() {
        let Some(a) = l.adapters.iter_mut().find(|a| a.name == name) else {
            continue;
        };
        if a.merged == merge {
            continue;
        }
        if l.weight.is_quantized() {
            l.weight = crate::quant::LinearWeight::Dense(l.weight.dequantize(kind)?);
        }
        let Some(w) = l.weight.as_dense_mut() else {
            continue;
        };
        let delta = a.weight_delta()?.f_to_kind(w.kind())?;
        if merge {
            let _ = w.f_add_(&delta)?;
        } else {
            let _ = w.f_sub_(&delta)?;
        }
        a.merged = merge;
    }
    Ok(())
}
