//! The weight update formed from the learning signals:
//! `dW_k = mean_b (f_k'(a_k) * v_k) h_{k-1}^T`, `db_k = mean_b f_k'(a_k) * v_k`, with the variants.

use crate::algorithm::{Feedback, Variant};
use crate::network::{ForwardCache, Network};
use ar_backend::Backend;

/// The update direction of one dense layer (a batch mean, like a loss gradient).
#[derive(Clone, Debug)]
pub struct DenseGrads<B: Backend> {
    /// `dW`, `[outputs, inputs]`.
    pub weight: B::Tensor,
    /// `db`, `[outputs]`.
    pub bias: B::Tensor,
    /// `dW^T`, `[inputs, outputs]`: the learned feedback matrix's update (learned variant only).
    pub feedback: Option<B::Tensor>,
}

/// One [`DenseGrads`] per layer, input layer first.
#[derive(Clone, Debug)]
pub struct Gradients<B: Backend> {
    /// Per layer.
    pub layers: Vec<DenseGrads<B>>,
}

impl<B: Backend> Gradients<B> {
    /// The update from signals `v_1 .. v_L` (see [`crate::Signals`]). For layer `k`:
    /// `e_k = f_k' * v_k` (f' stored, re-evaluated at `W_k v_{k-1}(T) + b_k` under fderiv-update,
    /// or dropped), presynaptic term `h_{k-1}` (or `v_{k-1}(T)` under current-input),
    /// `dW_k = e_k^T h_{k-1} / batch`, `db_k = sum_b e_k / batch`, and for learned feedback
    /// `dpsi_k = h_{k-1}^T e_k / batch = dW_k^T`.
    pub fn compute(
        net: &Network<B>,
        cache: &ForwardCache<B>,
        signals: &[B::Tensor],
        variant: &Variant,
    ) -> Self {
        let be = net.backend();
        let batch = cache.batch_size(be) as f64;
        let mut layers = Vec::with_capacity(net.depth());
        for (i, layer) in net.layers.iter().enumerate() {
            let d = layer.as_dense();
            let k = i + 1;
            let relaxed_below = (k >= 2).then(|| &signals[k - 2]);
            let e = if !variant.fprime_in_update {
                signals[i].clone()
            } else if let (true, Some(v_below)) = (variant.fprime_at_state_in_update, relaxed_below)
            {
                let mut pre = be.zeros(&be.shape(&signals[i]));
                d.pre_activation_into(be, v_below, &mut pre);
                be.mul(&be.activate_derivative(d.activation, &pre), &signals[i])
            } else {
                be.mul(&cache.fprime[i], &signals[i])
            };
            let presynaptic = match (variant.current_input, relaxed_below) {
                (true, Some(v_below)) => v_below,
                _ => &cache.inputs[i],
            };
            let shape = d.shape(be);
            let mut weight = be.zeros(&[shape.outputs, shape.inputs]);
            be.gemm(1.0 / batch, &e, true, presynaptic, false, 0.0, &mut weight);
            let bias = be.sum_rows(1.0 / batch, &e);
            let feedback =
                (variant.feedback == Feedback::Learned && d.feedback.is_some()).then(|| {
                    let mut g = be.zeros(&[shape.inputs, shape.outputs]);
                    be.gemm(1.0 / batch, presynaptic, true, &e, false, 0.0, &mut g);
                    g
                });
            layers.push(DenseGrads { weight, bias, feedback });
        }
        Gradients { layers }
    }

    /// Host copies `(dW, db)` per layer, for metrics and tests.
    pub fn to_host(&self, be: &B) -> Vec<(Vec<f64>, Vec<f64>)> {
        self.layers.iter().map(|g| (be.to_host(&g.weight), be.to_host(&g.bias))).collect()
    }
}
