//! Learning-rate schedules as transformers 5 computes them
//! (`transformers/optimization.py`): the rate used by optimizer step `k`
//! (0-based) is `base_lr * lambda(k)`; warm-up ramps `k / W`, so with warm-up the
//! first step runs at rate 0.

use crate::config::LrScheduler;

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub kind: LrScheduler,
    pub base_lr: f64,
    /// Optimizer steps in the whole run.
    pub total: usize,
    /// Warm-up steps.
    pub warmup: usize,
}

/// transformers' `get_warmup_steps`: `warmup_steps` >= 1 is a count, a value
/// in (0, 1) a ratio of the run (`ceil(total * r)`); the book's `warmup_ratio`
/// is the same ratio under its older name.
pub fn warmup_steps(total: usize, warmup_steps: f64, warmup_ratio: f64) -> usize {
    if warmup_steps >= 1.0 {
        warmup_steps as usize
    } else if warmup_steps > 0.0 {
        (total as f64 * warmup_steps).ceil() as usize
    } else {
        (total as f64 * warmup_ratio).ceil() as usize
    }
}

impl Schedule {
    /// The rate optimizer step `k` (0-based) uses.
    pub fn lr(&self, k: usize) -> f64 {
        self.base_lr * self.factor(k)
    }

    fn factor(&self, k: usize) -> f64 {
        let (k, n, w) = (k as f64, self.total as f64, self.warmup as f64);
        if self.kind != LrScheduler::Constant && k < w {
            return k / w.max(1.0);
        }
        match self.kind {
            LrScheduler::Constant | LrScheduler::ConstantWithWarmup => 1.0,
            LrScheduler::Linear => ((n - k) / (n - w).max(1.0)).max(0.0),
            LrScheduler::Cosine => {
                let progress = (k - w) / (n - w).max(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * 0.5 * 2.0 * progress).cos())).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(kind: LrScheduler, total: usize, warmup: usize) -> Schedule {
        Schedule {
            kind,
            base_lr: 1.0,
            total,
            warmup,
        }
    }

    #[test]
    fn warmup_starts_at_zero_then_decays() {
        let lin = s(LrScheduler::Linear, 10, 2);
        let got: Vec<f64> = (0..10).map(|k| lin.lr(k)).collect();
        assert_eq!(got[..3], [0.0, 0.5, 1.0]);
        assert!((got[9] - 1.0 / 8.0).abs() < 1e-12);
        let cos = s(LrScheduler::Cosine, 10, 2);
        assert_eq!(cos.lr(2), 1.0);
        assert!((cos.lr(6) - 0.5).abs() < 1e-12);
        assert!(cos.lr(9) > 0.0 && cos.lr(9) < 0.05);
        assert_eq!(s(LrScheduler::Constant, 10, 2).lr(0), 1.0);
        assert_eq!(s(LrScheduler::ConstantWithWarmup, 10, 4).lr(1), 0.25);
    }

    #[test]
    fn warmup_counts_and_ratios() {
        assert_eq!(warmup_steps(100, 5.0, 0.0), 5);
        assert_eq!(warmup_steps(100, 0.031, 0.0), 4);
        assert_eq!(warmup_steps(100, 0.0, 0.1), 10);
        assert_eq!(warmup_steps(100, 0.0, 0.0), 0);
    }
}
