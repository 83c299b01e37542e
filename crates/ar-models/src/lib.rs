//! The model zoo: MLPs from a spec such as `784-300-300-100-10`, the papers' presets, and
//! safetensors checkpoints.

mod checkpoint;
mod cnn;

pub use checkpoint::{
    load_checkpoint, save_checkpoint, write_atomically, Checkpoint, TrainingState,
};
pub use cnn::ModelSpec;

use ar_backend::{Activation, Backend};
use ar_core::{DenseShape, Init, Network};
use std::fmt;

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

/// A multilayer perceptron: layer widths from input to output, one hidden activation and one
/// output activation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlpSpec {
    /// `[n_0, n_1, .., n_L]`: the input width, then each layer's output width.
    pub widths: Vec<usize>,
    /// The activation of every layer but the last.
    pub hidden: Activation,
    /// The activation of the last layer (usually identity).
    pub output: Activation,
}

impl MlpSpec {
    /// Parses `"784-300-300-100-10"` (at least an input and an output width; every width >= 1).
    pub fn parse(spec: &str, hidden: Activation, output: Activation) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Spec { spec: spec.to_string(), reason };
        let widths = spec
            .split('-')
            .map(|w| match w.trim().parse::<usize>() {
                Ok(0) => Err(err("widths must be at least 1".into())),
                Ok(n) => Ok(n),
                Err(_) => {
                    Err(err(format!("'{w}' is not a width (expected numbers joined by '-')")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if widths.len() < 2 {
            return Err(err("needs at least an input and an output width, e.g. 64-10".into()));
        }
        Ok(MlpSpec { widths, hidden, output })
    }

    /// The paper-1 network: 784-300-300-100-10, ReLU hidden layers, linear output.
    pub fn paper1() -> Self {
        MlpSpec {
            widths: vec![784, 300, 300, 100, 10],
            hidden: Activation::Relu,
            output: Activation::Identity,
        }
    }

    /// A small MLP for the bundled 8x8 digits: 64-64-32-10 with tanh, linear output.
    pub fn digits() -> Self {
        MlpSpec {
            widths: vec![64, 64, 32, 10],
            hidden: Activation::Tanh,
            output: Activation::Identity,
        }
    }

    /// One shape per layer.
    pub fn layers(&self) -> Vec<DenseShape> {
        let last = self.widths.len() - 2;
        self.widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| DenseShape {
                inputs: w[0],
                outputs: w[1],
                activation: if i == last { self.output } else { self.hidden },
            })
            .collect()
    }

    /// Checks that the model takes `inputs` features and has `classes` outputs.
    pub fn check_fits(&self, inputs: usize, classes: usize) -> Result<(), ModelError> {
        let (first, last) = (self.widths[0], self.widths[self.widths.len() - 1]);
        if first != inputs || last != classes {
            return Err(ModelError::Mismatch {
                model: self.to_string(),
                reason: format!(
                    "maps {first} inputs to {last} outputs, but the data has {inputs} inputs and {classes} classes"
                ),
            });
        }
        Ok(())
    }

    /// The network with weights drawn on the host from `init` seeded by `seed`.
    pub fn build<B: Backend>(
        &self,
        backend: B,
        init: Init,
        seed: u64,
    ) -> Result<Network<B>, ModelError> {
        Ok(Network::dense_stack(backend, &self.layers(), init, seed)?)
    }
}

impl fmt::Display for MlpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths: Vec<String> = self.widths.iter().map(|w| w.to_string()).collect();
        write!(f, "{} ({} hidden, {} output)", widths.join("-"), self.hidden, self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ar_ndarray::NdArray;

    #[test]
    fn parses_specs_and_rejects_bad_ones() {
        let m =
            MlpSpec::parse("784-300-300-100-10", Activation::Relu, Activation::Identity).unwrap();
        assert_eq!(m, MlpSpec::paper1());
        let shapes = m.layers();
        assert_eq!(shapes.len(), 4);
        assert_eq!(shapes[3].activation, Activation::Identity);
        assert_eq!(shapes[0].activation, Activation::Relu);
        for bad in ["10", "10-x-3", "10-0-3", ""] {
            let e = MlpSpec::parse(bad, Activation::Relu, Activation::Identity).unwrap_err();
            assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn builds_a_network_that_fits_or_says_why_not() {
        let m = MlpSpec::digits();
        let net = m.build(NdArray::<f64>::new(), Init::papers(), 0).unwrap();
        assert_eq!(net.widths(), vec![64, 32, 10]);
        m.check_fits(64, 10).unwrap();
        let e = m.check_fits(784, 10).unwrap_err().to_string();
        assert!(e.contains("784") && e.contains("64"), "{e}");
    }
}
