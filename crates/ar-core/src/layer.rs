//! Layer kinds: their parameters, shapes, forward maps and vector-Jacobian products, and their
//! description without a backend ([`LayerShape`], [`HostLayer`]) that checkpoints, the host
//! reference and the autograd oracle share.

use crate::CoreError;
use ar_backend::{Activation, Backend, ConvGeometry, PoolGeometry};
use serde::{Deserialize, Serialize};

/// The shape of a dense layer: `h = f(W x + b)` with `W` of shape `[outputs, inputs]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseShape {
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// The nonlinearity `f`.
    pub activation: Activation,
}

/// A fully connected layer `h = f(W x + b)`.
#[derive(Clone, Debug)]
pub struct Dense<B: Backend> {
    /// `W`, `[outputs, inputs]` (PyTorch's layout).
    pub weight: B::Tensor,
    /// `b`, `[outputs]`.
    pub bias: B::Tensor,
    /// `f`.
    pub activation: Activation,
    /// `psi`, `[inputs, outputs]`: the backward matrix used instead of `W^T` by the learned and
    /// random feedback variants; `None` where weight transport is used.
    pub feedback: Option<B::Tensor>,
}

impl<B: Backend> Dense<B> {
    /// The layer's shape.
    pub fn shape(&self, be: &B) -> DenseShape {
        let s = be.shape(&self.weight);
        DenseShape { inputs: s[1], outputs: s[0], activation: self.activation }
    }
}

/// A 2-D convolution `h = f(conv(x, K) + b)` on `[batch, channels, height, width]` activities.
#[derive(Clone, Debug)]
pub struct Conv2d<B: Backend> {
    /// `K`, `[out_channels, in_channels, kh, kw]` (PyTorch's layout).
    pub weight: B::Tensor,
    /// `b`, `[out_channels]`.
    pub bias: B::Tensor,
    /// `f`.
    pub activation: Activation,
    /// Stride and padding.
    pub geometry: ConvGeometry,
    /// The backward kernel used in place of `K` in the transposed convolution by the learned and
    /// random feedback variants, shared over positions. It has `K`'s layout, which is also the
    /// layout of PyTorch's `ConvTranspose2d` weight mapping `out_channels` back to
    /// `in_channels`.
    pub feedback: Option<B::Tensor>,
}

/// One layer of a sequential network. An enum (rather than trait objects) keeps every layer
/// kind's forward map and VJP side by side and lets the relaxation stay one loop.
#[derive(Clone, Debug)]
pub enum Layer<B: Backend> {
    /// A fully connected layer.
    Dense(Dense<B>),
    /// A convolution.
    Conv2d(Conv2d<B>),
    /// Max pooling (no parameters; routes gradients to the frozen argmax).
    MaxPool2d(PoolGeometry),
    /// Average pooling (no parameters).
    AvgPool2d(PoolGeometry),
    /// `[batch, c, h, w]` to `[batch, c h w]` (no parameters).
    Flatten,
    /// `[batch, c, h, w]` to `[batch, c]`, the mean over each channel's plane (no parameters).
    GlobalAvgPool,
    /// The sum of its parents' outputs, all of one shape (a merge node: the residual sum). Its
    /// Jacobian to each parent is the identity; no parameters, no `f'`.
    Add,
}

/// The parameters of a dense or convolutional layer, borrowed.
#[derive(Debug)]
pub struct Weights<'a, B: Backend> {
    /// `W` or `K`.
    pub weight: &'a B::Tensor,
    /// `b`.
    pub bias: &'a B::Tensor,
    /// The backward matrix or kernel, if any.
    pub feedback: Option<&'a B::Tensor>,
    /// `f`.
    pub activation: Activation,
}

/// The parameters of a dense or convolutional layer, mutably borrowed.
#[derive(Debug)]
pub struct WeightsMut<'a, B: Backend> {
    /// `W` or `K`.
    pub weight: &'a mut B::Tensor,
    /// `b`.
    pub bias: &'a mut B::Tensor,
    /// The backward matrix or kernel, if any.
    pub feedback: &'a mut Option<B::Tensor>,
}

impl<B: Backend> Layer<B> {
    /// The dense layer inside, if this is one.
    pub fn as_dense(&self) -> Option<&Dense<B>> {
        match self {
            Layer::Dense(d) => Some(d),
            _ => None,
        }
    }

    /// A short name of the layer's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Dense(_) => "dense",
            Layer::Conv2d(_) => "conv2d",
            Layer::MaxPool2d(_) => "maxpool2d",
            Layer::AvgPool2d(_) => "avgpool2d",
            Layer::Flatten => "flatten",
            Layer::GlobalAvgPool => "globalavgpool",
            Layer::Add => "add",
        }
    }

    /// The weights of a dense or convolutional layer; `None` for parameter-free layers.
    pub fn weights(&self) -> Option<Weights<'_, B>> {
        match self {
            Layer::Dense(d) => Some(Weights {
                weight: &d.weight,
                bias: &d.bias,
                feedback: d.feedback.as_ref(),
                activation: d.activation,
            }),
            Layer::Conv2d(c) => Some(Weights {
                weight: &c.weight,
                bias: &c.bias,
                feedback: c.feedback.as_ref(),
                activation: c.activation,
            }),
            _ => None,
        }
    }

    /// Mutable weights of a dense or convolutional layer.
    pub fn weights_mut(&mut self) -> Option<WeightsMut<'_, B>> {
        match self {
            Layer::Dense(d) => Some(WeightsMut {
                weight: &mut d.weight,
                bias: &mut d.bias,
                feedback: &mut d.feedback,
            }),
            Layer::Conv2d(c) => Some(WeightsMut {
                weight: &mut c.weight,
                bias: &mut c.bias,
                feedback: &mut c.feedback,
            }),
            _ => None,
        }
    }

    /// Whether the layer has weights (and so an activity that relaxes).
    pub fn is_parametric(&self) -> bool {
        matches!(self, Layer::Dense(_) | Layer::Conv2d(_))
    }

    /// The per-sample output shape for a per-sample input shape.
    pub fn output_shape(&self, be: &B, input: &[usize]) -> Result<Vec<usize>, CoreError> {
        let bad = |m: String| Err(CoreError::Shape(m));
        match self {
            Layer::Dense(d) => {
                let s = d.shape(be);
                if input != [s.inputs] {
                    return bad(format!(
                        "a dense layer of {} inputs cannot take input of shape {input:?}",
                        s.inputs
                    ));
                }
                Ok(vec![s.outputs])
            }
            Layer::Conv2d(c) => {
                let k = be.shape(&c.weight);
                let [ch, h, w] = input else {
                    return bad(format!(
                        "a convolution needs [channels, height, width] input, got {input:?}"
                    ));
                };
                if *ch != k[1] {
                    return bad(format!(
                        "a convolution of {} input channels cannot take {ch}",
                        k[1]
                    ));
                }
                match (c.geometry.output_len(*h, k[2]), c.geometry.output_len(*w, k[3])) {
                    (Some(oh), Some(ow)) => Ok(vec![k[0], oh, ow]),
                    _ => bad(format!(
                        "a {}x{} kernel with {} does not fit {h}x{w}",
                        k[2], k[3], c.geometry
                    )),
                }
            }
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => {
                let [ch, h, w] = input else {
                    return bad(format!(
                        "pooling needs [channels, height, width] input, got {input:?}"
                    ));
                };
                match (p.output_len(*h), p.output_len(*w)) {
                    (Some(oh), Some(ow)) => Ok(vec![*ch, oh, ow]),
                    _ => bad(format!("pooling with {p} does not fit {h}x{w}")),
                }
            }
            Layer::Flatten => Ok(vec![input.iter().product()]),
            Layer::GlobalAvgPool => match input {
                [ch, h, w] if h * w > 0 => Ok(vec![*ch]),
                _ => bad(format!(
                    "global average pooling needs [channels, height, width] input, got {input:?}"
                )),
            },
            // The network checks that every parent has this shape.
            Layer::Add => Ok(input.to_vec()),
        }
    }

    /// `out <- W x + b` (dense) or `conv(x, K) + b`; parametric layers only.
    pub fn pre_activation_into(&self, be: &B, x: &B::Tensor, out: &mut B::Tensor) {
        self.linear_into(be, x, true, out);
    }

    /// `out <- W x` (dense) or `conv(x, K)`, plus the bias when `with_bias`; parametric layers
    /// only.
    pub fn linear_into(&self, be: &B, x: &B::Tensor, with_bias: bool, out: &mut B::Tensor) {
        match self {
            Layer::Dense(d) => {
                be.gemm(1.0, x, false, &d.weight, true, 0.0, out);
                if with_bias {
                    be.add_row(out, &d.bias);
                }
            }
            Layer::Conv2d(c) if with_bias => be.conv2d_into(x, &c.weight, &c.bias, c.geometry, out),
            Layer::Conv2d(c) => {
                let zero = be.zeros(&be.shape(&c.bias));
                be.conv2d_into(x, &c.weight, &zero, c.geometry, out);
            }
            _ => panic!("linear_into on a {} layer, which has no weights", self.kind()),
        }
    }

    /// The forward map of a parameter-free layer: its output and, for max pooling, the argmax
    /// routing that its VJP needs.
    pub fn forward_parameter_free(&self, be: &B, x: &B::Tensor) -> (B::Tensor, Option<B::Tensor>) {
        match self {
            Layer::MaxPool2d(p) => {
                let (y, arg) = be.max_pool2d(x, *p);
                (y, Some(arg))
            }
            Layer::AvgPool2d(p) => (be.avg_pool2d(x, *p), None),
            Layer::Flatten => {
                let s = be.shape(x);
                (be.reshape(x, &[s[0], s[1..].iter().product()]), None)
            }
            Layer::GlobalAvgPool => {
                // The plane means as one product: [b c, h w] times a column of 1 / (h w).
                let s = be.shape(x);
                let plane = s[2] * s[3];
                let rows = be.reshape(x, &[s[0] * s[1], plane]);
                let ones = be.from_host(&vec![1.0; plane], &[plane, 1]);
                let mut out = be.zeros(&[s[0] * s[1], 1]);
                be.gemm(1.0 / plane as f64, &rows, false, &ones, false, 0.0, &mut out);
                (be.reshape(&out, &[s[0], s[1]]), None)
            }
            _ => panic!("forward_parameter_free on a {} layer", self.kind()),
        }
    }

    /// `out <- alpha * J^T(e) + beta * out`: the layer's vector-Jacobian product with respect to
    /// its input. For weighted layers `e` is the signal already multiplied by `f'` where the
    /// variant asks, and the product goes through `W^T` (transposed convolution by `K`) or, with
    /// `use_feedback`, through the backward matrix or kernel. Max pooling routes `e` to the
    /// frozen `argmax`.
    pub fn backward_into(
        &self,
        be: &B,
        e: &B::Tensor,
        use_feedback: bool,
        argmax: Option<&B::Tensor>,
        alpha: f64,
        beta: f64,
        out: &mut B::Tensor,
    ) {
        const CHECKED: &str = "feedback weights are checked by the trainer";
        match self {
            Layer::Dense(d) if use_feedback => {
                be.gemm(alpha, e, false, d.feedback.as_ref().expect(CHECKED), true, beta, out)
            }
            Layer::Dense(d) => be.gemm(alpha, e, false, &d.weight, false, beta, out),
            Layer::Conv2d(c) => {
                let kernel =
                    if use_feedback { c.feedback.as_ref().expect(CHECKED) } else { &c.weight };
                be.conv2d_input_vjp(e, kernel, c.geometry, alpha, beta, out);
            }
            Layer::MaxPool2d(p) => be.max_pool2d_vjp(
                e,
                argmax.expect("the forward pass stores the argmax"),
                *p,
                alpha,
                beta,
                out,
            ),
            Layer::AvgPool2d(p) => be.avg_pool2d_vjp(e, *p, alpha, beta, out),
            Layer::Flatten => {
                let reshaped = be.reshape(e, &be.shape(out));
                be.axpby(alpha, &reshaped, beta, out);
            }
            Layer::GlobalAvgPool => {
                // Each channel's signal spread evenly over its plane: [b c, 1] times a row of
                // 1 / (h w).
                let s = be.shape(out);
                let plane = s[2] * s[3];
                let column = be.reshape(e, &[s[0] * s[1], 1]);
                let ones = be.from_host(&vec![1.0; plane], &[1, plane]);
                let mut spread = be.zeros(&[s[0] * s[1], plane]);
                be.gemm(1.0 / plane as f64, &column, false, &ones, false, 0.0, &mut spread);
                be.axpby(alpha, &be.reshape(&spread, &s), beta, out);
            }
            Layer::Add => be.axpby(alpha, e, beta, out),
        }
    }
}

/// A layer's kind and every size, resolved. Serialised as a JSON object whose `kind` is
/// `dense`, `conv2d`, `maxpool2d`, `avgpool2d`, `flatten`, `globalavgpool` or `add`, with the
/// sizes as fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LayerShape {
    /// `h = f(W x + b)`, `W` of shape `[outputs, inputs]`.
    Dense {
        /// Input features.
        inputs: usize,
        /// Output features.
        outputs: usize,
        /// Nonlinearity.
        #[serde(with = "by_name")]
        activation: Activation,
    },
    /// `h = f(conv(x, K) + b)`, `K` of shape `[out_channels, in_channels, kernel, kernel]`.
    Conv2d {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Kernel side.
        kernel: usize,
        /// Step between windows.
        stride: usize,
        /// Zeros added on every side.
        padding: usize,
        /// Nonlinearity.
        #[serde(with = "by_name")]
        activation: Activation,
    },
    /// Max pooling.
    MaxPool2d {
        /// Window side.
        kernel: usize,
        /// Step between windows.
        stride: usize,
    },
    /// Average pooling.
    AvgPool2d {
        /// Window side.
        kernel: usize,
        /// Step between windows.
        stride: usize,
    },
    /// `[c, h, w]` to `[c h w]`.
    Flatten,
    /// `[c, h, w]` to `[c]`, each plane's mean.
    GlobalAvgPool,
    /// The sum of the node's parents.
    Add,
}

/// A weighted layer's tensors: weight, bias and, where the variant uses one, backward weight.
pub type LayerParams<T> = (T, T, Option<T>);

impl LayerShape {
    /// The shape of the weight (`W` or `K`); `None` for parameter-free layers.
    pub fn weight_shape(&self) -> Option<Vec<usize>> {
        match *self {
            LayerShape::Dense { inputs, outputs, .. } => Some(vec![outputs, inputs]),
            LayerShape::Conv2d { in_channels, out_channels, kernel, .. } => {
                Some(vec![out_channels, in_channels, kernel, kernel])
            }
            _ => None,
        }
    }

    /// The shape of the backward matrix `psi` (`[inputs, outputs]`) or kernel (`K`'s).
    pub fn feedback_shape(&self) -> Option<Vec<usize>> {
        match *self {
            LayerShape::Dense { inputs, outputs, .. } => Some(vec![inputs, outputs]),
            _ => self.weight_shape(),
        }
    }

    /// The number of biases (outputs or output channels; 0 without parameters).
    pub fn bias_len(&self) -> usize {
        self.weight_shape().map_or(0, |s| s[0])
    }

    /// The layer these sizes describe, with these parameters (`None` exactly for
    /// parameter-free layers; shapes as [`LayerShape::weight_shape`] and
    /// [`LayerShape::feedback_shape`] give them).
    pub fn layer<B: Backend>(&self, params: Option<LayerParams<B::Tensor>>) -> Layer<B> {
        match (*self, params) {
            (LayerShape::Dense { activation, .. }, Some((weight, bias, feedback))) => {
                Layer::Dense(Dense { weight, bias, activation, feedback })
            }
            (
                LayerShape::Conv2d { stride, padding, activation, .. },
                Some((weight, bias, feedback)),
            ) => {
                let geometry = ConvGeometry { stride, padding };
                Layer::Conv2d(Conv2d { weight, bias, activation, geometry, feedback })
            }
            (LayerShape::MaxPool2d { kernel, stride }, None) => {
                Layer::MaxPool2d(PoolGeometry { kernel, stride })
            }
            (LayerShape::AvgPool2d { kernel, stride }, None) => {
                Layer::AvgPool2d(PoolGeometry { kernel, stride })
            }
            (LayerShape::Flatten, None) => Layer::Flatten,
            (LayerShape::GlobalAvgPool, None) => Layer::GlobalAvgPool,
            (LayerShape::Add, None) => Layer::Add,
            (shape, _) => panic!("{shape:?}: parameters given to a layer without, or missing"),
        }
    }
}

impl<B: Backend> Layer<B> {
    /// The layer's kind and sizes.
    pub fn layer_shape(&self, be: &B) -> LayerShape {
        match self {
            Layer::Dense(d) => {
                let s = d.shape(be);
                LayerShape::Dense { inputs: s.inputs, outputs: s.outputs, activation: s.activation }
            }
            Layer::Conv2d(c) => {
                let k = be.shape(&c.weight);
                let ConvGeometry { stride, padding } = c.geometry;
                LayerShape::Conv2d {
                    in_channels: k[1],
                    out_channels: k[0],
                    kernel: k[2],
                    stride,
                    padding,
                    activation: c.activation,
                }
            }
            Layer::MaxPool2d(p) => LayerShape::MaxPool2d { kernel: p.kernel, stride: p.stride },
            Layer::AvgPool2d(p) => LayerShape::AvgPool2d { kernel: p.kernel, stride: p.stride },
            Layer::Flatten => LayerShape::Flatten,
            Layer::GlobalAvgPool => LayerShape::GlobalAvgPool,
            Layer::Add => LayerShape::Add,
        }
    }
}

/// A layer with its parameters on the host, row-major in PyTorch's layouts (empty for
/// parameter-free layers).
#[derive(Clone, Debug, PartialEq)]
pub struct HostLayer {
    /// Kind and sizes.
    pub shape: LayerShape,
    /// `W` (`[outputs, inputs]`) or `K` (`[out_channels, in_channels, k, k]`).
    pub weight: Vec<f64>,
    /// `b`.
    pub bias: Vec<f64>,
    /// The nodes this layer reads (0 the input, `k` the output of layer `k`, 1-based): one
    /// for every kind but [`LayerShape::Add`], which sums two or more.
    pub parents: Vec<usize>,
}

/// Serde of an [`Activation`] by its name (`tanh`).
mod by_name {
    use ar_backend::Activation;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(f: &Activation, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(f.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Activation, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_serialise_as_kind_and_sizes() {
        let dense = LayerShape::Dense { inputs: 4, outputs: 3, activation: Activation::Tanh };
        let json = serde_json::to_string(&dense).unwrap();
        assert_eq!(json, r#"{"kind":"dense","inputs":4,"outputs":3,"activation":"tanh"}"#);
        let pool = LayerShape::MaxPool2d { kernel: 2, stride: 2 };
        assert_eq!(
            serde_json::to_string(&pool).unwrap(),
            r#"{"kind":"maxpool2d","kernel":2,"stride":2}"#
        );
        for shape in [dense, pool, LayerShape::Flatten] {
            let back: LayerShape =
                serde_json::from_str(&serde_json::to_string(&shape).unwrap()).unwrap();
            assert_eq!(back, shape);
        }
        let e = serde_json::from_str::<LayerShape>(
            r#"{"kind":"dense","inputs":4,"outputs":3,"activation":"cosh"}"#,
        );
        assert!(e.unwrap_err().to_string().contains("cosh"));
    }
}
