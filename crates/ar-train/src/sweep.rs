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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Marked as ended, but its files do not hold what the marker says (a missing or garbled
    /// metrics file, epochs missing): not trained again over the damage, reported instead.
    Damaged(String),
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

/// A planned sweep: every config x seed, in config then seed order.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The jobs, config by config, each config's seeds in the order given.
    pub jobs: Vec<Job>,
    /// How many config files the sweep runs.
    pub configs: usize,
    /// The seeds of every config.
    pub seeds: Vec<u64>,
    /// The folder holding the run directories.
    pub out: PathBuf,
}

/// Every config x seed of `inputs` (see [`config_files`]), with `epochs` replacing each
/// config's own when given and `backend` each config's backend, into run directories
/// `out/CONFIG/seed-N`. Each config is validated.
pub fn plan(
    inputs: &[PathBuf],
    seeds: &[u64],
    epochs: Option<usize>,
    backend: Option<&str>,
    out: &Path,
) -> Result<Sweep, TrainError> {
    let files = config_files(inputs)?;
    let mut jobs = Vec::new();
    for source in &files {
        let base = TrainConfig::read(source)?;
        let name = source.file_stem().map_or("config".into(), |s| s.to_string_lossy().into_owned());
        for &seed in seeds {
            let dir = out.join(&name).join(format!("seed-{seed}"));
            jobs.push(Job::from_config(&name, source, &base, seed, epochs, backend, dir)?);
        }
    }
    Ok(Sweep { jobs, configs: files.len(), seeds: seeds.to_vec(), out: out.to_path_buf() })
}

impl Sweep {
    /// The jobs to train: not started, or started and not ended (not those done, nor those
    /// marked done whose files are damaged).
    pub fn todo(&self) -> Vec<&Job> {
        let to_train = |j: &&Job| matches!(j.status(), JobStatus::Fresh | JobStatus::Partial);
        self.jobs.iter().filter(to_train).collect()
    }

    /// Checks that every condition of the sweep can start, as a run checks when it starts
    /// (data on disk, a model that fits the data, algorithms that accept the model), without
    /// training or touching a run directory: what `sweep --slurm` checks before it writes a
    /// script, so that no task is queued only to fail. Configs without a `data_dir` read from
    /// `data_root` when given. Each data set is read once. Returns the first job of each
    /// condition that cannot start, with why.
    pub fn check<B: Backend>(
        &self,
        backend: B,
        data_root: Option<&Path>,
    ) -> Vec<(&Job, TrainError)> {
        // (data set, folder, test fraction) -> (sample shape, classes)
        type Read = ((String, Option<PathBuf>, u64), (Vec<usize>, usize));
        let mut shapes: Vec<Read> = Vec::new();
        let mut failed = Vec::new();
        for (i, job) in self.jobs.iter().enumerate() {
            if self.jobs[..i].iter().any(|j| j.name == job.name) {
                continue;
            }
            let mut config = job.config.clone();
            if config.data_dir.is_none() {
                config.data_dir = data_root.map(Path::to_path_buf);
            }
            let key =
                (config.dataset.clone(), config.data_dir.clone(), config.test_fraction.to_bits());
            let fits = || -> Result<(), TrainError> {
                let (shape, classes) = match shapes.iter().find(|(k, _)| *k == key) {
                    Some((_, found)) => found.clone(),
                    None => {
                        let data = config.load_data()?;
                        let found = (data.train.shape.to_vec(), data.train.num_classes);
                        shapes.push((key, found.clone()));
                        found
                    }
                };
                let (_, mut net) = config.network(&shape, classes, backend.clone())?;
                for &name in &config.algorithms {
                    config.trainer(name, &mut net)?;
                }
                Ok(())
            };
            if let Err(e) = fits() {
                failed.push((job, e));
            }
        }
        failed
    }

    /// One job of each condition with work left, and how many of that condition's jobs are
    /// left: what a time estimate needs to time.
    pub fn conditions_to_do(&self) -> Vec<(&Job, usize)> {
        let todo = self.todo();
        let mut out: Vec<(&Job, usize)> = Vec::new();
        for job in todo {
            match out.iter_mut().find(|(j, _)| j.name == job.name) {
                Some((_, n)) => *n += 1,
                None => out.push((job, 1)),
            }
        }
        out
    }
}

/// Runs `run` on every job, up to `workers` at a time, starting them in order; `finished` is
/// called on this thread with each job's index and result as the job ends. No new job starts
/// once `stop` is raised.
pub fn run_parallel<T: Send>(
    jobs: &[Job],
    workers: usize,
    stop: &AtomicBool,
    run: impl Fn(&Job) -> T + Sync,
    mut finished: impl FnMut(usize, T),
) {
    let next = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, jobs.len().max(1)) {
            let (tx, next, run) = (tx.clone(), &next, &run);
            scope.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    if tx.send((i, run(job))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, result) in rx {
            finished(i, result);
        }
    });
}

/// Runs `work` on a thread pool of `threads` threads (a config's `threads` key), or on the
/// global pool when `None` ([`on_pool`]). This is how a sweep gives each job its own thread
/// count, which a process-wide setting (`RAYON_NUM_THREADS`, read once when the global pool
/// starts) cannot do for jobs that differ. The ndarray backend and candle's CPU kernels run on
/// the pool they are called from.
pub fn with_threads<T: Send>(
    threads: Option<usize>,
    work: impl FnOnce() -> T + Send,
) -> Result<T, TrainError> {
    let Some(n) = threads else { return Ok(on_pool(work)) };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().map_err(|e| {
        TrainError::Config { key: "threads".into(), message: format!("{n}: no pool started: {e}") }
    })?;
    Ok(pool.install(work))
}

/// Runs `work` on a worker thread of the current rayon pool (the global one when called from
/// outside any), where it stays: inline when already on one. The kernels' parallel regions
/// (gemm, convolutions, element-wise maps) then split among the pool's workers directly; called
/// from a thread outside the pool, each region is handed to the pool and the calling thread
/// sleeps until it ends, a wake-up per region that made the paper-1 MLP's step (batch 64) 6 to
/// 28% slower (docs/performance.md). Wrap whole loops of steps, not single kernels.
pub fn on_pool<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    rayon::scope(|_| work())
}

thread_local! {
    /// A pool of the default size of which this thread is worker 0 (rayon's
    /// `use_current_thread`), built on the thread's first call of [`on_callers_pool`]; `None`
    /// where rayon cannot build one (the thread already belongs to a pool). When the thread
    /// ends, the pool's workers end with it; rayon leaks its bookkeeping (the registry).
    static CALLERS_POOL: Option<rayon::ThreadPool> =
        rayon::ThreadPoolBuilder::new().use_current_thread().build().ok();
}

/// Runs `work` on the calling thread as worker 0 of a pool of its own, the pool's other workers
/// joining its parallel regions: no hand-off to another thread and no wake-up of the caller
/// when it ends, which [`on_pool`] pays on each call from outside a pool (25 to 30 us, 1.5% of
/// the paper-1 MLP's step: docs/python.md). For a caller that takes many short calls, such as
/// a Python loop of steps; inline when already on a pool's worker.
pub fn on_callers_pool<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    if rayon::current_thread_index().is_some() {
        return work();
    }
    CALLERS_POOL.with(|pool| match pool {
        Some(pool) => pool.install(work),
        None => on_pool(work),
    })
}

/// Seeds written as a range `0..3` (end excluded) or a list `0,1,2`.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("'{s}': expected a range like 0..3 or a list like 0,1,2");
    let seeds: Vec<u64> = match s.split_once("..") {
        Some((a, b)) => {
            let (Ok(a), Ok(b)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) else {
                return Err(bad());
            };
            (a..b).collect()
        }
        None => s
            .split(',')
            .map(|x| x.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?,
    };
    if seeds.is_empty() {
        return Err(format!("'{s}' names no seed"));
    }
    Ok(seeds)
}

/// `0.4 s`, `12 s`, `3.4 min`, `2.1 h`: a duration as progress lines print it.
pub fn human_duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

impl Job {
    /// The job `seed` of the config `base` (read from `source`, named `name`), with `epochs`
    /// and `backend` replacing the config's own when given, in `dir`; validated.
    pub fn from_config(
        name: &str,
        source: &Path,
        base: &TrainConfig,
        seed: u64,
        epochs: Option<usize>,
        backend: Option<&str>,
        dir: PathBuf,
    ) -> Result<Job, TrainError> {
        let mut config = TrainConfig { seed, ..base.clone() };
        if epochs.is_some() {
            config.epochs = epochs;
        }
        if let Some(b) = backend {
            config.backend = b.to_string();
        }
        config.validate()?;
        Ok(Job { name: name.to_string(), source: source.to_path_buf(), config, dir })
    }

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
                match crate::report::read_run(&self.dir, &self.name) {
                    Err(problem) => JobStatus::Damaged(problem),
                    Ok(r) if !r.problems.is_empty() => JobStatus::Damaged(r.problems.join("; ")),
                    Ok(_) => JobStatus::Done(d),
                }
            }
            _ => JobStatus::Partial,
        }
    }

    /// Runs the job unless it is done: creates or resumes its run, trains with `stop` as the
    /// stop flag, and records the end in [`DONE_FILE`] when it finished or diverged. `None`
    /// when it was already done.
    /// The job trains on a thread pool of its config's `threads` (see [`with_threads`]).
    pub fn run<B: Backend>(
        &self,
        backend: B,
        stop: Arc<AtomicBool>,
        observer: &mut (impl Observer + Send),
    ) -> Result<Option<Outcome>, TrainError> {
        with_threads(self.config.threads, || self.run_here(backend, stop, observer))?
    }

    fn run_here<B: Backend>(
        &self,
        backend: B,
        stop: Arc<AtomicBool>,
        observer: &mut impl Observer,
    ) -> Result<Option<Outcome>, TrainError> {
        let mut session = match self.status() {
            JobStatus::Done(_) => return Ok(None),
            JobStatus::Damaged(problem) => {
                return Err(TrainError::File {
                    path: self.dir.clone(),
                    message: format!(
                        "marked done in {DONE_FILE}, but {problem}; move the run directory away \
                         to train it again"
                    ),
                })
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_as_ranges_or_lists() {
        assert_eq!(parse_seeds("0..3").unwrap(), [0, 1, 2]);
        assert_eq!(parse_seeds("4, 7,9").unwrap(), [4, 7, 9]);
        assert!(parse_seeds("3..3").unwrap_err().contains("names no seed"));
        assert!(parse_seeds("a..b").unwrap_err().contains("expected a range"));
        assert!(parse_seeds("1,,2").is_err());
    }
}
