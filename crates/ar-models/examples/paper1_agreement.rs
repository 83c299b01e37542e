//! Builds the paper-1 MLP as a library user would, relaxes one batch with the papers' settings
//! and to convergence, and prints how closely each layer's update agrees with backprop.
//!
//! Run with `cargo run --release -p ar-models --example paper1_agreement`.

use ar_core::metrics::{angle_degrees, relative_error};
use ar_core::{Algorithm, Backend, Gradients, Init, Loss, Relaxation, Signals};
use ar_models::ModelSpec;
use ar_ndarray::NdArray;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() {
    // f64 on the CPU; NdArray::<f32> is the training precision.
    let be = NdArray::<f64>::new();
    // 784-300-300-100-10, ReLU hidden, linear output, N(0, 0.05^2) weights, seed 0.
    let net = ModelSpec::paper1().build(be, Init::papers(), 0).expect("the preset builds");

    // One batch of 64 MNIST-shaped inputs in [0, 1] with one-hot targets.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let batch = 64;
    let x: Vec<f64> = (0..batch * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    let mut t = vec![0.0; batch * 10];
    for b in 0..batch {
        t[b * 10 + rng.random_range(0..10)] = 1.0;
    }
    let x = net.upload_batch(&x, batch).expect("784 values per sample");
    let t = be.from_host(&t, &[batch, 10]);

    // Freeze the forward pass, clamp the top at the loss gradient.
    let cache = net.forward(&x);
    let top = Loss::Mse.top_gradient(&be, &cache.output, &t);

    let grads = |algorithm: &Algorithm| {
        let mut signals = Signals::new();
        let stats = signals.compute(&net, &cache, &top, algorithm);
        (Gradients::compute(&net, &cache, &signals, &algorithm.variant).to_host(&be), stats)
    };
    let (bp, _) = grads(&Algorithm::backprop());
    let papers = Relaxation::papers();
    let converged = Relaxation { steps: 10_000, tolerance: Some(1e-13), ..papers };
    for (label, relaxation) in
        [("eta 0.1, T 100 (the papers)", papers), ("run to convergence", converged)]
    {
        let (ar, stats) = grads(&Algorithm::relaxation(relaxation));
        let stats = stats.expect("relaxation reports its iterations");
        println!("AR, {label}: {} iterations", stats.iterations);
        println!("  layer   relative error   angle (degrees)");
        for (k, ((aw, ab), (bw, bb))) in ar.iter().zip(&bp).enumerate() {
            let a: Vec<f64> = aw.iter().chain(ab).copied().collect();
            let b: Vec<f64> = bw.iter().chain(bb).copied().collect();
            println!(
                "  {:>5}   {:>14.3e}   {:>15.2e}",
                k + 1,
                relative_error(&a, &b),
                angle_degrees(&a, &b)
            );
        }
    }
}
