//! `cargo xtask verify-gradients`: runs the gradient-equivalence suite and prints its tables.

use anyhow::Context;
use ar_ndarray::NdArray;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Flags of `verify-gradients`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also write every row (model, check, layer, value, tolerance, pass) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs the suite in f64 on the ndarray backend.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let report = ar_verify::cases::run_suite(&NdArray::<f64>::new());
    print!("{}", report.render());
    println!("finished in {:.1} s", start.elapsed().as_secs_f64());
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
