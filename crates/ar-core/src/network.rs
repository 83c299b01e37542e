//! A sequential network, its feedforward pass and the frozen cache the backward phase reads.

use crate::init::{self, Init};
use crate::layer::{Dense, DenseShape, Layer};
use crate::CoreError;
use ar_backend::Backend;

/// A sequential network of layers on backend `B`.
#[derive(Clone, Debug)]
pub struct Network<B: Backend> {
    backend: B,
    /// The layers, input first.
    pub layers: Vec<Layer<B>>,
}

/// Everything the forward pass freezes for the backward phase, for a batch of size `B`.
/// Index `k - 1` belongs to layer `k` (1-based as in the papers).
#[derive(Clone, Debug)]
pub struct ForwardCache<B: Backend> {
    /// `h_{k-1}`, each layer's input (`inputs[0]` is the data batch).
    pub inputs: Vec<B::Tensor>,
    /// `a_k`, each layer's pre-activation.
    pub pre: Vec<B::Tensor>,
    /// `f_k'(a_k)`, computed once per batch.
    pub fprime: Vec<B::Tensor>,
    /// `h_L`, the network's output.
    pub output: B::Tensor,
}

impl<B: Backend> ForwardCache<B> {
    /// The batch size.
    pub fn batch_size(&self, be: &B) -> usize {
        be.shape(&self.output)[0]
    }

    /// `h_k` for `k` in `1..=L` (the feedforward activity of layer `k`'s output).
    pub fn activity(&self, k: usize) -> &B::Tensor {
        if k == self.inputs.len() {
            &self.output
        } else {
            &self.inputs[k]
        }
    }
}

impl<B: Backend> Network<B> {
    /// A network from layers already on the backend.
    pub fn from_layers(backend: B, layers: Vec<Layer<B>>) -> Result<Self, CoreError> {
        if layers.is_empty() {
            return Err(CoreError::InvalidConfig("a network needs at least one layer".into()));
        }
        let net = Network { backend, layers };
        for (k, pair) in net.layers.windows(2).enumerate() {
            let (lower, upper) =
                (pair[0].as_dense().shape(&net.backend), pair[1].as_dense().shape(&net.backend));
            if lower.outputs != upper.inputs {
                return Err(CoreError::Shape(format!(
                    "layer {} has {} outputs but layer {} takes {} inputs",
                    k + 1,
                    lower.outputs,
                    k + 2,
                    upper.inputs
                )));
            }
        }
        Ok(net)
    }

    /// A stack of dense layers with weights drawn on the host from `init` with a generator
    /// seeded by `seed`, then uploaded (so every backend starts from the same weights).
    pub fn dense_stack(
        backend: B,
        shapes: &[DenseShape],
        init: Init,
        seed: u64,
    ) -> Result<Self, CoreError> {
        let mut rng = init::rng(seed, init::Stream::Forward);
        let mut layers = Vec::with_capacity(shapes.len());
        for s in shapes {
            if s.inputs == 0 || s.outputs == 0 {
                return Err(CoreError::Shape(format!("dense layer with zero width: {s:?}")));
            }
            let (w, b) = init.dense(&mut rng, s.inputs, s.outputs);
            layers.push(Layer::Dense(Dense {
                weight: backend.from_host(&w, &[s.outputs, s.inputs]),
                bias: backend.from_host(&b, &[s.outputs]),
                activation: s.activation,
                feedback: None,
            }));
        }
        Network::from_layers(backend, layers)
    }

    /// Gives every layer above the first a backward matrix `psi_k` of shape `[inputs, outputs]`,
    /// drawn from `init` (like a forward weight of the same fan-in) with its own stream of
    /// `seed`. The first layer gets none: the input never relaxes, so nothing is sent below it.
    pub fn init_feedback(&mut self, init: Init, seed: u64) {
        let mut rng = init::rng(seed, init::Stream::Feedback);
        let be = self.backend.clone();
        for layer in self.layers.iter_mut().skip(1) {
            let d = layer.as_dense_mut();
            let s = d.shape(&be);
            let (w, _) = init.dense(&mut rng, s.inputs, s.outputs);
            // Drawn as a [outputs, inputs] matrix, stored transposed: psi has W^T's shape.
            let mut psi = vec![0.0; w.len()];
            for o in 0..s.outputs {
                for i in 0..s.inputs {
                    psi[i * s.outputs + o] = w[o * s.inputs + i];
                }
            }
            d.feedback = Some(be.from_host(&psi, &[s.inputs, s.outputs]));
        }
    }

    /// Sets every backward matrix to exactly `W_k^T` (for tests of the variants' special cases).
    pub fn set_feedback_to_transpose(&mut self) {
        let be = self.backend.clone();
        for layer in self.layers.iter_mut().skip(1) {
            let d = layer.as_dense_mut();
            let s = d.shape(&be);
            let w = be.to_host(&d.weight);
            let mut psi = vec![0.0; w.len()];
            for o in 0..s.outputs {
                for i in 0..s.inputs {
                    psi[i * s.outputs + o] = w[o * s.inputs + i];
                }
            }
            d.feedback = Some(be.from_host(&psi, &[s.inputs, s.outputs]));
        }
    }

    /// The backend the network lives on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The number of layers `L`.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Input features of the first layer.
    pub fn input_width(&self) -> usize {
        self.layers[0].as_dense().shape(&self.backend).inputs
    }

    /// Output features of the last layer.
    pub fn output_width(&self) -> usize {
        self.layers[self.layers.len() - 1].as_dense().shape(&self.backend).outputs
    }

    /// Output width of every layer (`n_1 .. n_L`).
    pub fn widths(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.as_dense().shape(&self.backend).outputs).collect()
    }

    /// Uploads a host batch `[batch, input_width]`, checking its size.
    pub fn upload_batch(&self, data: &[f64], batch: usize) -> Result<B::Tensor, CoreError> {
        let n = self.input_width();
        if batch == 0 || data.len() != batch * n {
            return Err(CoreError::Shape(format!(
                "a batch of {batch} inputs of width {n} needs {} values, got {}",
                batch * n,
                data.len()
            )));
        }
        Ok(self.backend.from_host(data, &[batch, n]))
    }

    /// The feedforward pass, freezing `h_{k-1}`, `a_k` and `f_k'(a_k)` for every layer.
    pub fn forward(&self, x: &B::Tensor) -> ForwardCache<B> {
        let be = &self.backend;
        let batch = be.shape(x)[0];
        let mut inputs = Vec::with_capacity(self.depth());
        let mut pre = Vec::with_capacity(self.depth());
        let mut fprime = Vec::with_capacity(self.depth());
        let mut h = x.clone();
        for layer in &self.layers {
            let d = layer.as_dense();
            let mut a = be.zeros(&[batch, d.shape(be).outputs]);
            d.pre_activation_into(be, &h, &mut a);
            let next = be.activate(d.activation, &a);
            fprime.push(be.activate_derivative(d.activation, &a));
            inputs.push(std::mem::replace(&mut h, next));
            pre.push(a);
        }
        ForwardCache { inputs, pre, fprime, output: h }
    }

    /// The network's output for a batch, keeping nothing else.
    pub fn predict(&self, x: &B::Tensor) -> B::Tensor {
        let be = &self.backend;
        let batch = be.shape(x)[0];
        let mut h = x.clone();
        for layer in &self.layers {
            let d = layer.as_dense();
            let mut a = be.zeros(&[batch, d.shape(be).outputs]);
            d.pre_activation_into(be, &h, &mut a);
            h = be.activate(d.activation, &a);
        }
        h
    }
}
