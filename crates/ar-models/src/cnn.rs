//! Convolutional models: a spec syntax for custom networks and the presets (paper 2's CNN, a
//! deeper CIFAR-10 network for scale, a small CNN for the bundled 8x8 digits).
//!
//! A spec is a comma-separated list of layers:
//! `conv<out>x<k>[/s<stride>][/p<padding>][:<activation>]`, `maxpool<k>[/s<stride>]`,
//! `avgpool<k>[/s<stride>]`, `flatten`, `fc<outputs>[:<activation>]`. Activations default to
//! identity; pooling strides default to the window. Paper 2's CNN on 3x32x32 inputs is
//! `conv6x5:tanh,maxpool2,conv16x5:tanh,flatten,fc120:tanh,fc120:tanh,fc10`.

use crate::ModelError;
use ar_backend::{Activation, Backend, ConvGeometry, PoolGeometry};
use ar_core::{Init, LayerSpec, Network};
use std::fmt;

/// A sequence of layer specs, built for a given input shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// The layers, input first.
    pub layers: Vec<LayerSpec>,
    text: String,
}

impl ModelSpec {
    /// Parses the spec syntax of this module.
    pub fn parse(spec: &str) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Spec { spec: spec.to_string(), reason };
        let mut layers = Vec::new();
        for (i, item) in spec.split(',').map(str::trim).enumerate() {
            let at = |m: String| err(format!("layer {} '{item}': {m}", i + 1));
            let (body, activation) = match item.split_once(':') {
                Some((b, a)) => (b, a.parse::<Activation>().map_err(at)?),
                None => (item, Activation::Identity),
            };
            let mut parts = body.split('/');
            let head = parts.next().unwrap_or("");
            let mut stride = None;
            let mut padding = 0;
            for opt in parts {
                let num = |s: &str| {
                    s.parse::<usize>()
                        .map_err(|_| at(format!("'{opt}' is not /s<stride> or /p<padding>")))
                };
                match opt.split_at(opt.len().min(1)) {
                    ("s", n) => stride = Some(num(n)?),
                    ("p", n) => padding = num(n)?,
                    _ => return Err(at(format!("unknown option '/{opt}'"))),
                }
            }
            let number = |s: &str, what: &str| match s.parse::<usize>() {
                Ok(0) | Err(_) => Err(at(format!("{what} must be a positive whole number"))),
                Ok(n) => Ok(n),
            };
            let layer = if let Some(rest) = head.strip_prefix("conv") {
                let (o, k) =
                    rest.split_once('x').ok_or_else(|| at("expected conv<out>x<kernel>".into()))?;
                LayerSpec::Conv2d {
                    out_channels: number(o, "output channels")?,
                    kernel: number(k, "kernel")?,
                    geometry: ConvGeometry { stride: stride.unwrap_or(1).max(1), padding },
                    activation,
                }
            } else if let Some(k) = head.strip_prefix("maxpool") {
                let kernel = number(k, "window")?;
                LayerSpec::MaxPool2d(PoolGeometry {
                    kernel,
                    stride: stride.unwrap_or(kernel).max(1),
                })
            } else if let Some(k) = head.strip_prefix("avgpool") {
                let kernel = number(k, "window")?;
                LayerSpec::AvgPool2d(PoolGeometry {
                    kernel,
                    stride: stride.unwrap_or(kernel).max(1),
                })
            } else if head == "flatten" {
                LayerSpec::Flatten
            } else if let Some(n) = head.strip_prefix("fc") {
                LayerSpec::Dense { outputs: number(n, "outputs")?, activation }
            } else {
                return Err(at("expected conv, maxpool, avgpool, flatten or fc".into()));
            };
            if stride == Some(0) {
                return Err(at("stride must be at least 1".into()));
            }
            layers.push(layer);
        }
        Ok(ModelSpec { layers, text: spec.to_string() })
    }

    /// Paper 2's CNN (ALGORITHM.md section 4) for `classes` classes: conv 6 5x5 tanh, max-pool 2,
    /// conv 16 5x5 tanh, flatten (1600 on 3x32x32 inputs), fc 120 tanh, fc 120 tanh, fc linear.
    /// It adapts to its input's channels and size (1024 after flatten on 1x28x28).
    pub fn paper2(classes: usize) -> Self {
        Self::parse(&format!(
            "conv6x5:tanh,maxpool2,conv16x5:tanh,flatten,fc120:tanh,fc120:tanh,fc{classes}"
        ))
        .expect("the preset parses")
    }

    /// The deeper network for scale (the CIFAR-10 network of the equilibrium-propagation and
    /// predictive-coding benchmarks): four 3x3 convolutions of 128, 256, 512 and 512 channels
    /// (padding 1, ReLU), each followed by 2x2 max-pooling, and one linear head.
    pub fn deep(classes: usize) -> Self {
        Self::parse(&format!(
            "conv128x3/p1:relu,maxpool2,conv256x3/p1:relu,maxpool2,conv512x3/p1:relu,maxpool2,\
             conv512x3/p1:relu,maxpool2,flatten,fc{classes}"
        ))
        .expect("the preset parses")
    }

    /// A small CNN that fits the bundled 1x8x8 digits: conv 8 3x3 (padding 1) tanh, max-pool 2,
    /// conv 16 3x3 (padding 1) tanh, flatten (256), linear head.
    pub fn digits(classes: usize) -> Self {
        Self::parse(&format!("conv8x3/p1:tanh,maxpool2,conv16x3/p1:tanh,flatten,fc{classes}"))
            .expect("the preset parses")
    }

    /// The network for inputs of per-sample shape `input_shape` (`[c, h, w]`), with weights
    /// drawn on the host from `init` seeded by `seed`.
    pub fn build<B: Backend>(
        &self,
        backend: B,
        input_shape: &[usize],
        init: Init,
        seed: u64,
    ) -> Result<Network<B>, ModelError> {
        Network::build(backend, input_shape, &self.layers, init, seed).map_err(|e| {
            ModelError::Mismatch {
                model: self.text.clone(),
                reason: format!("does not fit inputs of shape {input_shape:?}: {e}"),
            }
        })
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ar_ndarray::NdArray;

    #[test]
    fn presets_adapt_to_their_input() {
        let be = NdArray::<f64>::new();
        let net = ModelSpec::paper2(10).build(be, &[3, 32, 32], Init::papers(), 0).unwrap();
        assert_eq!(net.output_shapes()[3], vec![1600], "flatten gives 1600 on 3x32x32");
        let net = ModelSpec::paper2(10).build(be, &[1, 28, 28], Init::papers(), 0).unwrap();
        assert_eq!(net.output_shapes()[3], vec![1024]);
        let net = ModelSpec::deep(10).build(be, &[3, 32, 32], Init::PyTorch, 0).unwrap();
        assert_eq!(net.output_shapes()[8], vec![2048]);
        let net = ModelSpec::digits(10).build(be, &[1, 8, 8], Init::PyTorch, 0).unwrap();
        assert_eq!(net.output_width(), 10);
    }

    #[test]
    fn spec_errors_name_the_layer() {
        for (bad, needle) in [
            ("conv6:tanh", "conv<out>x<kernel>"),
            ("conv6x5:swish", "swish"),
            ("maxpool0", "window"),
            ("conv6x5/q1", "/q1"),
            ("dropout", "expected conv"),
        ] {
            let e = ModelSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("layer 1"), "{bad}: {e}");
        }
        let e = ModelSpec::paper2(10)
            .build(NdArray::<f64>::new(), &[1, 8, 8], Init::papers(), 0)
            .unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
    }
}
