//! Backend conformance: every operation of the `Backend` trait on candle agrees with the ndarray
//! reference on small random shapes (batch 1 and width 1 included). One generic body per
//! operation, instantiated per backend pair and precision by `conformance!`.

use ar_backend::{Activation, AdamStep, Backend, BackendExt, ConvGeometry, PoolGeometry};
use ar_candle::{Candle, Precision};
use ar_ndarray::NdArray;
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};

/// Cases per operation and pair: small, so that the suite runs in seconds in debug builds.
const CASES: u32 = 24;
/// Largest size of any dimension.
const MAX_DIM: usize = 5;
/// Agreement required in f64: error over scale (see [`check_close`]).
const F64_TOLERANCE: f64 = 1e-12;
/// Agreement required in f32.
const F32_TOLERANCE: f64 = 1e-5;

type Outcome = Result<(), TestCaseError>;

/// Checks `got` against `want` elementwise: `max |got - want| / scale <= tolerance`, where
/// `scale = max(1, max |want|, bound)` and `bound` is the caller's bound on the size of the terms
/// summed into one element (so that cancellation in a sum does not inflate the ratio). NaNs must
/// coincide.
fn check_close(what: &str, got: &[f64], want: &[f64], bound: f64, tolerance: f64) -> Outcome {
    prop_assert_eq!(got.len(), want.len(), "{}: lengths differ", what);
    let largest = want.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs()));
    let scale = 1f64.max(largest).max(bound);
    let mut worst = (0.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || g.is_nan() || w.is_infinite() || g.is_infinite() {
            prop_assert!(
                g.is_nan() == w.is_nan() && (g.is_nan() || g == w),
                "{}: element {} is {} but should be {}",
                what,
                i,
                g,
                w
            );
            continue;
        }
        let d = (g - w).abs();
        if d > worst.0 {
            worst = (d, i);
        }
    }
    prop_assert!(
        worst.0 / scale <= tolerance,
        "{}: element {} is {} but should be {} (error {:.2e} of scale {:.2e}, tolerance {:.0e})",
        what,
        worst.1,
        got[worst.1],
        want[worst.1],
        worst.0 / scale,
        scale,
        tolerance
    );
    Ok(())
}

/// A reference backend and a candidate, with the tolerance their precision allows.
struct Pair<R, C> {
    reference: R,
    candidate: C,
    tolerance: f64,
}

impl<R: Backend, C: Backend> Pair<R, C> {
    /// The same host data uploaded to both.
    fn upload(&self, data: &[f64], shape: &[usize]) -> (R::Tensor, C::Tensor) {
        (self.reference.from_host(data, shape), self.candidate.from_host(data, shape))
    }

    /// Downloads both results and compares them, after checking their shapes.
    fn compare(&self, what: &str, r: &R::Tensor, c: &C::Tensor, bound: f64) -> Outcome {
        prop_assert_eq!(self.reference.shape(r), self.candidate.shape(c), "{}: shapes", what);
        let (want, got) = (self.reference.to_host(r), self.candidate.to_host(c));
        check_close(what, &got, &want, bound, self.tolerance)
    }
}

// ---- strategies --------------------------------------------------------------------------------

fn dim() -> impl Strategy<Value = usize> {
    1..=MAX_DIM
}

/// Moderate values with exact zeros mixed in (the kinks of relu and leaky relu).
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![1 => Just(0.0), 8 => -3.0..3.0f64]
}

/// Values that include the far tails where a naive sigmoid or softplus overflows.
fn wide_value() -> impl Strategy<Value = f64> {
    prop_oneof![1 => Just(0.0), 4 => -8.0..8.0f64, 2 => -1000.0..1000.0f64]
}

fn data(len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(value(), len)
}

/// A 2-D shape and data for it.
fn matrix() -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
    (dim(), dim()).prop_flat_map(|(r, c)| (Just(r), Just(c), data(r * c)))
}

/// A shape of rank 1 to 3 and data for it.
fn tensor() -> impl Strategy<Value = (Vec<usize>, Vec<f64>)> {
    prop::collection::vec(dim(), 1..=3).prop_flat_map(|shape| {
        let n: usize = shape.iter().product();
        (Just(shape), data(n))
    })
}

/// A shape and the data of two tensors of that shape.
type TwoTensors = (Vec<usize>, Vec<f64>, Vec<f64>);

/// Two tensors of one shape.
fn two_tensors() -> impl Strategy<Value = TwoTensors> {
    tensor().prop_flat_map(|(shape, a)| {
        let n = a.len();
        (Just(shape), Just(a), data(n))
    })
}

fn activation() -> impl Strategy<Value = Activation> {
    prop::sample::select(Activation::ALL.to_vec())
}

fn scalar() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![0.0, 1.0, -1.0, 0.5, 0.1, -2.25, 1.7])
}

/// `c <- alpha op(a) op(b) + beta c`: m, k, n, transposes, alpha, beta and the data; with
/// beta = 0, c holds NaNs that must be ignored.
#[derive(Clone, Debug)]
struct GemmCase {
    m: usize,
    k: usize,
    n: usize,
    transpose_a: bool,
    transpose_b: bool,
    alpha: f64,
    beta: f64,
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
}

fn gemm_case() -> impl Strategy<Value = GemmCase> {
    (dim(), dim(), dim(), any::<bool>(), any::<bool>(), scalar(), scalar()).prop_flat_map(
        |(m, k, n, transpose_a, transpose_b, alpha, beta)| {
            let c =
                if beta == 0.0 { Just(vec![f64::NAN; m * n]).boxed() } else { data(m * n).boxed() };
            (data(m * k), data(k * n), c).prop_map(move |(a, b, c)| GemmCase {
                m,
                k,
                n,
                transpose_a,
                transpose_b,
                alpha,
                beta,
                a,
                b,
                c,
            })
        },
    )
}

/// A convolution: input `[b, c, h, w]`, kernel `[o, c, k, k]`, stride, padding, and data for
/// the input, kernel, bias, an output gradient and a prior output (for alpha/beta).
#[derive(Clone, Debug)]
struct ConvCase {
    dims: [usize; 4],
    o: usize,
    k: usize,
    geometry: ConvGeometry,
    x: Vec<f64>,
    kernel: Vec<f64>,
    bias: Vec<f64>,
    e: Vec<f64>,
    prior: Vec<f64>,
    alpha: f64,
    beta: f64,
}

impl ConvCase {
    fn out_dims(&self) -> [usize; 4] {
        let [b, _, h, w] = self.dims;
        let len =
            |n| self.geometry.output_len(n, self.k).expect("strategy keeps the kernel inside");
        [b, self.o, len(h), len(w)]
    }
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        1..=2usize,
        1..=3usize,
        1..=3usize,
        1..=3usize,
        1..=2usize,
        0..=2usize,
        0..=4usize,
        0..=4usize,
        scalar(),
        scalar(),
    )
        .prop_flat_map(|(b, c, o, k, stride, padding, dh, dw, alpha, beta)| {
            let (h, w) = (k + dh, k + dw);
            let g = ConvGeometry { stride, padding };
            let (oh, ow) = (g.output_len(h, k).unwrap(), g.output_len(w, k).unwrap());
            (
                data(b * c * h * w),
                data(o * c * k * k),
                data(o),
                data(b * o * oh * ow),
                data(b * c * h * w),
            )
                .prop_map(move |(x, kernel, bias, e, prior)| ConvCase {
                    dims: [b, c, h, w],
                    o,
                    k,
                    geometry: g,
                    x,
                    kernel,
                    bias,
                    e,
                    prior,
                    alpha,
                    beta,
                })
        })
}

/// Pooling: input `[b, c, h, w]`, geometry, input data (distinct values, so that max pooling
/// has no ties and its argmax is defined the same way everywhere), an output gradient and a
/// prior input gradient.
type PoolCase = ([usize; 4], PoolGeometry, Vec<f64>, Vec<f64>, Vec<f64>, f64, f64);

fn pool_case() -> impl Strategy<Value = PoolCase> {
    (1..=2usize, 1..=2usize, 1..=3usize, 1..=2usize, 0..=3usize, 0..=3usize, scalar(), scalar())
        .prop_flat_map(|(b, c, k, stride, dh, dw, alpha, beta)| {
            let (h, w) = (k + dh, k + dw);
            let pool = PoolGeometry { kernel: k, stride };
            let (oh, ow) = (pool.output_len(h).unwrap(), pool.output_len(w).unwrap());
            let n = b * c * h * w;
            (
                // Distinct values, or three values repeated (ties in most windows, which must
                // go to the first maximum on every backend).
                (Just(n), any::<bool>()).prop_perturb(|(n, ties), mut rng| {
                    let level =
                        |i: usize| if ties { (i % 3) as f64 - 1.0 } else { i as f64 * 0.37 - 1.0 };
                    let mut v: Vec<f64> = (0..n).map(level).collect();
                    for i in (1..n).rev() {
                        v.swap(i, rng.random_range(0..=i));
                    }
                    v
                }),
                data(b * c * oh * ow),
                data(n),
            )
                .prop_map(move |(x, e, prior)| ([b, c, h, w], pool, x, e, prior, alpha, beta))
        })
}

// ---- one generic body per operation ------------------------------------------------------------

fn conv2d<R: Backend, C: Backend>(p: &Pair<R, C>, case: ConvCase) -> Outcome {
    let [b, c, h, w] = case.dims;
    let (o, k, g) = (case.o, case.k, case.geometry);
    let (xr, xc) = p.upload(&case.x, &[b, c, h, w]);
    let (kr, kc) = p.upload(&case.kernel, &[o, c, k, k]);
    let (br, bc) = p.upload(&case.bias, &[o]);
    let od = case.out_dims();
    let (mut yr, mut yc) = (p.reference.zeros(&od), p.candidate.zeros(&od));
    p.reference.conv2d_into(&xr, &kr, &br, g, &mut yr);
    p.candidate.conv2d_into(&xc, &kc, &bc, g, &mut yc);
    let bound = 9.0 * (c * k * k) as f64 + 3.0;
    p.compare("conv2d", &yr, &yc, bound)?;
    let (er, ec) = p.upload(&case.e, &od);
    let (mut dr, mut dc) = p.upload(&case.prior, &[b, c, h, w]);
    p.reference.conv2d_input_vjp(&er, &kr, g, case.alpha, case.beta, &mut dr);
    p.candidate.conv2d_input_vjp(&ec, &kc, g, case.alpha, case.beta, &mut dc);
    p.compare("conv2d_input_vjp", &dr, &dc, 9.0 * (o * k * k) as f64 * 2.25 + 6.75)?;
    let (mut gr, mut gc) = (p.reference.zeros(&[o, c, k, k]), p.candidate.zeros(&[o, c, k, k]));
    p.reference.conv2d_weight_grad_into(&er, &xr, g, case.alpha, &mut gr);
    p.candidate.conv2d_weight_grad_into(&ec, &xc, g, case.alpha, &mut gc);
    p.compare("conv2d_weight_grad", &gr, &gc, 9.0 * (b * od[2] * od[3]) as f64 * 2.25)?;
    let (mut sr, mut sc) = (p.reference.zeros(&[o]), p.candidate.zeros(&[o]));
    p.reference.sum_channels_into(case.alpha, &er, &mut sr);
    p.candidate.sum_channels_into(case.alpha, &ec, &mut sc);
    p.compare("sum_channels", &sr, &sc, 3.0 * (b * od[2] * od[3]) as f64 * 2.25)?;
    // Both at once (ndarray forms them in one pass over e).
    p.reference.conv2d_grads_into(&er, &xr, g, case.alpha, &mut gr, &mut sr);
    p.candidate.conv2d_grads_into(&ec, &xc, g, case.alpha, &mut gc, &mut sc);
    p.compare("conv2d_grads weight", &gr, &gc, 9.0 * (b * od[2] * od[3]) as f64 * 2.25)?;
    p.compare("conv2d_grads bias", &sr, &sc, 3.0 * (b * od[2] * od[3]) as f64 * 2.25)
}

fn pooling<R: Backend, C: Backend>(p: &Pair<R, C>, case: PoolCase) -> Outcome {
    let (dims, pool, x, e, prior, alpha, beta) = case;
    let (xr, xc) = p.upload(&x, &dims);
    let ((mr, ar), (mc, ac)) =
        (p.reference.max_pool2d(&xr, pool), p.candidate.max_pool2d(&xc, pool));
    p.compare("max_pool2d", &mr, &mc, 1.0)?;
    p.compare("max_pool2d argmax", &ar, &ac, 0.0)?;
    let od = p.reference.shape(&mr);
    let (er, ec) = p.upload(&e, &od);
    let (mut dr, mut dc) = p.upload(&prior, &dims);
    p.reference.max_pool2d_vjp(&er, &ar, pool, alpha, beta, &mut dr);
    p.candidate.max_pool2d_vjp(&ec, &ac, pool, alpha, beta, &mut dc);
    p.compare("max_pool2d_vjp", &dr, &dc, 30.0)?;
    p.compare(
        "avg_pool2d",
        &p.reference.avg_pool2d(&xr, pool),
        &p.candidate.avg_pool2d(&xc, pool),
        1.0,
    )?;
    let (mut dr, mut dc) = p.upload(&prior, &dims);
    p.reference.avg_pool2d_vjp(&er, pool, alpha, beta, &mut dr);
    p.candidate.avg_pool2d_vjp(&ec, pool, alpha, beta, &mut dc);
    p.compare("avg_pool2d_vjp", &dr, &dc, 30.0)
}

fn name<R: Backend, C: Backend>(p: &Pair<R, C>, (): ()) -> Outcome {
    let (r, c) = (p.reference.name(), p.candidate.name());
    prop_assert!(c.starts_with("candle-"), "{}", c);
    prop_assert_eq!(r.rsplit('-').next(), c.rsplit('-').next(), "precision suffix");
    Ok(())
}

fn from_host_to_host<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    (shape, x): (Vec<usize>, Vec<f64>),
) -> Outcome {
    let (r, c) = p.upload(&x, &shape);
    // Rounding to the precision is exact and identical: no tolerance.
    prop_assert_eq!(p.candidate.to_host(&c), p.reference.to_host(&r));
    prop_assert_eq!(p.candidate.shape(&c), shape.clone());
    prop_assert_eq!(p.candidate.numel(&c), x.len());
    Ok(())
}

fn zeros<R: Backend, C: Backend>(p: &Pair<R, C>, (shape, _): (Vec<usize>, Vec<f64>)) -> Outcome {
    p.compare("zeros", &p.reference.zeros(&shape), &p.candidate.zeros(&shape), 0.0)?;
    prop_assert!(p.candidate.to_host(&p.candidate.zeros(&shape)).iter().all(|&v| v == 0.0));
    Ok(())
}

fn reshape<R: Backend, C: Backend>(p: &Pair<R, C>, (shape, x): (Vec<usize>, Vec<f64>)) -> Outcome {
    let (r, c) = p.upload(&x, &shape);
    // Flatten, and the reversed shape.
    for target in [vec![x.len()], shape.iter().rev().copied().collect()] {
        let (r2, c2) = (p.reference.reshape(&r, &target), p.candidate.reshape(&c, &target));
        p.compare("reshape", &r2, &c2, 0.0)?;
    }
    // Reshaping the (strided) result of a transposed product keeps row-major order.
    if shape.len() == 2 {
        let prod_r = p.reference.matmul(&r, true, &r, false);
        let prod_c = p.candidate.matmul(&c, true, &c, false);
        let n = shape[1] * shape[1];
        let bound = 9.0 * shape[0] as f64;
        p.compare(
            "reshape of product",
            &p.reference.reshape(&prod_r, &[n]),
            &p.candidate.reshape(&prod_c, &[n]),
            bound,
        )?;
    }
    Ok(())
}

fn gemm<R: Backend, C: Backend>(p: &Pair<R, C>, g: GemmCase) -> Outcome {
    let a_shape = if g.transpose_a { [g.k, g.m] } else { [g.m, g.k] };
    let b_shape = if g.transpose_b { [g.n, g.k] } else { [g.k, g.n] };
    let (ar, ac) = p.upload(&g.a, &a_shape);
    let (br, bc) = p.upload(&g.b, &b_shape);
    let (mut cr, mut cc) = p.upload(&g.c, &[g.m, g.n]);
    p.reference.gemm(g.alpha, &ar, g.transpose_a, &br, g.transpose_b, g.beta, &mut cr);
    p.candidate.gemm(g.alpha, &ac, g.transpose_a, &bc, g.transpose_b, g.beta, &mut cc);
    // Every term is at most 3 * 3 in size.
    let bound = g.alpha.abs() * 9.0 * g.k as f64 + g.beta.abs() * 3.0;
    p.compare("gemm", &cr, &cc, bound)?;
    if g.beta == 0.0 {
        prop_assert!(p.candidate.to_host(&cc).iter().all(|v| v.is_finite()), "NaN leaked from c");
    }
    let (mr, mc) = (
        p.reference.matmul(&ar, g.transpose_a, &br, g.transpose_b),
        p.candidate.matmul(&ac, g.transpose_a, &bc, g.transpose_b),
    );
    p.compare("matmul", &mr, &mc, 9.0 * g.k as f64)
}

fn axpby<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    ((shape, x, y), alpha, beta): (TwoTensors, f64, f64),
) -> Outcome {
    let y = if beta == 0.0 { vec![f64::NAN; y.len()] } else { y };
    let (xr, xc) = p.upload(&x, &shape);
    let (mut yr, mut yc) = p.upload(&y, &shape);
    p.reference.axpby(alpha, &xr, beta, &mut yr);
    p.candidate.axpby(alpha, &xc, beta, &mut yc);
    p.compare("axpby", &yr, &yc, 3.0 * (alpha.abs() + beta.abs()))
}

fn mul_and_sub<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    (shape, a, b): (Vec<usize>, Vec<f64>, Vec<f64>),
) -> Outcome {
    let (ar, ac) = p.upload(&a, &shape);
    let (br, bc) = p.upload(&b, &shape);
    let (mut or, mut oc) = p.upload(&vec![f64::NAN; a.len()], &shape);
    p.reference.mul_into(&ar, &br, &mut or);
    p.candidate.mul_into(&ac, &bc, &mut oc);
    p.compare("mul_into", &or, &oc, 9.0)?;
    p.compare("mul", &p.reference.mul(&ar, &br), &p.candidate.mul(&ac, &bc), 9.0)?;
    p.compare("sub", &p.reference.sub(&ar, &br), &p.candidate.sub(&ac, &bc), 6.0)
}

fn add_row<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    ((rows, cols, x), row): ((usize, usize, Vec<f64>), Vec<f64>),
) -> Outcome {
    let row = &row[..cols];
    let (mut xr, mut xc) = p.upload(&x, &[rows, cols]);
    let (rr, rc) = p.upload(row, &[cols]);
    p.reference.add_row(&mut xr, &rr);
    p.candidate.add_row(&mut xc, &rc);
    p.compare("add_row", &xr, &xc, 6.0)
}

fn sum_rows<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    ((rows, cols, x), scale): ((usize, usize, Vec<f64>), f64),
) -> Outcome {
    let (xr, xc) = p.upload(&x, &[rows, cols]);
    let (mut or, mut oc) = p.upload(&vec![f64::NAN; cols], &[cols]);
    p.reference.sum_rows_into(scale, &xr, &mut or);
    p.candidate.sum_rows_into(scale, &xc, &mut oc);
    let bound = 3.0 * rows as f64 * scale.abs();
    p.compare("sum_rows_into", &or, &oc, bound)?;
    p.compare(
        "sum_rows",
        &p.reference.sum_rows(scale, &xr),
        &p.candidate.sum_rows(scale, &xc),
        bound,
    )
}

fn activations<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    (f, shape, a): (Activation, Vec<usize>, Vec<f64>),
) -> Outcome {
    let (ar, ac) = p.upload(&a, &shape);
    let (mut or, mut oc) = p.upload(&vec![f64::NAN; a.len()], &shape);
    p.reference.activate_into(f, &ar, &mut or);
    p.candidate.activate_into(f, &ac, &mut oc);
    p.compare(&format!("activate {f}"), &or, &oc, 0.0)?;
    p.reference.activate_derivative_into(f, &ar, &mut or);
    p.candidate.activate_derivative_into(f, &ac, &mut oc);
    p.compare(&format!("activate_derivative {f}"), &or, &oc, 0.0)?;
    p.compare(
        &format!("activate {f} (new)"),
        &p.reference.activate(f, &ar),
        &p.candidate.activate(f, &ac),
        0.0,
    )?;
    p.compare(
        &format!("activate_derivative {f} (new)"),
        &p.reference.activate_derivative(f, &ar),
        &p.candidate.activate_derivative(f, &ac),
        0.0,
    )
}

/// Relative agreement elementwise (for small outputs of wide inputs, such as softplus of -40,
/// where the scaled comparison would be blind).
fn activations_elementwise_relative<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    (f, a): (Activation, Vec<f64>),
) -> Outcome {
    let n = a.len();
    let (ar, ac) = p.upload(&a, &[n]);
    for derivative in [false, true] {
        let (r, c) = if derivative {
            (p.reference.activate_derivative(f, &ar), p.candidate.activate_derivative(f, &ac))
        } else {
            (p.reference.activate(f, &ar), p.candidate.activate(f, &ac))
        };
        let (want, got) = (p.reference.to_host(&r), p.candidate.to_host(&c));
        for i in 0..n {
            let (g, w) = (got[i], want[i]);
            prop_assert!(g.is_finite(), "{} at {}: {}", f, a[i], g);
            // A few ulps of the result, or of the smallest normal number near underflow.
            let tiny = if p.tolerance > 1e-9 { 1e-37 } else { 1e-300 };
            prop_assert!(
                (g - w).abs() <= 8.0 * p.tolerance * w.abs().max(tiny) + tiny,
                "{}{} at {}: {} but should be {}",
                f,
                if derivative { "'" } else { "" },
                a[i],
                g,
                w
            );
        }
    }
    Ok(())
}

fn softmax_rows<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    (rows, cols, x): (usize, usize, Vec<f64>),
) -> Outcome {
    let (xr, xc) = p.upload(&x, &[rows, cols]);
    let (sr, sc) = (p.reference.softmax_rows(&xr), p.candidate.softmax_rows(&xc));
    p.compare("softmax_rows", &sr, &sc, 0.0)?;
    prop_assert!(p.candidate.to_host(&sc).iter().all(|v| v.is_finite()), "softmax overflowed");
    Ok(())
}

fn argmax_rows<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    (rows, cols, x): (usize, usize, Vec<f64>),
) -> Outcome {
    let (xr, xc) = p.upload(&x, &[rows, cols]);
    prop_assert_eq!(p.candidate.argmax_rows(&xc), p.reference.argmax_rows(&xr));
    Ok(())
}

fn dot<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    (shape, a, b): (Vec<usize>, Vec<f64>, Vec<f64>),
) -> Outcome {
    let (ar, ac) = p.upload(&a, &shape);
    let (br, bc) = p.upload(&b, &shape);
    let (want, got) = (p.reference.dot(&ar, &br), p.candidate.dot(&ac, &bc));
    // Accumulated in f64 in both: the products of f32 values are exact, so even in f32 only the
    // order of the f64 sum may differ.
    let terms: f64 = p.reference.to_host(&p.reference.mul(&ar, &br)).iter().map(|v| v.abs()).sum();
    check_close("dot", &[got], &[want], terms, 1e-13)
}

fn precision<R: Backend, C: Backend>(p: &Pair<R, C>, (): ()) -> Outcome {
    prop_assert_eq!(p.candidate.precision(), p.reference.precision());
    Ok(())
}

fn adam_step<R: Backend, C: Backend>(
    p: &Pair<R, C>,
    ((shape, param, grad), moments, t): (TwoTensors, Vec<f64>, u64),
) -> Outcome {
    let n = param.len();
    let m: Vec<f64> = moments[..n].to_vec();
    // The second moment is a running mean of squares: never negative.
    let v: Vec<f64> = moments[n..2 * n].iter().map(|x| x * x).collect();
    let hyper = AdamStep { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, t };
    let (mut pr, mut pc) = p.upload(&param, &shape);
    let (gr, gc) = p.upload(&grad, &shape);
    let (mut mr, mut mc) = p.upload(&m, &shape);
    let (mut vr, mut vc) = p.upload(&v, &shape);
    p.reference.adam_step(&mut pr, &gr, &mut mr, &mut vr, hyper);
    p.candidate.adam_step(&mut pc, &gc, &mut mc, &mut vc, hyper);
    p.compare("adam_step (first moment)", &mr, &mc, 3.0)?;
    p.compare("adam_step (second moment)", &vr, &vc, 9.0)?;
    // The step lr m^ / (sqrt(v^) + eps) can be far larger than the parameter (a zero second
    // moment divides by eps alone): each element's rounding scales with its own step.
    let (want, got) = (p.reference.to_host(&pr), p.candidate.to_host(&pc));
    prop_assert_eq!(want.len(), got.len());
    for i in 0..n {
        let step = want[i] - param[i];
        let scale = 1f64.max(want[i].abs()).max(step.abs());
        prop_assert!(
            (got[i] - want[i]).abs() <= p.tolerance * scale,
            "adam_step (parameter): element {} is {} but should be {} (step {}, tolerance {})",
            i,
            got[i],
            want[i],
            step,
            p.tolerance
        );
    }
    Ok(())
}

// ---- instantiation -----------------------------------------------------------------------------

fn f64_pair() -> Pair<NdArray<f64>, Candle> {
    Pair {
        reference: NdArray::new(),
        candidate: Candle::cpu(Precision::F64),
        tolerance: F64_TOLERANCE,
    }
}

fn f32_pair() -> Pair<NdArray<f32>, Candle> {
    Pair {
        reference: NdArray::new(),
        candidate: Candle::cpu(Precision::F32),
        tolerance: F32_TOLERANCE,
    }
}

/// The GPU against ndarray, when this build has CUDA and a device opens; `None` skips (set
/// `AR_REQUIRE_CUDA=1` to make a missing device a failure instead).
#[cfg(feature = "cuda")]
fn cuda_pair<F: ar_ndarray::Scalar>(
    precision: Precision,
    tolerance: f64,
) -> Option<Pair<NdArray<F>, Candle>> {
    // One device for the whole process: opening one per case would reload candle's kernels.
    static DEVICE: std::sync::OnceLock<Result<candle_core::Device, String>> =
        std::sync::OnceLock::new();
    let device = DEVICE.get_or_init(|| {
        Candle::cuda(0, Precision::F64).map(|c| c.device().clone()).map_err(|e| e.to_string())
    });
    match device {
        Ok(device) => Some(Pair {
            reference: NdArray::new(),
            candidate: Candle::with_device(device.clone(), precision),
            tolerance,
        }),
        Err(e) if std::env::var_os("AR_REQUIRE_CUDA").is_none() => {
            eprintln!("skipping the CUDA conformance case: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// One test per (operation, pair): `conformance! { op: strategy; ... }` runs `op(&pair, case)`.
macro_rules! conformance {
    ($($op:ident: $strategy:expr;)*) => {$(
        mod $op {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig { cases: CASES, rng_seed: RngSeed::Fixed(0xa5), ..ProptestConfig::default() })]

                #[test]
                fn ndarray_f64_vs_candle_cpu_f64(case in $strategy) {
                    super::$op(&f64_pair(), case)?;
                }

                #[test]
                fn ndarray_f32_vs_candle_cpu_f32(case in $strategy) {
                    super::$op(&f32_pair(), case)?;
                }

                #[cfg(feature = "cuda")]
                #[test]
                fn ndarray_f64_vs_candle_cuda_f64(case in $strategy) {
                    if let Some(p) = cuda_pair::<f64>(Precision::F64, F64_TOLERANCE) {
                        super::$op(&p, case)?;
                    }
                }

                #[cfg(feature = "cuda")]
                #[test]
                fn ndarray_f32_vs_candle_cuda_f32(case in $strategy) {
                    if let Some(p) = cuda_pair::<f32>(Precision::F32, F32_TOLERANCE) {
                        super::$op(&p, case)?;
                    }
                }
            }
        }
    )*};
}

conformance! {
    name: Just(());
    from_host_to_host: tensor();
    zeros: tensor();
    reshape: tensor();
    gemm: gemm_case();
    axpby: (two_tensors(), scalar(), scalar());
    mul_and_sub: two_tensors();
    add_row: (matrix(), data(MAX_DIM));
    sum_rows: (matrix(), scalar());
    activations: (activation(), tensor()).prop_flat_map(|(f, (shape, _))| {
        let n: usize = shape.iter().product();
        (Just(f), Just(shape), prop::collection::vec(wide_value(), n))
    });
    activations_elementwise_relative: (activation(), prop::collection::vec(-60.0..60.0f64, 1..=8));
    softmax_rows: (dim(), dim()).prop_flat_map(|(r, c)| (Just(r), Just(c), prop::collection::vec(wide_value(), r * c)));
    argmax_rows: (dim(), dim()).prop_flat_map(|(r, c)| {
        // Small integers, so that ties are common.
        (Just(r), Just(c), prop::collection::vec((0..3i32).prop_map(f64::from), r * c))
    });
    dot: two_tensors();
    precision: Just(());
    adam_step: (two_tensors(), data(2 * MAX_DIM * MAX_DIM * MAX_DIM), 1..6u64);
    conv2d: conv_case();
    pooling: pool_case();
}
