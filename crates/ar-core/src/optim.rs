//! Optimisers: SGD with optional (PyTorch-style) momentum, and Adam; with their state named
//! for checkpoints.

use crate::grads::Gradients;
use crate::network::Network;
use crate::CoreError;
use ar_backend::{AdamStep, Backend};

/// Which update rule, with its own hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// `u <- mu u + g; p <- p - lr u` (plain SGD when `mu = 0`).
    Sgd {
        /// Momentum `mu` in [0, 1).
        momentum: f64,
    },
    /// Adam with bias correction.
    Adam {
        /// First-moment decay (0.9 in PyTorch).
        beta1: f64,
        /// Second-moment decay (0.999 in PyTorch).
        beta2: f64,
        /// Denominator offset (1e-8 in PyTorch).
        eps: f64,
    },
}

impl OptimizerKind {
    /// Adam with PyTorch's defaults (0.9, 0.999, 1e-8).
    pub const ADAM: OptimizerKind = OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

    /// Checks the hyperparameters with learning rate `lr`.
    pub fn validate(self, lr: f64) -> Result<(), CoreError> {
        let bad = |m: String| Err(CoreError::InvalidConfig(m));
        if !(lr > 0.0 && lr.is_finite()) {
            return bad(format!("learning rate must be finite and > 0, got {lr}"));
        }
        match self {
            OptimizerKind::Sgd { momentum } if !(0.0..1.0).contains(&momentum) => {
                bad(format!("momentum must lie in [0, 1), got {momentum}"))
            }
            OptimizerKind::Adam { beta1, beta2, eps }
                if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0) =>
            {
                bad(format!("adam needs betas in [0, 1) and eps > 0, got {beta1}, {beta2}, {eps}"))
            }
            _ => Ok(()),
        }
    }
}

/// The parameters an optimiser updates, in order: per layer the weight, the bias and the
/// learned feedback matrix.
const SLOTS_PER_LAYER: usize = 3;
const SLOT_NAMES: [&str; SLOTS_PER_LAYER] = ["weight", "bias", "feedback"];

/// An optimiser with one state slot per weight, bias and learned feedback matrix.
#[derive(Clone, Debug)]
pub struct Optimizer<B: Backend> {
    /// The rule.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// First state tensor per slot (momentum buffer, or Adam's first moment).
    first: Vec<Option<B::Tensor>>,
    /// Second state tensor per slot (Adam's second moment).
    second: Vec<Option<B::Tensor>>,
    /// Updates applied so far.
    steps: u64,
}

impl<B: Backend> Optimizer<B> {
    /// SGD with learning rate `lr` and momentum `momentum`.
    pub fn sgd(lr: f64, momentum: f64) -> Self {
        Self::new(OptimizerKind::Sgd { momentum }, lr)
    }

    /// Adam with PyTorch's defaults (0.9, 0.999, 1e-8).
    pub fn adam(lr: f64) -> Self {
        Self::new(OptimizerKind::ADAM, lr)
    }

    /// An optimiser of the given kind.
    pub fn new(kind: OptimizerKind, lr: f64) -> Self {
        Optimizer { kind, lr, first: Vec::new(), second: Vec::new(), steps: 0 }
    }

    /// Checks the hyperparameters.
    pub fn validate(&self) -> Result<(), CoreError> {
        self.kind.validate(self.lr)
    }

    /// Updates applied so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Applies one update of `grads` to `net`.
    pub fn step(&mut self, net: &mut Network<B>, grads: &Gradients<B>) {
        let be = net.backend().clone();
        let slots = SLOTS_PER_LAYER * net.depth();
        if self.first.len() != slots {
            self.first = vec![None; slots];
            self.second = vec![None; slots];
        }
        self.steps += 1;
        for (i, (layer, g)) in net.layers.iter_mut().zip(&grads.layers).enumerate() {
            let (Some(w), Some(g)) = (layer.weights_mut(), g.as_ref()) else {
                continue;
            };
            self.apply(&be, SLOTS_PER_LAYER * i, w.weight, &g.weight);
            self.apply(&be, SLOTS_PER_LAYER * i + 1, w.bias, &g.bias);
            if let (Some(psi), Some(gpsi)) = (w.feedback.as_mut(), g.feedback.as_ref()) {
                self.apply(&be, SLOTS_PER_LAYER * i + 2, psi, gpsi);
            }
        }
    }

    fn apply(&mut self, be: &B, slot: usize, param: &mut B::Tensor, grad: &B::Tensor) {
        match self.kind {
            OptimizerKind::Sgd { momentum: 0.0 } => be.axpby(-self.lr, grad, 1.0, param),
            OptimizerKind::Sgd { momentum } => {
                let u = self.first[slot].get_or_insert_with(|| be.zeros(&be.shape(grad)));
                be.axpby(1.0, grad, momentum, u);
                be.axpby(-self.lr, u, 1.0, param);
            }
            OptimizerKind::Adam { beta1, beta2, eps } => {
                let m = self.first[slot].get_or_insert_with(|| be.zeros(&be.shape(grad)));
                let v = self.second[slot].get_or_insert_with(|| be.zeros(&be.shape(grad)));
                be.adam_step(
                    param,
                    grad,
                    m,
                    v,
                    AdamStep { lr: self.lr, beta1, beta2, eps, t: self.steps },
                );
            }
        }
    }

    /// The state tensors with checkpoint names, such as `optimizer.layers.0.weight.first`
    /// (momentum buffer or Adam's first moment) and `...second` (Adam's second moment).
    pub fn state(&self) -> Vec<(String, &B::Tensor)> {
        let mut out = Vec::new();
        for (which, slots) in [("first", &self.first), ("second", &self.second)] {
            for (slot, t) in slots.iter().enumerate() {
                if let Some(t) = t {
                    let (layer, name) =
                        (slot / SLOTS_PER_LAYER, SLOT_NAMES[slot % SLOTS_PER_LAYER]);
                    out.push((format!("optimizer.layers.{layer}.{name}.{which}"), t));
                }
            }
        }
        out
    }

    /// Restores state saved by [`Optimizer::state`] for a network of `depth` layers, after
    /// `steps` updates. Unknown names are an error.
    pub fn restore(
        &mut self,
        depth: usize,
        steps: u64,
        state: Vec<(String, B::Tensor)>,
    ) -> Result<(), CoreError> {
        let slots = SLOTS_PER_LAYER * depth;
        self.first = vec![None; slots];
        self.second = vec![None; slots];
        self.steps = steps;
        for (name, t) in state {
            let parsed = (|| {
                let rest = name.strip_prefix("optimizer.layers.")?;
                let mut parts = rest.split('.');
                let layer: usize = parts.next()?.parse().ok()?;
                let param = parts.next()?;
                let kind = SLOT_NAMES.iter().position(|n| *n == param)?;
                let which = parts.next()?;
                (layer < depth && parts.next().is_none())
                    .then_some((layer * SLOTS_PER_LAYER + kind, which))
            })();
            match parsed {
                Some((slot, "first")) => self.first[slot] = Some(t),
                Some((slot, "second")) => self.second[slot] = Some(t),
                _ => {
                    return Err(CoreError::InvalidConfig(format!(
                        "unknown optimiser state '{name}'"
                    )))
                }
            }
        }
        Ok(())
    }
}
