//! Convolution kernels on `[batch, channels, height, width]` arrays, one sample at a time on
//! rayon's pool: a sample's im2col columns (in a per-thread scratch buffer, small enough to stay
//! in cache), each kernel tap's row one contiguous copy from the padded input split into
//! `stride x stride` phase planes, and one GEMM for the convolution; a GEMM and col2im for its
//! input VJP (the transposed convolution), or at stride 1 with enough channels a forward
//! convolution with the kernel turned; and its weight gradient summed over fixed blocks of
//! samples, added in a fixed pairwise order, so no value depends on the number of threads.

use crate::gemm::kernel as sequential_matmul;
use crate::Scalar;
use ar_backend::ConvGeometry;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, Ix2, ShapeBuilder};
use rayon::prelude::*;

/// Samples whose weight-gradient terms are summed in order into one partial sum; the partial
/// sums are then added pairwise. Fixed, so that the sum's rounding never depends on threads.
const GRAD_BLOCK: usize = 8;

/// The fewest input channels for which a stride-1 input VJP runs as a forward convolution
/// with the kernel turned: its product then has one row per channel, and with fewer the GEMM
/// kernels' tiles run mostly empty (the transposed form then measured faster,
/// docs/performance.md).
const MIN_PRODUCT_ROWS: usize = 16;

/// The most output channels for which a weight gradient runs as one product per kernel tap
/// on the phase planes ([`tap_products`]): with so few rows the product of the im2col columns
/// ran at half the GEMM kernels' speed, while with more the per-tap products' `c` columns are
/// the narrower side (docs/performance.md).
const MAX_SHIFTED_ROWS: usize = 16;

/// The four sizes of an NCHW array, checked.
pub(crate) fn dims4<F>(t: &ArrayViewD<'_, F>, what: &str) -> [usize; 4] {
    let s = t.shape();
    assert_eq!(s.len(), 4, "{what} must be 4-D [batch, channels, height, width], got shape {s:?}");
    [s[0], s[1], s[2], s[3]]
}

fn out_len(g: &ConvGeometry, input: usize, kernel: usize, what: &str) -> usize {
    g.output_len(input, kernel).unwrap_or_else(|| {
        panic!("{what}: a kernel of {kernel} does not fit {input} pixels with {g}")
    })
}

/// The output columns `lo..hi` whose input column `ox stride + j - padding` lies inside `0..w`
/// (`lo == hi` when there is none): the span im2col copies and col2im adds, with no test per
/// element.
#[inline]
fn column_span(j: usize, stride: usize, padding: usize, w: usize, ow: usize) -> (usize, usize) {
    let lo = padding.saturating_sub(j).div_ceil(stride).min(ow);
    let hi = match (w + padding).checked_sub(j + 1) {
        Some(last) => (last / stride + 1).min(ow).max(lo),
        None => lo,
    };
    (lo, hi)
}

/// One convolution's sizes: input `[c, h, w]` per sample, kernel `kh x kw`, output `oh x ow`.
#[derive(Clone, Copy)]
struct Shape {
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: usize,
    padding: usize,
}

impl Shape {
    fn new(input: [usize; 3], kh: usize, kw: usize, g: &ConvGeometry) -> Self {
        let [c, h, w] = input;
        let (oh, ow) = (out_len(g, h, kh, "conv2d"), out_len(g, w, kw, "conv2d"));
        Shape { c, h, w, kh, kw, oh, ow, stride: g.stride, padding: g.padding }
    }

    /// Values of one sample's input.
    fn input_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Rows of the im2col matrix (`c kh kw`).
    fn taps(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output positions of one channel (`oh ow`).
    fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// The rows of the im2col matrix have the width [`Shape::wq`] of a phase plane of the
    /// padded input: `oh wq` columns per channel, output `(oy, ox)` at column `oy wq + ox`, the
    /// columns `ox >= ow` belonging to no output. The padded input is split into `s x s` phase
    /// planes per channel, phase `(a, b)` holding the values at rows `s y + a` and columns
    /// `s x + b` ([`Shape::phased_input`]; with stride 1 the padded input itself), so that
    /// kernel tap `(i, j)` reads phase `(i mod s, j mod s)` from row `i / s` and column `j / s`
    /// on: its columns are one contiguous run of a phase plane, and col2im one contiguous
    /// addition per tap.
    fn wq(&self) -> usize {
        (self.w + 2 * self.padding).div_ceil(self.stride)
    }

    /// Rows of a phase plane, `ceil((h + 2 p) / s)`.
    fn hq(&self) -> usize {
        (self.h + 2 * self.padding).div_ceil(self.stride)
    }

    /// Values of one channel's phase planes, `s^2 hq wq` (stride 1: the padded plane).
    fn channel_len(&self) -> usize {
        self.stride * self.stride * self.hq() * self.wq()
    }

    /// Values of one sample's phase planes (0 at stride 1 without padding, where the input
    /// itself serves).
    fn phased_len(&self) -> usize {
        if self.stride == 1 && self.padding == 0 {
            0
        } else {
            self.c * self.channel_len()
        }
    }

    /// Columns per channel of the im2col matrix, `oh wq`.
    fn width(&self) -> usize {
        self.oh * self.wq()
    }

    /// Where tap `(c, i, j)`'s run of columns starts in the phase planes.
    #[inline]
    fn tap_offset(&self, c: usize, i: usize, j: usize) -> usize {
        let (s, wq) = (self.stride, self.wq());
        c * self.channel_len() + ((i % s) * s + j % s) * self.hq() * wq + (i / s) * wq + j / s
    }

    /// The length of a tap's run, `(oh - 1) wq + ow` (the last output row's columns `ox >= ow`
    /// left out).
    fn run(&self) -> usize {
        (self.oh - 1) * self.wq() + self.ow
    }

    /// One sample's columns into the first [`Shape::width`] values of each run of `row` in
    /// `cols`; `phased` holds [`Shape::phased_len`] values of scratch.
    fn columns<F: Scalar>(&self, x: &[F], phased: &mut [F], cols: &mut [F], row: usize) {
        let x = self.phased_input(x, phased);
        let run = self.run();
        for (r, dst) in cols.chunks_mut(row).take(self.taps()).enumerate() {
            let (c, i, j) = (r / (self.kh * self.kw), r / self.kw % self.kh, r % self.kw);
            dst[..run].copy_from_slice(&x[self.tap_offset(c, i, j)..][..run]);
            dst[run..self.width()].fill(F::zero());
        }
    }

    /// One sample's input as phase planes ([`Shape::wq`]) in `phased` ([`Shape::phased_len`]
    /// values; the planes no tap reads left as they were), or `x` itself at stride 1 without
    /// padding.
    fn phased_input<'a, F: Scalar>(&self, x: &'a [F], phased: &'a mut [F]) -> &'a [F] {
        if self.phased_len() == 0 {
            return x;
        }
        let (s, p, wq) = (self.stride, self.padding, self.wq());
        for (c, planes) in phased.chunks_exact_mut(self.channel_len()).enumerate() {
            let input = &x[c * self.h * self.w..][..self.h * self.w];
            for (phase, plane) in planes.chunks_exact_mut(self.hq() * wq).enumerate() {
                let (a, b) = (phase / s, phase % s);
                if a >= self.kh || b >= self.kw {
                    continue; // read by no tap (a kernel smaller than the stride)
                }
                plane.fill(F::zero());
                let (lo, hi) = column_span(b, s, p, self.w, wq);
                if lo == hi {
                    continue;
                }
                for (y, dst) in plane.chunks_exact_mut(wq).enumerate() {
                    let Some(iy) = (s * y + a).checked_sub(p).filter(|&iy| iy < self.h) else {
                        continue;
                    };
                    let src = &input[iy * self.w + lo * s + b - p..];
                    gather_strided(&mut dst[lo..hi], src, s);
                }
            }
        }
        phased
    }

    /// Adds phase planes (as [`Shape::phased_input`] lays them out) onto the input-shaped
    /// `out` `[c, h, w]`: each input value receives the one phase value it was copied to.
    fn add_unphased<F: Scalar>(&self, phased: &[F], out: &mut [F]) {
        let (s, p, wq) = (self.stride, self.padding, self.wq());
        for (c, planes) in phased.chunks_exact(self.channel_len()).enumerate() {
            let dst = &mut out[c * self.h * self.w..][..self.h * self.w];
            for (phase, plane) in planes.chunks_exact(self.hq() * wq).enumerate() {
                let (a, b) = (phase / s, phase % s);
                let (lo, hi) = column_span(b, s, p, self.w, wq);
                if lo == hi {
                    continue;
                }
                for (y, src) in plane.chunks_exact(wq).enumerate() {
                    let Some(iy) = (s * y + a).checked_sub(p).filter(|&iy| iy < self.h) else {
                        continue;
                    };
                    scatter_add_strided(&mut dst[iy * self.w + lo * s + b - p..], &src[lo..hi], s);
                }
            }
        }
    }

    /// `[channels, oh, ow]` values `e` in the layout [`Shape::width`] says (each row followed
    /// by `wq - ow` zeros), in `scratch`.
    fn output_rows<'a, F: Scalar>(&self, e: &'a [F], scratch: &'a mut [F]) -> &'a [F] {
        for (dst, src) in scratch.chunks_exact_mut(self.wq()).zip(e.chunks_exact(self.ow)) {
            dst[..self.ow].copy_from_slice(src);
            dst[self.ow..].fill(F::zero());
        }
        scratch
    }
}

/// `dst[k] = src[k stride]`, with strides 1 and 2 as their own loops (a constant stride
/// compiles to vector shuffles; `step_by` with a run-time stride copies one value at a time).
#[inline(always)]
fn gather_strided<F: Scalar>(dst: &mut [F], src: &[F], stride: usize) {
    if stride == 1 {
        return dst.copy_from_slice(&src[..dst.len()]);
    }
    if stride == 2 {
        for (d, pair) in dst.iter_mut().zip(src.chunks_exact(2)) {
            *d = pair[0];
        }
        if let Some(last) = dst.len().checked_sub(1).filter(|&l| src.len() < 2 * (l + 1)) {
            dst[last] = src[2 * last];
        }
        return;
    }
    for (d, &v) in dst.iter_mut().zip(src.iter().step_by(stride)) {
        *d = v;
    }
}

/// `dst[k stride] += src[k]`, strides 1 and 2 as their own loops (see [`gather_strided`]).
#[inline(always)]
fn scatter_add_strided<F: Scalar>(dst: &mut [F], src: &[F], stride: usize) {
    if stride == 1 {
        return add_assign(&mut dst[..src.len()], src);
    }
    if stride == 2 {
        for (pair, &v) in dst.chunks_exact_mut(2).zip(src) {
            pair[0] = pair[0] + v;
        }
        if let Some(last) = src.len().checked_sub(1).filter(|&l| dst.len() < 2 * (l + 1)) {
            dst[2 * last] = dst[2 * last] + src[last];
        }
        return;
    }
    for (d, &v) in dst.iter_mut().step_by(stride).zip(src) {
        *d = *d + v;
    }
}

/// `dst[k] += src[k]`, in blocks of 8 that compile to vector additions (rows here are short,
/// 10 to 30 values, where the compiler's own vectorisation of a plain loop does not pay).
#[inline(always)]
fn add_assign<F: Scalar>(dst: &mut [F], src: &[F]) {
    assert_eq!(dst.len(), src.len());
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        for k in 0..8 {
            d[k] = d[k] + s[k];
        }
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *d + s;
    }
}

fn kernel_matrix<'a, F: Scalar>(kernel: &'a ArrayD<F>) -> (ArrayView2<'a, F>, [usize; 4]) {
    let [o, c, kh, kw] = dims4(&kernel.view(), "conv2d kernel");
    let m = kernel
        .view()
        .into_shape_with_order((o, c * kh * kw))
        .expect("a standard-layout kernel reshapes")
        .into_dimensionality::<Ix2>()
        .expect("2-D");
    (m, [o, c, kh, kw])
}

fn matrix<F>(values: &[F], rows: usize, cols: usize) -> ArrayView2<'_, F> {
    ArrayView2::from_shape((rows, cols), values).expect("rows x cols values")
}

fn matrix_mut<F>(values: &mut [F], rows: usize, cols: usize) -> ArrayViewMut2<'_, F> {
    ArrayViewMut2::from_shape((rows, cols), values).expect("rows x cols values")
}

/// `out <- conv(x, kernel) + bias`, `x` `[batch, c, h, w]`, kernel `[o, c, kh, kw]`.
pub(crate) fn conv2d<F: Scalar>(
    x: &ArrayD<F>,
    kernel: &ArrayD<F>,
    bias: &ArrayD<F>,
    g: &ConvGeometry,
    out: &mut ArrayD<F>,
) {
    let (km, [o, c, kh, kw]) = kernel_matrix(kernel);
    let [batch, xc, h, w] = dims4(&x.view(), "conv2d input");
    assert_eq!(xc, c, "conv2d: input has {xc} channels, kernel expects {c}");
    assert_eq!(
        bias.shape(),
        [o],
        "conv2d: bias of shape {:?} for {o} output channels",
        bias.shape()
    );
    let s = Shape::new([c, h, w], kh, kw, g);
    assert_eq!(
        out.shape(),
        [batch, o, s.oh, s.ow],
        "conv2d: output buffer of shape {:?}",
        out.shape()
    );
    let x = x.as_standard_layout();
    let bias = bias.as_standard_layout();
    let bias = bias.as_slice().expect("standard layout");
    let os = out.as_slice_mut().expect("standard layout");
    convolve(x.as_slice().expect("standard layout"), km, F::one(), &s, os, |ch, d, src| {
        for (d, &v) in d.iter_mut().zip(src) {
            *d = v + bias[ch];
        }
    });
}

/// For each sample of `xs` (`[batch, s.c, s.h, s.w]` values), the convolution `alpha km cols`
/// (`km` `[o, s.taps()]`), each output row handed to `emit(channel, row of out, row of the
/// product)` (`s.ow` values each) to write into `out` (`[batch, o, s.oh, s.ow]` values).
fn convolve<F: Scalar>(
    xs: &[F],
    km: ArrayView2<'_, F>,
    alpha: F,
    s: &Shape,
    out: &mut [F],
    emit: impl Fn(usize, &mut [F], &[F]) + Sync,
) {
    let (o, p, width) = (km.nrows(), s.positions(), s.width());
    out.par_chunks_mut(o * p).zip(xs.par_chunks(s.input_len())).for_each(|(out_b, x_b)| {
        F::with_scratch((s.taps() + o) * width + s.phased_len(), |scratch| {
            let (cols, rest) = scratch.split_at_mut(s.taps() * width);
            let (product, phased) = rest.split_at_mut(o * width);
            s.columns(x_b, phased, cols, width);
            let cols = matrix(cols, s.taps(), width);
            sequential_matmul(alpha, km, cols, F::zero(), matrix_mut(product, o, width));
            // The `ow` first columns of each row of `wq`.
            let row = s.wq();
            for ch in 0..o {
                let (dst, src) = (&mut out_b[ch * p..][..p], &product[ch * width..][..width]);
                for (d, src) in dst.chunks_exact_mut(s.ow).zip(src.chunks_exact(row)) {
                    emit(ch, d, &src[..s.ow]);
                }
            }
        })
    });
}

/// The kernel `[o, c, kh, kw]` turned for the input VJP of a stride-1 convolution, as the
/// matrix `[c, o kh kw]` of `k'[c, o, i, j] = k[o, c, kh - 1 - i, kw - 1 - j]`.
fn turned_kernel<F: Scalar>(kernel: &ArrayD<F>) -> Array2<F> {
    let [o, c, kh, kw] = dims4(&kernel.view(), "conv2d kernel");
    let kernel = kernel.as_standard_layout();
    let values = kernel.as_slice().expect("standard layout");
    // For each (c, o), the kernel's `kh kw` taps in reverse order.
    let taps = kh * kw;
    let mut turned = Vec::with_capacity(values.len());
    for ch in 0..c {
        for oc in 0..o {
            turned.extend(values[(oc * c + ch) * taps..][..taps].iter().rev());
        }
    }
    Array2::from_shape_vec((c, o * taps), turned).expect("c x (o kh kw) values")
}

/// `out <- alpha * conv^T(e, kernel) + beta * out`: the input VJP of a convolution, `e`
/// `[batch, o, oh, ow]`, kernel `[o, c, kh, kw]`, `out` `[batch, c, h, w]`.
pub(crate) fn conv2d_input_vjp<F: Scalar>(
    e: &ArrayD<F>,
    kernel: &ArrayD<F>,
    g: &ConvGeometry,
    alpha: F,
    beta: F,
    out: &mut ArrayD<F>,
) {
    let (km, [o, c, kh, kw]) = kernel_matrix(kernel);
    let [batch, eo, oh, ow] = dims4(&e.view(), "conv2d output gradient");
    let [ob, oc, h, w] = dims4(&out.view(), "conv2d input gradient");
    assert!(
        eo == o
            && ob == batch
            && oc == c
            && g.output_len(h, kh) == Some(oh)
            && g.output_len(w, kw) == Some(ow),
        "conv2d_input_vjp: gradient {:?}, kernel {:?} and input {:?} do not fit {g:?}",
        e.shape(),
        kernel.shape(),
        out.shape()
    );
    let e = e.as_standard_layout();
    let es = e.as_slice().expect("standard layout");
    let os = out.as_slice_mut().expect("standard layout");
    if g.stride == 1 && g.padding < kh && kh == kw && c >= MIN_PRODUCT_ROWS {
        // A forward convolution of `e`, padded by `k - 1 - p`, with the kernel turned: no
        // col2im, and a product no larger than the forward's (docs/performance.md).
        let turned = ConvGeometry { stride: 1, padding: kh - 1 - g.padding };
        let s = Shape::new([o, oh, ow], kh, kw, &turned);
        let km = turned_kernel(kernel);
        return convolve(es, km.view(), alpha, &s, os, |_, d, src| {
            if beta == F::zero() {
                d.copy_from_slice(src);
            } else {
                for (d, &v) in d.iter_mut().zip(src) {
                    *d = v + beta * *d;
                }
            }
        });
    }
    let s = Shape::new([c, h, w], kh, kw, g);
    let p = s.positions();
    let scale = |out_b: &mut [F]| {
        if beta == F::zero() {
            out_b.fill(F::zero());
        } else if beta != F::one() {
            out_b.iter_mut().for_each(|v| *v = *v * beta);
        }
    };
    let width = s.width();
    os.par_chunks_mut(s.input_len()).zip(es.par_chunks(o * p)).for_each(|(out_b, e_b)| {
        F::with_scratch((o + s.taps()) * width + s.phased_len(), |scratch| {
            let (e_rows, rest) = scratch.split_at_mut(o * width);
            let (dcols, phased) = rest.split_at_mut(s.taps() * width);
            let e_b = matrix(s.output_rows(e_b, e_rows), o, width);
            sequential_matmul(alpha, km.t(), e_b, F::zero(), matrix_mut(dcols, s.taps(), width));
            scale(out_b);
            if s.phased_len() == 0 {
                col2im_add_wide(dcols, &s, out_b);
            } else {
                // Into the phase planes, then each input value's one onto the input.
                phased.fill(F::zero());
                col2im_add_wide(dcols, &s, phased);
                s.add_unphased(phased, out_b);
            }
        })
    });
}

/// Adds one sample's columns (laid out as [`Shape::columns`] makes them, the columns
/// `ox >= ow` zero) into its phase planes `out` ([`Shape::phased_input`]'s layout; the input's
/// own at stride 1 without padding): tap `(c, i, j)` adds one contiguous run at
/// [`Shape::tap_offset`] (a zero column lands on the next row's first values and adds
/// nothing), long enough to vectorise well. Each value receives its terms in the order of the
/// kernel taps.
fn col2im_add_wide<F: Scalar>(cols: &[F], s: &Shape, out: &mut [F]) {
    let run = s.run();
    for (r, row) in cols.chunks_exact(s.width()).enumerate() {
        let (c, i, j) = (r / (s.kh * s.kw), r / s.kw % s.kh, r % s.kw);
        add_assign(&mut out[s.tap_offset(c, i, j)..][..run], &row[..run]);
    }
}

/// `out <- scale * sum_b conv_weight_grad(e_b, x_b)`: `out[o, c, i, j] = scale * sum_{b, y, x}
/// e[b, o, y, x] x[b, c, y s + i - p, x s + j - p]`, and with `bias` its gradient
/// `bias[o] = scale * sum_{b, y, x} e[b, o, y, x]`, summed while each sample's `e` is read. Each
/// block of [`GRAD_BLOCK`] samples sums its terms in sample order (the bias in
/// [`SUM_LANES`] lanes); the blocks' sums are added pairwise in a fixed tree.
pub(crate) fn conv2d_weight_grad<F: Scalar>(
    e: &ArrayD<F>,
    x: &ArrayD<F>,
    g: &ConvGeometry,
    scale: F,
    out: &mut ArrayD<F>,
    bias: Option<&mut ArrayD<F>>,
) {
    let [o, c, kh, kw] = dims4(&out.view(), "conv2d kernel gradient");
    let [batch, xc, h, w] = dims4(&x.view(), "conv2d input");
    assert_eq!(xc, c, "conv2d_weight_grad: input has {xc} channels, kernel {c}");
    let s = Shape::new([c, h, w], kh, kw, g);
    let p = s.positions();
    assert_eq!(
        e.shape(),
        [batch, o, s.oh, s.ow],
        "conv2d_weight_grad: gradient {:?} does not fit input {:?}",
        e.shape(),
        x.shape()
    );
    let (x, e) = (x.as_standard_layout(), e.as_standard_layout());
    let (xs, es) = (x.as_slice().expect("standard layout"), e.as_slice().expect("standard layout"));
    let shifted = o <= MAX_SHIFTED_ROWS;
    let width = s.width();
    let blocks: Vec<(Array2<F>, Array2<F>)> = xs
        .par_chunks(GRAD_BLOCK * s.input_len())
        .zip(es.par_chunks(GRAD_BLOCK * o * p))
        .map(|(x_block, e_block)| {
            // Per tap `[o, taps]`; else kept transposed, `[taps, o]`: the product's output is
            // then column-major, the layout the GEMM kernels compute in, so that they need
            // not transpose the columns while packing them.
            let mut sum = if shifted {
                Array2::<F>::zeros((o, s.taps()))
            } else {
                Array2::<F>::zeros((s.taps(), o))
            };
            let mut lanes = vec![[F::zero(); SUM_LANES]; if bias.is_some() { o } else { 0 }];
            let columns = if shifted { 0 } else { s.taps() * width };
            F::with_scratch(columns + o * width + s.phased_len(), |scratch| {
                let (cols, rest) = scratch.split_at_mut(columns);
                let (e_rows, phased) = rest.split_at_mut(o * width);
                for (x_b, e_b) in
                    x_block.chunks_exact(s.input_len()).zip(e_block.chunks_exact(o * p))
                {
                    for (lanes, plane) in lanes.iter_mut().zip(e_b.chunks_exact(p)) {
                        add_lanes(lanes, plane);
                    }
                    // The zero columns of e meet the columns of no output.
                    let e_b = matrix(s.output_rows(e_b, e_rows), o, width);
                    if shifted {
                        tap_products(e_b, s.phased_input(x_b, phased), &s, sum.view_mut());
                        continue;
                    }
                    s.columns(x_b, phased, cols, width);
                    let cols = matrix(cols, s.taps(), width);
                    let sum = sum.view_mut().reversed_axes();
                    sequential_matmul(F::one(), e_b, cols.t(), F::one(), sum);
                }
            });
            let bias_sum = Array2::from_shape_fn((1, lanes.len()), |(_, ch)| sum_lanes(lanes[ch]));
            (sum, bias_sum)
        })
        .collect();
    let (blocks, bias_blocks): (Vec<_>, Vec<_>) = blocks.into_iter().unzip();
    if let Some(bias) = bias {
        assert_eq!(bias.shape(), [o], "conv2d bias gradient of shape {:?}", bias.shape());
        match pairwise_sum(bias_blocks) {
            Some(sums) => bias.iter_mut().zip(sums).for_each(|(b, v)| *b = scale * v),
            None => bias.fill(F::zero()),
        }
    }
    let Some(sum) = pairwise_sum(blocks) else {
        return out.fill(F::zero());
    };
    let sum = if shifted { sum } else { sum.reversed_axes() };
    let mut m = out.view_mut().into_shape_with_order((o, s.taps())).expect("standard layout");
    m.zip_mut_with(&sum, |m, &v| *m = scale * v);
}

/// `sum[o, (c, i, j)] += sum_q e[o, q] xq[tap_offset(c, i, j) + q]`: one sample's
/// weight-gradient terms as one product per kernel tap, each reading the phase planes `xq`
/// ([`Shape::phased_input`]) where they lie (a tap's columns of the im2col matrix are a run of
/// one phase plane per channel, a fixed distance apart, so no columns are built). `e` is
/// `[o, s.width()]` in [`Shape::output_rows`]'s layout; the reduction stops at the last output,
/// [`Shape::run`], and the positions it spans between rows (`ox >= ow`) have `e = 0`.
fn tap_products<F: Scalar>(
    e: ArrayView2<'_, F>,
    xq: &[F],
    s: &Shape,
    mut sum: ArrayViewMut2<'_, F>,
) {
    let (taps, run) = (s.kh * s.kw, s.run());
    let e = e.slice(ndarray::s![.., ..run]);
    for t in 0..taps {
        let (i, j) = (t / s.kw, t % s.kw);
        let x = ArrayView2::from_shape(
            (run, s.c).strides((1, s.channel_len())),
            &xq[s.tap_offset(0, i, j)..],
        )
        .expect("a tap's run lies inside its phase plane");
        let dst = sum.slice_mut(ndarray::s![.., t..;taps]);
        sequential_matmul(F::one(), e, x, F::one(), dst);
    }
}

/// The sum of `terms`, added in adjacent pairs level by level (`None` when empty).
fn pairwise_sum<F: Scalar>(mut terms: Vec<Array2<F>>) -> Option<Array2<F>> {
    while terms.len() > 1 {
        let mut next = Vec::with_capacity(terms.len().div_ceil(2));
        let mut it = terms.into_iter();
        while let Some(mut a) = it.next() {
            if let Some(b) = it.next() {
                a.zip_mut_with(&b, |a, &b| *a = *a + b);
            }
            next.push(a);
        }
        terms = next;
    }
    terms.pop()
}

/// Partial sums per channel in [`sum_channels`]: the `k`-th value of each run of `SUM_LANES`
/// in a plane adds into lane `k`, and the lanes are then added pairwise. The order depends on
/// the shape alone, and the lanes' additions compile to vector instructions (one running sum
/// waits on each addition's latency).
const SUM_LANES: usize = 16;

/// Adds `values` into `lanes`: the `k`-th value of each run of [`SUM_LANES`] into lane `k`.
#[inline(always)]
fn add_lanes<F: Scalar>(lanes: &mut [F; SUM_LANES], values: &[F]) {
    let mut runs = values.chunks_exact(SUM_LANES);
    for run in &mut runs {
        for k in 0..SUM_LANES {
            lanes[k] = lanes[k] + run[k];
        }
    }
    for (k, &v) in runs.remainder().iter().enumerate() {
        lanes[k] = lanes[k] + v;
    }
}

/// The lanes' total, added pairwise.
fn sum_lanes<F: Scalar>(mut lanes: [F; SUM_LANES]) -> F {
    let mut n = SUM_LANES;
    while n > 1 {
        n /= 2;
        for k in 0..n {
            lanes[k] = lanes[k] + lanes[k + n];
        }
    }
    lanes[0]
}

/// `out[c] <- scale * sum_{b, y, x} e[b, c, y, x]`, the channels shared out on rayon's pool
/// (each summed by one thread, in the order [`SUM_LANES`] says, so no value depends on threads).
pub(crate) fn sum_channels<F: Scalar>(e: &ArrayD<F>, scale: F, out: &mut ArrayD<F>) {
    let [batch, c, h, w] = dims4(&e.view(), "channel sum input");
    assert_eq!(out.shape(), [c], "channel sum: output of shape {:?} for {c} channels", out.shape());
    let e = e.as_standard_layout();
    let es = e.as_slice().expect("standard layout");
    let plane = h * w;
    let channel = |ch: usize| {
        let mut lanes = [F::zero(); SUM_LANES];
        for b in 0..batch {
            add_lanes(&mut lanes, &es[(b * c + ch) * plane..][..plane]);
        }
        sum_lanes(lanes) * scale
    };
    let sums: Vec<F> = if es.len() >= crate::PARALLEL_MIN_LEN {
        (0..c).into_par_iter().map(channel).collect()
    } else {
        (0..c).map(channel).collect()
    };
    for (ch, s) in sums.into_iter().enumerate() {
        out[[ch]] = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    /// A deterministic pseudo-random array (no RNG dependency needed for these checks).
    fn filled(shape: &[usize], salt: f64) -> ArrayD<f64> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(
            IxDyn(shape),
            (0..n).map(|i| ((i as f64 + salt) * 0.7139).sin()).collect(),
        )
        .unwrap()
    }

    fn at(x: &ArrayD<f64>, b: usize, c: usize, y: isize, xx: isize) -> f64 {
        let s = x.shape();
        if y < 0 || xx < 0 || y >= s[2] as isize || xx >= s[3] as isize {
            0.0
        } else {
            x[[b, c, y as usize, xx as usize]]
        }
    }

    /// Direct loops: out[b, o, y, x] = bias[o] + sum_{c, i, j} k[o, c, i, j] x[b, c, y s + i - p, x s + j - p].
    fn naive_conv(
        x: &ArrayD<f64>,
        k: &ArrayD<f64>,
        bias: &ArrayD<f64>,
        g: &ConvGeometry,
    ) -> ArrayD<f64> {
        let (xs, ks) = (x.shape(), k.shape());
        let (oh, ow) = (g.output_len(xs[2], ks[2]).unwrap(), g.output_len(xs[3], ks[3]).unwrap());
        let mut out = ArrayD::zeros(IxDyn(&[xs[0], ks[0], oh, ow]));
        for b in 0..xs[0] {
            for o in 0..ks[0] {
                for y in 0..oh {
                    for xx in 0..ow {
                        let mut s = bias[[o]];
                        for c in 0..xs[1] {
                            for i in 0..ks[2] {
                                for j in 0..ks[3] {
                                    let iy = (y * g.stride + i) as isize - g.padding as isize;
                                    let ix = (xx * g.stride + j) as isize - g.padding as isize;
                                    s += k[[o, c, i, j]] * at(x, b, c, iy, ix);
                                }
                            }
                        }
                        out[[b, o, y, xx]] = s;
                    }
                }
            }
        }
        out
    }

    fn max_diff(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
        assert_eq!(a.shape(), b.shape());
        a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    /// (batch, c, o, h, w, kernel, stride, padding)
    type Geometry = (usize, usize, usize, usize, usize, usize, usize, usize);

    /// Rows 10 to 12 have enough input channels for the turned-kernel input VJP; the rows with
    /// at most 16 output channels take the per-tap weight gradient, the last two (17 output
    /// channels, stride 1 and 2) the transposed im2col product; strides 1 to 3, with and
    /// without padding, read the phase planes.
    const GEOMETRIES: [Geometry; 17] = [
        (1, 1, 1, 5, 5, 3, 1, 0),
        (3, 2, 4, 7, 6, 3, 1, 1),
        (2, 3, 2, 8, 8, 5, 1, 2),
        (2, 2, 3, 9, 7, 3, 2, 1),
        (1, 3, 6, 12, 12, 5, 1, 0),
        (2, 1, 2, 6, 6, 1, 2, 0),
        (1, 1, 2, 3, 2, 3, 1, 3),
        (2, 2, 2, 10, 11, 3, 3, 2),
        (1, 2, 3, 8, 9, 4, 2, 2),
        (1, 1, 2, 4, 5, 3, 2, 3),
        (2, 16, 3, 6, 5, 3, 1, 1),
        (1, 17, 2, 5, 6, 3, 1, 0),
        (2, 16, 4, 4, 3, 1, 1, 0),
        (1, 2, 16, 5, 5, 3, 1, 1),
        (2, 3, 16, 6, 7, 3, 1, 0),
        (2, 2, 17, 6, 5, 3, 1, 1),
        (2, 3, 17, 7, 6, 3, 2, 1),
    ];

    #[test]
    fn column_spans_hold_exactly_the_columns_inside_the_input() {
        for (w, k, stride, padding) in (1..9).flat_map(|w| {
            (1..5).flat_map(move |k| (1..4).flat_map(move |s| (0..4).map(move |p| (w, k, s, p))))
        }) {
            let Some(ow) = (ConvGeometry { stride, padding }).output_len(w, k) else { continue };
            for j in 0..k {
                let inside: Vec<usize> = (0..ow)
                    .filter(|&ox| (ox * stride + j).checked_sub(padding).is_some_and(|ix| ix < w))
                    .collect();
                let (lo, hi) = column_span(j, stride, padding, w, ow);
                let span: Vec<usize> = (lo..hi).collect();
                assert_eq!(
                    span, inside,
                    "w {w} kernel {k} stride {stride} padding {padding} tap {j}"
                );
            }
        }
    }

    #[test]
    fn conv_matches_direct_loops() {
        for (i, &(b, c, o, h, w, k, s, p)) in GEOMETRIES.iter().enumerate() {
            let g = ConvGeometry { stride: s, padding: p };
            let (x, kern, bias) =
                (filled(&[b, c, h, w], i as f64), filled(&[o, c, k, k], 9.0), filled(&[o], 3.0));
            let want = naive_conv(&x, &kern, &bias, &g);
            let mut got = ArrayD::zeros(IxDyn(want.shape()));
            conv2d(&x, &kern, &bias, &g, &mut got);
            assert!(max_diff(&got, &want) < 1e-12, "geometry {i}");
        }
    }

    /// The input VJP against direct loops, dx[b, c, y s + i - p, x s + j - p] += e[b, o, y, x]
    /// k[o, c, i, j], and the adjoint identity <conv(x), e> = <x, conv^T(e)> (bias zero).
    #[test]
    fn input_vjp_is_the_transposed_convolution() {
        for (n, &(b, c, o, h, w, k, s, p)) in GEOMETRIES.iter().enumerate() {
            let g = ConvGeometry { stride: s, padding: p };
            let (x, kern) = (filled(&[b, c, h, w], 1.0 + n as f64), filled(&[o, c, k, k], 2.0));
            let (oh, ow) = (g.output_len(h, k).unwrap(), g.output_len(w, k).unwrap());
            let e = filled(&[b, o, oh, ow], 5.0);
            let mut naive = ArrayD::<f64>::zeros(IxDyn(&[b, c, h, w]));
            for bb in 0..b {
                for oo in 0..o {
                    for y in 0..oh {
                        for xx in 0..ow {
                            for cc in 0..c {
                                for i in 0..k {
                                    for j in 0..k {
                                        let iy = (y * s + i) as isize - p as isize;
                                        let ix = (xx * s + j) as isize - p as isize;
                                        if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize
                                        {
                                            naive[[bb, cc, iy as usize, ix as usize]] +=
                                                e[[bb, oo, y, xx]] * kern[[oo, cc, i, j]];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            // alpha/beta: out = 2 * conv^T(e) + 0.5 * out, starting from ones.
            let mut got = ArrayD::from_elem(IxDyn(&[b, c, h, w]), 1.0);
            conv2d_input_vjp(&e, &kern, &g, 2.0, 0.5, &mut got);
            let want = naive.mapv(|v| 2.0 * v + 0.5);
            assert!(max_diff(&got, &want) < 1e-12, "geometry {n}");
            let mut y = ArrayD::zeros(IxDyn(&[b, o, oh, ow]));
            conv2d(&x, &kern, &ArrayD::zeros(IxDyn(&[o])), &g, &mut y);
            let lhs: f64 = y.iter().zip(e.iter()).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(naive.iter()).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0), "adjoint, geometry {n}");
        }
    }

    #[test]
    fn weight_and_bias_gradients_match_direct_loops() {
        for (n, &(b, c, o, h, w, k, s, p)) in GEOMETRIES.iter().enumerate() {
            let g = ConvGeometry { stride: s, padding: p };
            let x = filled(&[b, c, h, w], n as f64);
            let (oh, ow) = (g.output_len(h, k).unwrap(), g.output_len(w, k).unwrap());
            let e = filled(&[b, o, oh, ow], 4.0);
            let mut want = ArrayD::zeros(IxDyn(&[o, c, k, k]));
            let mut want_bias = ArrayD::zeros(IxDyn(&[o]));
            for bb in 0..b {
                for oo in 0..o {
                    for y in 0..oh {
                        for xx in 0..ow {
                            want_bias[[oo]] += 0.25 * e[[bb, oo, y, xx]];
                            for cc in 0..c {
                                for i in 0..k {
                                    for j in 0..k {
                                        let iy = (y * s + i) as isize - p as isize;
                                        let ix = (xx * s + j) as isize - p as isize;
                                        want[[oo, cc, i, j]] +=
                                            0.25 * e[[bb, oo, y, xx]] * at(&x, bb, cc, iy, ix);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let mut got = ArrayD::from_elem(IxDyn(&[o, c, k, k]), f64::NAN);
            conv2d_weight_grad(&e, &x, &g, 0.25, &mut got, None);
            assert!(max_diff(&got, &want) < 1e-12, "geometry {n}");
            let mut got_bias = ArrayD::zeros(IxDyn(&[o]));
            sum_channels(&e, 0.25, &mut got_bias);
            assert!(max_diff(&got_bias, &want_bias) < 1e-12, "geometry {n}");
            // Both at once.
            got.fill(f64::NAN);
            got_bias.fill(f64::NAN);
            conv2d_weight_grad(&e, &x, &g, 0.25, &mut got, Some(&mut got_bias));
            assert!(max_diff(&got, &want) < 1e-12, "geometry {n}, with the bias");
            assert!(max_diff(&got_bias, &want_bias) < 1e-12, "geometry {n}, fused bias");
        }
    }
}
