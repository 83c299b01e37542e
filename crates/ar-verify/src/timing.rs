//! Wall-clock timing of training steps, backprop against AR (Euler, and the closed form from
//! either start), on the
//! paper-1 MLP, paper 2's CNN and the residual CNN `res-cnn-8-16`: what `cargo xtask bench`
//! prints, for any backend.

use ar_backend::Backend;
use ar_core::{Algorithm, Init, InitialState, Loss, Optimizer, Relaxation, Solver, Trainer};
use ar_models::{ModelError, ModelSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Instant;

/// One measured configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// `paper1-mlp` or `paper2-cnn`.
    pub model: String,
    /// Implementation and precision.
    pub backend: String,
    /// `bp`, `ar-euler`, `ar-closed-form` (the feedforward start, as the Euler loop) or
    /// `ar-closed-form-zero` (the zero start).
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

/// The default batch size of a measurement.
pub const BATCH: usize = 64;
const WIDTHS: [usize; 5] = [784, 300, 300, 100, 10];

/// Multiply-add flops of one training step (forward, weight gradients, and the backward
/// products the method performs) of the paper-1 MLP at batch size `batch`.
pub fn step_flops(algorithm: &str, steps: usize, batch: usize) -> f64 {
    let products: Vec<f64> =
        WIDTHS.windows(2).map(|w| 2.0 * (batch * w[0] * w[1]) as f64).collect();
    let forward: f64 = products.iter().sum();
    let below_top: f64 = products[1..products.len() - 1].iter().sum();
    let top = products[products.len() - 1];
    let backward = match algorithm {
        "bp" => below_top + top,
        // The top drive is computed once; each iteration multiplies through the other layers.
        "ar-euler" => top + steps as f64 * below_top,
        // From zero each layer of a chain sends once, as in backprop.
        "ar-closed-form-zero" => top + below_top,
        // Horner's rule: S - 1 = 2 passes (S = 3 relaxing layers) below the top.
        _ => top + (WIDTHS.len() - 3) as f64 * below_top,
    };
    2.0 * forward + backward
}

/// Which network a measurement trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// The paper-1 MLP on MNIST-shaped inputs.
    Mlp,
    /// Paper 2's CNN on CIFAR-shaped inputs.
    Cnn,
    /// The residual CNN `res-cnn-8-16` (docs/models.md) on CIFAR-shaped inputs: three blocks,
    /// two projection shortcuts, global average pooling.
    ResCnn,
}

impl Workload {
    /// The model's name in measurements: `paper1-mlp` or `paper2-cnn`.
    pub fn model_name(self) -> &'static str {
        match self {
            Workload::Mlp => "paper1-mlp",
            Workload::Cnn => "paper2-cnn",
            Workload::ResCnn => "res-cnn-8-16",
        }
    }

    /// Every workload, in the order `bench` prints them.
    pub const ALL: [Workload; 3] = [Workload::Mlp, Workload::Cnn, Workload::ResCnn];

    /// The peer script's `--model`.
    fn peer_model(self) -> &'static str {
        match self {
            Workload::Mlp => "mlp",
            Workload::Cnn => "cnn",
            Workload::ResCnn => "res-cnn",
        }
    }

    fn build<B: Backend>(self, be: B) -> Result<ar_core::Network<B>, ModelError> {
        let cifar = [3, 32, 32];
        match self {
            Workload::Mlp => ModelSpec::paper1().build(be, Init::papers(), 0),
            Workload::Cnn => ModelSpec::paper2(&cifar, 10).build(be, Init::papers(), 0),
            Workload::ResCnn => {
                ModelSpec::preset("res-cnn-8-16", &cifar, 10)?.build(be, Init::PyTorch, 0)
            }
        }
    }
}

/// Times `batches` training steps (after one warm-up step) of backprop, AR with `steps` Euler
/// iterations and AR in closed form (from the feedforward start and from zero) on `workload`, on random batches of `batch` samples from a
/// seeded pool. Each step reads its loss back, so the clock also waits for a GPU's queue.
pub fn time_training<B: Backend>(
    be: B,
    workload: Workload,
    batches: usize,
    steps: usize,
    batch: usize,
) -> Result<Vec<Measurement>, ModelError> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let pool = 16;
    let shape: Vec<usize> = match workload {
        Workload::Mlp => vec![784],
        Workload::Cnn | Workload::ResCnn => vec![3, 32, 32],
    };
    let inputs: usize = shape.iter().product();
    let mut batch_shape = vec![batch];
    batch_shape.extend(&shape);
    let pool_batches: Vec<(B::Tensor, B::Tensor)> = (0..pool)
        .map(|_| {
            let x: Vec<f64> = (0..batch * inputs).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut t = vec![0.0; batch * 10];
            for b in 0..batch {
                t[b * 10 + rng.random_range(0..10)] = 1.0;
            }
            (be.from_host(&x, &batch_shape), be.from_host(&t, &[batch, 10]))
        })
        .collect();
    let count = batches;
    let euler = Relaxation { steps, solver: Solver::Euler, ..Relaxation::papers() };
    let algorithms = [
        ("bp", Algorithm::backprop()),
        ("ar-euler", Algorithm::relaxation(euler)),
        (
            "ar-closed-form",
            Algorithm::relaxation(Relaxation { solver: Solver::ClosedForm, ..euler }),
        ),
        (
            "ar-closed-form-zero",
            Algorithm::relaxation(Relaxation {
                solver: Solver::ClosedForm,
                init: InitialState::Zero,
                ..euler
            }),
        ),
    ];
    let mut out: Vec<Measurement> = Vec::new();
    for (name, algorithm) in algorithms {
        let mut net = workload.build(be.clone())?;
        let mut trainer = Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.064, 0.0), &net)?;
        let (x, t) = &pool_batches[0];
        trainer.step(&mut net, x, t); // warm-up: buffers sized, caches hot
        let start = Instant::now();
        for i in 0..count {
            let (x, t) = &pool_batches[i % pool];
            trainer.step(&mut net, x, t);
        }
        // Reading the weights back waits for the last update (a GPU runs it asynchronously).
        let _ = net.parameters();
        let seconds = start.elapsed().as_secs_f64();
        out.push(Measurement {
            model: workload.model_name().into(),
            backend: be.name(),
            algorithm: name.into(),
            seconds,
            samples_per_second: (count * batch) as f64 / seconds,
            gflops: match workload {
                Workload::Mlp => step_flops(name, steps, batch) * count as f64 / seconds / 1e9,
                Workload::Cnn | Workload::ResCnn => f64::NAN,
            },
            ratio_to_bp: f64::NAN,
        });
    }
    let bp = out[0].seconds;
    out.iter_mut().for_each(|m| m.ratio_to_bp = m.seconds / bp);
    Ok(out)
}

/// The independent PyTorch implementation (`bench/peer_pytorch.py`) and how to run it.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The Python interpreter (with torch).
    pub python: std::path::PathBuf,
    /// The peer script.
    pub script: std::path::PathBuf,
    /// Torch CPU threads.
    pub threads: usize,
    /// The torch device the peer runs on (`cpu`, or a GPU device name torch knows).
    pub device: String,
    /// Relaxation steps T of its Euler AR.
    pub steps: usize,
    /// Samples per batch.
    pub batch_size: usize,
}

impl Peer {
    /// Times `batches` batches of `workload` with the peer script, which prints one JSON object
    /// per algorithm; the rows are comparable with [`time_training`]'s.
    pub fn time(&self, workload: Workload, batches: usize) -> Result<Vec<Measurement>, String> {
        let model = workload.peer_model();
        let out = std::process::Command::new(&self.python)
            .arg(&self.script)
            .args(["--model", model, "--batches", &batches.to_string()])
            .args(["--steps", &self.steps.to_string()])
            .args(["--batch-size", &self.batch_size.to_string()])
            .args(["--threads", &self.threads.to_string(), "--device", &self.device])
            .output()
            .map_err(|e| {
                format!("running {} {}: {e}", self.python.display(), self.script.display())
            })?;
        if !out.status.success() {
            return Err(format!(
                "the PyTorch peer failed (is torch installed? `pip install torch`): {}",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            ));
        }
        let mut rows: Vec<Measurement> = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('{')) {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("the peer printed '{line}': {e}"))?;
            let algorithm = v["algorithm"].as_str().unwrap_or("?").to_string();
            let seconds = v["seconds"].as_f64().unwrap_or(f64::NAN);
            let gflops = match workload {
                Workload::Mlp => {
                    step_flops(&algorithm, self.steps, self.batch_size) * batches as f64
                        / seconds
                        / 1e9
                }
                Workload::Cnn | Workload::ResCnn => f64::NAN,
            };
            rows.push(Measurement {
                model: workload.model_name().into(),
                backend: v["backend"].as_str().unwrap_or("pytorch").to_string(),
                gflops,
                samples_per_second: (batches * self.batch_size) as f64 / seconds,
                algorithm,
                seconds,
                ratio_to_bp: f64::NAN,
            });
        }
        let bp = rows.iter().find(|m| m.algorithm == "bp").map_or(f64::NAN, |m| m.seconds);
        rows.iter_mut().for_each(|m| m.ratio_to_bp = m.seconds / bp);
        Ok(rows)
    }
}

/// Our time over the peer's, per model and algorithm of ours (against the peer's same
/// algorithm, or its backprop where it has no such one): `(label, ratio)` with labels like
/// `paper1-mlp: ndarray-f32 ar-euler / pytorch-cpu ar-euler`.
pub fn peer_ratios(rows: &[Measurement]) -> Vec<(String, f64)> {
    let find = |model: &str, a: &str, peer: bool| {
        rows.iter().find(|m| {
            m.model == model && m.algorithm == a && m.backend.starts_with("pytorch") == peer
        })
    };
    let mut out = Vec::new();
    for model in Workload::ALL.map(Workload::model_name) {
        let Some(theirs_bp) = find(model, "bp", true) else { continue };
        for ours in ["bp", "ar-euler", "ar-closed-form", "ar-closed-form-zero"] {
            let theirs = find(model, ours, true).unwrap_or(theirs_bp);
            if let Some(o) = find(model, ours, false) {
                let label = format!(
                    "{model}: {} {ours} / {} {}",
                    o.backend, theirs.backend, theirs.algorithm
                );
                out.push((label, o.seconds / theirs.seconds));
            }
        }
    }
    out
}
