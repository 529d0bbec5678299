//! The key/value cache for generation: each layer's keys and values of the
//! tokens seen so far, so a decoding step only runs the new token.

use crate::torch::TchResult;
use tch::Tensor;

#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: i64,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        KvCache {
            layers: (0..num_layers).map(|_| None).collect(),
            len: 0,
        }
    }

    /// Tokens cached so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends layer `i`'s new keys and values `[B, KvH, T, D]` and returns the
    /// full keys and values.
    pub fn append(&mut self, i: usize, k: &Tensor, v: &Tensor) -> TchResult<(Tensor, Tensor)> {
        let full = match &self.layers[i] {
            Some((pk, pv)) => (Tensor::f_cat(&[pk, k], 2)?, Tensor::f_cat(&[pv, v], 2)?),
            None => (k.shallow_clone(), v.shallow_clone()),
        };
        self.layers[i] = Some((full.0.shallow_clone(), full.1.shallow_clone()));
        Ok(full)
    }

    /// Marks `t` more tokens as cached (after every layer appended them).
    pub fn advance(&mut self, t: i64) {
        self.len += t;
    }
}
