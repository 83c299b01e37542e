//! `cargo xtask train`: its flags become an `ar_train::TrainConfig`; a `Session` of the training
//! crate trains; this module draws progress bars, turns Ctrl-C into the session's stop flag and
//! prints the summary.

use crate::backend::{dispatch, BackendName, Job};
use crate::UsageError;
use ar_backend::{Activation, Backend, Precision};
use ar_core::{Feedback, FprimeUse, InitialState, Loss, Schedule, Solver};
use ar_train::{
    AlgorithmName, Event, Fderiv, InitName, Observer, OptimizerName, Outcome, Session, TrainConfig,
    TrainError,
};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

/// Exit status after a Ctrl-C that saved checkpoints (128 + SIGINT, as shells report).
const INTERRUPTED: u8 = 130;

fn d() -> TrainConfig {
    TrainConfig::default()
}

/// A parser accepting exactly `names`, shown in `--help`, into the type they name.
fn one_of<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: FromStr<Err: std::fmt::Debug> + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).map(|s| s.parse::<T>().expect("every listed name parses"))
}

/// Flags of `train`; each long flag is a key of the run's `config.toml`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data set. `digits` is the bundled UCI 8x8 digits set, split into train and test by a
    /// stratified, seeded split (see --test-fraction); the others are read from --data-dir
    /// (get them with `cargo xtask data fetch NAME`). Inputs are scaled to [0, 1] for digits,
    /// mnist and fashion-mnist (paper 1) and to [-1, 1] for cifar10, cifar100 and svhn (paper 2).
    #[arg(long, default_value_t = d().dataset, value_parser = PossibleValuesParser::new(ar_data::NAMES))]
    dataset: String,
    #[command(flatten)]
    data_dir: crate::data::DataDir,
    /// Fraction of each class held out for testing (digits only; the others have a test set).
    #[arg(long, default_value_t = d().test_fraction)]
    test_fraction: f64,
    /// Model: `auto` (digits-mlp for digits, otherwise paper-1's hidden widths 300-300-100
    /// between the data's input size and class count), `digits-mlp` (64-64-32-10 tanh),
    /// `paper1-mlp` (784-300-300-100-10 relu), MLP widths joined by '-' (64-128-10);
    /// `cnn-paper` (paper 2's CNN, adapting to the input), `cnn-deep` (128-256-512-512 3x3
    /// convolutions with 2x2 max-pooling), `cnn-digits` (a small CNN for the 8x8 digits), or a
    /// layer spec such as `conv6x5:tanh,maxpool2,conv16x5:tanh,flatten,fc120:tanh,fc10`
    /// (docs/models.md).
    #[arg(long, default_value_t = d().model)]
    model: String,
    /// Hidden-layer activation for an MLP (identity, relu, leaky-relu, tanh, sigmoid,
    /// softplus); presets use their own unless this is given.
    #[arg(long)]
    hidden_activation: Option<Activation>,
    /// Output-layer activation of an MLP (usually identity).
    #[arg(long, default_value_t = d().output_activation)]
    output_activation: Activation,
    /// Algorithms to train side by side from the same initial weights and batch order: ar
    /// (activation relaxation with the variant flags), bp (exact backprop), fa (feedback
    /// alignment: backprop through fixed random backward weights).
    #[arg(long, value_parser = one_of::<AlgorithmName>(AlgorithmName::NAMES), value_delimiter = ',', default_value = "ar,bp", action = clap::ArgAction::Set)]
    algorithms: Vec<AlgorithmName>,
    /// AR backward weights: transpose (W^T, exact), learned (a separate matrix updated with W's
    /// transposed update), or random (fixed).
    #[arg(long, value_parser = one_of::<Feedback>(Feedback::NAMES), default_value_t = d().feedback)]
    feedback: Feedback,
    /// Kolen-Pollack weight decay lambda on W and psi (learned feedback only).
    #[arg(long, default_value_t = d().feedback_decay)]
    feedback_decay: f64,
    /// Drop f'(a) from the backward VJP (in the relaxation; paper 1 eq. 7 with learned feedback).
    #[arg(long)]
    no_fprime_backward: bool,
    /// Drop f'(a) from the weight update.
    #[arg(long)]
    no_fprime_update: bool,
    /// Evaluate f' at the relaxing state W v + b instead of the stored a (paper 2's unfrozen
    /// feedforward variants; not gradient-aligned): in the relaxation, the update, or both.
    #[arg(long, value_parser = one_of::<Fderiv>(Fderiv::NAMES))]
    fderiv: Option<Fderiv>,
    /// Use the relaxed v_{k-1}(T) instead of h_{k-1} as the update's presynaptic term (paper 2).
    #[arg(long)]
    current_input: bool,
    /// Let the input relax too, as the authors' code does: under --current-input layer 1 then
    /// learns from the relaxed input v_0(T), under --fderiv its f' is taken at W_1 v_0 + b_1
    /// (exact AR is unchanged).
    #[arg(long)]
    relax_input: bool,
    /// With --fderiv, re-evaluate f' at W v without the bias, as the authors' code does.
    #[arg(long)]
    state_fprime_without_bias: bool,
    /// Backward kernels of the convolutional layers, when they differ from --feedback (which
    /// then applies to the dense layers only), as paper 2's code sets them per layer type.
    #[arg(long, value_parser = one_of::<Feedback>(Feedback::NAMES))]
    conv_feedback: Option<Feedback>,
    /// Which f' the convolutional layers keep, when it differs from the dense layers'
    /// (--no-fprime-backward and --no-fprime-update then apply to the dense layers only).
    #[arg(long, value_parser = one_of::<FprimeUse>(FprimeUse::NAMES))]
    conv_fprime: Option<FprimeUse>,
    /// Multiply the convolutions' gradients by this (their learning rate, under SGD); the
    /// authors' code amounts to 2.
    #[arg(long, default_value_t = d().conv_lr_scale)]
    conv_lr_scale: f64,
    /// Clamp each element of a convolution's batch-mean gradient to [-X, X] before the scale;
    /// the authors' code amounts to 50 / (4 * batch size).
    #[arg(long, value_name = "X")]
    conv_grad_clip: Option<f64>,
    /// Convolutions without bias (kept at zero), as in the authors' code.
    #[arg(long)]
    no_conv_bias: bool,
    /// Euler step of the relaxation (the "inference learning rate"), in (0, 2).
    #[arg(long, default_value_t = d().eta)]
    eta: f64,
    /// Relaxation iterations T per batch (the most, with --tolerance).
    #[arg(long, default_value_t = d().steps)]
    steps: usize,
    /// Stop a relaxation early once the relative change per unit eta falls to this.
    #[arg(long)]
    tolerance: Option<f64>,
    /// Relaxation schedule: parallel (all layers read the previous iterate: the papers'
    /// equations) or sweep (top-down, each layer reads the updated layer above: the reference
    /// code).
    #[arg(long, value_parser = one_of::<Schedule>(Schedule::NAMES), default_value_t = d().schedule)]
    schedule: Schedule,
    /// Relaxation start: the feedforward activities h_k, or zero.
    #[arg(long, value_parser = one_of::<InitialState>(InitialState::NAMES), default_value_t = d().start)]
    start: InitialState,
    /// Relaxation solver: euler (T iterations), closed-form (the exact state after T iterations
    /// in S - 1 top-down passes, S the relaxing layers; rejected with --fderiv relax|both and
    /// --tolerance), or auto (closed-form wherever it applies, else euler).
    #[arg(long, value_parser = one_of::<Solver>(Solver::NAMES), default_value_t = d().solver)]
    solver: Solver,
    /// Loss: mse (1/2 ||y - t||^2, the papers') or cross-entropy.
    #[arg(long, default_value_t = d().loss)]
    pub(crate) loss: Loss,
    /// Epochs (default: 40 on digits, 10 on the other data sets).
    #[arg(long)]
    epochs: Option<usize>,
    /// Optimiser: sgd (with --momentum) or adam (PyTorch's betas 0.9, 0.999 and eps 1e-8).
    #[arg(long, value_parser = one_of::<OptimizerName>(OptimizerName::NAMES), default_value_t = d().optimizer)]
    optimizer: OptimizerName,
    /// Learning rate on the batch-mean loss.
    #[arg(long, default_value_t = d().lr)]
    lr: f64,
    /// SGD momentum (ignored by adam).
    #[arg(long, default_value_t = d().momentum)]
    momentum: f64,
    /// Samples per batch.
    #[arg(long, default_value_t = d().batch_size)]
    batch_size: usize,
    /// Weight initialisation: normal (N(0, std^2) weights, zero biases: the papers; std from
    /// --init-std) or pytorch (nn.Linear's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    #[arg(long, value_parser = one_of::<InitName>(InitName::NAMES), default_value_t = d().init)]
    init: InitName,
    /// Standard deviation of --init normal.
    #[arg(long, default_value_t = d().init_std)]
    init_std: f64,
    /// Seed of the weights, the split and the batch order.
    #[arg(long, default_value_t = d().seed)]
    seed: u64,
    /// Tensor backend: ndarray (CPU), candle (CPU) or candle-cuda (GPU; needs a CUDA build).
    #[arg(long, value_enum, default_value = "ndarray")]
    backend: BackendName,
    /// Numeric precision.
    #[arg(long, value_parser = one_of::<Precision>(&["f32", "f64"]), default_value_t = d().precision)]
    precision: Precision,
    /// CPU threads (rayon's pool) for the ndarray and candle backends (default: all cores). On
    /// ndarray the thread count never changes a result (docs/performance.md).
    #[arg(long)]
    threads: Option<usize>,
    /// Every this many training steps, measure each layer's angle and relative error between the
    /// update and the exact gradient on a fixed batch (and psi against W^T); 0 turns probes off.
    #[arg(long, default_value_t = d().probe_every)]
    probe_every: usize,
    /// The run directory (config, metrics, checkpoints, plots). Default: runs/ in the
    /// repository, named by time, data set and algorithms.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoints, with its config.toml (flags given here
    /// override it, e.g. a larger --epochs). Resumed runs end bit-identical to uninterrupted ones.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Read flags from a TOML file whose keys are these long flags (`lr = 0.1`); flags typed
    /// on the command line override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// No progress bars and no per-epoch lines; only the final summary.
    #[arg(long)]
    quiet: bool,
    /// Check the flags and config, print the resolved configuration as TOML and exit without
    /// reading data or training.
    #[arg(long)]
    dry_run: bool,
}

impl Args {
    /// The run's configuration.
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            dataset: self.dataset.clone(),
            data_dir: self.data_dir.data_dir.clone(),
            test_fraction: self.test_fraction,
            model: self.model.clone(),
            hidden_activation: self.hidden_activation,
            output_activation: self.output_activation,
            algorithms: self.algorithms.clone(),
            feedback: self.feedback,
            feedback_decay: self.feedback_decay,
            no_fprime_backward: self.no_fprime_backward,
            no_fprime_update: self.no_fprime_update,
            fderiv: self.fderiv,
            current_input: self.current_input,
            relax_input: self.relax_input,
            state_fprime_without_bias: self.state_fprime_without_bias,
            conv_feedback: self.conv_feedback,
            conv_fprime: self.conv_fprime,
            conv_lr_scale: self.conv_lr_scale,
            conv_grad_clip: self.conv_grad_clip,
            no_conv_bias: self.no_conv_bias,
            eta: self.eta,
            steps: self.steps,
            tolerance: self.tolerance,
            schedule: self.schedule,
            start: self.start,
            solver: self.solver,
            loss: self.loss,
            epochs: self.epochs,
            optimizer: self.optimizer,
            lr: self.lr,
            momentum: self.momentum,
            batch_size: self.batch_size,
            init: self.init,
            init_std: self.init_std,
            seed: self.seed,
            backend: self.backend.to_string(),
            precision: self.precision,
            threads: self.threads,
            probe_every: self.probe_every,
        }
    }
}

/// A library error as the command line reports it: a setting names its flag (exit status 2,
/// as for every error `TrainError::is_usage` calls the request's own).
pub fn cli_error(e: TrainError) -> anyhow::Error {
    match e {
        TrainError::Config { key, message } => UsageError(format!("--{key} {message}")).into(),
        e => e.into(),
    }
}

/// Trains every requested algorithm side by side and writes the run directory.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config();
    config.validate().map_err(cli_error)?;
    if args.dry_run {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = args.threads {
        // Read by candle's thread pool when it starts, which is after this point.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let out = match (&args.resume, &args.out) {
        (Some(dir), _) | (None, Some(dir)) => dir.clone(),
        (None, None) => ar_train::timestamped_dir(&crate::repo_root().join("runs"), &config),
    };
    dispatch(
        args.backend,
        args.precision,
        Train { config, out, resume: args.resume.is_some(), quiet: args.quiet },
    )
}

struct Train {
    config: TrainConfig,
    out: PathBuf,
    resume: bool,
    quiet: bool,
}

impl Job for Train {
    type Output = ExitCode;
    fn run<B: Backend>(self, be: B) -> anyhow::Result<ExitCode> {
        let mut session = if self.resume {
            Session::resume_with(&self.out, self.config, be)
        } else {
            Session::create(&self.out, self.config, be)
        }
        .map_err(cli_error)?;
        if !self.quiet {
            print!("{}", session.describe());
        }
        let stop = session.stop_flag();
        // A second Ctrl-C while saving would kill the process; that is the user's call.
        let _ = ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::SeqCst));
        let width = session.trainees().iter().map(|t| t.label.len()).max().unwrap_or(2);
        let mut bars =
            Bars { quiet: self.quiet, bar: ProgressBar::hidden(), line: String::new(), width };
        let outcome = session.run(&mut bars).map_err(cli_error)?;
        bars.bar.abandon();
        let dir = session.dir().display();
        match outcome {
            Outcome::Finished => {}
            Outcome::Stopped => {
                eprintln!(
                    "interrupted: checkpoints saved in {dir}/checkpoints; continue with `cargo xtask train --resume {dir}`"
                );
                return Ok(ExitCode::from(INTERRUPTED));
            }
            Outcome::Diverged { label, epoch, batch, step, loss, checkpoint } => {
                let kept = match checkpoint {
                    Some(p) => format!("The last good checkpoint, {}, is kept.", p.display()),
                    None => "No checkpoint was written yet.".to_string(),
                };
                let knobs = if label.starts_with("ar") { " or --eta" } else { "" };
                anyhow::bail!(
                    "{label} diverged at epoch {epoch}, batch {batch} (step {step}): the loss is {loss}. {kept} Try a smaller --lr{knobs}."
                );
            }
        }
        let epochs = session.config().epochs();
        println!("\nfinal test accuracy after {epochs} epochs (run directory {dir}):");
        print!("{}", session.summary().map_err(cli_error)?);
        Ok(ExitCode::SUCCESS)
    }
}

/// Progress bars per algorithm and epoch, and one line per epoch.
struct Bars {
    quiet: bool,
    bar: ProgressBar,
    line: String,
    width: usize,
}

impl Observer for Bars {
    fn event(&mut self, event: Event<'_>) {
        if self.quiet {
            return;
        }
        match event {
            Event::EpochStarted { label, epoch, batches, done } => {
                if self.line.is_empty() {
                    self.line = format!("epoch {epoch:>3}");
                }
                self.bar = ProgressBar::new(batches as u64);
                self.bar.set_style(
                    ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                        .expect("a valid template")
                        .progress_chars("=> "),
                );
                self.bar.set_prefix(format!("epoch {epoch} {label}"));
                self.bar.set_position(done as u64);
            }
            Event::Batch { batch, loss, accuracy, samples_per_second, .. } => {
                self.bar.set_position(batch as u64);
                self.bar.set_message(format!(
                    "loss {loss:.4} acc {:.1}% {samples_per_second:.0} samples/s",
                    100.0 * accuracy
                ));
            }
            Event::EpochFinished(m) => {
                self.bar.finish_and_clear();
                self.line.push_str(&format!(
                    "  | {:<w$} loss {:.4} train {:5.1}% test {:5.1}%",
                    m.algorithm,
                    m.train_loss,
                    100.0 * m.train_accuracy,
                    100.0 * m.test_accuracy,
                    w = self.width
                ));
            }
            Event::EpochsDone { .. } => println!("{}", std::mem::take(&mut self.line)),
        }
    }
}
