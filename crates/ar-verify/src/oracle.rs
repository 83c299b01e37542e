//! candle's autograd as a gradient oracle: the network and its loss built from candle `Var`s
//! and candle's own differentiable operations, differentiated by `backward()`. It shares no
//! computation with ar-core (not its VJPs, losses or activations; only the host description of
//! the layers, [`HostLayer`]), so agreement with ar-core's backprop and AR is an independent
//! check of both.
//!
//! At a kink (a pre-activation exactly 0 under relu or leaky-relu) candle's derivative differs
//! from ours (`relu'(0)` is 1 in candle, 0 here); random inputs hit it with probability zero.

use ar_backend::Activation;
use ar_candle::Candle;
use ar_core::{HostLayer, LayerShape, Loss};
use candle_core::{DType, Tensor, Var};

/// Why the oracle could not run.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// An inconsistent input, such as a weight of the wrong length.
    #[error("oracle: {0}")]
    InvalidInput(String),
    /// candle failed.
    #[error("oracle: candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Per-layer gradients on the host: `(dl/dW` row-major in PyTorch's layout, `dl/db)`, input
/// layer first; empty vectors for parameter-free layers.
pub type HostGradients = Vec<(Vec<f64>, Vec<f64>)>;

/// The batch-mean loss of a sequential network on `x` (`[batch, input_shape..]`, row-major)
/// against `targets` (`[batch, classes]`) and its gradient with respect to every weight and bias
/// (empty vectors for parameter-free layers), by candle's autograd on `be`'s device and
/// precision. Max pooling is taken only with its stride equal to its window, as a max reduction
/// over windows (tied maxima would all receive the gradient: keep ties out of the inputs).
pub fn network_loss_and_gradients(
    be: &Candle,
    layers: &[HostLayer],
    input_shape: &[usize],
    x: &[f64],
    targets: &[f64],
    batch: usize,
    loss: Loss,
) -> Result<(f64, HostGradients), OracleError> {
    let bad = |m: String| Err(OracleError::InvalidInput(m));
    if layers.is_empty() || batch == 0 {
        return bad("the network has no layers or the batch is empty".into());
    }
    let upload = |data: &[f64], shape: &[usize]| -> Result<Tensor, OracleError> {
        Ok(Tensor::from_vec(data.to_vec(), shape, be.device())?.to_dtype(be.dtype())?)
    };
    let mut params = Vec::with_capacity(layers.len());
    for (k, l) in layers.iter().enumerate() {
        if l.parents.is_empty() || l.parents.iter().any(|&j| j > k) {
            return bad(format!("layer {} reads {:?}, not nodes below it", k + 1, l.parents));
        }
        let Some(shape) = l.shape.weight_shape() else {
            params.push(None);
            continue;
        };
        let (weights, biases) = (shape.iter().product::<usize>(), l.shape.bias_len());
        if l.weight.len() != weights || l.bias.len() != biases {
            return bad(format!(
                "layer {} has {} weights and {} biases, expected {weights} and {biases}",
                k + 1,
                l.weight.len(),
                l.bias.len()
            ));
        }
        let w = Var::from_tensor(&upload(&l.weight, &shape)?)?;
        params.push(Some((w, Var::from_tensor(&upload(&l.bias, &[biases])?)?)));
    }

    let mut shape = vec![batch];
    shape.extend_from_slice(input_shape);
    if x.len() != shape.iter().product::<usize>() {
        return bad(format!("{} inputs for a batch of shape {shape:?}", x.len()));
    }
    // Every node's value: node 0 the input, node k layer k's output.
    let mut nodes = vec![upload(x, &shape)?];
    for (l, p) in layers.iter().zip(&params) {
        let h = &nodes[l.parents[0]];
        let next = match (l.shape, p) {
            (LayerShape::Dense { activation: f, .. }, Some((w, b))) => {
                let a = h.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
                activation(f, &a)?
            }
            (
                LayerShape::Conv2d { out_channels, stride, padding, activation: f, .. },
                Some((w, b)),
            ) => {
                let a = h.conv2d(w.as_tensor(), padding, stride, 1, 1)?;
                let a = a.broadcast_add(&b.as_tensor().reshape((1, out_channels, 1, 1))?)?;
                activation(f, &a)?
            }
            (LayerShape::MaxPool2d { kernel, stride }, None) if kernel == stride => {
                // As window maxima of a reshaped tensor: candle's max_pool2d backward scales a
                // unique maximum's gradient by 1 / kernel^2, while the backward of a max
                // reduction routes it whole.
                let (b, c, hh, ww) = h.dims4()?;
                let (oh, ow) = (hh / kernel, ww / kernel);
                let windows = h.narrow(2, 0, oh * kernel)?.narrow(3, 0, ow * kernel)?;
                windows.reshape((b, c, oh, kernel, ow, kernel))?.max(5)?.max(3)?
            }
            (LayerShape::MaxPool2d { .. }, None) => {
                return bad("max pooling only with its stride equal to its window".into());
            }
            (LayerShape::AvgPool2d { kernel, stride }, None) => {
                h.avg_pool2d_with_stride(kernel, stride)?
            }
            (LayerShape::Flatten, None) => h.flatten_from(1)?,
            (LayerShape::GlobalAvgPool, None) => h.mean(3)?.mean(2)?,
            (LayerShape::Add, None) => {
                let mut sum = h.clone();
                for &j in &l.parents[1..] {
                    sum = sum.add(&nodes[j])?;
                }
                sum
            }
            _ => unreachable!("parameters are made per layer kind above"),
        };
        nodes.push(next);
    }
    let h = nodes.pop().expect("a network has layers");
    let classes = h.dims()[1];
    if targets.len() != batch * classes {
        return bad(format!("{} targets for {batch} x {classes} outputs", targets.len()));
    }
    let t = upload(targets, &[batch, classes])?;
    let per_batch = match loss {
        Loss::Mse => (h.sub(&t)?.sqr()?.sum_all()? * 0.5)?,
        Loss::CrossEntropy => {
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
    let download = |v: &Var| -> Result<Vec<f64>, OracleError> {
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
        .collect::<Result<Vec<_>, OracleError>>()?;
    Ok((value, grads))
}

/// `f(a)` from differentiable candle operations whose intermediates stay finite everywhere.
fn activation(f: Activation, a: &Tensor) -> candle_core::Result<Tensor> {
    match f {
        Activation::Identity => Ok(a.clone()),
        Activation::Relu => a.relu(),
        // a for a > 0, 0.01 a otherwise: relu(a) - 0.01 relu(-a).
        Activation::LeakyRelu => {
            a.relu()?.sub(&a.neg()?.relu()?.affine(Activation::LeakyRelu.derivative(-1.0f64), 0.0)?)
        }
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
    use ar_backend::Precision;

    fn dense(weight: Vec<f64>, bias: Vec<f64>, inputs: usize, activation: Activation) -> HostLayer {
        let outputs = bias.len();
        let parents = vec![0];
        HostLayer {
            shape: LayerShape::Dense { inputs, outputs, activation },
            weight,
            bias,
            parents,
        }
    }

    /// The loss and gradients of a dense network on a batch of `x.len() / inputs` samples.
    fn dense_oracle(
        be: &Candle,
        layers: &[HostLayer],
        x: &[f64],
        t: &[f64],
        loss: Loss,
    ) -> Result<(f64, HostGradients), OracleError> {
        let inputs = match layers.first().map(|l| l.shape) {
            Some(LayerShape::Dense { inputs, .. }) => inputs,
            _ => 1,
        };
        network_loss_and_gradients(be, layers, &[inputs], x, t, x.len() / inputs, loss)
    }

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
    }

    /// One identity layer with MSE: `y = W x + b`, `l = 1/(2B) sum_b ||y_b - t_b||^2`, so
    /// `dl/dW = 1/B sum_b (y_b - t_b) x_b^T` and `dl/db = 1/B sum_b (y_b - t_b)`.
    #[test]
    fn linear_mse_gradient_in_closed_form() {
        let layer =
            dense(vec![1.0, 2.0, -1.0, 0.5, 0.0, 3.0], vec![0.5, -1.0], 3, Activation::Identity);
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
            let (l, g) =
                dense_oracle(&be, std::slice::from_ref(&layer), &x, &t, Loss::Mse).unwrap();
            let tol = if p == Precision::F64 { 1e-15 } else { 1e-6 };
            assert!((l - 8.25).abs() <= tol * 8.25, "{p:?}: loss {l}");
            assert!(close(&g[0].0, &dw, tol) && close(&g[0].1, &db, tol), "{p:?}: {g:?}");
        }
    }

    /// One identity layer with cross-entropy on a single sample: `dl/dy = softmax(y) - t`, so
    /// `dl/dW = (softmax(y) - t) x^T` and `dl/db = softmax(y) - t`.
    #[test]
    fn linear_cross_entropy_gradient_in_closed_form() {
        let layer = dense(
            vec![1.0, -1.0, 0.0, 2.0, 0.5, 0.5],
            vec![0.0, 1.0, -0.5],
            2,
            Activation::Identity,
        );
        let x = [1.0, 2.0];
        let t = [0.0, 1.0, 0.0];
        // y = [1 - 2, 0 + 4 + 1, 0.5 + 1 - 0.5] = [-1, 5, 1].
        let y = [-1.0f64, 5.0, 1.0];
        let z: f64 = y.iter().map(|v| v.exp()).sum();
        let e: Vec<f64> = y.iter().zip(&t).map(|(v, t)| v.exp() / z - t).collect();
        let dw: Vec<f64> = e.iter().flat_map(|e| x.iter().map(move |x| e * x)).collect();
        let be = Candle::cpu(Precision::F64);
        let (l, g) = dense_oracle(&be, &[layer], &x, &t, Loss::CrossEntropy).unwrap();
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
                let layer = dense(vec![1.0], vec![a - 0.25], 1, f);
                let (_, g) = dense_oracle(&be, &[layer], &[0.25], &[0.0], Loss::Mse).unwrap();
                let want = f.apply(a) * f.derivative(a);
                let got = g[0].1[0];
                assert!((got - want).abs() <= 1e-14 * (1.0 + want.abs()), "{f} at {a}: {got}");
            }
        }
    }

    #[test]
    fn inconsistent_inputs_are_errors() {
        let be = Candle::cpu(Precision::F64);
        let layer = dense(vec![1.0; 5], vec![0.0; 2], 3, Activation::Tanh);
        let err = dense_oracle(&be, &[layer], &[0.0; 3], &[0.0; 2], Loss::Mse);
        assert!(err.unwrap_err().to_string().contains("5 weights"));
        assert!(network_loss_and_gradients(&be, &[], &[1], &[0.0], &[0.0], 1, Loss::Mse).is_err());
    }
}
