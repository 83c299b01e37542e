//! The `Backend` trait: the tensor operations that activation relaxation and backprop need.
//!
//! The algorithm crates are generic over `B: Backend` and never name a concrete tensor library.
//! A backend owns its precision (f32 or f64) and its device. Every operation is infallible:
//! a shape mismatch is a bug in the caller, so backends panic on it with the shapes involved.
//!
//! Conventions: dense activities are row-major `[batch, features]`; dense weights use PyTorch's
//! `[out, in]` layout. Operations whose name ends in `_into` write into a caller-owned buffer so
//! that the relaxation loop can run without allocating.
//!
//! Every method of [`Backend`] is required, so an implementor sees exactly what it must write;
//! the allocating conveniences (`matmul`, `mul`, `sub`, ...) live in [`BackendExt`], implemented
//! for every backend on top of the primitives. [`pool`] holds the reference pooling kernels on
//! host slices, which a backend may call on its own buffers.

mod activation;
pub mod pool;
pub mod testing;

pub use activation::Activation;

/// The geometry of a 2-D convolution on `[batch, channels, height, width]` tensors with a
/// `[out_channels, in_channels, kh, kw]` kernel: the same stride and zero padding on both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Step between neighbouring windows (>= 1).
    pub stride: usize,
    /// Zeros added on every side (>= 0).
    pub padding: usize,
}

impl std::fmt::Display for ConvGeometry {
    /// `stride 2, padding 1`, as messages name it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stride {}, padding {}", self.stride, self.padding)
    }
}

impl std::fmt::Display for PoolGeometry {
    /// `2x2 windows every 2 pixels`, as messages name it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{k}x{k} windows every {} pixels", self.stride, k = self.kernel)
    }
}

impl ConvGeometry {
    /// The output size along one axis of size `input` for a kernel of size `kernel`, or `None`
    /// when the kernel does not fit.
    pub fn output_len(&self, input: usize, kernel: usize) -> Option<usize> {
        let padded = input + 2 * self.padding;
        (self.stride > 0 && kernel > 0 && padded >= kernel)
            .then(|| (padded - kernel) / self.stride + 1)
    }
}

/// The geometry of 2-D pooling: square windows of `kernel` pixels every `stride` pixels, no
/// padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Window side (>= 1).
    pub kernel: usize,
    /// Step between windows (>= 1).
    pub stride: usize,
}

impl PoolGeometry {
    /// The output size along one axis of size `input`, or `None` when the window does not fit.
    pub fn output_len(&self, input: usize) -> Option<usize> {
        (self.stride > 0 && self.kernel > 0 && input >= self.kernel)
            .then(|| (input - self.kernel) / self.stride + 1)
    }
}

/// The floating-point precision a backend computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// 64-bit floats.
    F64,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f64" => Ok(Precision::F64),
            _ => Err(format!("unknown precision '{s}' (expected f32 or f64)")),
        }
    }
}

use std::fmt::Debug;

/// Host values in either float width, row-major: what a caller uploads as a batch of inputs.
/// Float32 values go to an f32 backend as they are, without a detour through f64. Nothing here
/// checks values: NaN and infinities pass, and a finite f64 beyond f32's range becomes an
/// infinity in an f32 backend; callers taking untrusted input check it first (the Python
/// binding does, after rounding).
#[derive(Clone, Copy, Debug)]
pub enum HostValues<'a> {
    /// Single precision.
    F32(&'a [f32]),
    /// Double precision.
    F64(&'a [f64]),
}

impl<'a> HostValues<'a> {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            HostValues::F32(v) => v.len(),
            HostValues::F64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values in `range`. Panics if it is out of bounds.
    pub fn slice(&self, range: std::ops::Range<usize>) -> HostValues<'a> {
        match *self {
            HostValues::F32(v) => HostValues::F32(&v[range]),
            HostValues::F64(v) => HostValues::F64(&v[range]),
        }
    }
}

/// The element types [`HostValues`] holds: f32 and f64.
pub trait HostFloat: Copy {
    /// `values` as host values of this width.
    fn host_values(values: &[Self]) -> HostValues<'_>;
}

impl HostFloat for f32 {
    fn host_values(values: &[f32]) -> HostValues<'_> {
        HostValues::F32(values)
    }
}

impl HostFloat for f64 {
    fn host_values(values: &[f64]) -> HostValues<'_> {
        HostValues::F64(values)
    }
}

impl<'a, F: HostFloat> From<&'a [F]> for HostValues<'a> {
    fn from(v: &'a [F]) -> Self {
        F::host_values(v)
    }
}

impl<'a, F: HostFloat> From<&'a Vec<F>> for HostValues<'a> {
    fn from(v: &'a Vec<F>) -> Self {
        F::host_values(v)
    }
}

impl<'a, F: HostFloat, const N: usize> From<&'a [F; N]> for HostValues<'a> {
    fn from(v: &'a [F; N]) -> Self {
        F::host_values(v)
    }
}

/// A tensor library that can run the algorithm: storage, matrix products, and the elementwise
/// operations of the forward pass, the relaxation and the weight update. Every method is
/// required; the conveniences built on them are in [`BackendExt`].
pub trait Backend: Clone + Send + Sync + Debug + 'static {
    /// A dense n-dimensional array living on this backend's device.
    type Tensor: Clone + Send + Sync + Debug;

    /// A short name with precision and device, such as `ndarray-f64` or `candle-cpu-f32`.
    fn name(&self) -> String;

    /// Uploads host values (row-major) as a tensor of the given shape, rounding to the backend's
    /// precision. Panics if `data.len()` is not the product of `shape`.
    #[allow(clippy::wrong_self_convention)] // the backend, not the data, is the receiver
    fn from_host(&self, data: &[f64], shape: &[usize]) -> Self::Tensor;

    /// [`Backend::from_host`] for f32 host values (exact in either precision).
    #[allow(clippy::wrong_self_convention)]
    fn from_host_f32(&self, data: &[f32], shape: &[usize]) -> Self::Tensor;

    /// Downloads a tensor's values in row-major order, widened to f64.
    fn to_host(&self, t: &Self::Tensor) -> Vec<f64>;

    /// The tensor's shape.
    fn shape(&self, t: &Self::Tensor) -> Vec<usize>;

    /// A tensor of zeros.
    fn zeros(&self, shape: &[usize]) -> Self::Tensor;

    /// The same values under a new shape with the same number of elements (flatten).
    fn reshape(&self, t: &Self::Tensor, shape: &[usize]) -> Self::Tensor;

    /// General matrix product on 2-D tensors: `c <- alpha * op(a) op(b) + beta * c`, where
    /// `op(x)` is `x^T` when the matching flag is set. With `beta == 0` the old contents of `c`
    /// are ignored (even if they are NaN).
    fn gemm(
        &self,
        alpha: f64,
        a: &Self::Tensor,
        transpose_a: bool,
        b: &Self::Tensor,
        transpose_b: bool,
        beta: f64,
        c: &mut Self::Tensor,
    );

    /// `y <- alpha * x + beta * y`, elementwise on tensors of one shape. With `beta == 0` the old
    /// contents of `y` are ignored.
    fn axpby(&self, alpha: f64, x: &Self::Tensor, beta: f64, y: &mut Self::Tensor);

    /// `out <- a * b`, elementwise (Hadamard product) on tensors of one shape.
    fn mul_into(&self, a: &Self::Tensor, b: &Self::Tensor, out: &mut Self::Tensor);

    /// Adds the vector `row` (length `n`) to every row of the `[batch, n]` tensor `x` (a bias).
    fn add_row(&self, x: &mut Self::Tensor, row: &Self::Tensor);

    /// `out <- scale * sum_b x[b, ..]`: the sum over the leading (batch) axis of a 2-D tensor,
    /// giving a vector (a bias gradient).
    fn sum_rows_into(&self, scale: f64, x: &Self::Tensor, out: &mut Self::Tensor);

    /// `out <- f(a)`, elementwise.
    fn activate_into(&self, f: Activation, a: &Self::Tensor, out: &mut Self::Tensor);

    /// `out <- f'(a)`, elementwise.
    fn activate_derivative_into(&self, f: Activation, a: &Self::Tensor, out: &mut Self::Tensor);

    /// Row-wise softmax of a `[batch, n]` tensor, computed stably (max subtracted first).
    fn softmax_rows(&self, x: &Self::Tensor) -> Self::Tensor;

    /// The index of the largest entry of each row of a `[batch, n]` tensor (first one on ties).
    fn argmax_rows(&self, x: &Self::Tensor) -> Vec<usize>;

    /// The sum of the elementwise product of two tensors of one shape, accumulated in f64.
    fn dot(&self, a: &Self::Tensor, b: &Self::Tensor) -> f64;

    /// `out <- conv2d(x, kernel) + bias`: `x` `[batch, c, h, w]`, `kernel` `[o, c, kh, kw]`,
    /// `bias` `[o]`, `out` `[batch, o, oh, ow]` (cross-correlation, as in PyTorch).
    fn conv2d_into(
        &self,
        x: &Self::Tensor,
        kernel: &Self::Tensor,
        bias: &Self::Tensor,
        geometry: ConvGeometry,
        out: &mut Self::Tensor,
    );

    /// `out <- alpha * conv2d^T(e, kernel) + beta * out`: the vector-Jacobian product of a
    /// convolution with respect to its input (the transposed convolution), `e`
    /// `[batch, o, oh, ow]`, `out` `[batch, c, h, w]`.
    fn conv2d_input_vjp(
        &self,
        e: &Self::Tensor,
        kernel: &Self::Tensor,
        geometry: ConvGeometry,
        alpha: f64,
        beta: f64,
        out: &mut Self::Tensor,
    );

    /// `out <- scale * sum_b dconv/dkernel`: `out[o, c, i, j] = scale * sum_{b, y, x}
    /// e[b, o, y, x] x[b, c, y s + i - p, x s + j - p]`.
    fn conv2d_weight_grad_into(
        &self,
        e: &Self::Tensor,
        x: &Self::Tensor,
        geometry: ConvGeometry,
        scale: f64,
        out: &mut Self::Tensor,
    );

    /// `out[c] <- scale * sum_{b, y, x} e[b, c, y, x]` (a convolution's bias gradient).
    fn sum_channels_into(&self, scale: f64, e: &Self::Tensor, out: &mut Self::Tensor);

    /// A convolution's two parameter gradients from the same `e` and `scale`, what
    /// [`Backend::conv2d_weight_grad_into`] writes into `weight` and
    /// [`Backend::sum_channels_into`] into `bias`: the weight update's call, which a backend
    /// may serve in one pass over `e` (the two calls are a correct implementation).
    fn conv2d_grads_into(
        &self,
        e: &Self::Tensor,
        x: &Self::Tensor,
        geometry: ConvGeometry,
        scale: f64,
        weight: &mut Self::Tensor,
        bias: &mut Self::Tensor,
    );

    /// The precision values are stored in.
    fn precision(&self) -> Precision;

    /// Max pooling of `[batch, c, h, w]`: the window maxima and, for each, the flat index
    /// `y * w + x` of the maximum in its input plane (the host kernels store it as a float,
    /// exact below 2^24; a backend may use an integer tensor). Ties go to the first maximum in
    /// row-major order within the window. The argmax freezes the routing for the VJP.
    /// [`pool::max_pool2d`] is the reference.
    fn max_pool2d(&self, x: &Self::Tensor, pool: PoolGeometry) -> (Self::Tensor, Self::Tensor);

    /// `out <- alpha * unpool(e) + beta * out`: each gradient to its window's stored argmax,
    /// summed where windows overlap ([`pool::max_pool2d_vjp`] is the reference). `pool` is the
    /// forward pass's geometry (the argmax alone routes; a backend may use it to go faster).
    fn max_pool2d_vjp(
        &self,
        e: &Self::Tensor,
        argmax: &Self::Tensor,
        pool: PoolGeometry,
        alpha: f64,
        beta: f64,
        out: &mut Self::Tensor,
    );

    /// Average pooling of `[batch, c, h, w]` ([`pool::avg_pool2d`] is the reference).
    fn avg_pool2d(&self, x: &Self::Tensor, pool: PoolGeometry) -> Self::Tensor;

    /// `out <- alpha * spread(e) + beta * out`: each gradient spread evenly over its window
    /// ([`pool::avg_pool2d_vjp`] is the reference).
    fn avg_pool2d_vjp(
        &self,
        e: &Self::Tensor,
        pool: PoolGeometry,
        alpha: f64,
        beta: f64,
        out: &mut Self::Tensor,
    );

    /// One Adam update of `param` (Kingma and Ba 2015) at step `t` (1-based):
    /// `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
    /// `param <- param - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`
    /// ([`AdamStep::apply`] is the scalar reference).
    /// Fused: one pass over four tensors, where the primitives lack the square root and division.
    fn adam_step(
        &self,
        param: &mut Self::Tensor,
        grad: &Self::Tensor,
        m: &mut Self::Tensor,
        v: &mut Self::Tensor,
        hyper: AdamStep,
    );
}

/// Allocating conveniences built on the [`Backend`] primitives, for every backend (a blanket
/// implementation): import this trait to call them. A backend implements none of them.
pub trait BackendExt: Backend {
    /// A new tensor `op(a) op(b)` (see [`Backend::gemm`]).
    fn matmul(
        &self,
        a: &Self::Tensor,
        transpose_a: bool,
        b: &Self::Tensor,
        transpose_b: bool,
    ) -> Self::Tensor {
        let (sa, sb) = (self.shape(a), self.shape(b));
        assert!(sa.len() == 2 && sb.len() == 2, "matmul needs 2-D tensors, got {sa:?} and {sb:?}");
        let rows = if transpose_a { sa[1] } else { sa[0] };
        let cols = if transpose_b { sb[0] } else { sb[1] };
        let mut c = self.zeros(&[rows, cols]);
        self.gemm(1.0, a, transpose_a, b, transpose_b, 0.0, &mut c);
        c
    }

    /// A new tensor `a * b`, elementwise.
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor {
        let mut out = self.zeros(&self.shape(a));
        self.mul_into(a, b, &mut out);
        out
    }

    /// A new tensor `a - b`, elementwise.
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor {
        let mut out = a.clone();
        self.axpby(-1.0, b, 1.0, &mut out);
        out
    }

    /// A new tensor `f(a)`, elementwise.
    fn activate(&self, f: Activation, a: &Self::Tensor) -> Self::Tensor {
        let mut out = self.zeros(&self.shape(a));
        self.activate_into(f, a, &mut out);
        out
    }

    /// A new tensor `f'(a)`, elementwise.
    fn activate_derivative(&self, f: Activation, a: &Self::Tensor) -> Self::Tensor {
        let mut out = self.zeros(&self.shape(a));
        self.activate_derivative_into(f, a, &mut out);
        out
    }

    /// A new vector `scale * sum_b x[b, ..]` (see [`Backend::sum_rows_into`]).
    fn sum_rows(&self, scale: f64, x: &Self::Tensor) -> Self::Tensor {
        let shape = self.shape(x);
        assert_eq!(shape.len(), 2, "sum_rows needs a 2-D tensor, got {shape:?}");
        let mut out = self.zeros(&shape[1..]);
        self.sum_rows_into(scale, x, &mut out);
        out
    }

    /// The number of elements of a tensor.
    fn numel(&self, t: &Self::Tensor) -> usize {
        self.shape(t).iter().product()
    }
}

impl<B: Backend> BackendExt for B {}

/// The hyperparameters of one Adam step (see [`Backend::adam_step`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay `b1`.
    pub beta1: f64,
    /// Second-moment decay `b2`.
    pub beta2: f64,
    /// `eps` added to the denominator.
    pub eps: f64,
    /// The 1-based step number `t`, for bias correction.
    pub t: u64,
}

impl AdamStep {
    /// The update of one scalar: returns the new `(param, m, v)`.
    pub fn apply(&self, param: f64, grad: f64, m: f64, v: f64) -> (f64, f64, f64) {
        let m = self.beta1 * m + (1.0 - self.beta1) * grad;
        let v = self.beta2 * v + (1.0 - self.beta2) * grad * grad;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let m_hat = m / (1.0 - self.beta1.powi(t));
        let v_hat = v / (1.0 - self.beta2.powi(t));
        (param - self.lr * m_hat / (v_hat.sqrt() + self.eps), m, v)
    }
}
