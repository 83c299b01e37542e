//! The closed-form relaxation reproduces the Euler trajectory's end point to rounding, for
//! every linear variant, both schedules and starts, with and without the relaxing input, and
//! settings including eta = 1 and T < L.

use ar_core::{
    Algorithm, FPrime, Feedback, Init, InitialState, Method, Relaxation, Schedule, Solver, Variant,
};
use ar_ndarray::NdArray;
use ar_verify::cases::{all_cases, relaxation};
use ar_verify::checks::{compare, update};

#[test]
fn closed_form_equals_euler_for_every_linear_variant() {
    let exact = Variant::exact();
    let variants = [
        ("exact", exact),
        ("learned", Variant { feedback: Feedback::Learned, ..exact }),
        ("random", Variant { feedback: Feedback::Random, ..exact }),
        ("no f' backward", Variant { fprime_backward: FPrime::Dropped, ..exact }),
        ("no f' update", Variant { fprime_update: FPrime::Dropped, ..exact }),
        ("fderiv-update", Variant { fprime_update: FPrime::AtState, ..exact }),
        (
            "fderiv-update without the bias",
            Variant { fprime_update: FPrime::AtState, state_fprime_without_bias: true, ..exact },
        ),
        ("current-input", Variant { current_input: true, ..exact }),
        (
            "learned + no f' + current-input",
            Variant {
                feedback: Feedback::Learned,
                fprime_backward: FPrime::Dropped,
                current_input: true,
                ..exact
            },
        ),
    ];
    let settings = [(100, 0.1), (1, 1.0), (2, 1.0), (3, 0.5), (7, 1.3), (1, 0.1), (250, 0.05)];
    let mut compared = 0;
    for case in all_cases(&NdArray::<f64>::new()) {
        let mut with_feedback = case.net.clone();
        let learned = Variant { feedback: Feedback::Learned, ..exact };
        let relaxing = Relaxation { relax_input: true, ..relaxation(0.1, 1, Schedule::Sweep) };
        let needs_all = Algorithm { method: Method::Relaxation(relaxing), variant: learned };
        with_feedback.init_feedback(Init::papers(), 3, &needs_all);
        for (label, variant) in variants {
            let net =
                if variant.feedback == Feedback::Transpose { &case.net } else { &with_feedback };
            for (steps, eta) in settings {
                for schedule in [Schedule::Parallel, Schedule::Sweep] {
                    for (init, relax_input) in [
                        (InitialState::Feedforward, false),
                        (InitialState::Zero, false),
                        (InitialState::Feedforward, true),
                        (InitialState::Zero, true),
                    ] {
                        let euler =
                            Relaxation { init, relax_input, ..relaxation(eta, steps, schedule) };
                        let closed = Relaxation { solver: Solver::ClosedForm, ..euler };
                        let run = |r| Algorithm { method: Method::Relaxation(r), variant };
                        let (a, _) = update(net, &case.batch, case.loss, &run(euler));
                        let (b, _) = update(net, &case.batch, case.loss, &run(closed));
                        for row in compare(&case.name, label, &b, &a, Some(1e-12)) {
                            assert!(
                                row.passed,
                                "{}: {label}, T {steps}, eta {eta}, {schedule:?}, {init:?}, relax input {relax_input}, layer {:?}: {:.3e}",
                                case.name, row.layer, row.value
                            );
                            compared += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(compared > 3000, "{compared}");
}

#[test]
fn closed_form_rejects_nonlinear_relaxation_and_tolerance_stops() {
    let closed = Relaxation { solver: Solver::ClosedForm, ..Relaxation::papers() };
    let mut a = Algorithm::relaxation(closed);
    a.variant.fprime_backward = FPrime::AtState;
    let err = a.validate().unwrap_err().to_string();
    assert!(
        err.contains("closed-form") && err.contains("fderiv-relax") && err.contains("Euler"),
        "{err}"
    );
    let a = Algorithm::relaxation(Relaxation { tolerance: Some(1e-6), ..closed });
    assert!(a.validate().unwrap_err().to_string().contains("tolerance"));
}
