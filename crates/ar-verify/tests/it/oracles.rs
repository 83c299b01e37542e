//! Finite differences against our backprop, and the checker failing on planted errors.

use ar_core::{Algorithm, FPrime, Variant};
use ar_ndarray::NdArray;
use ar_verify::cases::{all_cases, paper1_case, random_cases, FD_TOLERANCE, IDENTITY_TOLERANCE};
use ar_verify::checks::{finite_differences, forward_agreement, update};
use ar_verify::Row;

fn assert_all_pass(rows: &[Row]) {
    for r in rows {
        assert!(
            r.passed,
            "{} / {} / layer {:?}: {:.3e} ({})",
            r.model, r.check, r.layer, r.value, r.note
        );
    }
}

#[test]
fn backprop_matches_finite_differences_on_every_case() {
    let be = NdArray::<f64>::new();
    for case in all_cases(&be) {
        let (bp, _) = update(&case.net, &case.batch, case.loss, &Algorithm::backprop());
        let rows = finite_differences(
            &case.name,
            &case.net,
            &case.batch,
            case.loss,
            &bp,
            24,
            FD_TOLERANCE,
            7,
        );
        let weighted = case.net.layers.iter().filter(|l| l.is_parametric()).count();
        assert_eq!(rows.len(), weighted, "one row per weighted layer");
        assert!(rows.iter().all(|r| !r.note.starts_with("0 entries")), "every layer sampled");
        assert_all_pass(&rows);
    }
}

#[test]
fn forward_pass_matches_the_host_reference() {
    let be = NdArray::<f64>::new();
    for case in all_cases(&be) {
        assert_all_pass(&[forward_agreement(
            &case.name,
            &case.net,
            &case.batch,
            IDENTITY_TOLERANCE,
        )]);
    }
}

/// A planted error: a backward pass that forgets f' (a legitimate variant of the library, so it
/// runs through exactly the same code), checked by the same finite-difference checker.
#[test]
fn checker_fails_on_a_missing_fprime() {
    let be = NdArray::<f64>::new();
    let case = paper1_case(&be);
    let mut missing = Algorithm::backprop();
    missing.variant = Variant { fprime_backward: FPrime::Dropped, ..Variant::exact() };
    let (wrong, _) = update(&case.net, &case.batch, case.loss, &missing);
    let rows = finite_differences(
        &case.name,
        &case.net,
        &case.batch,
        case.loss,
        &wrong,
        24,
        FD_TOLERANCE,
        7,
    );
    // Layers 4 and 3 see no dropped factor (layer 4 is the clamp; the VJP into layer 3 drops
    // f_4' = 1 of the linear output), so they pass; layers 2 and 1 lose relu' and must fail.
    assert!(rows[3].passed && rows[2].passed);
    for r in &rows[..2] {
        assert!(!r.passed, "layer {:?} should fail: {:.3e}", r.layer, r.value);
    }
}

#[test]
fn checker_fails_on_a_flipped_sign_in_one_layer() {
    let be = NdArray::<f64>::new();
    for case in random_cases(&be) {
        let (mut grads, _) = update(&case.net, &case.batch, case.loss, &Algorithm::backprop());
        let flipped = case.net.depth() - 1;
        grads[flipped].0.iter_mut().for_each(|g| *g = -*g);
        grads[flipped].1.iter_mut().for_each(|g| *g = -*g);
        let rows = finite_differences(
            &case.name,
            &case.net,
            &case.batch,
            case.loss,
            &grads,
            24,
            FD_TOLERANCE,
            7,
        );
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.passed, i != flipped, "{}: layer {} ({:.3e})", case.name, i + 1, r.value);
        }
    }
}

#[test]
fn the_whole_suite_passes_and_renders_a_table_per_model() {
    let report = ar_verify::cases::run_suite(&NdArray::<f64>::new());
    assert!(report.passed(), "{}", report.render());
    let text = report.render();
    assert!(
        text.contains("paper-1 mlp") && text.contains("random-d") && text.contains(", 0 failed")
    );
    assert!(report.rows.len() > 200);
}
