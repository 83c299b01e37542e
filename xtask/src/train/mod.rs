//! `cargo xtask train`: its flags, and how they become an algorithm, a model and data. The
//! training loop itself, with its run directory, is in `session.rs`.

pub(crate) mod session;

use crate::backend::{BackendName, PrecisionName};
use crate::UsageError;
use anyhow::Context;
use ar_backend::{Activation, Backend};
use ar_core::{
    Algorithm, Feedback, Init, InitialState, Loss, Method, Optimizer, Relaxation, Schedule, Solver,
    Variant,
};
use ar_data::{Dataset, Normalization, Split};
use ar_models::{MlpSpec, ModelSpec};
use clap::ValueEnum;
use serde::{Serialize, Serializer};
use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

/// Which learning rule computes the update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlgorithmName {
    /// Activation relaxation with the chosen variant flags.
    Ar,
    /// Exact backprop (variant flags other than those of the backward pass are ignored).
    Bp,
    /// Feedback alignment: backprop through fixed random backward weights.
    Fa,
}

/// Backward weights for AR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedbackName {
    /// W^T (exact weight transport).
    Transpose,
    /// A separate matrix, updated with W's transposed update.
    Learned,
    /// A fixed random matrix.
    Random,
}

/// Which `f'` of the relaxation/update is re-evaluated at the relaxing state (paper 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FderivName {
    /// f' at W v(t) + b inside the relaxation.
    Relax,
    /// f' at W v(T) + b in the weight update.
    Update,
    /// Both.
    Both,
}

/// The order of updates inside one relaxation iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleName {
    /// All layers read the previous iterate (the papers' equations).
    Parallel,
    /// Top-down, each layer reads the updated layer above (the reference code).
    Sweep,
}

/// How the relaxed state is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SolverName {
    /// closed-form when the relaxation is linear (everything but --fderiv relax|both and
    /// --tolerance), else euler.
    Auto,
    /// T Euler iterations.
    Euler,
    /// The exact state after T Euler iterations, computed in L - 2 top-down passes; rejected
    /// with --fderiv relax|both (nonlinear) and with --tolerance.
    ClosedForm,
}

/// Where the relaxing activities start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartName {
    /// The feedforward activities h_k.
    Feedforward,
    /// Zero.
    Zero,
}

/// How weights are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitName {
    /// N(0, std^2) weights, zero biases (the papers; std from --init-std).
    Normal,
    /// PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    Pytorch,
}

/// Flags of `train`.
#[derive(clap::Args, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    /// Data set. `digits` is the bundled UCI 8x8 digits set, split into train and test by a
    /// stratified, seeded split (see --test-fraction); the others are read from --data-dir
    /// (get them with `cargo xtask data fetch NAME`). Inputs are scaled to [0, 1] for digits,
    /// mnist and fashion-mnist (paper 1) and to [-1, 1] for cifar10, cifar100 and svhn (paper 2).
    #[arg(long, default_value = "digits", value_parser = ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"])]
    dataset: String,
    #[command(flatten)]
    #[serde(flatten)]
    data_dir: crate::data::DataDir,
    /// Fraction of each class held out for testing (digits only; the others have a test set).
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Model: `auto` (digits-mlp for digits, otherwise paper-1's hidden widths 300-300-100
    /// between the data's input size and class count), `digits-mlp` (64-64-32-10 tanh),
    /// `paper1-mlp` (784-300-300-100-10 relu), MLP widths joined by '-' (64-128-10);
    /// `cnn-paper` (paper 2's CNN, adapting to the input), `cnn-deep` (128-256-512-512 3x3
    /// convolutions with 2x2 max-pooling), `cnn-digits` (a small CNN for the 8x8 digits), or a
    /// layer spec such as `conv6x5:tanh,maxpool2,conv16x5:tanh,flatten,fc120:tanh,fc10`
    /// (docs/models.md).
    #[arg(long, default_value = "auto")]
    model: String,
    /// Hidden-layer activation for a custom width spec (identity, relu, leaky-relu, tanh, sigmoid,
    /// softplus); presets use their own unless this is given.
    #[arg(long)]
    #[serde(serialize_with = "optional_display", skip_serializing_if = "Option::is_none")]
    hidden_activation: Option<Activation>,
    /// Output-layer activation (usually identity).
    #[arg(long, default_value = "identity")]
    #[serde(serialize_with = "display")]
    output_activation: Activation,
    /// Algorithms to train side by side from the same initial weights and batch order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ar,bp", action = clap::ArgAction::Set)]
    algorithms: Vec<AlgorithmName>,
    /// AR backward weights: transpose (exact), learned, or random (fixed).
    #[arg(long, value_enum, default_value = "transpose")]
    feedback: FeedbackName,
    /// Kolen-Pollack weight decay lambda on W and psi (learned feedback only).
    #[arg(long, default_value_t = 0.0)]
    feedback_decay: f64,
    /// Drop f'(a) from the backward VJP (in the relaxation; paper 1 eq. 7 with learned feedback).
    #[arg(long)]
    no_fprime_backward: bool,
    /// Drop f'(a) from the weight update.
    #[arg(long)]
    no_fprime_update: bool,
    /// Evaluate f' at the relaxing state W v + b instead of the stored a (paper 2's unfrozen
    /// feedforward variants; not gradient-aligned).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    fderiv: Option<FderivName>,
    /// Use the relaxed v_{k-1}(T) instead of h_{k-1} as the update's presynaptic term (paper 2).
    #[arg(long)]
    current_input: bool,
    /// Euler step of the relaxation (the "inference learning rate"), in (0, 2).
    #[arg(long, default_value_t = 0.1)]
    eta: f64,
    /// Relaxation iterations T per batch (the most, with --tolerance).
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Stop a relaxation early once the relative change per unit eta falls to this.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tolerance: Option<f64>,
    /// Relaxation schedule.
    #[arg(long, value_enum, default_value = "sweep")]
    schedule: ScheduleName,
    /// Relaxation start.
    #[arg(long, value_enum, default_value = "feedforward")]
    start: StartName,
    /// Relaxation solver: the same state after T steps, by iterating or in closed form.
    #[arg(long, value_enum, default_value = "auto")]
    solver: SolverName,
    /// Loss: mse (1/2 ||y - t||^2, the papers') or cross-entropy.
    #[arg(long, default_value = "mse")]
    #[serde(serialize_with = "display")]
    pub(crate) loss: Loss,
    /// Epochs (default: 40 on digits, 10 on the other data sets).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    epochs: Option<usize>,
    /// Optimiser: sgd (with --momentum) or adam (PyTorch's betas 0.9, 0.999 and eps 1e-8).
    #[arg(long, value_enum, default_value = "sgd")]
    optimizer: OptimizerName,
    /// Learning rate on the batch-mean loss.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// SGD momentum (ignored by adam).
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Samples per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Weight initialisation.
    #[arg(long, value_enum, default_value = "normal")]
    init: InitName,
    /// Standard deviation of --init normal.
    #[arg(long, default_value_t = 0.05)]
    init_std: f64,
    /// Seed of the weights, the split and the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tensor backend: ndarray (CPU), candle (CPU) or candle-cuda (GPU; needs a CUDA build).
    #[arg(long, value_enum, default_value = "ndarray")]
    backend: BackendName,
    /// Numeric precision.
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionName,
    /// CPU threads for candle's kernels (default: all cores). The ndarray backend computes on
    /// one thread: at AR's matrix sizes a second thread measured slower (docs/performance.md).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,
    /// Every this many training steps, measure each layer's angle and relative error between the
    /// update and the exact gradient on a fixed batch (and psi against W^T); 0 turns probes off.
    #[arg(long, default_value_t = 50)]
    probe_every: usize,
    /// The run directory (config, metrics, checkpoints, plots). Default: runs/ in the
    /// repository, named by time, data set and algorithms.
    #[arg(long, value_name = "DIR")]
    #[serde(skip)]
    out: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoints, with its config.toml (flags given here
    /// override it, e.g. a larger --epochs). Resumed runs end bit-identical to uninterrupted ones.
    #[arg(long, value_name = "DIR")]
    #[serde(skip)]
    resume: Option<PathBuf>,
    /// Read flags from a TOML file whose keys are these long flags (`lr = 0.1`); flags typed
    /// on the command line override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// No progress bars and no per-epoch lines; only the final summary.
    #[arg(long)]
    #[serde(skip)]
    quiet: bool,
    /// Check the flags and config, print the resolved configuration as TOML and exit without
    /// reading data or training.
    #[arg(long)]
    #[serde(skip)]
    dry_run: bool,
}

/// The model to train: an MLP on flattened inputs or a layer spec on `[c, h, w]` inputs.
#[derive(Clone, Debug)]
pub enum Model {
    /// A multilayer perceptron.
    Mlp(MlpSpec),
    /// A convolutional (or any layer-spec) network and its input shape.
    Cnn(ModelSpec, Vec<usize>),
}

impl Model {
    /// The network with weights from `init` seeded by `seed`.
    pub fn build<B: Backend>(
        &self,
        be: B,
        init: Init,
        seed: u64,
    ) -> anyhow::Result<ar_core::Network<B>> {
        Ok(match self {
            Model::Mlp(m) => m.build(be, init, seed)?,
            Model::Cnn(m, shape) => m.build(be, shape, init, seed)?,
        })
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Model::Mlp(m) => write!(f, "{m}"),
            Model::Cnn(m, shape) => write!(f, "{m} on {shape:?}"),
        }
    }
}

/// The optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerName {
    /// Stochastic gradient descent with optional momentum.
    Sgd,
    /// Adam.
    Adam,
}

fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

fn optional_display<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

impl Args {
    fn variant(&self) -> Variant {
        Variant {
            feedback: match self.feedback {
                FeedbackName::Transpose => Feedback::Transpose,
                FeedbackName::Learned => Feedback::Learned,
                FeedbackName::Random => Feedback::Random,
            },
            feedback_decay: self.feedback_decay,
            fprime_in_backward: !self.no_fprime_backward,
            fprime_in_update: !self.no_fprime_update,
            fprime_at_state_in_relaxation: matches!(
                self.fderiv,
                Some(FderivName::Relax | FderivName::Both)
            ),
            fprime_at_state_in_update: matches!(
                self.fderiv,
                Some(FderivName::Update | FderivName::Both)
            ),
            current_input: self.current_input,
        }
    }

    fn algorithm(&self, name: AlgorithmName) -> Algorithm {
        match name {
            AlgorithmName::Bp => Algorithm::backprop(),
            AlgorithmName::Fa => Algorithm::feedback_alignment(),
            AlgorithmName::Ar => Algorithm {
                method: Method::Relaxation(Relaxation {
                    eta: self.eta,
                    steps: self.steps,
                    tolerance: self.tolerance,
                    schedule: match self.schedule {
                        ScheduleName::Parallel => Schedule::Parallel,
                        ScheduleName::Sweep => Schedule::Sweep,
                    },
                    init: match self.start {
                        StartName::Feedforward => InitialState::Feedforward,
                        StartName::Zero => InitialState::Zero,
                    },
                    solver: match self.solver {
                        SolverName::Euler => Solver::Euler,
                        SolverName::ClosedForm => Solver::ClosedForm,
                        SolverName::Auto => {
                            let nonlinear =
                                matches!(self.fderiv, Some(FderivName::Relax | FderivName::Both));
                            if nonlinear || self.tolerance.is_some() {
                                Solver::Euler
                            } else {
                                Solver::ClosedForm
                            }
                        }
                    },
                }),
                variant: self.variant(),
            },
        }
    }

    pub(crate) fn model(&self, data: &Dataset) -> anyhow::Result<Model> {
        let classes = data.num_classes;
        let cnn = |spec: ModelSpec| Ok(Model::Cnn(spec, data.shape.to_vec()));
        let mut spec = match self.model.as_str() {
            "auto" if self.dataset == "digits" => MlpSpec::digits(),
            "auto" => MlpSpec {
                widths: vec![data.sample_len(), 300, 300, 100, classes],
                ..MlpSpec::paper1()
            },
            "digits-mlp" => MlpSpec::digits(),
            "paper1-mlp" => MlpSpec::paper1(),
            "cnn-paper" => return cnn(ModelSpec::paper2(classes)),
            "cnn-deep" => return cnn(ModelSpec::deep(classes)),
            "cnn-digits" => return cnn(ModelSpec::digits(classes)),
            custom
                if custom.contains(',')
                    || custom.starts_with("conv")
                    || custom.starts_with("fc") =>
            {
                return cnn(ModelSpec::parse(custom)?);
            }
            custom => MlpSpec::parse(custom, Activation::Tanh, self.output_activation).context(
                "--model takes auto, a preset, MLP widths such as 64-128-10, or a layer spec",
            )?,
        };
        if let Some(h) = self.hidden_activation {
            spec.hidden = h;
        }
        spec.output = self.output_activation;
        spec.check_fits(data.sample_len(), classes)?;
        Ok(Model::Mlp(spec))
    }

    fn optimizer<B: Backend>(&self) -> Optimizer<B> {
        match self.optimizer {
            OptimizerName::Sgd => Optimizer::sgd(self.lr, self.momentum),
            OptimizerName::Adam => Optimizer::adam(self.lr),
        }
    }

    fn epochs(&self) -> usize {
        self.epochs.unwrap_or(if self.dataset == "digits" { 40 } else { 10 })
    }

    /// The training and test sets, and how their pixels are normalised.
    pub(crate) fn data(&self) -> anyhow::Result<(Dataset, Dataset, Normalization)> {
        let name = self.dataset.as_str();
        let norm = match name {
            "cifar10" | "cifar100" | "svhn" => Normalization::Symmetric,
            _ => Normalization::UnitInterval,
        };
        let dir = self.data_dir.of(name);
        if name == "digits" {
            let all = ar_data::load(name, &dir, Split::Train)?;
            let (train, test) =
                all.split_stratified(self.test_fraction, self.seed).context("--test-fraction")?;
            return Ok((train, test, norm));
        }
        let train = ar_data::load(name, &dir, Split::Train)?;
        let test = ar_data::load(name, &dir, Split::Test)?;
        Ok((train, test, norm))
    }

    fn init(&self) -> anyhow::Result<Init> {
        match self.init {
            InitName::Pytorch => Ok(Init::PyTorch),
            InitName::Normal if self.init_std > 0.0 && self.init_std.is_finite() => {
                Ok(Init::Normal { std: self.init_std })
            }
            InitName::Normal => {
                Err(UsageError(format!("--init-std must be finite and > 0, got {}", self.init_std))
                    .into())
            }
        }
    }
}

/// Trains every requested algorithm side by side and writes the run directory.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(crate::UsageError("--threads must be at least 1".into()).into());
        }
        // Read by candle's thread pool when it starts, which is after this point.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    session::run(args)
}

fn label(name: AlgorithmName) -> &'static str {
    match name {
        AlgorithmName::Ar => "ar",
        AlgorithmName::Bp => "bp",
        AlgorithmName::Fa => "fa",
    }
}

fn label_with_variant(name: AlgorithmName, a: &Algorithm) -> String {
    if name != AlgorithmName::Ar {
        return label(name).into();
    }
    let v = &a.variant;
    let mut parts = vec!["ar".to_string()];
    match v.feedback {
        Feedback::Transpose => {}
        Feedback::Learned => parts.push("learned".into()),
        Feedback::Random => parts.push("random".into()),
    }
    if !v.fprime_in_backward {
        parts.push("no-f'-backward".into());
    }
    if !v.fprime_in_update {
        parts.push("no-f'-update".into());
    }
    if v.fprime_at_state_in_relaxation {
        parts.push("fderiv-relax".into());
    }
    if v.fprime_at_state_in_update {
        parts.push("fderiv-update".into());
    }
    if v.current_input {
        parts.push("current-input".into());
    }
    parts.join("+")
}

fn describe(a: &Algorithm) -> String {
    let v = &a.variant;
    let feedback = match v.feedback {
        Feedback::Transpose => "W^T".to_string(),
        Feedback::Learned if v.feedback_decay > 0.0 => {
            format!("learned psi, decay {}", v.feedback_decay)
        }
        Feedback::Learned => "learned psi".into(),
        Feedback::Random => "fixed random psi".into(),
    };
    match a.method {
        Method::Backprop => format!("one backward pass through {feedback}"),
        Method::Relaxation(r) => format!(
            "relaxation eta {}, T {}{}, {} schedule, {} start, {} solver, backward through {feedback}",
            r.eta,
            r.steps,
            r.tolerance.map_or(String::new(), |t| format!(" (stop at residual {t:e})")),
            match r.schedule {
                Schedule::Parallel => "parallel",
                Schedule::Sweep => "sweep",
            },
            match r.init {
                InitialState::Feedforward => "feedforward",
                InitialState::Zero => "zero",
            },
            match r.solver {
                Solver::Euler => "euler",
                Solver::ClosedForm => "closed-form",
            },
        ),
    }
}
