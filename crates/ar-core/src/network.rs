//! A network of layers (a chain, or any DAG with merge nodes), its feedforward pass and the
//! frozen cache the backward phase reads.

use crate::algorithm::{Algorithm, Feedback};
use crate::init::{self, Init};
use crate::layer::{Conv2d, Dense, DenseShape, HostLayer, Layer};
use crate::CoreError;
use ar_backend::{Activation, Backend, BackendExt, ConvGeometry, HostValues, PoolGeometry};

/// A network of layers on backend `B`: nodes in topological order, node 0 the input and node
/// `k` (1-based) the output of `layers[k - 1]`, which reads the nodes of `parents(k)`. In a chain
/// node `k` reads node `k - 1`; an [`Layer::Add`] node sums two or more earlier nodes (a residual
/// connection). The last node is the output; every other node is read by a later one.
#[derive(Clone, Debug)]
pub struct Network<B: Backend> {
    backend: B,
    /// The layers, input first.
    pub layers: Vec<Layer<B>>,
    /// `parents[k - 1]`: the nodes layer `k` reads.
    parents: Vec<Vec<usize>>,
    /// `children[j]`: the layers (1-based) that read node `j`, ascending.
    children: Vec<Vec<usize>>,
    /// Each layer's module path in checkpoints (`layers.{i}` by default).
    names: Vec<String>,
    input_shape: Vec<usize>,
    shapes: Vec<Vec<usize>>,
}

/// A layer to build, before its weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerSpec {
    /// A fully connected layer with this many outputs.
    Dense {
        /// Output features.
        outputs: usize,
        /// Nonlinearity.
        activation: Activation,
    },
    /// A convolution with square kernels.
    Conv2d {
        /// Output channels.
        out_channels: usize,
        /// Kernel side.
        kernel: usize,
        /// Stride and padding.
        geometry: ConvGeometry,
        /// Nonlinearity.
        activation: Activation,
    },
    /// Max pooling.
    MaxPool2d(PoolGeometry),
    /// Average pooling.
    AvgPool2d(PoolGeometry),
    /// Flattening `[c, h, w]` to `[c h w]`.
    Flatten,
    /// Each channel's mean, `[c, h, w]` to `[c]`.
    GlobalAvgPool,
    /// The sum of two or more earlier nodes (see [`Network::build_graph`]).
    Add,
}

/// The module paths of `depth` layers as an `nn.Sequential` named `layers` has them.
pub fn default_names(depth: usize) -> Vec<String> {
    (0..depth).map(|i| format!("layers.{i}")).collect()
}

/// The most values one layer's weight may hold (2^26: 512 MiB in f64), checked before any is
/// drawn.
pub const MAX_WEIGHTS: usize = 1 << 26;

/// The most values one sample's activity may hold at any node (2^24), checked when a network is
/// built, before any batch is allocated.
pub const MAX_ACTIVITY: usize = 1 << 24;

/// Refuses a tensor of `dims` with more than `limit` values, naming layer `k` and the size.
fn check_size(
    k: usize,
    kind: &str,
    what: &str,
    dims: &[usize],
    limit: usize,
) -> Result<(), CoreError> {
    let values = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if values.is_some_and(|v| v <= limit) {
        return Ok(());
    }
    let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
    let count = values.map_or("more than 2^64".to_string(), |v| v.to_string());
    Err(CoreError::Shape(format!(
        "layer {k} ({kind}): {what} of {} = {count} values is more than the {limit} allowed",
        dims.join(" x ")
    )))
}

/// One parent list per layer.
fn check_parent_lists(layers: usize, lists: usize) -> Result<(), CoreError> {
    if layers == lists {
        return Ok(());
    }
    Err(CoreError::InvalidConfig(format!(
        "{layers} layers need {layers} parent lists, got {lists}"
    )))
}

/// A copy of `value`, in `buffer`'s storage when one is given.
fn copy_into<T: Clone>(buffer: Option<T>, value: &T) -> T {
    match buffer {
        Some(mut t) => {
            t.clone_from(value);
            t
        }
        None => value.clone(),
    }
}

/// The parents of a chain of `depth` layers: layer `k` reads node `k - 1`.
pub fn chain_parents(depth: usize) -> Vec<Vec<usize>> {
    (0..depth).map(|k| vec![k]).collect()
}

/// Everything the forward pass freezes for the backward phase, for one batch. Index `k - 1`
/// of `pre`, `fprime` and `argmax` belongs to layer `k` (1-based as in the papers).
#[derive(Clone, Debug)]
pub struct ForwardCache<B: Backend> {
    /// `h_0 .. h_{L-1}`, every node's output but the last (`activities[0]` is the data batch).
    pub activities: Vec<B::Tensor>,
    /// `a_k`, the pre-activation of each weighted layer.
    pub pre: Vec<Option<B::Tensor>>,
    /// `f_k'(a_k)` of each weighted layer, computed once per batch.
    pub fprime: Vec<Option<B::Tensor>>,
    /// The argmax routing of each max-pooling layer.
    pub argmax: Vec<Option<B::Tensor>>,
    /// `h_L`, the network's output.
    pub output: B::Tensor,
}

impl<B: Backend> ForwardCache<B> {
    /// The batch size.
    pub fn batch_size(&self, be: &B) -> usize {
        be.shape(&self.output)[0]
    }

    /// `h_k` for `k` in `0..=L` (the feedforward activity of node `k`; 0 is the data).
    pub fn activity(&self, k: usize) -> &B::Tensor {
        if k == self.activities.len() {
            &self.output
        } else {
            &self.activities[k]
        }
    }
}

impl<B: Backend> Network<B> {
    /// A network from layers already on the backend, taking inputs of the per-sample shape
    /// `input_shape` (`[features]` or `[channels, height, width]`).
    pub fn from_layers(
        backend: B,
        input_shape: &[usize],
        layers: Vec<Layer<B>>,
    ) -> Result<Self, CoreError> {
        let parents = chain_parents(layers.len());
        Self::from_graph(backend, input_shape, layers, parents)
    }

    /// A network whose layer `k` (1-based) reads the nodes `parents[k - 1]` (each below `k`; 0
    /// is the input). Checked: an [`Layer::Add`] reads two or more nodes of one shape, every
    /// other layer one; every node but the last is read; the last outputs a vector.
    pub fn from_graph(
        backend: B,
        input_shape: &[usize],
        layers: Vec<Layer<B>>,
        parents: Vec<Vec<usize>>,
    ) -> Result<Self, CoreError> {
        if layers.is_empty() {
            return Err(CoreError::InvalidConfig("a network needs at least one layer".into()));
        }
        check_parent_lists(layers.len(), parents.len())?;
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(layers.len());
        let mut children = vec![Vec::new(); layers.len() + 1];
        for (i, (layer, from)) in layers.iter().zip(&parents).enumerate() {
            let k = i + 1;
            let node_shape = |j: usize| if j == 0 { input_shape } else { &shapes[j - 1][..] };
            let name = |j: usize| {
                if j == 0 {
                    "the input".to_string()
                } else {
                    format!("layer {j} ({})", layers[j - 1].kind())
                }
            };
            let wanted = if matches!(layer, Layer::Add) { "two or more" } else { "exactly one" };
            let merge = matches!(layer, Layer::Add);
            if (merge && from.len() < 2) || (!merge && from.len() != 1) {
                return Err(CoreError::Shape(format!(
                    "layer {k} ({}) reads {wanted} nodes, got {from:?}",
                    layer.kind()
                )));
            }
            if let Some(&bad) = from.iter().find(|&&j| j >= k) {
                return Err(CoreError::Shape(format!(
                    "layer {k} ({}) reads node {bad}, which is not below it",
                    layer.kind()
                )));
            }
            for pair in from.windows(2) {
                if node_shape(pair[0]) != node_shape(pair[1]) {
                    return Err(CoreError::Shape(format!(
                        "layer {k} (add) sums {} of shape {:?} and {} of shape {:?}",
                        name(pair[0]),
                        node_shape(pair[0]),
                        name(pair[1]),
                        node_shape(pair[1])
                    )));
                }
            }
            let shape = layer.output_shape(&backend, node_shape(from[0])).map_err(|e| {
                // The layer's own message, without a second "shape mismatch:" prefix.
                let why = match e {
                    CoreError::Shape(m) | CoreError::InvalidConfig(m) => m,
                };
                CoreError::Shape(format!("layer {k} ({}): {why}", layer.kind()))
            })?;
            check_size(k, layer.kind(), "an output per sample", &shape, MAX_ACTIVITY)?;
            shapes.push(shape);
            for &j in from {
                children[j].push(k);
            }
        }
        if let Some(j) = (0..layers.len()).find(|&j| children[j].is_empty()) {
            return Err(CoreError::Shape(format!(
                "node {j}'s output is read by no later layer (only the last layer's may be unread)"
            )));
        }
        let shape = &shapes[shapes.len() - 1];
        if shape.len() != 1 {
            return Err(CoreError::Shape(format!(
                "the last layer must output a vector, not {shape:?} (add flatten)"
            )));
        }
        let names = default_names(layers.len());
        let input_shape = input_shape.to_vec();
        Ok(Network { backend, layers, parents, children, names, input_shape, shapes })
    }

    /// A stack of dense layers with weights drawn on the host from `init` with a generator
    /// seeded by `seed`, then uploaded (so every backend starts from the same weights).
    pub fn dense_stack(
        backend: B,
        shapes: &[DenseShape],
        init: Init,
        seed: u64,
    ) -> Result<Self, CoreError> {
        let Some(first) = shapes.first() else {
            return Err(CoreError::InvalidConfig("a network needs at least one layer".into()));
        };
        for (k, pair) in shapes.windows(2).enumerate() {
            if pair[0].outputs != pair[1].inputs {
                return Err(CoreError::Shape(format!(
                    "layer {} has {} outputs but layer {} takes {} inputs",
                    k + 1,
                    pair[0].outputs,
                    k + 2,
                    pair[1].inputs
                )));
            }
        }
        let specs: Vec<LayerSpec> = shapes
            .iter()
            .map(|s| LayerSpec::Dense { outputs: s.outputs, activation: s.activation })
            .collect();
        Self::build(backend, &[first.inputs], &specs, init, seed)
    }

    /// Builds layers from specs for inputs of the per-sample shape `input_shape`, drawing every
    /// weight on the host from `init` (fan-in `inputs` or `in_channels kh kw`) with a generator
    /// seeded by `seed`, layer by layer, then uploading.
    pub fn build(
        backend: B,
        input_shape: &[usize],
        specs: &[LayerSpec],
        init: Init,
        seed: u64,
    ) -> Result<Self, CoreError> {
        Self::build_graph(backend, input_shape, specs, &chain_parents(specs.len()), init, seed)
    }

    /// [`Network::build`] for a DAG: layer `k` (1-based) reads the nodes `parents[k - 1]` (see
    /// [`Network::from_graph`]). Weights are drawn layer by layer in order, so a chain draws
    /// exactly what [`Network::build`] draws.
    pub fn build_graph(
        backend: B,
        input_shape: &[usize],
        specs: &[LayerSpec],
        parents: &[Vec<usize>],
        init: Init,
        seed: u64,
    ) -> Result<Self, CoreError> {
        let mut rng = init::rng(seed, init::Stream::Forward);
        let mut layers = Vec::with_capacity(specs.len());
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(specs.len());
        check_parent_lists(specs.len(), parents.len())?;
        for (k, spec) in specs.iter().enumerate() {
            let source = match parents[k].first() {
                Some(&j) if j <= k => j,
                _ => {
                    return Err(CoreError::Shape(format!(
                        "layer {} reads {:?}: it needs a node below it",
                        k + 1,
                        parents[k]
                    )))
                }
            };
            let shape = if source == 0 { input_shape.to_vec() } else { shapes[source - 1].clone() };
            let layer = match *spec {
                LayerSpec::Dense { outputs, activation } => {
                    let [inputs] = shape[..] else {
                        return Err(CoreError::Shape(format!(
                            "layer {}: a dense layer needs vector input, got {shape:?} (add flatten)",
                            k + 1
                        )));
                    };
                    if inputs == 0 || outputs == 0 {
                        return Err(CoreError::Shape(format!(
                            "layer {}: dense layer with zero width",
                            k + 1
                        )));
                    }
                    check_size(k + 1, "dense", "a weight", &[outputs, inputs], MAX_WEIGHTS)?;
                    let (w, b) = init.dense(&mut rng, inputs, outputs);
                    Layer::Dense(Dense {
                        weight: backend.from_host(&w, &[outputs, inputs]),
                        bias: backend.from_host(&b, &[outputs]),
                        activation,
                        feedback: None,
                    })
                }
                LayerSpec::Conv2d { out_channels, kernel, geometry, activation } => {
                    let [channels, _, _] = shape[..] else {
                        return Err(CoreError::Shape(format!(
                            "layer {}: a convolution needs [channels, height, width] input, got {shape:?}",
                            k + 1
                        )));
                    };
                    if out_channels == 0 || kernel == 0 || geometry.stride == 0 {
                        return Err(CoreError::Shape(format!(
                            "layer {}: empty convolution {spec:?}",
                            k + 1
                        )));
                    }
                    let dims = [out_channels, channels, kernel, kernel];
                    check_size(k + 1, "conv2d", "a weight", &dims, MAX_WEIGHTS)?;
                    let (w, b) = init.dense(&mut rng, channels * kernel * kernel, out_channels);
                    Layer::Conv2d(Conv2d {
                        weight: backend.from_host(&w, &[out_channels, channels, kernel, kernel]),
                        bias: backend.from_host(&b, &[out_channels]),
                        activation,
                        geometry,
                        feedback: None,
                    })
                }
                LayerSpec::MaxPool2d(p) => Layer::MaxPool2d(p),
                LayerSpec::AvgPool2d(p) => Layer::AvgPool2d(p),
                LayerSpec::Flatten => Layer::Flatten,
                LayerSpec::GlobalAvgPool => Layer::GlobalAvgPool,
                LayerSpec::Add => Layer::Add,
            };
            let out = layer.output_shape(&backend, &shape).map_err(|e| {
                CoreError::Shape(format!("layer {} ({}): {e}", k + 1, layer.kind()))
            })?;
            check_size(k + 1, layer.kind(), "an output per sample", &out, MAX_ACTIVITY)?;
            shapes.push(out);
            layers.push(layer);
        }
        Network::from_graph(backend, input_shape, layers, parents.to_vec())
    }

    /// The network with each layer's module path in checkpoints (`names[i]` for layer `i`,
    /// 0-based, such as `layers.2.branch.0`; a weight is saved as `{name}.weight`): mirroring
    /// a `torch.nn` module of the same structure, so that it loads the checkpoint. Checked: one
    /// name per layer, distinct, of ASCII letters, digits, `_` and dots.
    pub fn with_names(mut self, names: Vec<String>) -> Result<Self, CoreError> {
        let depth = self.layers.len();
        if names.len() != depth {
            let n = names.len();
            return Err(CoreError::InvalidConfig(format!(
                "{depth} layers need {depth} names, got {n}"
            )));
        }
        let ok = |n: &String| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        };
        if let Some(bad) = names.iter().find(|n| !ok(n)) {
            return Err(CoreError::InvalidConfig(format!(
                "layer name {bad:?} is not a module path"
            )));
        }
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort();
        if let Some(pair) = sorted.windows(2).find(|p| p[0] == p[1]) {
            return Err(CoreError::InvalidConfig(format!("two layers are named {:?}", pair[0])));
        }
        self.names = names;
        Ok(self)
    }

    /// Each layer's module path in checkpoints (see [`Network::with_names`]).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The nodes layer `k` (1-based) reads (0 is the input).
    pub fn parents(&self, k: usize) -> &[usize] {
        &self.parents[k - 1]
    }

    /// The layers (1-based, ascending) that read node `j` (0 is the input).
    pub fn children(&self, j: usize) -> &[usize] {
        &self.children[j]
    }

    /// Whether every layer reads the one before it (no merge, no skip).
    pub fn is_chain(&self) -> bool {
        self.parents.iter().enumerate().all(|(i, p)| p[..] == [i])
    }

    /// For every node, whether its learning signal is needed: it is a weighted layer's output
    /// or reads one through a path of layers (it lies on a path from a weighted layer to the
    /// top), or the input relaxes (then every node's is).
    pub fn signals_needed(&self, relax_input: bool) -> Vec<bool> {
        let mut needed = vec![relax_input; self.layers.len() + 1];
        for k in 1..=self.layers.len() {
            needed[k] |= self.layers[k - 1].is_parametric()
                || self.parents[k - 1].iter().any(|&j| needed[j]);
        }
        needed
    }

    /// Whether weighted layer `i` (0-based) sends signals down: when the signal at the node it
    /// reads is needed ([`Network::signals_needed`]; nothing is sent below the first weighted
    /// layer unless the input relaxes).
    pub fn sends_down(&self, i: usize, relax_input: bool) -> bool {
        self.layers[i].is_parametric() && self.signals_needed(relax_input)[self.parents[i][0]]
    }

    /// Whether layer `i` (0-based) needs a backward matrix or kernel under `algorithm`: it
    /// sends signals down, through something other than `W^T` for its layer type.
    pub fn needs_feedback(&self, i: usize, algorithm: &Algorithm) -> bool {
        self.sends_down(i, algorithm.relaxes_input())
            && algorithm.variant.for_layer(&self.layers[i]).feedback != Feedback::Transpose
    }

    /// Draws every backward matrix or kernel `algorithm` needs from `init` (like a forward
    /// weight of the same fan-in) with its own stream of `seed`. Dense layers get `psi` of
    /// `W^T`'s shape, convolutions a kernel of `K`'s layout. When the input relaxes the first
    /// weighted layer gets one too, drawn last, so the other layers' draws do not depend on it.
    pub fn init_feedback(&mut self, init: Init, seed: u64, algorithm: &Algorithm) {
        let mut rng = init::rng(seed, init::Stream::Feedback);
        let be = self.backend.clone();
        let first = self.layers.iter().position(Layer::is_parametric);
        let above_first = (0..self.layers.len()).filter(|&i| Some(i) != first);
        let order: Vec<usize> =
            above_first.chain(first).filter(|&i| self.needs_feedback(i, algorithm)).collect();
        for i in order {
            match &mut self.layers[i] {
                Layer::Dense(d) => {
                    let s = d.shape(&be);
                    let (w, _) = init.dense(&mut rng, s.inputs, s.outputs);
                    d.feedback = Some(
                        be.from_host(&transpose(&w, s.outputs, s.inputs), &[s.inputs, s.outputs]),
                    );
                }
                Layer::Conv2d(c) => {
                    let k = be.shape(&c.weight);
                    let (w, _) = init.dense(&mut rng, k[1] * k[2] * k[3], k[0]);
                    c.feedback = Some(be.from_host(&w, &k));
                }
                _ => {}
            }
        }
    }

    /// Sets layer `i`'s (0-based) weight and bias to zero, if it has them (a residual branch's
    /// last layer, so that the block starts as the identity).
    pub fn zero_layer(&mut self, i: usize) {
        let be = self.backend.clone();
        if let Some(w) = self.layers[i].weights_mut() {
            *w.weight = be.zeros(&be.shape(w.weight));
            *w.bias = be.zeros(&be.shape(w.bias));
        }
    }

    /// Sets every convolution's bias to zero (with [`crate::ConvUpdate::bias`] false, they stay
    /// there: convolutions without bias, as in paper 2's code).
    pub fn zero_conv_biases(&mut self) {
        let be = self.backend.clone();
        for layer in &mut self.layers {
            if let Layer::Conv2d(c) = layer {
                let shape = be.shape(&c.bias);
                c.bias = be.zeros(&shape);
            }
        }
    }

    /// Sets every needed backward matrix to exactly `W^T` (kernel: exactly `K`), for tests of
    /// the variants' special cases.
    pub fn set_feedback_to_transpose(&mut self) {
        let be = self.backend.clone();
        for i in 0..self.layers.len() {
            if !self.sends_down(i, true) {
                continue;
            }
            match &mut self.layers[i] {
                Layer::Dense(d) => {
                    let s = d.shape(&be);
                    let t = transpose(&be.to_host(&d.weight), s.outputs, s.inputs);
                    d.feedback = Some(be.from_host(&t, &[s.inputs, s.outputs]));
                }
                Layer::Conv2d(c) => c.feedback = Some(c.weight.clone()),
                _ => {}
            }
        }
    }

    /// The backend the network lives on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The number of layers `L`.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// The per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Values per input sample.
    pub fn input_width(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Output features of the last layer.
    pub fn output_width(&self) -> usize {
        self.shapes[self.shapes.len() - 1].iter().product()
    }

    /// The per-sample output shape of every layer.
    pub fn output_shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }

    /// Values per sample at every layer's output (`n_1 .. n_L` for an MLP).
    pub fn widths(&self) -> Vec<usize> {
        self.shapes.iter().map(|s| s.iter().product()).collect()
    }

    /// Uploads a host batch of `batch` samples (f64 or f32 values), checking its size.
    pub fn upload_batch<'a>(
        &self,
        data: impl Into<HostValues<'a>>,
        batch: usize,
    ) -> Result<B::Tensor, CoreError> {
        let data = data.into();
        let n = self.input_width();
        if batch == 0 || data.len() != batch * n {
            return Err(CoreError::Shape(format!(
                "a batch of {batch} inputs of shape {:?} needs {} values, got {}",
                self.input_shape,
                batch * n,
                data.len()
            )));
        }
        let mut shape = vec![batch];
        shape.extend_from_slice(&self.input_shape);
        Ok(match data {
            HostValues::F32(v) => self.backend.from_host_f32(v, &shape),
            HostValues::F64(v) => self.backend.from_host(v, &shape),
        })
    }

    /// Uploads the targets of a batch (`batch` rows of [`Network::output_width`] values, such
    /// as one-hot labels), checking their size.
    pub fn upload_targets(&self, targets: &[f64], batch: usize) -> Result<B::Tensor, CoreError> {
        let n = self.output_width();
        if batch == 0 || targets.len() != batch * n {
            return Err(CoreError::Shape(format!(
                "the targets of a batch of {batch} need {} values ({n} per sample), got {}",
                batch * n,
                targets.len()
            )));
        }
        Ok(self.backend.from_host(targets, &[batch, n]))
    }

    /// Every layer's sizes, forward weights and biases, downloaded to the host (backward
    /// weights are not included: [`Network::parameters`] has every tensor).
    pub fn to_host(&self) -> Vec<HostLayer> {
        let be = self.backend();
        self.layers
            .iter()
            .zip(&self.parents)
            .map(|(l, parents)| {
                let (weight, bias) = l.weights().map_or((Vec::new(), Vec::new()), |w| {
                    (be.to_host(w.weight), be.to_host(w.bias))
                });
                HostLayer { shape: l.layer_shape(be), weight, bias, parents: parents.clone() }
            })
            .collect()
    }

    /// Every parameter tensor on the host with PyTorch's names and layouts, layer by layer:
    /// `{name}.weight` (`[out, in]` or `[out_c, in_c, kh, kw]`), `{name}.bias`, and
    /// `{name}.feedback` for a learned or random backward matrix (`[in, out]`, or a kernel of
    /// the weight's layout), `name` the layer's module path: `layers.{i}` with `i` counting
    /// every layer from 0, parameter-free ones included, unless [`Network::with_names`] says
    /// otherwise.
    pub fn parameters(&self) -> Vec<(String, Vec<usize>, Vec<f64>)> {
        let be = &self.backend;
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(w) = layer.weights() {
                let named =
                    [("weight", Some(w.weight)), ("bias", Some(w.bias)), ("feedback", w.feedback)];
                for (name, t) in named {
                    if let Some(t) = t {
                        let path = &self.names[i];
                        out.push((format!("{path}.{name}"), be.shape(t), be.to_host(t)));
                    }
                }
            }
        }
        out
    }

    /// Replaces parameters by name ([`Network::parameters`]'s names and layouts): every name
    /// must be one of this network's, with its shape and finite values; a `feedback` tensor may
    /// be given to a weighted layer that has none. Nothing changes unless every tensor fits.
    pub fn load_parameters(
        &mut self,
        params: &[(String, Vec<usize>, Vec<f64>)],
    ) -> Result<(), CoreError> {
        let be = self.backend.clone();
        let mut plan = Vec::with_capacity(params.len());
        for (name, shape, values) in params {
            let (path, kind) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
            let Some(i) = self.names.iter().position(|n| n == path) else {
                return Err(CoreError::Shape(format!(
                    "no layer of this network is named '{path}' (parameter '{name}')"
                )));
            };
            let Some(w) = self.layers[i].weights() else {
                return Err(CoreError::Shape(format!(
                    "layer '{path}' has no parameters (parameter '{name}')"
                )));
            };
            let expected = match kind {
                "weight" => be.shape(w.weight),
                "bias" => be.shape(w.bias),
                "feedback" => match (&self.layers[i], w.feedback) {
                    (_, Some(f)) => be.shape(f),
                    (Layer::Dense(_), None) => {
                        let s = be.shape(w.weight);
                        vec![s[1], s[0]]
                    }
                    (_, None) => be.shape(w.weight),
                },
                _ => {
                    return Err(CoreError::Shape(format!(
                        "'{name}': a layer's parameters are weight, bias and feedback"
                    )))
                }
            };
            let count: usize = shape.iter().product();
            if *shape != expected || values.len() != count {
                return Err(CoreError::Shape(format!(
                    "'{name}' has shape {expected:?} in this network, got {shape:?} ({} values)",
                    values.len()
                )));
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(CoreError::Shape(format!("'{name}' holds a non-finite value ({v})")));
            }
            plan.push((i, kind, be.from_host(values, shape)));
        }
        for (i, kind, t) in plan {
            let w = self.layers[i].weights_mut().expect("checked above");
            match kind {
                "weight" => *w.weight = t,
                "bias" => *w.bias = t,
                _ => *w.feedback = Some(t),
            }
        }
        Ok(())
    }

    /// The shape of layer `k`'s output (1-based; 0 is the input) for a batch.
    pub fn batch_shape(&self, k: usize, batch: usize) -> Vec<usize> {
        let mut s = vec![batch];
        s.extend_from_slice(if k == 0 { &self.input_shape } else { &self.shapes[k - 1] });
        s
    }

    /// The feedforward pass, freezing each layer's input, and for weighted layers `a_k` and
    /// `f_k'(a_k)`, for max pooling the argmax.
    pub fn forward(&self, x: &B::Tensor) -> ForwardCache<B> {
        self.forward_reusing(x, None)
    }

    /// [`Network::forward`], writing into the tensors of `previous` (a cache this network made
    /// for a batch of the same size) instead of allocating new ones: a training loop hands
    /// back each step's cache to the next, which saves the allocation, zeroing and first-touch
    /// page faults of every activity (docs/performance.md). The values are the same bits
    /// either way; a buffer of another shape (another batch size) is replaced.
    pub fn forward_reusing(
        &self,
        x: &B::Tensor,
        previous: Option<ForwardCache<B>>,
    ) -> ForwardCache<B> {
        let be = &self.backend;
        let batch = be.shape(x)[0];
        let depth = self.depth();
        // The previous pass's buffer of each node (0 the input, `depth` the output), if any;
        // buffers of another shape are replaced one by one below.
        let (mut old, mut pre, mut fprime, mut argmax) = match previous
            .filter(|c| c.pre.len() == depth)
        {
            Some(c) => {
                let mut old: Vec<Option<B::Tensor>> = c.activities.into_iter().map(Some).collect();
                old.push(Some(c.output));
                (old, c.pre, c.fprime, c.argmax)
            }
            None => {
                (vec![None; depth + 1], vec![None; depth], vec![None; depth], vec![None; depth])
            }
        };
        let mut activities = Vec::with_capacity(depth);
        activities.push(copy_into(old[0].take(), x));
        let mut output = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let from = &self.parents[i];
            let next = match layer.weights() {
                Some(w) => {
                    let shape = self.batch_shape(i + 1, batch);
                    // The old buffer where it has this node's shape, a new one otherwise.
                    let fit = |buffer: Option<B::Tensor>| match buffer {
                        Some(t) if be.shape(&t) == shape => t,
                        _ => be.zeros(&shape),
                    };
                    let mut a = fit(pre[i].take());
                    layer.pre_activation_into(be, &activities[from[0]], &mut a);
                    let mut f = fit(fprime[i].take());
                    be.activate_derivative_into(w.activation, &a, &mut f);
                    let mut next = fit(old[i + 1].take());
                    be.activate_into(w.activation, &a, &mut next);
                    (pre[i], fprime[i]) = (Some(a), Some(f));
                    next
                }
                None if matches!(layer, Layer::Add) => {
                    self.sum_into(old[i + 1].take(), from, |j| &activities[j])
                }
                None => {
                    let (next, arg) = layer.forward_parameter_free(be, &activities[from[0]]);
                    argmax[i] = arg;
                    next
                }
            };
            if i + 1 == depth {
                output = Some(next);
            } else {
                activities.push(next);
            }
        }
        let output = output.expect("a network has at least one layer");
        ForwardCache { activities, pre, fprime, argmax, output }
    }

    /// Layer `i + 1`'s output from its parents' outputs (`h(j)` is node `j`'s), with its
    /// pre-activation (weighted layers) and argmax (max pooling).
    #[allow(clippy::type_complexity)]
    fn node_forward<'a>(
        &self,
        i: usize,
        batch: usize,
        h: impl Fn(usize) -> &'a B::Tensor,
    ) -> (B::Tensor, Option<B::Tensor>, Option<B::Tensor>)
    where
        B::Tensor: 'a,
    {
        let be = &self.backend;
        let layer = &self.layers[i];
        let from = &self.parents[i];
        match layer.weights() {
            Some(w) => {
                let mut a = be.zeros(&self.batch_shape(i + 1, batch));
                layer.pre_activation_into(be, h(from[0]), &mut a);
                (be.activate(w.activation, &a), Some(a), None)
            }
            None if matches!(layer, Layer::Add) => (self.sum_of(from, h), None, None),
            None => {
                let (next, arg) = layer.forward_parameter_free(be, h(from[0]));
                (next, None, arg)
            }
        }
    }

    /// The sum of the nodes `from` (`h(j)` is node `j`'s value), in their order.
    pub fn sum_of<'a>(&self, from: &[usize], h: impl Fn(usize) -> &'a B::Tensor) -> B::Tensor
    where
        B::Tensor: 'a,
    {
        self.sum_into(None, from, h)
    }

    /// [`Network::sum_of`], in `buffer` when one is given.
    fn sum_into<'a>(
        &self,
        buffer: Option<B::Tensor>,
        from: &[usize],
        h: impl Fn(usize) -> &'a B::Tensor,
    ) -> B::Tensor
    where
        B::Tensor: 'a,
    {
        let be = &self.backend;
        let mut sum = copy_into(buffer, h(from[0]));
        for &j in &from[1..] {
            be.axpby(1.0, h(j), 1.0, &mut sum);
        }
        sum
    }

    /// The network's output for a batch, keeping only what later layers still read.
    pub fn predict(&self, x: &B::Tensor) -> B::Tensor {
        let be = &self.backend;
        let batch = be.shape(x)[0];
        let depth = self.depth();
        // The last reader of each node, so that a value is dropped once nothing reads it.
        let last_reader: Vec<usize> =
            self.children.iter().map(|c| c.last().copied().unwrap_or(depth)).collect();
        let mut values: Vec<Option<B::Tensor>> = vec![None; depth + 1];
        values[0] = Some(x.clone());
        for i in 0..depth {
            let next = {
                let h = |j: usize| values[j].as_ref().expect("read before its last reader");
                self.node_forward(i, batch, h).0
            };
            for &j in &self.parents[i] {
                if last_reader[j] == i + 1 {
                    values[j] = None;
                }
            }
            values[i + 1] = Some(next);
        }
        values[depth].take().expect("the last layer's output")
    }
}

/// The row-major transpose of a `rows x cols` matrix (host values, such as `W` against `psi`).
pub fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}
