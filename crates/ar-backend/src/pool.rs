//! Reference pooling kernels on host slices (`[batch, channels, height, width]`, row-major):
//! max pooling with its argmax routing, average pooling, and their VJPs.
//!
//! The kernels are generic over the slice's [`Element`] type, so a host backend runs them in
//! place on its own `f32` or `f64` buffers. Whatever the element type, values are widened to f64
//! for the arithmetic and each output is rounded once: every precision gets the f64 kernel's
//! result, correctly rounded, whichever backend calls them.

use crate::PoolGeometry;

/// A floating-point element type the pooling kernels read and write (`f32` or `f64`).
pub trait Element: Copy + Send + Sync + 'static {
    /// The value as f64 (exact for `f32` and `f64`).
    fn widen(self) -> f64;
    /// `x` rounded to this type (to nearest).
    fn narrow(x: f64) -> Self;
}

impl Element for f32 {
    fn widen(self) -> f64 {
        f64::from(self)
    }

    fn narrow(x: f64) -> Self {
        x as f32
    }
}

impl Element for f64 {
    fn widen(self) -> f64 {
        self
    }

    fn narrow(x: f64) -> Self {
        x
    }
}

/// The four sizes of a `[batch, channels, height, width]` shape; panics naming `what` otherwise.
pub fn nchw(shape: &[usize], what: &str) -> [usize; 4] {
    match *shape {
        [b, c, h, w] => [b, c, h, w],
        _ => panic!("{what} must be 4-D [batch, channels, height, width], got shape {shape:?}"),
    }
}

/// The output sizes of pooling `[batch, c, h, w]`; panics with the geometry when it does not fit.
pub fn output_dims(dims: [usize; 4], pool: PoolGeometry) -> [usize; 4] {
    let fit = |n: usize| {
        pool.output_len(n).unwrap_or_else(|| panic!("pool: {pool} does not fit {dims:?}"))
    };
    [dims[0], dims[1], fit(dims[2]), fit(dims[3])]
}

/// Max pooling: the window maxima and each one's flat index `y * w + x` in its input plane.
/// Ties go to the first maximum in row-major order within the window.
pub fn max_pool2d<F: Element>(x: &[F], dims: [usize; 4], pool: PoolGeometry) -> (Vec<F>, Vec<F>) {
    let [batch, c, h, w] = dims;
    let [_, _, oh, ow] = output_dims(dims, pool);
    assert_eq!(x.len(), batch * c * h * w, "max_pool2d: {} values for {dims:?}", x.len());
    let zero = F::narrow(0.0);
    let (mut out, mut arg) = (vec![zero; batch * c * oh * ow], vec![zero; batch * c * oh * ow]);
    for plane in 0..batch * c {
        let src = &x[plane * h * w..][..h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut best, mut at) =
                    (f64::NEG_INFINITY, oy * pool.stride * w + ox * pool.stride);
                for i in 0..pool.kernel {
                    for j in 0..pool.kernel {
                        let idx = (oy * pool.stride + i) * w + ox * pool.stride + j;
                        let v = src[idx].widen();
                        if v > best {
                            (best, at) = (v, idx);
                        }
                    }
                }
                out[(plane * oh + oy) * ow + ox] = F::narrow(best);
                arg[(plane * oh + oy) * ow + ox] = F::narrow(at as f64);
            }
        }
    }
    (out, arg)
}

/// `out <- alpha * unpool(e) + beta * out` for an input of `dims`: each output gradient goes to
/// its window's stored argmax (summed where windows overlap).
pub fn max_pool2d_vjp<F: Element>(
    e: &[F],
    argmax: &[F],
    dims: [usize; 4],
    alpha: f64,
    beta: f64,
    out: &mut [F],
) {
    let [batch, c, h, w] = dims;
    assert_eq!(e.len(), argmax.len(), "max_pool2d_vjp: gradient and argmax differ in size");
    assert_eq!(
        out.len(),
        batch * c * h * w,
        "max_pool2d_vjp: output of {} values for {dims:?}",
        out.len()
    );
    let per_plane = e.len() / (batch * c).max(1);
    accumulate_planes(out, batch * c, h * w, beta, |plane, acc| {
        for k in 0..per_plane {
            let at = argmax[plane * per_plane + k].widen() as u32 as usize;
            acc[at] += alpha * e[plane * per_plane + k].widen();
        }
    });
}

/// Average pooling over each window.
pub fn avg_pool2d<F: Element>(x: &[F], dims: [usize; 4], pool: PoolGeometry) -> Vec<F> {
    let [batch, c, h, w] = dims;
    let [_, _, oh, ow] = output_dims(dims, pool);
    assert_eq!(x.len(), batch * c * h * w, "avg_pool2d: {} values for {dims:?}", x.len());
    let norm = (pool.kernel * pool.kernel) as f64;
    let mut out = vec![F::narrow(0.0); batch * c * oh * ow];
    for plane in 0..batch * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = 0.0;
                for i in 0..pool.kernel {
                    for j in 0..pool.kernel {
                        s += x[plane * h * w + (oy * pool.stride + i) * w + ox * pool.stride + j]
                            .widen();
                    }
                }
                out[(plane * oh + oy) * ow + ox] = F::narrow(s / norm);
            }
        }
    }
    out
}

/// `out <- alpha * spread(e) + beta * out`: each output gradient spread evenly over its window.
pub fn avg_pool2d_vjp<F: Element>(
    e: &[F],
    dims: [usize; 4],
    pool: PoolGeometry,
    alpha: f64,
    beta: f64,
    out: &mut [F],
) {
    let [batch, c, h, w] = dims;
    let [_, _, oh, ow] = output_dims(dims, pool);
    assert_eq!(
        e.len(),
        batch * c * oh * ow,
        "avg_pool2d_vjp: gradient of {} values for {dims:?}",
        e.len()
    );
    assert_eq!(
        out.len(),
        batch * c * h * w,
        "avg_pool2d_vjp: output of {} values for {dims:?}",
        out.len()
    );
    let share = alpha / (pool.kernel * pool.kernel) as f64;
    accumulate_planes(out, batch * c, h * w, beta, |plane, acc| {
        for oy in 0..oh {
            for ox in 0..ow {
                let v = share * e[(plane * oh + oy) * ow + ox].widen();
                for i in 0..pool.kernel {
                    for j in 0..pool.kernel {
                        acc[(oy * pool.stride + i) * w + ox * pool.stride + j] += v;
                    }
                }
            }
        }
    });
}

/// `out <- scatter + beta * out`, one input plane at a time: each plane of `out` is widened into
/// an f64 accumulator holding `beta * out` (zero when `beta == 0`, so NaNs are dropped), the
/// scatter adds into it in its own order, and the sum is rounded back into `out` once. So
/// overlapping windows sum exactly as in f64 whatever the element type.
fn accumulate_planes<F: Element>(
    out: &mut [F],
    planes: usize,
    plane_len: usize,
    beta: f64,
    mut scatter: impl FnMut(usize, &mut [f64]),
) {
    let mut acc = vec![0.0; plane_len];
    for plane in 0..planes {
        let dst = &mut out[plane * plane_len..][..plane_len];
        for (a, &d) in acc.iter_mut().zip(dst.iter()) {
            *a = if beta == 0.0 {
                0.0
            } else if beta != 1.0 {
                d.widen() * beta
            } else {
                d.widen()
            };
        }
        scatter(plane, &mut acc);
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = F::narrow(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_routes_to_the_first_maximum_on_ties() {
        use crate::testing::{TIE_ARGMAX, TIE_MAXIMA, TIE_PLANE};
        let pool = PoolGeometry { kernel: 2, stride: 2 };
        let (out, arg) = max_pool2d(&TIE_PLANE, [1, 1, 4, 4], pool);
        assert_eq!(out, TIE_MAXIMA);
        assert_eq!(arg, TIE_ARGMAX);
        let mut dx = vec![0.0; 16];
        max_pool2d_vjp(&[1.0, 2.0, 3.0, 4.0], &arg, [1, 1, 4, 4], 1.0, 0.0, &mut dx);
        let mut want = vec![0.0; 16];
        (want[0], want[3], want[9], want[10]) = (1.0, 2.0, 3.0, 4.0);
        assert_eq!(dx, want);
    }

    fn filled(n: usize, salt: f64) -> Vec<f64> {
        (0..n).map(|i| ((i as f64 + salt) * 0.7139).sin()).collect()
    }

    #[test]
    fn pools_match_direct_definitions_with_overlapping_windows() {
        let dims = [2, 3, 7, 6];
        let x = filled(2 * 3 * 7 * 6, 0.5);
        let idx = |b: usize, c: usize, y: usize, xx: usize| ((b * 3 + c) * 7 + y) * 6 + xx;
        for pool in [
            PoolGeometry { kernel: 2, stride: 2 },
            PoolGeometry { kernel: 3, stride: 2 },
            PoolGeometry { kernel: 3, stride: 1 },
        ] {
            let [_, _, oh, ow] = output_dims(dims, pool);
            let (mx, arg) = max_pool2d(&x, dims, pool);
            let avg = avg_pool2d(&x, dims, pool);
            let e = filled(2 * 3 * oh * ow, 2.0);
            let (mut want_dmax, mut want_davg) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            for b in 0..2 {
                for c in 0..3 {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let o = ((b * 3 + c) * oh + y) * ow + xx;
                            let window: Vec<usize> = (0..pool.kernel)
                                .flat_map(|i| {
                                    (0..pool.kernel).map(move |j| {
                                        idx(b, c, y * pool.stride + i, xx * pool.stride + j)
                                    })
                                })
                                .collect();
                            let best = window.iter().copied().fold(window[0], |m, k| {
                                if x[k] > x[m] {
                                    k
                                } else {
                                    m
                                }
                            });
                            assert_eq!(mx[o], x[best]);
                            let mean =
                                window.iter().map(|&k| x[k]).sum::<f64>() / window.len() as f64;
                            assert!((avg[o] - mean).abs() < 1e-15);
                            want_dmax[best] += e[o];
                            for k in window {
                                want_davg[k] += e[o] / (pool.kernel * pool.kernel) as f64;
                            }
                        }
                    }
                }
            }
            let (mut dmax, mut davg) = (vec![1.0; x.len()], vec![1.0; x.len()]);
            max_pool2d_vjp(&e, &arg, dims, 1.0, 0.0, &mut dmax);
            avg_pool2d_vjp(&e, dims, pool, 2.0, 0.5, &mut davg);
            for k in 0..x.len() {
                assert!((dmax[k] - want_dmax[k]).abs() < 1e-15, "{pool:?}");
                assert!((davg[k] - (2.0 * want_davg[k] + 0.5)).abs() < 1e-15, "{pool:?}");
            }
        }
    }
}
