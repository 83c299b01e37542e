//! Test bodies every backend runs, written once and generic over [`Backend`]: each backend
//! crate instantiates them with [`backend_tests!`](crate::backend_tests) on its own backend (as
//! candle's `test_device!` does for its devices), so a behaviour is stated in one place.

use crate::{Backend, BackendExt, PoolGeometry};

/// One 4x4 plane pooled in 2x2 windows, where three windows tie: the top-left is all 7s (the
/// first, index 0, wins); the top-right has its maximum 9 at (0, 3); the bottom-left ties two
/// 5s at (2, 1) = index 9 and (3, 0) = index 12, and the first in row-major order, 9, wins; the
/// bottom-right is all 4s: index 10. Shared with the host kernels' own test.
#[rustfmt::skip]
pub const TIE_PLANE: [f64; 16] = [
    7.0, 7.0, 1.0, 9.0,
    7.0, 7.0, 2.0, 3.0,
    0.0, 5.0, 4.0, 4.0,
    5.0, 1.0, 4.0, 4.0,
];
/// The window maxima of [`TIE_PLANE`].
pub const TIE_MAXIMA: [f64; 4] = [7.0, 9.0, 5.0, 4.0];
/// The argmax of each window of [`TIE_PLANE`]: flat indices in the plane.
pub const TIE_ARGMAX: [f64; 4] = [0.0, 3.0, 9.0, 10.0];

/// `gemm` with both transposes, `alpha` and `beta`; `matmul` with the second transposed.
pub fn gemm_accumulates_with_transposes<B: Backend>(be: B) {
    // a = [[1, 2], [3, 4]], b = [[5, 6], [7, 8]]; a^T b = [[26, 30], [38, 44]].
    let a = be.from_host(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = be.from_host(&[5.0, 6.0, 7.0, 8.0], &[2, 2]);
    let mut c = be.from_host(&[1.0, 1.0, 1.0, 1.0], &[2, 2]);
    be.gemm(2.0, &a, true, &b, false, 0.5, &mut c);
    assert_eq!(be.to_host(&c), vec![52.5, 60.5, 76.5, 88.5]);
    // a b^T = [[17, 23], [39, 53]].
    assert_eq!(be.to_host(&be.matmul(&a, false, &b, true)), vec![17.0, 23.0, 39.0, 53.0]);
}

/// With `beta = 0`, NaN and infinity already in the output are overwritten, not propagated
/// (`gemm` and `axpby`).
pub fn zero_beta_ignores_nan_in_the_output<B: Backend>(be: B) {
    let a = be.from_host(&[1.0, 2.0], &[1, 2]);
    let b = be.from_host(&[3.0, 4.0], &[2, 1]);
    let mut c = be.from_host(&[f64::NAN], &[1, 1]);
    be.gemm(1.0, &a, false, &b, false, 0.0, &mut c);
    assert_eq!(be.to_host(&c), vec![11.0]);
    let mut y = be.from_host(&[f64::NAN, f64::INFINITY], &[2]);
    be.axpby(2.0, &be.from_host(&[1.0, -1.0], &[2]), 0.0, &mut y);
    assert_eq!(be.to_host(&y), vec![2.0, -2.0]);
}

/// Row operations: a row added to every row, column sums, softmax, argmax (ties to the first
/// index) and the dot product. Run on an f64 backend (the tolerances are f64's).
pub fn rows_softmax_argmax_and_sums<B: Backend>(be: B) {
    let mut x = be.from_host(&[1.0, 2.0, 3.0, -1.0, 0.0, 5.0], &[2, 3]);
    be.add_row(&mut x, &be.from_host(&[1.0, 0.0, -1.0], &[3]));
    assert_eq!(be.to_host(&x), vec![2.0, 2.0, 2.0, 0.0, 0.0, 4.0]);
    assert_eq!(be.argmax_rows(&x), vec![0, 2], "first index wins a tie");
    assert_eq!(be.to_host(&be.sum_rows(0.5, &x)), vec![1.0, 1.0, 3.0]);
    let s = be.to_host(&be.softmax_rows(&x));
    assert!(s[..3].iter().all(|&p| (p - 1.0 / 3.0).abs() < 1e-15), "{s:?}");
    // softmax of [0, 0, 4]: e^4 / (2 + e^4).
    let e4 = 4f64.exp();
    assert!((s[5] - e4 / (2.0 + e4)).abs() < 1e-15, "{s:?}");
    assert_eq!(be.dot(&x, &x), 4.0 * 3.0 + 16.0);
}

/// Max pooling of [`TIE_PLANE`]: the maxima, the argmax (ties to the first maximum) and the VJP
/// routing each window's gradient to that one input.
pub fn max_pool_ties_go_to_the_first_maximum<B: Backend>(be: B) {
    let geometry = PoolGeometry { kernel: 2, stride: 2 };
    let (max, arg) = be.max_pool2d(&be.from_host(&TIE_PLANE, &[1, 1, 4, 4]), geometry);
    assert_eq!(be.to_host(&max), TIE_MAXIMA);
    assert_eq!(be.to_host(&arg), TIE_ARGMAX);
    let e = be.from_host(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let mut dx = be.from_host(&[f64::NAN; 16], &[1, 1, 4, 4]);
    be.max_pool2d_vjp(&e, &arg, geometry, 1.0, 0.0, &mut dx);
    let mut want = vec![0.0; 16];
    (want[0], want[3], want[9], want[10]) = (1.0, 2.0, 3.0, 4.0);
    assert_eq!(be.to_host(&dx), want);
}

/// f32 host values upload to the same tensor as the same values widened to f64, in either
/// precision (every f32 is exact in both), and come back as those f64 values.
pub fn f32_uploads_equal_their_f64_widening<B: Backend>(be: B) {
    let v: [f32; 6] = [0.1, -3.5, 1e-30, f32::MAX, f32::MIN_POSITIVE / 4.0, 0.0];
    let wide: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
    let (a, b) = (be.from_host_f32(&v, &[2, 3]), be.from_host(&wide, &[2, 3]));
    assert_eq!(be.shape(&a), vec![2, 3]);
    assert_eq!(be.to_host(&a), be.to_host(&b));
    assert_eq!(be.to_host(&a), wide);
}

/// A product of mismatched shapes panics, naming them (the caller expects the panic).
pub fn shape_mismatch_panics_with_shapes<B: Backend>(be: B) {
    let a = be.zeros(&[2, 3]);
    be.matmul(&a, false, &a, false);
}

/// The tests of [`testing`](crate::testing), each a `#[test]` on the backend `$make` builds
/// (an f64 one): `ar_backend::backend_tests!(NdArray::<f64>::new());` inside a test module.
#[macro_export]
macro_rules! backend_tests {
    ($make:expr) => {
        #[test]
        fn gemm_accumulates_with_transposes() {
            $crate::testing::gemm_accumulates_with_transposes($make);
        }
        #[test]
        fn zero_beta_ignores_nan_in_the_output() {
            $crate::testing::zero_beta_ignores_nan_in_the_output($make);
        }
        #[test]
        fn rows_softmax_argmax_and_sums() {
            $crate::testing::rows_softmax_argmax_and_sums($make);
        }
        #[test]
        fn max_pool_ties_go_to_the_first_maximum() {
            $crate::testing::max_pool_ties_go_to_the_first_maximum($make);
        }
        #[test]
        fn f32_uploads_equal_their_f64_widening() {
            $crate::testing::f32_uploads_equal_their_f64_widening($make);
        }
        #[test]
        #[should_panic(expected = "gemm: cannot multiply")]
        fn shape_mismatch_panics_with_shapes() {
            $crate::testing::shape_mismatch_panics_with_shapes($make);
        }
    };
}
