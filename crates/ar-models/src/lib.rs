//! The model zoo: model descriptions ([`ModelSpec`]: MLP widths such as `784-300-300-100-10`,
//! a layer-spec syntax, the papers' presets by name), and safetensors checkpoints.

mod checkpoint;
mod spec;

pub use checkpoint::{
    load_checkpoint, load_checkpoint_allowing_legacy, save_checkpoint, write_atomically,
    write_f64_tensors, Checkpoint, TrainingState,
};
pub use spec::ModelSpec;

/// Why a model description was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// The spec text could not be parsed.
    #[error("invalid model spec '{spec}': {reason}")]
    Spec {
        /// The text given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The model does not fit the data (input or output width).
    #[error("model {model} {reason}")]
    Mismatch {
        /// The model's name.
        model: String,
        /// What does not fit.
        reason: String,
    },
    /// The network could not be built.
    #[error(transparent)]
    Core(#[from] ar_core::CoreError),
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}
