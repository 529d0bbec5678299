//! The colour view of `ftui inspect`: every token of a batch with what happens
//! to it in training — trained (green), masked (-100, dim), padding (dark),
//! and where a packed sequence starts (a `▏` mark) — then the pre-flight report.

use super::{starts_sequence, token_kinds, Batch, Report, TokenKind};
use crate::tokenizer::TextTokenizer;

const GREEN: &str = "\x1b[32m";
const DIM: &str = "\x1b[2m";
const PAD: &str = "\x1b[90m";
const BOUNDARY: &str = "\x1b[1;35m";
const RESET: &str = "\x1b[0m";

/// How a token shows: its text with whitespace made visible.
fn token_text(tok: &TextTokenizer, id: i64) -> String {
    let t = tok.decode(&[id as u32], false);
    t.replace('\n', "⏎").replace(' ', "·")
}

pub fn print_batch(b: &Batch, tok: &TextTokenizer, pad_id: u32) {
    for (r, ids) in b.input_ids.iter().enumerate() {
        let kinds = token_kinds(b, r, pad_id as i64);
        let mut line = format!("row {r}: ");
        for (i, &id) in ids.iter().enumerate() {
            if starts_sequence(b, r, i, kinds[i]) {
                line.push_str(&format!("{BOUNDARY}▏{RESET}"));
            }
            let colour = match kinds[i] {
                TokenKind::Pad => PAD,
                TokenKind::Masked => DIM,
                TokenKind::Trained => GREEN,
            };
            line.push_str(&format!("{colour}{}{RESET}", token_text(tok, id)));
        }
        println!("{line}");
    }
    println!("{GREEN}trained{RESET}  {DIM}masked (-100){RESET}  {PAD}padding{RESET}  {BOUNDARY}▏{RESET}sequence start");
}

pub fn print_report(r: &Report, d: &crate::data::Dataset) {
    println!();
    println!(
        "dataset   {} ({} records, {} train / {} eval, {} skipped)",
        d.source,
        d.total_records,
        d.train.len(),
        d.eval.len(),
        d.skipped.len()
    );
    let max = r.lengths.iter().copied().max().unwrap_or(0);
    let mean = r.lengths.iter().sum::<usize>() as f64 / r.lengths.len().max(1) as f64;
    println!(
        "tokens    mean {mean:.1}, max {max} per example; {} rows",
        r.rows
    );
    print_histogram(&r.lengths);
    let trained: usize = r.trained_tokens.iter().sum();
    println!(
        "trained   {trained} tokens ({:.1} per example); {} of {} answers end with a trained stop token",
        trained as f64 / r.trained_tokens.len().max(1) as f64,
        r.ends_with_stop,
        r.trained_tokens.len()
    );
    println!(
        "padding   with `{}`{}",
        r.pad_token,
        if r.pad_equals_eos {
            " (same as EOS)"
        } else {
            ""
        }
    );
    for w in &r.warnings {
        println!("\x1b[33mwarning\x1b[0m   {w}");
    }
}

/// A ten-bucket histogram of example lengths.
fn print_histogram(lengths: &[usize]) {
    let max = lengths.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return;
    }
    let width = max.div_ceil(10).max(1);
    let mut buckets = [0usize; 10];
    for &l in lengths {
        buckets[(l.saturating_sub(1) / width).min(9)] += 1;
    }
    let top = buckets.iter().copied().max().unwrap_or(1).max(1);
    for (i, &n) in buckets.iter().enumerate() {
        let bar = "█".repeat((n * 40).div_ceil(top));
        println!("  {:>5}-{:<5} {bar} {n}", i * width + 1, (i + 1) * width);
    }
}
