//! A network and its trainer behind handles that hide the backend: [`Model`] and [`Learner`],
//! taking and returning host data (`f64` slices, class labels).

use crate::{dispatch, BackendName, Job};
use ar_backend::{Backend, HostValues, Precision};
use ar_core::{count_correct, Loss, Network, StepOutcome, Trainer};
use ar_models::{load_checkpoint, save_checkpoint, TrainingState};
use ar_train::{probe, AlgorithmName, LayerProbe, TrainConfig, TrainError};
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

/// Named tensors on the host: `(name, shape, values)`, with PyTorch's names and layouts
/// (`layers.0.weight`, `[out, in]`), as [`Network::parameters`] gives them.
pub type Parameters = Vec<(String, Vec<usize>, Vec<f64>)>;

/// A network on a backend chosen at run time.
#[derive(Debug)]
pub struct Model {
    net: Box<dyn Net>,
    description: String,
}

/// An algorithm, loss and optimiser (with its state) training one [`Model`].
#[derive(Debug)]
pub struct Learner {
    inner: Box<dyn Learn>,
    config: TrainConfig,
    name: AlgorithmName,
    label: String,
}

/// What a [`Model`] does on its backend.
trait Net: Send + Sync + Debug {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn backend(&self) -> String;
    fn precision(&self) -> Precision;
    fn input_shape(&self) -> Vec<usize>;
    fn output_width(&self) -> usize;
    fn predict(&self, x: HostValues<'_>, n: usize) -> Result<Vec<f64>, TrainError>;
    fn parameters(&self) -> Parameters;
    fn load_parameters(&mut self, p: &Parameters) -> Result<(), TrainError>;
    fn learner(
        &mut self,
        config: &TrainConfig,
        name: AlgorithmName,
    ) -> Result<Box<dyn Learn>, TrainError>;
}

/// What a [`Learner`] does on its model's backend.
trait Learn: Send + Sync + Debug {
    fn step(
        &mut self,
        net: &mut dyn Any,
        x: HostValues<'_>,
        t: &[f64],
    ) -> Result<StepOutcome, TrainError>;
    fn gradients(
        &mut self,
        net: &dyn Any,
        x: HostValues<'_>,
        t: &[f64],
    ) -> Result<Parameters, TrainError>;
    fn probe(
        &self,
        net: &dyn Any,
        x: HostValues<'_>,
        t: &[f64],
    ) -> Result<Vec<LayerProbe>, TrainError>;
    fn save(
        &self,
        net: &dyn Any,
        path: &Path,
        state: TrainingState,
        meta: &BTreeMap<String, String>,
    ) -> Result<(), TrainError>;
    fn restore(
        &mut self,
        path: &Path,
        net: &mut dyn Any,
    ) -> Result<(TrainingState, BTreeMap<String, String>), TrainError>;
}

fn shape_error(message: String) -> TrainError {
    TrainError::Core(ar_core::CoreError::Shape(message))
}

/// `net` as the network type of backend `B`.
fn typed<B: Backend>(net: &dyn Any) -> Result<&Network<B>, TrainError> {
    net.downcast_ref()
        .ok_or_else(|| shape_error("this learner trains a model of another backend".into()))
}

fn typed_mut<B: Backend>(net: &mut dyn Any) -> Result<&mut Network<B>, TrainError> {
    net.downcast_mut()
        .ok_or_else(|| shape_error("this learner trains a model of another backend".into()))
}

/// The batch size of `x` for a network taking `width` values per sample.
fn batch_of(x: HostValues<'_>, width: usize) -> Result<usize, TrainError> {
    if width == 0 || x.is_empty() || !x.len().is_multiple_of(width) {
        return Err(shape_error(format!(
            "inputs of {} values are not a whole batch of samples of {width} values",
            x.len()
        )));
    }
    Ok(x.len() / width)
}

fn upload<B: Backend>(
    net: &Network<B>,
    x: HostValues<'_>,
    t: &[f64],
) -> Result<(B::Tensor, B::Tensor), TrainError> {
    let n = batch_of(x, net.input_width())?;
    Ok((net.upload_batch(x, n)?, net.upload_targets(t, n)?))
}

impl<B: Backend> Net for Network<B> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn backend(&self) -> String {
        self.backend().name()
    }
    fn precision(&self) -> Precision {
        self.backend().precision()
    }
    fn input_shape(&self) -> Vec<usize> {
        Network::input_shape(self).to_vec()
    }
    fn output_width(&self) -> usize {
        Network::output_width(self)
    }
    fn predict(&self, x: HostValues<'_>, n: usize) -> Result<Vec<f64>, TrainError> {
        let x = self.upload_batch(x, n)?;
        Ok(self.backend().to_host(&Network::predict(self, &x)))
    }
    fn parameters(&self) -> Parameters {
        Network::parameters(self)
    }
    fn load_parameters(&mut self, p: &Parameters) -> Result<(), TrainError> {
        Ok(Network::load_parameters(self, p)?)
    }
    fn learner(
        &mut self,
        config: &TrainConfig,
        name: AlgorithmName,
    ) -> Result<Box<dyn Learn>, TrainError> {
        Ok(Box::new(config.trainer(name, self)?))
    }
}

impl<B: Backend> Learn for Trainer<B> {
    fn step(
        &mut self,
        net: &mut dyn Any,
        x: HostValues<'_>,
        t: &[f64],
    ) -> Result<StepOutcome, TrainError> {
        let net = typed_mut::<B>(net)?;
        let (x, t) = upload(net, x, t)?;
        Ok(Trainer::step(self, net, &x, &t))
    }

    fn gradients(
        &mut self,
        net: &dyn Any,
        x: HostValues<'_>,
        t: &[f64],
    ) -> Result<Parameters, TrainError> {
        let net = typed::<B>(net)?;
        let (x, t) = upload(net, x, t)?;
        let (grads, _) = Trainer::gradients(self, net, &x, &t);
        let be = net.backend();
        let mut out = Vec::new();
        for (i, g) in grads.layers.iter().enumerate() {
            let Some(g) = g else { continue };
            let name = &net.names()[i];
            for (kind, t) in [
                ("weight", Some(&g.weight)),
                ("bias", Some(&g.bias)),
                ("feedback", g.feedback.as_ref()),
            ] {
                if let Some(t) = t {
                    out.push((format!("{name}.{kind}"), be.shape(t), be.to_host(t)));
                }
            }
        }
        Ok(out)
    }

    fn probe(
        &self,
        net: &dyn Any,
        x: HostValues<'_>,
        t: &[f64],
    ) -> Result<Vec<LayerProbe>, TrainError> {
        let net = typed::<B>(net)?;
        let (x, t) = upload(net, x, t)?;
        Ok(probe(net, self.algorithm(), self.loss(), &x, &t))
    }

    fn save(
        &self,
        net: &dyn Any,
        path: &Path,
        state: TrainingState,
        meta: &BTreeMap<String, String>,
    ) -> Result<(), TrainError> {
        Ok(save_checkpoint(path, typed::<B>(net)?, self.optimizer(), state, meta)?)
    }

    fn restore(
        &mut self,
        path: &Path,
        net: &mut dyn Any,
    ) -> Result<(TrainingState, BTreeMap<String, String>), TrainError> {
        let net = typed_mut::<B>(net)?;
        let c = load_checkpoint(path, net.backend())?;
        if c.net.output_shapes() != net.output_shapes() || c.net.input_shape() != net.input_shape()
        {
            return Err(TrainError::File {
                path: path.to_path_buf(),
                message: "the checkpoint's model does not match this model".into(),
            });
        }
        let (state, meta) = (c.state, c.metadata.clone());
        *net = c.restore_into(self.optimizer_mut())?;
        Ok((state, meta))
    }
}

/// Builds a config's network on the backend it names.
struct Build<'a> {
    config: &'a TrainConfig,
    input_shape: &'a [usize],
    classes: usize,
}

impl Job for Build<'_> {
    type Output = Result<Model, TrainError>;
    fn run<B: Backend>(self, be: B) -> Self::Output {
        let (spec, net) = self.config.network(self.input_shape, self.classes, be)?;
        Ok(Model { net: Box::new(net), description: spec.to_string() })
    }
}

/// Reads a checkpoint's network onto the backend it names.
struct Load<'a>(&'a Path);

impl Job for Load<'_> {
    type Output = Result<(Model, BTreeMap<String, String>), TrainError>;
    fn run<B: Backend>(self, be: B) -> Self::Output {
        let c = load_checkpoint(self.0, &be)?;
        let description = format!("{} layers from {}", c.net.depth(), self.0.display());
        Ok((Model { net: Box::new(c.net), description }, c.metadata))
    }
}

impl Model {
    /// The model `config` describes (its keys `model`, `hidden-activation`,
    /// `output-activation`, `init`, `init-std`, `seed`, `backend`, `precision`) for inputs of
    /// `input_shape` in `classes` classes, freshly initialised, as a run would start it.
    pub fn new(
        config: &TrainConfig,
        input_shape: &[usize],
        classes: usize,
    ) -> Result<Model, TrainError> {
        let backend = BackendName::parse(&config.backend)?;
        dispatch(backend, config.precision, Build { config, input_shape, classes })?
    }

    /// The network of a checkpoint (any the command line writes), on `backend` in `precision`,
    /// and the checkpoint's metadata (its `config`, `algorithm`, ...).
    pub fn load(
        path: &Path,
        backend: BackendName,
        precision: Precision,
    ) -> Result<(Model, BTreeMap<String, String>), TrainError> {
        dispatch(backend, precision, Load(path))?
    }

    /// What the model is (its spec, or where it was read from).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The backend's name and device.
    pub fn backend(&self) -> String {
        self.net.backend()
    }

    /// The backend's precision.
    pub fn precision(&self) -> Precision {
        self.net.precision()
    }

    /// The shape of one input sample.
    pub fn input_shape(&self) -> Vec<usize> {
        self.net.input_shape()
    }

    /// Values per input sample.
    pub fn input_width(&self) -> usize {
        self.net.input_shape().iter().product()
    }

    /// Outputs per sample (one per class).
    pub fn output_width(&self) -> usize {
        self.net.output_width()
    }

    /// The outputs for inputs `x` (row-major, a whole number of samples), row-major
    /// `[samples, outputs]`.
    pub fn predict<'x>(&self, x: impl Into<HostValues<'x>>) -> Result<Vec<f64>, TrainError> {
        let x = x.into();
        let n = batch_of(x, self.input_width())?;
        self.net.predict(x, n)
    }

    /// One-hot targets of `labels`, each checked against the model's outputs.
    pub fn one_hot(&self, labels: &[usize]) -> Result<Vec<f64>, TrainError> {
        let classes = self.output_width();
        let mut t = vec![0.0; labels.len() * classes];
        for (i, &l) in labels.iter().enumerate() {
            if l >= classes {
                return Err(shape_error(format!(
                    "label {l} of sample {i} is not below the model's {classes} classes"
                )));
            }
            t[i * classes + l] = 1.0;
        }
        Ok(t)
    }

    /// The mean `loss` and the accuracy on inputs `x` with `labels`, in batches of 256.
    pub fn evaluate<'x>(
        &self,
        x: impl Into<HostValues<'x>>,
        labels: &[usize],
        loss: Loss,
    ) -> Result<(f64, f64), TrainError> {
        let x = x.into();
        let (width, classes) = (self.input_width(), self.output_width());
        if x.len() != labels.len() * width || labels.is_empty() {
            return Err(shape_error(format!(
                "{} labels need {} input values ({width} per sample), got {}",
                labels.len(),
                labels.len() * width,
                x.len()
            )));
        }
        let (mut loss_sum, mut correct) = (0.0, 0);
        for (k, ls) in labels.chunks(256).enumerate() {
            let xs = x.slice(k * 256 * width..(k * 256 + ls.len()) * width);
            let t = self.one_hot(ls)?;
            let out = self.net.predict(xs, ls.len())?;
            loss_sum += loss.value(&out, &t, classes) * ls.len() as f64;
            correct += count_correct(&out, &t, classes);
        }
        let n = labels.len() as f64;
        Ok((loss_sum / n, correct as f64 / n))
    }

    /// Every parameter tensor ([`Network::parameters`]).
    pub fn parameters(&self) -> Parameters {
        self.net.parameters()
    }

    /// Replaces parameters by name ([`Network::load_parameters`]); nothing changes on error.
    pub fn load_parameters(&mut self, params: &Parameters) -> Result<(), TrainError> {
        self.net.load_parameters(params)
    }
}

impl Learner {
    /// The learner of algorithm `name` under `config` (its algorithm, variant, relaxation, loss
    /// and optimiser keys) for `model`, which it prepares as a run does (backward weights drawn
    /// where the algorithm needs them, convolution biases zeroed under `no-conv-bias`).
    pub fn new(
        model: &mut Model,
        config: &TrainConfig,
        name: AlgorithmName,
    ) -> Result<Learner, TrainError> {
        config.validate_settings()?;
        let inner = model.net.learner(config, name)?;
        let label = config.algorithm(name).to_string();
        Ok(Learner { inner, config: config.clone(), name, label })
    }

    /// The config it was made with.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The algorithm.
    pub fn algorithm(&self) -> AlgorithmName {
        self.name
    }

    /// The algorithm's label (`ar`, `bp`, `ar+learned`, ...), as runs name its rows.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// One training step on inputs `x` (row-major) with `labels`: the loss and correct count
    /// before the update, and the relaxation's statistics.
    pub fn step<'x>(
        &mut self,
        model: &mut Model,
        x: impl Into<HostValues<'x>>,
        labels: &[usize],
    ) -> Result<StepOutcome, TrainError> {
        let x = x.into();
        let t = model.one_hot(labels)?;
        self.inner.step(model.net.as_any_mut(), x, &t)
    }

    /// The update this algorithm computes for one batch, not applied: per weighted layer
    /// `{name}.weight` and `{name}.bias` (and `{name}.feedback` for learned backward weights),
    /// the gradient of the batch-mean loss as the algorithm estimates it (exact for backprop
    /// and exact AR).
    pub fn gradients<'x>(
        &mut self,
        model: &Model,
        x: impl Into<HostValues<'x>>,
        labels: &[usize],
    ) -> Result<Parameters, TrainError> {
        let x = x.into();
        let t = model.one_hot(labels)?;
        self.inner.gradients(model.net.as_any(), x, &t)
    }

    /// Per weighted layer, the angle and relative error of this algorithm's update to the
    /// exact gradient on one batch (the probes a run records).
    pub fn probe<'x>(
        &self,
        model: &Model,
        x: impl Into<HostValues<'x>>,
        labels: &[usize],
    ) -> Result<Vec<LayerProbe>, TrainError> {
        let x = x.into();
        let t = model.one_hot(labels)?;
        self.inner.probe(model.net.as_any(), x, &t)
    }

    /// Writes `model` and this learner's optimiser state as a checkpoint of the command line's
    /// format (config and algorithm label in its header, checksums included), `state` saying
    /// where training stands.
    pub fn save(&self, model: &Model, path: &Path, state: TrainingState) -> Result<(), TrainError> {
        let mut meta = BTreeMap::new();
        meta.insert("config".to_string(), self.config.to_toml());
        meta.insert("algorithm".to_string(), self.label.clone());
        meta.insert("dataset".to_string(), self.config.dataset.clone());
        self.inner.save(model.net.as_any(), path, state, &meta)
    }

    /// Replaces `model`'s parameters and this learner's optimiser state with a checkpoint's
    /// (written by [`Learner::save`] or a run with the same model and optimiser); returns where
    /// training stood and the checkpoint's metadata.
    pub fn restore(
        &mut self,
        model: &mut Model,
        path: &Path,
    ) -> Result<(TrainingState, BTreeMap<String, String>), TrainError> {
        self.inner.restore(path, model.net.as_any_mut())
    }
}
