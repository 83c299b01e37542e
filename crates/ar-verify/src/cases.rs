//! The models the suite checks (the paper-1 MLP and random MLPs covering every activation, both
//! losses, batch 1 and larger, width 1; small CNNs and paper 2's; random DAGs with skip edges,
//! a residual MLP and a residual CNN) and the suite itself.

use crate::checks::{compare, finite_differences, forward_agreement, update, Batch, HostGrads};
use crate::oracle::network_loss_and_gradients;
use crate::report::{Report, Row};
use ar_backend::{Activation, Backend, Precision};
use ar_candle::Candle;
use ar_core::{
    relaxation_depth, Algorithm, DenseShape, FPrime, Feedback, Init, InitialState, LayerShape,
    LayerSpec, Loss, Method, Network, Relaxation, Schedule, Solver, Variant,
};
use ar_models::ModelSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The layers of an MLP with these widths (input first) and these activations, one per layer.
pub fn dense_shapes(widths: &[usize], activations: &[Activation]) -> Vec<DenseShape> {
    let layers = activations.iter().enumerate();
    layers
        .map(|(k, &activation)| DenseShape {
            inputs: widths[k],
            outputs: widths[k + 1],
            activation,
        })
        .collect()
}

/// Finite differences against our backprop (relative, sampled entries).
pub const FD_TOLERANCE: f64 = 1e-6;
/// Exact identities (eta = 1, feedback set to `W^T`) in f64.
pub const IDENTITY_TOLERANCE: f64 = 1e-12;
/// Relaxation run to convergence against backprop in f64.
pub const CONVERGED_TOLERANCE: f64 = 1e-10;
/// Residual at which the convergence run stops.
pub const CONVERGENCE_RESIDUAL: f64 = 1e-13;
/// Iteration cap of the convergence run.
pub const CONVERGENCE_MAX_STEPS: usize = 5000;

/// One network, batch and loss to check.
#[derive(Clone, Debug)]
pub struct Case<B: Backend> {
    /// A name describing the model.
    pub name: String,
    /// The network (nonzero biases).
    pub net: Network<B>,
    /// A batch with one-hot targets.
    pub batch: Batch,
    /// The loss.
    pub loss: Loss,
}

fn random_batch(
    rng: &mut ChaCha8Rng,
    size: usize,
    inputs: usize,
    classes: usize,
    lo: f64,
) -> Batch {
    let x = (0..size * inputs).map(|_| rng.random_range(lo..1.0)).collect();
    let mut targets = vec![0.0; size * classes];
    for b in 0..size {
        targets[b * classes + rng.random_range(0..classes)] = 1.0;
    }
    Batch { x, targets, size }
}

/// Gives every bias of `net` a nonzero N-ish value, so that checks see `f'` evaluated with bias.
fn randomize_biases<B: Backend>(net: &mut Network<B>, rng: &mut ChaCha8Rng, scale: f64) {
    let be = net.backend().clone();
    for layer in &mut net.layers {
        if let Some(w) = layer.weights_mut() {
            let n = be.shape(w.bias)[0];
            let b: Vec<f64> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
            *w.bias = be.from_host(&b, &[n]);
        }
    }
}

/// The paper-1 MLP (784-300-300-100-10, ReLU, MSE) with the papers' initialisation and nonzero
/// biases, on a batch of 4 inputs in [0, 1].
pub fn paper1_case<B: Backend>(be: &B) -> Case<B> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let spec = ModelSpec::paper1();
    let mut net = spec.build(be.clone(), Init::papers(), 1).expect("the preset builds");
    randomize_biases(&mut net, &mut rng, 0.05);
    let batch = random_batch(&mut rng, 4, 784, 10, 0.0);
    Case {
        name: "paper-1 mlp 784-300-300-100-10 relu, mse, batch 4".into(),
        net,
        batch,
        loss: Loss::Mse,
    }
}

/// Random MLPs: depths 2, 3, 4 and 6; widths drawn from 1..=50 with a width-1 hidden layer;
/// every activation; both losses; batch sizes 1 and larger; PyTorch initialisation (nonzero
/// biases).
pub fn random_cases<B: Backend>(be: &B) -> Vec<Case<B>> {
    use Activation::*;
    // (name, activation per layer, loss, batch size, index of a width forced to 1)
    type Plan<'a> = (&'a str, &'a [Activation], Loss, usize, Option<usize>);
    let plans: [Plan; 4] = [
        ("random-a", &[Sigmoid, Identity], Loss::CrossEntropy, 1, None),
        ("random-b", &[Tanh, Softplus, Sigmoid], Loss::Mse, 6, Some(1)),
        ("random-c", &[Relu, LeakyRelu, Tanh, Identity], Loss::CrossEntropy, 5, None),
        ("random-d", &[Softplus, Relu, Sigmoid, LeakyRelu, Tanh, Identity], Loss::Mse, 1, Some(3)),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(2020);
    plans
        .iter()
        .enumerate()
        .map(|(i, &(name, acts, loss, batch, narrow))| {
            let mut widths: Vec<usize> =
                (0..=acts.len()).map(|_| rng.random_range(1..=50)).collect();
            let last = widths.len() - 1;
            widths[last] = widths[last].max(2);
            if let Some(k) = narrow {
                widths[k] = 1;
            }
            let shapes = dense_shapes(&widths, acts);
            let net = Network::dense_stack(be.clone(), &shapes, Init::PyTorch, 100 + i as u64)
                .expect("random shapes are valid");
            let acts: Vec<&str> = acts.iter().map(|a| a.name()).collect();
            let w: Vec<String> = widths.iter().map(|w| w.to_string()).collect();
            Case {
                name: format!(
                    "{name} mlp {} [{}], {loss}, batch {batch}",
                    w.join("-"),
                    acts.join(",")
                ),
                batch: random_batch(&mut rng, batch, widths[0], widths[last], -1.0),
                net,
                loss,
            }
        })
        .collect()
}

/// Small CNNs on 1x8x8 and 3x12x12 inputs covering strides, padding, both poolings and every
/// activation, PyTorch initialisation (nonzero biases), both losses, batch 1 and larger.
pub fn cnn_cases<B: Backend>(be: &B) -> Vec<Case<B>> {
    let plans: [(&str, &[usize], &str, Loss, usize); 3] = [
        (
            "cnn-a",
            &[1, 8, 8],
            "conv4x3/p1:tanh,maxpool2,conv6x3:sigmoid,flatten,fc10",
            Loss::Mse,
            3,
        ),
        (
            "cnn-b",
            &[3, 12, 12],
            "conv5x5/s2/p2:relu,avgpool2,conv4x3/p1:softplus,maxpool2/s1,flatten,fc7:tanh,fc5",
            Loss::CrossEntropy,
            1,
        ),
        ("cnn-c", &[1, 8, 8], "conv3x3/s2:leaky-relu,flatten,fc6:sigmoid,fc4", Loss::Mse, 2),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(404);
    let seeds = 300..;
    plans.iter().zip(seeds).map(|(plan, seed)| spec_case(be, &mut rng, *plan, seed)).collect()
}

/// A case from a layer spec: `(name, input shape, spec, loss, batch size)`, PyTorch
/// initialisation seeded by `seed` with every weight random (a residual branch's zero start
/// would hide its gradients), and a random batch in [-1, 1].
fn spec_case<B: Backend>(
    be: &B,
    rng: &mut ChaCha8Rng,
    (name, shape, spec, loss, batch): (&str, &[usize], &str, Loss, usize),
    seed: u64,
) -> Case<B> {
    let mut model = ModelSpec::parse(spec, shape).expect("the suite's models parse");
    model.zero_init.clear();
    let net = model.build(be.clone(), Init::PyTorch, seed).expect("the suite's models build");
    let inputs: usize = shape.iter().product();
    Case {
        name: format!("{name} {spec} on {shape:?}, {loss}, batch {batch}"),
        batch: random_batch(rng, batch, inputs, net.output_width(), -1.0),
        net,
        loss,
    }
}

/// Random DAGs of dense layers of one width: after each hidden layer, with probability 0.6
/// (and at least once per network), a merge node adds the current node to one 2 to 6 nodes
/// below it (the input included); every activation in turn; both losses; batch 1 and larger;
/// PyTorch initialisation (nonzero biases).
pub fn dag_cases<B: Backend>(be: &B) -> Vec<Case<B>> {
    let plans: [(&str, usize, Loss, usize); 3] = [
        ("dag-a", 3, Loss::Mse, 1),
        ("dag-b", 5, Loss::CrossEntropy, 4),
        ("dag-c", 7, Loss::Mse, 3),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(2506);
    plans
        .iter()
        .enumerate()
        .map(|(i, &(name, hidden, loss, batch))| {
            let width = rng.random_range(2..=12);
            let classes = rng.random_range(2..=6);
            let (mut specs, mut parents) = (Vec::new(), Vec::<Vec<usize>>::new());
            let mut edges = Vec::new();
            let mut last = 0;
            for l in 0..hidden {
                let activation = Activation::ALL[(l + 2 * i) % Activation::ALL.len()];
                specs.push(LayerSpec::Dense { outputs: width, activation });
                parents.push(vec![last]);
                last = specs.len();
                let force = l + 1 == hidden && edges.is_empty();
                if force || rng.random_bool(0.6) {
                    let span = rng.random_range(2..=6usize).min(last + 1);
                    let from = last + 1 - span;
                    specs.push(LayerSpec::Add);
                    parents.push(vec![from, last]);
                    edges.push(format!("{from}+{last}"));
                    last = specs.len();
                }
            }
            specs.push(LayerSpec::Dense { outputs: classes, activation: Activation::Identity });
            parents.push(vec![last]);
            let net = Network::build_graph(
                be.clone(),
                &[width],
                &specs,
                &parents,
                Init::PyTorch,
                500 + i as u64,
            )
            .expect("the random DAGs are valid");
            Case {
                name: format!(
                    "{name} dag width {width}, {hidden} hidden, adds {}, {loss}, batch {batch}",
                    edges.join(" ")
                ),
                batch: random_batch(&mut rng, batch, width, classes, -1.0),
                net,
                loss,
            }
        })
        .collect()
}

/// The residual models of the depth study, small, with every weight drawn at random (the
/// zero start of each branch's last layer would hide the branches' gradients): a residual MLP
/// and a residual CNN with a projection shortcut and global average pooling.
pub fn residual_cases<B: Backend>(be: &B) -> Vec<Case<B>> {
    let plans: [(&str, &[usize], &str, Loss, usize); 2] = [
        (
            "res-mlp",
            &[1, 4, 4],
            "flatten,fc12:relu,res(fc12:relu,fc12),res(fc12:relu,fc12),fc4",
            Loss::CrossEntropy,
            3,
        ),
        (
            "res-cnn",
            &[3, 8, 8],
            "conv4x3/p1:relu,res(conv4x3/p1:tanh,conv4x3/p1),\
             res(conv6x3/s2/p1:softplus,conv6x3/p1|conv6x1/s2),gap,fc5",
            Loss::Mse,
            2,
        ),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(1512);
    let seeds = 700..;
    plans.iter().zip(seeds).map(|(plan, seed)| spec_case(be, &mut rng, *plan, seed)).collect()
}

/// Paper 2's CNN at full size on 3x32x32 inputs in [-1, 1], batch 4, MSE, the papers'
/// initialisation with nonzero biases.
pub fn paper2_case<B: Backend>(be: &B) -> Case<B> {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let mut net = ModelSpec::paper2(&[3, 32, 32], 10)
        .build(be.clone(), Init::papers(), 2)
        .expect("the preset builds");
    randomize_biases(&mut net, &mut rng, 0.05);
    let batch = random_batch(&mut rng, 4, 3 * 32 * 32, 10, -1.0);
    Case {
        name:
            "paper-2 cnn 3x32x32 (conv6x5, pool, conv16x5, fc120, fc120, fc10) tanh, mse, batch 4"
                .into(),
        net,
        batch,
        loss: Loss::Mse,
    }
}

/// Every case of the suite.
pub fn all_cases<B: Backend>(be: &B) -> Vec<Case<B>> {
    let mut cases = vec![paper1_case(be)];
    cases.extend(random_cases(be));
    cases.extend(cnn_cases(be));
    cases.push(paper2_case(be));
    cases.extend(dag_cases(be));
    cases.extend(residual_cases(be));
    cases
}

/// The relaxation with step `eta` run for `steps` iterations from the feedforward state.
pub fn relaxation(eta: f64, steps: usize, schedule: Schedule) -> Relaxation {
    Relaxation {
        eta,
        steps,
        tolerance: None,
        schedule,
        init: InitialState::Feedforward,
        solver: Solver::Euler,
        relax_input: false,
    }
}

fn ar(r: Relaxation, variant: Variant) -> Algorithm {
    Algorithm { method: Method::Relaxation(r), variant }
}

/// Runs every check on one case and returns its rows.
pub fn check_case<B: Backend>(case: &Case<B>) -> Vec<Row> {
    let (name, net, batch, loss) = (case.name.as_str(), &case.net, &case.batch, case.loss);
    let exact = Variant::exact();
    let mut rows = vec![forward_agreement(name, net, batch, IDENTITY_TOLERANCE)];
    let (bp, _) = update(net, batch, loss, &Algorithm::backprop());
    rows.extend(finite_differences(name, net, batch, loss, &bp, 24, FD_TOLERANCE, 7));

    let checked =
        |label: &str, algorithm: Algorithm, on: &Network<B>, tol: Option<f64>| -> Vec<Row> {
            let (g, iterations): (HostGrads, usize) = update(on, batch, loss, &algorithm);
            let mut rows = compare(name, label, &g, &bp, tol);
            if let Some(r) = rows.last_mut() {
                if iterations > 0 {
                    r.note.push_str(&format!(", {iterations} iterations"));
                }
            }
            rows
        };
    rows.extend(checked(
        "ar eta=1 sweep T=1",
        ar(relaxation(1.0, 1, Schedule::Sweep), exact),
        net,
        Some(IDENTITY_TOLERANCE),
    ));
    // As many iterations as the longest chain of relaxing nodes (L - 1 for an MLP of L layers).
    let parallel_steps = relaxation_depth(net, false).max(1);
    rows.extend(checked(
        &format!("ar eta=1 parallel T=longest path={parallel_steps}"),
        ar(relaxation(1.0, parallel_steps, Schedule::Parallel), exact),
        net,
        Some(IDENTITY_TOLERANCE),
    ));
    rows.extend(checked(
        "ar eta=0.1 T=100 sweep (papers)",
        ar(Relaxation { solver: Solver::Euler, ..Relaxation::papers() }, exact),
        net,
        None,
    ));
    // The closed-form solver against the Euler loop it replaces (reference: Euler, not backprop),
    // from either start (the zero start's solver is a different one: powers, then shifts).
    for init in [InitialState::Feedforward, InitialState::Zero] {
        for schedule in [Schedule::Sweep, Schedule::Parallel] {
            let euler = Relaxation { init, ..relaxation(0.1, 100, schedule) };
            let (reference, _) = update(net, batch, loss, &ar(euler, exact));
            let closed = Relaxation { solver: Solver::ClosedForm, ..euler };
            let (g, _) = update(net, batch, loss, &ar(closed, exact));
            let label = format!(
                "closed form = euler T=100 {}{}",
                if schedule == Schedule::Sweep { "sweep" } else { "parallel" },
                if init == InitialState::Zero { " zero" } else { "" }
            );
            rows.extend(compare(name, &label, &g, &reference, Some(IDENTITY_TOLERANCE)));
        }
    }
    for schedule in [Schedule::Parallel, Schedule::Sweep] {
        let mut r = relaxation(0.1, CONVERGENCE_MAX_STEPS, schedule);
        r.tolerance = Some(CONVERGENCE_RESIDUAL);
        let label = format!(
            "ar eta=0.1 converged {}",
            if schedule == Schedule::Sweep { "sweep" } else { "parallel" }
        );
        rows.extend(checked(&label, ar(r, exact), net, Some(CONVERGED_TOLERANCE)));
    }

    // Exact special cases of the variants: feedback weights equal to W^T give backprop.
    let mut transposed = net.clone();
    transposed.set_feedback_to_transpose();
    let learned = Variant { feedback: Feedback::Learned, ..exact };
    rows.extend(checked(
        "learned psi=W^T, ar eta=1",
        ar(relaxation(1.0, 1, Schedule::Sweep), learned),
        &transposed,
        Some(IDENTITY_TOLERANCE),
    ));
    rows.extend(checked(
        "random psi=W^T, fa",
        Algorithm::feedback_alignment(),
        &transposed,
        Some(IDENTITY_TOLERANCE),
    ));

    // The approximate variants, measured (angle to the gradient), not judged.
    let mut random_feedback = net.clone();
    random_feedback.init_feedback(Init::papers(), 5, &Algorithm::feedback_alignment());
    let papers = Relaxation { solver: Solver::Euler, ..Relaxation::papers() };
    let no_fprime = Variant { fprime_backward: FPrime::Dropped, ..exact };
    let variants: [(&str, Algorithm, &Network<B>); 9] = [
        ("fa", Algorithm::feedback_alignment(), &random_feedback),
        ("ar learned psi", ar(papers, learned), &random_feedback),
        ("ar no f' in relaxation", ar(papers, no_fprime), net),
        (
            "ar no f' anywhere",
            ar(papers, Variant { fprime_update: FPrime::Dropped, ..no_fprime }),
            net,
        ),
        (
            "ar learned psi + no f' (eq. 7)",
            ar(papers, Variant { feedback: Feedback::Learned, ..no_fprime }),
            &random_feedback,
        ),
        ("ar fderiv-relax", ar(papers, Variant { fprime_backward: FPrime::AtState, ..exact }), net),
        ("ar fderiv-update", ar(papers, Variant { fprime_update: FPrime::AtState, ..exact }), net),
        (
            "ar fderiv-both",
            ar(
                papers,
                Variant {
                    fprime_backward: FPrime::AtState,
                    fprime_update: FPrime::AtState,
                    ..exact
                },
            ),
            net,
        ),
        ("ar current-input", ar(papers, Variant { current_input: true, ..exact }), net),
    ];
    for (label, algorithm, on) in variants {
        rows.extend(checked(label, algorithm, on, None));
    }
    rows
}

/// Agreement with candle's autograd oracle in f64 (independent of our VJPs), f64 backends.
pub const ORACLE_TOLERANCE_F64: f64 = 1e-10;
/// Agreement of an f32 computation with the f64 oracle.
pub const ORACLE_TOLERANCE_F32: f64 = 1e-4;

/// The batch-mean loss gradient by candle's own autograd, in f64 on the CPU, for the case's
/// network and batch (empty entries for parameter-free layers); `None` where candle cannot
/// differentiate the network (max pooling with a stride other than its window).
pub fn autograd_gradients<B: Backend>(case: &Case<B>) -> Option<HostGrads> {
    let layers = case.net.to_host();
    if layers
        .iter()
        .any(|l| matches!(l.shape, LayerShape::MaxPool2d { kernel, stride } if kernel != stride))
    {
        return None;
    }
    let oracle = Candle::cpu(Precision::F64);
    let (x, t, b) = (&case.batch.x, &case.batch.targets, case.batch.size);
    let input_shape = case.net.input_shape();
    let (_, grads) = network_loss_and_gradients(&oracle, &layers, input_shape, x, t, b, case.loss)
        .expect("the suite's cases are consistent");
    Some(grads)
}

/// Our backprop, AR with eta = 1 and AR run to convergence, each against candle's autograd.
pub fn oracle_rows<B: Backend>(case: &Case<B>, tolerance: f64) -> Vec<Row> {
    let (name, net, batch, loss) = (case.name.as_str(), &case.net, &case.batch, case.loss);
    let Some(oracle) = autograd_gradients(case) else {
        return Vec::new();
    };
    let mut converged = relaxation(0.1, CONVERGENCE_MAX_STEPS, Schedule::Parallel);
    converged.tolerance = Some(CONVERGENCE_RESIDUAL);
    let mut rows = Vec::new();
    for (label, algorithm) in [
        ("candle autograd = our bp", Algorithm::backprop()),
        (
            "candle autograd = ar eta=1 sweep",
            ar(relaxation(1.0, 1, Schedule::Sweep), Variant::exact()),
        ),
        ("candle autograd = ar converged", ar(converged, Variant::exact())),
    ] {
        let (g, _) = update(net, batch, loss, &algorithm);
        rows.extend(compare(name, label, &g, &oracle, Some(tolerance)));
    }
    rows
}

/// Every check for one backend: the full suite in f64; in f32 the oracle rows (finite
/// differences and 1e-12 identities need f64).
pub fn check_suite<B: Backend>(be: &B) -> Vec<Row> {
    let mut rows = Vec::new();
    for case in all_cases(be) {
        match be.precision() {
            Precision::F64 => {
                rows.extend(check_case(&case));
                rows.extend(oracle_rows(&case, ORACLE_TOLERANCE_F64));
            }
            Precision::F32 => rows.extend(oracle_rows(&case, ORACLE_TOLERANCE_F32)),
        }
    }
    rows
}

/// Runs the whole suite on one backend.
pub fn run_suite<B: Backend>(be: &B) -> Report {
    let mut report = Report::default();
    report.extend(&be.name(), check_suite(be));
    report
}
