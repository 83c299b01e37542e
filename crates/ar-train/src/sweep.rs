//! Sweeps: every config x seed trained into its own run directory (`OUT/CONFIG/seed-N`),
//! finished runs skipped and interrupted ones resumed, so running the same sweep again continues
//! a grid wherever it stopped (Ctrl-C, a kill, the end of a working day).

use crate::config::TrainConfig;
use crate::session::{Observer, Outcome, Session};
use crate::{upload, TrainError};
use ar_backend::Backend;
use ar_core::Trainer;
use ar_data::BatchOrder;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// The file a job leaves in its run directory when it has ended for good.
pub const DONE_FILE: &str = "sweep-done.json";

/// One config x seed of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// The config file's stem (the condition's name).
    pub name: String,
    /// The config file.
    pub source: PathBuf,
    /// Its config with the sweep's seed and epochs applied.
    pub config: TrainConfig,
    /// The run directory.
    pub dir: PathBuf,
}

/// How a job ended, as recorded in [`DONE_FILE`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// The epochs the run was asked for.
    pub epochs: usize,
    /// `finished`, or `diverged` with where.
    pub outcome: String,
}

/// Where a job stands.
#[derive(Clone, Debug, PartialEq)]
pub enum JobStatus {
    /// No run directory yet.
    Fresh,
    /// Started and not ended (or ended with fewer epochs than now asked for).
    Partial,
    /// Ended for good.
    Done(Done),
}

/// The config files named by `inputs`: files as given, directories as their `*.toml` files in
/// name order.
pub fn config_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, TrainError> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input)
                .map_err(|source| TrainError::Io { path: input.clone(), source })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(TrainError::Io {
                path: input.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            });
        }
    }
    Ok(files)
}

/// Every config x seed of `inputs` (see [`config_files`]), with `epochs` replacing each
/// config's own when given, into run directories under `out`. Each config is validated.
pub fn plan(
    inputs: &[PathBuf],
    seeds: &[u64],
    epochs: Option<usize>,
    out: &Path,
) -> Result<Vec<Job>, TrainError> {
    let mut jobs = Vec::new();
    for source in config_files(inputs)? {
        let base = TrainConfig::read(&source)?;
        let name = source.file_stem().map_or("config".into(), |s| s.to_string_lossy().into_owned());
        for &seed in seeds {
            let mut config = TrainConfig { seed, ..base.clone() };
            if epochs.is_some() {
                config.epochs = epochs;
            }
            config.validate()?;
            let dir = out.join(&name).join(format!("seed-{seed}"));
            jobs.push(Job { name: name.clone(), source: source.clone(), config, dir });
        }
    }
    Ok(jobs)
}

impl Job {
    /// Where the job stands, from its run directory.
    pub fn status(&self) -> JobStatus {
        if !self.dir.join("config.toml").exists() {
            return JobStatus::Fresh;
        }
        let done: Option<Done> = std::fs::read_to_string(self.dir.join(DONE_FILE))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        match done {
            Some(d) if d.epochs >= self.config.epochs() || d.outcome != "finished" => {
                JobStatus::Done(d)
            }
            _ => JobStatus::Partial,
        }
    }

    /// Runs the job unless it is done: creates or resumes its run, trains with `stop` as the
    /// stop flag, and records the end in [`DONE_FILE`] when it finished or diverged. `None`
    /// when it was already done.
    pub fn run<B: Backend>(
        &self,
        backend: B,
        stop: Arc<AtomicBool>,
        observer: &mut impl Observer,
    ) -> Result<Option<Outcome>, TrainError> {
        let mut session = match self.status() {
            JobStatus::Done(_) => return Ok(None),
            JobStatus::Fresh => Session::create(&self.dir, self.config.clone(), backend)?,
            JobStatus::Partial => Session::resume_with(&self.dir, self.config.clone(), backend)?,
        };
        session.share_stop_flag(stop);
        let outcome = session.run(observer)?;
        let record = |outcome: String| {
            let done = Done { epochs: self.config.epochs(), outcome };
            let path = self.dir.join(DONE_FILE);
            std::fs::write(&path, serde_json::to_string(&done).expect("serialises"))
                .map_err(|source| TrainError::Io { path, source })
        };
        match &outcome {
            Outcome::Finished => record("finished".into())?,
            Outcome::Diverged { label, epoch, batch, .. } => {
                record(format!("diverged: {label} at epoch {epoch}, batch {batch}"))?
            }
            Outcome::Stopped => {}
        }
        Ok(Some(outcome))
    }

    /// Seconds one epoch of this job takes on `backend`, estimated from `batches` timed
    /// training steps of each algorithm (after one untimed step) on the job's data.
    pub fn seconds_per_epoch<B: Backend>(
        &self,
        backend: B,
        batches: usize,
    ) -> Result<f64, TrainError> {
        let c = &self.config;
        let data = c.load_data()?;
        let spec = c.model(&data.train)?;
        let init = c.init()?;
        let order = BatchOrder::sequential(data.train.len(), c.batch_size);
        let all: Vec<&[usize]> = order.batches().collect();
        let per_epoch = all.len();
        let mut seconds = 0.0;
        for &name in &c.algorithms {
            let algorithm = c.algorithm(name);
            let mut net = spec.build(backend.clone(), init, c.seed)?;
            if algorithm.needs_feedback_weights() {
                net.init_feedback(init, c.seed, &algorithm);
            }
            let mut trainer = Trainer::new(algorithm, c.loss, c.optimizer(), &net)
                .and_then(|t| t.with_conv_update(c.conv_update()))
                .map_err(|e| TrainError::Config {
                    key: "algorithms".into(),
                    message: e.to_string(),
                })?;
            let timed = batches.clamp(1, per_epoch);
            let mut start = Instant::now();
            for (i, batch) in all.iter().take(timed + 1).enumerate() {
                if i == 1 {
                    start = Instant::now();
                }
                let (x, t) = upload(&net, &data.train, batch, &data.normalization)?;
                trainer.step(&mut net, &x, &t);
            }
            let steps = (all.len().min(timed + 1) - 1).max(1);
            seconds += start.elapsed().as_secs_f64() / steps as f64 * per_epoch as f64;
        }
        Ok(seconds)
    }
}
