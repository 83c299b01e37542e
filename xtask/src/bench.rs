//! `cargo xtask bench`: one epoch-equivalent (937 batches of 64) of the paper-1 MLP on
//! MNIST-shaped data and a fixed number of batches of paper 2's CNN on CIFAR-shaped data, for
//! backprop, AR with Euler steps and AR in closed form, timed side by side in one run, with
//! optional PyTorch peer timings (MLP) from `bench/peer_pytorch.py`.

use crate::backend::{dispatch, BackendName, Job, PrecisionName};
use anyhow::Context;
use ar_backend::Backend;
use ar_core::{Algorithm, Init, Loss, Optimizer, Relaxation, Solver, Trainer};
use ar_models::{MlpSpec, ModelSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

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
    /// Backends to time (comma-separated), each in f32.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ndarray,candle")]
    backend: Vec<BackendName>,
    /// Write the table as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// One measured configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// `paper1-mlp` or `paper2-cnn`.
    pub model: String,
    /// Implementation and precision.
    pub backend: String,
    /// `bp`, `ar-euler` or `ar-closed-form`.
    pub algorithm: String,
    /// Wall-clock seconds for all batches.
    pub seconds: f64,
    /// Training samples per second.
    pub samples_per_second: f64,
    /// Useful floating-point operations per second (multiply-adds counted as two; MLP only).
    pub gflops: f64,
    /// Seconds relative to backprop on the same backend in the same run.
    pub ratio_to_bp: f64,
}

const BATCH: usize = 64;
const WIDTHS: [usize; 5] = [784, 300, 300, 100, 10];

/// Multiply-add flops of one training step (forward, weight gradients, and the backward
/// products the method performs) of the paper-1 MLP at batch 64.
fn step_flops(algorithm: &str, steps: usize) -> f64 {
    let products: Vec<f64> =
        WIDTHS.windows(2).map(|w| 2.0 * (BATCH * w[0] * w[1]) as f64).collect();
    let forward: f64 = products.iter().sum();
    let below_top: f64 = products[1..products.len() - 1].iter().sum();
    let top = products[products.len() - 1];
    let backward = match algorithm {
        "bp" => below_top + top,
        // The top drive is computed once; each iteration multiplies through the other layers.
        "ar-euler" => top + steps as f64 * below_top,
        // Horner's rule: L - 2 passes through the layers below the top.
        _ => top + (WIDTHS.len() - 3) as f64 * below_top,
    };
    2.0 * forward + backward
}

/// Which network a measurement trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// The paper-1 MLP on MNIST-shaped inputs.
    Mlp,
    /// Paper 2's CNN on CIFAR-shaped inputs.
    Cnn,
}

fn measure<B: Backend>(be: B, args: &Args, workload: Workload) -> anyhow::Result<Vec<Measurement>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let pool = 16;
    let shape: Vec<usize> = match workload {
        Workload::Mlp => vec![784],
        Workload::Cnn => vec![3, 32, 32],
    };
    let inputs: usize = shape.iter().product();
    let mut batch_shape = vec![BATCH];
    batch_shape.extend(&shape);
    let batches: Vec<(B::Tensor, B::Tensor)> = (0..pool)
        .map(|_| {
            let x: Vec<f64> = (0..BATCH * inputs).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut t = vec![0.0; BATCH * 10];
            for b in 0..BATCH {
                t[b * 10 + rng.random_range(0..10)] = 1.0;
            }
            (be.from_host(&x, &batch_shape), be.from_host(&t, &[BATCH, 10]))
        })
        .collect();
    let count = match workload {
        Workload::Mlp => args.batches,
        Workload::Cnn => args.cnn_batches,
    };
    let euler = Relaxation { steps: args.steps, ..Relaxation::papers() };
    let algorithms = [
        ("bp", Algorithm::backprop()),
        ("ar-euler", Algorithm::relaxation(euler)),
        (
            "ar-closed-form",
            Algorithm::relaxation(Relaxation { solver: Solver::ClosedForm, ..euler }),
        ),
    ];
    let mut out: Vec<Measurement> = Vec::new();
    for (name, algorithm) in algorithms {
        let mut net = match workload {
            Workload::Mlp => MlpSpec::paper1().build(be.clone(), Init::papers(), 0)?,
            Workload::Cnn => ModelSpec::paper2(10).build(be.clone(), &shape, Init::papers(), 0)?,
        };
        let mut trainer = Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.064, 0.0), &net)?;
        let (x, t) = &batches[0];
        trainer.step(&mut net, x, t); // warm-up: buffers sized, caches hot
        let start = Instant::now();
        for i in 0..count {
            let (x, t) = &batches[i % pool];
            trainer.step(&mut net, x, t);
        }
        let seconds = start.elapsed().as_secs_f64();
        out.push(Measurement {
            model: match workload {
                Workload::Mlp => "paper1-mlp".into(),
                Workload::Cnn => "paper2-cnn".into(),
            },
            backend: be.name(),
            algorithm: name.into(),
            seconds,
            samples_per_second: (count * BATCH) as f64 / seconds,
            gflops: match workload {
                Workload::Mlp => step_flops(name, args.steps) * count as f64 / seconds / 1e9,
                Workload::Cnn => f64::NAN,
            },
            ratio_to_bp: f64::NAN,
        });
    }
    let bp = out[0].seconds;
    out.iter_mut().for_each(|m| m.ratio_to_bp = m.seconds / bp);
    Ok(out)
}

struct Measure<'a>(&'a Args);

impl Job for Measure<'_> {
    type Output = Vec<Measurement>;
    fn run<B: Backend>(self, be: B) -> anyhow::Result<Vec<Measurement>> {
        let mut rows = measure(be.clone(), self.0, Workload::Mlp)?;
        if self.0.cnn_batches > 0 {
            rows.extend(measure(be, self.0, Workload::Cnn)?);
        }
        Ok(rows)
    }
}

/// Runs the measurements and prints the table.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.batches == 0 || args.steps == 0 {
        return Err(crate::UsageError("--batches and --steps must be at least 1".into()).into());
    }
    println!(
        "paper-1 MLP 784-300-300-100-10, batch {BATCH}, {} batches, AR eta 0.1 T {}",
        args.batches, args.steps
    );
    let mut rows = Vec::new();
    for &backend in &args.backend {
        rows.extend(dispatch(backend, PrecisionName::F32, Measure(&args))?);
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
        let ours =
            |a: &str| rows.iter().find(|m| m.algorithm == a && !m.backend.starts_with("pytorch"));
        let theirs =
            |a: &str| rows.iter().find(|m| m.algorithm == a && m.backend.starts_with("pytorch"));
        for a in ["bp", "ar-euler"] {
            if let (Some(o), Some(t)) = (ours(a), theirs(a)) {
                println!("ndarray / pytorch, {a}: {:.2}", o.seconds / t.seconds);
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

/// Times bench/peer_pytorch.py, which prints one JSON object per algorithm.
fn peer(args: &Args) -> anyhow::Result<Vec<Measurement>> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peer_pytorch.py");
    let threads = args
        .peer_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let out = Command::new(&args.python)
        .arg(&script)
        .args(["--batches", &args.batches.to_string(), "--steps", &args.steps.to_string()])
        .args(["--threads", &threads.to_string()])
        .output()
        .with_context(|| format!("running {} bench/peer_pytorch.py", args.python.display()))?;
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
        rows.push(Measurement {
            model: "paper1-mlp".into(),
            backend: v["backend"].as_str().unwrap_or("pytorch").to_string(),
            gflops: step_flops(&algorithm, args.steps) * args.batches as f64 / seconds / 1e9,
            samples_per_second: (args.batches * BATCH) as f64 / seconds,
            algorithm,
            seconds,
            ratio_to_bp: f64::NAN,
        });
    }
    let bp = rows.iter().find(|m| m.algorithm == "bp").map_or(f64::NAN, |m| m.seconds);
    rows.iter_mut().for_each(|m| m.ratio_to_bp = m.seconds / bp);
    Ok(rows)
}
