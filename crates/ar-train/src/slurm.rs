//! Sweeps on a SLURM cluster: one `sbatch` job-array script per sweep, one array task per
//! config x seed, each task mapped to its job through a manifest file written beside the script
//! (line N is task N). A task runs its one job with the local runner's skip/resume rules, so a
//! requeued or preempted task continues from its last checkpoint and a finished one is a no-op.
//! See docs/cluster.md.

use crate::config::TrainConfig;
use crate::sweep::{Job, Sweep};
use crate::TrainError;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the array script asks the scheduler for, and what each task runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (e.g. `2:00:00`), per task.
    pub time: Option<String>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--mem` (e.g. `4G`), per task.
    pub mem: Option<String>,
    /// `--gres` (e.g. `gpu:1`).
    pub gres: Option<String>,
    /// The `%N` throttle: at most this many tasks at once.
    pub array_limit: Option<u32>,
    /// Further `#SBATCH` options, each `KEY=VALUE` or `KEY` (`account=proj`, `qos=long`,
    /// `constraint=avx512`, `exclusive`).
    pub sbatch: Vec<String>,
    /// Shell lines each task runs before training (`module load gcc`, `source env.sh`).
    pub setup: Vec<String>,
    /// The command-line binary each task runs (a prebuilt `xtask` on the shared filesystem).
    pub binary: PathBuf,
    /// The data folder the tasks read (exported as `AR_DATA_DIR`); `None` leaves it to the
    /// binary's own default.
    pub data_dir: Option<PathBuf>,
}

/// `#SBATCH` options the script sets itself (the first five: the array, its logs, requeue) or
/// that have their own field; extra `sbatch` options may not repeat them.
const MANAGED: [&str; 10] = [
    "array",
    "output",
    "error",
    "open-mode",
    "requeue",
    "partition",
    "time",
    "cpus-per-task",
    "mem",
    "gres",
];

/// A sweep's array script and manifest, and where they go (`OUT/slurm/sweep-HASH.*`, the
/// hash taken over the manifest, the contents of its config files and the options, so the same
/// sweep always writes the same files and a changed config or option writes new ones).
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayJob {
    /// The `sbatch` script.
    pub script: String,
    /// The manifest: comment lines, then one line per task.
    pub manifest: String,
    /// Where the script goes.
    pub script_path: PathBuf,
    /// Where the manifest goes.
    pub manifest_path: PathBuf,
    /// The folder of the tasks' logs (`%A_%a.out`).
    pub log_dir: PathBuf,
    /// How many array tasks.
    pub tasks: usize,
}

const MANIFEST_HEADER: &str =
    "# One line per array task of a sweep, written by `sweep --slurm`: task, seed, \
epochs ('-': the config's own), backend, run directory, config file; tab-separated.\n";

/// The array script and manifest of `sweep` under `opts`. Paths are made absolute, since tasks
/// start wherever the scheduler puts them; a path holding whitespace, a quote or a backslash is
/// refused (an `#SBATCH` line cannot carry it).
pub fn array_job(sweep: &Sweep, opts: &SlurmOptions) -> Result<ArrayJob, TrainError> {
    if sweep.jobs.is_empty() {
        return Err(TrainError::Config { key: "sweep".into(), message: "no jobs to run".into() });
    }
    let out = absolute(&sweep.out)?;
    let mut manifest = String::from(MANIFEST_HEADER);
    for (task, job) in sweep.jobs.iter().enumerate() {
        let epochs = job.config.epochs.map_or("-".to_string(), |e| e.to_string());
        let (dir, source) = (absolute(&job.dir)?, absolute(&job.source)?);
        for path in [&dir, &source] {
            plain_path(path)?;
        }
        writeln!(
            manifest,
            "{task}\t{}\t{epochs}\t{}\t{}\t{}",
            job.config.seed,
            job.config.backend,
            dir.display(),
            source.display()
        )
        .expect("writes to a string");
    }
    let binary = absolute(&opts.binary)?;
    let tasks = sweep.jobs.len();
    let limit = opts.array_limit.map_or(String::new(), |n| format!("%{n}"));
    let mut lines = vec![
        "job-name=ar-sweep".to_string(),
        format!("array=0-{}{limit}", tasks - 1),
        "OUTPUT".into(),
        "open-mode=append".into(),
        "requeue".into(),
    ];
    let resources = [
        ("partition", opts.partition.clone()),
        ("time", opts.time.clone()),
        ("cpus-per-task", opts.cpus_per_task.map(|n| n.to_string())),
        ("mem", opts.mem.clone()),
        ("gres", opts.gres.clone()),
    ];
    for (flag, value) in resources {
        if let Some(v) = value {
            sbatch_value(flag, &v)?;
            lines.push(format!("{flag}={v}"));
        }
    }
    for option in &opts.sbatch {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        let bad = |message: String| TrainError::Config { key: "sbatch".into(), message };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            return Err(bad(format!("'{option}': expected KEY=VALUE or KEY, KEY in a-z and -")));
        }
        if let Some(i) = MANAGED.iter().position(|m| *m == key) {
            return Err(bad(match i {
                0..=4 => format!("'{option}': the script sets the array, its logs and requeue"),
                _ => format!("'{option}': use --{key}"),
            }));
        }
        if option.contains('=') {
            sbatch_value("sbatch", value)?;
        }
        lines.push(option.clone());
    }
    for line in &opts.setup {
        if line.contains(['\n', '\r', '\0']) || line.trim().is_empty() {
            return Err(TrainError::Config {
                key: "setup".into(),
                message: format!("{line:?}: one non-empty shell line per --setup"),
            });
        }
    }
    let data = match &opts.data_dir {
        Some(d) => {
            let d = absolute(d)?;
            plain_path(&d)?;
            Some(d)
        }
        None => None,
    };
    // The name: a hash of what the tasks will do, config contents included.
    let mut fingerprint = manifest.clone();
    let mut sources: Vec<&Path> = sweep.jobs.iter().map(|j| j.source.as_path()).collect();
    sources.dedup();
    for source in sources {
        let text = crate::config::read_config_text(source)?;
        fingerprint.push_str(&text);
    }
    for part in lines.iter().chain(&opts.setup) {
        fingerprint.push_str(part);
    }
    fingerprint.push_str(&format!("{:?} {:?}", binary, data));
    let slurm = out.join("slurm");
    let tag = format!("sweep-{:08x}", fnv1a(fingerprint.as_bytes()) as u32);
    let (script_path, manifest_path) =
        (slurm.join(format!("{tag}.sbatch")), slurm.join(format!("{tag}.tasks")));
    let log_dir = slurm.join("logs");
    for path in [&log_dir, &binary, &manifest_path] {
        plain_path(path)?;
    }
    lines[2] = format!("output={}/%A_%a.out", log_dir.display());
    let mut s = String::from("#!/bin/bash\n");
    s.push_str("# A sweep as a SLURM job array, written by `cargo xtask sweep --slurm`: task N\n");
    s.push_str("# runs line N of the manifest below with the local runner's skip/resume rules.\n");
    s.push_str("# Submit: sbatch THIS_FILE. Collect: cargo xtask report OUT (docs/cluster.md).\n");
    for line in lines {
        writeln!(s, "#SBATCH --{line}").expect("writes to a string");
    }
    s.push_str("set -euo pipefail\n");
    match &data {
        Some(data) => {
            writeln!(s, "export AR_DATA_DIR={}", quote(data)).expect("writes to a string");
        }
        None => s.push_str("# Data: the binary's own default (AR_DATA_DIR, else its datasets/).\n"),
    }
    for line in &opts.setup {
        writeln!(s, "{line}").expect("writes to a string");
    }
    writeln!(
        s,
        "exec {} sweep --manifest {} --task \"$SLURM_ARRAY_TASK_ID\"",
        quote(&binary),
        quote(&manifest_path)
    )
    .expect("writes to a string");
    Ok(ArrayJob { script: s, manifest, script_path, manifest_path, log_dir, tasks })
}

impl ArrayJob {
    /// Writes the script (executable), the manifest and the log folder.
    pub fn write(&self) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.log_dir).map_err(TrainError::io(&self.log_dir))?;
        std::fs::write(&self.manifest_path, &self.manifest)
            .map_err(TrainError::io(&self.manifest_path))?;
        std::fs::write(&self.script_path, &self.script)
            .map_err(TrainError::io(&self.script_path))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(&self.script_path, mode)
                .map_err(TrainError::io(&self.script_path))?;
        }
        Ok(())
    }
}

/// The CPUs SLURM gave this task (`SLURM_CPUS_PER_TASK`, set when the script asks for
/// `--cpus-per-task`), if any.
pub fn task_cpus() -> Result<Option<usize>, TrainError> {
    let Ok(text) = std::env::var("SLURM_CPUS_PER_TASK") else { return Ok(None) };
    text.trim().parse::<usize>().map(Some).map_err(|_| TrainError::Config {
        key: "threads".into(),
        message: format!("SLURM_CPUS_PER_TASK is '{text}', not a count of CPUs"),
    })
}

/// The job of array task `task` in `manifest`, its config read afresh from its file. A config
/// without `threads` trains on `cpus` threads when given (the task's [`task_cpus`]), so that a
/// task uses the CPUs it asked for rather than every core of a shared node.
pub fn task_job(manifest: &Path, task: usize, cpus: Option<usize>) -> Result<Job, TrainError> {
    let text = std::fs::read_to_string(manifest).map_err(TrainError::io(manifest))?;
    let bad = |message: String| TrainError::File { path: manifest.to_path_buf(), message };
    let line = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .find(|l| l.split('\t').next() == Some(task.to_string().as_str()))
        .ok_or_else(|| bad(format!("no task {task}")))?;
    let cols: Vec<&str> = line.split('\t').collect();
    let [_, seed, epochs, backend, dir, source] = cols[..] else {
        return Err(bad(format!(
            "task {task}: expected 6 tab-separated columns, found {}",
            cols.len()
        )));
    };
    let seed = seed.parse::<u64>().map_err(|_| bad(format!("task {task}: seed '{seed}'")))?;
    let epochs = match epochs {
        "-" => None,
        e => Some(e.parse::<usize>().map_err(|_| bad(format!("task {task}: epochs '{e}'")))?),
    };
    let source = PathBuf::from(source);
    let mut base = TrainConfig::read(&source)?;
    base.threads = base.threads.or(cpus);
    let name = source.file_stem().map_or("config".into(), |s| s.to_string_lossy().into_owned());
    Job::from_config(&name, &source, &base, seed, epochs, Some(backend), PathBuf::from(dir))
}

/// Submits `script` with `sbatch --parsable` and returns the job id.
pub fn submit(script: &Path) -> Result<String, TrainError> {
    let output = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| TrainError::Slurm(format!("running sbatch: {e} (is SLURM installed?)")))?;
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(TrainError::Slurm(format!(
            "sbatch {} failed ({}): {}",
            script.display(),
            output.status,
            err.trim()
        )));
    }
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    Ok(said.split(';').next().unwrap_or_default().to_string())
}

/// Refuses a value an `#SBATCH` line cannot carry (empty, whitespace, quotes, backslashes).
fn sbatch_value(flag: &str, v: &str) -> Result<(), TrainError> {
    if v.is_empty() || v.contains(|c: char| c.is_whitespace() || "'\"\\".contains(c)) {
        return Err(TrainError::Config {
            key: flag.into(),
            message: format!("'{v}' is not a value an #SBATCH line can carry"),
        });
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, TrainError> {
    std::path::absolute(path).map_err(TrainError::io(path))
}

fn plain_path(path: &Path) -> Result<(), TrainError> {
    if path.to_string_lossy().contains(|c: char| c.is_whitespace() || "'\"\\".contains(c)) {
        return Err(TrainError::File {
            path: path.to_path_buf(),
            message: "a path with whitespace, quotes or backslashes cannot go in a SLURM \
                      script; use another folder"
                .into(),
        });
    }
    Ok(())
}

/// `path` quoted for bash (only plain paths reach here, so single quotes suffice).
fn quote(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// 64-bit FNV-1a: a stable name for a manifest's files.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
