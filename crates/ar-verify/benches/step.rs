//! Criterion benches, per backend (ndarray and candle CPU, f32): one training step of the
//! paper-1 MLP, of paper 2's CNN and of the residual CNN res-cnn-8-16 (batch 64) with backprop
//! and AR (T = 100, eta = 0.1; Euler and closed form), the MLP's relaxation loop alone, a plain
//! GEMM of the relaxation's shapes, and the graph's merge and global-average-pooling nodes.
//! Ids start with the backend's name.

use ar_candle::{Candle, Precision};
use ar_core::{
    Algorithm, Backend, Init, Layer, Loss, Optimizer, Relaxation, Signals, Solver, Trainer,
};
use ar_models::ModelSpec;
use ar_ndarray::NdArray;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const BATCH: usize = 64;

fn data<B: Backend>(be: &B) -> (B::Tensor, B::Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x: Vec<f64> = (0..BATCH * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    let mut t = vec![0.0; BATCH * 10];
    for b in 0..BATCH {
        t[b * 10 + rng.random_range(0..10)] = 1.0;
    }
    (be.from_host(&x, &[BATCH, 784]), be.from_host(&t, &[BATCH, 10]))
}

/// Multiply-adds of one relaxation iteration of the paper-1 MLP: the drive of the top hidden
/// layer is constant and computed once, so each iteration multiplies [64, 300] x [300, 300] and
/// [64, 100] x [100, 300].
const RELAX_FLOPS_PER_ITERATION: u64 = 2 * (BATCH as u64) * (300 * 300 + 100 * 300);

fn steps<B: Backend>(c: &mut Criterion, be: B) {
    let (x, t) = data(&be);
    let mut group = c.benchmark_group(format!("{}/paper1-mlp-batch64", be.name()));
    group.sample_size(20);
    let closed = Relaxation { solver: Solver::ClosedForm, ..Relaxation::papers() };
    for (name, algorithm) in [
        ("bp-step", Algorithm::backprop()),
        (
            "ar-step-T100-euler",
            Algorithm::relaxation(Relaxation { solver: Solver::Euler, ..Relaxation::papers() }),
        ),
        ("ar-step-T100-closed-form", Algorithm::relaxation(closed)),
    ] {
        let mut net = ModelSpec::paper1().build(be.clone(), Init::papers(), 0).unwrap();
        let mut trainer =
            Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.01, 0.0), &net).unwrap();
        group.bench_function(name, |b| b.iter(|| black_box(trainer.step(&mut net, &x, &t))));
    }

    let net = ModelSpec::paper1().build(be.clone(), Init::papers(), 0).unwrap();
    let cache = net.forward(&x);
    let top = Loss::Mse.top_gradient(&be, &cache.output, &t);
    let algorithm =
        Algorithm::relaxation(Relaxation { solver: Solver::Euler, ..Relaxation::papers() });
    let mut signals = Signals::new();
    group.throughput(Throughput::Elements(RELAX_FLOPS_PER_ITERATION * 100));
    group.bench_function("relaxation-only-T100 (elements = flops)", |b| {
        b.iter(|| black_box(signals.compute(&net, &cache, &top, &algorithm)))
    });

    // The same multiplications as a bare GEMM loop, for the loop's share of GEMM speed.
    let e300 = be.zeros(&[BATCH, 300]);
    let e100 = be.zeros(&[BATCH, 100]);
    let w300 = be.from_host(&vec![0.01; 300 * 300], &[300, 300]);
    let w100 = be.from_host(&vec![0.01; 100 * 300], &[100, 300]);
    let (mut v1, mut v2) = (be.zeros(&[BATCH, 300]), be.zeros(&[BATCH, 300]));
    group.bench_function("plain-gemm-same-shapes-x100 (elements = flops)", |b| {
        b.iter(|| {
            for _ in 0..100 {
                be.gemm(0.1, &e300, false, &w300, false, 0.9, &mut v1);
                be.gemm(0.1, &e100, false, &w100, false, 0.9, &mut v2);
            }
            black_box(&v1);
        })
    });
    group.finish();
}

/// One training step of a CNN on 3x32x32 inputs, batch 64 (paper 2's, `cnn-paper`, or the
/// residual `res-cnn-8-16`): backprop, AR with 100 Euler steps, AR in closed form.
fn cnn_steps<B: Backend>(c: &mut Criterion, be: B, (label, model, init): (&str, &str, Init)) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f64> = (0..BATCH * 3 * 32 * 32).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut t = vec![0.0; BATCH * 10];
    for b in 0..BATCH {
        t[b * 10 + rng.random_range(0..10)] = 1.0;
    }
    let (x, t) = (be.from_host(&x, &[BATCH, 3, 32, 32]), be.from_host(&t, &[BATCH, 10]));
    let mut group = c.benchmark_group(format!("{}/{label}-batch64", be.name()));
    group.sample_size(10);
    let closed = Relaxation { solver: Solver::ClosedForm, ..Relaxation::papers() };
    for (name, algorithm) in [
        ("bp-step", Algorithm::backprop()),
        (
            "ar-step-T100-euler",
            Algorithm::relaxation(Relaxation { solver: Solver::Euler, ..Relaxation::papers() }),
        ),
        ("ar-step-T100-closed-form", Algorithm::relaxation(closed)),
    ] {
        let spec = ModelSpec::preset(model, &[3, 32, 32], 10).unwrap();
        let mut net = spec.build(be.clone(), init, 0).unwrap();
        let mut trainer =
            Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.01, 0.0), &net).unwrap();
        group.bench_function(name, |b| b.iter(|| black_box(trainer.step(&mut net, &x, &t))));
    }
    group.finish();
}

/// The merge and global-average-pooling nodes alone, forward and VJP, on res-cnn-8-16's
/// shapes at batch 64 (the stem's [64, 16, 32, 32] for the sum, the last stage's
/// [64, 64, 8, 8] for the pooling).
fn graph_nodes<B: Backend>(c: &mut Criterion, be: B) {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut random = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        be.from_host(&v, shape)
    };
    let (a, b) = (random(&[BATCH, 16, 32, 32]), random(&[BATCH, 16, 32, 32]));
    let planes = random(&[BATCH, 64, 8, 8]);
    let means = random(&[BATCH, 64]);
    let mut group = c.benchmark_group(format!("{}/graph-nodes-batch64", be.name()));
    group.bench_function("add-forward-16x32x32", |bench| {
        bench.iter(|| {
            let mut sum = a.clone();
            be.axpby(1.0, &b, 1.0, &mut sum);
            black_box(sum)
        })
    });
    let mut out = be.zeros(&[BATCH, 16, 32, 32]);
    group.bench_function("add-vjp-16x32x32", |bench| {
        bench.iter(|| Layer::<B>::Add.backward_into(&be, &a, false, None, 0.1, 0.9, &mut out))
    });
    group.bench_function("gap-forward-64x8x8", |bench| {
        bench.iter(|| black_box(Layer::<B>::GlobalAvgPool.forward_parameter_free(&be, &planes)))
    });
    let mut spread = be.zeros(&[BATCH, 64, 8, 8]);
    group.bench_function("gap-vjp-64x8x8", |bench| {
        bench.iter(|| {
            Layer::<B>::GlobalAvgPool.backward_into(&be, &means, false, None, 1.0, 0.0, &mut spread)
        })
    });
    group.finish();
}

fn all(c: &mut Criterion) {
    steps(c, NdArray::<f32>::new());
    steps(c, Candle::cpu(Precision::F32));
    for cnn in [
        ("paper2-cnn", "cnn-paper", Init::papers()),
        ("res-cnn-8-16", "res-cnn-8-16", Init::PyTorch),
    ] {
        cnn_steps(c, NdArray::<f32>::new(), cnn);
        cnn_steps(c, Candle::cpu(Precision::F32), cnn);
    }
    graph_nodes(c, NdArray::<f32>::new());
    graph_nodes(c, Candle::cpu(Precision::F32));
}

criterion_group!(benches, all);
criterion_main!(benches);
