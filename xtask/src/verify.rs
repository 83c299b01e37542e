//! `cargo xtask verify-gradients`: runs the gradient-equivalence suite and prints its tables.

use crate::backend::{dispatch, BackendName, Job};
use anyhow::Context;
use ar_backend::Backend;
use ar_backend::Precision;
use ar_verify::{Report, Row};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Flags of `verify-gradients`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also write every row (model, check, layer, value, tolerance, pass) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Backends to check (comma-separated). Each runs the full suite in f64 (finite
    /// differences, identities, convergence, variants, candle's autograd) and its f32 agreement
    /// with the autograd oracle.
    #[arg(long, value_parser = crate::backend::parser(), value_delimiter = ',', default_value = "ndarray,candle")]
    backend: Vec<BackendName>,
}

struct Suite;

impl Job for Suite {
    type Output = (String, Vec<Row>);
    fn run<B: Backend>(self, be: B) -> anyhow::Result<(String, Vec<Row>)> {
        Ok((be.name(), ar_verify::cases::check_suite(&be)))
    }
}

/// Runs the suite on every requested backend, in f64 and f32.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let mut report = Report::default();
    for &backend in &args.backend {
        for precision in [Precision::F64, Precision::F32] {
            let (name, rows) = dispatch(backend, precision, Suite)?;
            report.extend(&name, rows);
        }
    }
    print!("{}", report.render());
    println!("finished in {:.1} s", start.elapsed().as_secs_f64());
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
