//! The run directory on disk: its lock, the tables of metrics and probes (JSON lines, with a CSV
//! copy), the checkpoint paths and the plots.
//!
//! Layout: `config.toml`, `metrics.{jsonl,csv}`, `probes.{jsonl,csv}`,
//! `checkpoints/<label>.safetensors`, `plots/{accuracy,gradient_angles}.svg`, and `lock`, which
//! a process holds (an advisory file lock, released when the process ends however it ends)
//! while it trains in the directory.

use crate::plot::{line_chart, Series};
use crate::{TrainConfig, TrainError};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The columns of `metrics.csv`, in order.
pub const METRICS_COLUMNS: [&str; 8] = [
    "algorithm",
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "seconds",
    "samples_per_second",
];

/// The columns of `probes.csv`, in order.
pub const PROBES_COLUMNS: [&str; 9] = [
    "algorithm",
    "step",
    "epoch",
    "layer",
    "angle_deg",
    "relative_error",
    "signal_error",
    "feedback_angle_deg",
    "feedback_norm_ratio",
];

/// A new run directory under `parent` named by the time now (UTC), the data set and the
/// algorithms (`20261127-153000-mnist-ar-bp`), numbered (`-2`, `-3`, ...) if taken.
pub fn timestamped_dir(parent: &Path, config: &TrainConfig) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = run_name(secs, config);
    let mut dir = parent.join(&name);
    let mut n = 2;
    while dir.exists() {
        dir = parent.join(format!("{name}-{n}"));
        n += 1;
    }
    dir
}

/// `YYYYMMDD-HHMMSS-DATASET-ALGORITHMS` for `unix_seconds` (UTC).
fn run_name(unix_seconds: u64, config: &TrainConfig) -> String {
    let (days, rem) = (unix_seconds / 86400, unix_seconds % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let algs: Vec<String> = config.algorithms.iter().map(|a| a.to_string()).collect();
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{year:04}{month:02}{day:02}-{h:02}{m:02}{s:02}-{}-{}", config.dataset, algs.join("-"))
}

/// An open run directory, locked by this process for as long as the value lives.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    _lock: File,
}

impl RunDir {
    /// Creates `path` (and its `checkpoints/` and `plots/` folders) if needed and takes its
    /// lock; fails with [`TrainError::Locked`] naming the holder's pid if another process has it.
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        for dir in [path.to_path_buf(), path.join("checkpoints"), path.join("plots")] {
            std::fs::create_dir_all(&dir).map_err(TrainError::io(&dir))?;
        }
        let lock_path = path.join("lock");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(TrainError::io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                lock.read_to_string(&mut pid).ok();
                let pid = pid.trim();
                if pid == std::process::id().to_string() {
                    return Err(TrainError::RunDir(format!(
                        "{} is in use by a session of this same process: drop that session \
                         (which releases the directory) before opening it again",
                        path.display()
                    )));
                }
                return Err(TrainError::Locked {
                    dir: path.to_path_buf(),
                    pid: if pid.is_empty() { "unknown".into() } else { pid.into() },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(TrainError::io(&lock_path)(e)),
        }
        lock.set_len(0).map_err(TrainError::io(&lock_path))?;
        lock.rewind().map_err(TrainError::io(&lock_path))?;
        write!(lock, "{}", std::process::id()).map_err(TrainError::io(&lock_path))?;
        Ok(RunDir { path: path.to_path_buf(), _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint of the algorithm labelled `label` (`+` and `'` become `_` in the name).
    pub fn checkpoint(&self, label: &str) -> PathBuf {
        checkpoint_path(&self.path, label)
    }

    /// Appends one row to the table `stem` (`metrics` or `probes`): a JSON line, and a CSV line
    /// under a header of `columns` written when the CSV file is new.
    pub fn append<T: Serialize>(
        &self,
        stem: &str,
        columns: &[&str],
        row: &T,
    ) -> Result<(), TrainError> {
        let value = serde_json::to_value(row).expect("rows serialise");
        let jsonl = self.path.join(format!("{stem}.jsonl"));
        let csv = self.path.join(format!("{stem}.csv"));
        let fresh = std::fs::metadata(&csv).map_or(true, |m| m.len() == 0);
        let mut text = String::new();
        if fresh {
            text = columns.join(",") + "\n";
        }
        text += &csv_line(&value, columns);
        append_to(&csv, &text)?;
        append_to(&jsonl, &(serde_json::to_string(&value).expect("rows serialise") + "\n"))
    }

    /// The rows of table `stem` (lines that do not parse, such as a line torn by a crash, are
    /// skipped).
    pub fn rows(&self, stem: &str) -> Vec<Value> {
        read_rows(&self.path.join(format!("{stem}.jsonl")))
    }

    /// Rewrites table `stem` (both files) keeping only the rows `keep` accepts. Where only the
    /// CSV is left (`probes.jsonl` is not committed with a run, so a clone of the repository
    /// has only `probes.csv`), its rows are read from it, the kept lines stay as they were, and
    /// the JSON lines are written anew beside them.
    pub fn retain(
        &self,
        stem: &str,
        columns: &[&str],
        keep: impl Fn(&Value) -> bool,
    ) -> Result<(), TrainError> {
        let jsonl = self.path.join(format!("{stem}.jsonl"));
        let csv = self.path.join(format!("{stem}.csv"));
        if !jsonl.exists() {
            let Some((header, rows)) = read_csv_rows(&csv) else { return Ok(()) };
            let (mut json_text, mut csv_text) = (String::new(), header + "\n");
            for (row, line) in rows.iter().filter(|(r, _)| keep(r)) {
                json_text += &(serde_json::to_string(row).expect("rows serialise") + "\n");
                csv_text += &(line.to_string() + "\n");
            }
            replace(&jsonl, &json_text)?;
            return replace(&csv, &csv_text);
        }
        let rows: Vec<Value> = read_rows(&jsonl).into_iter().filter(|r| keep(r)).collect();
        let mut json_text = String::new();
        let mut csv_text = columns.join(",") + "\n";
        for r in &rows {
            json_text += &(serde_json::to_string(r).expect("rows serialise") + "\n");
            csv_text += &csv_line(r, columns);
        }
        replace(&jsonl, &json_text)?;
        replace(&self.path.join(format!("{stem}.csv")), &csv_text)
    }

    /// Redraws the plots from the metrics and probe tables.
    pub fn write_plots(&self) -> Result<(), TrainError> {
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let mut accuracy: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for row in self.rows("metrics") {
            let alg = text(&row, "algorithm");
            for split in ["test", "train"] {
                accuracy
                    .entry(format!("{alg} {split}"))
                    .or_default()
                    .push((num(&row, "epoch"), 100.0 * num(&row, &format!("{split}_accuracy"))));
            }
        }
        let series = |m: BTreeMap<String, Vec<(f64, f64)>>| -> Vec<Series> {
            m.into_iter().map(|(name, points)| Series { name, points, band: Vec::new() }).collect()
        };
        let svg = line_chart("accuracy", "epoch", "accuracy (%)", &series(accuracy));
        write_plot(&self.path.join("plots/accuracy.svg"), &svg)?;
        let mut angles: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for row in self.rows("probes") {
            let key = format!("{} layer {}", text(&row, "algorithm"), num(&row, "layer"));
            angles.entry(key).or_default().push((num(&row, "step"), num(&row, "angle_deg")));
        }
        if !angles.is_empty() {
            let svg = line_chart(
                "angle between the update and the gradient",
                "training step",
                "degrees",
                &series(angles),
            );
            write_plot(&self.path.join("plots/gradient_angles.svg"), &svg)?;
        }
        Ok(())
    }
}

/// The checkpoint of the algorithm labelled `label` in run directory `dir`.
pub fn checkpoint_path(dir: &Path, label: &str) -> PathBuf {
    dir.join("checkpoints").join(format!("{}.safetensors", label.replace(['\'', '+'], "_")))
}

fn csv_line(value: &Value, columns: &[&str]) -> String {
    let cells: Vec<String> = columns
        .iter()
        .map(|c| match value.get(c) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
        .collect();
    cells.join(",") + "\n"
}

fn read_rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// One CSV cell of column `column` as the JSON value [`RunDir::append`] wrote beside it: the
/// algorithm label as a string, an empty cell as null, any other as the JSON it reads as
/// (integers and other numbers). `None` for a cell that is no JSON (a `NaN` measurement, which
/// JSON cannot hold, or a damaged cell).
pub(crate) fn csv_value(column: &str, cell: &str) -> Option<Value> {
    if column == "algorithm" {
        Some(Value::String(cell.to_string()))
    } else if cell.is_empty() {
        Some(Value::Null)
    } else {
        serde_json::from_str(cell).ok()
    }
}

/// The header and rows of a CSV table as [`RunDir::append`] writes it (cells never quoted): each
/// row as the JSON object beside it (see [`csv_value`]; a cell that is no JSON becomes null)
/// with its line. `None` where the file is absent or empty.
fn read_csv_rows(path: &Path) -> Option<(String, Vec<(Value, String)>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let header = lines.next()?.to_string();
    let names: Vec<&str> = header.split(',').collect();
    let rows = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let row = names
                .iter()
                .zip(line.split(','))
                .map(|(&n, c)| (n.to_string(), csv_value(n, c).unwrap_or(Value::Null)));
            (Value::Object(row.collect()), line.to_string())
        })
        .collect();
    Some((header, rows))
}

fn append_to(path: &Path, text: &str) -> Result<(), TrainError> {
    let mut f =
        OpenOptions::new().create(true).append(true).open(path).map_err(TrainError::io(path))?;
    f.write_all(text.as_bytes()).map_err(TrainError::io(path))
}

/// Replaces `path`'s contents atomically (a temporary file beside it, renamed over it).
fn replace(path: &Path, text: &str) -> Result<(), TrainError> {
    ar_models::write_atomically(path, text.as_bytes())?;
    Ok(())
}

fn write_plot(path: &Path, svg: &str) -> Result<(), TrainError> {
    std::fs::write(path, svg).map_err(TrainError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_carry_the_utc_date_and_time() {
        let c = TrainConfig::default();
        // 2024-02-29 23:59:58 UTC, a leap day; and the epoch itself.
        assert_eq!(run_name(1_709_251_198, &c), "20240229-235958-digits-ar-bp");
        assert_eq!(run_name(0, &c), "19700101-000000-digits-ar-bp");
    }

    #[test]
    fn a_table_left_only_as_csv_is_cut_from_its_csv_and_gets_its_json_lines_back() {
        let dir = std::env::temp_dir().join(format!("ar-train-retain-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let run = RunDir::open(&dir).unwrap();
        let columns = ["algorithm", "step", "angle_deg", "feedback_angle_deg"];
        let lines = ["ar,50,0.00003963982439089707,", "bp,50,0,", "ar,100,1.5e-3,", "ar,150,2,"];
        let csv = dir.join("probes.csv");
        std::fs::write(&csv, format!("{}\n{}\n", columns.join(","), lines.join("\n"))).unwrap();
        let keep = |r: &Value| r["algorithm"] != "ar" || r["step"].as_f64() <= Some(100.0);
        run.retain("probes", &columns, keep).unwrap();
        // The kept lines exactly as they were (no number rewritten), the dropped one gone.
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(text, format!("{}\n{}\n", columns.join(","), lines[..3].join("\n")));
        let rows = run.rows("probes");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["step"], 50);
        assert_eq!(rows[0]["angle_deg"].as_f64(), Some(0.00003963982439089707));
        assert_eq!(rows[1]["algorithm"], "bp");
        assert!(rows[2]["feedback_angle_deg"].is_null());
        // With the JSON lines back, the usual path keeps the same rows.
        run.retain("probes", &columns, |_| true).unwrap();
        assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 4);
        drop(run);
        std::fs::remove_dir_all(&dir).ok();
    }
}
