//! A training session: the algorithms of one run trained side by side from identical weights
//! and batch order, epoch by epoch, with evaluation, gradient probes, a divergence stop,
//! checkpoints after every epoch and on request, and exact resume (mid-epoch included).

use crate::probe::{probe, LayerProbe, ProbeRow};
use crate::rundir::{RunDir, METRICS_COLUMNS, PROBES_COLUMNS};
use crate::{evaluate, upload, Data, TrainConfig, TrainError};
use ar_backend::Backend;
use ar_core::{Network, Trainer};
use ar_data::BatchOrder;
use ar_models::{load_checkpoint, save_checkpoint, ModelSpec, TrainingState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One epoch of one algorithm (a row of `metrics.*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// The algorithm's label.
    pub algorithm: String,
    /// The epoch (1-based).
    pub epoch: usize,
    /// Mean loss over the epoch's batches, each measured before its update.
    pub train_loss: f64,
    /// Fraction of the epoch's samples classified right before their batch's update.
    pub train_accuracy: f64,
    /// Mean loss on the test set after the epoch.
    pub test_loss: f64,
    /// Test accuracy after the epoch.
    pub test_accuracy: f64,
    /// Wall time of the epoch's training, seconds (for a resumed epoch: since the resume).
    pub seconds: f64,
    /// Training samples per second.
    pub samples_per_second: f64,
}

/// Sums over the batches of the epoch under way; stored in checkpoints for mid-epoch resume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Partial {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    /// Seconds trained in this epoch before the last stop (absent in older checkpoints).
    #[serde(default)]
    seconds: f64,
}

/// One algorithm being trained: its network, trainer, progress and history.
#[derive(Debug)]
pub struct Trainee<B: Backend> {
    /// The algorithm's label (`ar`, `bp`, `ar+learned`, ...), naming its rows and checkpoint.
    pub label: String,
    /// The network.
    pub net: Network<B>,
    /// The algorithm, loss and optimiser with its state.
    pub trainer: Trainer<B>,
    /// Where training stands.
    pub state: TrainingState,
    /// Every finished epoch's metrics, resumed ones included.
    pub history: Vec<EpochMetrics>,
    /// Training wall time spent by this process, seconds.
    pub seconds: f64,
    /// Training steps taken by this process.
    pub steps_run: u64,
    partial: Partial,
    checkpoint: PathBuf,
}

impl<B: Backend> Trainee<B> {
    /// The checkpoint file.
    pub fn checkpoint(&self) -> &Path {
        &self.checkpoint
    }
}

/// What a session reports while it runs.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// An algorithm starts (or continues, after `done` batches) an epoch of `batches` batches.
    EpochStarted {
        /// The algorithm's label.
        label: &'a str,
        /// The epoch (1-based).
        epoch: usize,
        /// Batches in the epoch.
        batches: usize,
        /// Batches already done (non-zero when resuming mid-epoch).
        done: usize,
    },
    /// A training step finished.
    Batch {
        /// The algorithm's label.
        label: &'a str,
        /// The epoch (1-based).
        epoch: usize,
        /// Batches done in this epoch.
        batch: usize,
        /// Training steps since the start of the run.
        step: u64,
        /// Mean training loss over the epoch so far.
        loss: f64,
        /// Training accuracy over the epoch so far.
        accuracy: f64,
        /// Samples per second since the epoch (or the resume) began.
        samples_per_second: f64,
    },
    /// The gradient-alignment probes of one step were measured (and appended to `probes.*`).
    Probed {
        /// The algorithm's label.
        label: &'a str,
        /// The training step.
        step: u64,
        /// One measurement per weighted layer.
        probes: &'a [LayerProbe],
    },
    /// An algorithm finished an epoch and was evaluated; its checkpoint is written.
    EpochFinished(&'a EpochMetrics),
    /// Every algorithm finished epoch `epoch`; the plots are redrawn.
    EpochsDone {
        /// The epoch (1-based).
        epoch: usize,
    },
}

/// Receives a session's [`Event`]s (progress bars, logs). Closures taking an `Event` are
/// observers; [`Silent`] ignores everything.
pub trait Observer {
    /// Called for each event, in order, on the training thread.
    fn event(&mut self, event: Event<'_>);
}

impl<F: FnMut(Event<'_>)> Observer for F {
    fn event(&mut self, event: Event<'_>) {
        self(event)
    }
}

/// An observer that ignores every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&mut self, _: Event<'_>) {}
}

/// How a call to [`Session::run`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every algorithm trained every epoch.
    Finished,
    /// The stop flag was raised; every algorithm's checkpoint holds where it stood, and
    /// [`Session::resume`] continues from there.
    Stopped,
    /// An algorithm's loss stopped being finite; training stopped. The last checkpoints
    /// (written at the end of the last full epoch) are kept.
    Diverged {
        /// The algorithm's label.
        label: String,
        /// The epoch (1-based).
        epoch: usize,
        /// The batch in the epoch (1-based).
        batch: usize,
        /// Training steps taken, the failing one included.
        step: u64,
        /// The loss.
        loss: f64,
        /// The last good checkpoint, if one was written.
        checkpoint: Option<PathBuf>,
    },
}

/// A run: its config, data, directory and one [`Trainee`] per algorithm.
#[derive(Debug)]
pub struct Session<B: Backend> {
    config: TrainConfig,
    model: ModelSpec,
    data: Data,
    dir: RunDir,
    trainees: Vec<Trainee<B>>,
    stop: Arc<AtomicBool>,
    resumed: bool,
}

impl<B: Backend> Session<B> {
    /// Starts a run in directory `dir` (created if needed; refused if it already holds a run):
    /// reads the data, builds the model and one trainer per algorithm, writes `config.toml`.
    pub fn create(
        dir: impl AsRef<Path>,
        config: TrainConfig,
        backend: B,
    ) -> Result<Self, TrainError> {
        Self::open(dir.as_ref(), config, None, backend, false)
    }

    /// [`Session::create`] on data held in memory (such as arrays from Python) instead of the
    /// data set the config names; the config's `dataset` key then only labels the run.
    pub fn create_with_data(
        dir: impl AsRef<Path>,
        config: TrainConfig,
        data: Data,
        backend: B,
    ) -> Result<Self, TrainError> {
        Self::open(dir.as_ref(), config, Some(data), backend, false)
    }

    /// [`Session::resume_with`] for a run on data held in memory: `data` must be the data the
    /// run started with.
    pub fn resume_with_data(
        dir: impl AsRef<Path>,
        config: TrainConfig,
        data: Data,
        backend: B,
    ) -> Result<Self, TrainError> {
        Self::open(dir.as_ref(), config, Some(data), backend, true)
    }

    /// Continues the run in `dir` with the config it was started with.
    pub fn resume(dir: impl AsRef<Path>, backend: B) -> Result<Self, TrainError> {
        let dir = dir.as_ref();
        let config = TrainConfig::read(&Self::config_file(dir)?)?;
        Self::resume_with(dir, config, backend)
    }

    /// Continues the run in `dir` under `config` (its own config with changes such as more
    /// epochs; changing the model, data or algorithms makes the checkpoints not fit). Each
    /// algorithm continues from its checkpoint, mid-epoch where it was stopped mid-epoch, or
    /// starts afresh if it has none yet; rows of `metrics.*` and `probes.*` written after a
    /// checkpoint (by a process that was killed) are dropped, so the tables match the
    /// checkpoints and the run ends as an uninterrupted one would.
    pub fn resume_with(
        dir: impl AsRef<Path>,
        config: TrainConfig,
        backend: B,
    ) -> Result<Self, TrainError> {
        Self::open(dir.as_ref(), config, None, backend, true)
    }

    fn config_file(dir: &Path) -> Result<PathBuf, TrainError> {
        let file = dir.join("config.toml");
        if !file.is_file() {
            return Err(TrainError::RunDir(format!(
                "{}: no config.toml there; is it a run directory?",
                dir.display()
            )));
        }
        Ok(file)
    }

    /// Refuses a directory that holds a run (starting) or none (resuming), reads the data and
    /// checks the model before touching the directory, then locks it and
    /// sets up (or restores) every trainee.
    fn open(
        path: &Path,
        config: TrainConfig,
        data: Option<Data>,
        be: B,
        resuming: bool,
    ) -> Result<Self, TrainError> {
        if resuming {
            Self::config_file(path)?;
        } else if path.join("config.toml").exists() {
            return Err(TrainError::RunDir(format!(
                "{} already holds a run: resume it, or choose another directory",
                path.display()
            )));
        }
        if config.precision != be.precision() {
            return Err(TrainError::Config {
                key: "precision".into(),
                message: format!(
                    "{}: the config says {} but the backend handed to the session, {}, computes \
                     in {} (the run would record one precision and train in the other)",
                    config.precision,
                    config.precision,
                    be.name(),
                    be.precision()
                ),
            });
        }
        let data = match data {
            Some(data) => {
                config.validate_settings()?;
                data
            }
            None => {
                config.validate()?;
                config.load_data()?
            }
        };
        let (spec, first) =
            config.network(&data.train.shape, data.train.num_classes, be.clone())?;
        let dir = RunDir::open(path)?;
        let batches = data.train.len().div_ceil(config.batch_size);
        let mut trainees = Vec::new();
        for &name in &config.algorithms {
            let algorithm = config.algorithm(name);
            let label = algorithm.to_string();
            let checkpoint = dir.checkpoint(&label);
            let mut net = first.clone();
            let mut trainer = config.trainer(name, &mut net)?;
            let mut state = TrainingState { epochs_done: 0, batches_done: 0 };
            let mut partial = Partial::default();
            if resuming && checkpoint.exists() {
                let c = load_checkpoint(&checkpoint, &be)?;
                if c.net.output_shapes() != net.output_shapes()
                    || c.net.input_shape() != net.input_shape()
                {
                    return Err(TrainError::File {
                        path: checkpoint,
                        message: "the checkpoint's model does not match the run's config".into(),
                    });
                }
                if let Some(p) = c.metadata.get("partial_epoch") {
                    partial = serde_json::from_str(p).map_err(|e| TrainError::File {
                        path: checkpoint.clone(),
                        message: format!("bad partial_epoch: {e}"),
                    })?;
                }
                state = c.state;
                net = c.restore_into(trainer.optimizer_mut())?;
            }
            trainees.push(Trainee {
                label,
                net,
                trainer,
                state,
                history: Vec::new(),
                seconds: 0.0,
                steps_run: 0,
                partial,
                checkpoint,
            });
        }
        // Rows past a trainee's checkpoint were written by a process that died after them.
        let index = |r: &serde_json::Value| {
            let label = r.get("algorithm").and_then(|a| a.as_str());
            trainees.iter().position(|t| Some(t.label.as_str()) == label)
        };
        let num = |r: &serde_json::Value, key: &str| r.get(key).and_then(|v| v.as_f64());
        let state = |i: usize| trainees[i].state;
        dir.retain("metrics", &METRICS_COLUMNS, |r| {
            index(r).is_none_or(|i| num(r, "epoch") <= Some(state(i).epochs_done as f64))
        })?;
        dir.retain("probes", &PROBES_COLUMNS, |r| {
            index(r).is_none_or(|i| {
                let s = state(i);
                num(r, "step") <= Some((s.epochs_done * batches + s.batches_done) as f64)
            })
        })?;
        let mut history: Vec<Vec<EpochMetrics>> = vec![Vec::new(); trainees.len()];
        for row in dir.rows("metrics") {
            if let Some(i) = index(&row) {
                history[i].extend(serde_json::from_value(row).ok());
            }
        }
        for (t, h) in trainees.iter_mut().zip(history) {
            t.history = h;
        }
        let file = dir.path().join("config.toml");
        ar_models::write_atomically(&file, config.to_toml().as_bytes())?;
        Ok(Session {
            config,
            model: spec,
            data,
            dir,
            trainees,
            stop: Arc::new(AtomicBool::new(false)),
            resumed: resuming,
        })
    }

    /// The run's config.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model the algorithms train.
    pub fn model(&self) -> &ModelSpec {
        &self.model
    }

    /// The training and test data.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether this session continues an earlier one.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// A few lines saying what the session trains: data, model, loss, optimiser, backend, each
    /// algorithm, the run directory, and where a resumed run continues.
    pub fn describe(&self) -> String {
        let (c, train, test) = (&self.config, &self.data.train, &self.data.test);
        let backend = self.trainees.first().map_or(String::new(), |t| t.net.backend().name());
        let [ch, h, w] = train.shape;
        let mut s = format!(
            "data: {} ({} train / {} test, {ch}x{h}x{w}), model: {}, loss: {}, batch {}, {} lr {}, \
             seed {}, backend {backend}\n",
            train.name,
            train.len(),
            test.len(),
            self.model,
            c.loss,
            c.batch_size,
            c.optimizer,
            c.lr,
            c.seed,
        );
        for t in &self.trainees {
            let algorithm = t.trainer.algorithm();
            let line = match ar_core::solver_on(&t.net, algorithm) {
                Some(solver) => algorithm.describe_with_solver(solver),
                None => algorithm.describe(),
            };
            s.push_str(&format!("  {}: {line}\n", t.label));
        }
        s.push_str(&format!("run directory: {}\n", self.dir().display()));
        if let (true, Some(t)) = (self.resumed, self.trainees.first()) {
            let (e, b) = (t.state.epochs_done, t.state.batches_done);
            s.push_str(&format!("resuming after epoch {e} and {b} batches of the next\n"));
        }
        s
    }

    /// Each algorithm's test accuracy now and its training time, one line each.
    pub fn summary(&self) -> Result<String, TrainError> {
        let width = self.trainees.iter().map(|t| t.label.len()).max().unwrap_or(2);
        let (test, norm) = (&self.data.test, &self.data.normalization);
        let mut s = String::new();
        for t in &self.trainees {
            let (_, acc) = crate::evaluate(&t.net, test, norm, t.trainer.loss())?;
            let per_batch = match t.steps_run {
                0 => String::new(),
                n => format!(" ({:.2} ms per batch)", 1e3 * t.seconds / n as f64),
            };
            let (label, acc, secs) = (&t.label, 100.0 * acc, t.seconds);
            s.push_str(&format!(
                "  {label:<width$} {acc:6.2}%   {secs:.2} s training{per_batch}\n"
            ));
        }
        Ok(s)
    }

    /// The algorithms being trained, in the config's order.
    pub fn trainees(&self) -> &[Trainee<B>] {
        &self.trainees
    }

    /// The flag that stops [`Session::run`] after the step under way (checkpoints are written
    /// first). Raise it from a signal handler, another thread or an observer. It stays raised
    /// after `run` returns [`Outcome::Stopped`] (one flag may stop several sessions): lower it
    /// (`store(false)`) before running the same session again.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Makes `flag` this session's stop flag (one flag can stop every session of a sweep).
    pub fn share_stop_flag(&mut self, flag: Arc<AtomicBool>) {
        self.stop = flag;
    }

    /// Raises (or lowers, down to the epochs already done) the number of epochs to train, as
    /// resuming with a larger `epochs` would; the run's `config.toml` is rewritten.
    pub fn set_epochs(&mut self, epochs: usize) -> Result<(), TrainError> {
        let done = self.trainees.iter().map(|t| t.state.epochs_done).max().unwrap_or(0);
        if epochs == 0 || epochs < done {
            return Err(TrainError::Config {
                key: "epochs".into(),
                message: format!("{epochs}: must be at least 1 and at least the {done} done"),
            });
        }
        self.config.epochs = Some(epochs);
        let file = self.dir.path().join("config.toml");
        ar_models::write_atomically(&file, self.config.to_toml().as_bytes())?;
        Ok(())
    }

    /// Whether every algorithm has trained every epoch.
    pub fn is_finished(&self) -> bool {
        self.trainees.iter().all(|t| t.state.epochs_done >= self.config.epochs())
    }

    /// Trains until every algorithm has done every epoch, the stop flag is raised, or a loss
    /// diverges; reports progress to `observer`.
    pub fn run(&mut self, observer: &mut impl Observer) -> Result<Outcome, TrainError> {
        while !self.is_finished() {
            if let Some(outcome) = self.run_epoch(observer)? {
                return Ok(outcome);
            }
        }
        Ok(Outcome::Finished)
    }

    /// Trains the next epoch (every algorithm that has not finished it, from where it stands),
    /// evaluates, writes checkpoints, metrics and plots. `None` when the epoch finished (or
    /// every epoch already had); `Some` when the stop flag was raised or a loss diverged.
    /// [`Session::run`] is this in a loop; a caller may drive it epoch by epoch instead.
    pub fn run_epoch(
        &mut self,
        observer: &mut impl Observer,
    ) -> Result<Option<Outcome>, TrainError> {
        let epochs = self.config.epochs();
        let batch_size = self.config.batch_size;
        let train = &self.data.train;
        let norm = &self.data.normalization;
        let probe_batch: Vec<usize> = (0..batch_size.min(train.len())).collect();
        let batches = train.len().div_ceil(batch_size);
        let epoch = self.trainees.iter().map(|t| t.state.epochs_done).min().unwrap_or(epochs);
        if epoch >= epochs {
            return Ok(None);
        }
        if self.stop.load(Ordering::SeqCst) {
            return Ok(Some(Outcome::Stopped));
        }
        let order = BatchOrder::shuffled(train.len(), batch_size, self.config.seed, epoch as u64);
        for t in &mut self.trainees {
            if t.state.epochs_done > epoch {
                continue;
            }
            let label = t.label.as_str();
            observer.event(Event::EpochStarted {
                label,
                epoch: epoch + 1,
                batches,
                done: t.state.batches_done,
            });
            let start = Instant::now();
            let (mut samples, mut stopped) = (0usize, false);
            for (bi, batch) in order.batches().enumerate().skip(t.state.batches_done) {
                let (x, y) = upload(&t.net, train, batch, norm)?;
                let outcome = t.trainer.step(&mut t.net, &x, &y);
                let step = (epoch * batches + bi + 1) as u64;
                if !outcome.loss.is_finite() {
                    t.seconds += start.elapsed().as_secs_f64();
                    return Ok(Some(Outcome::Diverged {
                        label: t.label.clone(),
                        epoch: epoch + 1,
                        batch: bi + 1,
                        step,
                        loss: outcome.loss,
                        checkpoint: t.checkpoint.exists().then(|| t.checkpoint.clone()),
                    }));
                }
                t.partial.loss_sum += outcome.loss * batch.len() as f64;
                t.partial.correct += outcome.correct;
                t.partial.seen += batch.len();
                t.state.batches_done = bi + 1;
                t.steps_run += 1;
                samples += batch.len();
                if self.config.probe_every > 0
                    && step.is_multiple_of(self.config.probe_every as u64)
                {
                    let (px, py) = upload(&t.net, train, &probe_batch, norm)?;
                    let algorithm = *t.trainer.algorithm();
                    let probes = probe(&t.net, &algorithm, t.trainer.loss(), &px, &py);
                    for &probe in &probes {
                        let row =
                            ProbeRow { algorithm: t.label.clone(), step, epoch: epoch + 1, probe };
                        self.dir.append("probes", &PROBES_COLUMNS, &row)?;
                    }
                    observer.event(Event::Probed { label: &t.label, step, probes: &probes });
                }
                let seen = t.partial.seen.max(1) as f64;
                observer.event(Event::Batch {
                    label: &t.label,
                    epoch: epoch + 1,
                    batch: bi + 1,
                    step,
                    loss: t.partial.loss_sum / seen,
                    accuracy: t.partial.correct as f64 / seen,
                    samples_per_second: samples as f64 / start.elapsed().as_secs_f64().max(1e-9),
                });
                if self.stop.load(Ordering::SeqCst) {
                    stopped = true;
                    break;
                }
            }
            let seconds = start.elapsed().as_secs_f64();
            t.seconds += seconds;
            // An epoch's time counts every stretch of it, across stops and resumes.
            t.partial.seconds += seconds;
            if stopped {
                break;
            }
            let seconds = t.partial.seconds;
            let (test_loss, test_accuracy) =
                evaluate(&t.net, &self.data.test, norm, t.trainer.loss())?;
            let seen = t.partial.seen.max(1) as f64;
            let m = EpochMetrics {
                algorithm: t.label.clone(),
                epoch: epoch + 1,
                train_loss: t.partial.loss_sum / seen,
                train_accuracy: t.partial.correct as f64 / seen,
                test_loss,
                test_accuracy,
                seconds,
                samples_per_second: t.partial.seen as f64 / seconds.max(1e-9),
            };
            t.state = TrainingState { epochs_done: epoch + 1, batches_done: 0 };
            t.partial = Partial::default();
            save(t, &self.config)?;
            self.dir.append("metrics", &METRICS_COLUMNS, &m)?;
            observer.event(Event::EpochFinished(&m));
            t.history.push(m);
        }
        if self.stop.load(Ordering::SeqCst) {
            // Trainees at an epoch boundary were saved when they finished it.
            for t in self.trainees.iter().filter(|t| t.state.batches_done > 0) {
                save(t, &self.config)?;
            }
            return Ok(Some(Outcome::Stopped));
        }
        self.dir.write_plots()?;
        observer.event(Event::EpochsDone { epoch: epoch + 1 });
        Ok(None)
    }
}

/// Writes a trainee's checkpoint: network, optimiser state, training state, the run's config,
/// the algorithm's label and the partial sums of the epoch under way.
fn save<B: Backend>(t: &Trainee<B>, config: &TrainConfig) -> Result<(), TrainError> {
    let mut meta = BTreeMap::new();
    meta.insert("config".to_string(), config.to_toml());
    meta.insert("algorithm".to_string(), t.label.clone());
    meta.insert("dataset".to_string(), config.dataset.clone());
    meta.insert(
        "partial_epoch".to_string(),
        serde_json::to_string(&t.partial).expect("serialises"),
    );
    save_checkpoint(&t.checkpoint, &t.net, t.trainer.optimizer(), t.state, &meta)?;
    Ok(())
}
