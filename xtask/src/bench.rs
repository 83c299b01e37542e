//! `cargo xtask bench`: one epoch-equivalent (937 batches of 64) of the paper-1 MLP on
//! MNIST-shaped data and a fixed number of batches of paper 2's CNN and of the residual CNN
//! `res-cnn-8-16` on CIFAR-shaped data, for backprop, AR with Euler steps and AR in closed form,
//! timed side by side in one run, with optional PyTorch peer timings (each model, on the CPU or
//! a GPU) from `bench/peer_pytorch.py`.

use crate::backend::{dispatch, BackendName, Job};
use anyhow::Context;
use ar_backend::{Backend, Precision};
use ar_verify::timing::{peer_ratios, time_training, Measurement, Peer, Workload, BATCH};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Batches per measurement (937 of 64 is one MNIST epoch).
    #[arg(long, default_value_t = 937)]
    batches: usize,
    /// Batches of the paper-2 CNN (3x32x32 inputs) per measurement; 0 skips the CNN.
    #[arg(long, default_value_t = 20)]
    cnn_batches: usize,
    /// Batches of the residual CNN res-cnn-8-16 (3x32x32 inputs) per measurement; 0 skips it.
    #[arg(long, default_value_t = 10)]
    res_cnn_batches: usize,
    /// Relaxation steps T of the Euler measurement.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Samples per batch (MLP and CNN).
    #[arg(long, default_value_t = BATCH)]
    batch_size: usize,
    /// Also time the independent PyTorch implementation in bench/peer_pytorch.py (needs torch;
    /// its CPU threads are set to the same count) and report our/their ratios.
    #[arg(long)]
    peer: bool,
    /// The Python interpreter for --peer.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Torch CPU threads for --peer (default: the machine's cores).
    #[arg(long)]
    peer_threads: Option<usize>,
    /// The torch device for --peer (`cpu`, or `cuda` to compare with --backend candle-cuda).
    #[arg(long, default_value = "cpu")]
    peer_device: String,
    /// The peer script for --peer (default: bench/peer_pytorch.py of this source tree).
    #[arg(long, value_name = "FILE")]
    peer_script: Option<PathBuf>,
    /// Backends to time (comma-separated), each in f32.
    #[arg(long, value_parser = crate::backend::parser(), value_delimiter = ',', default_value = "ndarray,candle")]
    backend: Vec<BackendName>,
    /// Write the table as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl Args {
    /// The workloads to time and their batch counts (those asked for more than 0).
    fn workloads(&self) -> Vec<(Workload, usize)> {
        let counts = [self.batches, self.cnn_batches, self.res_cnn_batches];
        Workload::ALL.into_iter().zip(counts).filter(|(_, n)| *n > 0).collect()
    }
}

struct Measure<'a>(&'a Args);

impl Job for Measure<'_> {
    type Output = Vec<Measurement>;
    fn run<B: Backend>(self, be: B) -> anyhow::Result<Vec<Measurement>> {
        let a = self.0;
        let mut rows = Vec::new();
        for (workload, batches) in a.workloads() {
            rows.extend(time_training(be.clone(), workload, batches, a.steps, a.batch_size)?);
        }
        Ok(rows)
    }
}

/// Runs the measurements and prints the table.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.batches == 0 || args.steps == 0 || args.batch_size == 0 {
        return Err(crate::UsageError(
            "--batches, --steps and --batch-size must be at least 1".into(),
        )
        .into());
    }
    println!(
        "paper-1 MLP 784-300-300-100-10, {} batches; paper-2 CNN on 3x32x32, {} batches; \
         res-cnn-8-16 on 3x32x32, {} batches; batch {}, AR eta 0.1 T {}",
        args.batches, args.cnn_batches, args.res_cnn_batches, args.batch_size, args.steps
    );
    let mut rows = Vec::new();
    for &backend in &args.backend {
        rows.extend(dispatch(backend, Precision::F32, Measure(&args))?);
    }
    if args.peer {
        rows.extend(peer(&args)?);
    }
    println!(
        "{:<12} {:<36} {:<19} {:>9} {:>12} {:>9} {:>8}",
        "model", "backend", "algorithm", "seconds", "samples/s", "GFLOP/s", "vs bp"
    );
    for m in &rows {
        let gflops = if m.gflops.is_finite() { format!("{:.1}", m.gflops) } else { "-".into() };
        println!(
            "{:<12} {:<36} {:<19} {:>9.3} {:>12.0} {:>9} {:>8.2}",
            m.model, m.backend, m.algorithm, m.seconds, m.samples_per_second, gflops, m.ratio_to_bp
        );
    }
    for (label, ratio) in peer_ratios(&rows) {
        println!("{label}: {ratio:.2}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Times bench/peer_pytorch.py on each workload asked for.
fn peer(args: &Args) -> anyhow::Result<Vec<Measurement>> {
    let peer = Peer {
        python: args.python.clone(),
        script: args
            .peer_script
            .clone()
            .unwrap_or_else(|| crate::repo_root().join("bench/peer_pytorch.py")),
        threads: args
            .peer_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        device: args.peer_device.clone(),
        steps: args.steps,
        batch_size: args.batch_size,
    };
    let mut rows = Vec::new();
    for (workload, batches) in args.workloads() {
        rows.extend(peer.time(workload, batches).map_err(anyhow::Error::msg)?);
    }
    Ok(rows)
}
