//! The weight update formed from the learning signals:
//! `dW_k = mean_b (f_k'(a_k) * v_k) h_{k-1}^T`, `db_k = mean_b f_k'(a_k) * v_k` (for a
//! convolution, the same sums over positions), with the variants.

use crate::algorithm::{FPrime, Feedback, Variant};
use crate::layer::Layer;
use crate::network::{ForwardCache, Network};
use crate::signals::{state_input, Signals};
use ar_backend::{Backend, BackendExt};

/// The update direction of one weighted layer (a batch mean, like a loss gradient).
#[derive(Clone, Debug)]
pub struct LayerGrads<B: Backend> {
    /// `dW` (`[outputs, inputs]`) or `dK` (`[out_c, in_c, kh, kw]`).
    pub weight: B::Tensor,
    /// `db`.
    pub bias: B::Tensor,
    /// The learned backward weights' update (learned variant only): `dW^T` for a dense layer,
    /// `dK` for a convolution (whose backward kernel has `K`'s layout).
    pub feedback: Option<B::Tensor>,
}

/// One entry per layer, `None` for parameter-free layers, input layer first.
#[derive(Clone, Debug)]
pub struct Gradients<B: Backend> {
    /// Per layer.
    pub layers: Vec<Option<LayerGrads<B>>>,
}

impl<B: Backend> Gradients<B> {
    /// The update from the learning signals of [`Signals::compute`]. For weighted layer `k`:
    /// `e_k = f_k' * v_k` (f' stored, re-evaluated at layer `k`'s input computed from the relaxed
    /// state under fderiv-update, or dropped), presynaptic term `h_{k-1}` (or that input computed
    /// from the relaxed state under current-input; for layer 1 that is the relaxed input `v_0`
    /// when the input relaxed, else the data), `dW_k = e_k^T h_{k-1} / batch`,
    /// `db_k = sum_b e_k / batch`, and for learned feedback the same update for `psi_k`
    /// (transposed for dense layers).
    pub fn compute(
        net: &Network<B>,
        cache: &ForwardCache<B>,
        signals: &Signals<B>,
        variant: &Variant,
    ) -> Self {
        let (states, input_relaxed) = (signals.states(), signals.input_relaxed());
        let sent = signals;
        let signals = signals.as_slice();
        let be = net.backend();
        let scale = 1.0 / cache.batch_size(be) as f64;
        let layers = net
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let w = layer.weights()?;
                let k = i + 1;
                let choices = variant.for_layer(layer);
                let at_state = choices.fprime_update == FPrime::AtState;
                let needs_state = variant.current_input || at_state;
                let relaxed_input = if needs_state {
                    state_input(net, cache, states, input_relaxed, k)
                } else {
                    None
                };
                // The signal itself where f' is dropped (or identically one, which
                // `Variant::for_layer` reports as dropped).
                let product;
                let e = if choices.fprime_update == FPrime::Dropped {
                    &signals[i]
                } else if let (true, Some(x)) = (at_state, relaxed_input.as_ref()) {
                    let mut a = be.zeros(&be.shape(&signals[i]));
                    layer.linear_into(be, x, !variant.state_fprime_without_bias, &mut a);
                    product = be.mul(&be.activate_derivative(w.activation, &a), &signals[i]);
                    &product
                } else if let Some(e) = sent.sent_product(k) {
                    e
                } else {
                    let fprime = cache.fprime[i].as_ref().expect("weighted layers store f'");
                    product = be.mul(fprime, &signals[i]);
                    &product
                };
                let presynaptic = match (variant.current_input, relaxed_input.as_ref()) {
                    (true, Some(x)) => x,
                    _ => cache.activity(net.parents(k)[0]),
                };
                let learned = choices.feedback == Feedback::Learned && w.feedback.is_some();
                let mut weight = be.zeros(&be.shape(w.weight));
                let mut bias = be.zeros(&be.shape(w.bias));
                let feedback = match layer {
                    Layer::Dense(_) => {
                        be.gemm(scale, e, true, presynaptic, false, 0.0, &mut weight);
                        be.sum_rows_into(scale, e, &mut bias);
                        learned.then(|| {
                            let s = be.shape(w.weight);
                            let mut g = be.zeros(&[s[1], s[0]]);
                            be.gemm(scale, presynaptic, true, e, false, 0.0, &mut g);
                            g
                        })
                    }
                    Layer::Conv2d(c) => {
                        be.conv2d_grads_into(
                            e,
                            presynaptic,
                            c.geometry,
                            scale,
                            &mut weight,
                            &mut bias,
                        );
                        learned.then(|| weight.clone())
                    }
                    _ => unreachable!("weights() is Some only for weighted layers"),
                };
                Some(LayerGrads { weight, bias, feedback })
            })
            .collect();
        Gradients { layers }
    }

    /// Host copies `(dW, db)` per layer, empty for parameter-free layers (metrics and tests).
    pub fn to_host(&self, be: &B) -> Vec<(Vec<f64>, Vec<f64>)> {
        self.layers
            .iter()
            .map(|g| {
                g.as_ref().map_or((Vec::new(), Vec::new()), |g| {
                    (be.to_host(&g.weight), be.to_host(&g.bias))
                })
            })
            .collect()
    }
}
