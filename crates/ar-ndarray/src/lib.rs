//! The CPU backend: [`Backend`] on `ndarray` arrays, in f32 or f64.
//!
//! Matrix products go through the `gemm` crate's kernels in fixed blocks on rayon's pool
//! (src/gemm.rs), accumulating into the output in place, so `gemm` with `beta != 0` is the fused
//! relaxation step `v <- (1 - eta) v + eta * e W`.

mod conv;
mod gemm;
mod tanh;

use ar_backend::{pool, Activation, AdamStep, Backend, ConvGeometry, PoolGeometry, Precision};
use ndarray::{ArrayD, ArrayView2, ArrayViewMut2, Axis, Ix2, IxDyn, LinalgScalar, Zip};
use num_traits::{Float, FromPrimitive, ToPrimitive};
use rayon::prelude::*;
use std::fmt::Debug;
use std::marker::PhantomData;

/// An elementwise kernel over slices: `out[i]` from `a[i]`.
pub type SliceMap<F> = fn(&[F], &mut [F]);

/// A floating-point element type the CPU backend computes in.
pub trait Scalar:
    LinalgScalar + Float + FromPrimitive + ToPrimitive + pool::Element + Send + Sync + Debug + 'static
{
    /// `f32` or `f64`, for backend names.
    const NAME: &'static str;
    /// The precision this type computes in.
    const PRECISION: Precision;

    /// Runs `f` on a buffer of `len` values (of any content) kept per thread, so that kernels
    /// called on every relaxation step allocate nothing after the first.
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;

    /// A vectorised kernel for `f` (or its derivative) over slices where this type has one
    /// (f32 tanh: src/tanh.rs); `None` means the scalar definitions of [`Activation`].
    fn activation_kernel(_f: Activation, _derivative: bool) -> Option<SliceMap<Self>> {
        None
    }
}

/// [`Scalar::with_scratch`] for one type: a thread-local buffer, grown as needed; a nested call
/// (the buffer already lent on this thread) gets a fresh one.
macro_rules! with_scratch {
    ($t:ty) => {
        fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [$t]) -> R) -> R {
            thread_local! {
                static SCRATCH: std::cell::RefCell<Vec<$t>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            SCRATCH.with(|cell| match cell.try_borrow_mut() {
                Ok(mut buffer) => {
                    if buffer.len() < len {
                        buffer.resize(len, 0.0);
                    }
                    f(&mut buffer[..len])
                }
                Err(_) => f(&mut vec![0.0; len]),
            })
        }
    };
}

impl Scalar for f32 {
    const NAME: &'static str = "f32";
    const PRECISION: Precision = Precision::F32;

    with_scratch!(f32);

    fn activation_kernel(f: Activation, derivative: bool) -> Option<SliceMap<f32>> {
        let tanh = if derivative { tanh::tanh_derivative_f32 } else { tanh::tanh_f32 };
        (f == Activation::Tanh).then_some(tanh)
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "f64";
    const PRECISION: Precision = Precision::F64;

    with_scratch!(f64);
}

/// The ndarray CPU backend in precision `F` (`NdArray::<f64>::new()` for verification,
/// `NdArray::<f32>::new()` for training).
#[derive(Clone, Copy, Debug, Default)]
pub struct NdArray<F: Scalar> {
    precision: PhantomData<F>,
}

impl<F: Scalar> NdArray<F> {
    /// The backend.
    pub fn new() -> Self {
        NdArray { precision: PhantomData }
    }
}

fn cast<F: Scalar>(x: f64) -> F {
    F::from_f64(x).expect("every f64 converts to a float type")
}

fn matrix<'a, F: Scalar>(t: &'a ArrayD<F>, what: &str) -> ArrayView2<'a, F> {
    t.view()
        .into_dimensionality::<Ix2>()
        .unwrap_or_else(|_| panic!("{what} must be 2-D, got shape {:?}", t.shape()))
}

fn matrix_mut<'a, F: Scalar>(t: &'a mut ArrayD<F>, what: &str) -> ArrayViewMut2<'a, F> {
    let shape = t.shape().to_vec();
    t.view_mut()
        .into_dimensionality::<Ix2>()
        .unwrap_or_else(|_| panic!("{what} must be 2-D, got shape {shape:?}"))
}

/// A tensor's values as a mutable row-major slice, after making its layout row-major if needed.
fn slice_mut<F: Scalar>(t: &mut ArrayD<F>) -> &mut [F] {
    if !t.is_standard_layout() {
        *t = t.as_standard_layout().into_owned();
    }
    t.as_slice_mut().expect("standard layout")
}

/// Elementwise maps over at least this many elements are shared out on rayon's pool. An
/// elementwise result does not depend on how the work is cut, so runs stay bit-identical.
const PARALLEL_MIN_LEN: usize = 1 << 15;

/// `zip.for_each(f)`, or `zip.par_for_each(f)` when the arrays hold `len >= PARALLEL_MIN_LEN`
/// elements.
macro_rules! for_each {
    ($zip:expr, $len:expr, $f:expr) => {
        if $len >= PARALLEL_MIN_LEN {
            $zip.par_for_each($f)
        } else {
            $zip.for_each($f)
        }
    };
}

/// `map(a, out)` on the arrays' row-major values (see [`chunked`]).
fn map_slices<F: Scalar>(a: &ArrayD<F>, out: &mut ArrayD<F>, map: impl Fn(&[F], &mut [F]) + Sync) {
    let a = a.as_standard_layout();
    let src = a.as_slice().expect("standard layout");
    chunked(slice_mut(out), [src], |d, [s]| map(s, d));
}

/// `f(out, inputs)` on equal-length row-major slices, in chunks on rayon's pool when they hold
/// at least `PARALLEL_MIN_LEN` elements (for elementwise `f`, so the cut changes no value):
/// plain slices vectorise where ndarray's `Zip` over dynamic dimensions goes row by row.
fn chunked<F: Scalar, const N: usize>(
    out: &mut [F],
    inputs: [&[F]; N],
    f: impl Fn(&mut [F], [&[F]; N]) + Sync,
) {
    assert!(inputs.iter().all(|a| a.len() == out.len()), "elementwise: lengths differ");
    if out.len() >= PARALLEL_MIN_LEN {
        const CHUNK: usize = 1 << 13;
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, o)| f(o, inputs.map(|a| &a[i * CHUNK..][..o.len()])));
    } else {
        f(out, inputs);
    }
}

/// `out <- f(a)` (or `f'(a)`) elementwise: the type's vectorised kernel where it has one, else
/// the scalar definitions.
fn activation<F: Scalar>(f: Activation, derivative: bool, a: &ArrayD<F>, out: &mut ArrayD<F>) {
    let kernel = F::activation_kernel(f, derivative);
    map_slices(a, out, |a, out| match kernel {
        Some(kernel) => kernel(a, out),
        None => scalar_definitions(f, derivative, a, out),
    });
}

/// `out <- f(a)` (or `f'(a)`) by [`Activation`]'s scalar definitions, with `f` fixed per loop
/// (one loop per activation), so that the loop does not branch on it per element and the
/// compiler can vectorise the simple ones (ReLU).
fn scalar_definitions<F: Scalar>(f: Activation, derivative: bool, a: &[F], out: &mut [F]) {
    macro_rules! per_activation {
        ($($name:ident),*) => {
            match f {
                $(Activation::$name if derivative => {
                    map_each(a, out, |v| Activation::$name.derivative(v))
                })*
                $(Activation::$name => map_each(a, out, |v| Activation::$name.apply(v)),)*
            }
        };
    }
    per_activation!(Identity, Relu, LeakyRelu, Tanh, Sigmoid, Softplus)
}

/// `out[i] = f(a[i])`, as a loop the compiler vectorises where `f` allows.
#[inline(always)]
pub(crate) fn map_each<T: Copy>(a: &[T], out: &mut [T], f: impl Fn(T) -> T) {
    assert_eq!(a.len(), out.len(), "map: input of {} elements, output of {}", a.len(), out.len());
    for (o, &v) in out.iter_mut().zip(a) {
        *o = f(v);
    }
}

fn same_shape<F>(a: &ArrayD<F>, b: &ArrayD<F>, op: &str) {
    assert_eq!(a.shape(), b.shape(), "{op}: shape mismatch {:?} vs {:?}", a.shape(), b.shape());
}

impl<F: Scalar> Backend for NdArray<F> {
    type Tensor = ArrayD<F>;

    fn name(&self) -> String {
        format!("ndarray-{}", F::NAME)
    }

    fn from_host(&self, data: &[f64], shape: &[usize]) -> ArrayD<F> {
        let n: usize = shape.iter().product();
        assert_eq!(data.len(), n, "from_host: {} values for shape {shape:?}", data.len());
        ArrayD::from_shape_vec(IxDyn(shape), data.iter().map(|&x| cast(x)).collect())
            .expect("length checked above")
    }

    fn from_host_f32(&self, data: &[f32], shape: &[usize]) -> ArrayD<F> {
        let n: usize = shape.iter().product();
        assert_eq!(data.len(), n, "from_host_f32: {} values for shape {shape:?}", data.len());
        let values =
            data.iter().map(|&x| F::from_f32(x).expect("every f32 converts to a float type"));
        ArrayD::from_shape_vec(IxDyn(shape), values.collect()).expect("length checked above")
    }

    fn to_host(&self, t: &ArrayD<F>) -> Vec<f64> {
        t.iter().map(|x| x.to_f64().expect("floats widen to f64")).collect()
    }

    fn shape(&self, t: &ArrayD<F>) -> Vec<usize> {
        t.shape().to_vec()
    }

    fn zeros(&self, shape: &[usize]) -> ArrayD<F> {
        ArrayD::zeros(IxDyn(shape))
    }

    fn reshape(&self, t: &ArrayD<F>, shape: &[usize]) -> ArrayD<F> {
        let n: usize = shape.iter().product();
        assert_eq!(t.len(), n, "reshape: {:?} has {} elements, not {n}", t.shape(), t.len());
        if t.is_standard_layout() {
            // One copy of the buffer, in row-major order already.
            return t.clone().into_shape_with_order(IxDyn(shape)).expect("length checked above");
        }
        let flat: Vec<F> = t.iter().copied().collect();
        ArrayD::from_shape_vec(IxDyn(shape), flat).expect("length checked above")
    }

    fn gemm(
        &self,
        alpha: f64,
        a: &ArrayD<F>,
        transpose_a: bool,
        b: &ArrayD<F>,
        transpose_b: bool,
        beta: f64,
        c: &mut ArrayD<F>,
    ) {
        let a = matrix(a, "gemm: a");
        let b = matrix(b, "gemm: b");
        let a = if transpose_a { a.reversed_axes() } else { a };
        let b = if transpose_b { b.reversed_axes() } else { b };
        gemm::matmul(cast(alpha), a, b, cast(beta), matrix_mut(c, "gemm: c"));
    }

    fn axpby(&self, alpha: f64, x: &ArrayD<F>, beta: f64, y: &mut ArrayD<F>) {
        same_shape(x, y, "axpby");
        let (alpha, beta_f) = (cast::<F>(alpha), cast::<F>(beta));
        if let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice_mut()) {
            return if beta == 0.0 {
                chunked(ys, [xs], |y, [x]| map_each(x, y, |x| alpha * x))
            } else {
                chunked(ys, [xs], |y, [x]| {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = alpha * x + beta_f * *y;
                    }
                })
            };
        }
        if beta == 0.0 {
            for_each!(Zip::from(y).and(x), x.len(), |y, &x| *y = alpha * x);
        } else {
            for_each!(Zip::from(y).and(x), x.len(), |y, &x| *y = alpha * x + beta_f * *y);
        }
    }

    fn mul_into(&self, a: &ArrayD<F>, b: &ArrayD<F>, out: &mut ArrayD<F>) {
        same_shape(a, b, "mul");
        same_shape(a, out, "mul (output)");
        if let (Some(xs), Some(ys), Some(os)) = (a.as_slice(), b.as_slice(), out.as_slice_mut()) {
            return chunked(os, [xs, ys], |o, [a, b]| {
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = a * b;
                }
            });
        }
        for_each!(Zip::from(out).and(a).and(b), a.len(), |o, &a, &b| *o = a * b);
    }

    fn add_row(&self, x: &mut ArrayD<F>, row: &ArrayD<F>) {
        let mut x = matrix_mut(x, "add_row: x");
        assert!(
            row.ndim() == 1 && row.len() == x.ncols(),
            "add_row: row of shape {:?} does not fit rows of {:?}",
            row.shape(),
            x.shape()
        );
        let row = row.view().into_dimensionality::<ndarray::Ix1>().expect("checked 1-D");
        for mut r in x.rows_mut() {
            Zip::from(&mut r).and(&row).for_each(|x, &b| *x = *x + b);
        }
    }

    fn sum_rows_into(&self, scale: f64, x: &ArrayD<F>, out: &mut ArrayD<F>) {
        let x = matrix(x, "sum_rows: x");
        assert!(
            out.ndim() == 1 && out.len() == x.ncols(),
            "sum_rows: output of shape {:?} for input {:?}",
            out.shape(),
            x.shape()
        );
        let scale = cast::<F>(scale);
        let mut out = out.view_mut().into_dimensionality::<ndarray::Ix1>().expect("checked 1-D");
        out.fill(F::zero());
        for r in x.rows() {
            Zip::from(&mut out).and(r).for_each(|o, &v| *o = *o + v);
        }
        out.mapv_inplace(|v| v * scale);
    }

    fn activate_into(&self, f: Activation, a: &ArrayD<F>, out: &mut ArrayD<F>) {
        same_shape(a, out, "activate");
        activation(f, false, a, out);
    }

    fn activate_derivative_into(&self, f: Activation, a: &ArrayD<F>, out: &mut ArrayD<F>) {
        same_shape(a, out, "activate_derivative");
        activation(f, true, a, out);
    }

    fn softmax_rows(&self, x: &ArrayD<F>) -> ArrayD<F> {
        let mut out = x.clone();
        let mut m = matrix_mut(&mut out, "softmax_rows");
        for mut row in m.axis_iter_mut(Axis(0)) {
            let max = row.iter().copied().fold(F::neg_infinity(), F::max);
            row.mapv_inplace(|v| (v - max).exp());
            let sum = row.iter().copied().fold(F::zero(), |s, v| s + v);
            row.mapv_inplace(|v| v / sum);
        }
        out
    }

    fn argmax_rows(&self, x: &ArrayD<F>) -> Vec<usize> {
        matrix(x, "argmax_rows")
            .rows()
            .into_iter()
            .map(|row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                best
            })
            .collect()
    }

    fn conv2d_into(
        &self,
        x: &ArrayD<F>,
        kernel: &ArrayD<F>,
        bias: &ArrayD<F>,
        g: ConvGeometry,
        out: &mut ArrayD<F>,
    ) {
        conv::conv2d(x, kernel, bias, &g, out);
    }

    fn conv2d_input_vjp(
        &self,
        e: &ArrayD<F>,
        kernel: &ArrayD<F>,
        g: ConvGeometry,
        alpha: f64,
        beta: f64,
        out: &mut ArrayD<F>,
    ) {
        conv::conv2d_input_vjp(e, kernel, &g, cast(alpha), cast(beta), out);
    }

    fn conv2d_weight_grad_into(
        &self,
        e: &ArrayD<F>,
        x: &ArrayD<F>,
        g: ConvGeometry,
        scale: f64,
        out: &mut ArrayD<F>,
    ) {
        conv::conv2d_weight_grad(e, x, &g, cast(scale), out, None);
    }

    fn conv2d_grads_into(
        &self,
        e: &ArrayD<F>,
        x: &ArrayD<F>,
        g: ConvGeometry,
        scale: f64,
        weight: &mut ArrayD<F>,
        bias: &mut ArrayD<F>,
    ) {
        conv::conv2d_weight_grad(e, x, &g, cast(scale), weight, Some(bias));
    }

    fn sum_channels_into(&self, scale: f64, e: &ArrayD<F>, out: &mut ArrayD<F>) {
        conv::sum_channels(e, cast(scale), out);
    }

    fn precision(&self) -> Precision {
        F::PRECISION
    }

    // Pooling runs the kernels of `ar_backend::pool` on the arrays' own `F` slices, in place: no
    // whole tensor is converted to f64 (the kernels widen value by value, the VJPs plane by plane).
    fn max_pool2d(&self, x: &ArrayD<F>, pool: PoolGeometry) -> (ArrayD<F>, ArrayD<F>) {
        let dims = pool::nchw(x.shape(), "max_pool2d input");
        let x = x.as_standard_layout();
        let (out, arg) = pool::max_pool2d(x.as_slice().expect("standard layout"), dims, pool);
        let shape = IxDyn(&pool::output_dims(dims, pool));
        (
            ArrayD::from_shape_vec(shape.clone(), out).expect("the kernel sizes its output"),
            ArrayD::from_shape_vec(shape, arg).expect("the kernel sizes its output"),
        )
    }

    fn max_pool2d_vjp(
        &self,
        e: &ArrayD<F>,
        argmax: &ArrayD<F>,
        _pool: PoolGeometry,
        alpha: f64,
        beta: f64,
        out: &mut ArrayD<F>,
    ) {
        let dims = pool::nchw(out.shape(), "max_pool2d input gradient");
        let (e, argmax) = (e.as_standard_layout(), argmax.as_standard_layout());
        let (e, argmax) =
            (e.as_slice().expect("standard layout"), argmax.as_slice().expect("standard layout"));
        let out = slice_mut(out);
        let [batch, c, h, w] = dims;
        let planes = batch * c;
        if out.len() < PARALLEL_MIN_LEN || planes == 0 || e.len() % planes != 0 {
            return pool::max_pool2d_vjp(e, argmax, dims, alpha, beta, out);
        }
        // Planes are independent (an argmax points inside its own plane), so groups of them run
        // on the pool with the same kernel and the same values.
        const GROUP: usize = 8;
        let per_plane = e.len() / planes;
        out.par_chunks_mut(GROUP * h * w)
            .zip(e.par_chunks(GROUP * per_plane))
            .zip(argmax.par_chunks(GROUP * per_plane))
            .for_each(|((out, e), argmax)| {
                let dims = [out.len() / (h * w), 1, h, w];
                pool::max_pool2d_vjp(e, argmax, dims, alpha, beta, out)
            });
    }

    fn avg_pool2d(&self, x: &ArrayD<F>, pool: PoolGeometry) -> ArrayD<F> {
        let dims = pool::nchw(x.shape(), "avg_pool2d input");
        let x = x.as_standard_layout();
        let out = pool::avg_pool2d(x.as_slice().expect("standard layout"), dims, pool);
        ArrayD::from_shape_vec(IxDyn(&pool::output_dims(dims, pool)), out)
            .expect("the kernel sizes its output")
    }

    fn avg_pool2d_vjp(
        &self,
        e: &ArrayD<F>,
        pool: PoolGeometry,
        alpha: f64,
        beta: f64,
        out: &mut ArrayD<F>,
    ) {
        let dims = pool::nchw(out.shape(), "avg_pool2d input gradient");
        let e = e.as_standard_layout();
        let e = e.as_slice().expect("standard layout");
        pool::avg_pool2d_vjp(e, dims, pool, alpha, beta, slice_mut(out));
    }

    fn adam_step(
        &self,
        param: &mut ArrayD<F>,
        grad: &ArrayD<F>,
        m: &mut ArrayD<F>,
        v: &mut ArrayD<F>,
        hyper: AdamStep,
    ) {
        same_shape(param, grad, "adam_step");
        same_shape(param, m, "adam_step (first moment)");
        same_shape(param, v, "adam_step (second moment)");
        let t = i32::try_from(hyper.t).unwrap_or(i32::MAX);
        let (b1, b2) = (cast::<F>(hyper.beta1), cast::<F>(hyper.beta2));
        let (one, lr, eps) = (F::one(), cast::<F>(hyper.lr), cast::<F>(hyper.eps));
        let (c1, c2) = (cast::<F>(1.0 - hyper.beta1.powi(t)), cast::<F>(1.0 - hyper.beta2.powi(t)));
        Zip::from(param).and(grad).and(m).and(v).for_each(|p, &g, m, v| {
            *m = b1 * *m + (one - b1) * g;
            *v = b2 * *v + (one - b2) * g * g;
            *p = *p - lr * (*m / c1) / ((*v / c2).sqrt() + eps);
        });
    }

    fn dot(&self, a: &ArrayD<F>, b: &ArrayD<F>) -> f64 {
        same_shape(a, b, "dot");
        let mut sum = 0.0f64;
        Zip::from(a).and(b).for_each(|&a, &b| {
            sum += a.to_f64().unwrap_or(f64::NAN) * b.to_f64().unwrap_or(f64::NAN);
        });
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    ar_backend::backend_tests!(NdArray::<f64>::new());

    #[test]
    fn adam_step_matches_the_scalar_rule() {
        let be = NdArray::<f64>::new();
        let hyper = AdamStep { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: 3 };
        let (mut p, g) = (be.from_host(&[1.0, -2.0], &[2]), be.from_host(&[0.5, -0.25], &[2]));
        let (mut m, mut v) = (be.from_host(&[0.1, 0.2], &[2]), be.from_host(&[0.01, 0.02], &[2]));
        be.adam_step(&mut p, &g, &mut m, &mut v, hyper);
        for (i, (p0, g0, m0, v0)) in
            [(1.0, 0.5, 0.1, 0.01), (-2.0, -0.25, 0.2, 0.02)].into_iter().enumerate()
        {
            let (pe, me, ve) = hyper.apply(p0, g0, m0, v0);
            assert!((be.to_host(&p)[i] - pe).abs() < 1e-15);
            assert!(
                (be.to_host(&m)[i] - me).abs() < 1e-15 && (be.to_host(&v)[i] - ve).abs() < 1e-15
            );
        }
        assert_eq!(be.precision(), ar_backend::Precision::F64);
        assert_eq!(NdArray::<f32>::new().precision(), ar_backend::Precision::F32);
    }

    /// The f32 backend takes f32 host values as they are (backend_tests! runs the f64 one).
    #[test]
    fn f32_backend_uploads_f32_values_unchanged() {
        ar_backend::testing::f32_uploads_equal_their_f64_widening(NdArray::<f32>::new());
    }

    /// The f32 backend pools on its own f32 buffers and gives exactly the f64 reference kernels'
    /// results rounded to f32: window maxima and argmax (ties to the first maximum), averages, and
    /// both VJPs, with overlapping windows summing several gradients into one input and `alpha`,
    /// `beta` that f32 cannot hold exactly.
    #[test]
    fn f32_pooling_equals_the_f64_kernels_rounded() {
        let be = NdArray::<f32>::new();
        let plain = |t: &ArrayD<f32>| t.iter().copied().collect::<Vec<f32>>();
        let rounded = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        // Values that are f32 already (so both sides pool the same input): small integers,
        // which tie often, among values with full mantissas.
        let values = |n: usize, salt: f64| -> Vec<f64> {
            (0..n)
                .map(|i| match i % 3 {
                    0 => (i % 4) as f64,
                    _ => f64::from((((i as f64 + salt) * 0.7139).sin() * 3.0) as f32),
                })
                .collect()
        };

        // The tie case (ar_backend::testing::TIE_PLANE), in f32.
        ar_backend::testing::max_pool_ties_go_to_the_first_maximum(be);

        // The second shape is large enough for the VJP to run on the pool, in uneven groups.
        for dims in [[2, 3, 7, 6], [9, 5, 29, 27]] {
            let x = values(dims.iter().product(), 0.5);
            let xt = be.from_host(&x, &dims);
            for geometry in [
                PoolGeometry { kernel: 2, stride: 2 },
                PoolGeometry { kernel: 3, stride: 2 },
                PoolGeometry { kernel: 3, stride: 1 },
            ] {
                let od = pool::output_dims(dims, geometry);
                let (max, arg) = be.max_pool2d(&xt, geometry);
                let (want_max, want_arg) = pool::max_pool2d(&x, dims, geometry);
                assert_eq!(plain(&max), rounded(&want_max), "{geometry:?}");
                assert_eq!(plain(&arg), rounded(&want_arg), "{geometry:?}");
                let avg = be.avg_pool2d(&xt, geometry);
                assert_eq!(
                    plain(&avg),
                    rounded(&pool::avg_pool2d(&x, dims, geometry)),
                    "{geometry:?}"
                );

                let e = values(od.iter().product(), 2.0);
                let et = be.from_host(&e, &od);
                for (alpha, beta) in [(0.1, 0.9), (-2.25, 1.0), (1.0, 0.0)] {
                    // With beta = 0 the prior contents are NaN and must be ignored.
                    let prior =
                        if beta == 0.0 { vec![f64::NAN; x.len()] } else { values(x.len(), 7.0) };
                    let mut got = be.from_host(&prior, &dims);
                    be.max_pool2d_vjp(&et, &arg, geometry, alpha, beta, &mut got);
                    let mut want = prior.clone();
                    pool::max_pool2d_vjp(&e, &want_arg, dims, alpha, beta, &mut want);
                    assert_eq!(plain(&got), rounded(&want), "max {geometry:?} {alpha} {beta}");

                    let mut got = be.from_host(&prior, &dims);
                    be.avg_pool2d_vjp(&et, geometry, alpha, beta, &mut got);
                    let mut want = prior.clone();
                    pool::avg_pool2d_vjp(&e, dims, geometry, alpha, beta, &mut want);
                    assert_eq!(plain(&got), rounded(&want), "avg {geometry:?} {alpha} {beta}");
                }
            }
        }
    }
}
