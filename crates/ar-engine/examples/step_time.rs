//! The median time of one training step at batch 64 through the engine's `Learner`: of the
//! paper-1 MLP by default, the reference the Python binding's overhead is measured against
//! (bench/python_overhead.py, docs/python.md), or of any model and input shape.
//!
//! `cargo run --release -p ar-engine --example step_time -- [ar|bp] [STEPS] [MODEL] [C,H,W]
//! [feedforward|zero]` (for example `bp 30 res-cnn-8-16 3,32,32`; the last, AR's start, defaults
//! to the configuration's).

use ar_engine::{Learner, Model};
use ar_train::sweep::on_pool;
use ar_train::{AlgorithmName, TrainConfig, TrainError};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let algorithm: AlgorithmName = args.next().unwrap_or_else(|| "ar".into()).parse()?;
    let steps: usize = args.next().map_or(Ok(300), |s| s.parse())?;
    let spec = args.next().unwrap_or_else(|| "paper1-mlp".into());
    let shape: Vec<usize> = match args.next() {
        Some(s) => s.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![784],
    };
    let mut config = TrainConfig { model: spec, ..TrainConfig::default() };
    if let Some(start) = args.next() {
        config.start = start.parse()?;
    }
    let mut model = Model::new(&config, &shape, 10)?;
    let mut learner = Learner::new(&mut model, &config, algorithm)?;
    // Inputs in [0, 1) from a fixed sequence, rounded to f32: bench/python_overhead.py feeds the
    // binding the same values (as float32 and as float64), so that both sides compute the same
    // trajectory (the cost of tanh and exp depends on their arguments).
    let mut state = 1u64;
    let x: Vec<f64> = (0..64 * shape.iter().product::<usize>())
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) as f32 as f64
        })
        .collect();
    let labels: Vec<usize> = (0..64).map(|i| i % 10).collect();
    // On the rayon pool, as the command line's training runs (ar_engine::dispatch).
    let (mut times, loss) = on_pool(|| -> Result<_, TrainError> {
        for _ in 0..20 {
            learner.step(&mut model, &x, &labels)?;
        }
        let mut times = Vec::with_capacity(steps);
        let mut loss = f64::NAN;
        for _ in 0..steps {
            let start = Instant::now();
            loss = learner.step(&mut model, &x, &labels)?.loss;
            times.push(start.elapsed().as_secs_f64());
        }
        Ok((times, loss))
    })?;
    times.sort_by(f64::total_cmp);
    println!("{algorithm} rust median_ms {:.4} last_loss {loss:e}", 1e3 * times[steps / 2]);
    Ok(())
}
