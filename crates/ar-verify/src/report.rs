//! The suite's result: one row per model, check and layer, rendered as tables or JSON.

use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write;

/// One measured quantity.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The backend the checked computation ran on.
    pub backend: String,
    /// The model checked.
    pub model: String,
    /// The check, such as `finite differences` or `ar eta=1 sweep T=1`.
    pub check: String,
    /// 1-based layer, or `None` for a model-level row.
    pub layer: Option<usize>,
    /// The relative error (or the quantity measured).
    pub value: f64,
    /// The angle in degrees between the two updates compared, where that applies.
    pub angle_deg: Option<f64>,
    /// The largest acceptable value; `None` for rows that only inform.
    pub tolerance: Option<f64>,
    /// Whether the value is within tolerance (informational rows always pass).
    pub passed: bool,
    /// Detail: worst element, samples skipped, iterations.
    pub note: String,
}

impl Row {
    /// A row; it passes when `value <= tolerance` (NaN never passes).
    pub fn new(
        model: &str,
        check: &str,
        layer: Option<usize>,
        value: f64,
        tolerance: Option<f64>,
    ) -> Self {
        let passed = match tolerance {
            Some(t) => value <= t,
            None => true,
        };
        Row {
            backend: String::new(),
            model: model.into(),
            check: check.into(),
            layer,
            value,
            angle_deg: None,
            tolerance,
            passed,
            note: String::new(),
        }
    }

    /// Adds the angle between the compared updates.
    pub fn with_angle(mut self, degrees: f64) -> Self {
        self.angle_deg = Some(degrees);
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: String) -> Self {
        self.note = note;
        self
    }
}

/// All rows of a run of the suite.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Every row, in the order measured.
    pub rows: Vec<Row>,
}

impl Report {
    /// Whether every row passed.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.passed)
    }

    /// The rows that failed.
    pub fn failures(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| !r.passed).collect()
    }

    /// Adds rows measured on `backend`.
    pub fn extend(&mut self, backend: &str, rows: Vec<Row>) {
        self.rows.extend(rows.into_iter().map(|mut r| {
            r.backend = backend.to_string();
            r
        }));
    }

    /// One table per backend and model: a line per check, a column per layer. Checked cells show the relative
    /// error and `ok`/`FAIL` against the tolerance; informational cells show the angle in degrees
    /// after the relative error.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut groups: Vec<(&str, &str)> = Vec::new();
        for r in &self.rows {
            if !groups.contains(&(r.backend.as_str(), r.model.as_str())) {
                groups.push((&r.backend, &r.model));
            }
        }
        for (backend, model) in groups {
            let rows: Vec<&Row> =
                self.rows.iter().filter(|r| r.model == model && r.backend == backend).collect();
            let layers: BTreeSet<usize> = rows.iter().filter_map(|r| r.layer).collect();
            let mut checks: Vec<&str> = Vec::new();
            for r in &rows {
                if !checks.contains(&r.check.as_str()) {
                    checks.push(&r.check);
                }
            }
            let _ = writeln!(out, "\n{model}  [{backend}]");
            let width = checks.iter().map(|c| c.len()).max().unwrap_or(5).max(5) + 2;
            let _ = write!(out, "  {:<width$}{:>10}", "check", "tolerance");
            for l in &layers {
                let _ = write!(out, "  {:>20}", format!("layer {l}"));
            }
            let _ = writeln!(out, "  {:>20}", "model");
            for check in checks {
                let these: Vec<&&Row> = rows.iter().filter(|r| r.check == check).collect();
                let tol = these
                    .iter()
                    .find_map(|r| r.tolerance)
                    .map_or("info".into(), |t| format!("{t:.0e}"));
                let _ = write!(out, "  {check:<width$}{tol:>10}");
                let cell = |r: Option<&&&Row>| match r {
                    None => format!("{:>20}", "-"),
                    Some(r) if r.tolerance.is_some() => {
                        format!(
                            "{:>20}",
                            format!("{:.1e} {}", r.value, if r.passed { "ok" } else { "FAIL" })
                        )
                    }
                    Some(r) => match r.angle_deg {
                        Some(a) => format!("{:>20}", format!("{:.1e} {:>6.2}deg", r.value, a)),
                        None => format!("{:>20}", format!("{:.2e}", r.value)),
                    },
                };
                for l in &layers {
                    let _ = write!(out, "  {}", cell(these.iter().find(|r| r.layer == Some(*l))));
                }
                let _ = writeln!(out, "  {}", cell(these.iter().find(|r| r.layer.is_none())));
            }
        }
        let failures = self.failures();
        let _ = writeln!(
            out,
            "\n{} checks, {} failed{}",
            self.rows.iter().filter(|r| r.tolerance.is_some()).count(),
            failures.len(),
            if failures.is_empty() { "" } else { ":" }
        );
        for f in failures {
            let layer = f.layer.map_or("model".into(), |l| format!("layer {l}"));
            let _ = writeln!(
                out,
                "  FAIL {} / {} / {} / {layer}: {:.3e} > {:.0e} ({})",
                f.backend,
                f.model,
                f.check,
                f.value,
                f.tolerance.unwrap_or(f64::NAN),
                f.note
            );
        }
        out
    }
}
