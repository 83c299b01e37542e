//! Writes the batch orders a training run uses (`BatchOrder::shuffled` for epochs 0..E of a
//! seed) as little-endian u32 sample indices, epoch after epoch, for programs outside this
//! workspace that must train on exactly the same batches (bench/fidelity_lockstep.py).
//!
//! `cargo run --release -p ar-data --example batch_order -- SAMPLES BATCH SEED EPOCHS OUT`

use ar_data::BatchOrder;
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: batch_order SAMPLES BATCH SEED EPOCHS OUT";
    let [samples, batch, seed, epochs, out] = &args[..] else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let number = |s: &str, what: &str| -> u64 {
        s.parse().unwrap_or_else(|_| {
            eprintln!("{what} '{s}' is not a whole number; {usage}");
            std::process::exit(2)
        })
    };
    let (samples, batch) = (number(samples, "SAMPLES") as usize, number(batch, "BATCH") as usize);
    let (seed, epochs) = (number(seed, "SEED"), number(epochs, "EPOCHS"));
    if batch == 0 || samples == 0 || samples > u32::MAX as usize {
        eprintln!("SAMPLES must be 1 to 2^32 - 1 and BATCH at least 1; {usage}");
        std::process::exit(2);
    }
    let mut bytes = Vec::with_capacity(samples * 4 * epochs as usize);
    for epoch in 0..epochs {
        for &i in BatchOrder::shuffled(samples, batch, seed, epoch).batches().flatten() {
            bytes.extend((i as u32).to_le_bytes());
        }
    }
    let written = std::fs::File::create(out).and_then(|mut f| f.write_all(&bytes));
    if let Err(e) = written {
        eprintln!("{out}: {e}");
        std::process::exit(1);
    }
}
