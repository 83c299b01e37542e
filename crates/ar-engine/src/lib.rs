//! Activation relaxation chosen at run time: a tensor backend by name ([`BackendName`],
//! [`dispatch`]), and handles that hide the backend's type, for programs that cannot be generic
//! over it: a [`Model`] (a network on some backend), a [`Learner`] (an algorithm with its
//! optimiser state, training a model), and [`train`] (a whole run of the training crate).
//! The command line and the Python package both stand on these.
//!
//! ```
//! use ar_engine::{Learner, Model};
//! use ar_train::{AlgorithmName, TrainConfig};
//! # fn main() -> Result<(), ar_train::TrainError> {
//! let config = TrainConfig { model: "4-8-3".into(), ..TrainConfig::default() };
//! let mut model = Model::new(&config, &[4], 3)?;
//! let mut learner = Learner::new(&mut model, &config, AlgorithmName::Ar)?;
//! let x = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
//! let step = learner.step(&mut model, &x, &[2, 0])?;
//! assert!(step.loss.is_finite());
//! # Ok(()) }
//! ```

mod backend;
mod check;
mod model;
mod run;

pub use backend::{dispatch, BackendName, Job};
pub use check::{check_sweep, checked_array_job};
pub use model::{Learner, Model, Parameters};
pub use run::{run_job, seconds_per_epoch, train, TrainReport, TrainRequest};
