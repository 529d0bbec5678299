//! What a run trains on: examples in an order per epoch, collated a
//! micro-batch at a time. The order is trl's: epoch `e` visits the rows in
//! `randperm(n)` from a generator seeded `seed + e` (accelerate's seedable
//! sampler), cut into consecutive micro-batches.

use super::step::MicroBatch;
use super::TrainError;
use crate::collate::{Preparer, Row};
use tch::{Device, Kind, Tensor};

pub trait Batches {
    /// Rows (examples, or packed rows) per epoch.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The order rows are visited in during `epoch`.
    fn order(&self, epoch: usize) -> Vec<usize>;
    /// One micro-batch of the given rows.
    fn collate(&self, rows: &[usize]) -> Result<MicroBatch, TrainError>;
}

/// Prepared rows, shuffled per epoch and collated as trl collates them.
pub struct ShuffledRows<'a> {
    pub rows: Vec<Row>,
    pub preparer: &'a Preparer<'a>,
    pub seed: u64,
    /// `false` keeps the file order (evaluation).
    pub shuffle: bool,
    pub device: Device,
}

/// `torch.randperm(n)` after `torch.manual_seed(seed)`.
pub fn randperm(n: usize, seed: u64) -> Result<Vec<usize>, TrainError> {
    tch::manual_seed(seed as i64);
    let perm = Tensor::f_randperm(n as i64, (Kind::Int64, Device::Cpu))?;
    Ok(Vec::<i64>::try_from(&perm)?
        .into_iter()
        .map(|i| i as usize)
        .collect())
}

impl Batches for ShuffledRows<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn order(&self, epoch: usize) -> Vec<usize> {
        if self.shuffle {
            if let Ok(order) = randperm(self.rows.len(), self.seed + epoch as u64) {
                return order;
            }
        }
        (0..self.rows.len()).collect()
    }

    fn collate(&self, rows: &[usize]) -> Result<MicroBatch, TrainError> {
        let picked: Vec<Row> = rows
            .iter()
            .filter_map(|&i| self.rows.get(i).cloned())
            .collect();
        let b = self.preparer.collate(&picked);
        Ok(MicroBatch::from_rows(
            &b.input_ids,
            &b.labels,
            b.attention_mask.as_deref(),
            b.position_ids.as_deref(),
            self.device,
        )?)
    }
}

/// Micro-batches collated beforehand, visited in order (one "row" each).
pub struct FixedBatches(pub Vec<MicroBatch>);

impl Batches for FixedBatches {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn order(&self, _epoch: usize) -> Vec<usize> {
        (0..self.0.len()).collect()
    }

    fn collate(&self, rows: &[usize]) -> Result<MicroBatch, TrainError> {
        match rows {
            [i] => self
                .0
                .get(*i)
                .map(MicroBatch::shallow_clone)
                .ok_or_else(|| TrainError::Data(format!("no micro-batch {i}"))),
            _ => Err(TrainError::Data(
                "pre-collated micro-batches cannot be regrouped: use a batch size of 1".into(),
            )),
        }
    }
}
