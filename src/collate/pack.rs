//! Packing tokenized examples into rows of `max_length`, as trl's `pack_dataset`
//! does (`trl/data_utils.py`):
//! - `bfd`: best-fit-decreasing bins; each example truncated to the row length,
//!   never split; longest examples first (a stable sort), each into the fullest
//!   bin it still fits (a segment tree over free space, bins with the same space
//!   served first-in first-out);
//! - `wrapped`: every example concatenated, then cut every `max_length` tokens.

use std::collections::{HashMap, VecDeque};

/// One training row: token ids, labels and the lengths of the sequences in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    /// Lengths of the whole examples packed in this row (one entry when unpacked;
    /// empty for `wrapped` rows, whose boundaries are not kept, as in trl).
    pub seq_lengths: Vec<usize>,
    /// Which examples the row holds, in order (for display).
    pub sources: Vec<usize>,
}

/// trl's `_SegmentTree`: the smallest free space >= a length, in O(log n).
struct SegmentTree {
    size: usize,
    tree: Vec<usize>,
}

impl SegmentTree {
    fn new(maxval: usize) -> Self {
        let size = (maxval.max(1)).next_power_of_two();
        SegmentTree {
            size,
            tree: vec![0; 2 * size],
        }
    }

    fn set(&mut self, val: usize, present: bool) {
        let mut i = self.size + val - 1;
        self.tree[i] = if present { val } else { 0 };
        while i > 1 {
            i >>= 1;
            self.tree[i] = self.tree[2 * i].max(self.tree[2 * i + 1]);
        }
    }

    fn search(&self, val: usize) -> usize {
        let mut i = 1;
        while i < self.size {
            i = if self.tree[2 * i] >= val {
                2 * i
            } else {
                2 * i + 1
            };
        }
        self.tree[i]
    }
}

/// Best-fit-decreasing packing of `(input_ids, labels)` examples.
pub fn pack_bfd(examples: &[(Vec<u32>, Vec<i64>)], seq_length: usize) -> Vec<Row> {
    // Truncate, drop empty, remember the original index.
    let items: Vec<(usize, usize)> = examples
        .iter()
        .enumerate()
        .filter(|(_, (ids, _))| !ids.is_empty())
        .map(|(i, (ids, _))| (ids.len().min(seq_length), i))
        .collect();
    let mut order = items.clone();
    order.sort_by_key(|&(len, _)| std::cmp::Reverse(len)); // stable, like Arrow's sort
    let mut tree = SegmentTree::new(seq_length);
    tree.set(seq_length, true);
    let mut space_to_bins: HashMap<usize, VecDeque<usize>> = HashMap::new();
    let mut bins: Vec<(Vec<usize>, usize)> = Vec::new();
    for (length, idx) in order {
        let space = tree.search(length);
        let bin = if space < seq_length {
            let queue = space_to_bins.entry(space).or_default();
            let b = queue.pop_front().unwrap_or_default();
            if queue.is_empty() {
                tree.set(space, false);
            }
            b
        } else {
            bins.push((Vec::new(), 0));
            bins.len() - 1
        };
        bins[bin].0.push(idx);
        bins[bin].1 += length;
        let left = space - length;
        space_to_bins.entry(left).or_default().push_back(bin);
        if left > 0 {
            tree.set(left, true);
        }
    }
    bins.into_iter()
        .map(|(ids, _)| {
            let mut row = Row {
                input_ids: Vec::new(),
                labels: Vec::new(),
                seq_lengths: Vec::new(),
                sources: Vec::new(),
            };
            for i in ids {
                let (x, y) = &examples[i];
                let n = x.len().min(seq_length);
                row.input_ids.extend_from_slice(&x[..n]);
                row.labels.extend_from_slice(&y[..n]);
                row.seq_lengths.push(n);
                row.sources.push(i);
            }
            row
        })
        .collect()
}

/// Concatenates every example and cuts the stream every `seq_length` tokens.
pub fn pack_wrapped(examples: &[(Vec<u32>, Vec<i64>)], seq_length: usize) -> Vec<Row> {
    let ids: Vec<u32> = examples.iter().flat_map(|e| e.0.iter().copied()).collect();
    let labels: Vec<i64> = examples.iter().flat_map(|e| e.1.iter().copied()).collect();
    // Which example each token came from, for display.
    let owner: Vec<usize> = examples
        .iter()
        .enumerate()
        .flat_map(|(i, e)| std::iter::repeat_n(i, e.0.len()))
        .collect();
    ids.chunks(seq_length.max(1))
        .zip(labels.chunks(seq_length.max(1)))
        .zip(owner.chunks(seq_length.max(1)))
        .map(|((x, y), o)| {
            let mut sources: Vec<usize> = o.to_vec();
            sources.dedup();
            Row {
                input_ids: x.to_vec(),
                labels: y.to_vec(),
                seq_lengths: Vec::new(),
                sources,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32]) -> (Vec<u32>, Vec<i64>) {
        (ids.to_vec(), ids.iter().map(|&i| i as i64).collect())
    }

    #[test]
    fn bfd_matches_trls_documented_example() {
        // trl's pack_dataset docstring: seq_length 4.
        let rows = pack_bfd(
            &[
                ex(&[1, 2, 3, 4, 5]),
                ex(&[6, 7]),
                ex(&[8, 9, 10]),
                ex(&[11]),
            ],
            4,
        );
        let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.input_ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2, 3, 4], vec![8, 9, 10, 11], vec![6, 7]]);
        let lens: Vec<Vec<usize>> = rows.iter().map(|r| r.seq_lengths.clone()).collect();
        assert_eq!(lens, vec![vec![4], vec![3, 1], vec![2]]);
    }

    #[test]
    fn bfd_never_splits_and_never_overflows() {
        let mut examples = Vec::new();
        let mut x = 12345u64;
        for _ in 0..300 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = 1 + (x >> 33) as usize % 40;
            examples.push(ex(&vec![7; n]));
        }
        let rows = pack_bfd(&examples, 64);
        let mut seen: Vec<usize> = rows.iter().flat_map(|r| r.sources.clone()).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..300).collect::<Vec<_>>(),
            "every example exactly once"
        );
        for r in &rows {
            assert!(r.input_ids.len() <= 64);
            assert_eq!(r.seq_lengths.iter().sum::<usize>(), r.input_ids.len());
            for (len, src) in r.seq_lengths.iter().zip(&r.sources) {
                assert_eq!(*len, examples[*src].0.len(), "an example was split");
            }
        }
    }

    #[test]
    fn wrapped_cuts_every_seq_length() {
        let rows = pack_wrapped(&[ex(&[1, 2, 3]), ex(&[4, 5, 6, 7, 8])], 3);
        let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.input_ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8]]);
    }
}
