//! candle's autograd against ar-core: backprop and AR (eta = 1 sweep, an exact identity) on
//! ndarray and on candle agree with the oracle's gradients on random MLPs with every activation
//! and both losses.

use ar_backend::{Activation, Backend};
use ar_candle::{Candle, Precision};
use ar_core::{
    Algorithm, DenseShape, Gradients, Init, InitialState, Loss, Network, Relaxation, Schedule,
    Signals, Solver,
};
use ar_ndarray::NdArray;
use ar_verify::cases::dense_shapes;
use ar_verify::oracle::{network_loss_and_gradients, HostGradients};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Case {
    shapes: Vec<DenseShape>,
    loss: Loss,
    batch: usize,
    seed: u64,
}

fn cases() -> Vec<Case> {
    use Activation::*;
    let plans: [(&[Activation], &[usize], Loss, usize); 4] = [
        (&[Sigmoid, Identity], &[5, 7, 3], Loss::CrossEntropy, 1),
        (&[Tanh, Softplus, Sigmoid], &[6, 1, 8, 4], Loss::Mse, 5),
        (&[Relu, LeakyRelu, Tanh, Identity], &[9, 12, 6, 5, 3], Loss::CrossEntropy, 4),
        (&[Softplus, Relu, LeakyRelu, Identity], &[4, 6, 1, 5, 2], Loss::Mse, 1),
    ];
    plans
        .iter()
        .enumerate()
        .map(|(i, &(acts, widths, loss, batch))| Case {
            shapes: dense_shapes(widths, acts),
            loss,
            batch,
            seed: 30 + i as u64,
        })
        .collect()
}

fn data(case: &Case) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
    let (inputs, classes) = (case.shapes[0].inputs, case.shapes[case.shapes.len() - 1].outputs);
    let x = (0..case.batch * inputs).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut t = vec![0.0; case.batch * classes];
    for b in 0..case.batch {
        t[b * classes + rng.random_range(0..classes)] = 1.0;
    }
    (x, t)
}

/// Our update for one batch (backprop or AR) on the host, and the loss.
fn ours<B: Backend>(be: B, case: &Case, algorithm: &Algorithm) -> (f64, HostGradients) {
    let net = Network::dense_stack(be.clone(), &case.shapes, Init::PyTorch, case.seed).unwrap();
    let (x, t) = data(case);
    let x = be.from_host(&x, &[case.batch, case.shapes[0].inputs]);
    let t = be.from_host(&t, &[case.batch, net.output_width()]);
    let cache = net.forward(&x);
    let top = case.loss.top_gradient(&be, &cache.output, &t);
    let mut signals = Signals::new();
    signals.compute(&net, &cache, &top, algorithm);
    let grads = Gradients::compute(&net, &cache, &signals, &algorithm.variant);
    let loss = case.loss.value(&be.to_host(&cache.output), &be.to_host(&t), net.output_width());
    (loss, grads.to_host(&be))
}

/// `||a - b|| / ||b||` over one layer's weights and biases together.
fn relative(a: &(Vec<f64>, Vec<f64>), b: &(Vec<f64>, Vec<f64>)) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in a.0.iter().chain(&a.1).zip(b.0.iter().chain(&b.1)) {
        num += (x - y) * (x - y);
        den += y * y;
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

fn check(label: &str, got: &HostGradients, oracle: &HostGradients, tolerance: f64) {
    assert_eq!(got.len(), oracle.len());
    for (k, (g, o)) in got.iter().zip(oracle).enumerate() {
        let r = relative(g, o);
        eprintln!("{label}, layer {}: relative error {r:.2e}", k + 1);
        assert!(r <= tolerance, "{label}, layer {}: relative error {r:.2e}", k + 1);
    }
}

#[test]
fn oracle_agrees_with_backprop_and_ar_on_both_backends() {
    let ar_identity = Algorithm::relaxation(Relaxation {
        eta: 1.0,
        steps: 1,
        tolerance: None,
        schedule: Schedule::Sweep,
        init: InitialState::Feedforward,
        solver: Solver::Euler,
        relax_input: false,
    });
    let methods = [("backprop", Algorithm::backprop()), ("ar eta=1 sweep", ar_identity)];
    for case in cases() {
        let probe =
            Network::dense_stack(NdArray::<f64>::new(), &case.shapes, Init::PyTorch, case.seed)
                .unwrap();
        let layers = probe.to_host();
        let (x, t) = data(&case);
        let oracle_at = |p| {
            let input = [case.shapes[0].inputs];
            network_loss_and_gradients(
                &Candle::cpu(p),
                &layers,
                &input,
                &x,
                &t,
                case.batch,
                case.loss,
            )
        };
        let (oracle_loss_value, oracle) = oracle_at(Precision::F64).unwrap();
        for (label, algorithm) in &methods {
            let (loss, g) = ours(NdArray::<f64>::new(), &case, algorithm);
            assert!((loss - oracle_loss_value).abs() <= 1e-12 * loss.abs().max(1.0));
            check(&format!("ndarray-f64 {label}"), &g, &oracle, 1e-10);
            let (_, g) = ours(Candle::cpu(Precision::F64), &case, algorithm);
            check(&format!("candle-cpu-f64 {label}"), &g, &oracle, 1e-10);
        }
        // In f32: both sides in single precision.
        let (_, oracle32) = oracle_at(Precision::F32).unwrap();
        check("oracle f32 vs f64", &oracle32, &oracle, 1e-4);
        let (_, g) = ours(Candle::cpu(Precision::F32), &case, &Algorithm::backprop());
        check("candle-cpu-f32 backprop", &g, &oracle32, 1e-4);
    }
}
