//! Convolution kernels on `[batch, channels, height, width]` arrays: convolution through im2col
//! and one GEMM for the whole batch, its input VJP (the transposed convolution, a GEMM and
//! col2im), and its weight and bias gradients.

use crate::gemm::matmul;
use crate::Scalar;
use ar_backend::ConvGeometry;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Ix2};
use rayon::prelude::*;

/// The four sizes of an NCHW array, checked.
pub(crate) fn dims4<F>(t: &ArrayViewD<'_, F>, what: &str) -> [usize; 4] {
    let s = t.shape();
    assert_eq!(s.len(), 4, "{what} must be 4-D [batch, channels, height, width], got shape {s:?}");
    [s[0], s[1], s[2], s[3]]
}

fn out_len(g: &ConvGeometry, input: usize, kernel: usize, what: &str) -> usize {
    g.output_len(input, kernel).unwrap_or_else(|| {
        panic!("{what}: a kernel of {kernel} does not fit {input} pixels with {g:?}")
    })
}

/// With stride 1, the output columns `lo..hi` whose input column `ox + j - padding` lies inside
/// `0..w` (`lo == hi` when there is none).
fn stride_one_span(j: usize, padding: usize, w: usize, ow: usize) -> (usize, usize) {
    let lo = padding.saturating_sub(j).min(ow);
    let hi = (w + padding).saturating_sub(j).min(ow).max(lo);
    (lo, hi)
}

/// `cols[(c, i, j), (b, oy, ox)] = x[b, c, oy s + i - p, ox s + j - p]` (zero outside).
pub(crate) fn im2col<F: Scalar>(
    x: &ArrayViewD<'_, F>,
    kh: usize,
    kw: usize,
    g: &ConvGeometry,
) -> Array2<F> {
    let [batch, channels, h, w] = dims4(x, "conv2d input");
    let (oh, ow) = (out_len(g, h, kh, "conv2d"), out_len(g, w, kw, "conv2d"));
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let mut cols = Array2::<F>::zeros((channels * kh * kw, batch * oh * ow));
    let cs = cols.as_slice_mut().expect("fresh array");
    let row_len = batch * oh * ow;
    // Rows are independent copies, so they are filled in parallel.
    cs.par_chunks_mut(row_len).enumerate().for_each(|(r, row)| {
        let (c, i, j) = (r / (kh * kw), r / kw % kh, r % kw);
        for b in 0..batch {
            let plane = &xs[(b * channels + c) * h * w..][..h * w];
            for oy in 0..oh {
                let iy = (oy * g.stride + i) as isize - g.padding as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let src = &plane[iy as usize * w..][..w];
                let dst = &mut row[(b * oh + oy) * ow..][..ow];
                if g.stride == 1 {
                    let (lo, hi) = stride_one_span(j, g.padding, w, ow);
                    if lo < hi {
                        dst[lo..hi].copy_from_slice(&src[lo + j - g.padding..hi + j - g.padding]);
                    }
                    continue;
                }
                for (ox, d) in dst.iter_mut().enumerate() {
                    let ix = (ox * g.stride + j) as isize - g.padding as isize;
                    if ix >= 0 && ix < w as isize {
                        *d = src[ix as usize];
                    }
                }
            }
        }
    });
    cols
}

/// Adds `cols` (laid out as [`im2col`] makes them) back into `out` `[batch, channels, h, w]`.
fn col2im_add<F: Scalar>(
    cols: &Array2<F>,
    kh: usize,
    kw: usize,
    g: &ConvGeometry,
    out: &mut ArrayD<F>,
) {
    let [batch, channels, h, w] = dims4(&out.view(), "conv2d input gradient");
    let (oh, ow) = (out_len(g, h, kh, "conv2d"), out_len(g, w, kw, "conv2d"));
    let cs = cols.as_slice().expect("standard layout");
    let os = out.as_slice_mut().expect("standard layout");
    let row_len = batch * oh * ow;
    // Planes are written in parallel; each element still receives its terms in the order of the
    // kernel taps (i, j), as a sequential loop would add them.
    os.par_chunks_mut(h * w).enumerate().for_each(|(p, plane)| {
        let (b, c) = (p / channels, p % channels);
        for i in 0..kh {
            for j in 0..kw {
                let row = &cs[((c * kh + i) * kw + j) * row_len..][..row_len];
                for oy in 0..oh {
                    let iy = (oy * g.stride + i) as isize - g.padding as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * w..][..w];
                    let src = &row[(b * oh + oy) * ow..][..ow];
                    if g.stride == 1 {
                        let (lo, hi) = stride_one_span(j, g.padding, w, ow);
                        if lo < hi {
                            let dst = &mut dst[lo + j - g.padding..hi + j - g.padding];
                            for (d, &v) in dst.iter_mut().zip(&src[lo..hi]) {
                                *d = *d + v;
                            }
                        }
                        continue;
                    }
                    for (ox, &v) in src.iter().enumerate() {
                        let ix = (ox * g.stride + j) as isize - g.padding as isize;
                        if ix >= 0 && ix < w as isize {
                            dst[ix as usize] = dst[ix as usize] + v;
                        }
                    }
                }
            }
        }
    });
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

/// `[batch, o, positions]` to `[o, batch * positions]`.
fn channels_first<F: Scalar>(e: &ArrayD<F>) -> Array2<F> {
    let [batch, o, oh, ow] = dims4(&e.view(), "conv2d output");
    let e3 = e.view().into_shape_with_order((batch, o, oh * ow)).expect("standard layout");
    let permuted = e3.permuted_axes([1, 0, 2]);
    permuted
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((o, batch * oh * ow))
        .expect("contiguous")
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
    let (oh, ow) = (out_len(g, h, kh, "conv2d"), out_len(g, w, kw, "conv2d"));
    assert_eq!(out.shape(), [batch, o, oh, ow], "conv2d: output buffer of shape {:?}", out.shape());
    let cols = im2col(&x.view(), kh, kw, g);
    let mut prod = Array2::<F>::zeros((o, batch * oh * ow));
    matmul(F::one(), km, cols.view(), F::zero(), prod.view_mut());
    let os = out.as_slice_mut().expect("standard layout");
    let p = oh * ow;
    for b in 0..batch {
        for ch in 0..o {
            let src = &prod.as_slice().expect("fresh")[ch * batch * p + b * p..][..p];
            let dst = &mut os[(b * o + ch) * p..][..p];
            let bv = bias[[ch]];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s + bv;
            }
        }
    }
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
    let em = channels_first(e);
    let mut dcols = Array2::<F>::zeros((c * kh * kw, batch * oh * ow));
    matmul(alpha, km.t(), em.view(), F::zero(), dcols.view_mut());
    if beta == F::zero() {
        out.fill(F::zero());
    } else if beta != F::one() {
        out.mapv_inplace(|v| v * beta);
    }
    col2im_add(&dcols, kh, kw, g, out);
}

/// `out <- scale * sum_b conv_weight_grad(e_b, x_b)`: `out[o, c, i, j] = scale * sum_{b, y, x}
/// e[b, o, y, x] x[b, c, y s + i - p, x s + j - p]`.
pub(crate) fn conv2d_weight_grad<F: Scalar>(
    e: &ArrayD<F>,
    x: &ArrayD<F>,
    g: &ConvGeometry,
    scale: F,
    out: &mut ArrayD<F>,
) {
    let [o, c, kh, kw] = dims4(&out.view(), "conv2d kernel gradient");
    let [_, xc, _, _] = dims4(&x.view(), "conv2d input");
    assert_eq!(xc, c, "conv2d_weight_grad: input has {xc} channels, kernel {c}");
    let cols = im2col(&x.view(), kh, kw, g);
    let em = channels_first(e);
    assert_eq!(
        em.shape(),
        [o, cols.ncols()],
        "conv2d_weight_grad: gradient {:?} does not fit input {:?}",
        e.shape(),
        x.shape()
    );
    let m = out.view_mut().into_shape_with_order((o, c * kh * kw)).expect("standard layout");
    matmul(scale, em.view(), cols.t(), F::zero(), m);
}

/// `out[c] <- scale * sum_{b, y, x} e[b, c, y, x]`.
pub(crate) fn sum_channels<F: Scalar>(e: &ArrayD<F>, scale: F, out: &mut ArrayD<F>) {
    let [batch, c, h, w] = dims4(&e.view(), "channel sum input");
    assert_eq!(out.shape(), [c], "channel sum: output of shape {:?} for {c} channels", out.shape());
    let es = e.as_slice().expect("standard layout");
    for ch in 0..c {
        let mut s = F::zero();
        for b in 0..batch {
            for &v in &es[(b * c + ch) * h * w..][..h * w] {
                s = s + v;
            }
        }
        out[[ch]] = s * scale;
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

    const GEOMETRIES: [Geometry; 7] = [
        (1, 1, 1, 5, 5, 3, 1, 0),
        (3, 2, 4, 7, 6, 3, 1, 1),
        (2, 3, 2, 8, 8, 5, 1, 2),
        (2, 2, 3, 9, 7, 3, 2, 1),
        (1, 3, 6, 12, 12, 5, 1, 0),
        (2, 1, 2, 6, 6, 1, 2, 0),
        (1, 1, 2, 3, 2, 3, 1, 3),
    ];

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
            conv2d_weight_grad(&e, &x, &g, 0.25, &mut got);
            assert!(max_diff(&got, &want) < 1e-12, "geometry {n}");
            let mut got_bias = ArrayD::zeros(IxDyn(&[o]));
            sum_channels(&e, 0.25, &mut got_bias);
            assert!(max_diff(&got_bias, &want_bias) < 1e-12, "geometry {n}");
        }
    }
}
