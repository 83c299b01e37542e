//! Reports over a sweep's run directories (`OUT/CONDITION/seed-N`, see [`crate::sweep`]): per
//! condition and algorithm, final and best test accuracy as mean +- sd over seeds, the epoch of
//! the best, each layer's final angle to the exact gradient, seconds per epoch, and how runs
//! ended; as markdown tables and one SVG of accuracy curves (mean and range over seeds) per data
//! set and model.

use crate::config::TrainConfig;
use crate::plot::{line_chart, Series};
use crate::probe::ProbeRow;
use crate::session::EpochMetrics;
use crate::sweep::{Done, DONE_FILE};
use crate::TrainError;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One run directory's results.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// The condition (the config's name, the run directory's parent).
    pub condition: String,
    /// The run directory.
    pub dir: PathBuf,
    /// Its config.
    pub config: TrainConfig,
    /// Per-epoch metrics, every algorithm.
    pub metrics: Vec<EpochMetrics>,
    /// Probe rows, every algorithm.
    pub probes: Vec<ProbeRow>,
    /// How the run ended (`None`: not ended, or not run by a sweep).
    pub done: Option<Done>,
}

/// Every run directory under `root` (`root/CONDITION/RUN/config.toml`), in name order.
pub fn collect(root: &Path) -> Result<Vec<RunRecord>, TrainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let mut records = Vec::new();
    let mut conditions: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(io(root))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    conditions.sort();
    for condition_dir in conditions {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(&condition_dir)
            .map_err(io(&condition_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("config.toml").is_file())
            .collect();
        runs.sort();
        for dir in runs {
            let config = TrainConfig::read(&dir.join("config.toml"))?;
            let done = std::fs::read_to_string(dir.join(DONE_FILE))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            records.push(RunRecord {
                condition: condition_dir
                    .file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
                metrics: json_rows(&dir.join("metrics.jsonl"))?,
                probes: probe_rows(&dir)?,
                config,
                done,
                dir,
            });
        }
    }
    Ok(records)
}

/// The rows of a JSON-lines table (none if the file is missing); a torn last line is ignored.
fn json_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, TrainError> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => {
                return Err(TrainError::File {
                    path: path.to_path_buf(),
                    message: format!("line {}: {e}", i + 1),
                })
            }
        }
    }
    Ok(out)
}

/// The probe rows of a run: `probes.jsonl`, or `probes.csv` where only the CSV was kept (the
/// committed results keep the CSV, a sixth of the size). A measurement that is not finite (a
/// relative error of a zero gradient, a diverging run) is written as null or an empty cell, or
/// as `NaN` in the CSV; such rows are left out.
fn probe_rows(dir: &Path) -> Result<Vec<ProbeRow>, TrainError> {
    if dir.join("probes.jsonl").is_file() {
        let path = dir.join("probes.jsonl");
        let values: Vec<serde_json::Value> = json_rows(&path)?;
        let mut out = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            if let Some(row) = probe_row(value, &path, i + 1)? {
                out.push(row);
            }
        }
        return Ok(out);
    }
    let path = dir.join("probes.csv");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(Vec::new()) };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let bad = |message: String| TrainError::File { path: path.clone(), message };
    let mut out = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != header.len() {
            continue; // a torn last line
        }
        // Every column by name, as JSON, so serde reads it like a JSON-lines row. A NaN or
        // infinite measurement (a diverging run) has no JSON form: such rows are left out.
        let mut row = serde_json::Map::new();
        let mut finite = true;
        for (name, cell) in header.iter().zip(&cells) {
            let value = if *name == "algorithm" {
                serde_json::Value::String((*cell).to_string())
            } else if cell.is_empty() {
                serde_json::Value::Null
            } else if let Ok(v) = serde_json::from_str(cell) {
                v
            } else if cell.parse::<f64>().is_ok() {
                finite = false;
                serde_json::Value::Null
            } else {
                return Err(bad(format!("line {}: '{cell}' in column {name}", i + 2)));
            };
            row.insert((*name).to_string(), value);
        }
        if finite {
            out.extend(probe_row(serde_json::Value::Object(row), &path, i + 2)?);
        }
    }
    Ok(out)
}

/// One probe row from its JSON form; `None` when a measurement it needs is null (not finite).
fn probe_row(
    value: serde_json::Value,
    path: &Path,
    line: usize,
) -> Result<Option<ProbeRow>, TrainError> {
    let has_null = value.as_object().is_some_and(|m| m.values().any(|v| v.is_null()));
    match serde_json::from_value(value) {
        Ok(row) => Ok(Some(row)),
        Err(_) if has_null => Ok(None),
        Err(e) => {
            Err(TrainError::File { path: path.to_path_buf(), message: format!("line {line}: {e}") })
        }
    }
}

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// One condition x algorithm, over its seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The condition (config name).
    pub condition: String,
    /// The data set.
    pub dataset: String,
    /// The table the row goes in: data set and model (see [`table_of`]).
    pub table: String,
    /// The algorithm's label.
    pub algorithm: String,
    /// Runs with at least one epoch.
    pub n: usize,
    /// The most epochs any of them reached.
    pub epochs: usize,
    /// Final test accuracy, mean and sd (fractions).
    pub final_accuracy: (f64, f64),
    /// Best test accuracy, mean and sd.
    pub best_accuracy: (f64, f64),
    /// The epoch of the best, mean over seeds.
    pub best_epoch: f64,
    /// Each layer's angle to the exact gradient at its last probe, mean over seeds.
    pub angles: Vec<(usize, f64)>,
    /// Each layer's relative error `||update - gradient|| / ||gradient||` at its last probe,
    /// mean over seeds.
    pub relative_errors: Vec<(usize, f64)>,
    /// Seconds of training per epoch, mean.
    pub seconds_per_epoch: f64,
    /// How runs that did not finish ended (diverged, or still under way).
    pub notes: Vec<String>,
    /// The config file name the runs came from, for the reproducing command.
    pub source: String,
    /// The seeds of its runs, ascending (those that ended before an epoch included).
    pub seeds: Vec<u64>,
    /// The epochs its runs were asked for (the most, if they differ).
    pub epochs_asked: usize,
    /// The epochs its config file asks for, where the file is known.
    pub source_epochs: Option<usize>,
}

impl Row {
    /// The `sweep` options that reproduce the row: its seeds, and its epochs where its runs
    /// were asked for another number than its config file says (`--seeds 0 --epochs 5`).
    pub fn sweep_options(&self) -> String {
        let s = &self.seeds;
        let seeds = match s.as_slice() {
            [] => "0..3".to_string(),
            [one] => one.to_string(),
            [first, .., last] if s.windows(2).all(|w| w[1] == w[0] + 1) => {
                format!("{first}..{}", last + 1)
            }
            _ => s.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
        };
        match self.source_epochs {
            Some(e) if e == self.epochs_asked => format!("--seeds {seeds}"),
            _ => format!("--seeds {seeds} --epochs {}", self.epochs_asked),
        }
    }
}

/// The table's rows: one per condition x algorithm, in condition order.
pub fn summarize(records: &[RunRecord]) -> Vec<Row> {
    let mut groups: BTreeMap<(String, String), Vec<&RunRecord>> = BTreeMap::new();
    for r in records {
        let mut labels: Vec<String> = r.metrics.iter().map(|m| m.algorithm.clone()).collect();
        if labels.is_empty() {
            // Stopped before its first epoch ended (a divergence, say): still a row.
            labels =
                r.config.algorithms.iter().map(|&a| r.config.algorithm(a).to_string()).collect();
        }
        for label in labels {
            let runs = groups.entry((r.condition.clone(), label)).or_default();
            if !runs.iter().any(|x| x.dir == r.dir) {
                runs.push(r);
            }
        }
    }
    let mut out = Vec::new();
    for ((condition, algorithm), runs) in groups {
        let (mut finals, mut bests, mut best_epochs, mut seconds) =
            (vec![], vec![], vec![], vec![]);
        let mut angles: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        let mut errors: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        let mut notes = Vec::new();
        let mut epochs = 0;
        let mut seeds: Vec<u64> = runs.iter().map(|r| r.config.seed).collect();
        seeds.sort_unstable();
        let epochs_asked = runs.iter().map(|r| r.config.epochs()).max().unwrap_or(0);
        for r in &runs {
            let history: Vec<&EpochMetrics> =
                r.metrics.iter().filter(|m| m.algorithm == algorithm).collect();
            let seed = r.config.seed;
            let Some(last) = history.last() else {
                match &r.done {
                    Some(d) if d.outcome == "finished" => {}
                    Some(d) => {
                        notes.push(format!("seed {seed}: {}, before an epoch ended", d.outcome))
                    }
                    None => notes.push(format!("seed {seed}: not finished (0 epochs)")),
                }
                continue;
            };
            epochs = epochs.max(last.epoch);
            finals.push(last.test_accuracy);
            let best = history.iter().fold(history[0], |b, m| {
                if m.test_accuracy > b.test_accuracy {
                    m
                } else {
                    b
                }
            });
            bests.push(best.test_accuracy);
            best_epochs.push(best.epoch as f64);
            seconds.extend(history.iter().map(|m| m.seconds));
            if let Some(step) =
                r.probes.iter().filter(|p| p.algorithm == algorithm).map(|p| p.step).max()
            {
                for p in r.probes.iter().filter(|p| p.algorithm == algorithm && p.step == step) {
                    angles.entry(p.probe.layer).or_default().push(p.probe.angle_deg);
                    errors.entry(p.probe.layer).or_default().push(p.probe.relative_error);
                }
            }
            match &r.done {
                Some(d) if d.outcome != "finished" => {
                    notes.push(format!("seed {seed}: {}", d.outcome))
                }
                None => notes.push(format!("seed {seed}: not finished ({} epochs)", last.epoch)),
                _ => {}
            }
        }
        if finals.is_empty() && notes.is_empty() {
            continue;
        }
        let no_epoch = finals.is_empty();
        let nan = (f64::NAN, f64::NAN);
        out.push(Row {
            dataset: runs[0].config.dataset.clone(),
            table: table_of(&runs[0].config),
            source: format!("{condition}.toml"),
            condition,
            algorithm,
            n: finals.len(),
            epochs,
            final_accuracy: if no_epoch { nan } else { mean_sd(&finals) },
            best_accuracy: if no_epoch { nan } else { mean_sd(&bests) },
            best_epoch: if no_epoch { f64::NAN } else { mean_sd(&best_epochs).0 },
            angles: angles.into_iter().map(|(l, a)| (l, mean_sd(&a).0)).collect(),
            relative_errors: errors.into_iter().map(|(l, e)| (l, mean_sd(&e).0)).collect(),
            seconds_per_epoch: if no_epoch { f64::NAN } else { mean_sd(&seconds).0 },
            notes,
            seeds,
            epochs_asked,
            source_epochs: None,
        });
    }
    out
}

/// Keeps the runs of the conditions `configs` names (by file stem), where any are given: a
/// report over some configs leaves out the other conditions' runs in the same folder.
pub fn keep_configs(records: &mut Vec<RunRecord>, configs: &[PathBuf]) {
    if configs.is_empty() {
        return;
    }
    let stems: Vec<String> = configs
        .iter()
        .filter_map(|c| c.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    records.retain(|r| stems.contains(&r.condition));
}

/// Cuts every run back to its first `epochs` epochs (metrics and probes), as if each had been
/// asked for that many: the table at an earlier epoch, from the same runs.
pub fn truncate(records: &mut [RunRecord], epochs: usize) {
    for r in records {
        r.metrics.retain(|m| m.epoch <= epochs);
        r.probes.retain(|p| p.epoch <= epochs);
    }
}

/// The report's rows: the [`summarize`]d runs, each naming as its source the file of `configs`
/// whose name is its condition (and that file's epochs), and one row (n = 0) per config of
/// `configs` with no run, saying why: its data is not on this machine, or it has not been run
/// yet. Sorted by condition.
pub fn rows(records: &[RunRecord], configs: &[PathBuf]) -> Result<Vec<Row>, TrainError> {
    let stem = |p: &Path| p.file_stem().map_or(String::new(), |s| s.to_string_lossy().into_owned());
    let mut out = summarize(records);
    for row in &mut out {
        if let Some(file) = configs.iter().find(|c| stem(c) == row.condition) {
            row.source = file.display().to_string();
            row.source_epochs = Some(TrainConfig::read(file)?.epochs());
        }
    }
    for file in configs {
        let condition = stem(file);
        if records.iter().any(|r| r.condition == condition) {
            continue;
        }
        let config = TrainConfig::read(file)?;
        let root = ar_data::data_root(config.data_dir.as_deref());
        let dir = ar_data::dataset_dir(&root, &config.dataset);
        let reachable = config.dataset == "digits"
            || ar_data::Split::ALL
                .iter()
                .all(|&s| ar_data::locate(&config.dataset, &dir, s).is_ok());
        let why = if reachable {
            "not run yet".to_string()
        } else {
            format!(
                "not run here: data not reachable (`cargo xtask data fetch {}`)",
                config.dataset
            )
        };
        let algorithms: Vec<String> = config.algorithms.iter().map(|a| a.to_string()).collect();
        out.push(Row {
            condition,
            dataset: config.dataset.clone(),
            table: table_of(&config),
            algorithm: algorithms.join(", "),
            n: 0,
            epochs: config.epochs(),
            final_accuracy: (f64::NAN, f64::NAN),
            best_accuracy: (f64::NAN, f64::NAN),
            best_epoch: f64::NAN,
            angles: Vec::new(),
            relative_errors: Vec::new(),
            seconds_per_epoch: f64::NAN,
            notes: vec![why],
            source: file.display().to_string(),
            seeds: Vec::new(),
            epochs_asked: config.epochs(),
            source_epochs: Some(config.epochs()),
        });
    }
    out.sort_by(|a, b| (&a.condition, &a.algorithm).cmp(&(&b.condition, &b.algorithm)));
    Ok(out)
}

/// The report as markdown: `preface`, the tables (see [`markdown`]) and a chart per data set,
/// whose SVGs go beside `out` as `STEM-DATASET.svg`; written to `out`. Returns the row count.
pub fn write(
    records: &[RunRecord],
    rows: &[Row],
    preface: &str,
    command: &str,
    out: &Path,
) -> Result<usize, TrainError> {
    let mut text = preface.to_string();
    text.push_str(&markdown(rows, command));
    let stem = out.file_stem().map_or("report".into(), |s| s.to_string_lossy().into_owned());
    let folder = out.parent().map(PathBuf::from).unwrap_or_default();
    for (table, svg) in accuracy_charts(records) {
        let slug: Vec<&str> = table.split(|c: char| !c.is_ascii_alphanumeric()).collect();
        let slug: Vec<&str> = slug.into_iter().filter(|p| !p.is_empty()).collect();
        let name = format!("{stem}-{}.svg", slug.join("-"));
        let path = folder.join(&name);
        std::fs::write(&path, svg).map_err(TrainError::io(&path))?;
        let _ = writeln!(text, "![{table}: test accuracy per epoch]({name})\n");
    }
    for (slug, title, svg) in depth_charts(rows) {
        let name = format!("{stem}-{slug}.svg");
        let path = folder.join(&name);
        std::fs::write(&path, svg).map_err(TrainError::io(&path))?;
        let _ = writeln!(text, "![{title}]({name})\n");
    }
    std::fs::write(out, &text).map_err(TrainError::io(out))?;
    Ok(rows.len())
}

/// The rows as markdown tables, one per data set and model; `command` is how a reader reruns a
/// condition: `{config}` stands for its file name, `{options}` for its [`Row::sweep_options`]
/// (`--seeds 0..3` for a row not run yet).
pub fn markdown(rows: &[Row], command: &str) -> String {
    let mut s = String::new();
    let mut tables: Vec<&str> = rows.iter().map(|r| r.table.as_str()).collect();
    // One seed has no spread to show: its cell is the value alone.
    let pct = |(m, sd): (f64, f64), n: usize| match n {
        1 => format!("{:.2}", 100.0 * m),
        _ => format!("{:.2} +- {:.2}", 100.0 * m, 100.0 * sd),
    };
    tables.sort();
    tables.dedup();
    for table in tables {
        let _ = writeln!(s, "### {table}\n");
        let _ = writeln!(
            s,
            "| condition | algorithm | n | epochs | final test accuracy (%) | best (%) | best at epoch | \
             final angle to the gradient per layer (degrees) | final relative error per layer | \
             s per epoch | notes | command |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in rows.iter().filter(|r| r.table == table) {
            let rerun =
                command.replace("{config}", &r.source).replace("{options}", &r.sweep_options());
            if r.n == 0 {
                let (c, a, notes) = (&r.condition, &r.algorithm, r.notes.join("; "));
                let _ = writeln!(
                    s,
                    "| {c} | {a} | 0 | - | - | - | - | - | - | - | {notes} | `{rerun}` |"
                );
                continue;
            }
            let angles: Vec<String> =
                r.angles.iter().map(|(l, a)| format!("{l}: {a:.2}")).collect();
            let errors: Vec<String> =
                r.relative_errors.iter().map(|(l, e)| format!("{l}: {e:.2e}")).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {:.3} | {} | `{}` |",
                r.condition,
                r.algorithm,
                r.n,
                r.epochs,
                pct(r.final_accuracy, r.n),
                pct(r.best_accuracy, r.n),
                r.best_epoch,
                if angles.is_empty() { "-".into() } else { angles.join(", ") },
                if errors.is_empty() { "-".into() } else { errors.join(", ") },
                r.seconds_per_epoch,
                if r.notes.is_empty() { "-".into() } else { r.notes.join("; ") },
                rerun
            );
        }
        s.push('\n');
    }
    s
}

/// The table a run belongs to: its data set and model, with the hidden activation where the
/// config sets one (`mnist, paper1-mlp`, `fashion-mnist, paper1-mlp tanh`).
pub fn table_of(config: &TrainConfig) -> String {
    let act = config.hidden_activation.map_or(String::new(), |a| format!(" {a}"));
    format!("{}, {}{act}", config.dataset, config.model)
}

/// A model of a depth-study family (`res-cnn-8-8`): the family and the depth.
fn family_depth(model: &str) -> Option<(String, usize)> {
    let mut parts = model.rsplitn(3, '-');
    let (_width, depth, family) = (parts.next()?, parts.next()?, parts.next()?);
    let known = ["plain-mlp", "res-mlp", "plain-cnn", "res-cnn"];
    known.contains(&family).then_some(())?;
    Some((family.to_string(), depth.parse().ok()?))
}

/// For the rows of depth-study models (`plain-mlp-D-W` and the like): per data set and family
/// (and initialisation, for conditions named `kaiming-...`), one chart of the final test accuracy against the depth and one of the first weighted
/// layer's final angle to the gradient against the depth, a line per condition (the config
/// name without its data set and model) and algorithm: `(file slug, title, SVG)`.
pub fn depth_charts(rows: &[Row]) -> Vec<(String, String, String)> {
    // (data set, family) -> line -> depth -> (accuracy %, layer-1 angle)
    type Point = (f64, Option<f64>);
    type Lines = BTreeMap<String, BTreeMap<usize, Point>>;
    let mut panels: BTreeMap<(String, String), Lines> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.n > 0) {
        let Some(model) = r.table.split(", ").nth(1) else { continue };
        let Some((family, depth)) = family_depth(model) else { continue };
        let prefix = format!("{}-{model}-", r.dataset);
        let condition = r.condition.strip_prefix(&prefix).unwrap_or(&r.condition);
        // A condition named `INIT-...` (such as `kaiming-ar`) gets a panel of its own.
        let (family, condition) = match condition.split_once('-') {
            Some((init, rest)) if ["kaiming", "pytorch", "normal"].contains(&init) => {
                (format!("{family} ({init} init)"), rest)
            }
            _ => (family, condition),
        };
        let line = if condition == r.algorithm {
            condition.to_string()
        } else {
            format!("{condition} ({})", r.algorithm)
        };
        let angle = r.angles.first().map(|a| a.1);
        panels
            .entry((r.dataset.clone(), family))
            .or_default()
            .entry(line)
            .or_default()
            .insert(depth, (100.0 * r.final_accuracy.0, angle));
    }
    let mut out = Vec::new();
    for ((dataset, family), lines) in panels {
        let series = |pick: fn(&Point) -> Option<f64>| -> Vec<Series> {
            lines
                .iter()
                .map(|(name, by_depth)| Series {
                    name: name.clone(),
                    points: by_depth
                        .iter()
                        .filter_map(|(d, v)| pick(v).map(|y| (*d as f64, y)))
                        .collect(),
                    band: Vec::new(),
                })
                .collect()
        };
        let title = format!("{family}, {dataset}: final accuracy by depth");
        let svg =
            line_chart(&title, "weighted layers", "test accuracy (%)", &series(|v| Some(v.0)));
        let slug: String = family
            .chars()
            .filter_map(|c| match c {
                'a'..='z' | '0'..='9' | '-' => Some(c),
                ' ' => Some('-'),
                _ => None,
            })
            .collect();
        out.push((format!("{dataset}-{slug}-accuracy-by-depth"), title, svg));
        let title = format!("{family}, {dataset}: first layer's angle by depth");
        let svg = line_chart(&title, "weighted layers", "angle (degrees)", &series(|v| v.1));
        out.push((format!("{dataset}-{slug}-layer1-angle-by-depth"), title, svg));
    }
    out
}

/// One SVG per table (data set and model): each condition x algorithm's test accuracy per epoch, the mean over
/// seeds as a line in a band from the lowest to the highest seed.
pub fn accuracy_charts(records: &[RunRecord]) -> Vec<(String, String)> {
    let mut by_table: BTreeMap<String, BTreeMap<String, BTreeMap<usize, Vec<f64>>>> =
        BTreeMap::new();
    for r in records {
        for m in &r.metrics {
            by_table
                .entry(table_of(&r.config))
                .or_default()
                .entry(format!("{} {}", r.condition, m.algorithm))
                .or_default()
                .entry(m.epoch)
                .or_default()
                .push(100.0 * m.test_accuracy);
        }
    }
    by_table
        .into_iter()
        .map(|(table, curves)| {
            let mut series = Vec::new();
            for (name, epochs) in curves {
                let points = epochs.iter().map(|(e, xs)| (*e as f64, mean_sd(xs).0)).collect();
                let band = epochs
                    .iter()
                    .filter(|(_, xs)| xs.len() > 1)
                    .map(|(e, xs)| {
                        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
                        (*e as f64, lo, xs.iter().copied().fold(f64::NEG_INFINITY, f64::max))
                    })
                    .collect();
                series.push(Series { name, points, band });
            }
            let title = format!("{table}: test accuracy, mean and range over seeds");
            (table, line_chart(&title, "epoch", "test accuracy (%)", &series))
        })
        .collect()
}

#[cfg(test)]
mod depth_tests {
    use super::*;

    fn row(condition: &str, model: &str, accuracy: f64, angle: f64) -> Row {
        Row {
            condition: condition.into(),
            dataset: "fashion-mnist".into(),
            table: format!("fashion-mnist, {model}"),
            algorithm: if condition.ends_with("bp") { "bp" } else { "ar" }.into(),
            n: 3,
            epochs: 2,
            final_accuracy: (accuracy, 0.01),
            best_accuracy: (accuracy, 0.01),
            best_epoch: 2.0,
            angles: vec![(2, angle), (3, 0.5)],
            relative_errors: vec![(2, 0.1), (3, 0.01)],
            seconds_per_epoch: 1.0,
            notes: Vec::new(),
            source: format!("{condition}.toml"),
            seeds: vec![0, 1, 2],
            epochs_asked: 2,
            source_epochs: Some(2),
        }
    }

    #[test]
    fn depth_charts_put_each_condition_on_one_line_over_the_depths() {
        assert_eq!(family_depth("res-cnn-16-8"), Some(("res-cnn".into(), 16)));
        assert_eq!(family_depth("plain-mlp-4-128"), Some(("plain-mlp".into(), 4)));
        assert_eq!(family_depth("cnn-paper"), None);
        assert_eq!(family_depth("784-300-10"), None);
        let rows = vec![
            row("fashion-mnist-res-mlp-4-128-ar", "res-mlp-4-128", 0.86, 3.0),
            row("fashion-mnist-res-mlp-8-128-ar", "res-mlp-8-128", 0.85, 7.0),
            row("fashion-mnist-res-mlp-8-128-bp", "res-mlp-8-128", 0.87, 0.0),
            row("fashion-mnist-paper1-mlp-bp", "paper1-mlp", 0.88, 0.0),
        ];
        let charts = depth_charts(&rows);
        let slugs: Vec<&str> = charts.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            slugs,
            [
                "fashion-mnist-res-mlp-accuracy-by-depth",
                "fashion-mnist-res-mlp-layer1-angle-by-depth"
            ]
        );
        // Lines named by condition, without data set and model.
        assert!(
            charts[0].2.contains(">\nar\n<") && charts[0].2.contains(">\nbp\n<"),
            "{}",
            charts[0].2
        );
        let kaiming = depth_charts(&[row(
            "fashion-mnist-res-mlp-8-128-kaiming-ar",
            "res-mlp-8-128",
            0.8,
            1.0,
        )]);
        assert_eq!(kaiming[0].0, "fashion-mnist-res-mlp-kaiming-init-accuracy-by-depth");
        let text = markdown(&rows[..1], "{config}");
        assert!(text.contains("final relative error per layer") && text.contains("2: 1.00e-1"));
    }

    #[test]
    fn a_report_over_some_configs_keeps_only_their_runs() {
        let record = |condition: &str| RunRecord {
            condition: condition.into(),
            dir: PathBuf::from(condition),
            config: TrainConfig::default(),
            metrics: Vec::new(),
            probes: Vec::new(),
            done: None,
        };
        let mut records = vec![record("a"), record("b"), record("c")];
        keep_configs(&mut records, &[PathBuf::from("x/a.toml"), PathBuf::from("c.toml")]);
        let kept: Vec<&str> = records.iter().map(|r| r.condition.as_str()).collect();
        assert_eq!(kept, ["a", "c"]);
        keep_configs(&mut records, &[]);
        assert_eq!(records.len(), 2);
    }
}
