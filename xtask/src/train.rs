//! `cargo xtask train`: its flags (one per key of `ar_train::KEYS`) become an `ar_train::TrainConfig`; a `Session` of the training
//! crate trains; this module draws progress bars, turns Ctrl-C into the session's stop flag and
//! prints the summary.

use crate::backend::{dispatch, BackendName, Job};
use crate::UsageError;
use ar_backend::Backend;
use ar_train::{Event, KeyKind, Observer, Outcome, Session, TrainConfig, TrainError};
use clap::builder::PossibleValuesParser;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `train` besides the configuration's keys, which [`with_key_flags`] adds from
/// `ar_train::KEYS`; a config file may hold these too, except `config` and `resume`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run directory (config, metrics, checkpoints, plots). Default: runs/ in the
    /// repository, named by time, data set and algorithms.
    #[arg(long, value_name = "DIR", display_order = 101)]
    out: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoints, with its config.toml (flags given here
    /// override it, e.g. a larger --epochs). Resumed runs end bit-identical to uninterrupted ones.
    #[arg(long, value_name = "DIR", display_order = 102)]
    resume: Option<PathBuf>,
    /// Read flags from a TOML file whose keys are these long flags (`lr = 0.1`); flags typed
    /// on the command line override it.
    #[arg(long, value_name = "FILE", display_order = 103)]
    config: Option<PathBuf>,
    /// No progress bars and no per-epoch lines; only the final summary.
    #[arg(long, display_order = 104)]
    quiet: bool,
    /// Check the flags and config, print the resolved configuration as TOML and exit without
    /// reading data or training.
    #[arg(long, display_order = 105)]
    dry_run: bool,
}

/// `command` with a flag on `train` for every configuration key, its help and default from the
/// training crate.
pub fn with_key_flags(command: Command) -> Command {
    let defaults = TrainConfig::default();
    command.mut_subcommand("train", |train| {
        train.args(ar_train::KEYS.iter().map(|key| {
            let mut help = key.help.trim_end_matches('.').to_string();
            if let (Some(d), false) = (defaults.text_of(key.name), key.kind == KeyKind::Switch) {
                help.push_str(&format!(" [default: {d}]"));
            }
            let arg = Arg::new(key.name).long(key.name).help(help);
            let arg = arg.value_name(key.name.to_uppercase().replace('-', "_"));
            let arg = match key.kind {
                KeyKind::Switch => arg.action(ArgAction::SetTrue),
                KeyKind::List => arg.value_delimiter(','),
                KeyKind::Number => arg.allow_negative_numbers(true),
                KeyKind::Text => arg,
            };
            match key.name {
                "backend" => arg
                    .help(format!(
                        "Tensor backend: ndarray (CPU), candle (CPU) or candle-cuda (GPU; needs a \
                         CUDA build) [default: {}]",
                        defaults.backend
                    ))
                    .value_parser(PossibleValuesParser::new(BackendName::NAMES)),
                "data-dir" => arg.value_name("DIR"),
                "conv-grad-clip" => arg.value_name("X"),
                _ if key.values.is_empty() => arg,
                _ => arg.value_parser(PossibleValuesParser::new(key.values)),
            }
        }))
    })
}

/// The run's configuration: the defaults, then the resumed run's config.toml, then --config's
/// file, then the keys typed on the command line. Fills `args` with the file's own flags.
fn resolve(args: &mut Args, typed: &ArgMatches) -> anyhow::Result<TrainConfig> {
    let mut config = TrainConfig::default();
    let files = [args.resume.as_ref().map(|d| d.join("config.toml")), args.config.clone()];
    for path in files.into_iter().flatten() {
        let usage = |message: String| UsageError(format!("{}: {message}", path.display()));
        let text = ar_train::read_config_text(&path).map_err(cli_error)?;
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| usage(ar_train::toml_error(&text, &e)))?;
        match table.remove("out") {
            Some(toml::Value::String(dir)) => args.out = args.out.take().or(Some(dir.into())),
            Some(_) => return Err(usage("key 'out': expected a path".into()).into()),
            None => {}
        }
        for (own, flag) in [("quiet", &mut args.quiet), ("dry-run", &mut args.dry_run)] {
            match table.remove(own) {
                Some(toml::Value::Boolean(b)) => *flag |= b,
                Some(_) => return Err(usage(format!("key '{own}': expected a boolean")).into()),
                None => {}
            }
        }
        config = config.overlay(table, &path).map_err(|e| UsageError(e.to_string()))?;
    }
    for key in ar_train::KEYS {
        if typed.value_source(key.name) == Some(ValueSource::CommandLine) {
            let text = match key.kind {
                KeyKind::Switch => "true".to_string(),
                _ => typed
                    .get_many::<String>(key.name)
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(","),
            };
            config.set(key.name, &text).map_err(cli_error)?;
        }
    }
    Ok(config)
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
pub fn run(mut args: Args, typed: &ArgMatches) -> anyhow::Result<ExitCode> {
    let config = resolve(&mut args, typed)?;
    config.validate().map_err(cli_error)?;
    if args.dry_run {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = config.threads {
        // Read by candle's thread pool when it starts, which is after this point.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let out = match (&args.resume, &args.out) {
        (Some(dir), _) | (None, Some(dir)) => dir.clone(),
        (None, None) => ar_train::timestamped_dir(&crate::repo_root().join("runs"), &config),
    };
    let backend = BackendName::parse(&config.backend).map_err(cli_error)?;
    dispatch(
        backend,
        config.precision,
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
        let signals = crate::signals::stop_on_signals(&session.stop_flag());
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
                return Ok(ExitCode::from(signals.exit_code()));
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
            Event::Probed { .. } => {}
        }
    }
}
