//! Checks a sweep before its jobs are queued: each condition's backend is in this build, its
//! data is on disk, its model fits the data and its algorithms accept the model; and the SLURM
//! array of a sweep written only once it passes.

use crate::BackendName;
use ar_ndarray::NdArray;
use ar_train::slurm::{array_job, ArrayJob, SlurmOptions};
use ar_train::sweep::Sweep;
use ar_train::TrainError;
use std::path::Path;

impl BackendName {
    /// Whether this build has the backend: `candle-cuda` needs the `cuda` feature. (Whether a
    /// GPU is there is known only where the job runs.)
    pub fn check_built(self) -> Result<(), TrainError> {
        if self == BackendName::CandleCuda && !ar_candle::CUDA_COMPILED {
            return Err(TrainError::Config {
                key: "backend".into(),
                message: "candle-cuda: this build has no CUDA support; build one with \
                          scripts/build-cuda.sh (or the `cuda` feature) and use that binary"
                    .into(),
            });
        }
        Ok(())
    }
}

/// Every condition of `sweep` that could not start here, with why (see
/// [`Sweep::check`]; configs without a `data_dir` read from `data_root` when given): run
/// before writing a SLURM script, so that no task is queued only to fail.
pub fn check_sweep<'a>(
    sweep: &'a Sweep,
    data_root: Option<&Path>,
) -> Vec<(&'a ar_train::sweep::Job, TrainError)> {
    let mut failed = Vec::new();
    for (i, job) in sweep.jobs.iter().enumerate() {
        if sweep.jobs[..i].iter().any(|j| j.name == job.name) {
            continue;
        }
        if let Err(e) = BackendName::parse(&job.config.backend).and_then(BackendName::check_built) {
            failed.push((job, e));
        }
    }
    for (job, e) in sweep.check(NdArray::<f32>::new(), data_root) {
        if !failed.iter().any(|(j, _)| j.name == job.name) {
            failed.push((job, e));
        }
    }
    let position = |job: &ar_train::sweep::Job| sweep.jobs.iter().position(|j| j == job);
    failed.sort_by_key(|(job, _)| position(job));
    failed
}

/// The SLURM array of `sweep` under `opts`, written only if every condition could start here
/// ([`check_sweep`]) and the tasks' data folder is known: `opts.data_dir`, or, when it is
/// `None`, the default of `this` binary, which must then be the one the tasks run (another
/// build's default cannot be known). Each condition that could not start is named in the error.
pub fn checked_array_job(
    sweep: &Sweep,
    opts: &SlurmOptions,
    this: &Path,
) -> Result<ArrayJob, TrainError> {
    let same = |p: &Path| p.canonicalize().ok();
    let refuse = |message: String| TrainError::Config { key: "slurm".into(), message };
    if opts.data_dir.is_none() && same(&opts.binary) != same(this) {
        return Err(refuse(format!(
            "--binary {} is another build, whose data folder this one cannot know: name the \
             folder the tasks read with --data-dir DIR (or AR_DATA_DIR)",
            opts.binary.display()
        )));
    }
    let failed = check_sweep(sweep, opts.data_dir.as_deref());
    if !failed.is_empty() {
        let mut message = format!(
            "{} of {} configs could not start; no script written:",
            failed.len(),
            sweep.configs
        );
        for (job, e) in &failed {
            message.push_str(&format!("\n  {} ({}): {e}", job.name, job.source.display()));
        }
        return Err(refuse(message));
    }
    array_job(sweep, opts)
}
