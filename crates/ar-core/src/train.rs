//! One training step: forward pass, loss gradient, learning signals, update, optimiser.

use crate::algorithm::{Algorithm, Feedback};
use crate::grads::{Gradients, LayerGrads};
use crate::layer::Layer;
use crate::loss::Loss;
use crate::network::{ForwardCache, Network};
use crate::optim::Optimizer;
use crate::signals::{RelaxStats, Signals};
use crate::CoreError;
use ar_backend::Backend;

/// What one step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    /// The batch-mean loss before the update.
    pub loss: f64,
    /// Samples whose largest output was the target class, before the update.
    pub correct: usize,
    /// The relaxation's statistics, for the relaxation method.
    pub relax: Option<RelaxStats>,
}

/// How convolutional layers' updates differ from the dense layers' (paper 2's code scales and
/// clips them and has no conv biases; docs/algorithm.md, "Differences from the authors' code").
/// The default changes nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvUpdate {
    /// Multiplies the convolutions' gradients (their learning rate, under SGD); the authors'
    /// code amounts to 2.
    pub lr_scale: f64,
    /// Clamps each element of a convolution's batch-mean gradient to `[-clip, clip]` before the
    /// scale. The authors' code clips `2 * sum_b` of its per-sample updates at 50, on a top error
    /// twice this project's: `4 * batch` times the batch-mean gradient, so `50 / (4 * batch)`.
    pub clip: Option<f64>,
    /// Whether conv biases train. With `false` their gradient is zero, so biases that start at
    /// zero ([`Network::zero_conv_biases`]) stay there, as if there were none.
    pub bias: bool,
}

impl Default for ConvUpdate {
    fn default() -> Self {
        ConvUpdate { lr_scale: 1.0, clip: None, bias: true }
    }
}

impl ConvUpdate {
    /// Checks ranges; errors name the setting and its value.
    pub fn validate(&self) -> Result<(), CoreError> {
        if !(self.lr_scale > 0.0 && self.lr_scale.is_finite()) {
            return Err(CoreError::InvalidConfig(format!(
                "the conv learning-rate scale must be finite and > 0, got {}",
                self.lr_scale
            )));
        }
        if let Some(clip) = self.clip.filter(|c| !(*c > 0.0 && c.is_finite())) {
            return Err(CoreError::InvalidConfig(format!(
                "the conv gradient clip must be finite and > 0, got {clip}"
            )));
        }
        Ok(())
    }

    /// Applies the scale, clip and bias rule to one convolution's update (`psi`'s too).
    fn apply<B: Backend>(&self, be: &B, g: &mut LayerGrads<B>) {
        let clamp_scale = |t: &mut B::Tensor| {
            if let Some(c) = self.clip {
                // Once per convolution and step, on its (small) kernel: a host round trip.
                let clipped: Vec<f64> = be.to_host(t).iter().map(|x| x.clamp(-c, c)).collect();
                *t = be.from_host(&clipped, &be.shape(t));
            }
            if self.lr_scale != 1.0 {
                let unscaled = t.clone();
                be.axpby(self.lr_scale, &unscaled, 0.0, t);
            }
        };
        clamp_scale(&mut g.weight);
        if let Some(psi) = g.feedback.as_mut() {
            clamp_scale(psi);
        }
        if self.bias {
            clamp_scale(&mut g.bias);
        } else {
            let shape = be.shape(&g.bias);
            g.bias = be.zeros(&shape);
        }
    }
}

/// Trains a network with one algorithm, loss and optimiser, reusing its buffers across steps.
#[derive(Clone, Debug)]
pub struct Trainer<B: Backend> {
    algorithm: Algorithm,
    loss: Loss,
    optimizer: Optimizer<B>,
    signals: Signals<B>,
    conv_update: ConvUpdate,
    /// The last step's forward pass, whose tensors the next one writes into.
    cache: Option<ForwardCache<B>>,
}

impl<B: Backend> Trainer<B> {
    /// Validates the algorithm against the network (feedback weights present where needed).
    pub fn new(
        algorithm: Algorithm,
        loss: Loss,
        optimizer: Optimizer<B>,
        net: &Network<B>,
    ) -> Result<Self, CoreError> {
        algorithm.validate()?;
        optimizer.validate()?;
        if algorithm.needs_feedback_weights() {
            let missing = (0..net.depth()).find(|&i| {
                net.needs_feedback(i, &algorithm)
                    && net.layers[i].weights().is_some_and(|w| w.feedback.is_none())
            });
            if let Some(i) = missing {
                return Err(CoreError::InvalidConfig(format!(
                    "{:?} feedback needs backward weights, but layer {} has none (call init_feedback)",
                    algorithm.variant.for_layer(&net.layers[i]).feedback,
                    i + 1
                )));
            }
        }
        let conv_update = ConvUpdate::default();
        Ok(Trainer {
            algorithm,
            loss,
            optimizer,
            signals: Signals::new(),
            conv_update,
            cache: None,
        })
    }

    /// The trainer with convolutional layers updated by `rule` (see [`ConvUpdate`]).
    pub fn with_conv_update(mut self, rule: ConvUpdate) -> Result<Self, CoreError> {
        rule.validate()?;
        self.conv_update = rule;
        Ok(self)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// The loss.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// The optimiser (for checkpoints).
    pub fn optimizer(&self) -> &Optimizer<B> {
        &self.optimizer
    }

    /// The optimiser, to restore its state from a checkpoint.
    pub fn optimizer_mut(&mut self) -> &mut Optimizer<B> {
        &mut self.optimizer
    }

    /// The update direction for one batch without applying it, and the relaxation's statistics.
    pub fn gradients(
        &mut self,
        net: &Network<B>,
        x: &B::Tensor,
        targets: &B::Tensor,
    ) -> (Gradients<B>, StepOutcome) {
        let be = net.backend();
        let cache = net.forward_reusing(x, self.cache.take());
        let top = self.loss.top_gradient(be, &cache.output, targets);
        let relax = self.signals.compute(net, &cache, &top, &self.algorithm);
        let grads = Gradients::compute(net, &cache, &self.signals, &self.algorithm.variant);
        let (out, t) = (be.to_host(&cache.output), be.to_host(targets));
        let classes = net.output_width();
        let outcome = StepOutcome {
            loss: self.loss.value(&out, &t, classes),
            correct: count_correct(&out, &t, classes),
            relax,
        };
        self.cache = Some(cache);
        (grads, outcome)
    }

    /// One training step on a batch: computes the update and applies it (with Kolen-Pollack
    /// decay `lambda W` and `lambda psi` added for learned feedback). Random feedback stays fixed.
    pub fn step(
        &mut self,
        net: &mut Network<B>,
        x: &B::Tensor,
        targets: &B::Tensor,
    ) -> StepOutcome {
        let (mut grads, outcome) = self.gradients(net, x, targets);
        let variant = self.algorithm.variant;
        let be = net.backend().clone();
        for (g, layer) in grads.layers.iter_mut().zip(&net.layers) {
            let (Some(g), Some(w)) = (g.as_mut(), layer.weights()) else {
                continue;
            };
            if matches!(layer, Layer::Conv2d(_)) && self.conv_update != ConvUpdate::default() {
                self.conv_update.apply(&be, g);
            }
            if variant.for_layer(layer).feedback != Feedback::Learned {
                g.feedback = None;
                continue;
            }
            if variant.feedback_decay > 0.0 {
                be.axpby(variant.feedback_decay, w.weight, 1.0, &mut g.weight);
                if let (Some(gpsi), Some(psi)) = (g.feedback.as_mut(), w.feedback) {
                    be.axpby(variant.feedback_decay, psi, 1.0, gpsi);
                }
            }
        }
        self.optimizer.step(net, &grads);
        outcome
    }
}

/// Samples whose largest output is the target's hot class.
pub fn count_correct(outputs: &[f64], targets: &[f64], classes: usize) -> usize {
    let argmax = |row: &[f64]| {
        row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
    };
    outputs
        .chunks(classes)
        .zip(targets.chunks(classes))
        .filter(|(o, t)| argmax(o) == argmax(t))
        .count()
}
