//! Loss scaling for float16 training, as torch's `GradScaler` does it under the
//! HF Trainer: backpropagate `loss * scale`, unscale the gradients, skip the
//! step (and halve the scale) when one is not finite, double the scale after
//! 2000 clean steps. bfloat16 and float32 need none of this.

use super::optim::Optimizer;
use crate::torch::TchResult;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradScaler {
    pub scale: f64,
    /// Clean steps since the scale last changed.
    pub growth_tracker: u32,
}

const GROWTH_INTERVAL: u32 = 2000;

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler {
            scale: 65536.0,
            growth_tracker: 0,
        }
    }
}

impl GradScaler {
    /// Divides every gradient by the scale, in place.
    pub fn unscale(&self, optimizer: &Optimizer) -> TchResult<()> {
        let _guard = tch::no_grad_guard();
        for p in &optimizer.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.f_mul_scalar_(1.0 / self.scale)?;
            }
        }
        Ok(())
    }

    /// After a step: `found_inf` halves the scale (the step was skipped);
    /// otherwise every 2000th clean step doubles it.
    pub fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= 0.5;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.growth_tracker = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn backs_off_on_overflow_and_grows_after_clean_steps() {
        let mut s = GradScaler::default();
        s.update(true);
        assert_eq!(s.scale, 32768.0);
        for _ in 0..GROWTH_INTERVAL - 1 {
            s.update(false);
        }
        assert_eq!(s.scale, 32768.0);
        s.update(false);
        assert_eq!((s.scale, s.growth_tracker), (65536.0, 0));
    }

    #[test]
    fn unscaling_restores_the_true_gradient() {
        let w = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let opt = Optimizer::new(
            crate::config::Optimizer::AdamwTorch,
            0.0,
            vec![("w".into(), w.shallow_clone())],
        )
        .expect("optimizer");
        let s = GradScaler {
            scale: 1024.0,
            growth_tracker: 0,
        };
        (&w * Tensor::from_slice(&[3.0f32, -1.0]) * s.scale)
            .sum(Kind::Float)
            .backward();
        s.unscale(&opt).expect("unscale");
        assert_eq!(
            Vec::<f32>::try_from(&w.grad()).expect("grad"),
            vec![3.0, -1.0]
        );
    }
}
