//! The train/eval split: a seeded shuffle that gives the same split on every
//! platform, and `datasets`' sizing of the held-out part.

use super::{DataError, Example};

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014; constants of Vigna's reference `splitmix64.c`): one
/// 64-bit state, passes BigCrush, and is fully specified by these few lines, so the
/// same seed gives the same split on every platform and every ftui version.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias (Lemire's multiply-shift
    /// with rejection, "Fast random integer generation in an interval", 2019).
    pub fn below(&mut self, n: u64) -> u64 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

/// A permutation of `0..n` by Fisher-Yates with [`SplitMix64`] seeded by `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Holds out `ceil(ratio * n)` examples for evaluation, as
/// `datasets.Dataset.train_test_split(test_size=ratio)` sizes it: both parts drawn
/// from one shuffle by `seed`. With ratio 0 the examples keep their file order.
pub fn split(
    examples: Vec<Example>,
    ratio: f64,
    seed: u64,
) -> Result<(Vec<Example>, Vec<Example>), DataError> {
    if ratio <= 0.0 {
        return Ok((examples, Vec::new()));
    }
    let n = examples.len();
    let n_eval = (ratio * n as f64).ceil() as usize;
    if n_eval >= n {
        return Err(DataError::Config {
            key: "eval_split_ratio".into(),
            message: format!(
                "{ratio} of {n} examples holds out {n_eval} for evaluation and leaves none to train on"
            ),
        });
    }
    let mut slots: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
    let order = permutation(n, seed);
    let mut take = |i: usize| slots.get_mut(i).and_then(Option::take);
    let eval: Vec<Example> = order[..n_eval].iter().filter_map(|&i| take(i)).collect();
    let train: Vec<Example> = order[n_eval..].iter().filter_map(|&i| take(i)).collect();
    Ok((train, eval))
}
