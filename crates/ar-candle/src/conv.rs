//! The convolution's two VJPs as candle operations. The weight gradient: on CUDA cuDNN's
//! backward-filter convolution (`cudnn.rs`); elsewhere the input unfolded into windows (im2col
//! by one `index_select`), one small product per sample, summed over the batch. The input VJP of a
//! stride-1 convolution: a forward convolution with the kernel flipped, which candle runs
//! through cuDNN on CUDA (its transposed convolution is a kernel of candle's own).

use ar_backend::ConvGeometry;
use candle_core::conv::CudnnFwdAlgo;
use candle_core::{Result, Tensor};

/// The cuDNN algorithm of every forward convolution (candle hands it to cuDNN on CUDA and
/// ignores it elsewhere). Named rather than left to candle, which otherwise asks cuDNN's
/// heuristics on every call: some 0.4 ms a call on an H200, more than the convolutions of paper
/// 2's CNN take at batch 1024 (docs/cuda.md).
const FORWARD_ALGORITHM: CudnnFwdAlgo = CudnnFwdAlgo::ImplicitPrecompGemm;

/// The convolution of `x` with `kernel` (no bias), through cuDNN on CUDA.
pub(crate) fn forward(x: &Tensor, kernel: &Tensor, g: ConvGeometry) -> Result<Tensor> {
    x.conv2d_with_algo(kernel, g.padding, g.stride, 1, 1, Some(FORWARD_ALGORITHM))
}

/// `sum_b e_b (x_b unfolded)`: the gradient of a kernel of `[o, c, kh, kw]` from the output
/// gradient `e` (`[b, o, oh, ow]`) and the input `x` (`[b, c, h, w]`); on CUDA, cuDNN's
/// backward-filter convolution instead.
pub(crate) fn weight_grad(
    e: &Tensor,
    x: &Tensor,
    kernel: [usize; 4],
    g: ConvGeometry,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        // cuDNN's backward-filter convolution, as PyTorch calls it (src/cudnn.rs).
        let op = crate::cudnn::WeightGrad { kernel, g };
        return e.contiguous()?.apply_op2_no_bwd(&x.contiguous()?, &op);
    }
    let [o, c, kh, kw] = kernel;
    let (b, _, oh, ow) = e.dims4()?;
    let cols = unfold(x, [kh, kw], [oh, ow], g)?; // [b, oh * ow, c * kh * kw]
    e.reshape((b, o, oh * ow))?.matmul(&cols)?.sum(0)?.reshape((o, c, kh, kw))
}

/// The input VJP `dx` (`[b, c, h, w]`) from the output gradient `e` (`[b, o, oh, ow]`). At
/// stride 1 (square kernel, padding below its size): `e`, zero-padded by `k - 1 - p`, convolved
/// with the kernel's channels swapped and its window turned by 180 degrees. Otherwise candle's
/// transposed convolution, cut to `[h, w]`.
pub(crate) fn input_vjp(
    e: &Tensor,
    kernel: &Tensor,
    g: ConvGeometry,
    [h, w]: [usize; 2],
) -> Result<Tensor> {
    let (_, _, oh, ow) = e.dims4()?;
    let (_, _, kh, kw) = kernel.dims4()?;
    let p = g.padding;
    if g.stride == 1 && kh == kw && p < kh && oh + kh == h + 2 * p + 1 && ow + kw == w + 2 * p + 1 {
        // Contiguous, so that candle hands the kernel to cuDNN (a strided one takes its own loop).
        let turned = kernel.flip(&[2, 3])?.transpose(0, 1)?.contiguous()?;
        return forward(e, &turned, ConvGeometry { stride: 1, padding: kh - 1 - p });
    }
    // The transposed convolution yields (o - 1) s - 2p + k + output_padding pixels per axis;
    // candle takes one output_padding for both axes, so take the larger need and cut the other
    // axis back (the cut pixels lie outside the input).
    let reach = |o: usize, k: usize| ((o - 1) * g.stride + k).saturating_sub(2 * p);
    let out_pad = h.saturating_sub(reach(oh, kh)).max(w.saturating_sub(reach(ow, kw)));
    let dx = e.conv_transpose2d(kernel, p, out_pad, g.stride, 1)?;
    dx.narrow(2, 0, h)?.narrow(3, 0, w)?.contiguous()
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
