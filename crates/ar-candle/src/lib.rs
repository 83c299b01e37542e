//! The candle backend: [`Backend`] on `candle_core` tensors, in f32 or f64, on the CPU and (with
//! the `cuda` cargo feature) on an NVIDIA GPU.
//!
//! candle tensors are immutable, so the `_into` operations check the output's shape and then
//! replace `*out` with a freshly computed tensor. Every operation is infallible: a candle error
//! (a shape mismatch, which is a bug in the caller) panics with the operation and the shapes.

mod conv;
#[cfg(feature = "cuda")]
mod cudnn;
mod pooling;

pub use ar_backend::Precision;

use ar_backend::{pool, Activation, AdamStep, Backend, ConvGeometry, PoolGeometry};
use candle_core::{DType, Device, DeviceLocation, Tensor};

/// The errors at this crate's edge: opening a device.
#[derive(Debug, thiserror::Error)]
pub enum CandleError {
    /// CUDA was asked for in a build without the `cuda` feature.
    #[error(
        "CUDA support was not compiled in (asked for cuda:{ordinal}); rebuild with the `cuda` \
         feature (`cargo xtask-cuda ...`, which enables ar-candle/cuda and needs the \
         CUDA toolkit with nvcc: scripts/build-cuda.sh sets one up from PyPI and builds)"
    )]
    CudaNotCompiled {
        /// The device ordinal that was asked for.
        ordinal: usize,
    },
    /// The build has CUDA support, but the device could not be opened.
    #[error(
        "cannot open CUDA device {ordinal} (is there an NVIDIA GPU with a working driver, and are \
         the CUDA libraries on the library path?): {reason}"
    )]
    CudaDevice {
        /// The device ordinal that was asked for.
        ordinal: usize,
        /// What candle (or the CUDA driver) reported.
        reason: String,
    },
}

/// The candle element type of a precision.
pub fn dtype_of(precision: Precision) -> DType {
    match precision {
        Precision::F32 => DType::F32,
        Precision::F64 => DType::F64,
    }
}

fn precision_name(precision: Precision) -> &'static str {
    match precision {
        Precision::F32 => "f32",
        Precision::F64 => "f64",
    }
}

/// Whether this build of the crate has CUDA support (the `cuda` feature).
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// The candle backend on one device in one precision (`Candle::cpu(Precision::F64)` for
/// verification, `Candle::cpu(Precision::F32)` or `Candle::cuda(0, Precision::F32)?` for
/// training).
#[derive(Clone, Debug)]
pub struct Candle {
    device: Device,
    dtype: DType,
}

impl Candle {
    /// The backend on the CPU.
    pub fn cpu(precision: Precision) -> Self {
        Candle { device: Device::Cpu, dtype: dtype_of(precision) }
    }

    /// The backend on CUDA device `ordinal`. Fails, without panicking, when the crate was built
    /// without the `cuda` feature or when the device cannot be opened (no GPU, no driver).
    pub fn cuda(ordinal: usize, precision: Precision) -> Result<Self, CandleError> {
        let device = open_cuda(ordinal)?;
        Ok(Candle { device, dtype: dtype_of(precision) })
    }

    /// The backend on an already opened candle device.
    pub fn with_device(device: Device, precision: Precision) -> Self {
        Candle { device, dtype: dtype_of(precision) }
    }

    /// The candle device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The element type of every tensor this backend makes.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device, CandleError> {
    Err(CandleError::CudaNotCompiled { ordinal })
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device, CandleError> {
    // Some failures deep in the CUDA bindings surface as panics rather than errors: catch them
    // and report them like any other, with the default panic message silenced meanwhile (the
    // hook is process-wide; devices are opened at start-up, before other threads run).
    //
    // cuDNN's default math lets f32 convolutions run in TF32 (a 10-bit mantissa) on A100 and
    // later GPUs; this library computes f32 in f32, so it asks NVIDIA's libraries for full
    // precision unless the user has said otherwise (docs/cuda.md). Set here, before the device
    // and the first cuDNN handle exist, for the same start-up reason.
    if std::env::var_os("NVIDIA_TF32_OVERRIDE").is_none() {
        std::env::set_var("NVIDIA_TF32_OVERRIDE", "0");
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(ordinal));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => {
            Err(CandleError::CudaDevice { ordinal, reason: one_line(&without_backtrace(&e)) })
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the CUDA bindings panicked".to_string());
            Err(CandleError::CudaDevice { ordinal, reason: one_line(&message) })
        }
    }
}

/// The negative slope of leaky relu, as the reference definition has it (`f'(a)` for `a < 0`).
pub(crate) fn leaky_relu_slope() -> f64 {
    Activation::LeakyRelu.derivative(-1.0f64)
}

/// candle's message without the backtrace it attaches when `RUST_BACKTRACE` is set.
#[cfg(feature = "cuda")]
fn without_backtrace(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(inner),
        other => other.to_string(),
    }
}

/// A message folded onto one line (candle's errors may carry a backtrace or several lines).
#[cfg(feature = "cuda")]
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The value of a candle operation, or a panic naming the operation and the shapes involved.
fn ok<T>(result: candle_core::Result<T>, op: &str, shapes: &[&Tensor]) -> T {
    result.unwrap_or_else(|e| {
        let shapes: Vec<_> = shapes.iter().map(|t| t.dims().to_vec()).collect();
        panic!("{op}: candle failed on shapes {shapes:?}: {e}")
    })
}

fn same_shape(a: &Tensor, b: &Tensor, op: &str) {
    assert_eq!(a.dims(), b.dims(), "{op}: shape mismatch {:?} vs {:?}", a.dims(), b.dims());
}

fn matrix_dims(t: &Tensor, what: &str) -> (usize, usize) {
    match *t.dims() {
        [r, c] => (r, c),
        ref d => panic!("{what} must be 2-D, got shape {d:?}"),
    }
}

impl Candle {
    /// `alpha * x` (no work when `alpha == 1`).
    fn scaled(&self, alpha: f64, x: &Tensor, op: &str) -> Tensor {
        if alpha == 1.0 {
            x.clone()
        } else {
            ok(x.affine(alpha, 0.0), op, &[x])
        }
    }

    /// The logistic function without overflow: `1 / (1 + e^-a)` for `a >= 0`, `e^a / (1 + e^a)`
    /// otherwise, both from `e = exp(-|a|)`.
    fn sigmoid(&self, a: &Tensor) -> Tensor {
        let op = "sigmoid";
        let e = ok(a.abs().and_then(|m| m.neg()).and_then(|m| m.exp()), op, &[a]);
        let one_plus = ok(e.affine(1.0, 1.0), op, &[a]);
        let positive = ok(one_plus.recip(), op, &[a]);
        let negative = ok(e.div(&one_plus), op, &[a]);
        let mask = ok(a.ge(0.0), op, &[a]);
        ok(mask.where_cond(&positive, &negative), op, &[a])
    }

    /// `ln(1 + e)` for `e >= 0`, accurate for small `e` (candle has no `log1p`): with `u = 1 + e`
    /// rounded, `ln(u) * e / (u - 1)` corrects the rounding of `u` (Goldberg 1991, thm. 4).
    fn log1p(&self, e: &Tensor) -> Tensor {
        let op = "softplus (log1p)";
        let u = ok(e.affine(1.0, 1.0), op, &[e]);
        let d = ok(u.affine(1.0, -1.0), op, &[e]);
        let corrected = ok(u.log().and_then(|l| l.mul(e)).and_then(|l| l.div(&d)), op, &[e]);
        let tiny = ok(d.eq(0.0), op, &[e]);
        ok(tiny.where_cond(e, &corrected), op, &[e])
    }

    fn full_like(&self, a: &Tensor, value: f64, op: &str) -> Tensor {
        ok(a.ones_like().and_then(|o| o.affine(value, 0.0)), op, &[a])
    }

    fn cast_out(&self, t: Tensor, op: &str) -> Tensor {
        ok(t.to_dtype(self.dtype), op, &[])
    }
}

impl Backend for Candle {
    type Tensor = Tensor;

    fn name(&self) -> String {
        let device = match self.device.location() {
            DeviceLocation::Cpu => "cpu".to_string(),
            DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        };
        format!("candle-{device}-{}", precision_name(self.precision()))
    }

    fn from_host(&self, data: &[f64], shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        assert_eq!(data.len(), n, "from_host: {} values for shape {shape:?}", data.len());
        let t = match self.dtype {
            DType::F32 => {
                let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
                Tensor::from_vec(v, shape, &self.device)
            }
            _ => Tensor::from_vec(data.to_vec(), shape, &self.device),
        };
        ok(t, "from_host", &[])
    }

    fn from_host_f32(&self, data: &[f32], shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        assert_eq!(data.len(), n, "from_host_f32: {} values for shape {shape:?}", data.len());
        // Widening to f64 is exact; to f32 it changes nothing.
        let t = Tensor::from_slice(data, shape, &self.device).and_then(|t| t.to_dtype(self.dtype));
        ok(t, "from_host_f32", &[])
    }

    fn to_host(&self, t: &Tensor) -> Vec<f64> {
        ok(
            t.flatten_all().and_then(|f| f.to_dtype(DType::F64)).and_then(|f| f.to_vec1()),
            "to_host",
            &[t],
        )
    }

    fn shape(&self, t: &Tensor) -> Vec<usize> {
        t.dims().to_vec()
    }

    fn zeros(&self, shape: &[usize]) -> Tensor {
        ok(Tensor::zeros(shape, self.dtype, &self.device), "zeros", &[])
    }

    fn reshape(&self, t: &Tensor, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        assert_eq!(
            t.elem_count(),
            n,
            "reshape: {:?} has {} elements, not {n}",
            t.dims(),
            t.elem_count()
        );
        ok(t.reshape(shape), "reshape", &[t])
    }

    fn gemm(
        &self,
        alpha: f64,
        a: &Tensor,
        transpose_a: bool,
        b: &Tensor,
        transpose_b: bool,
        beta: f64,
        c: &mut Tensor,
    ) {
        let (ar, ac) = matrix_dims(a, "gemm: a");
        let (br, bc) = matrix_dims(b, "gemm: b");
        let (cr, cc) = matrix_dims(c, "gemm: c");
        let (m, k) = if transpose_a { (ac, ar) } else { (ar, ac) };
        let (k2, n) = if transpose_b { (bc, br) } else { (br, bc) };
        assert!(
            k == k2 && cr == m && cc == n,
            "gemm: cannot multiply {:?}{} by {:?}{} into {:?}",
            a.dims(),
            if transpose_a { "^T" } else { "" },
            b.dims(),
            if transpose_b { "^T" } else { "" },
            c.dims()
        );
        let op = "gemm";
        // Transposed operands are copied to a contiguous layout: candle's matmul kernels (CPU
        // gemm and cuBLAS) reject some strided layouts, notably with a dimension of size 1.
        let operand = |t: &Tensor, transpose: bool| {
            if transpose {
                ok(t.t().and_then(|t| t.contiguous()), op, &[t])
            } else {
                ok(t.contiguous(), op, &[t])
            }
        };
        let product = ok(operand(a, transpose_a).matmul(&operand(b, transpose_b)), op, &[a, b]);
        let product = self.scaled(alpha, &product, op);
        *c = if beta == 0.0 {
            product
        } else {
            let old = self.scaled(beta, c, op);
            ok(product.add(&old), op, &[a, b, c])
        };
    }

    fn axpby(&self, alpha: f64, x: &Tensor, beta: f64, y: &mut Tensor) {
        same_shape(x, y, "axpby");
        let ax = self.scaled(alpha, x, "axpby");
        *y = if beta == 0.0 {
            ax
        } else {
            let by = self.scaled(beta, y, "axpby");
            ok(ax.add(&by), "axpby", &[x, y])
        };
    }

    fn conv2d_into(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        bias: &Tensor,
        g: ConvGeometry,
        out: &mut Tensor,
    ) {
        let op = "conv2d";
        let y = ok(conv::forward(x, kernel, g), op, &[x, kernel]);
        let o = bias
            .dims1()
            .unwrap_or_else(|_| panic!("{op}: bias must be 1-D, got {:?}", bias.dims()));
        let y = ok(
            y.broadcast_add(&ok(bias.reshape((1, o, 1, 1)), op, &[bias])),
            op,
            &[x, kernel, bias],
        );
        assert_eq!(
            y.dims(),
            out.dims(),
            "{op}: output buffer of shape {:?} for a result of {:?}",
            out.dims(),
            y.dims()
        );
        *out = y;
    }

    fn conv2d_input_vjp(
        &self,
        e: &Tensor,
        kernel: &Tensor,
        g: ConvGeometry,
        alpha: f64,
        beta: f64,
        out: &mut Tensor,
    ) {
        let op = "conv2d_input_vjp";
        let (_, _, h, w) = ok(out.dims4(), op, &[out]);
        let dx = ok(conv::input_vjp(e, kernel, g, [h, w]), op, &[e, kernel]);
        assert_eq!(
            dx.dims(),
            out.dims(),
            "{op}: gradient {:?} and kernel {:?} do not fit input {:?}",
            e.dims(),
            kernel.dims(),
            out.dims()
        );
        let dx = self.scaled(alpha, &dx, op);
        *out = if beta == 0.0 { dx } else { ok(dx.add(&self.scaled(beta, out, op)), op, &[out]) };
    }

    fn conv2d_weight_grad_into(
        &self,
        e: &Tensor,
        x: &Tensor,
        g: ConvGeometry,
        scale: f64,
        out: &mut Tensor,
    ) {
        let op = "conv2d_weight_grad";
        let (o, c, kh, kw) = ok(out.dims4(), op, &[out]);
        let gk = ok(conv::weight_grad(e, x, [o, c, kh, kw], g), op, &[e, x]);
        *out = self.scaled(scale, &gk, op);
    }

    fn conv2d_grads_into(
        &self,
        e: &Tensor,
        x: &Tensor,
        g: ConvGeometry,
        scale: f64,
        weight: &mut Tensor,
        bias: &mut Tensor,
    ) {
        self.conv2d_weight_grad_into(e, x, g, scale, weight);
        self.sum_channels_into(scale, e, bias);
    }

    fn sum_channels_into(&self, scale: f64, e: &Tensor, out: &mut Tensor) {
        let op = "sum_channels";
        let (b, c, h, w) = ok(e.dims4(), op, &[e]);
        // Each plane summed along its contiguous row, then the batch: on CUDA, one reduction
        // over the dims (0, 2, 3) at once took a millisecond at batch 1024.
        let s = ok(e.reshape((b, c, h * w)).and_then(|t| t.sum(2)?.sum(0)), op, &[e]);
        assert_eq!(
            s.dims(),
            out.dims(),
            "{op}: output of shape {:?} for {:?}",
            out.dims(),
            e.dims()
        );
        *out = self.scaled(scale, &s, op);
    }

    fn mul_into(&self, a: &Tensor, b: &Tensor, out: &mut Tensor) {
        same_shape(a, b, "mul");
        same_shape(a, out, "mul (output)");
        *out = ok(a.mul(b), "mul", &[a, b]);
    }

    fn add_row(&self, x: &mut Tensor, row: &Tensor) {
        let (_, cols) = matrix_dims(x, "add_row: x");
        assert!(
            row.dims() == [cols],
            "add_row: row of shape {:?} does not fit rows of {:?}",
            row.dims(),
            x.dims()
        );
        *x = ok(x.broadcast_add(row), "add_row", &[x, row]);
    }

    fn sum_rows_into(&self, scale: f64, x: &Tensor, out: &mut Tensor) {
        let (_, cols) = matrix_dims(x, "sum_rows: x");
        assert!(
            out.dims() == [cols],
            "sum_rows: output of shape {:?} for input {:?}",
            out.dims(),
            x.dims()
        );
        let sum = ok(x.sum(0), "sum_rows", &[x]);
        *out = self.scaled(scale, &sum, "sum_rows");
    }

    fn activate_into(&self, f: Activation, a: &Tensor, out: &mut Tensor) {
        same_shape(a, out, "activate");
        let op = "activate";
        *out = match f {
            Activation::Identity => a.clone(),
            Activation::Relu => ok(a.relu(), op, &[a]),
            Activation::LeakyRelu => {
                let leak = ok(a.affine(leaky_relu_slope(), 0.0), op, &[a]);
                ok(a.gt(0.0).and_then(|m| m.where_cond(a, &leak)), op, &[a])
            }
            Activation::Tanh => ok(a.tanh(), op, &[a]),
            Activation::Sigmoid => self.sigmoid(a),
            // ln(1 + e^a) = max(a, 0) + ln(1 + e^-|a|), which never overflows.
            Activation::Softplus => {
                let e = ok(a.abs().and_then(|m| m.neg()).and_then(|m| m.exp()), op, &[a]);
                ok(a.relu().and_then(|r| r.add(&self.log1p(&e))), op, &[a])
            }
        };
    }

    fn activate_derivative_into(&self, f: Activation, a: &Tensor, out: &mut Tensor) {
        same_shape(a, out, "activate_derivative");
        let op = "activate_derivative";
        *out = match f {
            Activation::Identity => ok(a.ones_like(), op, &[a]),
            // f'(0) = 0: the mask is a > 0.
            Activation::Relu => self.cast_out(ok(a.gt(0.0), op, &[a]), op),
            // f'(0) = 0.01.
            Activation::LeakyRelu => {
                let one = ok(a.ones_like(), op, &[a]);
                let slope = self.full_like(a, leaky_relu_slope(), op);
                ok(a.gt(0.0).and_then(|m| m.where_cond(&one, &slope)), op, &[a])
            }
            // 1 - tanh(a)^2 as 4 e / (1 + e)^2, e = exp(-2 |a|): accurate near saturation.
            Activation::Tanh => {
                let e =
                    ok(a.abs().and_then(|m| m.affine(-2.0, 0.0)).and_then(|m| m.exp()), op, &[a]);
                ok(e.affine(1.0, 1.0).and_then(|d| e.affine(4.0, 0.0)?.div(&d.sqr()?)), op, &[a])
            }
            // s (1 - s).
            Activation::Sigmoid => {
                let s = self.sigmoid(a);
                ok(s.affine(-1.0, 1.0).and_then(|r| s.mul(&r)), op, &[a])
            }
            // d/da ln(1 + e^a) = sigmoid(a).
            Activation::Softplus => self.sigmoid(a),
        };
    }

    fn softmax_rows(&self, x: &Tensor) -> Tensor {
        matrix_dims(x, "softmax_rows");
        let op = "softmax_rows";
        let max = ok(x.max_keepdim(1), op, &[x]);
        let e = ok(x.broadcast_sub(&max).and_then(|d| d.exp()), op, &[x]);
        let sum = ok(e.sum_keepdim(1), op, &[x]);
        ok(e.broadcast_div(&sum), op, &[x])
    }

    fn argmax_rows(&self, x: &Tensor) -> Vec<usize> {
        // On the host, so that ties and NaNs resolve exactly as in the reference backend.
        let (rows, cols) = matrix_dims(x, "argmax_rows");
        let host = self.to_host(x);
        (0..rows)
            .map(|r| {
                let row = &host[r * cols..(r + 1) * cols];
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

    fn precision(&self) -> Precision {
        if self.dtype == DType::F64 {
            Precision::F64
        } else {
            Precision::F32
        }
    }

    // Pooling runs on the tensors' device (see `pooling`); the argmax is a `u32` tensor.
    fn max_pool2d(&self, x: &Tensor, pool: PoolGeometry) -> (Tensor, Tensor) {
        pool::nchw(x.dims(), "max_pool2d input");
        ok(pooling::max_pool2d(x, pool), "max_pool2d", &[x])
    }

    fn max_pool2d_vjp(
        &self,
        e: &Tensor,
        argmax: &Tensor,
        pool: PoolGeometry,
        alpha: f64,
        beta: f64,
        out: &mut Tensor,
    ) {
        let dims = pool::nchw(out.dims(), "max_pool2d input gradient");
        let op = "max_pool2d_vjp";
        assert_eq!(e.dims(), argmax.dims(), "{op}: gradient and argmax differ in shape");
        let unpooled = ok(pooling::max_pool2d_vjp(e, argmax, dims, pool), op, &[e, argmax]);
        self.axpby(alpha, &unpooled, beta, out);
    }

    fn avg_pool2d(&self, x: &Tensor, pool: PoolGeometry) -> Tensor {
        pool::nchw(x.dims(), "avg_pool2d input");
        ok(pooling::avg_pool2d(x, pool), "avg_pool2d", &[x])
    }

    fn avg_pool2d_vjp(
        &self,
        e: &Tensor,
        pool: PoolGeometry,
        alpha: f64,
        beta: f64,
        out: &mut Tensor,
    ) {
        let dims = pool::nchw(out.dims(), "avg_pool2d input gradient");
        let op = "avg_pool2d_vjp";
        let expected = pool::output_dims(dims, pool);
        assert_eq!(e.dims(), expected, "{op}: gradient shape for an input of {dims:?}");
        let spread = ok(pooling::avg_pool2d_vjp(e, dims, pool), op, &[e]);
        self.axpby(alpha / (pool.kernel * pool.kernel) as f64, &spread, beta, out);
    }

    /// On the device: `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
    /// `param <- param - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
    fn adam_step(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        hyper: AdamStep,
    ) {
        same_shape(param, grad, "adam_step");
        same_shape(param, m, "adam_step (first moment)");
        same_shape(param, v, "adam_step (second moment)");
        let op = "adam_step";
        let t = i32::try_from(hyper.t).unwrap_or(i32::MAX);
        let (c1, c2) = (1.0 - hyper.beta1.powi(t), 1.0 - hyper.beta2.powi(t));
        let new_m = ok(
            m.affine(hyper.beta1, 0.0).and_then(|a| a.add(&grad.affine(1.0 - hyper.beta1, 0.0)?)),
            op,
            &[m, grad],
        );
        let new_v = ok(
            v.affine(hyper.beta2, 0.0)
                .and_then(|a| a.add(&grad.affine(1.0 - hyper.beta2, 0.0)?.mul(grad)?)),
            op,
            &[v, grad],
        );
        let step = ok(
            (&new_m / c1).and_then(|m_hat| {
                let denominator = (&new_v / c2)?.sqrt()?.affine(1.0, hyper.eps)?;
                m_hat.div(&denominator)?.affine(hyper.lr, 0.0)
            }),
            op,
            &[param],
        );
        *param = ok(param.sub(&step), op, &[param]);
        *m = new_m;
        *v = new_v;
    }

    fn dot(&self, a: &Tensor, b: &Tensor) -> f64 {
        same_shape(a, b, "dot");
        let op = "dot";
        let wide = |t: &Tensor| ok(t.to_dtype(DType::F64), op, &[t]);
        ok(
            wide(a).mul(&wide(b)).and_then(|p| p.sum_all()).and_then(|s| s.to_scalar::<f64>()),
            op,
            &[a, b],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ar_backend::BackendExt;

    #[test]
    fn names_say_device_and_precision() {
        assert_eq!(Candle::cpu(Precision::F32).name(), "candle-cpu-f32");
        assert_eq!(Candle::cpu(Precision::F64).name(), "candle-cpu-f64");
    }

    ar_backend::backend_tests!(Candle::cpu(Precision::F64));

    /// The kinks and the tails, with the calculus in the comments.
    #[test]
    fn activation_golden_values() {
        let be = Candle::cpu(Precision::F64);
        let a = be.from_host(&[0.0, -1000.0, 1000.0, -40.0], &[4]);
        let value = |f| be.to_host(&be.activate(f, &a));
        let slope = |f| be.to_host(&be.activate_derivative(f, &a));
        // relu'(0) = 0 (PyTorch), leaky-relu'(0) = 0.01.
        assert_eq!(slope(Activation::Relu), vec![0.0, 0.0, 1.0, 0.0]);
        assert_eq!(slope(Activation::LeakyRelu), vec![0.01, 0.01, 1.0, 0.01]);
        // sigmoid(-1000) = 0 and sigmoid(1000) = 1 without overflow; sigmoid(0) = 1/2.
        assert_eq!(value(Activation::Sigmoid)[..3], [0.5, 0.0, 1.0]);
        // softplus(0) = ln 2, softplus(1000) = 1000, softplus(-40) = ln(1 + e^-40) ~ e^-40.
        let s = value(Activation::Softplus);
        assert!((s[0] - 2f64.ln()).abs() < 1e-16 && s[1] == 0.0 && s[2] == 1000.0, "{s:?}");
        assert!((s[3] / (-40f64).exp().ln_1p() - 1.0).abs() < 1e-15, "{}", s[3]);
    }

    /// The f32 backend takes f32 host values as they are (backend_tests! runs the f64 one).
    #[test]
    fn f32_backend_uploads_f32_values_unchanged() {
        ar_backend::testing::f32_uploads_equal_their_f64_widening(Candle::cpu(Precision::F32));
    }

    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        if CUDA_COMPILED {
            return;
        }
        let err = Candle::cuda(0, Precision::F32).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not compiled in") && msg.contains("cargo xtask-cuda"), "{msg}");
        assert!(msg.contains("scripts/build-cuda.sh"), "{msg}");
    }
}
