//! The workspace's command line: `cargo xtask verify-gradients`, `train`, `sweep`, `report`, `eval`,
//! `data`, `bench`. It parses, prints and calls the library crates.

mod backend;
mod bench;
mod data;
mod eval;
mod report;
mod signals;
mod sweep;
mod train;
mod verify;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// Activation relaxation: train MLPs and CNNs with AR and its simplifications, and check that AR
/// computes backprop's gradients.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check our backprop against finite differences and AR against backprop (exact identities,
    /// convergence, variants); exit status 1 on any failure.
    VerifyGradients(verify::Args),
    /// Train networks with activation relaxation and/or backprop (with no arguments: the bundled
    /// digits, AR against backprop side by side). Every run writes a directory (see --out).
    Train(Box<train::Args>),
    /// Train every config x seed into its own run directory (OUT/CONFIG/seed-N); the same
    /// command run again skips finished runs and resumes an interrupted one.
    Sweep(sweep::Args),
    /// Tabulate a sweep's runs: per condition and algorithm, accuracy over seeds, per-layer
    /// angles to the gradient, time per epoch (markdown, with accuracy charts).
    Report(report::Args),
    /// Report the test accuracy of a checkpoint written by `train`.
    Eval(eval::Args),
    /// Fetch and verify data sets: `data fetch NAME|all`, `data check`.
    Data(data::Args),
    /// Time backprop, AR (Euler) and AR (closed form, from either start) side by side on the
    /// paper-1 MLP (one epoch-equivalent), paper 2's CNN and the residual CNN res-cnn-8-16;
    /// --peer adds PyTorch.
    Bench(bench::Args),
}

/// The repository this command line was built from.
fn repo_root() -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    repo.canonicalize().unwrap_or(repo)
}

/// `$AR_DATA_DIR` as the user set it, before `main` gives it the build's default (`sweep
/// --slurm` writes only a folder the user named into a script).
pub static USER_DATA_DIR: std::sync::OnceLock<Option<std::path::PathBuf>> =
    std::sync::OnceLock::new();

fn main() -> ExitCode {
    let named = std::env::var_os(ar_data::DATA_DIR_ENV).filter(|d| !d.is_empty());
    USER_DATA_DIR.get_or_init(|| named.map(std::path::PathBuf::from));
    // Data sets default to the repository's datasets/ folder.
    if std::env::var_os(ar_data::DATA_DIR_ENV).is_none() {
        std::env::set_var(ar_data::DATA_DIR_ENV, repo_root().join("datasets"));
    }
    let mut command = train::with_key_flags(Cli::command().args_override_self(true));
    let matches =
        command.try_get_matches_from_mut(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::VerifyGradients(args) => verify::run(args),
        Command::Train(args) => {
            let typed = matches.subcommand_matches("train").expect("the train subcommand matched");
            train::run(*args, typed)
        }
        Command::Sweep(args) => sweep::run(args),
        Command::Report(args) => report::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Data(args) => data::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if is_usage_error(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A command line or configuration that asks for something impossible: exit status 2, like a
/// flag clap rejects.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether an error is the user's request at fault (a bad value or combination of settings),
/// rather than a file or the machine.
fn is_usage_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<UsageError>()
            || matches!(
                c.downcast_ref::<ar_core::CoreError>(),
                Some(ar_core::CoreError::InvalidConfig(_))
            )
            || matches!(
                c.downcast_ref::<ar_models::ModelError>(),
                Some(ar_models::ModelError::Spec { .. } | ar_models::ModelError::Mismatch { .. })
            )
            || c.downcast_ref::<ar_train::TrainError>().is_some_and(|e| e.is_usage())
    })
}
