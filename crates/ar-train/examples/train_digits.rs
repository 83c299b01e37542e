//! Training as a crate user would: the digits MLP with AR and backprop side by side, stopped
//! after two epochs, resumed from its run directory, and its metrics printed.
//!
//! `cargo run --release -p ar-train --example train_digits [RUN_DIR]`

use ar_ndarray::NdArray;
use ar_train::{AlgorithmName, Event, Outcome, Session, Silent, TrainConfig};
use std::sync::atomic::Ordering;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "runs/example-digits".into());
    let _ = std::fs::remove_dir_all(&dir);
    let config = TrainConfig {
        algorithms: vec![AlgorithmName::Ar, AlgorithmName::Bp],
        epochs: Some(10),
        ..TrainConfig::default() // bundled digits, 64-64-32-10 tanh MLP, eta 0.1, T 100
    };
    let mut session = Session::create(&dir, config, NdArray::<f32>::new())?;
    // Stop after two epochs, as Ctrl-C or a cluster's time limit would; checkpoints are written.
    let stop = session.stop_flag();
    let outcome = session.run(&mut |e: Event<'_>| {
        if let Event::EpochsDone { epoch: 2 } = e {
            stop.store(true, Ordering::SeqCst);
        }
    })?;
    assert_eq!(outcome, Outcome::Stopped);
    drop(session); // releases the run directory's lock

    // A later process continues where the first stopped, bit-identical to an unbroken run.
    let mut session = Session::resume(&dir, NdArray::<f32>::new())?;
    session.run(&mut Silent)?;
    for t in session.trainees() {
        for m in &t.history {
            let acc = 100.0 * m.test_accuracy;
            println!(
                "{:>3} epoch {:>2}: train loss {:.4}, test {acc:.2}%",
                t.label, m.epoch, m.train_loss
            );
        }
    }
    println!("run directory (config, metrics, probes, checkpoints, plots): {dir}");
    Ok(())
}
