//! peft's adapter files: `adapter_config.json` (read through serde, so a value
//! of the wrong type is refused with its key) and `adapter_model.safetensors`
//! (keys `base_model.model.<module>.lora_A.weight`).

use super::init::attach;
use super::target::saved_module_name;
use super::{file_err, remove_adapter, set_active, LoraError};
use crate::config::{LoraConfig, TargetModules};
use crate::model::weights::WeightSource;
use crate::model::{CausalLm, SavedModule};
use crate::torch::TchResult;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

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

/// `adapter_config.json` as peft writes it (the keys ftui reads or writes;
/// others are ignored on reading).
#[derive(Debug, Serialize, Deserialize)]
struct AdapterConfigJson {
    #[serde(default)]
    peft_type: Option<String>,
    #[serde(default, skip_deserializing)]
    task_type: Option<String>,
    #[serde(default, skip_deserializing)]
    base_model_name_or_path: Option<String>,
    r: i64,
    #[serde(default = "default_alpha")]
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    bias: Option<String>,
    target_modules: Option<TargetModules>,
    #[serde(default)]
    modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    init_lora_weights: Option<serde_json::Value>,
    #[serde(default)]
    fan_in_fan_out: Option<bool>,
    #[serde(default)]
    use_dora: Option<bool>,
    #[serde(default, skip_serializing)]
    lora_bias: Option<bool>,
    #[serde(default, skip_deserializing)]
    inference_mode: bool,
    #[serde(default, skip_deserializing)]
    layers_to_transform: Option<Vec<i64>>,
    #[serde(default, skip_deserializing)]
    layers_pattern: Option<String>,
    #[serde(default)]
    rank_pattern: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    alpha_pattern: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_deserializing)]
    revision: Option<String>,
}

/// peft's default `lora_alpha`.
fn default_alpha() -> f64 {
    8.0
}

/// Reads and checks `adapter_config.json`.
fn read_spec(path: &Path) -> Result<AdapterSpec, LoraError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        file_err(path, format!("cannot read ({e}): an adapter folder holds adapter_config.json and adapter_model.safetensors"))
    })?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let v: AdapterConfigJson = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        if key == "." {
            file_err(path, format!("not a peft adapter config: {}", e.inner()))
        } else {
            file_err(path, format!("`{key}`: {}", e.inner()))
        }
    })?;
    if let Some(t) = v.peft_type.as_deref().filter(|t| *t != "LORA") {
        return Err(file_err(path, format!("peft_type {t} is not LORA")));
    }
    for (key, pattern) in [
        ("alpha_pattern", &v.alpha_pattern),
        ("rank_pattern", &v.rank_pattern),
    ] {
        if pattern.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(file_err(
                path,
                format!("`{key}` (per-layer ranks or alphas) is not supported"),
            ));
        }
    }
    for (key, on) in [
        ("use_dora", v.use_dora),
        ("fan_in_fan_out", v.fan_in_fan_out),
        ("lora_bias", v.lora_bias),
    ] {
        if on == Some(true) {
            return Err(file_err(
                path,
                format!("`{key}` adapters are not supported"),
            ));
        }
    }
    let bias = v.bias.unwrap_or_else(|| "none".into());
    if bias != "none" {
        return Err(file_err(
            path,
            format!("bias = \"{bias}\" adapters are not supported yet"),
        ));
    }
    Ok(AdapterSpec {
        r: v.r,
        lora_alpha: v.lora_alpha,
        lora_dropout: v.lora_dropout,
        use_rslora: v.use_rslora,
        target_modules: v
            .target_modules
            .ok_or_else(|| file_err(path, "target_modules is missing"))?,
        modules_to_save: v.modules_to_save.unwrap_or_default(),
        bias,
    })
}

/// Reads a peft (or ftui) adapter folder as adapter `name` and activates it,
/// for inference (its tensors do not require grad; see
/// [`super::set_trainable`]). A bad file leaves the model as it was.
pub fn load_adapter(
    model: &mut CausalLm,
    dir: &Path,
    name: &str,
) -> Result<AdapterSpec, LoraError> {
    let spec = read_spec(&dir.join("adapter_config.json"))?;
    let weights_path = dir.join("adapter_model.safetensors");
    if !weights_path.is_file() {
        return Err(file_err(
            &weights_path,
            "missing: ftui reads adapters in safetensors form",
        ));
    }
    let src = WeightSource::safetensors_files(std::slice::from_ref(&weights_path))
        .map_err(|e| file_err(&weights_path, e.to_string()))?;
    let (device, kind) = (model.device, model.kind);
    let read = |key: &str, kind: Kind| -> Result<Tensor, LoraError> {
        src.tensor(key, kind, device)
            .map_err(|e| file_err(&weights_path, e.to_string()))
    };
    // Read and check everything first.
    let mut found: BTreeMap<String, (Tensor, Tensor)> = BTreeMap::new();
    for (module, linear) in model.linears() {
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
        found.insert(module, (a, b));
    }
    if found.is_empty() {
        return Err(file_err(&weights_path, "no lora_A/lora_B weight matches a layer of this model (is it an adapter for another architecture?)"));
    }
    let mut saved = Vec::new();
    for m in &spec.modules_to_save {
        let module = saved_module_name(m);
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
    for (module, linear) in model.linears_mut() {
        if let Some((a, b)) = found.remove(&module) {
            attach(linear, name, a, b, &spec);
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
        &t.f_detach()?
            .f_to_kind(Kind::Float)?
            .f_to_device(tch::Device::Cpu)?
            .f_contiguous()?
            .f_flatten(0, -1)?,
    )?;
    Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Writes adapter `name` in peft's format into `dir` (each file written to a
/// temporary name and renamed).
pub fn save_adapter(
    model: &CausalLm,
    name: &str,
    spec: &AdapterSpec,
    base_model: &str,
    dir: &Path,
) -> Result<(), LoraError> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e.to_string()))?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (key, t) in super::parameters(model, name) {
        let shape = t.size().iter().map(|&d| d as usize).collect();
        tensors.push((format!("base_model.model.{key}"), shape, tensor_bytes(&t)?));
    }
    if tensors.is_empty() {
        return Err(LoraError::NoSuchAdapter(name.into()));
    }
    let mut targets: Vec<String> = model
        .linears()
        .into_iter()
        .filter(|(_, l)| l.adapters.contains_key(name))
        .map(|(m, _)| m.rsplit('.').next().unwrap_or(&m).to_string())
        .collect();
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
    let target_modules = match &spec.target_modules {
        TargetModules::Pattern(p) if p != "all-linear" => TargetModules::Pattern(p.clone()),
        _ => TargetModules::Names(targets),
    };
    let config = AdapterConfigJson {
        peft_type: Some("LORA".into()),
        task_type: Some("CAUSAL_LM".into()),
        base_model_name_or_path: Some(base_model.into()),
        r: spec.r,
        lora_alpha: spec.lora_alpha,
        lora_dropout: spec.lora_dropout,
        use_rslora: spec.use_rslora,
        bias: Some(spec.bias.clone()),
        target_modules: Some(target_modules),
        modules_to_save: (!spec.modules_to_save.is_empty()).then(|| spec.modules_to_save.clone()),
        init_lora_weights: Some(serde_json::Value::Bool(true)),
        fan_in_fan_out: Some(false),
        use_dora: Some(false),
        lora_bias: None,
        inference_mode: true,
        layers_to_transform: None,
        layers_pattern: None,
        rank_pattern: Some(BTreeMap::new()),
        alpha_pattern: Some(BTreeMap::new()),
        revision: None,
    };
    let cfg = dir.join("adapter_config.json");
    let text =
        serde_json::to_string_pretty(&config).map_err(|e| LoraError::Config(e.to_string()))?;
    crate::fsutil::write_atomic(&cfg, text.as_bytes()).map_err(|e| file_err(&cfg, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_of(json: &str) -> Result<AdapterSpec, String> {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("adapter_config.json");
        std::fs::write(&p, json).expect("write");
        read_spec(&p).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_peft_configs_and_names_wrongly_typed_keys() {
        let s = spec_of(r#"{"peft_type":"LORA","r":4,"lora_alpha":16,"target_modules":["q_proj","v_proj"],"modules_to_save":null,"extra":1}"#)
            .expect("valid");
        assert_eq!(s.r, 4);
        assert_eq!(s.scaling(), 4.0);
        let e = spec_of(r#"{"r":4,"lora_alpha":"16","target_modules":["q_proj"]}"#)
            .expect_err("a string alpha");
        assert!(e.contains("`lora_alpha`"), "{e}");
        let e = spec_of(r#"{"r":4,"use_rslora":"yes","target_modules":["q_proj"]}"#)
            .expect_err("a string flag");
        assert!(e.contains("`use_rslora`"), "{e}");
        let e =
            spec_of(r#"{"r":4,"target_modules":["q_proj"],"use_dora":true}"#).expect_err("dora");
        assert!(e.contains("use_dora"), "{e}");
        let e = spec_of(r#"{"r":4}"#).expect_err("no targets");
        assert!(e.contains("target_modules"), "{e}");
    }
}
