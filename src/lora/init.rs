//! New adapters, initialised as peft initialises them
//! (`LoraLayer.reset_lora_parameters`): A kaiming-uniform, B zero, so a new
//! adapter starts as the identity update.

use super::target::{is_target, saved_module_name};
use super::{set_active, set_trainable, AdapterSpec, LoraError};
use crate::config::{InitLoraWeights, LoraConfig};
use crate::model::{CausalLm, SavedModule};
use crate::nn::{Linear, LoraWeights};
use crate::torch::TchResult;
use tch::{Kind, Tensor};

/// Uniform in `[-bound, bound)`: `kaiming_uniform_(a=sqrt(5))` has bound `1/sqrt(fan_in)`.
fn uniform(shape: [i64; 2], bound: f64, device: tch::Device) -> TchResult<Tensor> {
    Tensor::f_rand(shape, (Kind::Float, device))?
        .f_mul_scalar(2.0 * bound)?
        .f_sub_scalar(bound)
}

/// Adds a new adapter `name` to every targeted linear layer, initialised as
/// peft does, trainable, and makes it active. Returns the names of the
/// targeted modules.
pub fn add_adapter(
    model: &mut CausalLm,
    name: &str,
    config: &LoraConfig,
    seed: u64,
) -> Result<Vec<String>, LoraError> {
    let spec = AdapterSpec::from_config(config);
    super::remove_adapter(model, name);
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
            linear_kinds(model).join(", ")
        )));
    }
    for m in &spec.modules_to_save {
        let weight = base_module(model, m)?
            .f_detach_copy()?
            .f_to_kind(Kind::Float)?;
        model.saved_modules.push(SavedModule {
            adapter: name.into(),
            module: saved_module_name(m),
            weight,
        });
    }
    set_trainable(model, name, true)?;
    set_active(model, Some(name))?;
    Ok(targeted)
}

/// The short names of a model's linear layers (for messages).
fn linear_kinds(model: &CausalLm) -> Vec<String> {
    let mut names: Vec<String> = model
        .linears()
        .into_iter()
        .filter_map(|(n, _)| n.rsplit('.').next().map(String::from))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn base_module<'a>(model: &'a CausalLm, m: &str) -> Result<&'a Tensor, LoraError> {
    match saved_module_name(m).as_str() {
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

/// Puts adapter `name` on `linear`, replacing one of the same name.
pub(super) fn attach(linear: &mut Linear, name: &str, a: Tensor, b: Tensor, spec: &AdapterSpec) {
    linear.adapters.insert(
        name.into(),
        LoraWeights {
            a,
            b,
            scaling: spec.scaling(),
            dropout: spec.lora_dropout,
            merged: false,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetModules;
    use crate::lora::{adapter_names, parameters, remove_adapter};

    fn lora(targets: &[&str], seed_b: bool) -> LoraConfig {
        LoraConfig {
            r: 2,
            lora_alpha: 4.0,
            target_modules: Some(TargetModules::Names(
                targets.iter().map(|s| s.to_string()).collect(),
            )),
            init_lora_weights: InitLoraWeights::Flag(!seed_b),
            lora_dropout: 0.0,
            bias: Default::default(),
            modules_to_save: Vec::new(),
            use_rslora: false,
        }
    }

    #[test]
    fn adapters_are_kept_by_name() {
        let mut m = crate::model::tiny::llama(2);
        add_adapter(&mut m, "a", &lora(&["q_proj"], true), 1).expect("a");
        add_adapter(&mut m, "b", &lora(&["q_proj", "v_proj"], true), 2).expect("b");
        add_adapter(&mut m, "c", &lora(&["v_proj"], true), 3).expect("c");
        assert_eq!(adapter_names(&m), ["a", "b", "c"]);
        // Removing an adapter added before the active one leaves the active
        // one active, on every layer it covers.
        set_active(&mut m, Some("c")).expect("c active");
        remove_adapter(&mut m, "a");
        remove_adapter(&mut m, "b");
        assert_eq!(adapter_names(&m), ["c"]);
        for (name, l) in m.linears() {
            let expected = name.ends_with("v_proj").then(|| "c".to_string());
            assert_eq!(l.active, expected, "{name}");
        }
        assert!(matches!(
            set_active(&mut m, Some("a")),
            Err(LoraError::NoSuchAdapter(n)) if n == "a"
        ));
    }

    #[test]
    fn new_adapters_are_trainable_and_named() {
        let mut m = crate::model::tiny::llama(2);
        add_adapter(&mut m, "t", &lora(&["o_proj"], false), 1).expect("add");
        let params = parameters(&m, "t");
        let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "model.layers.0.self_attn.o_proj.lora_A.weight",
                "model.layers.0.self_attn.o_proj.lora_B.weight",
                "model.layers.1.self_attn.o_proj.lora_A.weight",
                "model.layers.1.self_attn.o_proj.lora_B.weight",
            ]
        );
        assert!(params.iter().all(|(_, t)| t.requires_grad()));
        // A gradient reaches every adapter tensor through the model.
        let ids = Tensor::from_slice(&[1i64, 2, 3]).view([1, 3]);
        let logits = m.forward_t(&ids, None, None, None, true).expect("forward");
        logits.sum(Kind::Float).backward();
        for (n, t) in &params {
            assert!(t.grad().defined(), "{n} has no gradient");
        }
        // The base stays frozen.
        for (n, l) in m.linears() {
            assert!(!l.weight.as_dense().expect("dense").requires_grad(), "{n}");
        }
    }
}
