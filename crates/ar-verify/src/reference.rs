//! An independent host reference: the forward pass (dense, convolution, pooling, flatten,
//! global average pooling, merge nodes on any DAG) and loss in plain f64 loops, sharing no code
//! with the backends or with ar-core's VJPs and graph code, and central finite differences on
//! it.

use ar_backend::{Activation, Backend, ConvGeometry, PoolGeometry};
use ar_core::{HostLayer, LayerShape, Loss, Network};

/// A network's layers and parameters on the host, with its per-sample input shape.
#[derive(Clone, Debug)]
pub struct HostNet {
    /// Layers, input first.
    pub layers: Vec<HostLayer>,
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
}

/// One sample's activity and its shape (`[n]` or `[c, h, w]`).
type Activity = (Vec<f64>, Vec<usize>);

impl HostNet {
    /// Downloads a network's parameters.
    pub fn from_network<B: Backend>(net: &Network<B>) -> Self {
        HostNet { layers: net.to_host(), input_shape: net.input_shape().to_vec() }
    }

    /// The output (row-major `[batch, outputs]`) and, per sample, a record of every branch the
    /// forward pass took at a kink or a pooling choice (for detecting when a perturbation
    /// crosses one).
    pub fn forward(&self, x: &[f64], batch: usize) -> (Vec<f64>, Vec<bool>) {
        let n: usize = self.input_shape.iter().product();
        let (mut out, mut branches) = (Vec::new(), Vec::new());
        for b in 0..batch {
            // Every node's value kept: node 0 the sample, node k layer k's output.
            let mut nodes: Vec<Activity> =
                vec![(x[b * n..(b + 1) * n].to_vec(), self.input_shape.clone())];
            for layer in &self.layers {
                let a = match layer.shape {
                    LayerShape::Add => {
                        let mut sum = nodes[layer.parents[0]].clone();
                        for &p in &layer.parents[1..] {
                            assert_eq!(nodes[p].1, sum.1, "reference: merge of unequal shapes");
                            for (s, v) in sum.0.iter_mut().zip(&nodes[p].0) {
                                *s += v;
                            }
                        }
                        sum
                    }
                    _ => step(layer, nodes[layer.parents[0]].clone(), &mut branches),
                };
                nodes.push(a);
            }
            out.extend(nodes.pop().expect("a network has layers").0);
        }
        (out, branches)
    }

    /// The batch-mean loss.
    pub fn loss(&self, x: &[f64], targets: &[f64], batch: usize, loss: Loss) -> f64 {
        let classes = targets.len() / batch;
        loss.value(&self.forward(x, batch).0, targets, classes)
    }

    fn param_mut(&mut self, p: Param) -> &mut f64 {
        let layer = &mut self.layers[p.layer];
        if p.is_bias {
            &mut layer.bias[p.index]
        } else {
            &mut layer.weight[p.index]
        }
    }

    /// `(weights, biases)` counts of layer `i` (0 for parameter-free layers).
    pub fn param_counts(&self, i: usize) -> (usize, usize) {
        (self.layers[i].weight.len(), self.layers[i].bias.len())
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
    let (weight, bias) = (&layer.weight, &layer.bias);
    match layer.shape {
        LayerShape::Dense { inputs, outputs, activation } => {
            assert_eq!(x.len(), inputs, "reference: dense input size");
            let a: Vec<f64> = (0..outputs)
                .map(|o| bias[o] + (0..inputs).map(|i| weight[o * inputs + i] * x[i]).sum::<f64>())
                .collect();
            (activate(a, activation, branches), vec![outputs])
        }
        LayerShape::Conv2d { out_channels, kernel, stride, padding, activation, .. } => {
            let geometry = ConvGeometry { stride, padding };
            let (c, h, w) = (shape[0], shape[1], shape[2]);
            let (oh, ow) =
                (geometry.output_len(h, kernel).unwrap(), geometry.output_len(w, kernel).unwrap());
            let k = kernel;
            let mut a = vec![0.0; out_channels * oh * ow];
            for o in 0..out_channels {
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
            (activate(a, activation, branches), vec![out_channels, oh, ow])
        }
        LayerShape::MaxPool2d { kernel, stride } | LayerShape::AvgPool2d { kernel, stride } => {
            let p = PoolGeometry { kernel, stride };
            let max = matches!(layer.shape, LayerShape::MaxPool2d { .. });
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
                        out[(ch * oh + y) * ow + xx] = if max {
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
        LayerShape::Flatten => {
            let n = x.len();
            (x, vec![n])
        }
        LayerShape::GlobalAvgPool => {
            let (c, plane) = (shape[0], shape[1] * shape[2]);
            let means =
                (0..c).map(|ch| x[ch * plane..(ch + 1) * plane].iter().sum::<f64>() / plane as f64);
            (means.collect(), vec![c])
        }
        LayerShape::Add => unreachable!("merge nodes are summed by the caller"),
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
    net: &HostNet,
    p: Param,
    x: &[f64],
    t: &[f64],
    batch: usize,
    loss: Loss,
) -> Option<f64> {
    let mut m = net.clone();
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
