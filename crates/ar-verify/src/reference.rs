//! An independent host reference: the MLP forward pass and loss in plain f64 loops, sharing no
//! code with the backends or with ar-core's VJPs, and central finite differences on it.

use ar_backend::{Activation, Backend};
use ar_core::{Loss, Network};

/// One dense layer's parameters on the host.
#[derive(Clone, Debug)]
pub struct HostDense {
    /// `[outputs * inputs]`, row-major `[out, in]`.
    pub weight: Vec<f64>,
    /// `[outputs]`.
    pub bias: Vec<f64>,
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// Nonlinearity.
    pub activation: Activation,
}

/// An MLP's parameters on the host.
#[derive(Clone, Debug)]
pub struct HostMlp {
    /// Layers, input first.
    pub layers: Vec<HostDense>,
}

impl HostMlp {
    /// Downloads a network's parameters.
    pub fn from_network<B: Backend>(net: &Network<B>) -> Self {
        let be = net.backend();
        let layers = net
            .layers
            .iter()
            .map(|l| {
                let d = l.as_dense();
                let s = d.shape(be);
                HostDense {
                    weight: be.to_host(&d.weight),
                    bias: be.to_host(&d.bias),
                    inputs: s.inputs,
                    outputs: s.outputs,
                    activation: d.activation,
                }
            })
            .collect();
        HostMlp { layers }
    }

    /// The output `h_L` (row-major `[batch, outputs]`) and the pre-activations of every layer.
    pub fn forward(&self, x: &[f64], batch: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
        let mut h = x.to_vec();
        let mut pres = Vec::new();
        for l in &self.layers {
            let mut a = vec![0.0; batch * l.outputs];
            for b in 0..batch {
                for o in 0..l.outputs {
                    let mut s = l.bias[o];
                    for i in 0..l.inputs {
                        s += l.weight[o * l.inputs + i] * h[b * l.inputs + i];
                    }
                    a[b * l.outputs + o] = s;
                }
            }
            h = a.iter().map(|&v| l.activation.apply(v)).collect();
            pres.push(a);
        }
        (h, pres)
    }

    /// The batch-mean loss.
    pub fn loss(&self, x: &[f64], targets: &[f64], batch: usize, loss: Loss) -> f64 {
        let classes = self.layers[self.layers.len() - 1].outputs;
        loss.value(&self.forward(x, batch).0, targets, classes)
    }

    /// For every unit with a kinked activation, which side of the kink its pre-activation is on.
    fn kink_sides(&self, x: &[f64], batch: usize) -> Vec<bool> {
        let (_, pres) = self.forward(x, batch);
        let mut sides = Vec::new();
        for (l, a) in self.layers.iter().zip(pres) {
            if l.activation.has_kink() {
                sides.extend(a.iter().map(|&v| v > 0.0));
            }
        }
        sides
    }

    fn param_mut(&mut self, p: Param) -> &mut f64 {
        let l = &mut self.layers[p.layer];
        if p.is_bias {
            &mut l.bias[p.index]
        } else {
            &mut l.weight[p.index]
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
    let base = m.kink_sides(x, batch);
    *m.param_mut(p) = theta + h;
    let up = m.loss(x, t, batch, loss);
    let up_sides = m.kink_sides(x, batch);
    *m.param_mut(p) = theta - h;
    let down = m.loss(x, t, batch, loss);
    let down_sides = m.kink_sides(x, batch);
    if up_sides != base || down_sides != base {
        return None;
    }
    // The effective step: (theta + h) - (theta - h) as rounded.
    Some((up - down) / ((theta + h) - (theta - h)))
}
