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
    /// The command-line binary each task runs (a prebuilt `xtask` on the shared filesystem).
    pub binary: PathBuf,
    /// The data folder the tasks read (`AR_DATA_DIR`), when known.
    pub data_dir: Option<PathBuf>,
}

/// A sweep's array script and manifest, and where they go (`OUT/slurm/sweep-HASH.*`, the
/// hash taken over the manifest, so the same sweep always writes the same files).
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
    let slurm = out.join("slurm");
    let tag = format!("sweep-{:08x}", fnv1a(manifest.as_bytes()) as u32);
    let (script_path, manifest_path) =
        (slurm.join(format!("{tag}.sbatch")), slurm.join(format!("{tag}.tasks")));
    let log_dir = slurm.join("logs");
    let binary = absolute(&opts.binary)?;
    for path in [&log_dir, &binary, &manifest_path] {
        plain_path(path)?;
    }
    let tasks = sweep.jobs.len();
    let limit = opts.array_limit.map_or(String::new(), |n| format!("%{n}"));
    let mut lines = vec![
        "job-name=ar-sweep".to_string(),
        format!("array=0-{}{limit}", tasks - 1),
        format!("output={}/%A_%a.out", log_dir.display()),
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
            if v.is_empty() || v.contains(|c: char| c.is_whitespace() || "'\"\\".contains(c)) {
                return Err(TrainError::Config {
                    key: flag.into(),
                    message: format!("'{v}' is not a value an #SBATCH line can carry"),
                });
            }
            lines.push(format!("{flag}={v}"));
        }
    }
    let mut s = String::from("#!/bin/bash\n");
    s.push_str("# A sweep as a SLURM job array, written by `cargo xtask sweep --slurm`: task N\n");
    s.push_str("# runs line N of the manifest below with the local runner's skip/resume rules.\n");
    s.push_str("# Submit: sbatch THIS_FILE. Collect: cargo xtask report OUT (docs/cluster.md).\n");
    for line in lines {
        writeln!(s, "#SBATCH --{line}").expect("writes to a string");
    }
    s.push_str("set -euo pipefail\n");
    if let Some(data) = &opts.data_dir {
        let data = absolute(data)?;
        plain_path(&data)?;
        writeln!(s, "export AR_DATA_DIR={}", quote(&data)).expect("writes to a string");
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

/// The job of array task `task` in `manifest`, its config read afresh from its file.
pub fn task_job(manifest: &Path, task: usize) -> Result<Job, TrainError> {
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
    let base = TrainConfig::read(&source)?;
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
