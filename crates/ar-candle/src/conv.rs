//! The convolution weight gradient as candle operations: the input unfolded into windows
//! (im2col by one `index_select`), one small product per sample, summed over the batch. On a GPU
//! this splits the long reduction over batch and positions into a batched GEMM, where the
//! transposed-convolution form gave cuBLAS one very thin product.

use ar_backend::ConvGeometry;
use candle_core::{Result, Tensor};

/// `sum_b e_b (x_b unfolded)`: the gradient of a kernel of `[o, c, kh, kw]` from the output
/// gradient `e` (`[b, o, oh, ow]`) and the input `x` (`[b, c, h, w]`).
pub(crate) fn weight_grad(
    e: &Tensor,
    x: &Tensor,
    kernel: [usize; 4],
    g: ConvGeometry,
) -> Result<Tensor> {
    let [o, c, kh, kw] = kernel;
    let (b, _, oh, ow) = e.dims4()?;
    let cols = unfold(x, [kh, kw], [oh, ow], g)?; // [b, oh * ow, c * kh * kw]
    e.reshape((b, o, oh * ow))?.matmul(&cols)?.sum(0)?.reshape((o, c, kh, kw))
}

/// The windows of `x` (`[b, c, h, w]`, zero-padded by `g.padding`) that a `kh x kw` kernel
/// meets at each of the `oh x ow` output positions: `[b, oh * ow, c * kh * kw]`, each row in the
/// kernel's `(c, i, j)` order.
fn unfold(x: &Tensor, k: [usize; 2], out: [usize; 2], g: ConvGeometry) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (p, s) = (g.padding, g.stride);
    let (hp, wp) = (h + 2 * p, w + 2 * p);
    let padded =
        if p > 0 { x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)? } else { x.clone() };
    let mut idx = Vec::with_capacity(out[0] * out[1] * c * k[0] * k[1]);
    for oy in 0..out[0] {
        for ox in 0..out[1] {
            for ci in 0..c {
                for i in 0..k[0] {
                    for j in 0..k[1] {
                        let at = ci * hp * wp + (oy * s + i) * wp + ox * s + j;
                        idx.push(u32::try_from(at).expect("an input of under 2^32 elements"));
                    }
                }
            }
        }
    }
    let n = idx.len();
    let idx = Tensor::from_vec(idx, n, x.device())?;
    padded.reshape((b, c * hp * wp))?.index_select(&idx, 1)?.reshape((
        b,
        out[0] * out[1],
        c * k[0] * k[1],
    ))
}
