//! Convolution kernels on `[batch, channels, height, width]` arrays, one sample at a time on
//! rayon's pool: a sample's im2col columns (in a per-thread scratch buffer, small enough to stay
//! in cache) and one GEMM for the convolution; a GEMM and col2im for its input VJP (the
//! transposed convolution), or at stride 1 with enough channels a forward convolution with the
//! kernel turned; and its weight gradient summed over fixed blocks of samples, added in a fixed
//! pairwise order, so no value depends on the number of threads.

use crate::gemm::kernel as sequential_matmul;
use crate::Scalar;
use ar_backend::ConvGeometry;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, Ix2, ShapeBuilder};
use rayon::prelude::*;

/// Samples whose weight-gradient terms are summed in order into one partial sum; the partial
/// sums are then added pairwise. Fixed, so that the sum's rounding never depends on threads.
const GRAD_BLOCK: usize = 8;

/// The fewest input channels for which a stride-1 input VJP runs as a forward convolution
/// with the kernel turned: its product has one row per input channel, and with fewer the GEMM
/// kernels' tiles run mostly empty (the transposed form then measured faster, docs/performance.md).
const TURNED_MIN_CHANNELS: usize = 16;

/// The most output channels for which a stride-1 weight gradient runs as one product per
/// kernel tap on the shifted input ([`tap_products`]): with so few rows the product of the
/// im2col columns ran at half the GEMM kernels' speed, while with more the per-tap products'
/// `c` columns are the narrower side (docs/performance.md).
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

    /// Whether the matrices use rows of the (padded) input's width (`oh wp` columns per
    /// channel, output `(oy, ox)` at column `oy wp + ox`, the columns `ox >= ow` belonging to
    /// no output): with stride 1, each kernel tap's columns are then one contiguous run of the
    /// zero-padded input, and col2im one contiguous addition per tap.
    fn wide(&self) -> bool {
        self.stride == 1
    }

    /// The padded input's width `w + 2 p`.
    fn wp(&self) -> usize {
        self.w + 2 * self.padding
    }

    /// Values of one sample's zero-padded input `[c, h + 2 p, w + 2 p]` (0 without padding,
    /// where the input itself serves).
    fn padded_len(&self) -> usize {
        if self.wide() && self.padding > 0 {
            self.c * (self.h + 2 * self.padding) * self.wp()
        } else {
            0
        }
    }

    /// Columns per channel of the im2col matrix: `oh wp` when [`Shape::wide`], else `oh ow`.
    fn width(&self) -> usize {
        if self.wide() {
            self.oh * self.wp()
        } else {
            self.positions()
        }
    }

    /// One sample's columns, in the layout [`Shape::width`] says; `padded` holds
    /// [`Shape::padded_len`] values of scratch.
    fn columns<F: Scalar>(&self, x: &[F], padded: &mut [F], cols: &mut [F]) {
        if !self.wide() {
            return im2col_one(x, self, cols);
        }
        im2col_wide(self.padded_input(x, padded), self, cols)
    }

    /// One sample's input zero-padded to `[c, h + 2 p, wp]` in `padded` ([`Shape::padded_len`]
    /// values), or `x` itself without padding; for [`Shape::wide`] shapes.
    fn padded_input<'a, F: Scalar>(&self, x: &'a [F], padded: &'a mut [F]) -> &'a [F] {
        if self.padding == 0 {
            return x;
        }
        let (hp, wp, p) = (self.h + 2 * self.padding, self.wp(), self.padding);
        padded.fill(F::zero());
        for c in 0..self.c {
            let plane = &mut padded[c * hp * wp..][..hp * wp];
            for (y, src) in
                x[c * self.h * self.w..][..self.h * self.w].chunks_exact(self.w).enumerate()
            {
                plane[(y + p) * wp + p..][..self.w].copy_from_slice(src);
            }
        }
        padded
    }

    /// `[channels, oh, ow]` values `e` in the layout [`Shape::width`] says (wide: each row
    /// followed by `wp - ow` zeros), in `scratch` (or `e` itself when it is already so).
    fn output_rows<'a, F: Scalar>(&self, e: &'a [F], scratch: &'a mut [F]) -> &'a [F] {
        if !self.wide() {
            return e;
        }
        for (dst, src) in scratch.chunks_exact_mut(self.wp()).zip(e.chunks_exact(self.ow)) {
            dst[..self.ow].copy_from_slice(src);
            dst[self.ow..].fill(F::zero());
        }
        scratch
    }

    /// The input row of output row `oy` at kernel row `i`, if inside the input.
    #[inline]
    fn input_row(&self, oy: usize, i: usize) -> Option<usize> {
        (oy * self.stride + i).checked_sub(self.padding).filter(|&iy| iy < self.h)
    }
}

/// `dst[k] = src[k stride]`, with the common stride 2 as its own loop (a constant stride
/// compiles to vector shuffles; `step_by` with a run-time stride copies one value at a time).
#[inline(always)]
fn gather_strided<F: Scalar>(dst: &mut [F], src: &[F], stride: usize) {
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

/// `dst[k stride] += src[k]`, stride 2 as its own loop (see [`gather_strided`]).
#[inline(always)]
fn scatter_add_strided<F: Scalar>(dst: &mut [F], src: &[F], stride: usize) {
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

/// One sample's columns in the compact layout (strides above 1; stride 1 takes [`im2col_wide`]):
/// `cols[(c, i, j), (oy, ox)] = x[c, oy s + i - p, ox s + j - p]` (zero
/// outside the input). Every element of `cols` is written.
fn im2col_one<F: Scalar>(x: &[F], s: &Shape, cols: &mut [F]) {
    let zero = F::zero();
    for (r, row) in cols.chunks_exact_mut(s.positions()).enumerate() {
        let (c, i, j) = (r / (s.kh * s.kw), r / s.kw % s.kh, r % s.kw);
        let plane = &x[c * s.h * s.w..][..s.h * s.w];
        let (lo, hi) = column_span(j, s.stride, s.padding, s.w, s.ow);
        for (oy, dst) in row.chunks_exact_mut(s.ow).enumerate() {
            let Some(iy) = s.input_row(oy, i) else {
                dst.fill(zero);
                continue;
            };
            dst[..lo].fill(zero);
            dst[hi..].fill(zero);
            if lo < hi {
                let src = &plane[iy * s.w + lo * s.stride + j - s.padding..];
                gather_strided(&mut dst[lo..hi], src, s.stride);
            }
        }
    }
}

/// [`im2col_one`] in the wide layout ([`Shape::wide`]) from the zero-padded input `x`
/// (`[c, h + 2 p, wp]`): tap `(c, i, j)`'s row is padded plane `c` from offset `i wp + j` on,
/// `(oh - 1) wp + ow` values, then zeros to `oh wp`.
fn im2col_wide<F: Scalar>(x: &[F], s: &Shape, cols: &mut [F]) {
    let wp = s.wp();
    let plane = (s.h + 2 * s.padding) * wp;
    let run = (s.oh - 1) * wp + s.ow;
    for (r, row) in cols.chunks_exact_mut(s.oh * wp).enumerate() {
        let (c, i, j) = (r / (s.kh * s.kw), r / s.kw % s.kh, r % s.kw);
        row[..run].copy_from_slice(&x[c * plane + i * wp + j..][..run]);
        row[run..].fill(F::zero());
    }
}

/// Adds one sample's columns (laid out as [`im2col_one`] makes them) into its input-shaped
/// `out` `[c, h, w]`, each element receiving its terms in the order of the kernel taps.
fn col2im_add_one<F: Scalar>(cols: &[F], s: &Shape, out: &mut [F]) {
    for (r, row) in cols.chunks_exact(s.positions()).enumerate() {
        let (c, i, j) = (r / (s.kh * s.kw), r / s.kw % s.kh, r % s.kw);
        let plane = &mut out[c * s.h * s.w..][..s.h * s.w];
        let (lo, hi) = column_span(j, s.stride, s.padding, s.w, s.ow);
        if lo == hi {
            continue;
        }
        for (oy, src) in row.chunks_exact(s.ow).enumerate() {
            let Some(iy) = s.input_row(oy, i) else { continue };
            let dst = &mut plane[iy * s.w + lo * s.stride + j - s.padding..];
            scatter_add_strided(dst, &src[lo..hi], s.stride);
        }
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
        F::with_scratch((s.taps() + o) * width + s.padded_len(), |scratch| {
            let (cols, rest) = scratch.split_at_mut(s.taps() * width);
            let (product, padded) = rest.split_at_mut(o * width);
            s.columns(x_b, padded, cols);
            let cols = matrix(cols, s.taps(), width);
            sequential_matmul(alpha, km, cols, F::zero(), matrix_mut(product, o, width));
            // The `ow` first columns of each row of `wp` when wide.
            let row = if s.wide() { s.wp() } else { s.ow };
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
    if g.stride == 1 && g.padding < kh && kh == kw && c >= TURNED_MIN_CHANNELS {
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
        F::with_scratch((o + s.taps()) * width + s.padded_len(), |scratch| {
            let (e_rows, rest) = scratch.split_at_mut(o * width);
            let (dcols, padded) = rest.split_at_mut(s.taps() * width);
            let e_b = matrix(s.output_rows(e_b, e_rows), o, width);
            sequential_matmul(alpha, km.t(), e_b, F::zero(), matrix_mut(dcols, s.taps(), width));
            scale(out_b);
            if !s.wide() {
                col2im_add_one(dcols, &s, out_b);
            } else if s.padding == 0 {
                col2im_add_wide(dcols, &s, out_b);
            } else {
                // Into the padded input's shape, then its interior onto the input.
                padded.fill(F::zero());
                col2im_add_wide(dcols, &s, padded);
                let (hp, wp, pad) = (s.h + 2 * s.padding, s.wp(), s.padding);
                for c in 0..s.c {
                    let plane = &padded[c * hp * wp..][..hp * wp];
                    let dst = &mut out_b[c * s.h * s.w..][..s.h * s.w];
                    for (y, d) in dst.chunks_exact_mut(s.w).enumerate() {
                        add_assign(d, &plane[(y + pad) * wp + pad..][..s.w]);
                    }
                }
            }
        })
    });
}

/// [`col2im_add_one`] in the wide layout ([`Shape::wide`]), from columns whose output columns
/// `ow..wp` are zero, into the padded input's shape `[c, h + 2 p, wp]` (the input's own when
/// `p = 0`): tap `(c, i, j)` then adds to plane `c` at offset `i wp + j` one contiguous run of
/// `(oh - 1) wp + ow` values (a zero column lands on the next row's first `kw - 1` elements and
/// adds nothing), long enough to vectorise well.
fn col2im_add_wide<F: Scalar>(cols: &[F], s: &Shape, out: &mut [F]) {
    let wp = s.wp();
    let plane_len = (s.h + 2 * s.padding) * wp;
    let run = (s.oh - 1) * wp + s.ow;
    for (r, row) in cols.chunks_exact(s.oh * wp).enumerate() {
        let (c, i, j) = (r / (s.kh * s.kw), r / s.kw % s.kh, r % s.kw);
        let plane = &mut out[c * plane_len..][..plane_len];
        add_assign(&mut plane[i * wp + j..][..run], &row[..run]);
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
    let shifted = s.wide() && o <= MAX_SHIFTED_ROWS;
    let width = s.width();
    let blocks: Vec<(Array2<F>, Array2<F>)> = xs
        .par_chunks(GRAD_BLOCK * s.input_len())
        .zip(es.par_chunks(GRAD_BLOCK * o * p))
        .map(|(x_block, e_block)| {
            // Per tap `[o, taps]`; from the im2col columns kept transposed, `[taps, o]`: the
            // product's output is then column-major, the layout the GEMM kernels compute in, so
            // that they need not transpose the columns while packing them.
            let mut sum = if shifted {
                Array2::<F>::zeros((o, s.taps()))
            } else {
                Array2::<F>::zeros((s.taps(), o))
            };
            let mut lanes = vec![[F::zero(); SUM_LANES]; if bias.is_some() { o } else { 0 }];
            let columns = if shifted { 0 } else { s.taps() * width };
            F::with_scratch(columns + o * width + s.padded_len(), |scratch| {
                let (cols, rest) = scratch.split_at_mut(columns);
                let (e_rows, padded) = rest.split_at_mut(o * width);
                for (x_b, e_b) in
                    x_block.chunks_exact(s.input_len()).zip(e_block.chunks_exact(o * p))
                {
                    for (lanes, plane) in lanes.iter_mut().zip(e_b.chunks_exact(p)) {
                        add_lanes(lanes, plane);
                    }
                    // Wide: the zero columns of e meet the columns of no output.
                    let e_b = matrix(s.output_rows(e_b, e_rows), o, width);
                    if shifted {
                        tap_products(e_b, s.padded_input(x_b, padded), &s, sum.view_mut());
                        continue;
                    }
                    s.columns(x_b, padded, cols);
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

/// `sum[o, (c, i, j)] += sum_q e[o, q] xp[c, q + i wp + j]`: one sample's weight-gradient
/// terms of a [`Shape::wide`] convolution as one product per kernel tap, each reading the
/// padded input `xp` where it lies (a tap's columns of the im2col matrix are a shifted run of
/// each padded plane, so no columns are built). `e` is `[o, s.width()]` in the wide layout; the
/// reduction stops at the last output, `(oh - 1) wp + ow`, and the positions it spans between
/// rows (`ox >= ow`) have `e = 0`.
fn tap_products<F: Scalar>(
    e: ArrayView2<'_, F>,
    xp: &[F],
    s: &Shape,
    mut sum: ArrayViewMut2<'_, F>,
) {
    let (wp, taps) = (s.wp(), s.kh * s.kw);
    let plane = (s.h + 2 * s.padding) * wp;
    let run = (s.oh - 1) * wp + s.ow;
    let e = e.slice(ndarray::s![.., ..run]);
    for t in 0..taps {
        let (i, j) = (t / s.kw, t % s.kw);
        let x = ArrayView2::from_shape((run, s.c).strides((1, plane)), &xp[i * wp + j..])
            .expect("a tap's run lies inside its padded plane");
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

    /// Rows 10 to 12 have enough input channels for the turned-kernel input VJP; the stride-1
    /// rows with at most 16 output channels take the per-tap weight gradient, the others (the
    /// last two with 17 output channels, stride 1 and 2) the product of the im2col columns.
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
