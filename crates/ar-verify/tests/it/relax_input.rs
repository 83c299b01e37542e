//! Relaxing the input (`Relaxation::relax_input`, the authors' code): exact AR's update does not
//! change, and under current-input layer 1 learns from the relaxed input `v_0(T)`.

use ar_backend::{Backend, BackendExt};
use ar_core::{
    Algorithm, Gradients, Layer, Method, Relaxation, Schedule, Signals, Solver, Variant,
};
use ar_ndarray::NdArray;
use ar_verify::cases::{all_cases, relaxation, Case};
use ar_verify::checks::{compare, update};

type Be = NdArray<f64>;

fn ar(r: Relaxation, variant: Variant) -> Algorithm {
    Algorithm { method: Method::Relaxation(r), variant }
}

#[test]
fn exact_ar_update_is_unchanged_by_relaxing_the_input() {
    let mut compared = 0;
    for case in all_cases(&Be::new()) {
        for schedule in [Schedule::Parallel, Schedule::Sweep] {
            for solver in [Solver::Euler, Solver::ClosedForm] {
                let plain = Relaxation { solver, ..relaxation(0.1, 100, schedule) };
                let relaxed = Relaxation { relax_input: true, ..plain };
                let (a, _) =
                    update(&case.net, &case.batch, case.loss, &ar(plain, Variant::exact()));
                let (b, _) =
                    update(&case.net, &case.batch, case.loss, &ar(relaxed, Variant::exact()));
                for row in compare(&case.name, "relax-input", &b, &a, Some(1e-12)) {
                    assert!(
                        row.passed,
                        "{}: {schedule:?} {solver:?} layer {:?}: {:.3e}",
                        case.name, row.layer, row.value
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 50, "{compared}");
}

/// Runs `algorithm` on the case's batch: the forward cache's `f_1'`, the signals, and the update.
fn signals_and_update(
    case: &Case<Be>,
    algorithm: &Algorithm,
) -> (ar_core::ForwardCache<Be>, Signals<Be>, Gradients<Be>) {
    let (net, be) = (&case.net, case.net.backend());
    let x = net.upload_batch(&case.batch.x, case.batch.size).unwrap();
    let t = be.from_host(&case.batch.targets, &[case.batch.size, net.output_width()]);
    let cache = net.forward(&x);
    let top = case.loss.top_gradient(be, &cache.output, &t);
    let mut signals = Signals::new();
    signals.compute(net, &cache, &top, algorithm);
    let grads = Gradients::compute(net, &cache, &signals, &algorithm.variant);
    (cache, signals, grads)
}

#[test]
fn current_input_with_a_relaxing_input_learns_layer_one_from_v0() {
    // With eta = 1 the sweep gives backprop's signals after one iteration, so the relaxed input
    // is v_0 = W_1^T (f_1' * v_1), computed here directly; layer 1's update under current-input
    // must then be mean_b (f_1' * v_1)^T v_0.
    let sweep = relaxation(1.0, 1, Schedule::Sweep);
    let current = Variant { current_input: true, ..Variant::exact() };
    let mut checked = 0;
    for case in all_cases(&Be::new()) {
        // The direct formula below is a chain's: a DAG's input may have more readers.
        let Layer::Dense(first) = &case.net.layers[0] else { continue };
        if !case.net.is_chain() {
            continue;
        }
        let be = case.net.backend();
        let with = ar(Relaxation { relax_input: true, ..sweep }, current);
        let (cache, signals, grads) = signals_and_update(&case, &with);
        let e1 = be.mul(cache.fprime[0].as_ref().unwrap(), &signals.as_slice()[0]);
        let (batch, inputs) = (case.batch.size, case.net.input_shape()[0]);
        let mut v0 = be.zeros(&[batch, inputs]);
        be.gemm(1.0, &e1, false, &first.weight, false, 0.0, &mut v0);
        let relaxed = be.to_host(&signals.states()[0]);
        assert!(signals.input_relaxed());
        let direct = be.to_host(&v0);
        let worst = relaxed.iter().zip(&direct).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-12, "{}: v_0 differs by {worst:.3e}", case.name);
        let mut dw1 = be.zeros(&be.shape(&first.weight));
        be.gemm(1.0 / batch as f64, &e1, true, &v0, false, 0.0, &mut dw1);
        let ours = be.to_host(&grads.layers[0].as_ref().unwrap().weight);
        let want = be.to_host(&dw1);
        let err = ours.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
        assert!(err <= 1e-12 * scale.max(1e-300), "{}: dW_1 off by {err:.3e}", case.name);
        // Without the relaxing input, current-input's layer 1 learns from the data: exact AR's.
        let (_, _, plain) = signals_and_update(&case, &ar(sweep, current));
        let (_, _, exact) = signals_and_update(&case, &ar(sweep, Variant::exact()));
        assert_eq!(
            be.to_host(&plain.layers[0].as_ref().unwrap().weight),
            be.to_host(&exact.layers[0].as_ref().unwrap().weight),
            "{}",
            case.name
        );
        // And the two differ: v_0 is a gradient, not the data.
        assert_ne!(ours, be.to_host(&exact.layers[0].as_ref().unwrap().weight));
        checked += 1;
    }
    assert!(checked >= 3, "{checked}");
}

#[test]
fn the_input_relaxes_towards_the_input_gradient() {
    // From the data, with eta 0.1: v_0(T) - dL/dx shrinks like the other layers' errors.
    for case in all_cases(&Be::new()).into_iter().take(3) {
        let be = case.net.backend();
        let exact_sweep = ar(
            Relaxation { relax_input: true, ..relaxation(1.0, 1, Schedule::Sweep) },
            Variant::exact(),
        );
        let (_, reference, _) = signals_and_update(&case, &exact_sweep);
        let target = be.to_host(&reference.states()[0]);
        let norm = target.iter().map(|x| x * x).sum::<f64>().sqrt();
        let error_after = |steps: usize| {
            let r = Relaxation { relax_input: true, ..relaxation(0.1, steps, Schedule::Sweep) };
            let (_, s, _) = signals_and_update(&case, &ar(r, Variant::exact()));
            let v0 = be.to_host(&s.states()[0]);
            v0.iter().zip(&target).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt() / norm
        };
        let (early, late) = (error_after(20), error_after(400));
        assert!(late < 1e-9 && late < early, "{}: {early:.3e} then {late:.3e}", case.name);
    }
}
