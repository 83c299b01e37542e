//! Max and average pooling and their VJPs as candle operations on the tensors' own device, so a
//! CNN on CUDA never copies to the host to pool. They match the host kernels of
//! `ar_backend::pool`: the argmax is the plane index `y * w + x` (as `u32`), chosen by the same
//! first-maximum rule (a strict `>` over the window in row-major order, starting from minus
//! infinity at the window's first element); the max VJP scatters by that argmax and the average
//! VJP is a transposed convolution with an all-ones kernel.

use ar_backend::{pool, PoolGeometry};
use candle_core::{Result, Tensor};

/// The plane index `y * w + x` of element `(i, j)` of every window: `kernel^2` rows (row
/// `i * kernel + j`) of `oh * ow` windows.
fn window_indices(dims: [usize; 4], pool: PoolGeometry) -> Vec<u32> {
    let [_, _, _, w] = dims;
    let [_, _, oh, ow] = pool::output_dims(dims, pool);
    let (k, s) = (pool.kernel, pool.stride);
    let mut idx = Vec::with_capacity(k * k * oh * ow);
    for i in 0..k {
        for j in 0..k {
            for oy in 0..oh {
                for ox in 0..ow {
                    let at = (oy * s + i) * w + ox * s + j;
                    idx.push(u32::try_from(at).expect("a pooling plane of under 2^32 elements"));
                }
            }
        }
    }
    idx
}

/// Every window's elements side by side, `[b * c, kernel^2, oh * ow]`, with their plane
/// indices (`[kernel^2, oh * ow]`, `u32`) and the output dims.
fn gather(x: &Tensor, pool: PoolGeometry) -> Result<(Tensor, Tensor, [usize; 4])> {
    let (b, c, h, w) = x.dims4()?;
    let dims = [b, c, h, w];
    let out = pool::output_dims(dims, pool);
    let (taps, windows) = (pool.kernel * pool.kernel, out[2] * out[3]);
    let indices = Tensor::from_vec(window_indices(dims, pool), (taps, windows), x.device())?;
    let gathered = x
        .reshape((b * c, h * w))?
        .index_select(&indices.flatten_all()?, 1)?
        .reshape((b * c, taps, windows))?;
    Ok((gathered, indices, out))
}

/// The window maxima of `x` (`[batch, c, h, w]`) and their plane indices (`u32`).
pub(crate) fn max_pool2d(x: &Tensor, pool: PoolGeometry) -> Result<(Tensor, Tensor)> {
    let (gathered, indices, out) = gather(x, pool)?;
    let (planes, taps, windows) = gathered.dims3()?;
    let mut best = Tensor::new(f64::NEG_INFINITY, x.device())?
        .to_dtype(x.dtype())?
        .broadcast_as((planes, windows))?;
    let mut at = indices.get(0)?.broadcast_as((planes, windows))?;
    for tap in 0..taps {
        let value = gathered.narrow(1, tap, 1)?.squeeze(1)?;
        let better = value.gt(&best)?;
        best = better.where_cond(&value, &best)?;
        at = better.where_cond(&indices.get(tap)?.broadcast_as((planes, windows))?, &at)?;
    }
    Ok((best.reshape(&out[..])?, at.reshape(&out[..])?))
}

/// `unpool(e)`: each gradient of `e` (`[batch, c, oh, ow]`) added at its window's `argmax` in
/// a zero tensor of `dims`, window by window in row-major order as the host kernel adds them.
pub(crate) fn max_pool2d_vjp(
    e: &Tensor,
    argmax: &Tensor,
    dims: [usize; 4],
    pool: PoolGeometry,
) -> Result<Tensor> {
    let [b, c, h, w] = dims;
    let (planes, windows) = (b * c, e.elem_count() / (b * c).max(1));
    let k = pool.kernel;
    if pool.stride == k && h % k == 0 && w % k == 0 {
        // Windows that tile the plane exactly: each tap's gradient where the argmax is that
        // tap's element, laid back into the plane by a transpose (elementwise work only; the
        // scatter below runs one thread per plane).
        let (oh, ow) = (h / k, w / k);
        let taps = k * k;
        let indices = Tensor::from_vec(window_indices(dims, pool), (1, taps, windows), e.device())?;
        let hit = argmax.reshape((planes, 1, windows))?.broadcast_eq(&indices)?;
        let shape = (planes, taps, windows);
        let spread = hit.where_cond(
            &e.reshape((planes, 1, windows))?.broadcast_as(shape)?,
            &Tensor::zeros(shape, e.dtype(), e.device())?,
        )?;
        // [planes, i, j, oy, ox] -> [planes, oy, i, ox, j], which is the plane in row-major order.
        return spread
            .reshape((planes, k, k, oh, ow))?
            .permute((0, 3, 1, 4, 2))?
            .reshape((b, c, h, w));
    }
    Tensor::zeros((planes, h * w), e.dtype(), e.device())?
        .scatter_add(&argmax.reshape((planes, windows))?, &e.reshape((planes, windows))?, 1)?
        .reshape((b, c, h, w))
}

/// The window averages of `x` (`[batch, c, h, w]`): each window's sum divided by `kernel^2`
/// in the tensor's precision. (candle's own average pooling scales by an `f32` reciprocal on
/// CUDA, which is off by some 1e-8 in `f64`.)
pub(crate) fn avg_pool2d(x: &Tensor, pool: PoolGeometry) -> Result<Tensor> {
    let (gathered, _, out) = gather(x, pool)?;
    let taps = Tensor::new((pool.kernel * pool.kernel) as f64, x.device())?.to_dtype(x.dtype())?;
    gathered.sum(1)?.broadcast_div(&taps)?.reshape(&out[..])
}

/// `kernel^2 * spread(e)`: each gradient of `e` added to every element of its window (the
/// caller scales by `1 / kernel^2`, so the placement itself is exact).
pub(crate) fn avg_pool2d_vjp(e: &Tensor, dims: [usize; 4], pool: PoolGeometry) -> Result<Tensor> {
    let [b, c, _, _] = dims;
    let out = pool::output_dims(dims, pool);
    let ones = Tensor::ones((1, 1, pool.kernel, pool.kernel), e.dtype(), e.device())?;
    let [_, _, h, w] = dims;
    let placed =
        e.reshape((b * c, 1, out[2], out[3]))?.conv_transpose2d(&ones, 0, 0, pool.stride, 1)?;
    // Rows and columns at the bottom and right that no window covers get nothing.
    let (_, _, ph, pw) = placed.dims4()?;
    placed.pad_with_zeros(2, 0, h - ph)?.pad_with_zeros(3, 0, w - pw)?.reshape((b, c, h, w))
}
