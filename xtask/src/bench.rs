//! `cargo xtask bench`: one epoch-equivalent (937 batches of 64) of the paper-1 MLP on
//! MNIST-shaped data and a fixed number of batches of paper 2's CNN on CIFAR-shaped data, for
//! backprop, AR with Euler steps and AR in closed form, timed side by side in one run, with
//! optional PyTorch peer timings (MLP and CNN, on the CPU or a GPU) from `bench/peer_pytorch.py`.

use crate::backend::{dispatch, BackendName, Job};
use anyhow::Context;
use ar_backend::{Backend, Precision};
use ar_verify::timing::{step_flops, time_training, Measurement, Workload, BATCH};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// Flags of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Batches per measurement (937 of 64 is one MNIST epoch).
    #[arg(long, default_value_t = 937)]
    batches: usize,
    /// Batches of the paper-2 CNN (3x32x32 inputs) per measurement; 0 skips the CNN.
    #[arg(long, default_value_t = 20)]
    cnn_batches: usize,
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
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ndarray,candle")]
    backend: Vec<BackendName>,
    /// Write the table as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

struct Measure<'a>(&'a Args);

impl Job for Measure<'_> {
    type Output = Vec<Measurement>;
    fn run<B: Backend>(self, be: B) -> anyhow::Result<Vec<Measurement>> {
        let a = self.0;
        let mut rows = time_training(be.clone(), Workload::Mlp, a.batches, a.steps, a.batch_size)?;
        if a.cnn_batches > 0 {
            rows.extend(time_training(be, Workload::Cnn, a.cnn_batches, a.steps, a.batch_size)?);
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
         batch {}, AR eta 0.1 T {}",
        args.batches, args.cnn_batches, args.batch_size, args.steps
    );
    let mut rows = Vec::new();
    for &backend in &args.backend {
        rows.extend(dispatch(backend, Precision::F32, Measure(&args))?);
    }
    if args.peer {
        rows.extend(peer(&args)?);
    }
    println!(
        "{:<11} {:<36} {:<16} {:>9} {:>12} {:>9} {:>8}",
        "model", "backend", "algorithm", "seconds", "samples/s", "GFLOP/s", "vs bp"
    );
    for m in &rows {
        let gflops = if m.gflops.is_finite() { format!("{:.1}", m.gflops) } else { "-".into() };
        println!(
            "{:<11} {:<36} {:<16} {:>9.3} {:>12.0} {:>9} {:>8.2}",
            m.model, m.backend, m.algorithm, m.seconds, m.samples_per_second, gflops, m.ratio_to_bp
        );
    }
    if args.peer {
        let find = |model: &str, a: &str, peer: bool| {
            rows.iter().find(|m| {
                m.model == model && m.algorithm == a && m.backend.starts_with("pytorch") == peer
            })
        };
        for model in ["paper1-mlp", "paper2-cnn"] {
            let Some(theirs_bp) = find(model, "bp", true) else { continue };
            for ours in ["bp", "ar-euler", "ar-closed-form"] {
                let theirs = find(model, ours, true).unwrap_or(theirs_bp);
                if let Some(o) = find(model, ours, false) {
                    println!(
                        "{model}: {} {ours} / {} {}: {:.2}",
                        o.backend,
                        theirs.backend,
                        theirs.algorithm,
                        o.seconds / theirs.seconds
                    );
                }
            }
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Times bench/peer_pytorch.py on the MLP (and the CNN unless --cnn-batches is 0).
fn peer(args: &Args) -> anyhow::Result<Vec<Measurement>> {
    let mut rows = peer_model(args, "mlp", args.batches)?;
    if args.cnn_batches > 0 {
        rows.extend(peer_model(args, "cnn", args.cnn_batches)?);
    }
    Ok(rows)
}

/// Runs the peer script for one model; it prints one JSON object per algorithm.
fn peer_model(args: &Args, model: &str, batches: usize) -> anyhow::Result<Vec<Measurement>> {
    let script = args.peer_script.clone().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peer_pytorch.py")
    });
    let threads = args
        .peer_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let out = Command::new(&args.python)
        .arg(&script)
        .args(["--model", model, "--batches", &batches.to_string()])
        .args(["--steps", &args.steps.to_string()])
        .args(["--batch-size", &args.batch_size.to_string()])
        .args(["--threads", &threads.to_string(), "--device", &args.peer_device])
        .output()
        .with_context(|| format!("running {} {}", args.python.display(), script.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "the PyTorch peer failed (is torch installed? `pip install torch`): {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
    let mut rows: Vec<Measurement> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let algorithm = v["algorithm"].as_str().unwrap_or("?").to_string();
        let seconds = v["seconds"].as_f64().unwrap_or(f64::NAN);
        let gflops = if model == "mlp" {
            step_flops(&algorithm, args.steps, args.batch_size) * batches as f64 / seconds / 1e9
        } else {
            f64::NAN
        };
        rows.push(Measurement {
            model: if model == "mlp" { "paper1-mlp" } else { "paper2-cnn" }.into(),
            backend: v["backend"].as_str().unwrap_or("pytorch").to_string(),
            gflops,
            samples_per_second: (batches * args.batch_size) as f64 / seconds,
            algorithm,
            seconds,
            ratio_to_bp: f64::NAN,
        });
    }
    let bp = rows.iter().find(|m| m.algorithm == "bp").map_or(f64::NAN, |m| m.seconds);
    rows.iter_mut().for_each(|m| m.ratio_to_bp = m.seconds / bp);
    Ok(rows)
}
