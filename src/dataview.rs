//! What the Data & template and Batches panes show, computed on the engine
//! thread and sent to the UI as plain data: each example as a conversation, its
//! rendered template text and token count, the prepared rows with the text of
//! every token, and the pre-flight report. Collating rows into batches is cheap
//! and pure, so the UI re-collates when the padding side or batch size changes.

use crate::collate::{CollateOptions, Preparer, Report, Row};
use crate::config::RunConfig;
use crate::data::{Dataset, Example};
use crate::tokenizer::TextTokenizer;
use std::collections::HashMap;

/// The most examples the Data pane lists (rows are prepared for all of them).
const MAX_LISTED: usize = 5000;

#[derive(Debug, Clone)]
pub struct ExampleView {
    /// The example as the data gave it (after the rename map), pretty JSON.
    pub example: String,
    /// The text the chat template made of it (or the text itself, EOS added).
    pub rendered: String,
    pub tokens: usize,
    pub trained: usize,
}

#[derive(Debug, Clone)]
pub struct DataView {
    pub source: String,
    pub format: String,
    pub columns: Vec<String>,
    pub total_records: usize,
    pub skipped: Vec<String>,
    pub eval_examples: usize,
    pub examples: Vec<ExampleView>,
    pub rows: Vec<Row>,
    pub report: Report,
    pub options: CollateOptions,
    pub pad_id: u32,
    /// The display text of every token id that occurs in `rows`.
    pub pieces: HashMap<u32, String>,
    /// Special token ids (shown highlighted).
    pub special_ids: Vec<u32>,
    pub chat_template_source: String,
}

fn example_json(e: &Example) -> String {
    let v = match e {
        Example::Messages(m) => serde_json::json!({ "messages": m }),
        Example::PromptCompletion { prompt, completion } => {
            serde_json::json!({ "prompt": prompt, "completion": completion })
        }
        Example::Text(t) => serde_json::json!({ "text": t }),
    };
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Prepares everything the data panes show.
pub fn build(
    config: &RunConfig,
    tok: &TextTokenizer,
    dataset: &Dataset,
) -> Result<DataView, String> {
    let p = Preparer::new(config, tok).map_err(|e| e.to_string())?;
    let (rows, report) = p.prepare(&dataset.train).map_err(|e| e.to_string())?;
    let mut examples = Vec::new();
    for (i, e) in dataset.train.iter().take(MAX_LISTED).enumerate() {
        let rendered = match (e, &p.template) {
            (Example::Messages(m), Some(t)) => t
                .render(m, false)
                .map(|r| r.text)
                .unwrap_or_else(|e| e.to_string()),
            (Example::PromptCompletion { prompt, completion }, Some(t)) => {
                let all: Vec<serde_json::Value> =
                    prompt.iter().chain(completion).cloned().collect();
                t.render(&all, false)
                    .map(|r| r.text)
                    .unwrap_or_else(|e| e.to_string())
            }
            (Example::Text(t), _) => t.clone(),
            (_, None) => "(no chat template)".into(),
        };
        let t = p.tokenize(e).ok();
        examples.push(ExampleView {
            example: example_json(e),
            rendered,
            tokens: report.lengths.get(i).copied().unwrap_or(0),
            trained: t.map_or(0, |t| {
                t.labels
                    .iter()
                    .filter(|&&l| l != crate::collate::IGNORE)
                    .count()
            }),
        });
    }
    let mut pieces = HashMap::new();
    for r in &rows {
        for &id in &r.input_ids {
            pieces.entry(id).or_insert_with(|| tok.decode(&[id], false));
        }
    }
    pieces
        .entry(p.pad_id)
        .or_insert_with(|| tok.decode(&[p.pad_id], false));
    let s = &tok.specials;
    let special_ids: Vec<u32> = [&s.bos, &s.eos, &s.pad, &s.unk]
        .iter()
        .filter_map(|t| t.as_ref().map(|t| t.id))
        .chain(
            tok.inner
                .get_added_tokens_decoder()
                .iter()
                .filter(|(_, t)| t.special)
                .map(|(id, _)| *id),
        )
        .collect();
    for &id in &special_ids {
        pieces.entry(id).or_insert_with(|| tok.decode(&[id], false));
    }
    Ok(DataView {
        source: dataset.source.clone(),
        format: format!("{:?}", dataset.format),
        columns: dataset.columns.clone(),
        total_records: dataset.total_records,
        skipped: dataset.skipped.iter().map(|b| b.to_string()).collect(),
        eval_examples: dataset.eval.len(),
        examples,
        rows,
        report,
        options: p.opts.clone(),
        pad_id: p.pad_id,
        pieces,
        special_ids,
        chat_template_source: if config.template.chat_template.is_some() {
            "[template] chat_template".into()
        } else {
            tok.chat_template_source.clone()
        },
    })
}
