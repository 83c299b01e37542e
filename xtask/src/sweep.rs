//! `cargo xtask sweep`: every config x seed into its own run directory through
//! `ar_train::sweep`; running the same command again skips finished runs and resumes the
//! interrupted one.

use crate::backend::{dispatch, BackendName, Job as BackendJob};
use crate::train::cli_error;
use crate::UsageError;
use anyhow::Context;
use ar_backend::Backend;
use ar_train::sweep::{plan, Job, JobStatus};
use ar_train::{Outcome, Silent};
use clap::ValueEnum;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Flags of `sweep`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Config files, or folders whose *.toml files are configs (experiments/paper1, ...).
    #[arg(required = true, value_name = "CONFIG_OR_DIR")]
    inputs: Vec<PathBuf>,
    /// Seeds: a range `0..3` (end excluded) or a list `0,1,2`.
    #[arg(long, default_value = "0..3", value_parser = parse_seeds)]
    seeds: Seeds,
    /// Epochs of every run, instead of each config's own.
    #[arg(long)]
    epochs: Option<usize>,
    /// Where the run directories go: OUT/CONFIG/seed-N.
    #[arg(long, default_value = "results/runs")]
    out: PathBuf,
    /// The backend of every run, instead of each config's own.
    #[arg(long, value_enum)]
    backend: Option<BackendName>,
    /// Skip the time estimate (it trains a few batches of each config first).
    #[arg(long)]
    no_estimate: bool,
}

/// The seeds of a sweep.
#[derive(Clone, Debug)]
pub struct Seeds(Vec<u64>);

fn parse_seeds(s: &str) -> Result<Seeds, String> {
    let bad = || format!("'{s}': expected a range like 0..3 or a list like 0,1,2");
    let seeds: Vec<u64> = if let Some((a, b)) = s.split_once("..") {
        let (a, b) = (a.trim().parse::<u64>(), b.trim().parse::<u64>());
        let (Ok(a), Ok(b)) = (a, b) else { return Err(bad()) };
        (a..b).collect()
    } else {
        s.split(',')
            .map(|x| x.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?
    };
    if seeds.is_empty() {
        return Err(format!("'{s}' names no seed"));
    }
    Ok(Seeds(seeds))
}

/// Plans the sweep, prints the plan, and runs every job not yet done.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let jobs = plan(&args.inputs, &args.seeds.0, args.epochs, &args.out).map_err(cli_error)?;
    if jobs.is_empty() {
        return Err(UsageError("no config files found in the given paths".into()).into());
    }
    let backend_of = |job: &Job| -> anyhow::Result<BackendName> {
        match args.backend {
            Some(b) => Ok(b),
            None => BackendName::from_str(&job.config.backend, true).map_err(|_| {
                UsageError(format!(
                    "{}: unknown backend '{}'",
                    job.source.display(),
                    job.config.backend
                ))
                .into()
            }),
        }
    };
    let todo: Vec<&Job> =
        jobs.iter().filter(|j| !matches!(j.status(), JobStatus::Done(_))).collect();
    let partial = todo.iter().filter(|j| j.status() == JobStatus::Partial).count();
    println!(
        "sweep: {} jobs ({} configs x {} seeds) into {}: {} done, {} to resume, {} to start",
        jobs.len(),
        jobs.len() / args.seeds.0.len(),
        args.seeds.0.len(),
        args.out.display(),
        jobs.len() - todo.len(),
        partial,
        todo.len() - partial
    );
    if !args.no_estimate && !todo.is_empty() {
        let mut total = 0.0;
        let mut seen: Vec<&str> = Vec::new();
        for job in &todo {
            if seen.contains(&job.name.as_str()) {
                continue;
            }
            seen.push(&job.name);
            let per_epoch = dispatch(backend_of(job)?, job.config.precision, Estimate(job))?;
            let runs = todo.iter().filter(|j| j.name == job.name).count();
            println!(
                "  {}: {} epochs, about {} per epoch (a few batches timed), {} runs",
                job.name,
                job.config.epochs(),
                duration(per_epoch),
                runs
            );
            total += per_epoch * (job.config.epochs() * runs) as f64;
        }
        println!("  estimate: {} in all (less for runs already under way)", duration(total));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let (start, mut epochs_done, epochs_left) =
        (Instant::now(), 0usize, todo.iter().map(|j| j.config.epochs()).sum::<usize>());
    for (i, job) in jobs.iter().enumerate() {
        let label = format!("[{}/{}] {} seed {}", i + 1, jobs.len(), job.name, job.config.seed);
        if let JobStatus::Done(d) = job.status() {
            println!("{label}: done before ({}), skipped", d.outcome);
            continue;
        }
        let began = Instant::now();
        let outcome = dispatch(backend_of(job)?, job.config.precision, RunJob(job, stop.clone()))?;
        epochs_done += job.config.epochs();
        let elapsed = start.elapsed().as_secs_f64();
        let left = elapsed / epochs_done as f64 * epochs_left.saturating_sub(epochs_done) as f64;
        let what = match outcome {
            Some(Outcome::Finished) => "finished".to_string(),
            Some(Outcome::Diverged { label, epoch, .. }) => {
                format!("{label} diverged at epoch {epoch}")
            }
            Some(Outcome::Stopped) => {
                println!("{label}: stopped; run the same command again to continue");
                return Ok(ExitCode::from(130));
            }
            None => "done before".into(),
        };
        println!(
            "{label}: {what} in {}, about {} left",
            duration(began.elapsed().as_secs_f64()),
            duration(left)
        );
    }
    println!("sweep: all {} jobs done, in {}", jobs.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `0.4 s`, `12 s`, `3.4 min`, `2.1 h`.
fn duration(seconds: f64) -> String {
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

struct Estimate<'a>(&'a Job);

impl BackendJob for Estimate<'_> {
    type Output = f64;
    fn run<B: Backend>(self, be: B) -> anyhow::Result<f64> {
        self.0
            .seconds_per_epoch(be, 3)
            .map_err(cli_error)
            .with_context(|| format!("timing {}", self.0.source.display()))
    }
}

struct RunJob<'a>(&'a Job, Arc<AtomicBool>);

impl BackendJob for RunJob<'_> {
    type Output = Option<Outcome>;
    fn run<B: Backend>(self, be: B) -> anyhow::Result<Option<Outcome>> {
        self.0
            .run(be, self.1, &mut Silent)
            .map_err(cli_error)
            .with_context(|| format!("{} in {}", self.0.source.display(), self.0.dir.display()))
    }
}
