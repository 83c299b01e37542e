//! The workspace's command line: `cargo xtask verify-gradients`, `cargo xtask train`.

mod data;
mod train;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Activation relaxation: train MLPs with AR and its simplifications, and check that AR computes
/// backprop's gradients.
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
    /// Train a network with activation relaxation and/or backprop (with no arguments: the bundled
    /// digits, AR against backprop side by side).
    Train(train::Args),
    /// Fetch and verify data sets: `data fetch NAME|all`, `data check`.
    Data(data::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::VerifyGradients(args) => verify::run(args),
        Command::Train(args) => train::run(args),
        Command::Data(args) => data::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
