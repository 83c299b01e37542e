//! Which algorithm computes the learning signals, and every variant of docs/algorithm.md
//! ("Variants"), as plain data validated once; with the names the command line and config
//! files use for each choice.

use crate::layer::Layer;
use crate::CoreError;
use ar_backend::{Activation, Backend};
use std::fmt;
use std::str::FromStr;

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
    /// The closed form wherever the relaxation is linear (every variant but fderiv-relax) and
    /// no tolerance stop is asked for, else Euler: the same state, chosen for speed.
    Auto,
    /// `T` Euler iterations, as the papers describe.
    Euler,
    /// The same state in closed form: with the forward pass frozen the iteration is linear and
    /// its matrix is `(1 - eta) I + eta N` with `N` nilpotent, so the state after `T` steps is a
    /// polynomial of degree `S - 1` in `N` for `S` relaxing layers, evaluated with `S - 1`
    /// top-down passes (Horner's rule) from the feedforward start, and from the zero start by
    /// powers of the clamp's drive (one VJP per layer on a chain; docs/algorithm.md, "The
    /// closed-form solver"). Equal to Euler up to rounding; unavailable when `f'` is
    /// re-evaluated at the relaxing state (fderiv-relax makes the iteration nonlinear) or with a
    /// tolerance stop.
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
    /// Let the input relax too, as the authors' code does: `v_0` starts at the data and follows
    /// the same dynamics (towards `dL/dx`). Exact AR's update is unchanged (nothing reads
    /// `v_0`); under current-input layer 1's presynaptic term becomes `v_0(T)`, and under
    /// fderiv-update (and fderiv-relax) layer 1's `f'` is taken at `W_1 v_0 + b_1`
    /// (docs/algorithm.md, "Differences from the authors' code").
    pub relax_input: bool,
}

impl Relaxation {
    /// The papers' setting: eta 0.1, 100 iterations, feedforward start, and the reference code's
    /// sweep schedule; the solver is [`Solver::Auto`] (the closed form computes the same state
    /// as the papers' 100 Euler steps, to rounding, about ten times faster).
    pub fn papers() -> Self {
        Relaxation {
            eta: 0.1,
            steps: 100,
            tolerance: None,
            schedule: Schedule::Sweep,
            init: InitialState::Feedforward,
            solver: Solver::Auto,
            relax_input: false,
        }
    }

    /// The solver that runs for `variant`: [`Solver::Auto`] resolved, the others as given.
    pub fn solver_for(&self, variant: &Variant) -> Solver {
        match self.solver {
            Solver::Auto => {
                let nonlinear = variant.any(|c| c.fprime_backward == FPrime::AtState);
                if nonlinear || self.tolerance.is_some() {
                    Solver::Euler
                } else {
                    Solver::ClosedForm
                }
            }
            explicit => explicit,
        }
    }
}

crate::named_enum!(Feedback, "feedback", Transpose => "transpose", Learned => "learned", Random => "random");
crate::named_enum!(Schedule, "schedule", Parallel => "parallel", Sweep => "sweep");
crate::named_enum!(InitialState, "start", Feedforward => "feedforward", Zero => "zero");
crate::named_enum!(Solver, "solver", Auto => "auto", Euler => "euler", ClosedForm => "closed-form");

/// How the learning signals are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// One top-down pass of vector-Jacobian products (backprop, or feedback alignment with
    /// [`Feedback::Random`]).
    Backprop,
    /// Activation relaxation.
    Relaxation(Relaxation),
}

/// Where a layer's `f'` is taken, in the relaxation's backward VJP or in the weight update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FPrime {
    /// At the stored feedforward pre-activation `a_k`, where calculus puts it.
    Stored,
    /// At the relaxing state, `W_k v_{k-1}(t) + b_k` (paper 2's fderiv-relax and fderiv-update;
    /// not gradient-aligned in general).
    AtState,
    /// Left out (paper 1's no-f' simplifications).
    Dropped,
}

impl FPrime {
    /// `f'` kept or dropped; when kept, at the relaxing state if `at_state`.
    pub fn chosen(kept: bool, at_state: bool) -> Self {
        match (kept, at_state) {
            (false, _) => FPrime::Dropped,
            (true, false) => FPrime::Stored,
            (true, true) => FPrime::AtState,
        }
    }

    /// Whether `f'` is used at all.
    pub fn kept(self) -> bool {
        self != FPrime::Dropped
    }
}

/// The choices that paper 2's code makes separately for dense and convolutional layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerChoices {
    /// Backward weights.
    pub feedback: Feedback,
    /// The `f'` of the backward VJP.
    pub fprime_backward: FPrime,
    /// The `f'` of the weight update.
    pub fprime_update: FPrime,
}

impl LayerChoices {
    /// The choices of a layer that keeps the `f'` that `kept` names, each at the relaxing state
    /// where `at_state` (in the relaxation, in the update) says.
    pub fn new(feedback: Feedback, kept: FprimeUse, at_state: (bool, bool)) -> Self {
        let (backward, update) = kept.flags();
        LayerChoices {
            feedback,
            fprime_backward: FPrime::chosen(backward, at_state.0),
            fprime_update: FPrime::chosen(update, at_state.1),
        }
    }

    /// Which `f'` the layer keeps, wherever it is taken.
    pub fn fprime_use(&self) -> FprimeUse {
        FprimeUse::from_flags(self.fprime_backward.kept(), self.fprime_update.kept())
    }

    /// Whether either `f'` is taken at the relaxing state.
    pub fn at_state(&self) -> bool {
        self.fprime_backward == FPrime::AtState || self.fprime_update == FPrime::AtState
    }
}

/// Which `f'` a convolutional layer keeps, when it differs from the dense layers'
/// (`--conv-fprime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FprimeUse {
    /// In the backward VJP and in the update.
    Both,
    /// In the backward VJP only.
    BackwardOnly,
    /// In the update only.
    UpdateOnly,
    /// Nowhere.
    Neither,
}

crate::named_enum!(FprimeUse, "f' use", Both => "both", BackwardOnly => "backward-only", UpdateOnly => "update-only", Neither => "neither");

impl FprimeUse {
    /// The use with these flags.
    pub fn from_flags(in_backward: bool, in_update: bool) -> Self {
        match (in_backward, in_update) {
            (true, true) => FprimeUse::Both,
            (true, false) => FprimeUse::BackwardOnly,
            (false, true) => FprimeUse::UpdateOnly,
            (false, false) => FprimeUse::Neither,
        }
    }

    /// `(in the backward VJP, in the update)`.
    pub fn flags(self) -> (bool, bool) {
        match self {
            FprimeUse::Both => (true, true),
            FprimeUse::BackwardOnly => (true, false),
            FprimeUse::UpdateOnly => (false, true),
            FprimeUse::Neither => (false, false),
        }
    }
}

/// The simplifications of the papers; [`Variant::exact`] is none of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variant {
    /// Backward weights.
    pub feedback: Feedback,
    /// Kolen-Pollack weight decay `lambda`, added as `lambda * W` and `lambda * psi` to the
    /// gradients of both (only with [`Feedback::Learned`]).
    pub feedback_decay: f64,
    /// The `f'` of the backward VJP ([`FPrime::Dropped`]: paper 1 eq. 7's simplification;
    /// [`FPrime::AtState`]: `fderiv-relax`, at `W_k v_{k-1}(t) + b_k`).
    pub fprime_backward: FPrime,
    /// The `f'` of the weight update ([`FPrime::AtState`]: `fderiv-update`, at
    /// `W_k v_{k-1}(T) + b_k`).
    pub fprime_update: FPrime,
    /// `current-input`: the update uses the relaxed `v_{k-1}(T)` as presynaptic term instead of
    /// the stored `h_{k-1}`.
    pub current_input: bool,
    /// Where fderiv-relax and fderiv-update re-evaluate `f_k'`: at `W_k v_{k-1}` without the
    /// bias, as the authors' code does, instead of at `W_k v_{k-1} + b_k`.
    pub state_fprime_without_bias: bool,
    /// Convolutional layers' own feedback and `f'` choices; `None`: the fields above apply to
    /// every layer. When set, `feedback`, `fprime_backward` and `fprime_update` are the
    /// dense layers' (paper 2's code sets them per layer type).
    pub conv: Option<LayerChoices>,
}

impl Variant {
    /// No simplification: exact weight transport and every `f'` where calculus puts it.
    pub fn exact() -> Self {
        Variant {
            feedback: Feedback::Transpose,
            feedback_decay: 0.0,
            fprime_backward: FPrime::Stored,
            fprime_update: FPrime::Stored,
            current_input: false,
            state_fprime_without_bias: false,
            conv: None,
        }
    }

    /// The dense layers' choices (every layer's, without a convolutional override).
    pub fn dense(&self) -> LayerChoices {
        LayerChoices {
            feedback: self.feedback,
            fprime_backward: self.fprime_backward,
            fprime_update: self.fprime_update,
        }
    }

    /// The choices that apply to `layer`. A layer without activation has `f'` identically one,
    /// so its `f'` is dropped wherever it would be taken: the signal goes through unmultiplied,
    /// with the same bits and one pass over the tensor less.
    pub fn for_layer<B: Backend>(&self, layer: &Layer<B>) -> LayerChoices {
        let choices = match (layer, self.conv) {
            (Layer::Conv2d(_), Some(conv)) => conv,
            _ => self.dense(),
        };
        if layer.weights().is_some_and(|w| w.activation == Activation::Identity) {
            LayerChoices {
                fprime_backward: FPrime::Dropped,
                fprime_update: FPrime::Dropped,
                ..choices
            }
        } else {
            choices
        }
    }

    /// The variant whose dense layers make the choices of `dense`, with the convolutional
    /// layers' own `feedback` and `fprime` where given (`f'` at the relaxing state where
    /// `at_state`, in the relaxation and in the update, says); the other settings exact.
    pub fn per_layer(
        dense: LayerChoices,
        feedback: Option<Feedback>,
        fprime: Option<FprimeUse>,
        at_state: (bool, bool),
    ) -> Self {
        let conv = (feedback.is_some() || fprime.is_some()).then(|| {
            let kept = fprime.unwrap_or(dense.fprime_use());
            LayerChoices::new(feedback.unwrap_or(dense.feedback), kept, at_state)
        });
        Variant {
            feedback: dense.feedback,
            fprime_backward: dense.fprime_backward,
            fprime_update: dense.fprime_update,
            conv,
            ..Variant::exact()
        }
    }

    /// Whether any layer type's choices satisfy `test`.
    pub fn any(&self, test: impl Fn(LayerChoices) -> bool) -> bool {
        test(self.dense()) || self.conv.is_some_and(&test)
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

    /// Whether the network needs separate backward matrices `psi_k` (for some layer type).
    pub fn needs_feedback_weights(&self) -> bool {
        self.variant.any(|c| c.feedback != Feedback::Transpose)
    }

    /// Whether the input relaxes ([`Relaxation::relax_input`]).
    pub fn relaxes_input(&self) -> bool {
        matches!(self.method, Method::Relaxation(r) if r.relax_input)
    }

    /// One line describing the method and its settings, for logs and run summaries.
    pub fn describe(&self) -> String {
        let solver = match self.method {
            Method::Relaxation(r) => r.solver_for(&self.variant),
            Method::Backprop => Solver::Euler,
        };
        self.describe_with_solver(solver)
    }

    /// [`Algorithm::describe`] naming `solver` as the one that runs (the auto solver resolved on
    /// a network: `ar_core::solver_on`).
    pub fn describe_with_solver(&self, solver: Solver) -> String {
        let v = &self.variant;
        let feedback = match v.feedback {
            Feedback::Transpose => "W^T".to_string(),
            Feedback::Learned if v.feedback_decay > 0.0 => {
                format!("learned psi, decay {}", v.feedback_decay)
            }
            Feedback::Learned => "learned psi".into(),
            Feedback::Random => "fixed random psi".into(),
        };
        let conv = v.conv.map_or(String::new(), |c| {
            format!(" (conv layers: {} feedback, f' {})", c.feedback, c.fprime_use())
        });
        let feedback = format!("{feedback}{conv}");
        match self.method {
            Method::Backprop => format!("one backward pass through {feedback}"),
            Method::Relaxation(r) => format!(
                "relaxation eta {}, T {}{}, {} schedule, {} start{}, {} solver, backward through \
                 {feedback}{}",
                r.eta,
                r.steps,
                r.tolerance.map_or(String::new(), |t| format!(" (stop at residual {t:e})")),
                r.schedule,
                r.init,
                if r.relax_input { ", input relaxing" } else { "" },
                match (r.solver, solver) {
                    (Solver::Auto, Solver::Euler) if r.solver_for(v) == Solver::ClosedForm => {
                        "euler (auto: the closed form would cost more on this network)".into()
                    }
                    _ => solver.to_string(),
                },
                if v.state_fprime_without_bias { ", re-evaluated f' without the bias" } else { "" },
            ),
        }
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
        if v.feedback_decay > 0.0 && !v.any(|c| c.feedback == Feedback::Learned) {
            return bad(format!(
                "feedback decay {} applies only to learned feedback weights, not {:?}",
                v.feedback_decay, v.feedback
            ));
        }
        match self.method {
            Method::Backprop => {
                if v.any(|c| c.at_state()) || v.current_input || v.state_fprime_without_bias {
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
                    if v.any(|c| c.fprime_backward == FPrime::AtState) {
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
                if v.state_fprime_without_bias && !v.any(|c| c.at_state()) {
                    return bad("f' without the bias applies only where f' is re-evaluated at \
                                the state (fderiv-relax, fderiv-update)"
                        .into());
                }
            }
        }
        Ok(())
    }
}

/// The label of an algorithm: `bp`, `fa` or `ar`, followed by its simplifications joined with
/// `+` (`ar+learned+no-f'-backward`); run directories name checkpoints and metrics rows by it.
/// The relaxation's settings and the feedback decay are not part of the label.
impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.variant;
        let mut feedback = v.feedback;
        f.write_str(match self.method {
            Method::Relaxation(_) => "ar",
            Method::Backprop if v.feedback == Feedback::Random => {
                feedback = Feedback::Transpose;
                "fa"
            }
            Method::Backprop => "bp",
        })?;
        if feedback != Feedback::Transpose {
            write!(f, "+{feedback}")?;
        }
        for (on, name) in LABEL_FLAGS {
            if on(v) {
                write!(f, "+{name}")?;
            }
        }
        if let Some(c) = v.conv {
            let d = v.dense();
            if c.feedback != d.feedback {
                write!(f, "+conv-{}", c.feedback)?;
            }
            if c.fprime_use() != d.fprime_use() {
                write!(f, "+conv-f'-{}", c.fprime_use())?;
            }
        }
        Ok(())
    }
}

type FlagTest = fn(&Variant) -> bool;

/// The label parts of the boolean simplifications, in label order.
const LABEL_FLAGS: [(FlagTest, &str); 5] = [
    (|v| !v.fprime_backward.kept(), "no-f'-backward"),
    (|v| !v.fprime_update.kept(), "no-f'-update"),
    (|v| v.any(|c| c.fprime_backward == FPrime::AtState), "fderiv-relax"),
    (|v| v.any(|c| c.fprime_update == FPrime::AtState), "fderiv-update"),
    (|v| v.current_input, "current-input"),
];

/// Parses a label written by `Display`: `ar` gets [`Relaxation::papers`], each `+part`
/// switches on one simplification, and `conv-FEEDBACK` and `conv-f'-USE` give the
/// convolutional layers their own choices.
impl FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split('+');
        let mut a = match parts.next().unwrap_or("") {
            "ar" => Algorithm::relaxation(Relaxation::papers()),
            "bp" => Algorithm::backprop(),
            "fa" => Algorithm::feedback_alignment(),
            other => return Err(format!("unknown algorithm '{other}' (expected ar, bp or fa)")),
        };
        let (mut conv_feedback, mut conv_fprime) = (None, None);
        let (mut kept, mut at_state) = ((true, true), (false, false));
        for part in parts {
            let v = &mut a.variant;
            if let Some(use_) = part.strip_prefix("conv-f'-") {
                conv_fprime = Some(use_.parse::<FprimeUse>().map_err(|e| format!("'{s}': {e}"))?);
                continue;
            }
            if let Some(kind) = part.strip_prefix("conv-") {
                conv_feedback = Some(kind.parse::<Feedback>().map_err(|e| format!("'{s}': {e}"))?);
                continue;
            }
            match part {
                "learned" => v.feedback = Feedback::Learned,
                "random" => v.feedback = Feedback::Random,
                "no-f'-backward" => kept.0 = false,
                "no-f'-update" => kept.1 = false,
                "fderiv-relax" => at_state.0 = true,
                "fderiv-update" => at_state.1 = true,
                "current-input" => v.current_input = true,
                other => {
                    return Err(format!(
                        "'{s}': unknown part '{other}' (expected learned, random, {}, \
                         conv-FEEDBACK or conv-f'-USE)",
                        LABEL_FLAGS.map(|(_, n)| n).join(", ")
                    ))
                }
            }
        }
        let dense =
            LayerChoices::new(a.variant.feedback, FprimeUse::from_flags(kept.0, kept.1), at_state);
        let current_input = a.variant.current_input;
        a.variant = Variant {
            current_input,
            ..Variant::per_layer(dense, conv_feedback, conv_fprime, at_state)
        };
        for (asked, part, taken) in [
            (at_state.0, "fderiv-relax", a.variant.any(|c| c.fprime_backward == FPrime::AtState)),
            (at_state.1, "fderiv-update", a.variant.any(|c| c.fprime_update == FPrime::AtState)),
        ] {
            if asked && !taken {
                return Err(format!("'{s}': {part} re-evaluates an f' that no layer keeps"));
            }
        }
        Ok(a)
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

    #[test]
    fn names_and_labels_round_trip() {
        for name in Solver::NAMES.iter().chain(Feedback::NAMES).chain(Schedule::NAMES) {
            let shown = name
                .parse::<Solver>()
                .map(|x| x.to_string())
                .or_else(|_| name.parse::<Feedback>().map(|x| x.to_string()))
                .or_else(|_| name.parse::<Schedule>().map(|x| x.to_string()))
                .unwrap();
            assert_eq!(&shown, name);
        }
        assert!("bogus".parse::<InitialState>().unwrap_err().contains("feedforward, zero"));
        for label in [
            "bp",
            "fa",
            "ar",
            "ar+learned+no-f'-backward",
            "ar+fderiv-relax+current-input",
            "ar+learned+no-f'-backward+no-f'-update+conv-transpose",
            "ar+conv-learned+conv-f'-update-only",
            "fa+conv-transpose",
            "ar+no-f'-backward+fderiv-relax+conv-f'-both",
        ] {
            let a: Algorithm = label.parse().unwrap();
            assert_eq!(a.to_string(), label);
        }
        assert_eq!(Algorithm::feedback_alignment().to_string(), "fa");
        assert!("ar+sideways".parse::<Algorithm>().unwrap_err().contains("sideways"));
        // f' at the state where no layer keeps that f' cannot be built.
        for label in ["ar+no-f'-backward+fderiv-relax", "ar+no-f'-update+fderiv-update"] {
            let e = label.parse::<Algorithm>().unwrap_err();
            assert!(e.contains("no layer keeps"), "{label}: {e}");
        }
        let a: Algorithm = "ar+no-f'-backward+fderiv-relax+conv-f'-both".parse().unwrap();
        let conv = a.variant.conv.unwrap();
        assert_eq!(
            (a.variant.fprime_backward, conv.fprime_backward),
            (FPrime::Dropped, FPrime::AtState)
        );
    }

    #[test]
    fn auto_solver_picks_the_closed_form_only_where_it_is_exact() {
        let r = Relaxation::papers();
        assert_eq!(r.solver_for(&Variant::exact()), Solver::ClosedForm);
        let v = Variant { fprime_backward: FPrime::AtState, ..Variant::exact() };
        assert_eq!(r.solver_for(&v), Solver::Euler);
        let tol = Relaxation { tolerance: Some(1e-6), ..r };
        assert_eq!(tol.solver_for(&Variant::exact()), Solver::Euler);
        let euler = Relaxation { solver: Solver::Euler, ..r };
        assert_eq!(euler.solver_for(&Variant::exact()), Solver::Euler);
    }
}
