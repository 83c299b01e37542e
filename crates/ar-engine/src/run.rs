//! A whole training run (the training crate's [`Session`]), or one job of a sweep, on the
//! backend its config names.

use crate::{dispatch, BackendName, Job};
use ar_backend::Backend;
use ar_train::sweep::Job as SweepJob;
use ar_train::{Data, EpochMetrics, Event, Outcome, Session, TrainConfig, TrainError};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What [`train`] is asked to do.
#[derive(Debug)]
pub struct TrainRequest {
    /// The run directory.
    pub dir: PathBuf,
    /// The run's config (for a resume: the run's own, possibly with more epochs).
    pub config: TrainConfig,
    /// Data held in memory, used instead of the data set the config names.
    pub data: Option<Data>,
    /// Continue the run in `dir` instead of starting one.
    pub resume: bool,
    /// Raised by the caller to stop after the step under way (checkpoints are written first).
    pub stop: Arc<AtomicBool>,
}

/// How a [`train`] call ended, and what the run directory holds.
#[derive(Debug)]
pub struct TrainReport {
    /// Finished, stopped or diverged.
    pub outcome: Outcome,
    /// Every finished epoch of every algorithm, in the order they finished (resumed ones
    /// included), as `metrics.jsonl` holds them.
    pub history: Vec<EpochMetrics>,
    /// What the session trains ([`Session::describe`]).
    pub description: String,
}

struct Run<'a> {
    request: TrainRequest,
    observer: &'a mut (dyn FnMut(Event<'_>) + Send),
}

impl Job for Run<'_> {
    type Output = Result<TrainReport, TrainError>;
    fn run<B: Backend>(self, be: B) -> Self::Output {
        let TrainRequest { dir, config, data, resume, stop } = self.request;
        let mut session = match (data, resume) {
            (Some(data), false) => Session::create_with_data(&dir, config, data, be),
            (Some(data), true) => Session::resume_with_data(&dir, config, data, be),
            (None, false) => Session::create(&dir, config, be),
            (None, true) => Session::resume_with(&dir, config, be),
        }?;
        session.share_stop_flag(stop);
        let description = session.describe();
        let observer = self.observer;
        let outcome = session.run(&mut |e: Event<'_>| observer(e))?;
        let mut history: Vec<EpochMetrics> =
            session.trainees().iter().flat_map(|t| t.history.iter().cloned()).collect();
        history.sort_by_key(|m| m.epoch);
        Ok(TrainReport { outcome, history, description })
    }
}

/// Runs (or resumes) a training session on the backend and precision its config names,
/// reporting every [`Event`] to `observer`.
pub fn train(
    request: TrainRequest,
    observer: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<TrainReport, TrainError> {
    let backend = BackendName::parse(&request.config.backend)?;
    let precision = request.config.precision;
    dispatch(backend, precision, Run { request, observer })?
}

/// The backend a sweep job's config names.
fn backend_of(job: &SweepJob) -> Result<BackendName, TrainError> {
    BackendName::parse(&job.config.backend.to_lowercase())
}

/// Runs a sweep job (`ar_train::sweep::Job::run`, silent) on the backend its config names.
pub fn run_job(job: &SweepJob, stop: Arc<AtomicBool>) -> Result<Option<Outcome>, TrainError> {
    struct RunJob<'a>(&'a SweepJob, Arc<AtomicBool>);
    impl Job for RunJob<'_> {
        type Output = Result<Option<Outcome>, TrainError>;
        fn run<B: Backend>(self, be: B) -> Self::Output {
            self.0.run(be, self.1, &mut ar_train::Silent)
        }
    }
    dispatch(backend_of(job)?, job.config.precision, RunJob(job, stop))?
}

/// Seconds an epoch of a sweep job takes on the backend its config names, from `batches`
/// timed steps (`ar_train::sweep::Job::seconds_per_epoch`).
pub fn seconds_per_epoch(job: &SweepJob, batches: usize) -> Result<f64, TrainError> {
    struct Estimate<'a>(&'a SweepJob, usize);
    impl Job for Estimate<'_> {
        type Output = Result<f64, TrainError>;
        fn run<B: Backend>(self, be: B) -> Self::Output {
            self.0.seconds_per_epoch(be, self.1)
        }
    }
    dispatch(backend_of(job)?, job.config.precision, Estimate(job, batches))?
}
