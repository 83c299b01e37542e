//! Training on candle against training on ndarray: the same seed gives bit-identical initial
//! weights, and a few steps of backprop and of AR give the same losses and weights.

use ar_backend::{Activation, Backend};
use ar_candle::{Candle, Precision};
use ar_core::{Algorithm, Init, Loss, Network, Optimizer, Relaxation, Solver, Trainer};
use ar_models::ModelSpec;
use ar_ndarray::NdArray;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 8;
const STEPS: usize = 4;

fn spec() -> ModelSpec {
    ModelSpec::mlp(&[12, 10, 9, 4], Activation::Tanh, Activation::Identity).unwrap()
}

fn batch(seed: u64, inputs: usize, classes: usize) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = (0..BATCH * inputs).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut t = vec![0.0; BATCH * classes];
    for b in 0..BATCH {
        t[b * classes + rng.random_range(0..classes)] = 1.0;
    }
    (x, t)
}

fn weights<B: Backend>(net: &Network<B>) -> Vec<f64> {
    let be = net.backend();
    net.layers
        .iter()
        .flat_map(|l| {
            let d = l.as_dense().expect("an MLP layer");
            let mut v = be.to_host(&d.weight);
            v.extend(be.to_host(&d.bias));
            v
        })
        .collect()
}

/// The per-step losses and the final weights after `STEPS` steps on one batch.
fn train<B: Backend>(
    be: B,
    spec: &ModelSpec,
    algorithm: Algorithm,
    loss: Loss,
) -> (Vec<f64>, Vec<f64>) {
    let mut net = spec.build(be.clone(), Init::PyTorch, 7).unwrap();
    let (inputs, classes) = (net.input_width(), net.output_width());
    let (x, t) = batch(3, inputs, classes);
    let x = be.from_host(&x, &[BATCH, inputs]);
    let t = be.from_host(&t, &[BATCH, classes]);
    // SGD with momentum for the squared error, Adam (the device kernel) for cross-entropy.
    let optimizer =
        if loss == Loss::Mse { Optimizer::sgd(0.05, 0.9) } else { Optimizer::adam(0.01) };
    let mut trainer = Trainer::new(algorithm, loss, optimizer, &net).unwrap();
    let losses = (0..STEPS).map(|_| trainer.step(&mut net, &x, &t).loss).collect();
    (losses, weights(&net))
}

fn max_relative(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

#[test]
fn same_seed_gives_bit_identical_initial_weights() {
    for init in [Init::papers(), Init::PyTorch] {
        let spec =
            ModelSpec::parse_widths("20-7-1-3", Activation::Relu, Activation::Identity).unwrap();
        let nd64 = spec.build(NdArray::<f64>::new(), init, 42).unwrap();
        let c64 = spec.build(Candle::cpu(Precision::F64), init, 42).unwrap();
        assert_eq!(weights(&nd64), weights(&c64), "f64, {init:?}");
        let nd32 = spec.build(NdArray::<f32>::new(), init, 42).unwrap();
        let c32 = spec.build(Candle::cpu(Precision::F32), init, 42).unwrap();
        assert_eq!(weights(&nd32), weights(&c32), "f32, {init:?}");
    }
}

#[test]
fn training_steps_agree_with_ndarray() {
    let algorithms = [
        ("backprop", Algorithm::backprop()),
        (
            "ar (papers' relaxation)",
            Algorithm::relaxation(Relaxation { solver: Solver::Euler, ..Relaxation::papers() }),
        ),
        (
            "ar (closed form)",
            Algorithm::relaxation(Relaxation {
                solver: Solver::ClosedForm,
                ..Relaxation::papers()
            }),
        ),
    ];
    for (label, algorithm) in algorithms {
        for loss in [Loss::Mse, Loss::CrossEntropy] {
            let spec = spec();
            let (l_ref, w_ref) = train(NdArray::<f64>::new(), &spec, algorithm, loss);
            let (l, w) = train(Candle::cpu(Precision::F64), &spec, algorithm, loss);
            let (dl, dw) = (max_relative(&l, &l_ref), max_relative(&w, &w_ref));
            eprintln!("{label}, {loss}, f64: losses {dl:.1e}, weights {dw:.1e}");
            assert!(
                dl <= 1e-10 && dw <= 1e-10,
                "{label}, {loss}, f64: losses {dl:.1e}, weights {dw:.1e}"
            );
            assert!(
                l_ref[STEPS - 1] < l_ref[0],
                "{label}, {loss}: the loss should fall: {l_ref:?}"
            );

            let (l_ref, w_ref) = train(NdArray::<f32>::new(), &spec, algorithm, loss);
            let (l, w) = train(Candle::cpu(Precision::F32), &spec, algorithm, loss);
            let (dl, dw) = (max_relative(&l, &l_ref), max_relative(&w, &w_ref));
            eprintln!("{label}, {loss}, f32: losses {dl:.1e}, weights {dw:.1e}");
            assert!(
                dl <= 1e-5 && dw <= 1e-5,
                "{label}, {loss}, f32: losses {dl:.1e}, weights {dw:.1e}"
            );
        }
    }
}

/// The paper-1 network (relu, so kinks are possible in principle) for one step of each method.
#[test]
fn paper1_step_agrees_with_ndarray() {
    let spec = ModelSpec::paper1();
    for algorithm in [Algorithm::backprop(), Algorithm::relaxation(Relaxation::papers())] {
        let (l_ref, w_ref) = one_step(NdArray::<f64>::new(), &spec, algorithm);
        let (l, w) = one_step(Candle::cpu(Precision::F64), &spec, algorithm);
        assert!((l - l_ref).abs() <= 1e-10 * l_ref.abs(), "loss {l} vs {l_ref}");
        assert!(max_relative(&w, &w_ref) <= 1e-10);
    }
}

fn one_step<B: Backend>(be: B, spec: &ModelSpec, algorithm: Algorithm) -> (f64, Vec<f64>) {
    let mut net = spec.build(be.clone(), Init::papers(), 1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x: Vec<f64> = (0..4 * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    let mut t = vec![0.0; 40];
    for b in 0..4 {
        t[b * 10 + rng.random_range(0..10)] = 1.0;
    }
    let (x, t) = (be.from_host(&x, &[4, 784]), be.from_host(&t, &[4, 10]));
    let mut trainer = Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.1, 0.0), &net).unwrap();
    let loss = trainer.step(&mut net, &x, &t).loss;
    (loss, weights(&net))
}
