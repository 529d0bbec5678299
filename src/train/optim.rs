//! The optimizers, written in tensor ops so their state can be saved and a run
//! resumed exactly (tch's own optimizers hide their state).
//!
//! AdamW is torch's (`torch/optim/adam.py` with decoupled weight decay; the
//! fused kernel computes the same up to rounding): decay before the moments,
//! bias corrections in double, `eps` after the corrected `sqrt(v)`. Weight decay
//! follows the HF Trainer's groups: none on biases and norms.

use crate::config::Optimizer as OptimizerKind;
use crate::torch::TchResult;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// One trainable tensor and its optimizer state.
#[derive(Debug)]
pub struct Param {
    pub name: String,
    pub tensor: Tensor,
    /// Weight decay applies (not a bias or a norm).
    pub decay: bool,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// transformers' `get_decay_parameter_names`: biases and norms get no decay.
pub fn decays(name: &str) -> bool {
    let n = name.to_lowercase();
    let norm = n
        .split('.')
        .any(|part| part == "norm" || part.ends_with("_norm"));
    !(n.contains("bias") || n.contains("layernorm") || n.contains("rmsnorm") || norm)
}

#[derive(Debug)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Optimizer steps taken.
    pub steps: i64,
    pub params: Vec<Param>,
}

impl Optimizer {
    /// An optimizer over `params` (name, tensor requiring grad) with the
    /// Trainer's defaults (betas 0.9/0.999, eps 1e-8).
    pub fn new(
        kind: OptimizerKind,
        weight_decay: f64,
        params: Vec<(String, Tensor)>,
    ) -> TchResult<Self> {
        let params = params
            .into_iter()
            .map(|(name, tensor)| {
                Ok(Param {
                    decay: decays(&name),
                    exp_avg: tensor.f_zeros_like()?,
                    exp_avg_sq: tensor.f_zeros_like()?,
                    name,
                    tensor,
                })
            })
            .collect::<TchResult<Vec<_>>>()?;
        Ok(Optimizer {
            kind,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            steps: 0,
            params,
        })
    }

    /// Clears every gradient (keeping the buffers).
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.tensor.zero_grad();
        }
    }

    /// The global L2 norm of the gradients, as a float32 scalar on the device
    /// (not read back here: the caller logs it).
    pub fn grad_norm(&self) -> TchResult<Tensor> {
        let norms = self
            .params
            .iter()
            .map(|p| p.tensor.grad())
            .filter(Tensor::defined)
            .map(|g| g.f_to_kind(Kind::Float)?.f_norm())
            .collect::<TchResult<Vec<_>>>()?;
        if norms.is_empty() {
            return Tensor::f_zeros([], (Kind::Float, tch::Device::Cpu));
        }
        Tensor::f_stack(&norms, 0)?.f_norm()
    }

    /// `clip_grad_norm_`: scales every gradient by `max / (total + 1e-6)` when
    /// that is below 1, on the device (no host round trip). Returns the
    /// pre-clip norm.
    pub fn clip_grad_norm(&mut self, max: f64) -> TchResult<Tensor> {
        let total = self.grad_norm()?;
        if max > 0.0 {
            let coef = total
                .f_add_scalar(1e-6)?
                .f_reciprocal()?
                .f_mul_scalar(max)?
                .f_clamp_max(1.0)?;
            let _guard = tch::no_grad_guard();
            for p in &self.params {
                let mut g = p.tensor.grad();
                if g.defined() {
                    let _ = g.f_mul_(&coef.f_to_device(g.device())?.f_to_kind(g.kind())?)?;
                }
            }
        }
        Ok(total)
    }

    /// One update at rate `lr`.
    pub fn step(&mut self, lr: f64) -> TchResult<()> {
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        let t = self.steps as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        for p in &mut self.params {
            let g = p.tensor.grad();
            if !g.defined() {
                continue;
            }
            let wd = if p.decay { self.weight_decay } else { 0.0 };
            match self.kind {
                OptimizerKind::Sgd => {
                    // torch's SGD couples the decay into the gradient.
                    let g = if wd != 0.0 {
                        g.f_add(&p.tensor.f_mul_scalar(wd)?)?
                    } else {
                        g
                    };
                    let _ = p.tensor.f_sub_(&g.f_mul_scalar(lr)?)?;
                }
                _ => {
                    if wd != 0.0 {
                        let _ = p.tensor.f_mul_scalar_(1.0 - lr * wd)?;
                    }
                    let _ = p.exp_avg.f_lerp_(&g, 1.0 - self.beta1)?;
                    let _ = p.exp_avg_sq.f_mul_scalar_(self.beta2)?;
                    let _ = p
                        .exp_avg_sq
                        .f_addcmul_(&g.f_mul_scalar(1.0 - self.beta2)?, &g)?;
                    let denom = p
                        .exp_avg_sq
                        .f_sqrt()?
                        .f_div_scalar(bc2_sqrt)?
                        .f_add_scalar(self.eps)?;
                    let update = p.exp_avg.f_div(&denom)?.f_mul_scalar(lr / bc1)?;
                    let _ = p.tensor.f_sub_(&update)?;
                }
            }
        }
        Ok(())
    }

    /// The moments by name (`<param>.exp_avg`, `<param>.exp_avg_sq`), to save.
    pub fn state(&self) -> Vec<(String, &Tensor)> {
        self.params
            .iter()
            .flat_map(|p| {
                [
                    (format!("{}.exp_avg", p.name), &p.exp_avg),
                    (format!("{}.exp_avg_sq", p.name), &p.exp_avg_sq),
                ]
            })
            .collect()
    }

    /// Restores saved moments and the step count; every parameter must be there.
    pub fn load_state(
        &mut self,
        steps: i64,
        state: &HashMap<String, Tensor>,
    ) -> Result<(), String> {
        let _guard = tch::no_grad_guard();
        for p in &mut self.params {
            for (suffix, dst) in [
                ("exp_avg", &mut p.exp_avg),
                ("exp_avg_sq", &mut p.exp_avg_sq),
            ] {
                let key = format!("{}.{suffix}", p.name);
                let src = state
                    .get(&key)
                    .ok_or_else(|| format!("optimizer state `{key}` is missing"))?;
                if src.size() != dst.size() {
                    return Err(format!(
                        "optimizer state `{key}` has shape {:?}, the parameter {:?}",
                        src.size(),
                        dst.size()
                    ));
                }
                dst.f_copy_(src).map_err(|e| e.to_string())?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_groups_as_the_trainer_forms_them() {
        assert!(decays("model.layers.0.self_attn.q_proj.lora_A.weight"));
        assert!(decays("lm_head.weight"));
        assert!(!decays("model.layers.0.self_attn.q_proj.bias"));
        assert!(!decays("model.norm.weight"));
        assert!(!decays("model.layers.0.input_layernorm.weight"));
    }

    /// AdamW by hand in f64 for one scalar parameter, as torch defines it.
    fn reference(p0: f64, grads: &[f64], lr: f64, wd: f64) -> f64 {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
        for (i, g) in grads.iter().enumerate() {
            let t = (i + 1) as i32;
            p *= 1.0 - lr * wd;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let denom = v.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
            p -= lr / (1.0 - b1.powi(t)) * m / denom;
        }
        p
    }

    #[test]
    fn adamw_matches_torch_formula() {
        let w = Tensor::from_slice(&[0.5f32]).set_requires_grad(true);
        let mut opt = Optimizer::new(
            OptimizerKind::AdamwTorchFused,
            0.1,
            vec![("x.lora_A.weight".into(), w.shallow_clone())],
        )
        .expect("optimizer");
        let grads = [0.3, -0.2, 0.05];
        for g in grads {
            opt.zero_grad();
            (&w * g).sum(Kind::Float).backward();
            opt.step(0.01).expect("step");
        }
        let got = w.double_value(&[0]);
        let want = reference(0.5, &grads, 0.01, 0.1);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let a = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let mut opt = Optimizer::new(
            OptimizerKind::Sgd,
            0.0,
            vec![("a".into(), a.shallow_clone())],
        )
        .expect("optimizer");
        (&a * Tensor::from_slice(&[3.0f32, 4.0]))
            .sum(Kind::Float)
            .backward();
        let norm = opt.clip_grad_norm(1.0).expect("clip").double_value(&[]);
        assert!((norm - 5.0).abs() < 1e-6);
        let g = Vec::<f32>::try_from(&a.grad()).expect("grad");
        assert!(
            (g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5,
            "{g:?}"
        );
    }
}
