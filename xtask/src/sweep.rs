//! `cargo xtask sweep`: every config x seed into its own run directory through
//! `ar_train::sweep`; running the same command again skips finished runs and resumes the
//! interrupted one. `--slurm` writes the sweep as a SLURM job array (`ar_train::slurm`), whose
//! tasks come back here as `--manifest FILE --task N`.

use crate::backend::BackendName;
use crate::train::cli_error;
use crate::UsageError;
use anyhow::Context;
use ar_train::slurm::{submit, task_cpus, task_job, SlurmOptions};
use ar_train::sweep::{human_duration as duration, plan, run_parallel, Job, JobStatus};
use ar_train::Outcome;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// Flags of `sweep`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Config files, or folders whose *.toml files are configs (experiments/paper1, ...).
    #[arg(required_unless_present = "manifest", value_name = "CONFIG_OR_DIR")]
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
    #[arg(long, value_parser = crate::backend::parser())]
    backend: Option<BackendName>,
    /// Skip the time estimate (it trains a few batches of each config first).
    #[arg(long)]
    no_estimate: bool,
    /// Jobs trained at once. Seconds per epoch are comparable across runs only at 1, on an
    /// otherwise idle machine.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    jobs: usize,
    #[command(flatten)]
    slurm: SlurmArgs,
}

/// The SLURM route of `sweep` (docs/cluster.md).
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "SLURM")]
struct SlurmArgs {
    /// Write the sweep as one sbatch job-array script (one task per config x seed) and its
    /// manifest under OUT/slurm/, instead of running it here.
    #[arg(long)]
    slurm: bool,
    /// With --slurm: submit the script with sbatch and print the job id.
    #[arg(long, requires = "slurm")]
    submit: bool,
    /// With --slurm: print the script and manifest, write and submit nothing.
    #[arg(long, requires = "slurm", conflicts_with = "submit")]
    dry_run: bool,
    /// The partition of every task.
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// Each task's time limit (e.g. 2:00:00); a task cut by it resumes when the script is
    /// submitted again.
    #[arg(long, requires = "slurm")]
    time: Option<String>,
    /// CPUs per task.
    #[arg(long, requires = "slurm")]
    cpus_per_task: Option<u32>,
    /// Memory per task (e.g. 4G).
    #[arg(long, requires = "slurm")]
    mem: Option<String>,
    /// Generic resources per task (e.g. gpu:1, with --backend candle-cuda).
    #[arg(long, requires = "slurm")]
    gres: Option<String>,
    /// At most this many tasks at once (the array's %N throttle).
    #[arg(long, requires = "slurm")]
    array_limit: Option<u32>,
    /// A further #SBATCH option, KEY=VALUE or KEY (account=proj, qos=long,
    /// constraint=avx512, exclusive); repeatable.
    #[arg(long, requires = "slurm", value_name = "KEY[=VALUE]")]
    sbatch: Vec<String>,
    /// A shell line each task runs before training (e.g. "module load cuda"); repeatable.
    #[arg(long, requires = "slurm", value_name = "LINE")]
    setup: Vec<String>,
    /// The xtask binary the tasks run, on the shared filesystem (default: this one). Build it
    /// once with `cargo build --release -p xtask`.
    #[arg(long, requires = "slurm")]
    binary: Option<PathBuf>,
    /// The data folder the tasks read (default: $AR_DATA_DIR if set, else the binary's own
    /// datasets/; with --binary naming another build, required).
    #[arg(long, requires = "slurm", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Run one task of a sweep written by --slurm: its manifest (what the array script calls).
    #[arg(long, requires = "task", conflicts_with = "slurm")]
    manifest: Option<PathBuf>,
    /// The task's number (SLURM_ARRAY_TASK_ID).
    #[arg(long, requires = "manifest")]
    task: Option<usize>,
}

/// The seeds of a sweep.
#[derive(Clone, Debug)]
pub struct Seeds(Vec<u64>);

fn parse_seeds(s: &str) -> Result<Seeds, String> {
    ar_train::sweep::parse_seeds(s).map(Seeds)
}

/// Plans the sweep, prints the plan, and runs every job not yet done; or writes it as a SLURM
/// array; or runs one task of such an array.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    // Ctrl-C, and the SIGTERM a scheduler sends before requeueing or preempting a task.
    let signals = crate::signals::stop_on_signals(&stop);
    if let (Some(manifest), Some(task)) = (&args.slurm.manifest, args.slurm.task) {
        let job = task_job(manifest, task, task_cpus().map_err(cli_error)?).map_err(cli_error)?;
        return run_jobs(&[job], 1, &stop, &signals);
    }
    let backend = args.backend.map(|b| b.to_string());
    let sweep = plan(&args.inputs, &args.seeds.0, args.epochs, backend.as_deref(), &args.out)
        .map_err(cli_error)?;
    if sweep.jobs.is_empty() {
        return Err(UsageError("no config files found in the given paths".into()).into());
    }
    if args.slurm.slurm {
        return write_array(&sweep, args.slurm);
    }
    let todo = sweep.todo();
    let partial = todo.iter().filter(|j| j.status() == JobStatus::Partial).count();
    let damaged = sweep.jobs.iter().filter(|j| matches!(j.status(), JobStatus::Damaged(_))).count();
    println!(
        "sweep: {} jobs ({} configs x {} seeds) into {}: {} done, {} to resume, {} to start{}",
        sweep.jobs.len(),
        sweep.configs,
        sweep.seeds.len(),
        args.out.display(),
        sweep.jobs.len() - todo.len() - damaged,
        partial,
        todo.len() - partial,
        match damaged {
            0 => String::new(),
            n => format!(", {n} marked done but damaged (listed at the end)"),
        }
    );
    if !args.no_estimate && !todo.is_empty() {
        let mut total = 0.0;
        for (job, runs) in sweep.conditions_to_do() {
            let per_epoch = ar_engine::seconds_per_epoch(job, 3)
                .map_err(cli_error)
                .with_context(|| format!("timing {}", job.source.display()))?;
            let epochs = job.config.epochs();
            let each = duration(per_epoch);
            let (e, r) = (plural(epochs, "epoch"), plural(runs, "run"));
            println!("  {}: {e}, about {each} per epoch (a few batches timed), {r}", job.name);
            total += per_epoch * (epochs * runs) as f64;
        }
        println!("  estimate: {} in all (less for runs already under way)", duration(total));
    }
    run_jobs(&sweep.jobs, args.jobs, &stop, &signals)
}

/// `n` and its noun, plural where it is not 1 (`1 epoch`, `2 epochs`).
fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Runs every job not done, `workers` at a time, one progress line each. A job that fails (or
/// is marked done but damaged) does not stop the others: the failures are listed at the end
/// and the exit status is 1. Exit status 128 + the signal's number when stopped by one (130
/// for Ctrl-C, 143 for SIGTERM).
fn run_jobs(
    jobs: &[Job],
    workers: usize,
    stop: &Arc<AtomicBool>,
    signals: &crate::signals::Stopper,
) -> anyhow::Result<ExitCode> {
    let label = |i: usize| {
        format!("[{}/{}] {} seed {}", i + 1, jobs.len(), jobs[i].name, jobs[i].config.seed)
    };
    let mut todo = Vec::new();
    let mut failures: Vec<(String, anyhow::Error)> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match job.status() {
            JobStatus::Done(d) => println!("{}: done before ({}), skipped", label(i), d.outcome),
            JobStatus::Damaged(why) => {
                println!("{}: marked done, but damaged: {why}", label(i));
                let message = format!(
                    "{}: marked done, but {why}; move the directory away to train it again",
                    job.dir.display()
                );
                failures.push((label(i), anyhow::anyhow!(message)));
            }
            _ => todo.push(i),
        }
    }
    let epochs_left: usize = todo.iter().map(|&i| jobs[i].config.epochs()).sum();
    let (start, mut epochs_done) = (Instant::now(), 0usize);
    let mut stopped = false;
    let pending: Vec<Job> = todo.iter().map(|&i| jobs[i].clone()).collect();
    let run = |job: &Job| {
        if job.status() == JobStatus::Partial {
            println!("{} seed {}: resuming in {}", job.name, job.config.seed, job.dir.display());
        }
        let began = Instant::now();
        let outcome = ar_engine::run_job(job, stop.clone()).map_err(cli_error);
        let outcome =
            outcome.with_context(|| format!("{} in {}", job.source.display(), job.dir.display()));
        outcome.map(|o| (o, began.elapsed().as_secs_f64()))
    };
    run_parallel(&pending, workers, stop, run, |k, result| {
        let name = label(todo[k]);
        let (outcome, took) = match result {
            Ok(r) => r,
            Err(e) => {
                println!("{name}: failed: {e:#}");
                failures.push((name, e));
                return;
            }
        };
        epochs_done += pending[k].config.epochs();
        let elapsed = start.elapsed().as_secs_f64();
        let left = elapsed / epochs_done as f64 * epochs_left.saturating_sub(epochs_done) as f64;
        let what = match outcome {
            Some(Outcome::Finished) => "finished".to_string(),
            Some(Outcome::Diverged { label, epoch, .. }) => {
                format!("{label} diverged at epoch {epoch}")
            }
            Some(Outcome::Stopped) => {
                stopped = true;
                return println!("{name}: stopped; run the same command again to continue");
            }
            None => "done before".into(),
        };
        println!("{name}: {what} in {}, about {} left", duration(took), duration(left));
    });
    if stopped {
        return Ok(ExitCode::from(signals.exit_code()));
    }
    if !failures.is_empty() {
        eprintln!("sweep: {} of {} jobs failed:", failures.len(), jobs.len());
        for (name, e) in &failures {
            eprintln!("  {name}: {e:#}");
        }
        return Ok(ExitCode::FAILURE);
    }
    println!("sweep: all {} jobs done", jobs.len());
    Ok(ExitCode::SUCCESS)
}

/// Writes (or with --dry-run prints) the sweep's array script and manifest; with --submit,
/// submits it.
fn write_array(sweep: &ar_train::sweep::Sweep, a: SlurmArgs) -> anyhow::Result<ExitCode> {
    let this = std::env::current_exe().context("finding this binary for the tasks")?;
    let opts = SlurmOptions {
        partition: a.partition,
        time: a.time,
        cpus_per_task: a.cpus_per_task,
        mem: a.mem,
        gres: a.gres,
        array_limit: a.array_limit,
        sbatch: a.sbatch,
        setup: a.setup,
        binary: a.binary.unwrap_or_else(|| this.clone()),
        data_dir: a.data_dir.or_else(|| crate::USER_DATA_DIR.get().cloned().flatten()),
    };
    let array = ar_engine::checked_array_job(sweep, &opts, &this).map_err(cli_error)?;
    if a.dry_run {
        print!(
            "# {}\n{}\n# {}\n{}",
            array.script_path.display(),
            array.script,
            array.manifest_path.display(),
            array.manifest
        );
        return Ok(ExitCode::SUCCESS);
    }
    array.write().map_err(cli_error)?;
    println!(
        "wrote {} ({} array tasks) and {}",
        array.script_path.display(),
        array.tasks,
        array.manifest_path.display()
    );
    if a.submit {
        let id = submit(&array.script_path).map_err(cli_error)?;
        println!("submitted job {id}: squeue -j {id}; logs in {}", array.log_dir.display());
    } else {
        println!("submit with: sbatch {}", array.script_path.display());
    }
    Ok(ExitCode::SUCCESS)
}
