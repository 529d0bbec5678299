//! The data thread: reads datasets and prepares them for the Data and Batches
//! panes, off the model's thread, so those panes stay live while the model
//! loads or generates. Only the newest request matters: a new one replaces
//! the one waiting and stops the one running ([`LatestWins`]).
//!
//! It keeps the last dataset read (while `[data]` is unchanged) and the last
//! tokenizer (while `[model] source` is unchanged), so a change of masking or
//! packing only re-prepares.

use super::jobs::{EventSink, LatestWins};
use super::protocol::{EngineError, JobId, JobOutput, Task};
use super::views::data_view;
use super::worker::run_job;
use crate::config::{DataConfig, RunConfig};
use crate::data::Dataset;
use crate::source::{load_tokenizer, ModelSource};
use crate::tokenizer::TextTokenizer;
use std::path::Path;
use std::sync::Arc;

pub(crate) type DataQueue = LatestWins<Box<RunConfig>>;

pub(crate) struct DataWorker {
    sink: EventSink,
    queue: Arc<DataQueue>,
    dataset: Option<(DataConfig, Dataset)>,
    tokenizer: Option<(String, TextTokenizer)>,
}

impl DataWorker {
    pub(crate) fn new(sink: EventSink, queue: Arc<DataQueue>) -> Self {
        DataWorker {
            sink,
            queue,
            dataset: None,
            tokenizer: None,
        }
    }

    pub(crate) fn run(mut self) {
        while let Some(q) = self.queue.next() {
            let sink = self.sink.clone();
            let control = q.control.clone();
            let outcome = run_job(&sink, q.job, Task::PrepareData, &control, || {
                self.prepare(q.job, &q.payload, &|| control.should_stop())
            });
            let outcome = match self.queue.done(q.job) {
                Some(by) => Err(EngineError::Superseded { by }),
                None => outcome,
            };
            sink.finish(q.job, outcome);
        }
    }

    fn prepare(
        &mut self,
        job: JobId,
        config: &RunConfig,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<JobOutput, EngineError> {
        let data_cfg = config.data.as_ref().ok_or(EngineError::NoDataSection)?;
        let sink = &self.sink;
        let dataset = cached(&mut self.dataset, data_cfg, || {
            let local = Path::new(data_cfg.source.trim()).exists();
            crate::data::load_dataset(data_cfg, &mut sink.progress(job, local))
                .map_err(|e| EngineError::Data(e.to_string()))
        })?;
        if should_stop() {
            return Err(EngineError::Stopped);
        }
        let source = &config.model.source;
        let tok = cached(&mut self.tokenizer, source, || {
            let src = ModelSource::parse(source)
                .map_err(|e| EngineError::ModelNotFound(e.to_string()))?;
            let local = !matches!(src, ModelSource::Hub(_));
            load_tokenizer(&src, &mut sink.progress(job, local))
                .map_err(|e| EngineError::Tokenizer(e.to_string()))
        })?;
        let view = data_view(config, tok, dataset, should_stop)?;
        Ok(JobOutput::Data(Box::new(view)))
    }
}

/// The value kept in `slot` for `key`, made anew when the key changed.
fn cached<'a, K: PartialEq + Clone, V>(
    slot: &'a mut Option<(K, V)>,
    key: &K,
    make: impl FnOnce() -> Result<V, EngineError>,
) -> Result<&'a V, EngineError> {
    let value = match slot.take() {
        Some((k, v)) if k == *key => v,
        stale => {
            // Drop the old value before making the new one: both may be large.
            drop(stale);
            make()?
        }
    };
    Ok(&slot.insert((key.clone(), value)).1)
}
