//! Model descriptions: MLPs from widths such as `784-300-300-100-10`, a layer-spec syntax for
//! convolutional (or any sequential) networks, and the presets (the papers' MLP and CNN, a deeper
//! CIFAR-10 network for scale, small networks for the bundled 8x8 digits).
//!
//! A layer spec is a comma-separated list of layers:
//! `conv<out>x<k>[/s<stride>][/p<padding>][:<activation>]`, `maxpool<k>[/s<stride>]`,
//! `avgpool<k>[/s<stride>]`, `flatten`, `fc<outputs>[:<activation>]`. Activations default to
//! identity; pooling strides default to the window. Paper 2's CNN on 3x32x32 inputs is
//! `conv6x5:tanh,maxpool2,conv16x5:tanh,flatten,fc120:tanh,fc120:tanh,fc10`.

use crate::ModelError;
use ar_backend::{Activation, Backend, ConvGeometry, PoolGeometry};
use ar_core::{Init, LayerSpec, Network};
use std::fmt;

/// A network to build: its per-sample input shape and its layers, before weights are drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// The per-sample input shape: `[features]` for an MLP (inputs are flattened), `[c, h, w]`
    /// for a network that starts with a convolution or pooling.
    pub input_shape: Vec<usize>,
    /// The layers, input first.
    pub layers: Vec<LayerSpec>,
    /// `parents[k - 1]`: the nodes layer `k` reads (0 the input; see [`Network::build_graph`]).
    pub parents: Vec<Vec<usize>>,
    /// Each layer's module path in checkpoints: `layers.{i}` for the `i`-th item of the spec;
    /// inside a residual block at `layers.{i}`, its branch's items `layers.{i}.branch.{j}`, its
    /// shortcut's `layers.{i}.shortcut.{j}`, and the merge node `layers.{i}` itself: the names of
    /// a `torch.nn.Sequential` whose residual blocks hold a `branch` and a `shortcut` Sequential
    /// (bench/residual_torch.py builds it).
    pub names: Vec<String>,
    /// The layers (0-based) whose weights and biases start at zero: the last weighted layer of
    /// every residual branch, so that each block starts as the identity (docs/models.md,
    /// "Residual networks").
    pub zero_init: Vec<usize>,
    /// The text it was made from (a preset name, widths or a layer spec).
    name: String,
    /// Whether it is an MLP given by a preset or widths, whose activations
    /// [`ModelSpec::with_activations`] may replace.
    mlp: bool,
}

impl ModelSpec {
    /// The preset names [`ModelSpec::preset`] knows, besides widths and layer specs.
    pub const PRESETS: &'static [&'static str] =
        &["auto", "digits-mlp", "paper1-mlp", "cnn-paper", "cnn-deep", "cnn-digits"];

    /// The families of configurable depth: `<family>-<depth>-<width>`, such as `res-cnn-8-16`
    /// ([`ModelSpec::family`]).
    pub const FAMILIES: &'static [&'static str] =
        &["plain-mlp-", "res-mlp-", "plain-cnn-", "res-cnn-"];

    /// The model named `name` for data of per-sample shape `input_shape` (`[c, h, w]`) with
    /// `classes` classes:
    /// - `auto`: `digits-mlp` for 8x8 inputs, otherwise paper 1's hidden widths 300-300-100
    ///   (ReLU) between the data's input size and class count;
    /// - `digits-mlp` (64-64-32-classes, tanh), `paper1-mlp` (784-300-300-100-10, ReLU);
    /// - `cnn-paper` ([`ModelSpec::paper2`]), `cnn-deep` ([`ModelSpec::deep`]), `cnn-digits`
    ///   ([`ModelSpec::digits_cnn`]);
    /// - `plain-mlp-D-W`, `res-mlp-D-W`, `plain-cnn-D-C`, `res-cnn-D-C` ([`ModelSpec::family`]);
    /// - MLP widths joined by `-` from input to output (`64-128-10`; hidden layers tanh);
    /// - a layer spec (this module's syntax).
    ///
    /// MLPs have a linear output. The result is checked to take the data's inputs and to output
    /// one value per class.
    pub fn preset(name: &str, input_shape: &[usize], classes: usize) -> Result<Self, ModelError> {
        let features: usize = input_shape.iter().product();
        let spec =
            match name {
                "auto" if input_shape.ends_with(&[8, 8]) && features == 64 => {
                    return Self::preset("digits-mlp", input_shape, classes)
                }
                "auto" => Self::mlp(
                    &[features, 300, 300, 100, classes],
                    Activation::Relu,
                    Activation::Identity,
                )?,
                "digits-mlp" => {
                    Self::mlp(&[64, 64, 32, classes], Activation::Tanh, Activation::Identity)?
                }
                "paper1-mlp" => Self::paper1(),
                "cnn-paper" => Self::paper2(input_shape, classes),
                "cnn-deep" => Self::deep(input_shape, classes),
                "cnn-digits" => Self::digits_cnn(input_shape, classes),
                family if Self::FAMILIES.iter().any(|f| family.starts_with(f)) => {
                    Self::family(family, input_shape, classes)?
                }
                layers
                    if layers.contains(',')
                        || layers.starts_with("conv")
                        || layers.starts_with("fc") =>
                {
                    Self::parse(layers, input_shape)?
                }
                widths => Self::parse_widths(widths, Activation::Tanh, Activation::Identity)
                    .map_err(|e| match e {
                        ModelError::Spec { spec, reason } => ModelError::Spec {
                            spec,
                            reason: format!(
                            "{reason}; a model is a preset ({}), MLP widths such as 64-128-10, \
                             or a layer spec",
                            Self::PRESETS.join(", ")
                        ),
                        },
                        other => other,
                    })?,
            };
        spec.check_fits(features, classes)?;
        Ok(spec)
    }

    /// An MLP with layer widths `[n_0, n_1, .., n_L]` (input first), `hidden` on every layer
    /// but the last, `output` on the last.
    pub fn mlp(
        widths: &[usize],
        hidden: Activation,
        output: Activation,
    ) -> Result<Self, ModelError> {
        let text: Vec<String> = widths.iter().map(|w| w.to_string()).collect();
        let err = |reason: &str| ModelError::Spec { spec: text.join("-"), reason: reason.into() };
        if widths.len() < 2 {
            return Err(err("needs at least an input and an output width, e.g. 64-10"));
        }
        if widths.contains(&0) {
            return Err(err("widths must be at least 1"));
        }
        let last = widths.len() - 2;
        let layers = widths[1..]
            .iter()
            .enumerate()
            .map(|(i, &outputs)| LayerSpec::Dense {
                outputs,
                activation: if i == last { output } else { hidden },
            })
            .collect();
        let parents = ar_core::chain_parents(widths.len() - 1);
        Ok(ModelSpec {
            input_shape: vec![widths[0]],
            layers,
            parents,
            names: ar_core::default_names(widths.len() - 1),
            zero_init: Vec::new(),
            name: text.join("-"),
            mlp: true,
        })
    }

    /// Parses MLP widths such as `"784-300-300-100-10"` (at least an input and an output width;
    /// every width >= 1).
    pub fn parse_widths(
        spec: &str,
        hidden: Activation,
        output: Activation,
    ) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Spec { spec: spec.to_string(), reason };
        let widths = spec
            .split('-')
            .map(|w| {
                w.trim().parse::<usize>().map_err(|_| {
                    err(format!("'{w}' is not a width (expected numbers joined by '-')"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::mlp(&widths, hidden, output)
    }

    /// The paper-1 network: 784-300-300-100-10, ReLU hidden layers, linear output.
    pub fn paper1() -> Self {
        Self::mlp(&[784, 300, 300, 100, 10], Activation::Relu, Activation::Identity)
            .expect("the preset is valid")
    }

    /// Parses the layer-spec syntax of this module for inputs of per-sample shape `input_shape`.
    pub fn parse(spec: &str, input_shape: &[usize]) -> Result<Self, ModelError> {
        let mut p = Parser { text: spec, pos: 0, count: 0, graph: Graph::default() };
        p.sequence(0, "layers")?;
        if p.pos < spec.len() {
            return Err(p.fail(p.pos, format!("unexpected '{}'", &spec[p.pos..p.pos + 1])));
        }
        let Graph { layers, parents, names, zero_init } = p.graph;
        Ok(ModelSpec {
            input_shape: input_shape.to_vec(),
            layers,
            parents,
            names,
            zero_init,
            name: spec.to_string(),
            mlp: false,
        })
    }

    /// A plain or residual network of `D` weighted layers along its main path, for the depth
    /// study (docs/models.md, "Residual networks"):
    /// - `res-mlp-D-W`: flatten, fc W relu, `(D - 2) / 2` blocks `res(fcW:relu,fcW)`, a linear
    ///   head; `plain-mlp-D-W`: flatten, `D - 1` fc W relu layers, a linear head;
    /// - `res-cnn-D-C`: conv C 3x3 (padding 1) relu, `(D - 2) / 2` blocks in three stages of C,
    ///   2C and 4C channels (blocks dealt to the stages in turn, the first stage first; a stage
    ///   after the first starts with a stride-2 block whose shortcut is a 1x1 stride-2
    ///   convolution), global average pooling, a linear head; `plain-cnn-D-C`: the same
    ///   layers with every convolution relu and no shortcuts.
    ///
    /// Residual `D` must be even and at least 4; plain `D` at least 2.
    pub fn family(name: &str, input_shape: &[usize], classes: usize) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Spec { spec: excerpt(name), reason };
        let (family, numbers) = Self::FAMILIES
            .iter()
            .find_map(|f| name.strip_prefix(f).map(|rest| (*f, rest)))
            .ok_or_else(|| err("not a model family".into()))?;
        let (depth, width) = numbers
            .split_once('-')
            .and_then(|(d, w)| Some((d.parse::<usize>().ok()?, w.parse::<usize>().ok()?)))
            .filter(|&(_, w)| w > 0 && w <= 1 << 16)
            .ok_or_else(|| {
                err(format!(
                    "expected {family}<depth>-<width>, two whole numbers, width 1 to 65536"
                ))
            })?;
        let residual = family.starts_with("res");
        let ok_depth = if residual { depth >= 4 && depth % 2 == 0 } else { depth >= 2 };
        if !ok_depth || depth > 1024 {
            return Err(err(format!(
                "depth {depth}: a {family}network has {} weighted layers (at most 1024)",
                if residual { "an even number of at least 4" } else { "at least 2" }
            )));
        }
        let mut items: Vec<String> = Vec::new();
        if family.ends_with("mlp-") {
            items.push("flatten".into());
            items.push(format!("fc{width}:relu"));
            if residual {
                items
                    .extend((0..(depth - 2) / 2).map(|_| format!("res(fc{width}:relu,fc{width})")));
            } else {
                items.extend((0..depth - 2).map(|_| format!("fc{width}:relu")));
            }
        } else {
            items.push(format!("conv{width}x3/p1:relu"));
            let blocks = (depth - 2) / 2;
            for stage in 0..3 {
                let channels = width << stage;
                let count = blocks / 3 + usize::from(stage < blocks % 3);
                for b in 0..count {
                    let down = stage > 0 && b == 0;
                    let first =
                        format!("conv{channels}x3{}/p1:relu", if down { "/s2" } else { "" });
                    items.push(match (residual, down) {
                        (true, true) => {
                            format!("res({first},conv{channels}x3/p1|conv{channels}x1/s2)")
                        }
                        (true, false) => format!("res({first},conv{channels}x3/p1)"),
                        (false, _) => format!("{first},conv{channels}x3/p1:relu"),
                    });
                }
            }
            if depth % 2 == 1 {
                // An odd plain depth: one more convolution at the last stage's width.
                let last = width << (blocks.clamp(1, 3) - 1);
                items.push(format!("conv{last}x3/p1:relu"));
            }
            items.push("gap".into());
        }
        items.push(format!("fc{classes}"));
        let mut spec = Self::parse(&items.join(","), input_shape)?;
        spec.name = name.to_string();
        Ok(spec)
    }

    /// Paper 2's CNN (arXiv:2010.06219; docs/models.md) for `classes` classes: conv 6
    /// 5x5 tanh, max-pool 2, conv 16 5x5 tanh, flatten (1600 on 3x32x32 inputs), fc 120 tanh,
    /// fc 120 tanh, fc linear. It adapts to its input's channels and size (1024 after flatten
    /// on 1x28x28).
    pub fn paper2(input_shape: &[usize], classes: usize) -> Self {
        let mut s = Self::parse(
            &format!(
                "conv6x5:tanh,maxpool2,conv16x5:tanh,flatten,fc120:tanh,fc120:tanh,fc{classes}"
            ),
            input_shape,
        )
        .expect("the preset parses");
        s.name = "cnn-paper".into();
        s
    }

    /// The deeper network for scale (the CIFAR-10 network of the equilibrium-propagation and
    /// predictive-coding benchmarks): four 3x3 convolutions of 128, 256, 512 and 512 channels
    /// (padding 1, ReLU), each followed by 2x2 max-pooling, and one linear head.
    pub fn deep(input_shape: &[usize], classes: usize) -> Self {
        let mut s = Self::parse(
            &format!(
                "conv128x3/p1:relu,maxpool2,conv256x3/p1:relu,maxpool2,conv512x3/p1:relu,\
                 maxpool2,conv512x3/p1:relu,maxpool2,flatten,fc{classes}"
            ),
            input_shape,
        )
        .expect("the preset parses");
        s.name = "cnn-deep".into();
        s
    }

    /// A small CNN that fits the bundled 1x8x8 digits: conv 8 3x3 (padding 1) tanh, max-pool 2,
    /// conv 16 3x3 (padding 1) tanh, flatten (256), linear head.
    pub fn digits_cnn(input_shape: &[usize], classes: usize) -> Self {
        let mut s = Self::parse(
            &format!("conv8x3/p1:tanh,maxpool2,conv16x3/p1:tanh,flatten,fc{classes}"),
            input_shape,
        )
        .expect("the preset parses");
        s.name = "cnn-digits".into();
        s
    }

    /// Whether [`ModelSpec::with_activations`] applies: an MLP given by a preset or widths (a
    /// layer spec names each layer's activation itself).
    pub fn takes_activations(&self) -> bool {
        self.mlp
    }

    /// For an MLP given by a preset or widths: `hidden` (if given) on every layer but the last,
    /// and `output` on the last. Other models are returned unchanged (a layer spec names each
    /// layer's activation itself).
    pub fn with_activations(mut self, hidden: Option<Activation>, output: Activation) -> Self {
        if !self.mlp {
            return self;
        }
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            if let LayerSpec::Dense { activation, .. } = layer {
                match (i == last, hidden) {
                    (true, _) => *activation = output,
                    (false, Some(h)) => *activation = h,
                    (false, None) => {}
                }
            }
        }
        self
    }

    /// Checks that the model takes `inputs` values per sample and outputs `classes` values.
    pub fn check_fits(&self, inputs: usize, classes: usize) -> Result<(), ModelError> {
        let first: usize = self.input_shape.iter().product();
        let last = match self.layers.last() {
            Some(LayerSpec::Dense { outputs, .. }) => Some(*outputs),
            _ => None,
        };
        if first != inputs || last.is_some_and(|l| l != classes) {
            return Err(ModelError::Mismatch {
                model: self.to_string(),
                reason: format!(
                    "maps {first} inputs to {} outputs, but the data has {inputs} inputs and {classes} classes",
                    last.map_or("?".to_string(), |l| l.to_string())
                ),
            });
        }
        Ok(())
    }

    /// The network, with weights drawn on the host from `init` seeded by `seed` (so every
    /// backend starts from the same weights).
    pub fn build<B: Backend>(
        &self,
        backend: B,
        init: Init,
        seed: u64,
    ) -> Result<Network<B>, ModelError> {
        let mut net = Network::build_graph(
            backend,
            &self.input_shape,
            &self.layers,
            &self.parents,
            init,
            seed,
        )
        .map_err(|e| {
            let why = match e {
                ar_core::CoreError::Shape(m) | ar_core::CoreError::InvalidConfig(m) => m,
            };
            ModelError::Mismatch {
                model: excerpt(&self.name),
                reason: format!("does not fit inputs of shape {:?}: {why}", self.input_shape),
            }
        })?
        .with_names(self.names.clone())?;
        for &i in &self.zero_init {
            net.zero_layer(i);
        }
        Ok(net)
    }
}

/// Layers, parents and zero-initialised layers, as the parser appends them.
#[derive(Default)]
struct Graph {
    layers: Vec<LayerSpec>,
    parents: Vec<Vec<usize>>,
    names: Vec<String>,
    zero_init: Vec<usize>,
}

/// A recursive-descent parser of the layer-spec grammar (docs/models.md):
/// `sequence := item ("," item)*`, `item := layer | "res(" sequence ["|" sequence] ")"`.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// Items read so far (for error messages: "layer N").
    count: usize,
    graph: Graph,
}

impl Parser<'_> {
    fn fail(&self, at: usize, reason: String) -> ModelError {
        ModelError::Spec {
            spec: excerpt(self.text),
            reason: format!("at character {}: {reason}", at + 1),
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    /// Items separated by commas, reading node `input`, named `{path}.{j}`; returns the last
    /// node.
    fn sequence(&mut self, input: usize, path: &str) -> Result<usize, ModelError> {
        let mut node = self.item(input, &format!("{path}.0"))?;
        let mut j = 1;
        while self.rest().starts_with(',') {
            self.pos += 1;
            node = self.item(node, &format!("{path}.{j}"))?;
            j += 1;
        }
        Ok(node)
    }

    fn push(&mut self, layer: LayerSpec, parents: Vec<usize>, name: &str) -> usize {
        self.graph.layers.push(layer);
        self.graph.parents.push(parents);
        self.graph.names.push(name.to_string());
        self.graph.layers.len()
    }

    fn item(&mut self, input: usize, name: &str) -> Result<usize, ModelError> {
        let blank = self.rest().len() - self.rest().trim_start().len();
        self.pos += blank;
        let start = self.pos;
        let text = self.text;
        let rest = &text[self.pos..];
        if rest.starts_with("res(") {
            self.pos += 4;
            let first = self.graph.layers.len();
            let branch = self.sequence(input, &format!("{name}.branch"))?;
            let last_weighted = (first..self.graph.layers.len()).rev().find(|&i| {
                matches!(self.graph.layers[i], LayerSpec::Dense { .. } | LayerSpec::Conv2d { .. })
            });
            let shortcut = if self.rest().starts_with('|') {
                self.pos += 1;
                self.sequence(input, &format!("{name}.shortcut"))?
            } else {
                input
            };
            if !self.rest().starts_with(')') {
                return Err(self.fail(
                    self.pos,
                    "expected ')' closing the res( block opened at character {}"
                        .replace("{}", &(start + 1).to_string()),
                ));
            }
            self.pos += 1;
            match last_weighted {
                Some(i) => self.graph.zero_init.push(i),
                None => {
                    return Err(self.fail(start, "a residual branch needs a weighted layer".into()))
                }
            }
            return Ok(self.push(LayerSpec::Add, vec![shortcut, branch], name));
        }
        let len = rest.find([',', '|', ')', '(']).unwrap_or(rest.len());
        let token = rest[..len].trim();
        self.count += 1;
        let layer = parse_layer(token)
            .map_err(|m| self.fail(start, format!("layer {} '{token}': {m}", self.count)))?;
        self.pos += len;
        Ok(self.push(layer, vec![input], name))
    }
}

/// At most 80 characters of a spec, for error messages.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// One layer of the spec syntax, such as `conv16x3/p1:relu`.
fn parse_layer(item: &str) -> Result<LayerSpec, String> {
    let (body, activation) = match item.split_once(':') {
        Some((b, a)) => (b, a.parse::<Activation>()?),
        None => (item, Activation::Identity),
    };
    let mut parts = body.split('/');
    let head = parts.next().unwrap_or("");
    let mut stride = None;
    let mut padding = 0;
    for opt in parts {
        let num = |s: &str| {
            s.parse::<usize>().map_err(|_| format!("'{opt}' is not /s<stride> or /p<padding>"))
        };
        match opt.split_at(opt.len().min(1)) {
            ("s", n) => stride = Some(num(n)?),
            ("p", n) => padding = num(n)?,
            _ => return Err(format!("unknown option '/{opt}'")),
        }
    }
    if stride == Some(0) {
        return Err("stride must be at least 1".into());
    }
    let number = |s: &str, what: &str| match s.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("{what} must be a positive whole number")),
        Ok(n) => Ok(n),
    };
    let layer = if let Some(rest) = head.strip_prefix("conv") {
        let (o, k) = rest.split_once('x').ok_or("expected conv<out>x<kernel>")?;
        LayerSpec::Conv2d {
            out_channels: number(o, "output channels")?,
            kernel: number(k, "kernel")?,
            geometry: ConvGeometry { stride: stride.unwrap_or(1), padding },
            activation,
        }
    } else if let Some(k) = head.strip_prefix("maxpool") {
        let kernel = number(k, "window")?;
        LayerSpec::MaxPool2d(PoolGeometry { kernel, stride: stride.unwrap_or(kernel) })
    } else if let Some(k) = head.strip_prefix("avgpool") {
        let kernel = number(k, "window")?;
        LayerSpec::AvgPool2d(PoolGeometry { kernel, stride: stride.unwrap_or(kernel) })
    } else if head == "flatten" {
        LayerSpec::Flatten
    } else if head == "gap" {
        LayerSpec::GlobalAvgPool
    } else if let Some(n) = head.strip_prefix("fc") {
        LayerSpec::Dense { outputs: number(n, "outputs")?, activation }
    } else {
        return Err("expected conv, maxpool, avgpool, gap, flatten, fc or res(...)".into());
    };
    Ok(layer)
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.mlp {
            return write!(f, "{} on {:?}", self.name, self.input_shape);
        }
        let mut widths = vec![self.input_shape.iter().product::<usize>().to_string()];
        let mut activations = Vec::new();
        for layer in &self.layers {
            if let LayerSpec::Dense { outputs, activation } = layer {
                widths.push(outputs.to_string());
                activations.push(*activation);
            }
        }
        let (hidden, output) = match activations.as_slice() {
            [.., h, o] => (h.to_string(), o.to_string()),
            [o] => ("no".to_string(), o.to_string()),
            [] => ("no".to_string(), "no".to_string()),
        };
        write!(f, "{} ({hidden} hidden, {output} output)", widths.join("-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ar_ndarray::NdArray;

    #[test]
    fn presets_adapt_to_their_input() {
        let be = NdArray::<f64>::new();
        let net = ModelSpec::paper2(&[3, 32, 32], 10).build(be, Init::papers(), 0).unwrap();
        assert_eq!(net.output_shapes()[3], vec![1600], "flatten gives 1600 on 3x32x32");
        let net = ModelSpec::paper2(&[1, 28, 28], 10).build(be, Init::papers(), 0).unwrap();
        assert_eq!(net.output_shapes()[3], vec![1024]);
        let net = ModelSpec::deep(&[3, 32, 32], 10).build(be, Init::PyTorch, 0).unwrap();
        assert_eq!(net.output_shapes()[8], vec![2048]);
        let net = ModelSpec::digits_cnn(&[1, 8, 8], 10).build(be, Init::PyTorch, 0).unwrap();
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
            let e = ModelSpec::parse(bad, &[1, 8, 8]).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("layer 1"), "{bad}: {e}");
        }
        let e = ModelSpec::paper2(&[1, 8, 8], 10)
            .build(NdArray::<f64>::new(), Init::papers(), 0)
            .unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        // Geometry in words, not Rust debug text, and one "shape mismatch" at most.
        for (spec, needle) in [
            ("conv4x9,flatten,fc10", "a 9x9 kernel with stride 1, padding 0 does not fit 8x8"),
            ("maxpool9,flatten,fc10", "pooling with 9x9 windows every 9 pixels does not fit 8x8"),
        ] {
            let e = ModelSpec::parse(spec, &[1, 8, 8])
                .unwrap()
                .build(NdArray::<f64>::new(), Init::papers(), 0)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && !e.contains("Geometry {"), "{spec}: {e}");
            assert!(e.matches("shape mismatch").count() <= 1, "{spec}: {e}");
        }
    }

    /// A spec of thousands of layers parses and builds at once, and a mistake in it is
    /// reported in one short line: an excerpt of the spec, the position and the layer.
    #[test]
    fn a_spec_of_5000_layers_builds_and_its_errors_quote_an_excerpt() {
        let layers = vec!["fc8"; 5000].join(",");
        let spec = ModelSpec::parse(&format!("flatten,{layers},fc10"), &[1, 8, 8]).unwrap();
        let net = spec.build(NdArray::<f32>::new(), Init::papers(), 0).unwrap();
        assert_eq!(net.depth(), 5002);
        for (bad, needle) in [
            (format!("flatten,{layers},bogus"), "layer 5002 'bogus'"),
            (format!("{layers},fc10"), "layer 1"),
            (format!("flatten,{layers},res(fc8"), "res("),
        ] {
            let be = NdArray::<f32>::new();
            let built =
                ModelSpec::parse(&bad, &[1, 8, 8]).and_then(|m| m.build(be, Init::papers(), 0));
            let e = built.unwrap_err().to_string();
            assert!(e.len() < 400 && e.contains(needle), "{} chars: {e}", e.len());
        }
    }

    #[test]
    fn presets_by_name_fit_the_data_or_say_why_not() {
        let digits = ModelSpec::preset("auto", &[1, 8, 8], 10).unwrap();
        assert_eq!(digits.to_string(), "64-64-32-10 (tanh hidden, identity output)");
        let mnist = ModelSpec::preset("auto", &[1, 28, 28], 10).unwrap();
        assert_eq!(mnist.to_string(), "784-300-300-100-10 (relu hidden, identity output)");
        assert_eq!(ModelSpec::preset("paper1-mlp", &[1, 28, 28], 10).unwrap(), ModelSpec::paper1());
        let e = ModelSpec::preset("paper1-mlp", &[1, 8, 8], 10).unwrap_err().to_string();
        assert!(e.contains("784") && e.contains("64"), "{e}");
        let cnn = ModelSpec::preset("cnn-paper", &[1, 28, 28], 10).unwrap();
        assert_eq!(cnn.input_shape, vec![1, 28, 28]);
        let e = ModelSpec::preset("conv6x5,flatten,fc3", &[1, 8, 8], 10).unwrap_err().to_string();
        assert!(e.contains("3 outputs") && e.contains("10 classes"), "{e}");
        let e = ModelSpec::preset("64-0-10", &[1, 8, 8], 10).unwrap_err().to_string();
        assert!(e.contains("64-0-10") && e.contains("at least 1"), "{e}");
        let relu = ModelSpec::preset("64-20-10", &[1, 8, 8], 10)
            .unwrap()
            .with_activations(Some(Activation::Relu), Activation::Sigmoid);
        assert_eq!(relu.to_string(), "64-20-10 (relu hidden, sigmoid output)");
        let layers = ModelSpec::preset("fc20:tanh,fc10", &[64], 10).unwrap();
        assert_eq!(
            layers.clone().with_activations(Some(Activation::Relu), Activation::Sigmoid),
            layers
        );
    }

    #[test]
    fn mlp_widths_parse_and_build() {
        let m =
            ModelSpec::parse_widths("784-300-300-100-10", Activation::Relu, Activation::Identity)
                .unwrap();
        assert_eq!(m, ModelSpec::paper1());
        for bad in ["10", "10-x-3", "10-0-3", ""] {
            let e =
                ModelSpec::parse_widths(bad, Activation::Relu, Activation::Identity).unwrap_err();
            assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
        }
        let net = ModelSpec::preset("digits-mlp", &[1, 8, 8], 10)
            .unwrap()
            .build(NdArray::<f64>::new(), Init::papers(), 0)
            .unwrap();
        assert_eq!(net.widths(), vec![64, 32, 10]);
        assert_eq!(net.input_shape(), &[64]);
    }
}
