//! candle's autograd as a gradient oracle: the MLP and its loss built from candle `Var`s and
//! candle's own differentiable operations, differentiated by `backward()`. It shares no code with
//! ar-core (not its VJPs, losses or activations), so agreement with ar-core's backprop and AR is
//! an independent check of both.
//!
//! At a kink (a pre-activation exactly 0 under relu or leaky-relu) candle's derivative differs
//! from ours (`relu'(0)` is 1 in candle, 0 here); random inputs hit it with probability zero.

use crate::leaky_relu_slope;
use crate::{Candle, CandleError};
use ar_backend::Activation;
use candle_core::{DType, Tensor, Var};

/// One dense layer `h_out = f(h_in W^T + b)` on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostLayer {
    /// `[outputs * inputs]`, row-major `[out, in]` (PyTorch's layout).
    pub weight: Vec<f64>,
    /// `[outputs]`.
    pub bias: Vec<f64>,
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// Nonlinearity `f`.
    pub activation: Activation,
}

/// The loss, averaged over the batch (the same definitions as ar-core's, written again here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OracleLoss {
    /// `l = 1/2 ||h_L - t||^2` per sample.
    Mse,
    /// Softmax cross-entropy on `h_L` as logits: `l = -sum_i t_i log softmax(h_L)_i` per sample.
    CrossEntropy,
}

/// Per-layer gradients on the host: `(dl/dW` row-major `[out, in]`, `dl/db)`, input layer first.
pub type HostGradients = Vec<(Vec<f64>, Vec<f64>)>;

/// One layer of a network for [`network_loss_and_gradients`]: dense layers as [`HostLayer`],
/// convolutions (PyTorch's `[out, in, k, k]` kernels), pooling and flatten.
#[derive(Clone, Debug, PartialEq)]
pub enum OracleLayer {
    /// A fully connected layer.
    Dense(HostLayer),
    /// `h = f(conv(x, K) + b)`.
    Conv {
        /// `[out_channels * in_channels * kernel * kernel]`, row-major.
        weight: Vec<f64>,
        /// `[out_channels]`.
        bias: Vec<f64>,
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Kernel side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding.
        padding: usize,
        /// Nonlinearity.
        activation: Activation,
    },
    /// Max pooling with its stride equal to its window, built as a max reduction over windows
    /// (tied maxima would all receive the gradient: keep ties out of the inputs).
    MaxPool {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Average pooling.
    AvgPool {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// `[batch, c, h, w]` to `[batch, c h w]`.
    Flatten,
}

/// The batch-mean loss of the MLP on `x` (`[batch, inputs]`, row-major) against `targets`
/// (`[batch, outputs]`), and its gradient with respect to every weight and bias, computed by
/// candle's autograd on `be`'s device and precision.
pub fn mlp_loss_and_gradients(
    be: &Candle,
    layers: &[HostLayer],
    x: &[f64],
    targets: &[f64],
    batch: usize,
    loss: OracleLoss,
) -> Result<(f64, HostGradients), CandleError> {
    check_inputs(layers, x, targets, batch)?;
    let general: Vec<OracleLayer> = layers.iter().cloned().map(OracleLayer::Dense).collect();
    network_loss_and_gradients(be, &general, &[layers[0].inputs], x, targets, batch, loss)
}

/// The batch-mean loss of any sequential network on `x` (`[batch, input_shape..]`, row-major)
/// and its gradient with respect to every weight and bias (empty vectors for parameter-free
/// layers), by candle's autograd on `be`'s device and precision.
pub fn network_loss_and_gradients(
    be: &Candle,
    layers: &[OracleLayer],
    input_shape: &[usize],
    x: &[f64],
    targets: &[f64],
    batch: usize,
    loss: OracleLoss,
) -> Result<(f64, HostGradients), CandleError> {
    let upload = |data: &[f64], shape: &[usize]| -> Result<Tensor, CandleError> {
        Ok(Tensor::from_vec(data.to_vec(), shape, be.device())?.to_dtype(be.dtype())?)
    };
    let params = layers
        .iter()
        .map(|l| match l {
            OracleLayer::Dense(l) => Ok(Some((
                Var::from_tensor(&upload(&l.weight, &[l.outputs, l.inputs])?)?,
                Var::from_tensor(&upload(&l.bias, &[l.outputs])?)?,
            ))),
            OracleLayer::Conv { weight, bias, in_channels, out_channels, kernel, .. } => {
                Ok(Some((
                    Var::from_tensor(&upload(
                        weight,
                        &[*out_channels, *in_channels, *kernel, *kernel],
                    )?)?,
                    Var::from_tensor(&upload(bias, &[*out_channels])?)?,
                )))
            }
            _ => Ok(None),
        })
        .collect::<Result<Vec<_>, CandleError>>()?;

    let mut shape = vec![batch];
    shape.extend_from_slice(input_shape);
    if x.len() != shape.iter().product::<usize>() {
        return Err(CandleError::InvalidInput(format!(
            "{} inputs for a batch of shape {shape:?}",
            x.len()
        )));
    }
    let mut h = upload(x, &shape)?;
    for (l, p) in layers.iter().zip(&params) {
        h = match (l, p) {
            (OracleLayer::Dense(l), Some((w, b))) => {
                let a = h.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
                activation(l.activation, &a)?
            }
            (
                OracleLayer::Conv { out_channels, stride, padding, activation: f, .. },
                Some((w, b)),
            ) => {
                let a = h.conv2d(w.as_tensor(), *padding, *stride, 1, 1)?;
                let a = a.broadcast_add(&b.as_tensor().reshape((1, *out_channels, 1, 1))?)?;
                activation(*f, &a)?
            }
            (OracleLayer::MaxPool { kernel, stride }, None) if kernel == stride => {
                // As window maxima of a reshaped tensor: candle's max_pool2d backward scales a
                // unique maximum's gradient by 1 / kernel^2, while the backward of a max
                // reduction routes it whole.
                let (b, c, hh, ww) = h.dims4()?;
                let (oh, ow) = (hh / kernel, ww / kernel);
                let windows = h.narrow(2, 0, oh * kernel)?.narrow(3, 0, ow * kernel)?;
                windows.reshape((b, c, oh, *kernel, ow, *kernel))?.max(5)?.max(3)?
            }
            (OracleLayer::MaxPool { .. }, None) => {
                return Err(CandleError::InvalidInput(
                    "the oracle takes max pooling only with its stride equal to its window".into(),
                ));
            }
            (OracleLayer::AvgPool { kernel, stride }, None) => {
                h.avg_pool2d_with_stride(*kernel, *stride)?
            }
            (OracleLayer::Flatten, None) => h.flatten_from(1)?,
            _ => unreachable!("parameters are made per layer kind above"),
        };
    }
    let classes = h.dims()[1];
    if targets.len() != batch * classes {
        return Err(CandleError::InvalidInput(format!(
            "{} targets for {batch} x {classes} outputs",
            targets.len()
        )));
    }
    let t = upload(targets, &[batch, classes])?;
    let per_batch = match loss {
        OracleLoss::Mse => (h.sub(&t)?.sqr()?.sum_all()? * 0.5)?,
        OracleLoss::CrossEntropy => {
            // log softmax(h) = (h - m) - ln sum exp(h - m), with the row max m held constant
            // (the value does not depend on m, so neither does the gradient).
            let shifted = h.broadcast_sub(&h.max_keepdim(1)?.detach())?;
            let log_z = shifted.exp()?.sum_keepdim(1)?.log()?;
            let log_p = shifted.broadcast_sub(&log_z)?;
            t.mul(&log_p)?.sum_all()?.neg()?
        }
    };
    let mean = (per_batch / batch as f64)?;
    let value = mean.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let store = mean.backward()?;
    let download = |v: &Var| -> Result<Vec<f64>, CandleError> {
        match store.get(v.as_tensor()) {
            Some(g) => Ok(g.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?),
            // A parameter the loss does not reach has gradient zero.
            None => Ok(vec![0.0; v.as_tensor().elem_count()]),
        }
    };
    let grads = params
        .iter()
        .map(|p| match p {
            Some((w, b)) => Ok((download(w)?, download(b)?)),
            None => Ok((Vec::new(), Vec::new())),
        })
        .collect::<Result<Vec<_>, CandleError>>()?;
    Ok((value, grads))
}

/// The per-layer gradients of [`mlp_loss_and_gradients`].
pub fn mlp_gradients(
    be: &Candle,
    layers: &[HostLayer],
    x: &[f64],
    targets: &[f64],
    batch: usize,
    loss: OracleLoss,
) -> Result<HostGradients, CandleError> {
    Ok(mlp_loss_and_gradients(be, layers, x, targets, batch, loss)?.1)
}

fn check_inputs(
    layers: &[HostLayer],
    x: &[f64],
    targets: &[f64],
    batch: usize,
) -> Result<(), CandleError> {
    let bad = |msg: String| Err(CandleError::InvalidInput(msg));
    let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
        return bad("the network has no layers".into());
    };
    if batch == 0 {
        return bad("the batch is empty".into());
    }
    for (k, l) in layers.iter().enumerate() {
        if l.weight.len() != l.inputs * l.outputs || l.bias.len() != l.outputs {
            return bad(format!(
                "layer {} is {}x{} but has {} weights and {} biases",
                k + 1,
                l.outputs,
                l.inputs,
                l.weight.len(),
                l.bias.len()
            ));
        }
        if k > 0 && layers[k - 1].outputs != l.inputs {
            return bad(format!(
                "layer {} takes {} inputs but layer {} gives {}",
                k + 1,
                l.inputs,
                k,
                layers[k - 1].outputs
            ));
        }
    }
    if x.len() != batch * first.inputs || targets.len() != batch * last.outputs {
        return bad(format!(
            "{} inputs and {} targets for a batch of {batch} of width {} -> {}",
            x.len(),
            targets.len(),
            first.inputs,
            last.outputs
        ));
    }
    Ok(())
}

/// `f(a)` from differentiable candle operations whose intermediates stay finite everywhere.
fn activation(f: Activation, a: &Tensor) -> candle_core::Result<Tensor> {
    match f {
        Activation::Identity => Ok(a.clone()),
        Activation::Relu => a.relu(),
        // a for a > 0, 0.01 a otherwise: relu(a) - 0.01 relu(-a).
        Activation::LeakyRelu => a.relu()?.sub(&a.neg()?.relu()?.affine(leaky_relu_slope(), 0.0)?),
        Activation::Tanh => a.tanh(),
        // With e = exp(-|a|) (never overflows): 1 / (1 + e) for a >= 0, e / (1 + e) otherwise.
        Activation::Sigmoid => {
            let e = a.abs()?.neg()?.exp()?;
            let one_plus = (&e + 1.0)?;
            a.ge(0.0)?.where_cond(&one_plus.recip()?, &e.div(&one_plus)?)
        }
        // ln(1 + e^a) = relu(a) + ln(1 + exp(-|a|)).
        Activation::Softplus => a.relu()?.add(&(a.abs()?.neg()?.exp()? + 1.0)?.log()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Precision;

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
    }

    /// One identity layer with MSE: `y = W x + b`, `l = 1/(2B) sum_b ||y_b - t_b||^2`, so
    /// `dl/dW = 1/B sum_b (y_b - t_b) x_b^T` and `dl/db = 1/B sum_b (y_b - t_b)`.
    #[test]
    fn linear_mse_gradient_in_closed_form() {
        let layer = HostLayer {
            weight: vec![1.0, 2.0, -1.0, 0.5, 0.0, 3.0],
            bias: vec![0.5, -1.0],
            inputs: 3,
            outputs: 2,
            activation: Activation::Identity,
        };
        let x = [1.0, 0.0, 2.0, -1.0, 1.0, 1.0];
        let t = [1.0, 0.0, 0.0, 1.0];
        // y_1 = [1 - 2 + 0.5, 0.5 + 6 - 1] = [-0.5, 5.5], e_1 = [-1.5, 5.5];
        // y_2 = [-1 + 2 - 1 + 0.5, -0.5 + 3 - 1] = [0.5, 1.5], e_2 = [0.5, 0.5].
        // l = ((2.25 + 30.25) + (0.25 + 0.25)) / 4 = 8.25.
        // dW = (e_1 x_1^T + e_2 x_2^T) / 2, db = (e_1 + e_2) / 2.
        let dw = [
            (-1.5 * 1.0 - 0.5 * 1.0) / 2.0,
            (0.0 + 0.5 * 1.0) / 2.0,
            (-1.5 * 2.0 + 0.5 * 1.0) / 2.0,
            (5.5 * 1.0 - 0.5 * 1.0) / 2.0,
            (0.0 + 0.5 * 1.0) / 2.0,
            (5.5 * 2.0 + 0.5 * 1.0) / 2.0,
        ];
        let db = [(-1.5 + 0.5) / 2.0, (5.5 + 0.5) / 2.0];
        for p in [Precision::F64, Precision::F32] {
            let be = Candle::cpu(p);
            let (l, g) = mlp_loss_and_gradients(
                &be,
                std::slice::from_ref(&layer),
                &x,
                &t,
                2,
                OracleLoss::Mse,
            )
            .unwrap();
            let tol = if p == Precision::F64 { 1e-15 } else { 1e-6 };
            assert!((l - 8.25).abs() <= tol * 8.25, "{p:?}: loss {l}");
            assert!(close(&g[0].0, &dw, tol) && close(&g[0].1, &db, tol), "{p:?}: {g:?}");
        }
    }

    /// One identity layer with cross-entropy on a single sample: `dl/dy = softmax(y) - t`, so
    /// `dl/dW = (softmax(y) - t) x^T` and `dl/db = softmax(y) - t`.
    #[test]
    fn linear_cross_entropy_gradient_in_closed_form() {
        let layer = HostLayer {
            weight: vec![1.0, -1.0, 0.0, 2.0, 0.5, 0.5],
            bias: vec![0.0, 1.0, -0.5],
            inputs: 2,
            outputs: 3,
            activation: Activation::Identity,
        };
        let x = [1.0, 2.0];
        let t = [0.0, 1.0, 0.0];
        // y = [1 - 2, 0 + 4 + 1, 0.5 + 1 - 0.5] = [-1, 5, 1].
        let y = [-1.0f64, 5.0, 1.0];
        let z: f64 = y.iter().map(|v| v.exp()).sum();
        let e: Vec<f64> = y.iter().zip(&t).map(|(v, t)| v.exp() / z - t).collect();
        let dw: Vec<f64> = e.iter().flat_map(|e| x.iter().map(move |x| e * x)).collect();
        let be = Candle::cpu(Precision::F64);
        let (l, g) =
            mlp_loss_and_gradients(&be, &[layer], &x, &t, 1, OracleLoss::CrossEntropy).unwrap();
        assert!((l - (z.ln() - 5.0)).abs() < 1e-15, "loss {l}");
        assert!(close(&g[0].0, &dw, 1e-15) && close(&g[0].1, &e, 1e-15), "{g:?}");
    }

    /// Every activation's derivative through the oracle: with a 1x1 identity-weighted layer
    /// `h = f(w x + b)` and MSE against 0, `dl/db = f(a) f'(a)` at `a = w x + b`.
    #[test]
    fn activations_differentiate_to_the_reference_derivatives() {
        let be = Candle::cpu(Precision::F64);
        for f in Activation::ALL {
            for a in [-800.0, -3.0, -0.4, 0.7, 2.5, 800.0] {
                let layer = HostLayer {
                    weight: vec![1.0],
                    bias: vec![a - 0.25],
                    inputs: 1,
                    outputs: 1,
                    activation: f,
                };
                let (_, g) =
                    mlp_loss_and_gradients(&be, &[layer], &[0.25], &[0.0], 1, OracleLoss::Mse)
                        .unwrap();
                let want = f.apply(a) * f.derivative(a);
                let got = g[0].1[0];
                assert!((got - want).abs() <= 1e-14 * (1.0 + want.abs()), "{f} at {a}: {got}");
            }
        }
    }

    #[test]
    fn inconsistent_inputs_are_errors() {
        let be = Candle::cpu(Precision::F64);
        let layer = HostLayer {
            weight: vec![1.0; 5],
            bias: vec![0.0; 2],
            inputs: 3,
            outputs: 2,
            activation: Activation::Tanh,
        };
        let err = mlp_gradients(&be, &[layer], &[0.0; 3], &[0.0; 2], 1, OracleLoss::Mse);
        assert!(err.unwrap_err().to_string().contains("5 weights"));
        assert!(mlp_gradients(&be, &[], &[], &[], 1, OracleLoss::Mse).is_err());
    }
}
