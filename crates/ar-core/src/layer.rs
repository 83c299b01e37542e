//! Layer kinds: their parameters, shapes, forward maps and vector-Jacobian products.

use crate::CoreError;
use ar_backend::{Activation, Backend, ConvGeometry, PoolGeometry};

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
                        "a {}x{} kernel with {:?} does not fit {h}x{w}",
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
                    _ => bad(format!("a {p:?} pool does not fit {h}x{w}")),
                }
            }
            Layer::Flatten => Ok(vec![input.iter().product()]),
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
        }
    }
}
