//! Matrix products for the CPU backend: the `gemm` crate's kernels (AVX-512, AVX2 or scalar,
//! picked at run time for the CPU) on ndarray's buffers, cut into fixed blocks that rayon's pool
//! runs in parallel.
//!
//! A block is a band of the output's rows (or columns, whichever side is longer) with its whole
//! reduction, so nothing is summed across blocks. The exception is a long reduction into a small
//! output (a weight gradient over a batch of thousands), which the `gemm` kernels handle
//! poorly: its reduction is cut into chunks, each
//! multiplied by `matrixmultiply`, and the partial products are added in a fixed pairwise order.
//! Every cut depends only on the shapes, never on the number of threads, so a product is
//! bit-identical whatever the pool's size (docs/performance.md).

use crate::Scalar;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, Axis, Zip};

/// Products smaller than this many multiply-adds run as one block: a split would cost more in
/// hand-over and repacking than the second thread gives back.
const SPLIT_MIN_MACS: usize = 1 << 18;
/// The fewest output rows (or columns) in a block: narrower blocks repack the other operand
/// too often for what they gain.
const MIN_BLOCK: usize = 128;
/// The most blocks (or reduction chunks) a product is cut into.
const MAX_BLOCKS: usize = 8;
/// A reduction at least this many times longer than the output's longer side is cut into chunks.
const LONG_REDUCTION: usize = 16;
/// The shortest reduction chunk.
const MIN_CHUNK: usize = 2048;

/// `c <- alpha * a b + beta * c`; with `beta == 0` the old `c` is never read (NaN in it is
/// overwritten). Panics if the shapes do not chain.
pub(crate) fn matmul<F: Scalar>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    c: ArrayViewMut2<'_, F>,
) {
    assert!(
        a.ncols() == b.nrows() && c.nrows() == a.nrows() && c.ncols() == b.ncols(),
        "gemm: cannot multiply {:?} by {:?} into {:?}",
        a.shape(),
        b.shape(),
        c.shape()
    );
    let (m, n) = c.dim();
    let k = a.ncols();
    if k >= LONG_REDUCTION * m.max(n) && k >= 2 * MIN_CHUNK {
        let chunks = prev_power_of_two((k / MIN_CHUNK).min(MAX_BLOCKS));
        let sum = reduce(a, b, chunks);
        if beta == F::zero() {
            Zip::from(c).and(&sum).for_each(|c, &p| *c = alpha * p);
        } else {
            Zip::from(c).and(&sum).for_each(|c, &p| *c = alpha * p + beta * *c);
        }
        return;
    }
    let macs = m * n * k;
    let by_rows = m >= n;
    let side = if by_rows { m } else { n };
    // A power of two, so that any power-of-two pool shares the blocks evenly.
    let blocks = if macs < SPLIT_MIN_MACS {
        1
    } else {
        prev_power_of_two((side / MIN_BLOCK).clamp(1, MAX_BLOCKS))
    };
    split(alpha, a, b, beta, c, by_rows, blocks);
}

/// The largest power of two at most `n` (`n >= 1`).
fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// Runs `blocks` blocks: halves the output band (and the matching band of `a` or `b`) at a
/// boundary fixed by the shapes and the block count, and runs the halves with `rayon::join`.
fn split<F: Scalar>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    c: ArrayViewMut2<'_, F>,
    by_rows: bool,
    blocks: usize,
) {
    if blocks <= 1 {
        return kernel(alpha, a, b, beta, c);
    }
    let left = blocks / 2;
    if by_rows {
        let at = c.nrows() * left / blocks;
        let (a0, a1) = a.split_at(Axis(0), at);
        let (c0, c1) = c.split_at(Axis(0), at);
        rayon::join(
            || split(alpha, a0, b, beta, c0, by_rows, left),
            || split(alpha, a1, b, beta, c1, by_rows, blocks - left),
        );
    } else {
        let at = c.ncols() * left / blocks;
        let (b0, b1) = b.split_at(Axis(1), at);
        let (c0, c1) = c.split_at(Axis(1), at);
        rayon::join(
            || split(alpha, a, b0, beta, c0, by_rows, left),
            || split(alpha, a, b1, beta, c1, by_rows, blocks - left),
        );
    }
}

/// `a b` as the sum of `chunks` chunks of the reduction, halved recursively with `rayon::join`
/// and added pairwise in that fixed tree.
fn reduce<F: Scalar>(a: ArrayView2<'_, F>, b: ArrayView2<'_, F>, chunks: usize) -> Array2<F> {
    if chunks <= 1 {
        let mut out = Array2::zeros((a.nrows(), b.ncols()));
        general_mat_mul(F::one(), &a, &b, F::zero(), &mut out);
        return out;
    }
    let left = chunks / 2;
    let at = a.ncols() * left / chunks;
    let (mut x, y) = rayon::join(
        || reduce(a.slice(s![.., ..at]), b.slice(s![..at, ..]), left),
        || reduce(a.slice(s![.., at..]), b.slice(s![at.., ..]), chunks - left),
    );
    Zip::from(&mut x).and(&y).for_each(|x, &y| *x = *x + y);
    x
}

/// `c <- alpha * a b + beta * c` as one block on the calling thread (as [`matmul`], without
/// cutting it).
#[allow(unsafe_code)]
pub(crate) fn kernel<F: Scalar>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    mut c: ArrayViewMut2<'_, F>,
) {
    let (m, n) = c.dim();
    let k = a.ncols();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        let keep = beta;
        c.mapv_inplace(|v| if keep == F::zero() { F::zero() } else { keep * v });
        return;
    }
    let (ars, acs) = (a.strides()[0], a.strides()[1]);
    let (brs, bcs) = (b.strides()[0], b.strides()[1]);
    let (crs, ccs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: each pointer is the first element of a live ndarray view whose elements lie at
    // `ptr + i * row_stride + j * col_stride` for the `m x k`, `k x n` and `m x n` extents passed
    // here, which is the layout `gemm` reads and writes. `c` is a unique mutable view, so no element
    // of the output aliases another or the inputs (shared borrows of `a` and `b` live as long as
    // this call). `F` is `f32` or `f64` (the only `Scalar` types), which `gemm` supports; it reads
    // the old `c` only when `read_dst` is set. `gemm` computes `dst <- alpha' dst + beta' lhs rhs`,
    // hence the swapped factors.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            ccs,
            crs,
            beta != F::zero(),
            a.as_ptr(),
            acs,
            ars,
            b.as_ptr(),
            bcs,
            brs,
            beta,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(rows: usize, cols: usize, salt: f64) -> Array2<f64> {
        Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 31 + j * 17) as f64 * salt).sin())
    }

    /// Every path (one block, row bands, column bands, chunked long reductions, an empty
    /// reduction) with and without transposes and accumulation, against a direct triple loop.
    #[test]
    fn every_cut_computes_the_product() {
        for (m, k, n) in [(5, 7, 3), (600, 64, 300), (64, 300, 600), (6, 8192, 75), (4, 0, 3)] {
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let a = if ta { filled(k, m, 0.1) } else { filled(m, k, 0.1) };
                let b = if tb { filled(n, k, 0.2) } else { filled(k, n, 0.2) };
                let (av, bv) =
                    (if ta { a.t() } else { a.view() }, if tb { b.t() } else { b.view() });
                for beta in [0.0, 0.5] {
                    let mut c = filled(m, n, 0.3);
                    if beta == 0.0 {
                        c.fill(f64::NAN);
                    }
                    let mut want = Array2::<f64>::zeros((m, n));
                    for i in 0..m {
                        for j in 0..n {
                            let dot: f64 = (0..k).map(|l| av[[i, l]] * bv[[l, j]]).sum();
                            let old = if beta == 0.0 { 0.0 } else { beta * c[[i, j]] };
                            want[[i, j]] = 2.0 * dot + old;
                        }
                    }
                    matmul(2.0, av, bv, beta, c.view_mut());
                    let worst =
                        Zip::from(&c).and(&want).fold(0.0f64, |w, &x, &y| w.max((x - y).abs()));
                    assert!(
                        worst < 1e-9,
                        "{m}x{k}x{n} ta={ta} tb={tb} beta={beta}: off by {worst}"
                    );
                }
            }
        }
    }

    #[test]
    fn prev_power_of_two_rounds_down() {
        assert_eq!(prev_power_of_two(1), 1);
        assert_eq!(prev_power_of_two(6), 4);
        assert_eq!(prev_power_of_two(8), 8);
    }
}
