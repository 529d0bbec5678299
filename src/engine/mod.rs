//! The engine: every request becomes a job with its own id, control handle
//! and events. Two threads do the work: the model's thread owns every
//! libtorch object (model, adapters) and runs model jobs in order; the data
//! thread prepares datasets, newest request first. The workbench and the
//! headless CLI drive the same [`Engine`] through [`protocol`].
//!
//! A request that would change the model (load, unload, adapters) is refused
//! with [`EngineError::ModelBusy`] while a job that needs the model unchanged
//! (generate, score) waits or runs.

mod jobs;
mod prepare;
pub mod protocol;
pub mod views;
mod worker;

pub use jobs::JobControl;
pub use protocol::*;

use crossbeam_channel::{unbounded, Receiver, Sender};
use jobs::{EventSink, JobTable, Queued};
use prepare::{DataQueue, DataWorker};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use worker::{ModelJob, ModelWorker};

/// The engine's threads are named with this prefix.
const ENGINE_THREAD: &str = "ftui-engine";

/// Keeps a panic on an engine thread out of the terminal: the engine turns it
/// into a failed job (one line, in the log and the UI); panics elsewhere go to
/// the hook installed before.
pub fn quiet_engine_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with(ENGINE_THREAD))
        {
            log::error!("engine panic: {info}");
        } else {
            previous(info);
        }
    }));
}

pub struct Engine {
    sink: EventSink,
    /// `None` once the engine is being dropped: the model's thread then ends.
    model_jobs: Option<Sender<ModelJob>>,
    data_jobs: Arc<DataQueue>,
    events: Receiver<Event>,
    threads: Vec<JoinHandle<()>>,
}

impl Engine {
    pub fn start() -> Self {
        let (event_tx, events) = unbounded();
        let sink = EventSink::new(event_tx, Arc::new(Mutex::new(JobTable::default())));
        let (model_jobs, model_rx) = unbounded();
        let data_jobs = Arc::new(DataQueue::default());
        let model = ModelWorker::new(sink.clone());
        let data = DataWorker::new(sink.clone(), data_jobs.clone());
        let threads = [
            std::thread::Builder::new()
                .name(ENGINE_THREAD.into())
                .spawn(move || model.run(model_rx)),
            std::thread::Builder::new()
                .name(format!("{ENGINE_THREAD}-data"))
                .spawn(move || data.run()),
        ]
        .into_iter()
        .filter_map(Result::ok)
        .collect();
        Engine {
            sink,
            model_jobs: Some(model_jobs),
            data_jobs,
            events,
            threads,
        }
    }

    /// Every job's events, in the order they happened per job.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Whether a job is waiting or running.
    pub fn is_busy(&self) -> bool {
        !self.sink.table().is_empty()
    }

    /// Waits for `job` to finish, handing its other events to `on_event`;
    /// other jobs' events are dropped (for callers that run one job at a time).
    pub fn wait(
        &self,
        job: JobId,
        mut on_event: impl FnMut(&Event),
    ) -> Result<JobOutput, EngineError> {
        loop {
            let event = self.events.recv().map_err(|_| EngineError::Disconnected)?;
            if event.job() != job {
                continue;
            }
            match event {
                Event::Finished { outcome, .. } => return outcome,
                other => on_event(&other),
            }
        }
    }

    /// Submits `request` and waits for it (see [`Engine::wait`]).
    pub fn run(
        &self,
        request: Request,
        on_event: impl FnMut(&Event),
    ) -> Result<JobOutput, EngineError> {
        let job = self.submit(request);
        self.wait(job, on_event)
    }
}

impl Jobs for Engine {
    fn submit(&self, request: Request) -> JobId {
        let (job, admitted) = self.sink.table().admit(request.task());
        let control = match admitted {
            Ok(c) => c,
            Err(refusal) => {
                self.sink.send(Event::Finished {
                    job,
                    outcome: Err(refusal),
                });
                return job;
            }
        };
        match request {
            Request::PrepareData(config) => {
                let queued = Queued {
                    job,
                    payload: config,
                    control,
                };
                if let Some(replaced) = self.data_jobs.push(queued) {
                    self.sink
                        .finish(replaced, Err(EngineError::Superseded { by: job }));
                }
            }
            request => {
                let sent = self.model_jobs.as_ref().is_some_and(|tx| {
                    tx.send(ModelJob {
                        job,
                        request,
                        control,
                    })
                    .is_ok()
                });
                if !sent {
                    self.sink.finish(job, Err(EngineError::Disconnected));
                }
            }
        }
        job
    }

    fn control(&self, job: JobId, control: Control) {
        // Taken out of the lock first: a job may finish meanwhile, which needs it.
        let handle = self.sink.table().control(job);
        if let Some(h) = handle {
            h.apply(control);
        }
    }
}

impl Drop for Engine {
    /// Every job is asked to stop and the threads to end. Waiting for them is
    /// only worth it when that is quick: a download or a model load still
    /// running is left to the process exit.
    fn drop(&mut self) {
        self.sink.table().stop_all();
        self.model_jobs = None;
        if let Some(waiting) = self.data_jobs.close() {
            self.sink.finish(waiting, Err(EngineError::Stopped));
        }
        if !self.is_busy() {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}
