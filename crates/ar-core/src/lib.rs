//! Activation relaxation (Millidge, Tschantz, Seth, Buckley 2020) and its baselines, generic over
//! any [`Backend`].
//!
//! A [`Network`] is a stack of layers. [`Network::forward`] runs the feedforward pass and freezes
//! what the backward phase needs in a [`ForwardCache`]. An [`Algorithm`] then turns the output
//! error into one learning signal per layer, either by exact backprop (or feedback alignment) or
//! by relaxing the hidden activities (`dv/dt = -v + J^T v_above`), and the weight update is
//! formed from those signals. [`Trainer`] ties this to a loss and an optimiser.

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
    Algorithm, Feedback, InitialState, Method, Relaxation, Schedule, Solver, Variant,
};
pub use ar_backend::{Activation, Backend, BackendExt, ConvGeometry, PoolGeometry};
pub use error::CoreError;
pub use grads::{Gradients, LayerGrads};
pub use init::Init;
pub use layer::{Conv2d, Dense, DenseShape, Layer, Weights, WeightsMut};
pub use loss::Loss;
pub use network::{ForwardCache, LayerSpec, Network};
pub use optim::{Optimizer, OptimizerKind};
pub use signals::{
    closed_form_coefficients, learning_signals, state_input, stateful_layers, RelaxStats, Signals,
};
pub use train::{count_correct, StepOutcome, Trainer};
