//! Stochastic gradient descent with optional (PyTorch-style) momentum.

use crate::grads::Gradients;
use crate::network::Network;
use ar_backend::Backend;

/// SGD: `u <- mu u + g; p <- p - lr u` (plain SGD when `mu = 0`), applied to every weight, bias
/// and learned feedback matrix, each with its own momentum buffer.
#[derive(Clone, Debug)]
pub struct Sgd<B: Backend> {
    /// Learning rate.
    pub lr: f64,
    /// Momentum `mu` in [0, 1).
    pub momentum: f64,
    velocity: Vec<Option<B::Tensor>>,
}

impl<B: Backend> Sgd<B> {
    /// SGD with learning rate `lr` and momentum `momentum`.
    pub fn new(lr: f64, momentum: f64) -> Self {
        Sgd { lr, momentum, velocity: Vec::new() }
    }

    /// The momentum buffers in parameter order (weight, bias, feedback per layer), for
    /// checkpoints.
    pub fn velocity(&self) -> &[Option<B::Tensor>] {
        &self.velocity
    }

    /// Applies one update of `grads` to `net`.
    pub fn step(&mut self, net: &mut Network<B>, grads: &Gradients<B>) {
        let be = net.backend().clone();
        let slots = 3 * net.depth();
        if self.velocity.len() != slots {
            self.velocity = vec![None; slots];
        }
        for (i, (layer, g)) in net.layers.iter_mut().zip(&grads.layers).enumerate() {
            let d = layer.as_dense_mut();
            self.apply(&be, 3 * i, &mut d.weight, &g.weight);
            self.apply(&be, 3 * i + 1, &mut d.bias, &g.bias);
            if let (Some(psi), Some(gpsi)) = (d.feedback.as_mut(), g.feedback.as_ref()) {
                self.apply(&be, 3 * i + 2, psi, gpsi);
            }
        }
    }

    fn apply(&mut self, be: &B, slot: usize, param: &mut B::Tensor, grad: &B::Tensor) {
        if self.momentum == 0.0 {
            be.axpby(-self.lr, grad, 1.0, param);
            return;
        }
        let u = self.velocity[slot].get_or_insert_with(|| be.zeros(&be.shape(grad)));
        be.axpby(1.0, grad, self.momentum, u);
        be.axpby(-self.lr, u, 1.0, param);
    }
}
