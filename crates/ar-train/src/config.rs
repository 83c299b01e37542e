//! The configuration of a run: every choice of data, model, algorithms, variant, relaxation,
//! loss, optimiser and initialisation, with the project's training defaults. It is what a run
//! directory's `config.toml` holds; its keys are the long flags of `cargo xtask train`.

use crate::TrainError;
use ar_backend::{Activation, Backend, Precision};
use ar_core::{
    Algorithm, ConvUpdate, CoreError, FPrime, Feedback, FprimeUse, Init, InitialState,
    LayerChoices, Loss, Method, Network, Optimizer, OptimizerKind, Relaxation, Schedule, Solver,
    Trainer, Variant,
};
use ar_data::{Dataset, Normalization};
use ar_models::ModelSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which learning rule a run trains with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlgorithmName {
    /// Activation relaxation with the configured variant and relaxation.
    Ar,
    /// Exact backprop (the variant's backward-pass settings other than feedback are ignored).
    Bp,
    /// Feedback alignment: backprop through fixed random backward weights.
    Fa,
}
ar_core::named_enum!(AlgorithmName, "algorithm", Ar => "ar", Bp => "bp", Fa => "fa");

/// Which `f'` is re-evaluated at the relaxing state (paper 2's unfrozen-feedforward variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fderiv {
    /// `f'` at `W v(t) + b` inside the relaxation.
    Relax,
    /// `f'` at `W v(T) + b` in the weight update.
    Update,
    /// Both.
    Both,
}
ar_core::named_enum!(Fderiv, "fderiv", Relax => "relax", Update => "update", Both => "both");

/// The optimiser's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerName {
    /// Stochastic gradient descent with optional momentum.
    Sgd,
    /// Adam with PyTorch's betas (0.9, 0.999) and eps 1e-8.
    Adam,
}
ar_core::named_enum!(OptimizerName, "optimizer", Sgd => "sgd", Adam => "adam");

/// How weights are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitName {
    /// N(0, std^2) weights, zero biases (the papers; std from `init_std`).
    Normal,
    /// PyTorch's `nn.Linear` default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    Pytorch,
    /// He (Kaiming) normal, N(0, 2 / fan_in), zero biases: for deep ReLU networks.
    Kaiming,
}
ar_core::named_enum!(InitName, "init", Normal => "normal", Pytorch => "pytorch", Kaiming => "kaiming");

/// The largest config file read (1 MiB); configs are a few hundred bytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A config file's text: a regular file of at most [`MAX_CONFIG_BYTES`] (a device such as
/// `/dev/zero`, or a huge file given by mistake, is refused before anything is read).
pub fn read_config_text(path: &Path) -> Result<String, TrainError> {
    let io = |source| TrainError::Io { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    let refuse = |message: String| TrainError::File { path: path.to_path_buf(), message };
    if !meta.is_file() {
        return Err(refuse("not a regular file, so not a config file".into()));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(refuse(format!(
            "{} bytes; a config file is at most {MAX_CONFIG_BYTES}",
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(io)
}

/// A TOML error with where it is: `line L, column C: MESSAGE (at `TEXT`)`, the text the
/// parser points at (such as a duplicated key) cut to 40 characters.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span().filter(|s| s.start <= text.len()) else {
        return e.message().to_string();
    };
    let before = &text[..span.start];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let at: String = text.get(span.clone()).unwrap_or("").chars().take(40).collect();
    let at = if at.trim().is_empty() { String::new() } else { format!(" (at `{}`)", at.trim()) };
    format!("line {line}, column {column}: {}{at}", e.message())
}

/// The most CPU threads a run may ask for (`threads`); a pool of many more only costs time to
/// start.
pub const MAX_THREADS: usize = 1024;

/// Everything a run needs, with the project's defaults (`TrainConfig::default()`): the bundled
/// digits, AR and backprop side by side, eta 0.1 and T 100 with the closed-form solver, MSE,
/// SGD with lr 0.1 and momentum 0.9 on batches of 32, N(0, 0.05^2) weights, seed 0.
///
/// Serialised with kebab-case keys (`batch-size = 64`), the names of `cargo xtask train`'s
/// flags; a config file may give any subset of them, unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Data set: digits (bundled), mnist, fashion-mnist, cifar10, cifar100 or svhn.
    pub dataset: String,
    /// Root data directory (default: [`ar_data::data_root`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Fraction of each class held out for testing (digits only).
    pub test_fraction: f64,
    /// A model name for [`ModelSpec::preset`]: a preset, MLP widths or a layer spec.
    pub model: String,
    /// Hidden activation of an MLP preset or widths model (each preset's own if unset).
    #[serde(with = "text_option", skip_serializing_if = "Option::is_none")]
    pub hidden_activation: Option<Activation>,
    /// Output activation of an MLP preset or widths model.
    #[serde(with = "text")]
    pub output_activation: Activation,
    /// The algorithms trained side by side from the same weights and batch order.
    pub algorithms: Vec<AlgorithmName>,
    /// AR's backward weights.
    #[serde(with = "text")]
    pub feedback: Feedback,
    /// Kolen-Pollack weight decay on W and psi (learned feedback only).
    pub feedback_decay: f64,
    /// Drop `f'` from the relaxation's backward VJP.
    pub no_fprime_backward: bool,
    /// Drop `f'` from the weight update.
    pub no_fprime_update: bool,
    /// Re-evaluate `f'` at the relaxing state (paper 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fderiv: Option<Fderiv>,
    /// The update's presynaptic term is the relaxed `v_{k-1}(T)` (paper 2).
    pub current_input: bool,
    /// The input relaxes too, as in the authors' code (changes current-input and fderiv-*).
    pub relax_input: bool,
    /// fderiv re-evaluates `f'` at `W v` without the bias, as the authors' code does.
    pub state_fprime_without_bias: bool,
    /// Backward kernels of the convolutional layers, when they differ from `feedback` (which
    /// then applies to the dense layers).
    #[serde(with = "text_option", skip_serializing_if = "Option::is_none")]
    pub conv_feedback: Option<Feedback>,
    /// Which `f'` the convolutional layers keep, when it differs from the dense layers'.
    #[serde(with = "text_option", skip_serializing_if = "Option::is_none")]
    pub conv_fprime: Option<FprimeUse>,
    /// Multiplies the convolutions' gradients (the authors' code: 2).
    pub conv_lr_scale: f64,
    /// Clamps each element of a convolution's batch-mean gradient (the authors' code: 50 / (4
    /// batch size)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conv_grad_clip: Option<f64>,
    /// Convolutions without bias (zero, never trained), as in the authors' code.
    pub no_conv_bias: bool,
    /// The relaxation's Euler step.
    pub eta: f64,
    /// Relaxation iterations `T` (the most, with a tolerance).
    pub steps: usize,
    /// Stop a relaxation once the relative change per unit eta falls to this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// Relaxation schedule.
    #[serde(with = "text")]
    pub schedule: Schedule,
    /// Relaxation start.
    #[serde(with = "text")]
    pub start: InitialState,
    /// Relaxation solver.
    #[serde(with = "text")]
    pub solver: Solver,
    /// The loss.
    #[serde(with = "text")]
    pub loss: Loss,
    /// Epochs (unset: 40 on digits, 10 on the other data sets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// The optimiser.
    pub optimizer: OptimizerName,
    /// Learning rate on the batch-mean loss.
    pub lr: f64,
    /// SGD momentum (ignored by Adam).
    pub momentum: f64,
    /// Samples per batch.
    pub batch_size: usize,
    /// Weight initialisation.
    pub init: InitName,
    /// Standard deviation of the normal initialisation.
    pub init_std: f64,
    /// Seed of the weights, the digits split and the batch order.
    pub seed: u64,
    /// The backend the run was made for, as the command line names it (the library trains on
    /// whatever backend it is handed; this records the choice).
    pub backend: String,
    /// The backend's precision.
    #[serde(with = "text")]
    pub precision: Precision,
    /// CPU threads for backends that use a thread pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Measure the update's agreement with the exact gradient every this many steps (0: never).
    pub probe_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            dataset: "digits".into(),
            data_dir: None,
            test_fraction: 0.2,
            model: "auto".into(),
            hidden_activation: None,
            output_activation: Activation::Identity,
            algorithms: vec![AlgorithmName::Ar, AlgorithmName::Bp],
            feedback: Feedback::Transpose,
            feedback_decay: 0.0,
            no_fprime_backward: false,
            no_fprime_update: false,
            fderiv: None,
            current_input: false,
            relax_input: false,
            state_fprime_without_bias: false,
            conv_feedback: None,
            conv_fprime: None,
            conv_lr_scale: 1.0,
            conv_grad_clip: None,
            no_conv_bias: false,
            eta: 0.1,
            steps: 100,
            tolerance: None,
            schedule: Schedule::Sweep,
            start: InitialState::Feedforward,
            solver: Solver::Auto,
            loss: Loss::Mse,
            epochs: None,
            optimizer: OptimizerName::Sgd,
            lr: 0.1,
            momentum: 0.9,
            batch_size: 32,
            init: InitName::Normal,
            init_std: 0.05,
            seed: 0,
            backend: "ndarray".into(),
            precision: Precision::F32,
            threads: None,
            probe_every: 50,
        }
    }
}

/// The training and test sets of a run and how their pixels become inputs.
#[derive(Clone, Debug)]
pub struct Data {
    /// The training set.
    pub train: Dataset,
    /// The test set.
    pub test: Dataset,
    /// How pixels are scaled.
    pub normalization: Normalization,
}

fn bad(key: &str, message: impl Into<String>) -> TrainError {
    TrainError::Config { key: key.into(), message: message.into() }
}

impl TrainConfig {
    /// Reads a config file (TOML with this type's keys; see [`read_config_text`]).
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        Self::parse(&read_config_text(path)?, path)
    }

    /// Parses config TOML (`source` names where it came from in errors, such as a checkpoint
    /// whose header stores it).
    pub fn parse(text: &str, source: &Path) -> Result<Self, TrainError> {
        toml::from_str(text).map_err(|e| TrainError::File {
            path: source.to_path_buf(),
            message: format!("the training config: {}", toml_error(text, &e)),
        })
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config serialises")
    }

    /// The number of epochs: as set, else 40 on digits and 10 on the other data sets.
    pub fn epochs(&self) -> usize {
        self.epochs.unwrap_or(if self.dataset == "digits" { 40 } else { 10 })
    }

    /// The variant the AR (and the baselines') flags describe.
    pub fn variant(&self) -> Variant {
        let kept = FprimeUse::from_flags(!self.no_fprime_backward, !self.no_fprime_update);
        let at_state = self.fderiv_at_state();
        let dense = LayerChoices::new(self.feedback, kept, at_state);
        Variant {
            feedback_decay: self.feedback_decay,
            current_input: self.current_input,
            state_fprime_without_bias: self.state_fprime_without_bias,
            ..Variant::per_layer(dense, self.conv_feedback, self.conv_fprime, at_state)
        }
    }

    /// Whether `fderiv` takes `f'` at the relaxing state (in the relaxation, in the update).
    fn fderiv_at_state(&self) -> (bool, bool) {
        let relax = matches!(self.fderiv, Some(Fderiv::Relax | Fderiv::Both));
        (relax, matches!(self.fderiv, Some(Fderiv::Update | Fderiv::Both)))
    }

    /// The algorithm `name` stands for under this config.
    pub fn algorithm(&self, name: AlgorithmName) -> Algorithm {
        match name {
            AlgorithmName::Bp => Algorithm::backprop(),
            AlgorithmName::Fa => Algorithm::feedback_alignment(),
            AlgorithmName::Ar => Algorithm {
                method: Method::Relaxation(Relaxation {
                    eta: self.eta,
                    steps: self.steps,
                    tolerance: self.tolerance,
                    schedule: self.schedule,
                    init: self.start,
                    solver: self.solver,
                    relax_input: self.relax_input,
                }),
                variant: self.variant(),
            },
        }
    }

    /// The model for inputs of `input_shape` in `classes` classes ([`TrainConfig::model_for`])
    /// and its network on `be`, with this config's initialisation and seed; a model whose
    /// output is not one value per class is refused.
    pub fn network<B: Backend>(
        &self,
        input_shape: &[usize],
        classes: usize,
        be: B,
    ) -> Result<(ModelSpec, Network<B>), TrainError> {
        let spec = self.model_for(input_shape, classes)?;
        let net = spec.build(be, self.init()?, self.seed)?;
        let outputs = net.output_width();
        if outputs != classes {
            return Err(bad(
                "model",
                format!(
                    "{spec} outputs {outputs} values per sample, but the data have {classes} \
                     classes (end the model with fc{classes})"
                ),
            ));
        }
        Ok((spec, net))
    }

    /// The trainer of algorithm `name` for `net`, a network just built from this config's
    /// model and seed, made ready for it as a run does: backward weights drawn where the
    /// algorithm needs them, convolution biases zeroed under `no-conv-bias`.
    pub fn trainer<B: Backend>(
        &self,
        name: AlgorithmName,
        net: &mut Network<B>,
    ) -> Result<Trainer<B>, TrainError> {
        let algorithm = self.algorithm(name);
        if algorithm.needs_feedback_weights() {
            net.init_feedback(self.init()?, self.seed, &algorithm);
        }
        if self.no_conv_bias {
            net.zero_conv_biases();
        }
        Trainer::new(algorithm, self.loss, self.optimizer(), net)
            .and_then(|t| t.with_conv_update(self.conv_update()))
            .map_err(|e| bad("algorithms", format!("{name}: {e}")))
    }

    /// How the convolutional layers are updated.
    pub fn conv_update(&self) -> ConvUpdate {
        ConvUpdate {
            lr_scale: self.conv_lr_scale,
            clip: self.conv_grad_clip,
            bias: !self.no_conv_bias,
        }
    }

    /// A fresh optimiser.
    pub fn optimizer<B: Backend>(&self) -> Optimizer<B> {
        match self.optimizer {
            OptimizerName::Sgd => Optimizer::sgd(self.lr, self.momentum),
            OptimizerName::Adam => Optimizer::new(OptimizerKind::ADAM, self.lr),
        }
    }

    /// The weight initialisation.
    pub fn init(&self) -> Result<Init, TrainError> {
        match self.init {
            InitName::Pytorch => Ok(Init::PyTorch),
            InitName::Kaiming => Ok(Init::Kaiming),
            InitName::Normal if self.init_std > 0.0 && self.init_std.is_finite() => {
                Ok(Init::Normal { std: self.init_std })
            }
            InitName::Normal => {
                Err(bad("init-std", format!("must be finite and > 0, got {}", self.init_std)))
            }
        }
    }

    /// Checks every setting that can be checked without data; errors name the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.validate_settings()?;
        if !ar_data::NAMES.contains(&self.dataset.as_str()) {
            return Err(bad(
                "dataset",
                format!(
                    "unknown data set '{}' (expected one of: {})",
                    self.dataset,
                    ar_data::NAMES.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// [`TrainConfig::validate`] without the data set's name, for data held in memory.
    pub fn validate_settings(&self) -> Result<(), TrainError> {
        if self.epochs() == 0 {
            return Err(bad("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(bad("batch-size", "must be at least 1"));
        }
        match self.threads {
            Some(0) => return Err(bad("threads", "must be at least 1")),
            Some(n) if n > MAX_THREADS => {
                let why =
                    format!("{n}: at most {MAX_THREADS} (one per core is the most that helps)");
                return Err(bad("threads", why));
            }
            _ => {}
        }
        let v = self.variant();
        for (asked, taken, place) in [
            (
                self.fderiv_at_state().0,
                v.any(|c| c.fprime_backward == FPrime::AtState),
                "relaxation",
            ),
            (self.fderiv_at_state().1, v.any(|c| c.fprime_update == FPrime::AtState), "update"),
        ] {
            if asked && !taken && self.algorithms.contains(&AlgorithmName::Ar) {
                let fderiv = self.fderiv.expect("asked");
                return Err(bad(
                    "fderiv",
                    format!("{fderiv} re-evaluates the f' of the {place}, which no layer keeps (--no-fprime-*, --conv-fprime); choose one"),
                ));
            }
        }
        if self.algorithms.is_empty() {
            return Err(bad("algorithms", "needs at least one of ar, bp, fa"));
        }
        for (i, a) in self.algorithms.iter().enumerate() {
            if self.algorithms[..i].contains(a) {
                return Err(bad("algorithms", format!("lists {a} twice")));
            }
            self.algorithm(*a).validate().map_err(|e| bad("algorithms", format!("{a}: {e}")))?;
        }
        self.conv_update().validate().map_err(|e| {
            let key = if self.conv_lr_scale > 0.0 && self.conv_lr_scale.is_finite() {
                "conv-grad-clip"
            } else {
                "conv-lr-scale"
            };
            bad(key, e.to_string())
        })?;
        let kind = match self.optimizer {
            OptimizerName::Sgd => OptimizerKind::Sgd { momentum: self.momentum },
            OptimizerName::Adam => OptimizerKind::ADAM,
        };
        if let OptimizerKind::Sgd { momentum } = kind {
            if !(0.0..1.0).contains(&momentum) {
                return Err(bad("momentum", format!("must lie in [0, 1), got {momentum}")));
            }
        }
        kind.validate(self.lr).map_err(|e| match e {
            CoreError::InvalidConfig(m) | CoreError::Shape(m) => bad("lr", m),
        })?;
        self.init()?;
        Ok(())
    }

    /// Reads the training and test sets from [`TrainConfig::data_dir`] (or
    /// [`ar_data::data_root`]'s default).
    pub fn load_data(&self) -> Result<Data, TrainError> {
        let root = ar_data::data_root(self.data_dir.as_deref());
        let (train, test) =
            ar_data::load_train_test(&self.dataset, &root, self.test_fraction, self.seed)?;
        let normalization = ar_data::default_normalization(&self.dataset)?;
        Ok(Data { train, test, normalization })
    }

    /// The model for `data`, with this config's activations applied to MLPs; a hidden
    /// activation given for any other model is refused (it would be recorded and ignored).
    pub fn model(&self, data: &Dataset) -> Result<ModelSpec, TrainError> {
        self.model_for(&data.shape, data.num_classes)
    }

    /// [`TrainConfig::model`] for inputs of `input_shape` in `classes` classes.
    pub fn model_for(
        &self,
        input_shape: &[usize],
        classes: usize,
    ) -> Result<ModelSpec, TrainError> {
        let spec = ModelSpec::preset(&self.model, input_shape, classes)?;
        if let (Some(a), false) = (self.hidden_activation, spec.takes_activations()) {
            return Err(TrainError::Config {
                key: "hidden-activation".into(),
                message: format!(
                    "{a} applies to MLP presets and widths only; model {spec} names each \
                     layer's activation itself (such as conv16x3:{a})"
                ),
            });
        }
        Ok(spec.with_activations(self.hidden_activation, self.output_activation))
    }
}

/// Serde through `Display` and `FromStr`, for the core crates' enums.
mod text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err: Display>,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

/// [`text`] for optional values.
mod text_option {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr<Err: Display>,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map(Some).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_say_where_and_which_key() {
        let text = "lr = 0.1\nseed = 3\nlr = 0.2\n";
        let e = TrainConfig::parse(text, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("`lr`") && e.contains("duplicate"), "{e}");
    }

    #[test]
    fn a_thread_count_beyond_the_cap_is_refused_before_any_thread_starts() {
        let many = TrainConfig { threads: Some(100_000), ..TrainConfig::default() };
        let e = many.validate().unwrap_err().to_string();
        assert!(e.contains("threads") && e.contains("100000") && e.contains("1024"), "{e}");
        let ok = TrainConfig { threads: Some(MAX_THREADS), ..TrainConfig::default() };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn configs_round_trip_through_toml_and_refuse_unknown_keys() {
        let mut c = TrainConfig { fderiv: Some(Fderiv::Update), ..TrainConfig::default() };
        c.hidden_activation = Some(Activation::Relu);
        let text = c.to_toml();
        assert!(text.contains("batch-size = 32") && text.contains("fderiv = \"update\""), "{text}");
        assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), c);
        let partial: TrainConfig = toml::from_str("lr = 0.5\nalgorithms = [\"bp\"]").unwrap();
        assert_eq!((partial.lr, partial.batch_size), (0.5, 32));
        let e = toml::from_str::<TrainConfig>("learning-rate = 1").unwrap_err().to_string();
        assert!(e.contains("learning-rate"), "{e}");
        let e = toml::from_str::<TrainConfig>("feedback = \"sideways\"").unwrap_err().to_string();
        assert!(e.contains("sideways") && e.contains("transpose"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        for (c, key) in [
            (TrainConfig { epochs: Some(0), ..Default::default() }, "epochs"),
            (TrainConfig { batch_size: 0, ..Default::default() }, "batch-size"),
            (TrainConfig { algorithms: vec![], ..Default::default() }, "algorithms"),
            (TrainConfig { eta: 2.5, ..Default::default() }, "algorithms"),
            (TrainConfig { momentum: 1.5, ..Default::default() }, "momentum"),
            (TrainConfig { lr: 0.0, ..Default::default() }, "lr"),
            (TrainConfig { init_std: -1.0, ..Default::default() }, "init-std"),
            (TrainConfig { dataset: "imagenet".into(), ..Default::default() }, "dataset"),
        ] {
            match c.validate() {
                Err(TrainError::Config { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
        TrainConfig::default().validate().unwrap();
    }
}
