//! Which algorithm computes the learning signals, and every variant of ALGORITHM.md section 3,
//! as plain data validated once.

use crate::CoreError;

/// What stands in for `W_k^T` when a signal is sent down through layer `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// `W_k^T` itself (weight transport; exact).
    Transpose,
    /// A separate matrix `psi_k` of the transposed shape, initialised at random and updated with
    /// exactly the transposed update of `W_k` (optionally with Kolen-Pollack decay).
    Learned,
    /// A fixed random `psi_k` (feedback alignment).
    Random,
}

/// The order in which one relaxation iteration updates the hidden layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every layer reads the previous iterate of the layer above (the papers' description).
    Parallel,
    /// Top-down, each layer reading the already-updated layer above (the reference code).
    Sweep,
}

/// Where the relaxing activities start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialState {
    /// `v_k(0) = h_k`, the feedforward activity (the algorithm's name).
    Feedforward,
    /// `v_k(0) = 0`.
    Zero,
}

/// How the relaxed state after `T` Euler steps is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    /// `T` Euler iterations, as the papers describe.
    Euler,
    /// The same state in closed form: with the forward pass frozen the iteration is linear and
    /// its matrix is `(1 - eta) I + eta N` with `N` nilpotent, so the state after `T` steps is a
    /// polynomial of degree `L - 2` in `N`, evaluated with `L - 2` top-down passes (Horner's
    /// rule). Equal to Euler up to rounding; unavailable when `f'` is re-evaluated at the
    /// relaxing state (fderiv-relax makes the iteration nonlinear) or with a tolerance stop.
    ClosedForm,
}

/// The Euler-discretised relaxation `v_k <- v_k + eta * (-v_k + J_{k+1}^T v_{k+1})`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Relaxation {
    /// The Euler step ("inference learning rate"), in (0, 2) for convergence.
    pub eta: f64,
    /// The number of iterations `T` (the most, when `tolerance` is set).
    pub steps: usize,
    /// Stop early once every layer's relative change per unit of `eta` is at most this.
    pub tolerance: Option<f64>,
    /// Parallel or sweep.
    pub schedule: Schedule,
    /// Feedforward or zero initial state.
    pub init: InitialState,
    /// Euler iterations or the closed form of their result.
    pub solver: Solver,
}

impl Relaxation {
    /// The papers' setting: eta 0.1, 100 iterations, feedforward start, and the reference code's
    /// sweep schedule.
    pub fn papers() -> Self {
        Relaxation {
            eta: 0.1,
            steps: 100,
            tolerance: None,
            schedule: Schedule::Sweep,
            init: InitialState::Feedforward,
            solver: Solver::Euler,
        }
    }
}

/// How the learning signals are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// One top-down pass of vector-Jacobian products (backprop, or feedback alignment with
    /// [`Feedback::Random`]).
    Backprop,
    /// Activation relaxation.
    Relaxation(Relaxation),
}

/// The simplifications of the papers; [`Variant::exact`] is none of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variant {
    /// Backward weights.
    pub feedback: Feedback,
    /// Kolen-Pollack weight decay `lambda`, added as `lambda * W` and `lambda * psi` to the
    /// gradients of both (only with [`Feedback::Learned`]).
    pub feedback_decay: f64,
    /// Multiply by `f'(a)` inside the backward VJP (false: paper 1 eq. 7's simplification).
    pub fprime_in_backward: bool,
    /// Multiply by `f'(a)` in the weight update.
    pub fprime_in_update: bool,
    /// `fderiv-relax`: the relaxation evaluates `f_k'` at `W_k v_{k-1}(t) + b_k` instead of the
    /// stored `a_k` (not gradient-aligned in general).
    pub fprime_at_state_in_relaxation: bool,
    /// `fderiv-update`: the update evaluates `f_k'` at `W_k v_{k-1}(T) + b_k`.
    pub fprime_at_state_in_update: bool,
    /// `current-input`: the update uses the relaxed `v_{k-1}(T)` as presynaptic term instead of
    /// the stored `h_{k-1}`.
    pub current_input: bool,
}

impl Variant {
    /// No simplification: exact weight transport and every `f'` where calculus puts it.
    pub fn exact() -> Self {
        Variant {
            feedback: Feedback::Transpose,
            feedback_decay: 0.0,
            fprime_in_backward: true,
            fprime_in_update: true,
            fprime_at_state_in_relaxation: false,
            fprime_at_state_in_update: false,
            current_input: false,
        }
    }
}

impl Default for Variant {
    fn default() -> Self {
        Variant::exact()
    }
}

/// A complete, validated choice of algorithm and variant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Algorithm {
    /// Backprop-style single pass or relaxation.
    pub method: Method,
    /// The simplifications applied.
    pub variant: Variant,
}

impl Algorithm {
    /// Exact backprop.
    pub fn backprop() -> Self {
        Algorithm { method: Method::Backprop, variant: Variant::exact() }
    }

    /// Feedback alignment: backprop through fixed random backward weights.
    pub fn feedback_alignment() -> Self {
        Algorithm {
            method: Method::Backprop,
            variant: Variant { feedback: Feedback::Random, ..Variant::exact() },
        }
    }

    /// Exact activation relaxation with the given relaxation settings.
    pub fn relaxation(relaxation: Relaxation) -> Self {
        Algorithm { method: Method::Relaxation(relaxation), variant: Variant::exact() }
    }

    /// Whether the network needs separate backward matrices `psi_k`.
    pub fn needs_feedback_weights(&self) -> bool {
        self.variant.feedback != Feedback::Transpose
    }

    /// Checks ranges and combinations; every error names the setting and its value.
    pub fn validate(&self) -> Result<(), CoreError> {
        let v = &self.variant;
        let bad = |m: String| Err(CoreError::InvalidConfig(m));
        if !(v.feedback_decay >= 0.0 && v.feedback_decay.is_finite()) {
            return bad(format!(
                "feedback decay must be finite and >= 0, got {}",
                v.feedback_decay
            ));
        }
        if v.feedback_decay > 0.0 && v.feedback != Feedback::Learned {
            return bad(format!(
                "feedback decay {} applies only to learned feedback weights, not {:?}",
                v.feedback_decay, v.feedback
            ));
        }
        match self.method {
            Method::Backprop => {
                if v.fprime_at_state_in_relaxation || v.fprime_at_state_in_update || v.current_input
                {
                    return bad("fderiv-relax, fderiv-update and current-input modify the \
                                relaxation; they need the relaxation method, not backprop"
                        .into());
                }
            }
            Method::Relaxation(r) => {
                if !(r.eta > 0.0 && r.eta < 2.0) {
                    return bad(format!(
                        "eta must lie in (0, 2), where the relaxation converges; got {}",
                        r.eta
                    ));
                }
                if r.steps == 0 {
                    return bad("the relaxation needs at least one step".into());
                }
                if let Some(tol) = r.tolerance {
                    if !(tol > 0.0 && tol.is_finite()) {
                        return bad(format!("tolerance must be finite and > 0, got {tol}"));
                    }
                }
                if r.solver == Solver::ClosedForm {
                    if v.fprime_at_state_in_relaxation && v.fprime_in_backward {
                        return bad("the closed-form solver needs a linear relaxation, but \
                                    fderiv-relax re-evaluates f' at the relaxing state; use \
                                    the Euler solver"
                            .into());
                    }
                    if r.tolerance.is_some() {
                        return bad("a tolerance stop needs the Euler solver: the closed form \
                                    jumps straight to step T"
                            .into());
                    }
                }
                if v.fprime_at_state_in_relaxation && !v.fprime_in_backward {
                    return bad("fderiv-relax re-evaluates f' in the relaxation, which the \
                                no-f'-in-relaxation variant removes; choose one"
                        .into());
                }
                if v.fprime_at_state_in_update && !v.fprime_in_update {
                    return bad("fderiv-update re-evaluates f' in the update, which the \
                                no-f'-in-update variant removes; choose one"
                        .into());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate() {
        Algorithm::backprop().validate().unwrap();
        Algorithm::feedback_alignment().validate().unwrap();
        Algorithm::relaxation(Relaxation::papers()).validate().unwrap();
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let mut r = Relaxation::papers();
        r.eta = 2.5;
        let err = Algorithm::relaxation(r).validate().unwrap_err().to_string();
        assert!(err.contains("eta") && err.contains("2.5"), "{err}");
        r.eta = 0.5;
        r.steps = 0;
        assert!(Algorithm::relaxation(r).validate().is_err());
        let mut a = Algorithm::backprop();
        a.variant.current_input = true;
        assert!(a.validate().unwrap_err().to_string().contains("current-input"));
        let mut a = Algorithm::backprop();
        a.variant.feedback_decay = 0.1;
        assert!(a.validate().unwrap_err().to_string().contains("learned"));
    }
}
