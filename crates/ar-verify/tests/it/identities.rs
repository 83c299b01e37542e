//! The algorithm's exact facts: eta = 1 identities, convergence to backprop, the predicted error
//! of the papers' setting, and the variants' special cases.

use ar_backend::Backend;
use ar_core::metrics::relative_error;
use ar_core::{
    relaxation_depth, Algorithm, FPrime, Feedback, InitialState, Loss, Method, Network, Relaxation,
    Schedule, Signals, Solver, Variant,
};
use ar_ndarray::NdArray;
use ar_verify::cases::{
    all_cases, paper1_case, relaxation, Case, CONVERGED_TOLERANCE, IDENTITY_TOLERANCE,
};
use ar_verify::checks::{compare, update};

type Be = NdArray<f64>;

fn ar(r: Relaxation, variant: Variant) -> Algorithm {
    Algorithm { method: Method::Relaxation(r), variant }
}

fn assert_matches_backprop(
    case: &Case<Be>,
    on: &Network<Be>,
    algorithm: &Algorithm,
    tol: f64,
    what: &str,
) {
    let (bp, _) = update(&case.net, &case.batch, case.loss, &Algorithm::backprop());
    let (g, _) = update(on, &case.batch, case.loss, algorithm);
    for r in compare(&case.name, what, &g, &bp, Some(tol)) {
        assert!(r.passed, "{what}: {} layer {:?}: {:.3e}", case.name, r.layer, r.value);
    }
}

#[test]
fn eta_one_sweep_gives_backprop_after_one_iteration_and_parallel_after_the_longest_path() {
    for case in all_cases(&Be::new()) {
        let exact = Variant::exact();
        for init in [InitialState::Feedforward, InitialState::Zero] {
            let mut sweep = relaxation(1.0, 1, Schedule::Sweep);
            sweep.init = init;
            assert_matches_backprop(
                &case,
                &case.net,
                &ar(sweep, exact),
                IDENTITY_TOLERANCE,
                "sweep",
            );
            let longest = relaxation_depth(&case.net, false);
            let mut parallel = relaxation(1.0, longest, Schedule::Parallel);
            parallel.init = init;
            assert_matches_backprop(
                &case,
                &case.net,
                &ar(parallel, exact),
                IDENTITY_TOLERANCE,
                "parallel",
            );
            if longest >= 2 {
                // One iteration fewer leaves the bottom of the longest path unreached.
                parallel.steps = longest - 1;
                let (bp, _) = update(&case.net, &case.batch, case.loss, &Algorithm::backprop());
                let (g, _) = update(&case.net, &case.batch, case.loss, &ar(parallel, exact));
                let rows = compare(&case.name, "parallel, one short", &g, &bp, Some(1e-6));
                assert!(rows.iter().any(|r| !r.passed), "{}: {init:?}", case.name);
            }
        }
    }
}

/// With fewer than L - 1 parallel iterations at eta = 1 the bottom layer has not heard from the
/// top yet: the identity is sharp, not a tolerance that anything passes.
#[test]
fn parallel_with_too_few_iterations_is_not_backprop() {
    let case = paper1_case(&Be::new());
    let (bp, _) = update(&case.net, &case.batch, case.loss, &Algorithm::backprop());
    let (g, _) = update(
        &case.net,
        &case.batch,
        case.loss,
        &ar(relaxation(1.0, 2, Schedule::Parallel), Variant::exact()),
    );
    let rows = compare("", "", &g, &bp, Some(IDENTITY_TOLERANCE));
    assert!(!rows[0].passed && rows[1].passed && rows[2].passed, "{rows:?}");
}

#[test]
fn relaxation_converges_to_backprop_from_either_start_and_schedule() {
    for case in all_cases(&Be::new()) {
        for schedule in [Schedule::Parallel, Schedule::Sweep] {
            for init in [InitialState::Feedforward, InitialState::Zero] {
                let r = Relaxation {
                    eta: 0.1,
                    steps: 5000,
                    tolerance: Some(1e-13),
                    schedule,
                    init,
                    solver: Solver::Euler,
                    relax_input: false,
                };
                assert_matches_backprop(
                    &case,
                    &case.net,
                    &ar(r, Variant::exact()),
                    CONVERGED_TOLERANCE,
                    "converged",
                );
            }
        }
    }
}

#[test]
fn tolerance_stop_ends_early_with_residual_below_tolerance() {
    let be = Be::new();
    let case = paper1_case(&be);
    let x = case.net.upload_batch(&case.batch.x, case.batch.size).unwrap();
    let t = be.from_host(&case.batch.targets, &[case.batch.size, 10]);
    let cache = case.net.forward(&x);
    let top = Loss::Mse.top_gradient(&be, &cache.output, &t);
    let mut r = relaxation(0.1, 5000, Schedule::Parallel);
    r.tolerance = Some(1e-8);
    let stats = Signals::new().compute(&case.net, &cache, &top, &ar(r, Variant::exact())).unwrap();
    assert!(stats.iterations > 50 && stats.iterations < 5000, "{stats:?}");
    assert!(stats.residual.unwrap() <= 1e-8);
}

/// Paper 1's setting (eta 0.1, T 100) is close to, not at, backprop. The layer just below the
/// clamp is driven by a constant, so its error decays exactly as (1 - eta)^T times its initial
/// error h - d; lower layers converge more slowly (polynomial times (1 - eta)^t).
#[test]
fn papers_setting_error_follows_the_predicted_decay() {
    let be = Be::new();
    let case = paper1_case(&be);
    let net = &case.net;
    let x = net.upload_batch(&case.batch.x, case.batch.size).unwrap();
    let t = be.from_host(&case.batch.targets, &[case.batch.size, 10]);
    let cache = net.forward(&x);
    let top = Loss::Mse.top_gradient(&be, &cache.output, &t);
    let mut exact = Signals::new();
    exact.compute(net, &cache, &top, &Algorithm::backprop());
    for schedule in [Schedule::Parallel, Schedule::Sweep] {
        let mut relaxed = Signals::new();
        let steps = 100;
        relaxed.compute(net, &cache, &top, &ar(relaxation(0.1, steps, schedule), Variant::exact()));
        let d3 = be.to_host(&exact.as_slice()[2]);
        let v3 = be.to_host(&relaxed.as_slice()[2]);
        let h3 = be.to_host(cache.activity(3));
        let decay = 0.9f64.powi(steps as i32);
        let predicted: Vec<f64> = h3.iter().zip(&d3).map(|(h, d)| d + decay * (h - d)).collect();
        let err = relative_error(&v3, &predicted);
        assert!(err < 1e-9, "{schedule:?}: top hidden layer off the (1 - eta)^T law by {err:.3e}");
        let errors: Vec<f64> = (0..3)
            .map(|k| {
                relative_error(
                    &be.to_host(&relaxed.as_slice()[k]),
                    &be.to_host(&exact.as_slice()[k]),
                )
            })
            .collect();
        assert!(errors[2] > 0.0, "not converged after 100 steps: the error must be nonzero");
        assert!(
            errors[0] > errors[1] && errors[1] > errors[2],
            "{schedule:?}: errors must grow with depth: {errors:?}"
        );
        assert!(errors[0] < 0.1, "{errors:?}");
    }
}

#[test]
fn feedback_equal_to_transpose_gives_backprop_for_learned_and_random() {
    for case in all_cases(&Be::new()) {
        let mut transposed = case.net.clone();
        transposed.set_feedback_to_transpose();
        for feedback in [Feedback::Learned, Feedback::Random] {
            let v = Variant { feedback, ..Variant::exact() };
            assert_matches_backprop(
                &case,
                &transposed,
                &ar(relaxation(1.0, 1, Schedule::Sweep), v),
                IDENTITY_TOLERANCE,
                "psi=W^T ar",
            );
            let fa = Algorithm { method: Method::Backprop, variant: v };
            assert_matches_backprop(&case, &transposed, &fa, IDENTITY_TOLERANCE, "psi=W^T fa");
        }
    }
}

/// Unfrozen variants whose changes vanish where the state equals the stored forward pass: with
/// eta = 1, a sweep and T = 1 the relaxed state is exactly backprop's delta, not the feedforward
/// activity, so these must differ from backprop on a nonlinear network, while on a network of
/// identity activations f' is 1 everywhere and fderiv-relax/-update change nothing.
#[test]
fn fderiv_variants_are_exact_on_linear_networks() {
    use ar_backend::Activation;
    use ar_core::{DenseShape, Init};
    let be = Be::new();
    let shapes: Vec<DenseShape> = [(5, 7), (7, 4), (4, 3)]
        .iter()
        .map(|&(i, o)| DenseShape { inputs: i, outputs: o, activation: Activation::Identity })
        .collect();
    let net = Network::dense_stack(be, &shapes, Init::PyTorch, 3).unwrap();
    let case = Case {
        name: "linear".into(),
        batch: ar_verify::checks::Batch {
            x: (0..10).map(|i| (i as f64 * 0.37).sin()).collect(),
            targets: vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            size: 2,
        },
        net,
        loss: Loss::Mse,
    };
    let v = Variant {
        fprime_backward: FPrime::AtState,
        fprime_update: FPrime::AtState,
        ..Variant::exact()
    };
    assert_matches_backprop(
        &case,
        &case.net,
        &ar(relaxation(1.0, 1, Schedule::Sweep), v),
        IDENTITY_TOLERANCE,
        "fderiv linear",
    );
    let paper = paper1_case(&be);
    let (bp, _) = update(&paper.net, &paper.batch, paper.loss, &Algorithm::backprop());
    let (g, _) =
        update(&paper.net, &paper.batch, paper.loss, &ar(relaxation(1.0, 1, Schedule::Sweep), v));
    let rows = compare("", "", &g, &bp, Some(1e-3));
    assert!(
        rows[..3].iter().any(|r| !r.passed),
        "fderiv must change a relu network's update: {rows:?}"
    );
}

#[test]
fn fderiv_without_the_bias_changes_only_what_the_bias_touches() {
    // On the cases (nonzero biases) f' at W v differs from f' at W v + b where f' is
    // re-evaluated at all (not at the first layer, whose input is the data, nor at a linear
    // output); with the biases zeroed the two are the same computation.
    let r = relaxation(0.1, 100, Schedule::Sweep);
    let with = Variant { fprime_update: FPrime::AtState, ..Variant::exact() };
    let without = Variant { state_fprime_without_bias: true, ..with };
    let mut differed = 0;
    for case in all_cases(&Be::new()) {
        let (a, _) = update(&case.net, &case.batch, case.loss, &ar(r, with));
        let (b, _) = update(&case.net, &case.batch, case.loss, &ar(r, without));
        differed += usize::from(a != b);
        let mut zeroed = case.net.clone();
        let be = *zeroed.backend();
        for layer in &mut zeroed.layers {
            if let Some(w) = layer.weights_mut() {
                let shape = be.shape(w.bias);
                *w.bias = be.zeros(&shape);
            }
        }
        let (a, _) = update(&zeroed, &case.batch, case.loss, &ar(r, with));
        let (b, _) = update(&zeroed, &case.batch, case.loss, &ar(r, without));
        assert_eq!(a, b, "{}", case.name);
    }
    // Wherever a hidden layer's f' is re-evaluated above another hidden layer.
    assert!(differed >= 3, "{differed}");
}
