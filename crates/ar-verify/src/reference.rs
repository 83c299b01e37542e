//! An independent host reference: the forward pass (dense, convolution, pooling, flatten) and
//! loss in plain f64 loops, sharing no code with the backends or with ar-core's VJPs, and central
//! finite differences on it.

use ar_backend::{Activation, Backend, ConvGeometry, PoolGeometry};
use ar_core::{Layer, Loss, Network};

/// One layer on the host.
#[derive(Clone, Debug)]
pub enum HostLayer {
    /// `h = f(W x + b)`.
    Dense {
        /// `[outputs * inputs]`, row-major `[out, in]`.
        weight: Vec<f64>,
        /// `[outputs]`.
        bias: Vec<f64>,
        /// Input width.
        inputs: usize,
        /// Output width.
        outputs: usize,
        /// Nonlinearity.
        activation: Activation,
    },
    /// `h = f(conv(x, K) + b)`.
    Conv {
        /// `[o, c, k, k]` row-major.
        weight: Vec<f64>,
        /// `[o]`.
        bias: Vec<f64>,
        /// Output channels.
        out_channels: usize,
        /// Kernel side.
        kernel: usize,
        /// Stride and padding.
        geometry: ConvGeometry,
        /// Nonlinearity.
        activation: Activation,
    },
    /// Max pooling (first maximum wins ties).
    MaxPool(PoolGeometry),
    /// Average pooling.
    AvgPool(PoolGeometry),
    /// Flattening.
    Flatten,
}

/// A network's parameters on the host, with its per-sample input shape.
#[derive(Clone, Debug)]
pub struct HostMlp {
    /// Layers, input first.
    pub layers: Vec<HostLayer>,
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
}

/// One sample's activity and its shape (`[n]` or `[c, h, w]`).
type Activity = (Vec<f64>, Vec<usize>);

impl HostMlp {
    /// Downloads a network's parameters.
    pub fn from_network<B: Backend>(net: &Network<B>) -> Self {
        let be = net.backend();
        let layers = net
            .layers
            .iter()
            .map(|l| match l {
                Layer::Dense(d) => {
                    let s = d.shape(be);
                    HostLayer::Dense {
                        weight: be.to_host(&d.weight),
                        bias: be.to_host(&d.bias),
                        inputs: s.inputs,
                        outputs: s.outputs,
                        activation: d.activation,
                    }
                }
                Layer::Conv2d(c) => {
                    let k = be.shape(&c.weight);
                    HostLayer::Conv {
                        weight: be.to_host(&c.weight),
                        bias: be.to_host(&c.bias),
                        out_channels: k[0],
                        kernel: k[2],
                        geometry: c.geometry,
                        activation: c.activation,
                    }
                }
                Layer::MaxPool2d(p) => HostLayer::MaxPool(*p),
                Layer::AvgPool2d(p) => HostLayer::AvgPool(*p),
                Layer::Flatten => HostLayer::Flatten,
            })
            .collect();
        HostMlp { layers, input_shape: net.input_shape().to_vec() }
    }

    /// The output (row-major `[batch, outputs]`) and, per sample, a record of every branch the
    /// forward pass took at a kink or a pooling choice (for detecting when a perturbation
    /// crosses one).
    pub fn forward(&self, x: &[f64], batch: usize) -> (Vec<f64>, Vec<bool>) {
        let n: usize = self.input_shape.iter().product();
        let (mut out, mut branches) = (Vec::new(), Vec::new());
        for b in 0..batch {
            let mut a: Activity = (x[b * n..(b + 1) * n].to_vec(), self.input_shape.clone());
            for layer in &self.layers {
                a = step(layer, a, &mut branches);
            }
            out.extend(a.0);
        }
        (out, branches)
    }

    /// The batch-mean loss.
    pub fn loss(&self, x: &[f64], targets: &[f64], batch: usize, loss: Loss) -> f64 {
        let classes = targets.len() / batch;
        loss.value(&self.forward(x, batch).0, targets, classes)
    }

    fn param_mut(&mut self, p: Param) -> &mut f64 {
        match &mut self.layers[p.layer] {
            HostLayer::Dense { weight, bias, .. } | HostLayer::Conv { weight, bias, .. } => {
                if p.is_bias {
                    &mut bias[p.index]
                } else {
                    &mut weight[p.index]
                }
            }
            _ => panic!("layer {} has no parameters", p.layer),
        }
    }

    /// `(weights, biases)` counts of layer `i` (0 for parameter-free layers).
    pub fn param_counts(&self, i: usize) -> (usize, usize) {
        match &self.layers[i] {
            HostLayer::Dense { weight, bias, .. } | HostLayer::Conv { weight, bias, .. } => {
                (weight.len(), bias.len())
            }
            _ => (0, 0),
        }
    }
}

/// One layer's forward map on one sample, recording kink sides and pooling choices.
fn step(layer: &HostLayer, (x, shape): Activity, branches: &mut Vec<bool>) -> Activity {
    let activate = |a: Vec<f64>, f: Activation, branches: &mut Vec<bool>| -> Vec<f64> {
        if f.has_kink() {
            branches.extend(a.iter().map(|&v| v > 0.0));
        }
        a.into_iter().map(|v| f.apply(v)).collect()
    };
    match layer {
        HostLayer::Dense { weight, bias, inputs, outputs, activation } => {
            assert_eq!(x.len(), *inputs, "reference: dense input size");
            let a: Vec<f64> = (0..*outputs)
                .map(|o| bias[o] + (0..*inputs).map(|i| weight[o * inputs + i] * x[i]).sum::<f64>())
                .collect();
            (activate(a, *activation, branches), vec![*outputs])
        }
        HostLayer::Conv { weight, bias, out_channels, kernel, geometry, activation } => {
            let (c, h, w) = (shape[0], shape[1], shape[2]);
            let (oh, ow) = (
                geometry.output_len(h, *kernel).unwrap(),
                geometry.output_len(w, *kernel).unwrap(),
            );
            let k = *kernel;
            let mut a = vec![0.0; out_channels * oh * ow];
            for o in 0..*out_channels {
                for y in 0..oh {
                    for xx in 0..ow {
                        let mut s = bias[o];
                        for ch in 0..c {
                            for i in 0..k {
                                for j in 0..k {
                                    let iy = (y * geometry.stride + i) as isize
                                        - geometry.padding as isize;
                                    let ix = (xx * geometry.stride + j) as isize
                                        - geometry.padding as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w
                                    {
                                        s += weight[((o * c + ch) * k + i) * k + j]
                                            * x[(ch * h + iy as usize) * w + ix as usize];
                                    }
                                }
                            }
                        }
                        a[(o * oh + y) * ow + xx] = s;
                    }
                }
            }
            (activate(a, *activation, branches), vec![*out_channels, oh, ow])
        }
        HostLayer::MaxPool(p) | HostLayer::AvgPool(p) => {
            let (c, h, w) = (shape[0], shape[1], shape[2]);
            let (oh, ow) = (p.output_len(h).unwrap(), p.output_len(w).unwrap());
            let mut out = vec![0.0; c * oh * ow];
            for ch in 0..c {
                for y in 0..oh {
                    for xx in 0..ow {
                        let window = (0..p.kernel).flat_map(|i| {
                            (0..p.kernel)
                                .map(move |j| (ch * h + y * p.stride + i) * w + xx * p.stride + j)
                        });
                        out[(ch * oh + y) * ow + xx] = if matches!(layer, HostLayer::MaxPool(_)) {
                            let (mut best, mut at) = (f64::NEG_INFINITY, 0);
                            for idx in window {
                                if x[idx] > best {
                                    (best, at) = (x[idx], idx);
                                }
                            }
                            branches.extend((0..usize::BITS).map(|bit| at >> bit & 1 == 1));
                            best
                        } else {
                            window.map(|idx| x[idx]).sum::<f64>() / (p.kernel * p.kernel) as f64
                        };
                    }
                }
            }
            (out, vec![c, oh, ow])
        }
        HostLayer::Flatten => {
            let n = x.len();
            (x, vec![n])
        }
    }
}

/// One scalar parameter: layer (0-based), weight or bias, flat index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// 0-based layer.
    pub layer: usize,
    /// Bias rather than weight.
    pub is_bias: bool,
    /// Flat index into the weight (row-major `[out, in]`) or bias.
    pub index: usize,
}

/// The central difference `(l(p + h) - l(p - h)) / 2h` with `h = cbrt(eps) max(1, |p|)`, or
/// `None` when the perturbation moves some unit across a kink (the derivative is undefined there).
pub fn central_difference(
    mlp: &HostMlp,
    p: Param,
    x: &[f64],
    t: &[f64],
    batch: usize,
    loss: Loss,
) -> Option<f64> {
    let mut m = mlp.clone();
    let theta = *m.param_mut(p);
    let h = f64::EPSILON.cbrt() * theta.abs().max(1.0);
    let base = m.forward(x, batch).1;
    *m.param_mut(p) = theta + h;
    let up = m.loss(x, t, batch, loss);
    let up_sides = m.forward(x, batch).1;
    *m.param_mut(p) = theta - h;
    let down = m.loss(x, t, batch, loss);
    let down_sides = m.forward(x, batch).1;
    if up_sides != base || down_sides != base {
        return None;
    }
    // The effective step: (theta + h) - (theta - h) as rounded.
    Some((up - down) / ((theta + h) - (theta - h)))
}
