//! From examples to training batches, as trl's `SFTTrainer` prepares them
//! (`_prepare_dataset` and `DataCollatorForLanguageModeling` in
//! `trl/trainer/sft_trainer.py`):
//! 1. tokenize: conversations through the chat template (no special tokens added
//!    again), plain text with EOS appended and the tokenizer's special tokens;
//! 2. labels: the ids, with `-100` where a mask says "not trained": the prompt
//!    (`completion_only_loss`, the prompt being the common prefix of the prompt
//!    rendered with its generation prompt and the whole conversation) and
//!    everything outside `{% generation %}` blocks (`assistant_only_loss`);
//!    spans come from the template rendering, mapped to tokens through offsets;
//! 3. truncate to `max_length` (keep the start) and drop examples left with no
//!    trained token — unless packing, which truncates each example itself;
//! 4. pack (`bfd` or `wrapped`, see [`pack`]);
//! 5. collate: right padding with an attention mask, or padding-free (one
//!    flattened row with restarting position ids, the first label of each
//!    sequence masked).
//!
//! A [`Report`] says what happened on the way: lengths, truncation, dropped
//! examples, trained tokens, and whether each answer ends with a trained stop token.

pub mod pack;
pub mod view;

pub use pack::Row;

use crate::config::{PackingStrategy, PaddingSide, RunConfig};
use crate::data::Example;
use crate::template::ChatTemplate;
use crate::tokenizer::TextTokenizer;

/// The label of a token that is not trained.
pub const IGNORE: i64 = -100;

/// Examples per packing batch (`datasets.map`'s default batch size, which trl uses).
const PACK_BATCH: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct CollateOptions {
    pub max_length: usize,
    pub packing: bool,
    pub packing_strategy: PackingStrategy,
    /// Flatten each batch into one row (trl turns this on for `bfd` packing).
    pub padding_free: bool,
    pub pad_to_multiple_of: Option<usize>,
    /// `None`: on for prompt/completion examples.
    pub completion_only_loss: Option<bool>,
    pub assistant_only_loss: bool,
    pub padding_side: PaddingSide,
    pub batch_size: usize,
}

impl CollateOptions {
    pub fn from_config(c: &RunConfig) -> Self {
        let t = &c.training;
        CollateOptions {
            max_length: t.max_length,
            packing: t.packing,
            packing_strategy: t.packing_strategy,
            padding_free: t.padding_free
                || (t.packing && t.packing_strategy == PackingStrategy::Bfd),
            pad_to_multiple_of: t.pad_to_multiple_of,
            completion_only_loss: t.completion_only_loss,
            assistant_only_loss: t.assistant_only_loss,
            padding_side: c.template.padding_side,
            batch_size: t.per_device_train_batch_size,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollateError {
    #[error("example {index}: {message}")]
    Example { index: usize, message: String },
    #[error("{0}")]
    Setup(String),
}

/// One tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenized {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

/// What preparation saw, for the pre-flight report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    pub examples: usize,
    /// Token length of each example before truncation.
    pub lengths: Vec<usize>,
    pub truncated: usize,
    /// Examples dropped because no token was left to train on.
    pub dropped_no_labels: usize,
    /// Trained tokens of each kept example.
    pub trained_tokens: Vec<usize>,
    /// Kept examples whose answer ends with a trained stop token (EOS or end of turn).
    pub ends_with_stop: usize,
    /// Examples that start with two BOS tokens.
    pub doubled_bos: usize,
    pub rows: usize,
    pub pad_token: String,
    pub pad_equals_eos: bool,
    pub warnings: Vec<String>,
}

/// A collated batch, as `ftui inspect --json` prints it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Batch {
    pub input_ids: Vec<Vec<i64>>,
    pub labels: Vec<Vec<i64>>,
    pub attention_mask: Option<Vec<Vec<i64>>>,
    pub position_ids: Option<Vec<Vec<i64>>>,
}

/// Tokenizes, labels, truncates and packs; holds the tokenizer's view of padding.
pub struct Preparer<'a> {
    pub tok: &'a TextTokenizer,
    pub template: Option<ChatTemplate>,
    pub pad_id: u32,
    pub opts: CollateOptions,
}

/// The padding token id: `[template] pad_token` (`"unk"`, `"eos"`, or a token in
/// the vocabulary), else the tokenizer's PAD, else EOS (as trl does).
pub fn pad_id(c: &RunConfig, tok: &TextTokenizer) -> Result<(u32, String), CollateError> {
    let s = &tok.specials;
    let named = |t: &Option<crate::tokenizer::SpecialToken>, what: &str| {
        t.as_ref().map(|t| (t.id, t.text.clone())).ok_or_else(|| {
            CollateError::Setup(format!(
                "[template] pad_token = \"{what}\": the tokenizer has no {what} token"
            ))
        })
    };
    match c.template.pad_token.as_deref() {
        Some("unk") => named(&s.unk, "unk"),
        Some("eos") => named(&s.eos, "eos"),
        Some(text) => tok
            .inner
            .token_to_id(text)
            .map(|id| (id, text.to_string()))
            .ok_or_else(|| {
                CollateError::Setup(format!(
                    "[template] pad_token: `{text}` is not in the vocabulary; use \"unk\", \"eos\" or an existing token (a new token needs embed_tokens and lm_head in modules_to_save)"
                ))
            }),
        None => s
            .pad
            .as_ref()
            .or(s.eos.as_ref())
            .map(|t| (t.id, t.text.clone()))
            .ok_or_else(|| CollateError::Setup("the tokenizer has neither a PAD nor an EOS token; set [template] pad_token".into())),
    }
}

/// Token index containing byte `pos` of the text (transformers' `char_to_token`).
fn token_at(offsets: &[(usize, usize)], pos: usize) -> Option<usize> {
    offsets.iter().position(|&(s, e)| s <= pos && pos < e)
}

impl<'a> Preparer<'a> {
    pub fn new(c: &RunConfig, tok: &'a TextTokenizer) -> Result<Self, CollateError> {
        Ok(Preparer {
            tok,
            template: tok
                .chat_template_with(c.template.chat_template.as_deref())
                .map_err(CollateError::Setup)?,
            pad_id: pad_id(c, tok)?.0,
            opts: CollateOptions::from_config(c),
        })
    }

    fn template(&self) -> Result<&ChatTemplate, String> {
        self.template.as_ref().ok_or_else(|| {
            "the tokenizer has no chat template; set [template] chat_template (a file or chatml, llama3, phi3, mistral, zephyr)".to_string()
        })
    }

    /// Renders and tokenizes a conversation as `apply_chat_template(tokenize=True)`;
    /// with `assistant_mask`, also the tokens inside `{% generation %}` blocks.
    fn encode_chat(
        &self,
        messages: &[serde_json::Value],
        generation_prompt: bool,
        assistant_mask: bool,
    ) -> Result<(Vec<u32>, Option<Vec<bool>>), String> {
        let t = self.template()?;
        if assistant_mask && !t.has_generation_blocks() {
            return Err("assistant_only_loss needs a chat template with {% generation %} blocks around the assistant's text; this template has none".into());
        }
        let r = t
            .render(messages, generation_prompt)
            .map_err(|e| e.to_string())?;
        let enc = self
            .tok
            .inner
            .encode(r.text.as_str(), false)
            .map_err(|e| e.to_string())?;
        let ids = enc.get_ids().to_vec();
        let mask = assistant_mask.then(|| {
            let offsets = enc.get_offsets();
            let mut m = vec![false; ids.len()];
            for &(start, end) in &r.assistant_spans {
                if end <= start {
                    continue;
                }
                if let (Some(a), Some(b)) = (token_at(offsets, start), token_at(offsets, end - 1)) {
                    m[a..=b].iter_mut().for_each(|x| *x = true);
                }
            }
            m
        });
        Ok((ids, mask))
    }

    /// Tokens and labels of one example (before truncation).
    pub fn tokenize(&self, example: &Example) -> Result<Tokenized, String> {
        let assistant = self.opts.assistant_only_loss;
        let (ids, masks): (Vec<u32>, Vec<Vec<bool>>) = match example {
            Example::Messages(m) => {
                let (ids, mask) = self.encode_chat(m, false, assistant)?;
                (ids, mask.into_iter().collect())
            }
            Example::PromptCompletion { prompt, completion } => {
                let (prompt_ids, _) = self.encode_chat(prompt, true, false)?;
                let all: Vec<serde_json::Value> =
                    prompt.iter().chain(completion).cloned().collect();
                let (ids, mask) = self.encode_chat(&all, false, assistant)?;
                let prefix = prompt_ids
                    .iter()
                    .zip(&ids)
                    .take_while(|(a, b)| a == b)
                    .count();
                let mut masks: Vec<Vec<bool>> = mask.into_iter().collect();
                if self.opts.completion_only_loss.unwrap_or(true) {
                    masks.push((0..ids.len()).map(|i| i >= prefix).collect());
                }
                (ids, masks)
            }
            Example::Text(text) => {
                let eos = self
                    .tok
                    .specials
                    .eos
                    .as_ref()
                    .map(|t| t.text.as_str())
                    .unwrap_or("");
                let text = if text.ends_with(eos) {
                    text.clone()
                } else {
                    format!("{text}{eos}")
                };
                (self.tok.encode(&text, true)?, Vec::new())
            }
        };
        if assistant && masks.first().is_some_and(|m| !m.contains(&true)) {
            return Err("assistant_only_loss: the example has no assistant tokens (is {% generation %} missing from the template?)".into());
        }
        let labels = ids
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if masks.iter().all(|m| m[i]) {
                    t as i64
                } else {
                    IGNORE
                }
            })
            .collect();
        Ok(Tokenized {
            input_ids: ids,
            labels,
        })
    }

    /// Prepares every example into rows, with the report.
    pub fn prepare(&self, examples: &[Example]) -> Result<(Vec<Row>, Report), CollateError> {
        let s = &self.tok.specials;
        let mut report = Report {
            examples: examples.len(),
            pad_token: self.tok.inner.id_to_token(self.pad_id).unwrap_or_default(),
            pad_equals_eos: s.eos.as_ref().is_some_and(|e| e.id == self.pad_id),
            ..Default::default()
        };
        let mut kept: Vec<(Vec<u32>, Vec<i64>)> = Vec::new();
        let mut kept_index: Vec<usize> = Vec::new();
        let bos = s.bos.as_ref().map(|b| b.id);
        for (index, ex) in examples.iter().enumerate() {
            let t = self
                .tokenize(ex)
                .map_err(|message| CollateError::Example { index, message })?;
            report.lengths.push(t.input_ids.len());
            if bos.is_some()
                && t.input_ids.len() > 1
                && t.input_ids[0] == t.input_ids[1]
                && Some(t.input_ids[0]) == bos
            {
                report.doubled_bos += 1;
            }
            let (mut ids, mut labels) = (t.input_ids, t.labels);
            if ids.len() > self.opts.max_length {
                report.truncated += 1;
                if !self.opts.packing {
                    ids.truncate(self.opts.max_length);
                    labels.truncate(self.opts.max_length);
                }
            }
            let visible = labels.len().min(self.opts.max_length);
            let trained: Vec<&i64> = labels[..visible].iter().filter(|&&l| l != IGNORE).collect();
            // trl drops examples left with nothing to train, except when packing
            // (they still fill rows there).
            if trained.is_empty() && !self.opts.packing {
                report.dropped_no_labels += 1;
                continue;
            }
            // The answer's stop token (EOS or end of turn) is trained; a template may
            // add a newline after it, so it need not be the very last label.
            if trained.iter().any(|&&l| s.stop_ids.contains(&(l as u32))) {
                report.ends_with_stop += 1;
            }
            report.trained_tokens.push(trained.len());
            kept.push((ids, labels));
            kept_index.push(index);
        }
        let mut rows = if !self.opts.packing {
            kept.into_iter()
                .map(|(ids, labels)| Row {
                    seq_lengths: vec![ids.len()],
                    input_ids: ids,
                    labels,
                    sources: Vec::new(),
                })
                .collect()
        } else {
            // trl packs in `datasets.map` batches of 1000 examples: rows never mix
            // examples from two batches, and each batch ends its own last row.
            let mut rows = Vec::new();
            for (c, chunk) in kept.chunks(PACK_BATCH).enumerate() {
                let mut packed = match self.opts.packing_strategy {
                    PackingStrategy::Bfd => pack::pack_bfd(chunk, self.opts.max_length),
                    PackingStrategy::Wrapped => pack::pack_wrapped(chunk, self.opts.max_length),
                };
                for r in &mut packed {
                    r.sources.iter_mut().for_each(|s| *s += c * PACK_BATCH);
                }
                rows.extend(packed);
            }
            rows
        };
        // Sources refer to kept examples; make them refer to the input.
        for (i, r) in rows.iter_mut().enumerate() {
            if r.sources.is_empty() {
                r.sources = vec![kept_index[i]];
            } else {
                r.sources.iter_mut().for_each(|s| *s = kept_index[*s]);
            }
        }
        report.rows = rows.len();
        report.warnings = warnings(&report, s.eos.is_some());
        Ok((rows, report))
    }

    /// Collates rows into one batch.
    pub fn collate(&self, rows: &[Row]) -> Batch {
        collate(rows, self.pad_id as i64, &self.opts)
    }
}

fn warnings(r: &Report, has_eos: bool) -> Vec<String> {
    let mut w = Vec::new();
    if r.pad_equals_eos {
        w.push(format!(
            "PAD equals EOS ({}): ftui builds labels before padding, so EOS stays trained, but generation and older collators cannot tell them apart; [template] pad_token = \"unk\" is the book's remedy",
            r.pad_token
        ));
    }
    let kept = r.trained_tokens.len();
    if has_eos && r.ends_with_stop < kept {
        w.push(format!(
            "{} of {kept} examples do not end with a trained stop token: the model may not learn to stop (truncated answers, or a template without an end-of-turn token)",
            kept - r.ends_with_stop
        ));
    }
    if r.truncated > 0 {
        w.push(format!(
            "{} of {} examples are longer than max_length and were truncated",
            r.truncated, r.examples
        ));
    }
    if r.dropped_no_labels > 0 {
        w.push(format!(
            "{} examples had no trained token left and were dropped",
            r.dropped_no_labels
        ));
    }
    if r.doubled_bos > 0 {
        w.push(format!("{} examples start with two BOS tokens (the text already has one and the tokenizer adds another)", r.doubled_bos));
    }
    w
}

/// What training does with a token of a collated batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Its label is itself: the loss includes predicting it.
    Trained,
    /// Label -100: seen as context, not trained.
    Masked,
    /// Padding: ignored.
    Pad,
}

/// The kind of every token of row `row` of a batch. Padding-free rows are padded
/// at the end only (`pad_to_multiple_of`): the trailing run of pad tokens at
/// position 0.
pub fn token_kinds(b: &Batch, row: usize, pad_id: i64) -> Vec<TokenKind> {
    let ids = &b.input_ids[row];
    let mask = b.attention_mask.as_ref().map(|m| &m[row]);
    let tail = b.position_ids.as_ref().map_or(ids.len(), |p| {
        let p = &p[row];
        let mut t = ids.len();
        while t > 1 && p[t - 1] == 0 && p[t - 2] == 0 && ids[t - 1] == pad_id {
            t -= 1;
        }
        t
    });
    (0..ids.len())
        .map(|i| {
            if mask.is_some_and(|m| m[i] == 0) || i >= tail {
                TokenKind::Pad
            } else if b.labels[row][i] == IGNORE {
                TokenKind::Masked
            } else {
                TokenKind::Trained
            }
        })
        .collect()
}

/// Whether token `i` of row `row` starts a packed sequence (padding-free rows).
pub fn starts_sequence(b: &Batch, row: usize, i: usize, kind: TokenKind) -> bool {
    b.attention_mask.is_none()
        && i > 0
        && kind != TokenKind::Pad
        && b.position_ids.as_ref().is_some_and(|p| p[row][i] == 0)
}

fn round_up(n: usize, multiple: Option<usize>) -> usize {
    match multiple {
        Some(m) if m > 1 => n.div_ceil(m) * m,
        _ => n,
    }
}

/// Position ids of a row: restarting at each packed sequence, else 0..n.
fn row_positions(r: &Row) -> Vec<i64> {
    if r.seq_lengths.is_empty() {
        return (0..r.input_ids.len() as i64).collect();
    }
    r.seq_lengths.iter().flat_map(|&n| 0..n as i64).collect()
}

/// trl's `DataCollatorForLanguageModeling`, with ftui's choice of padding side.
pub fn collate(rows: &[Row], pad_id: i64, o: &CollateOptions) -> Batch {
    let as_i64 = |ids: &[u32]| ids.iter().map(|&t| t as i64).collect::<Vec<_>>();
    if o.padding_free {
        let mut ids: Vec<i64> = rows.iter().flat_map(|r| as_i64(&r.input_ids)).collect();
        let mut labels: Vec<i64> = rows.iter().flat_map(|r| r.labels.clone()).collect();
        let mut pos: Vec<i64> = rows.iter().flat_map(row_positions).collect();
        let n = round_up(ids.len(), o.pad_to_multiple_of);
        ids.resize(n, pad_id);
        labels.resize(n, IGNORE);
        pos.resize(n, 0);
        for (l, p) in labels.iter_mut().zip(&pos) {
            if *p == 0 {
                *l = IGNORE;
            }
        }
        return Batch {
            input_ids: vec![ids],
            labels: vec![labels],
            attention_mask: None,
            position_ids: Some(vec![pos]),
        };
    }
    let width = round_up(
        rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0),
        o.pad_to_multiple_of,
    );
    let mut b = Batch {
        input_ids: Vec::new(),
        labels: Vec::new(),
        attention_mask: Some(Vec::new()),
        // Left-padded rows need positions that start at their first real token
        // (as generate computes them); right padding leaves 0..n as is.
        position_ids: (o.padding_side == PaddingSide::Left).then(Vec::new),
    };
    for r in rows {
        let pad = width - r.input_ids.len();
        let (mut ids, mut labels, mut mask) = (
            as_i64(&r.input_ids),
            r.labels.clone(),
            vec![1i64; r.input_ids.len()],
        );
        match o.padding_side {
            PaddingSide::Right => {
                ids.resize(width, pad_id);
                labels.resize(width, IGNORE);
                mask.resize(width, 0);
            }
            PaddingSide::Left => {
                let lead =
                    |v: Vec<i64>, x: i64| std::iter::repeat_n(x, pad).chain(v).collect::<Vec<_>>();
                ids = lead(ids, pad_id);
                labels = lead(labels, IGNORE);
                mask = lead(mask, 0);
            }
        }
        if let Some(p) = &mut b.position_ids {
            let mut seen = 0i64;
            p.push(
                mask.iter()
                    .map(|&m| {
                        seen += m;
                        (seen - 1).max(0)
                    })
                    .collect(),
            );
        }
        b.input_ids.push(ids);
        b.labels.push(labels);
        if let Some(m) = &mut b.attention_mask {
            m.push(mask);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(padding_free: bool) -> CollateOptions {
        CollateOptions {
            max_length: 1024,
            packing: false,
            packing_strategy: PackingStrategy::Bfd,
            padding_free,
            pad_to_multiple_of: None,
            completion_only_loss: None,
            assistant_only_loss: false,
            padding_side: PaddingSide::Right,
            batch_size: 2,
        }
    }

    fn row(ids: &[u32], labels: &[i64]) -> Row {
        Row {
            input_ids: ids.to_vec(),
            labels: labels.to_vec(),
            seq_lengths: vec![ids.len()],
            sources: vec![0],
        }
    }

    #[test]
    fn padding_matches_trls_documented_example() {
        let rows = [row(&[1, 2, 3], &[-100, 2, 3]), row(&[4, 5], &[-100, 5])];
        let b = collate(&rows, 0, &opts(false));
        assert_eq!(b.input_ids, vec![vec![1, 2, 3], vec![4, 5, 0]]);
        assert_eq!(b.attention_mask, Some(vec![vec![1, 1, 1], vec![1, 1, 0]]));
        assert_eq!(b.labels, vec![vec![-100, 2, 3], vec![-100, 5, -100]]);
    }

    #[test]
    fn padding_free_matches_trls_documented_example() {
        let rows = [row(&[1, 2, 3], &[-100, 2, 3]), row(&[4, 5], &[-100, 5])];
        let b = collate(&rows, 0, &opts(true));
        assert_eq!(b.input_ids, vec![vec![1, 2, 3, 4, 5]]);
        assert_eq!(b.position_ids, Some(vec![vec![0, 1, 2, 0, 1]]));
        assert_eq!(b.labels, vec![vec![-100, 2, 3, -100, 5]]);
        assert_eq!(b.attention_mask, None);
    }

    #[test]
    fn pad_to_multiple_and_left_padding() {
        let mut o = opts(false);
        o.pad_to_multiple_of = Some(4);
        o.padding_side = PaddingSide::Left;
        let b = collate(&[row(&[1, 2, 3], &[1, 2, 3]), row(&[4], &[4])], 9, &o);
        assert_eq!(b.input_ids, vec![vec![9, 1, 2, 3], vec![9, 9, 9, 4]]);
        assert_eq!(b.labels[1], vec![-100, -100, -100, 4]);
        assert_eq!(b.attention_mask.expect("mask")[1], vec![0, 0, 0, 1]);
        assert_eq!(b.position_ids.expect("positions")[0], vec![0, 0, 1, 2]);
    }
}
