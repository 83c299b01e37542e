//! Layer kinds: their parameters, forward map and vector-Jacobian products.

use ar_backend::{Activation, Backend};

/// The shape of a dense layer: `h = f(W x + b)` with `W` of shape `[outputs, inputs]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseShape {
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// The nonlinearity `f`.
    pub activation: Activation,
}

/// A fully connected layer `h = f(W x + b)`.
#[derive(Clone, Debug)]
pub struct Dense<B: Backend> {
    /// `W`, `[outputs, inputs]` (PyTorch's layout).
    pub weight: B::Tensor,
    /// `b`, `[outputs]`.
    pub bias: B::Tensor,
    /// `f`.
    pub activation: Activation,
    /// `psi`, `[inputs, outputs]`: the backward matrix used instead of `W^T` by the learned and
    /// random feedback variants; `None` where weight transport is used.
    pub feedback: Option<B::Tensor>,
}

impl<B: Backend> Dense<B> {
    /// The layer's shape.
    pub fn shape(&self, be: &B) -> DenseShape {
        let s = be.shape(&self.weight);
        DenseShape { inputs: s[1], outputs: s[0], activation: self.activation }
    }

    /// `out <- x W^T + b`: the pre-activation of a `[batch, inputs]` batch.
    pub fn pre_activation_into(&self, be: &B, x: &B::Tensor, out: &mut B::Tensor) {
        be.gemm(1.0, x, false, &self.weight, true, 0.0, out);
        be.add_row(out, &self.bias);
    }

    /// `out <- alpha * e B + beta * out`, where `e` is `[batch, outputs]` (already multiplied by
    /// `f'` where the variant asks for it) and `B` is `W` (exact: this is `J^T v` in row layout)
    /// or `psi^T` when `use_feedback` is set.
    pub fn backward_into(
        &self,
        be: &B,
        e: &B::Tensor,
        use_feedback: bool,
        alpha: f64,
        beta: f64,
        out: &mut B::Tensor,
    ) {
        if use_feedback {
            let psi = self.feedback.as_ref().expect("feedback weights checked by the trainer");
            be.gemm(alpha, e, false, psi, true, beta, out);
        } else {
            be.gemm(alpha, e, false, &self.weight, false, beta, out);
        }
    }
}

/// One layer of a sequential network. An enum (rather than trait objects) keeps every layer
/// kind's forward map, VJP and gradients side by side and lets the relaxation loop stay one loop.
#[derive(Clone, Debug)]
pub enum Layer<B: Backend> {
    /// A fully connected layer.
    Dense(Dense<B>),
}

impl<B: Backend> Layer<B> {
    /// The dense layer inside (every layer kind today).
    pub fn as_dense(&self) -> &Dense<B> {
        match self {
            Layer::Dense(d) => d,
        }
    }

    /// Mutable access to the dense layer inside.
    pub fn as_dense_mut(&mut self) -> &mut Dense<B> {
        match self {
            Layer::Dense(d) => d,
        }
    }
}
