//! The bookkeeping of jobs, free of libtorch: each job's control handle, the
//! table of jobs waiting or running (with the rule that refuses a model change
//! while a job needs the model), the "latest request wins" queue that data
//! preparation runs from, and the sink every event leaves through.
//!
//! A job's code sees only its [`JobControl`]: it asks `should_stop()` and
//! `wait_if_paused()` between units of work and `take_save_request()` where
//! it can write a checkpoint, so the same handle serves generation today and
//! a training loop later.

use super::protocol::{Control, EngineError, Event, JobId, JobOutput, Progress, Stage, Task};
use crossbeam_channel::Sender;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Locks `m`; a panic elsewhere never leaves these small states half-written.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a job's code checks between units of work; the engine's callers
/// reach it with [`Control`] messages. Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct JobControl {
    state: Arc<ControlState>,
}

#[derive(Debug, Default)]
struct ControlState {
    stop: AtomicBool,
    save: AtomicBool,
    paused: Mutex<bool>,
    changed: Condvar,
}

impl JobControl {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn apply(&self, control: Control) {
        let s = &self.state;
        match control {
            Control::Stop => s.stop.store(true, Ordering::SeqCst),
            Control::SaveNow => s.save.store(true, Ordering::SeqCst),
            Control::Pause => *lock(&s.paused) = true,
            Control::Resume => *lock(&s.paused) = false,
        }
        // A paused job wakes for a resume and for a stop alike.
        s.changed.notify_all();
    }

    pub fn should_stop(&self) -> bool {
        self.state.stop.load(Ordering::SeqCst)
    }

    pub fn is_paused(&self) -> bool {
        *lock(&self.state.paused)
    }

    /// Blocks while the job is paused; returns at once when it is not, when
    /// it is resumed, or when it is told to stop.
    pub fn wait_if_paused(&self) {
        let s = &self.state;
        let mut paused = lock(&s.paused);
        while *paused && !self.should_stop() {
            paused = s
                .changed
                .wait(paused)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Whether a checkpoint was asked for since the last call.
    pub fn take_save_request(&self) -> bool {
        self.state.save.swap(false, Ordering::SeqCst)
    }
}

struct Entry {
    task: Task,
    control: JobControl,
}

/// The jobs accepted and not finished, and the ids handed out.
#[derive(Default)]
pub(crate) struct JobTable {
    jobs: BTreeMap<JobId, Entry>,
    last: u64,
}

impl JobTable {
    /// A new id for `task`, and its control handle if the job may run: a
    /// model change is refused while any job needing the model is waiting
    /// or running (the refused job never enters the table).
    pub(crate) fn admit(&mut self, task: Task) -> (JobId, Result<JobControl, EngineError>) {
        self.last += 1;
        let job = JobId(self.last);
        if task.changes_model() {
            if let Some((holder, e)) = self
                .jobs
                .iter()
                .find(|(_, e)| e.task.needs_model_unchanged())
            {
                let refusal = EngineError::ModelBusy {
                    task,
                    holder: *holder,
                    holder_task: e.task,
                };
                return (job, Err(refusal));
            }
        }
        let control = JobControl::new();
        self.jobs.insert(
            job,
            Entry {
                task,
                control: control.clone(),
            },
        );
        (job, Ok(control))
    }

    pub(crate) fn remove(&mut self, job: JobId) {
        self.jobs.remove(&job);
    }

    pub(crate) fn control(&self, job: JobId) -> Option<JobControl> {
        self.jobs.get(&job).map(|e| e.control.clone())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub(crate) fn stop_all(&self) {
        for e in self.jobs.values() {
            e.control.apply(Control::Stop);
        }
    }
}

/// Where workers send events. Finishing a job takes it out of the table
/// before its `Finished` goes out, so a caller that has seen `Finished` can
/// at once submit what the job was holding back.
#[derive(Clone)]
pub(crate) struct EventSink {
    events: Sender<Event>,
    table: Arc<Mutex<JobTable>>,
}

impl EventSink {
    pub(crate) fn new(events: Sender<Event>, table: Arc<Mutex<JobTable>>) -> Self {
        EventSink { events, table }
    }

    pub(crate) fn table(&self) -> MutexGuard<'_, JobTable> {
        lock(&self.table)
    }

    /// Sends `event`; nobody listening is not an error (the caller left).
    pub(crate) fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub(crate) fn finish(&self, job: JobId, outcome: Result<JobOutput, EngineError>) {
        self.table().remove(job);
        self.send(Event::Finished { job, outcome });
    }

    /// A `progress(file, done, total)` callback for the loaders that reports
    /// as events. Everything of a local source is read; a hub source's files
    /// are downloaded, then read once complete.
    pub(crate) fn progress(&self, job: JobId, local: bool) -> impl FnMut(&str, u64, u64) + '_ {
        let mut downloaded = HashSet::new();
        move |file, done, total| {
            let stage = if local || downloaded.contains(file) {
                Stage::Read
            } else {
                Stage::Download
            };
            if stage == Stage::Download && done >= total {
                downloaded.insert(file.to_string());
            }
            self.send(Event::Progress {
                job,
                progress: Progress {
                    stage,
                    item: file.to_string(),
                    done,
                    total,
                },
            });
        }
    }
}

/// A job waiting in a [`LatestWins`] queue.
pub(crate) struct Queued<T> {
    pub(crate) job: JobId,
    pub(crate) payload: T,
    pub(crate) control: JobControl,
}

/// A queue of one: a new job replaces the one waiting, and stops the one
/// running, which then ends superseded. For work where only the newest
/// request matters (the Data and Batches panes' view of the current config).
pub(crate) struct LatestWins<T> {
    state: Mutex<LatestState<T>>,
    ready: Condvar,
}

struct LatestState<T> {
    waiting: Option<Queued<T>>,
    running: Option<(JobId, JobControl)>,
    /// Running jobs that were superseded, with the job that did it.
    superseded: HashMap<JobId, JobId>,
    closed: bool,
}

impl<T> Default for LatestWins<T> {
    fn default() -> Self {
        LatestWins {
            state: Mutex::new(LatestState {
                waiting: None,
                running: None,
                superseded: HashMap::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> LatestWins<T> {
    /// Queues `item`; returns the job it replaced while that one was still
    /// waiting (it never runs). A job running now is told to stop.
    pub(crate) fn push(&self, item: Queued<T>) -> Option<JobId> {
        let mut s = lock(&self.state);
        let by = item.job;
        if let Some((running, control)) = &s.running {
            let running = *running;
            control.apply(Control::Stop);
            s.superseded.insert(running, by);
        }
        let replaced = s.waiting.replace(item).map(|q| q.job);
        self.ready.notify_all();
        replaced
    }

    /// The next job, once there is one; `None` once closed.
    pub(crate) fn next(&self) -> Option<Queued<T>> {
        let mut s = lock(&self.state);
        loop {
            if s.closed {
                return None;
            }
            if let Some(q) = s.waiting.take() {
                s.running = Some((q.job, q.control.clone()));
                return Some(q);
            }
            s = self.ready.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Marks the running `job` done; returns the job that superseded it, if one did.
    pub(crate) fn done(&self, job: JobId) -> Option<JobId> {
        let mut s = lock(&self.state);
        if s.running.as_ref().is_some_and(|(j, _)| *j == job) {
            s.running = None;
        }
        s.superseded.remove(&job)
    }

    /// Wakes the worker to end; the job waiting, if any, is handed back.
    pub(crate) fn close(&self) -> Option<JobId> {
        let mut s = lock(&self.state);
        s.closed = true;
        self.ready.notify_all();
        s.waiting.take().map(|q| q.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_model_change_is_refused_while_a_job_needs_the_model() {
        let mut t = JobTable::default();
        let (load, ok) = t.admit(Task::LoadModel);
        assert!(ok.is_ok());
        // A generation may queue behind a load; a load may not go in under it.
        let (gen, ok) = t.admit(Task::Generate);
        assert!(ok.is_ok());
        assert!(gen > load);
        let (adapter, refused) = t.admit(Task::SetAdapter);
        assert!(adapter > gen, "refused jobs still get their own id");
        assert_eq!(
            refused.err(),
            Some(EngineError::ModelBusy {
                task: Task::SetAdapter,
                holder: gen,
                holder_task: Task::Generate
            })
        );
        // Data preparation does not touch the model.
        assert!(t.admit(Task::PrepareData).1.is_ok());
        t.remove(gen);
        assert!(t.admit(Task::UnloadModel).1.is_ok());
    }

    #[test]
    fn controls_reach_the_handle_and_a_stop_ends_a_pause() {
        let c = JobControl::new();
        assert!(!c.should_stop() && !c.is_paused() && !c.take_save_request());
        c.apply(Control::SaveNow);
        assert!(c.take_save_request());
        assert!(!c.take_save_request(), "a save request is taken once");
        c.apply(Control::Pause);
        assert!(c.is_paused());
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.wait_if_paused())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "a paused job waits");
        c.apply(Control::Resume);
        waiter.join().expect("resumed");
        c.apply(Control::Pause);
        c.apply(Control::Stop);
        c.wait_if_paused(); // returns: stopping ends the pause
        assert!(c.should_stop());
    }

    fn queued(job: u64) -> Queued<&'static str> {
        Queued {
            job: JobId(job),
            payload: "config",
            control: JobControl::new(),
        }
    }

    #[test]
    fn the_latest_request_wins() {
        let q = LatestWins::default();
        assert_eq!(q.push(queued(1)), None);
        assert_eq!(q.push(queued(2)), Some(JobId(1)), "1 never ran");
        let running = q.next().expect("job 2");
        assert_eq!(running.job, JobId(2));
        assert_eq!(q.push(queued(3)), None);
        assert!(
            running.control.should_stop(),
            "the running job is told to stop"
        );
        assert_eq!(q.done(JobId(2)), Some(JobId(3)));
        let next = q.next().expect("job 3");
        assert!(!next.control.should_stop());
        assert_eq!(q.done(JobId(3)), None);
        q.push(queued(4));
        assert_eq!(q.close(), Some(JobId(4)));
        assert!(q.next().is_none());
    }
}
