//! Reports over a sweep's run directories (`OUT/CONDITION/seed-N`, see [`crate::sweep`]): per
//! condition and algorithm, final and best test accuracy as mean +- sd over seeds, the epoch of
//! the best, each layer's final angle to the exact gradient, seconds per epoch, and how runs
//! ended; as markdown tables and one SVG of accuracy curves (mean and range over seeds) per data
//! set and model.

use crate::config::TrainConfig;
use crate::plot::{line_chart, panel_chart, Series};
use crate::probe::{LayerProbe, ProbeRow};
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
    /// What in its files could not be read or does not add up (a torn or garbled line, an
    /// accuracy outside [0, 1], a finished run with epochs missing). A run with any problem is
    /// left out of its rows' figures, and its rows' notes say why.
    pub problems: Vec<String>,
}

/// A run directory whose config could not be read (missing or invalid `config.toml`): it
/// cannot be placed in a row by algorithm, so its condition's rows carry a note instead.
#[derive(Clone, Debug, PartialEq)]
pub struct Unreadable {
    /// The condition (the run directory's parent).
    pub condition: String,
    /// The run directory.
    pub dir: PathBuf,
    /// Why it could not be read.
    pub problem: String,
}

/// Every run directory of a sweep's output folder: those read, and those that could not be.
#[derive(Clone, Debug, Default)]
pub struct Runs {
    /// The runs whose config was read (each with its own problems, if any).
    pub records: Vec<RunRecord>,
    /// The runs whose config could not be read.
    pub unreadable: Vec<Unreadable>,
}

impl Runs {
    /// How many run directories were found.
    pub fn len(&self) -> usize {
        self.records.len() + self.unreadable.len()
    }

    /// Whether no run directory was found.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many runs are left out of the figures (unreadable, or with problems).
    pub fn left_out(&self) -> usize {
        self.unreadable.len() + self.records.iter().filter(|r| !r.problems.is_empty()).count()
    }
}

/// Every run directory under `root` (`root/CONDITION/RUN/`), in name order: any folder two
/// levels down counts as a run, so that one without a readable `config.toml` is reported, not
/// dropped.
pub fn collect(root: &Path) -> Result<Runs, TrainError> {
    let folders = |dir: &Path| -> Result<Vec<PathBuf>, TrainError> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(TrainError::io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        out.sort();
        Ok(out)
    };
    let mut runs = Runs::default();
    for condition_dir in folders(root)? {
        let condition =
            condition_dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
        for dir in folders(&condition_dir)? {
            match read_run(&dir, &condition) {
                Ok(record) => runs.records.push(record),
                Err(problem) => {
                    runs.unreadable.push(Unreadable { condition: condition.clone(), dir, problem })
                }
            }
        }
    }
    Ok(runs)
}

/// One run directory, its files checked: `Err` when its config cannot be read; otherwise the
/// record, whose `problems` list what does not add up.
pub fn read_run(dir: &Path, condition: &str) -> Result<RunRecord, String> {
    let config_path = dir.join("config.toml");
    if !config_path.is_file() {
        return Err("no config.toml".into());
    }
    let config = TrainConfig::read(&config_path).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    let done: Option<Done> = match std::fs::read_to_string(dir.join(DONE_FILE)) {
        Err(_) => None,
        Ok(text) => match serde_json::from_str(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(format!("{DONE_FILE}: {e}"));
                None
            }
        },
    };
    let finished = done.as_ref().is_some_and(|d| d.outcome == "finished");
    let labels: Vec<String> =
        config.algorithms.iter().map(|&a| config.algorithm(a).to_string()).collect();
    let metrics_path = dir.join("metrics.jsonl");
    let metrics: Vec<EpochMetrics> = match std::fs::read_to_string(&metrics_path) {
        Err(_) if finished => {
            problems.push("marked finished, but has no metrics.jsonl".into());
            Vec::new()
        }
        Err(_) => Vec::new(),
        Ok(text) => {
            let rows = json_lines(&text, finished, "metrics.jsonl", &mut problems);
            check_metrics(&rows, &config, &labels, done.as_ref(), &mut problems);
            rows
        }
    };
    let probes = probe_rows(dir, finished, &mut problems);
    check_probes(&probes, &config, &labels, &mut problems);
    Ok(RunRecord {
        condition: condition.to_string(),
        dir: dir.to_path_buf(),
        config,
        metrics,
        probes,
        done,
        problems,
    })
}

/// The rows of a JSON-lines file. A line that does not parse is a problem, except the last
/// line of a run that has not finished (a write cut by a kill), which is ignored.
fn json_lines<T: serde::de::DeserializeOwned>(
    text: &str,
    finished: bool,
    file: &str,
    problems: &mut Vec<String>,
) -> Vec<T> {
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (k, &(i, line)) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if k + 1 == lines.len() && !finished => {}
            Err(e) => problems.push(format!("{file} line {}: {}", i + 1, excerpt(&e.to_string()))),
        }
    }
    out
}

/// At most 80 characters of `text`, for a note.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Whether `x` is a fraction.
fn fraction(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

/// Checks metrics rows against the run's config and end: known algorithms, epochs 1, 2, ...
/// in order and within the epochs asked, accuracies in [0, 1], finite non-negative losses and
/// times; a finished run has every epoch of every algorithm.
fn check_metrics(
    rows: &[EpochMetrics],
    config: &TrainConfig,
    labels: &[String],
    done: Option<&Done>,
    problems: &mut Vec<String>,
) {
    let asked = config.epochs();
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for m in rows {
        let row = format!("metrics.jsonl, {} epoch {}", m.algorithm, m.epoch);
        if !labels.contains(&m.algorithm) {
            problems.push(format!(
                "metrics.jsonl: algorithm '{}' is not in its config",
                excerpt(&m.algorithm)
            ));
            continue;
        }
        let previous = last.insert(&m.algorithm, m.epoch).unwrap_or(0);
        if m.epoch != previous + 1 || m.epoch > asked {
            problems.push(format!("{row}: expected epoch {} of {asked}", previous + 1));
        }
        if !fraction(m.train_accuracy) || !fraction(m.test_accuracy) {
            problems.push(format!("{row}: an accuracy outside [0, 1]"));
        }
        let times = [m.train_loss, m.test_loss, m.seconds, m.samples_per_second];
        if times.iter().any(|x| !x.is_finite() || *x < 0.0) {
            problems.push(format!("{row}: a loss or time that is negative or not finite"));
        }
    }
    if let Some(d) = done.filter(|d| d.outcome == "finished") {
        for label in labels {
            let got = last.get(label.as_str()).copied().unwrap_or(0);
            if got != d.epochs {
                problems.push(format!(
                    "marked finished at epoch {}, but metrics.jsonl ends at epoch {got} for \
                     {label}",
                    d.epochs
                ));
            }
        }
    }
}

/// Checks probe rows: known algorithms, layers from 1, epochs within those asked, steps in
/// order, angles in [0, 180] and relative errors not negative.
fn check_probes(
    rows: &[ProbeRow],
    config: &TrainConfig,
    labels: &[String],
    problems: &mut Vec<String>,
) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for p in rows {
        let row = format!("probes, {} step {} layer {}", p.algorithm, p.step, p.probe.layer);
        if !labels.contains(&p.algorithm) {
            problems.push(format!(
                "probes: algorithm '{}' is not in its config",
                excerpt(&p.algorithm)
            ));
            return;
        }
        let previous = last.insert(&p.algorithm, p.step).unwrap_or(0);
        let LayerProbe { layer, angle_deg, relative_error, .. } = p.probe;
        if p.step < previous || p.epoch == 0 || p.epoch > config.epochs() || layer == 0 {
            problems.push(format!("{row}: a step, epoch or layer out of order or range"));
            return;
        }
        if !(0.0..=180.0).contains(&angle_deg) || relative_error < 0.0 {
            problems.push(format!("{row}: an angle outside [0, 180] or a negative relative error"));
            return;
        }
    }
}

/// The probe rows of a run: `probes.jsonl`, or `probes.csv` where only the CSV was kept (the
/// committed results keep the CSV, a sixth of the size). A measurement that is not finite (a
/// relative error of a zero gradient, a diverging run) is written as null or an empty cell, or
/// as `NaN` in the CSV; such rows are left out. Lines that cannot be read are problems (see
/// [`json_lines`]).
fn probe_rows(dir: &Path, finished: bool, problems: &mut Vec<String>) -> Vec<ProbeRow> {
    let finite_rows =
        |values: Vec<(usize, serde_json::Value)>, file: &str, problems: &mut Vec<String>| {
            let mut out = Vec::new();
            for (line, value) in values {
                match probe_row(value) {
                    Ok(Some(row)) => out.push(row),
                    Ok(None) => {}
                    Err(e) => problems.push(format!("{file} line {line}: {}", excerpt(&e))),
                }
            }
            out
        };
    if let Ok(text) = std::fs::read_to_string(dir.join("probes.jsonl")) {
        let values: Vec<serde_json::Value> = json_lines(&text, finished, "probes.jsonl", problems);
        let numbered = values.into_iter().enumerate().map(|(i, v)| (i + 1, v)).collect();
        return finite_rows(numbered, "probes.jsonl", problems);
    }
    let Ok(text) = std::fs::read_to_string(dir.join("probes.csv")) else { return Vec::new() };
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    let Some((_, header)) = lines.first() else { return Vec::new() };
    let header: Vec<&str> = header.split(',').collect();
    let needed = ["algorithm", "step", "epoch", "layer", "angle_deg", "relative_error"];
    if let Some(missing) = needed.iter().find(|c| !header.contains(c)) {
        problems.push(format!("probes.csv: its header has no column '{missing}'"));
        return Vec::new();
    }
    let mut values = Vec::new();
    for (k, &(i, line)) in lines.iter().enumerate().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let torn = k + 1 == lines.len() && !finished;
        if cells.len() != header.len() {
            if !torn {
                problems.push(format!(
                    "probes.csv line {}: {} cells under a header of {}",
                    i + 1,
                    cells.len(),
                    header.len()
                ));
            }
            continue;
        }
        // Every column by name, as JSON, so serde reads it like a JSON-lines row. A NaN or
        // infinite measurement (a diverging run) has no JSON form: such rows are left out.
        let mut row = serde_json::Map::new();
        let mut finite = true;
        for (name, cell) in header.iter().zip(&cells) {
            let value = if let Some(v) = crate::rundir::csv_value(name, cell) {
                v
            } else if cell.parse::<f64>().is_ok() {
                finite = false;
                serde_json::Value::Null
            } else {
                problems.push(format!(
                    "probes.csv line {}: '{}' in column {name}",
                    i + 1,
                    excerpt(cell)
                ));
                finite = false;
                break;
            };
            row.insert((*name).to_string(), value);
        }
        if finite {
            values.push((i + 1, serde_json::Value::Object(row)));
        }
    }
    finite_rows(values, "probes.csv", problems)
}

/// One probe row from its JSON form; `None` when a measurement it needs is null (not finite).
fn probe_row(value: serde_json::Value) -> Result<Option<ProbeRow>, String> {
    let has_null = value.as_object().is_some_and(|m| m.values().any(|v| v.is_null()));
    match serde_json::from_value(value) {
        Ok(row) => Ok(Some(row)),
        Err(_) if has_null => Ok(None),
        Err(e) => Err(e.to_string()),
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
            let seed = r.config.seed;
            if !r.problems.is_empty() {
                notes.push(format!("seed {seed}: {}; left out", problem_note(&r.problems)));
                continue;
            }
            let history: Vec<&EpochMetrics> =
                r.metrics.iter().filter(|m| m.algorithm == algorithm).collect();
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

/// The first two of `problems`, and how many more there are.
fn problem_note(problems: &[String]) -> String {
    let mut note = problems.iter().take(2).cloned().collect::<Vec<_>>().join("; ");
    if problems.len() > 2 {
        note.push_str(&format!("; and {} more", problems.len() - 2));
    }
    note
}

/// Keeps the runs of the conditions `configs` names (by file stem), where any are given: a
/// report over some configs leaves out the other conditions' runs in the same folder.
pub fn keep_configs(runs: &mut Runs, configs: &[PathBuf]) {
    if configs.is_empty() {
        return;
    }
    let stems: Vec<String> = configs
        .iter()
        .filter_map(|c| c.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    runs.records.retain(|r| stems.contains(&r.condition));
    runs.unreadable.retain(|r| stems.contains(&r.condition));
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
/// whose name is its condition (and that file's epochs); a note on every row of a condition
/// for each of its runs that could not be read (a row of its own, n = 0, if the condition has
/// no other); and one row (n = 0) per config of `configs` with no run, saying why: its data is
/// not on this machine, or it has not been run yet. Sorted by condition.
pub fn rows(runs: &Runs, configs: &[PathBuf]) -> Result<Vec<Row>, TrainError> {
    let stem = |p: &Path| p.file_stem().map_or(String::new(), |s| s.to_string_lossy().into_owned());
    let mut out = summarize(&runs.records);
    for row in &mut out {
        if let Some(file) = configs.iter().find(|c| stem(c) == row.condition) {
            row.source = file.display().to_string();
            row.source_epochs = Some(TrainConfig::read(file)?.epochs());
        }
    }
    for u in &runs.unreadable {
        let run = u.dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let note = format!("{run}: {}; left out", excerpt(&u.problem));
        let mut found = false;
        for row in out.iter_mut().filter(|r| r.condition == u.condition) {
            row.notes.push(note.clone());
            found = true;
        }
        if found {
            continue;
        }
        let file = configs.iter().find(|c| stem(c) == u.condition);
        let config = file.map(|f| TrainConfig::read(f)).transpose()?;
        out.push(Row {
            condition: u.condition.clone(),
            dataset: config.as_ref().map_or("?".into(), |c| c.dataset.clone()),
            table: config.as_ref().map_or("runs that could not be read".into(), table_of),
            algorithm: "?".into(),
            n: 0,
            epochs: 0,
            final_accuracy: (f64::NAN, f64::NAN),
            best_accuracy: (f64::NAN, f64::NAN),
            best_epoch: f64::NAN,
            angles: Vec::new(),
            relative_errors: Vec::new(),
            seconds_per_epoch: f64::NAN,
            notes: vec![note],
            source: file.map_or(format!("{}.toml", u.condition), |f| f.display().to_string()),
            seeds: Vec::new(),
            epochs_asked: config.as_ref().map_or(0, |c| c.epochs()),
            source_epochs: config.as_ref().map(|c| c.epochs()),
        });
    }
    for file in configs {
        let condition = stem(file);
        if runs.records.iter().any(|r| r.condition == condition)
            || runs.unreadable.iter().any(|r| r.condition == condition)
        {
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

/// One SVG per table (data set and model): each condition x algorithm's test accuracy per
/// epoch, the mean over seeds as a line in a band from the lowest to the highest seed, as
/// panels: one column per family of conditions ([`chart_panels`]) with backprop drawn in each
/// as the reference, and a second row zoomed on the band where the conditions differ
/// ([`zoom_band`]).
pub fn accuracy_charts(records: &[RunRecord]) -> Vec<(String, String)> {
    type Curves = BTreeMap<(String, String), BTreeMap<usize, Vec<f64>>>;
    let mut by_table: BTreeMap<String, Curves> = BTreeMap::new();
    for r in records.iter().filter(|r| r.problems.is_empty()) {
        for m in &r.metrics {
            by_table
                .entry(table_of(&r.config))
                .or_default()
                .entry((r.condition.clone(), m.algorithm.clone()))
                .or_default()
                .entry(m.epoch)
                .or_default()
                .push(100.0 * m.test_accuracy);
        }
    }
    by_table
        .into_iter()
        .map(|(table, curves)| {
            let keys: Vec<(String, String)> = curves.keys().cloned().collect();
            let (groups, reference) = chart_panels(&keys);
            let series = |i: usize, name: String| {
                let epochs = &curves[&keys[i]];
                let points = epochs.iter().map(|(e, xs)| (*e as f64, mean_sd(xs).0)).collect();
                let band = epochs
                    .iter()
                    .filter(|(_, xs)| xs.len() > 1)
                    .map(|(e, xs)| {
                        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
                        (*e as f64, lo, xs.iter().copied().fold(f64::NEG_INFINITY, f64::max))
                    })
                    .collect();
                Series { name, points, band }
            };
            let groups: Vec<(String, Vec<Series>)> = groups
                .into_iter()
                .map(|(caption, members)| {
                    (caption, members.into_iter().map(|(i, name)| series(i, name)).collect())
                })
                .collect();
            let reference: Vec<Series> =
                reference.into_iter().map(|(i, name)| series(i, name)).collect();
            let all: Vec<&Series> = groups.iter().flat_map(|(_, g)| g).chain(&reference).collect();
            let zoom = zoom_band(&all);
            let title = format!("{table}: test accuracy (%), mean and range over seeds");
            let svg = panel_chart(&title, "epoch", "test accuracy (%)", &groups, &reference, zoom);
            (table, svg)
        })
        .collect()
}

/// Most lines in one panel of a chart (besides the reference).
const PER_PANEL: usize = 6;

/// How a chart's `(condition, algorithm)` curves go into panels: the backprop curves (one or
/// two, beside others) as the reference drawn in every panel; the rest grouped by family (the
/// first word of the condition after the words every condition of the chart shares, such as
/// `ar` in `cnn-mnist-ar-t20`), a family of more than [`PER_PANEL`] split evenly over several
/// panels. Each curve is named by the rest of its condition and its algorithm. Returns
/// `(caption, [(index, name)])` per panel, and the reference's `(index, name)`s.
pub fn chart_panels(keys: &[(String, String)]) -> PanelPlan {
    let words: Vec<Vec<&str>> = keys.iter().map(|(c, _)| c.split('-').collect()).collect();
    let mut shared = words.first().map_or(0, Vec::len);
    for w in &words {
        shared = shared.min(w.iter().zip(&words[0]).take_while(|(a, b)| a == b).count());
    }
    let name = |i: usize| {
        let rest = words[i][shared.min(words[i].len())..].join("-");
        let (condition, algorithm) = &keys[i];
        let rest = if rest.is_empty() { condition.clone() } else { rest };
        if rest == *algorithm {
            rest
        } else {
            format!("{rest} {algorithm}")
        }
    };
    let bp: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].1 == "bp").collect();
    let reference = if (1..=2).contains(&bp.len()) && bp.len() < keys.len() { bp } else { vec![] };
    let mut families: Vec<(String, Vec<usize>)> = Vec::new();
    for i in (0..keys.len()).filter(|i| !reference.contains(i)) {
        let family = words[i].get(shared).map_or(keys[i].0.clone(), |w| w.to_string());
        match families.iter_mut().find(|(f, _)| *f == family) {
            Some((_, members)) => members.push(i),
            None => families.push((family, vec![i])),
        }
    }
    let mut panels = Vec::new();
    for (family, members) in families {
        let parts = members.len().div_ceil(PER_PANEL);
        for part in 0..parts {
            let (from, to) = (members.len() * part / parts, members.len() * (part + 1) / parts);
            let caption = match parts {
                1 => family.clone(),
                n => format!("{family} ({} of {n})", part + 1),
            };
            panels.push((caption, members[from..to].iter().map(|&i| (i, name(i))).collect()));
        }
    }
    (panels, reference.into_iter().map(|i| (i, name(i))).collect())
}

/// Panels of `(caption, [(index, name)])` and the reference's `(index, name)`s.
pub type PanelPlan = (Vec<(String, Vec<(usize, String)>)>, Vec<(usize, String)>);

/// The y range where the curves that end near the best one differ (those whose last value is
/// within 15 points of the best last value), rounded out to whole points; `None` when it would
/// not show them much larger than the full range does.
pub fn zoom_band(series: &[&Series]) -> Option<(f64, f64)> {
    let last = |s: &Series| s.points.iter().rev().map(|p| p.1).find(|y| y.is_finite());
    let best = series.iter().filter_map(|s| last(s)).fold(f64::NEG_INFINITY, f64::max);
    let near: Vec<&&Series> =
        series.iter().filter(|s| last(s).is_some_and(|y| y >= best - 15.0)).collect();
    let lowest = near.iter().filter_map(|s| last(s)).fold(f64::INFINITY, f64::min);
    let top = near
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1).chain(s.band.iter().map(|b| b.2)))
        .filter(|y| y.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    let all = series.iter().flat_map(|s| &s.points).map(|p| p.1).filter(|y| y.is_finite());
    let (min, max) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    if !(best.is_finite() && min < max) {
        return None;
    }
    let lo = (lowest - 0.25 * (best - lowest) - 0.5).floor();
    let hi = (top + 0.5).ceil();
    (hi - lo < 0.5 * (max - min)).then_some((lo, hi))
}

#[cfg(test)]
mod depth_tests {
    use super::*;

    /// Backprop is the reference of every panel; the other curves go by family (the first word
    /// after the shared ones), a family of more than six split evenly; names lose the shared
    /// words. The zoom covers the curves that end near the best, not the collapsed ones.
    #[test]
    fn charts_split_into_family_panels_with_backprop_in_each_and_a_zoom() {
        let mut keys: Vec<(String, String)> =
            (0..8).map(|i| (format!("cnn-mnist-ar-v{i}"), "ar".to_string())).collect();
        keys.push(("cnn-mnist-bp".into(), "bp".into()));
        keys.push(("cnn-mnist-tanh-a".into(), "ar+learned".into()));
        let (panels, reference) = chart_panels(&keys);
        let captions: Vec<&str> = panels.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(captions, ["ar (1 of 2)", "ar (2 of 2)", "tanh"]);
        assert_eq!((panels[0].1.len(), panels[1].1.len()), (4, 4));
        assert_eq!(panels[0].1[0], (0, "ar-v0 ar".to_string()));
        assert_eq!(panels[2].1, [(9, "tanh-a ar+learned".to_string())]);
        assert_eq!(reference, [(8, "bp".to_string())]);
        // Only backprop curves: no reference, one family.
        let only: Vec<(String, String)> = vec![("x-bp".into(), "bp".into())];
        assert_eq!(chart_panels(&only).1, []);

        let line = |ys: &[f64]| Series {
            name: String::new(),
            points: ys.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect(),
            band: vec![],
        };
        let (good, close, dead) = (line(&[90.0, 97.0, 98.2]), line(&[85.0, 95.5]), line(&[10.0]));
        // From below the lowest near curve (95.5, less a quarter of the spread and half a point).
        assert_eq!(zoom_band(&[&good, &close, &dead]), Some((94.0, 99.0)));
        let (a, b) = (line(&[50.0, 60.0]), line(&[52.0, 55.0]));
        assert_eq!(zoom_band(&[&a, &b]), None, "the zoom would show about all of it");
    }

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
            problems: Vec::new(),
        };
        let mut runs = Runs {
            records: vec![record("a"), record("b"), record("c")],
            unreadable: vec![Unreadable {
                condition: "b".into(),
                dir: "b/seed-1".into(),
                problem: "no config.toml".into(),
            }],
        };
        keep_configs(&mut runs, &[PathBuf::from("x/a.toml"), PathBuf::from("c.toml")]);
        let kept: Vec<&str> = runs.records.iter().map(|r| r.condition.as_str()).collect();
        assert_eq!((kept.as_slice(), runs.unreadable.len()), (&["a", "c"][..], 0));
        keep_configs(&mut runs, &[]);
        assert_eq!(runs.len(), 2);
    }
}
