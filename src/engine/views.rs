//! The plain-data views the UI shows, built on the engine's threads from the
//! objects only the engine holds: [`ModelInfo`] from the loaded model, and
//! [`DataView`] (examples, rendered templates, prepared rows, every token's
//! text, the pre-flight report) from a dataset and a tokenizer.

use super::protocol::{DataView, EngineError, ExampleView, ModelInfo};
use crate::collate::Preparer;
use crate::config::RunConfig;
use crate::data::{Dataset, Example};
use crate::source::LoadedModel;
use crate::tokenizer::TextTokenizer;
use std::collections::HashMap;

/// The most examples the Data pane lists (rows are prepared for all of them).
const MAX_LISTED: usize = 5000;

/// How many examples are rendered between two looks at `should_stop`.
const STOP_CHECK_EVERY: usize = 64;

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

/// Prepares everything the data panes show; `should_stop` is asked between
/// stages and every few examples ([`EngineError::Stopped`] when it says so).
pub fn data_view(
    config: &RunConfig,
    tok: &TextTokenizer,
    dataset: &Dataset,
    should_stop: &dyn Fn() -> bool,
) -> Result<DataView, EngineError> {
    let prepare_error = |e: crate::collate::CollateError| EngineError::Prepare(e.to_string());
    let p = Preparer::new(config, tok).map_err(prepare_error)?;
    let (rows, report) = p.prepare(&dataset.train).map_err(prepare_error)?;
    let mut examples = Vec::new();
    for (i, e) in dataset.train.iter().take(MAX_LISTED).enumerate() {
        if i % STOP_CHECK_EVERY == 0 && should_stop() {
            return Err(EngineError::Stopped);
        }
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

pub fn model_info(m: &LoadedModel) -> ModelInfo {
    let adapters = crate::lora::adapter_names(&m.model);
    let s = &m.tokenizer.specials;
    let text = |t: &Option<crate::tokenizer::SpecialToken>| t.as_ref().map(|t| t.text.clone());
    ModelInfo {
        name: m.name.clone(),
        arch: m.model.config.arch_name().into(),
        device: crate::device::device_name(m.model.device),
        dtype: crate::device::kind_name(m.model.kind).into(),
        parameters: m.model.num_parameters(),
        memory_footprint: m.model.memory_footprint(),
        layers: m.model.config.num_hidden_layers,
        vocab_size: m.model.config.vocab_size,
        chat_template: m.tokenizer.chat_template.is_some(),
        bos: text(&s.bos),
        eos: text(&s.eos),
        pad: text(&s.pad),
        pad_equals_eos: s.pad.is_some()
            && s.pad.as_ref().map(|p| p.id) == s.eos.as_ref().map(|e| e.id),
        adapters,
        active_adapter: m.model.active_adapter.clone(),
        weights: m.model.weight_format(),
    }
}
