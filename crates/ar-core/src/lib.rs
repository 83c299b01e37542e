//! Activation relaxation (Millidge, Tschantz, Seth, Buckley 2020) and its baselines, generic over
//! any [`Backend`].
//!
//! A [`Network`] is a stack of layers. [`Network::forward`] runs the feedforward pass and freezes
//! what the backward phase needs in a [`ForwardCache`]. An [`Algorithm`] then turns the output
//! error into one learning signal per layer, either by exact backprop (or feedback alignment) or
//! by relaxing the hidden activities (`dv/dt = -v + J^T v_above`), and the weight update is
//! formed from those signals. [`Trainer`] ties this to a loss and an optimiser.

/// Implements `Display` and `FromStr` for a fieldless enum from one table of names, with
/// `NAMES` (every name, in order) and `name()`: the names the command line and config files use.
/// `named_enum!(Schedule, "schedule", Parallel => "parallel", Sweep => "sweep");`
#[macro_export]
macro_rules! named_enum {
    ($ty:ident, $what:literal, $($variant:ident => $name:literal),+ $(,)?) => {
        impl $ty {
            /// Every accepted name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The name used on the command line and in config files.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(format!(
                        "unknown {} '{s}' (expected one of: {})",
                        $what,
                        Self::NAMES.join(", ")
                    )),
                }
            }
        }
    };
}

pub mod algorithm;
mod error;
mod grads;
pub mod init;
mod layer;
pub mod loss;
pub mod metrics;
mod network;
mod optim;
mod signals;
mod train;

pub use algorithm::{
    Algorithm, FPrime, Feedback, FprimeUse, InitialState, LayerChoices, Method, Relaxation,
    Schedule, Solver, Variant,
};
pub use ar_backend::{Activation, Backend, BackendExt, ConvGeometry, PoolGeometry};
pub use error::CoreError;
pub use grads::{Gradients, LayerGrads};
pub use init::Init;
pub use layer::{
    Conv2d, Dense, DenseShape, HostLayer, Layer, LayerParams, LayerShape, Weights, WeightsMut,
};
pub use loss::Loss;
pub use network::{
    chain_parents, default_names, transpose, ForwardCache, LayerSpec, Network, MAX_ACTIVITY,
    MAX_WEIGHTS,
};
pub use optim::{Optimizer, OptimizerKind};
pub use signals::{
    closed_form_coefficients, closed_form_vjps, learning_signals, relaxation_depth, solver_on,
    state_input, stateful_layers, RelaxStats, Signals,
};
pub use train::ConvUpdate;
pub use train::{count_correct, StepOutcome, Trainer};
