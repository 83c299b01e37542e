//! The Python module `arrs._arrs` (re-exported as `arrs`): the engine crate's models, learners
//! and training runs, taking and giving numpy arrays; docs/python.md is its guide.
//!
//! Every call that computes releases the GIL; every engine error becomes a Python exception
//! carrying the engine's message (`ValueError` for bad arguments, `OSError` for files,
//! `RuntimeError` for the rest), and a panic becomes a `RuntimeError`, never an abort.

use ar_backend::{HostValues, Precision};
use ar_data::{Dataset, Normalization, Samples};
use ar_engine::{BackendName, Learner, Model as EngineModel, TrainRequest};
use ar_models::TrainingState;
use ar_train::sweep::{on_callers_pool, with_threads};
use ar_train::{AlgorithmName, Data, Event, Outcome, TrainConfig, TrainError, KEYS};
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods, ToPyArray};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The keys that describe a model (the rest describe how it is trained).
const MODEL_KEYS: &[&str] = &[
    "model",
    "hidden-activation",
    "output-activation",
    "init",
    "init-std",
    "seed",
    "backend",
    "precision",
];

/// Keys of a whole run, which a single `Trainer` has no use for.
const RUN_KEYS: &[&str] = &[
    "dataset",
    "data-dir",
    "test-fraction",
    "epochs",
    "batch-size",
    "probe-every",
    "threads",
    "algorithms",
];

/// An engine error as the Python exception its kind calls for.
fn py_error(e: TrainError) -> PyErr {
    let message = match &e {
        TrainError::Config { key, message } => format!("{}: {message}", key.replace('-', "_")),
        e => e.to_string(),
    };
    let file = matches!(
        e,
        TrainError::Io { .. }
            | TrainError::File { .. }
            | TrainError::Locked { .. }
            | TrainError::Model(ar_models::ModelError::Checkpoint { .. })
            | TrainError::Data(ar_data::DataError::Io { .. })
    );
    let argument = e.is_usage()
        || matches!(
            e,
            TrainError::Core(_)
                | TrainError::Model(_)
                | TrainError::Data(ar_data::DataError::Invalid(_))
        );
    if file {
        PyOSError::new_err(message)
    } else if argument {
        PyValueError::new_err(message)
    } else {
        PyRuntimeError::new_err(message)
    }
}

/// A panic caught in the engine, as a `RuntimeError`.
fn panic_error(panic: Box<dyn std::any::Any + Send>) -> PyErr {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    PyRuntimeError::new_err(format!("internal error in the engine: {what}"))
}

/// Runs `f` without the GIL on the calling thread, as worker 0 of its own rayon pool
/// (`ar_train::sweep::on_callers_pool`: no hand-off per call, none per parallel kernel); a
/// panic inside becomes a `RuntimeError`.
fn compute<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, TrainError> + Send,
) -> PyResult<T> {
    py.detach(|| catch_unwind(AssertUnwindSafe(|| on_callers_pool(f))))
        .map_err(panic_error)?
        .map_err(py_error)
}

/// A Python value as the TOML value of config key `key`.
fn toml_value(key: &str, v: &Bound<'_, PyAny>) -> PyResult<Option<toml::Value>> {
    if v.is_none() {
        return Ok(None);
    }
    let value = if let Ok(b) = v.extract::<bool>() {
        toml::Value::Boolean(b)
    } else if let Ok(i) = v.extract::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(x) = v.extract::<f64>() {
        toml::Value::Float(x)
    } else if let Ok(s) = v.extract::<String>() {
        match KEYS.iter().find(|k| k.name == key).map(|k| k.kind) {
            Some(ar_train::KeyKind::List) => toml::Value::Array(
                s.split(',').map(|p| toml::Value::String(p.trim().into())).collect(),
            ),
            _ => toml::Value::String(s),
        }
    } else if let Ok(items) = v.extract::<Vec<String>>() {
        toml::Value::Array(items.into_iter().map(toml::Value::String).collect())
    } else {
        let name = key.replace('-', "_");
        let ty = v.get_type().name()?;
        return Err(PyTypeError::new_err(format!(
            "{name}: expected a bool, number, string or list of strings, got {ty}"
        )));
    };
    Ok(Some(value))
}

/// `base` with the keyword arguments `keys` (snake_case config keys) applied; `allowed` says
/// which keys this call takes (`None`: all), `what` names the call in errors.
fn with_keys(
    base: &TrainConfig,
    keys: Option<&Bound<'_, PyDict>>,
    allowed: impl Fn(&str) -> Result<(), String>,
) -> PyResult<TrainConfig> {
    let mut table = toml::Table::new();
    for (k, v) in keys.into_iter().flat_map(|d| d.iter()) {
        let name: String = k.extract()?;
        let key = name.replace('_', "-");
        if !KEYS.iter().any(|k| k.name == key) {
            return Err(PyValueError::new_err(format!(
                "unknown key '{name}' (the keys are the config keys of `cargo xtask train` with \
                 '_' for '-': {})",
                KEYS.iter().map(|k| k.name.replace('-', "_")).collect::<Vec<_>>().join(", ")
            )));
        }
        allowed(&key).map_err(|why| PyValueError::new_err(format!("{name}: {why}")))?;
        if let Some(value) = toml_value(&key, &v)? {
            table.insert(key, value);
        }
    }
    base.with_keys(table).map_err(py_error)
}

/// A float array's values in its own width: the numpy buffer itself where it is C-contiguous
/// (held read-only while the engine reads it), a copy otherwise. An f32 model takes float32
/// input as it is, with no f64 copy.
enum Floats<'py> {
    Borrowed(PyReadonlyArrayDyn<'py, f64>),
    Borrowed32(PyReadonlyArrayDyn<'py, f32>),
    Owned(Vec<f64>),
    Owned32(Vec<f32>),
}

impl Floats<'_> {
    fn values(&self) -> HostValues<'_> {
        const CHECKED: &str = "checked to be contiguous";
        match self {
            Floats::Borrowed(r) => HostValues::F64(r.as_slice().expect(CHECKED)),
            Floats::Borrowed32(r) => HostValues::F32(r.as_slice().expect(CHECKED)),
            Floats::Owned(v) => HostValues::F64(v),
            Floats::Owned32(v) => HostValues::F32(v),
        }
    }

    /// The values widened to f64.
    fn into_vec(self) -> Vec<f64> {
        match self {
            Floats::Owned(v) => v,
            other => match other.values() {
                HostValues::F64(v) => v.to_vec(),
                HostValues::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            },
        }
    }

    /// The values as samples of their own width.
    fn into_samples(self) -> Samples {
        match self {
            Floats::Owned(v) => Samples::F64(v),
            Floats::Owned32(v) => Samples::F32(v),
            other => match other.values() {
                HostValues::F64(v) => Samples::F64(v.to_vec()),
                HostValues::F32(v) => Samples::F32(v.to_vec()),
            },
        }
    }
}

/// The index of the first value that is not `finite` (in the model's precision). Blocks folded
/// without an early exit vectorise, where a `position` scan over the whole batch does not; the
/// position is looked for only in a block holding such a value.
fn first_non_finite<T: Copy>(v: &[T], finite: impl Fn(T) -> bool) -> Option<usize> {
    const BLOCK: usize = 1024;
    let k = v.chunks(BLOCK).position(|c| c.iter().fold(false, |a, &x| a | !finite(x)))?;
    let block = &v[k * BLOCK..v.len().min((k + 1) * BLOCK)];
    block.iter().position(|&x| !finite(x)).map(|i| k * BLOCK + i)
}

/// The values and shape of a float32 or float64 numpy array ([`Floats`]) for a model of
/// `precision`. Values that are not finite in the model's precision are refused, naming the
/// first sample holding one (a finite float64 beyond f32's range would otherwise become an
/// infinity in an f32 model and poison its weights).
fn floats<'py>(
    arg: &str,
    a: &Bound<'py, PyAny>,
    precision: Precision,
) -> PyResult<(Floats<'py>, Vec<usize>)> {
    let bad = |shape: &[usize], i: usize, x: f64| {
        // Batches (x) name the sample, parameters the value's flat index.
        let at = if arg == "x" || arg.ends_with(" x") {
            format!("sample {}", i / shape.iter().skip(1).product::<usize>().max(1))
        } else {
            format!("value {i} (in C order)")
        };
        PyValueError::new_err(if x.is_finite() {
            format!("{arg}: {at} holds {x:e}, beyond the range of float32, this model's precision")
        } else {
            format!("{arg}: {at} holds a non-finite value ({x})")
        })
    };
    // C order only: numpy's slice of a Fortran-ordered array is in column order.
    let (values, shape) = if let Ok(a) = a.cast::<PyArrayDyn<f64>>() {
        let r = a.readonly();
        let shape = r.shape().to_vec();
        if a.is_c_contiguous() && r.as_slice().is_ok() {
            (Floats::Borrowed(r), shape)
        } else {
            (Floats::Owned(r.as_array().iter().copied().collect()), shape)
        }
    } else if let Ok(a) = a.cast::<PyArrayDyn<f32>>() {
        let r = a.readonly();
        let shape = r.shape().to_vec();
        if a.is_c_contiguous() && r.as_slice().is_ok() {
            (Floats::Borrowed32(r), shape)
        } else {
            (Floats::Owned32(r.as_array().iter().copied().collect()), shape)
        }
    } else {
        let what = match a.getattr("dtype") {
            Ok(d) => format!("an array of dtype {}", d.str()?),
            Err(_) => format!("a {}", a.get_type().name()?),
        };
        return Err(PyTypeError::new_err(format!(
            "{arg} must be a float32 or float64 numpy array (torch: tensor.numpy()), got {what}"
        )));
    };
    // An f32 model rounds float64 input as it uploads it: a finite value beyond f32's range
    // would become an infinity there, so it is refused here with the non-finite ones, in the
    // same vectorised scan (the comparison is false for NaN).
    let fits_f32 = |x: f64| x.abs() <= f64::from(f32::MAX);
    let first = match values.values() {
        HostValues::F64(v) if precision == Precision::F32 => {
            first_non_finite(v, fits_f32).map(|i| (i, v[i]))
        }
        HostValues::F64(v) => first_non_finite(v, f64::is_finite).map(|i| (i, v[i])),
        HostValues::F32(v) => first_non_finite(v, f32::is_finite).map(|i| (i, f64::from(v[i]))),
    };
    match first {
        Some((i, x)) => Err(bad(&shape, i, x)),
        None => Ok((values, shape)),
    }
}

/// Class labels from an integer numpy array or a sequence of ints.
fn labels(arg: &str, y: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    let as_ints = |y: &Bound<'_, PyAny>| -> PyResult<Vec<i64>> {
        if let Ok(a) = y.cast::<PyArrayDyn<i64>>() {
            return Ok(a.readonly().as_array().iter().copied().collect());
        }
        if let Ok(a) = y.cast::<PyArrayDyn<i32>>() {
            return Ok(a.readonly().as_array().iter().map(|&v| i64::from(v)).collect());
        }
        if let Ok(a) = y.cast::<PyArrayDyn<u8>>() {
            return Ok(a.readonly().as_array().iter().map(|&v| i64::from(v)).collect());
        }
        if y.hasattr("dtype")? {
            let dtype = y.getattr("dtype")?.str()?.to_string();
            return Err(PyTypeError::new_err(format!(
                "{arg} must hold integer class labels (int64, int32 or uint8), got dtype {dtype}"
            )));
        }
        y.extract::<Vec<i64>>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{arg} must be integer class labels (a numpy array or list)"
            ))
        })
    };
    let ints = as_ints(y)?;
    if let Some((i, &l)) = ints.iter().enumerate().find(|(_, &l)| l < 0) {
        return Err(PyValueError::new_err(format!("{arg}: label {l} of sample {i} is negative")));
    }
    Ok(ints.into_iter().map(|l| l as usize).collect())
}

/// Inputs `x` for a model taking `shape` per sample, with labels `y`: the values and labels,
/// checked against each other.
fn batch<'py>(
    x: &Bound<'py, PyAny>,
    y: Option<&Bound<'py, PyAny>>,
    shape: &[usize],
    precision: Precision,
) -> PyResult<(Floats<'py>, Vec<usize>)> {
    let (values, xs) = floats("x", x, precision)?;
    let width: usize = shape.iter().product();
    let per: usize = xs.iter().skip(1).product();
    // Any layout of a sample's values, flattened in C order (a CNN's (batch, c, h, w) or
    // (batch, c*h*w), an MLP's (batch, 1, 28, 28) or (batch, 784)).
    if xs.len() < 2 || per != width {
        let dims = shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        let also = if shape.len() > 1 { format!(" or (batch, {dims})") } else { String::new() };
        return Err(PyValueError::new_err(format!(
            "x has shape {xs:?}; the model takes batches of samples of {width} values, such as \
             (batch, {width}){also}"
        )));
    }
    let labels = match y {
        Some(y) => labels("y", y)?,
        None => Vec::new(),
    };
    if y.is_some() && labels.len() != xs[0] {
        return Err(PyValueError::new_err(format!(
            "x holds {} samples but y {} labels",
            xs[0],
            labels.len()
        )));
    }
    Ok((values, labels))
}

/// `values` of `shape` as a numpy array in `precision`.
fn array<'py>(
    py: Python<'py>,
    values: &[f64],
    shape: &[usize],
    precision: Precision,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match precision {
        Precision::F64 => values.to_pyarray(py).reshape(shape.to_vec())?.into_any(),
        Precision::F32 => {
            let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
            v.to_pyarray(py).reshape(shape.to_vec())?.into_any()
        }
    })
}

fn params_dict<'py>(
    py: Python<'py>,
    params: &[(String, Vec<usize>, Vec<f64>)],
    precision: Precision,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, shape, values) in params {
        d.set_item(name, array(py, values, shape, precision)?)?;
    }
    Ok(d)
}

/// A network: a preset, MLP widths or a layer spec, on a backend, freshly initialised.
///
/// Model(model="auto", input_shape=(1, 8, 8), classes=10, **keys)
///
/// `keys` are the model's config keys of `cargo xtask train`, in snake_case, with their
/// defaults: hidden_activation, output_activation ("identity"), init ("normal"), init_std
/// (0.05), seed (0), backend ("ndarray"), precision ("f32").
#[pyclass(module = "arrs")]
struct Model {
    inner: EngineModel,
    config: TrainConfig,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (model = "auto", input_shape = None, classes = 10, **keys))]
    fn new(
        py: Python<'_>,
        model: &str,
        input_shape: Option<&Bound<'_, PyAny>>,
        classes: usize,
        keys: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let shape: Vec<usize> = match input_shape {
            None => vec![1, 8, 8],
            Some(s) => match s.extract::<usize>() {
                Ok(n) => vec![n],
                Err(_) => s.extract::<Vec<usize>>().map_err(|_| {
                    PyTypeError::new_err("input_shape must be an int or a tuple of ints")
                })?,
            },
        };
        if shape.is_empty() || shape.len() > 3 || shape.contains(&0) {
            return Err(PyValueError::new_err(format!(
                "input_shape must be (features,), (height, width) or (channels, height, width) \
                 of positive sizes, got {shape:?}"
            )));
        }
        let base = TrainConfig { model: model.into(), ..TrainConfig::default() };
        let config = with_keys(&base, keys, |key| {
            if MODEL_KEYS.contains(&key) {
                Ok(())
            } else {
                Err("is a key of a Trainer or of a run (arrs.train), not of a Model".into())
            }
        })?;
        let inner = compute(py, || EngineModel::new(&config, &shape, classes))?;
        Ok(Model { inner, config })
    }

    /// The outputs for inputs x (batch first), as an array (batch, classes).
    fn predict<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (x, _) = batch(x, None, &self.inner.input_shape(), self.inner.precision())?;
        let x = x.values();
        let inner = &self.inner;
        let out = compute(py, || inner.predict(x))?;
        let n = out.len() / inner.output_width();
        array(py, &out, &[n, inner.output_width()], inner.precision())
    }

    /// The mean loss ("mse" or "cross-entropy") and the accuracy on inputs x with labels y.
    #[pyo3(signature = (x, y, loss = "mse"))]
    fn evaluate(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        loss: &str,
    ) -> PyResult<(f64, f64)> {
        let loss: ar_core::Loss =
            loss.parse().map_err(|e: String| PyValueError::new_err(format!("loss: {e}")))?;
        let (x, y) = batch(x, Some(y), &self.inner.input_shape(), self.inner.precision())?;
        let x = x.values();
        let inner = &self.inner;
        compute(py, || inner.evaluate(x, &y, loss))
    }

    /// Every parameter as a dict of numpy arrays with PyTorch's names and layouts
    /// (`layers.0.weight` is (out, in)), in the model's precision: a torch.nn module of the
    /// same structure loads it with load_state_dict (after torch.from_numpy).
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        params_dict(py, &self.inner.parameters(), self.inner.precision())
    }

    /// Replaces parameters from a dict of arrays (state_dict's names and shapes; torch tensors
    /// through .numpy()). With strict (the default) every parameter must be given.
    #[pyo3(signature = (state, strict = true))]
    fn load_state_dict(&mut self, state: &Bound<'_, PyDict>, strict: bool) -> PyResult<()> {
        let mut params = Vec::new();
        for (k, v) in state.iter() {
            let name: String = k.extract()?;
            let v = if v.hasattr("detach")? && v.hasattr("numpy")? {
                v.call_method0("detach")?.call_method0("cpu")?.call_method0("numpy")?
            } else {
                v
            };
            let (values, shape) = floats(&name, &v, self.inner.precision())?;
            params.push((name, shape, values.into_vec()));
        }
        if strict {
            let given: Vec<&str> = params.iter().map(|p| p.0.as_str()).collect();
            let missing: Vec<String> = self
                .inner
                .parameters()
                .into_iter()
                .map(|p| p.0)
                .filter(|n| !given.contains(&n.as_str()))
                .collect();
            if !missing.is_empty() {
                return Err(PyValueError::new_err(format!(
                    "missing parameters: {} (pass strict=False to load some only)",
                    missing.join(", ")
                )));
            }
        }
        self.inner.load_parameters(&params).map_err(py_error)
    }

    /// The shape of one input sample.
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        self.inner.input_shape()
    }

    /// Outputs per sample (one per class).
    #[getter]
    fn classes(&self) -> usize {
        self.inner.output_width()
    }

    /// The backend and its device.
    #[getter]
    fn backend(&self) -> String {
        self.inner.backend()
    }

    /// "f32" or "f64".
    #[getter]
    fn precision(&self) -> String {
        self.inner.precision().to_string()
    }

    /// The model's config keys (snake_case) and values.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        config_dict(py, &self.config, |k| MODEL_KEYS.contains(&k))
    }

    fn __repr__(&self) -> String {
        format!(
            "arrs.Model({}, input_shape={:?}, classes={}, backend={}, precision={})",
            self.inner.description(),
            self.inner.input_shape(),
            self.inner.output_width(),
            self.inner.backend(),
            self.inner.precision()
        )
    }
}

/// The config keys `pick` selects, snake_case, as a dict.
fn config_dict<'py>(
    py: Python<'py>,
    config: &TrainConfig,
    pick: impl Fn(&str) -> bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let table =
        toml::Table::try_from(config).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    for key in KEYS.iter().map(|k| k.name).filter(|k| pick(k)) {
        let name = key.replace('-', "_");
        match table.get(key) {
            None => d.set_item(name, py.None())?,
            Some(toml::Value::Boolean(b)) => d.set_item(name, *b)?,
            Some(toml::Value::Integer(i)) => d.set_item(name, *i)?,
            Some(toml::Value::Float(x)) => d.set_item(name, *x)?,
            Some(toml::Value::String(s)) => d.set_item(name, s)?,
            Some(toml::Value::Array(a)) => {
                let items: Vec<&str> = a.iter().filter_map(|v| v.as_str()).collect();
                d.set_item(name, PyList::new(py, items)?)?
            }
            Some(other) => d.set_item(name, other.to_string())?,
        }
    }
    Ok(d)
}

/// Trains a Model in place with one algorithm.
///
/// Trainer(model, algorithm="ar", **keys)
///
/// algorithm is "ar" (activation relaxation with the variant keys), "bp" (backprop) or "fa"
/// (feedback alignment). `keys` are the config keys of `cargo xtask train` for the algorithm,
/// its variant, the relaxation, the loss and the optimiser, in snake_case with the same
/// defaults: feedback ("transpose"), eta (0.1), steps (100), schedule ("sweep"), start
/// ("feedforward"), solver ("auto"), loss ("mse"), optimizer ("sgd"), lr (0.1), momentum (0.9),
/// and the rest (docs/python.md lists them).
#[pyclass(module = "arrs")]
struct Trainer {
    model: Py<Model>,
    learner: Learner,
    steps: u64,
}

#[pymethods]
impl Trainer {
    #[new]
    #[pyo3(signature = (model, algorithm = "ar", **keys))]
    fn new(
        py: Python<'_>,
        model: Py<Model>,
        algorithm: &str,
        keys: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let name: AlgorithmName = algorithm
            .parse()
            .map_err(|e: String| PyValueError::new_err(format!("algorithm: {e}")))?;
        let learner = {
            let mut m = model.borrow_mut(py);
            let config = with_keys(&m.config, keys, |key| {
                if MODEL_KEYS.contains(&key) {
                    Err("is a key of the Model; give it to arrs.Model".into())
                } else if RUN_KEYS.contains(&key) {
                    Err("is a key of a whole run (arrs.train), not of a Trainer".into())
                } else {
                    Ok(())
                }
            })?;
            let inner = &mut m.inner;
            compute(py, || Learner::new(inner, &config, name))?
        };
        Ok(Trainer { model, learner, steps: 0 })
    }

    /// One training step on inputs x (batch first) with integer labels y: returns the batch's
    /// mean loss and the number of samples classified right, both before the update.
    fn step(
        &mut self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
    ) -> PyResult<(f64, usize)> {
        self._repeat_step(py, x, y, 1)
    }

    /// `n` training steps on the same batch in one call, as `n` calls of `step` would take
    /// them: the engine's own step in this process, with no Python call, conversion or check
    /// per step (bench/python_overhead.py measures the binding's overhead against it).
    /// Returns the last step's loss and correct count.
    fn _repeat_step(
        &mut self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        n: u64,
    ) -> PyResult<(f64, usize)> {
        let mut m = self.model.borrow_mut(py);
        let (x, y) = batch(x, Some(y), &m.inner.input_shape(), m.inner.precision())?;
        let x = x.values();
        let (learner, inner) = (&mut self.learner, &mut m.inner);
        let last = compute(py, || {
            let mut last = (f64::NAN, 0);
            for _ in 0..n {
                let outcome = learner.step(inner, x, &y)?;
                last = (outcome.loss, outcome.correct);
            }
            Ok(last)
        })?;
        self.steps += n;
        Ok(last)
    }

    /// The update this algorithm computes for one batch, not applied: a dict of arrays per
    /// weighted layer (`layers.0.weight`, `layers.0.bias`, and `.feedback` for learned
    /// backward weights), the gradient of the batch-mean loss as the algorithm estimates it.
    fn gradients<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let m = self.model.borrow(py);
        let (x, y) = batch(x, Some(y), &m.inner.input_shape(), m.inner.precision())?;
        let x = x.values();
        let (learner, inner) = (&mut self.learner, &m.inner);
        let g = compute(py, || learner.gradients(inner, x, &y))?;
        params_dict(py, &g, m.inner.precision())
    }

    /// Per weighted layer, how far this algorithm's update on one batch is from the exact
    /// gradient: a list of dicts with layer (1-based), angle_deg, relative_error,
    /// signal_error, feedback_angle_deg and feedback_norm_ratio (None where not defined).
    fn probes<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let m = self.model.borrow(py);
        let (x, y) = batch(x, Some(y), &m.inner.input_shape(), m.inner.precision())?;
        let x = x.values();
        let (learner, inner) = (&self.learner, &m.inner);
        let rows = compute(py, || learner.probe(inner, x, &y))?;
        let list = PyList::empty(py);
        for p in rows {
            let d = PyDict::new(py);
            d.set_item("layer", p.layer)?;
            d.set_item("angle_deg", p.angle_deg)?;
            d.set_item("relative_error", p.relative_error)?;
            d.set_item("signal_error", p.signal_error)?;
            d.set_item("feedback_angle_deg", p.feedback_angle_deg)?;
            d.set_item("feedback_norm_ratio", p.feedback_norm_ratio)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// The outputs of the trained model for inputs x.
    fn predict<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.model.borrow(py).predict(py, x)
    }

    /// The mean loss (the trainer's) and the accuracy on inputs x with labels y.
    fn evaluate(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
    ) -> PyResult<(f64, f64)> {
        let loss = self.learner.config().loss.to_string();
        self.model.borrow(py).evaluate(py, x, y, &loss)
    }

    /// Writes the model and the optimiser's state as a checkpoint of the command line's format
    /// (safetensors, checksums included; `cargo xtask eval` reads it).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let m = self.model.borrow(py);
        let (learner, inner) = (&self.learner, &m.inner);
        let state = TrainingState { epochs_done: 0, batches_done: self.steps as usize };
        compute(py, || learner.save(inner, &path, state))
    }

    /// Replaces the model's parameters and the optimiser's state with a checkpoint's (one this
    /// trainer's save wrote, or a run's for the same model and optimiser).
    fn restore(&mut self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let mut m = self.model.borrow_mut(py);
        let (learner, inner) = (&mut self.learner, &mut m.inner);
        compute(py, || learner.restore(inner, &path))?;
        Ok(())
    }

    /// The model it trains.
    #[getter]
    fn model(&self, py: Python<'_>) -> Py<Model> {
        self.model.clone_ref(py)
    }

    /// The algorithm's label (ar, bp, ar+learned, ...), as runs name it.
    #[getter]
    fn label(&self) -> String {
        self.learner.label().to_string()
    }

    /// Training steps taken.
    #[getter]
    fn steps(&self) -> u64 {
        self.steps
    }

    /// Every config key (snake_case) and its value for this trainer.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        config_dict(py, self.learner.config(), |k| !RUN_KEYS.contains(&k))
    }

    fn __repr__(&self) -> String {
        format!("arrs.Trainer({}, steps={})", self.learner.label(), self.steps)
    }
}

/// Reads a checkpoint (one `cargo xtask train` or Trainer.save wrote) as a Model on `backend`
/// in `precision`; returns the model and the checkpoint's metadata (its config TOML under
/// "config", its algorithm label under "algorithm").
#[pyfunction]
#[pyo3(signature = (path, backend = "ndarray", precision = "f32"))]
fn load(
    py: Python<'_>,
    path: PathBuf,
    backend: &str,
    precision: &str,
) -> PyResult<(Model, Py<PyDict>)> {
    let be = BackendName::parse(backend).map_err(py_error)?;
    let precision: Precision =
        precision.parse().map_err(|e: String| PyValueError::new_err(format!("precision: {e}")))?;
    let (inner, meta) = compute(py, || EngineModel::load(&path, be, precision))?;
    let mut config = match meta.get("config") {
        Some(text) => TrainConfig::parse(text, &path).map_err(py_error)?,
        None => TrainConfig::default(),
    };
    config.backend = backend.into();
    config.precision = precision;
    let d = PyDict::new(py);
    for (k, v) in &meta {
        d.set_item(k, v)?;
    }
    Ok((Model { inner, config }, d.unbind()))
}

/// In-memory data for a run: arrays of samples (batch first) and labels.
fn in_memory(
    name: &str,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    classes: usize,
    precision: Precision,
) -> PyResult<Dataset> {
    let (values, shape) = floats(&format!("{name} x"), x, precision)?;
    let sample: [usize; 3] = match shape[1..] {
        [d] => [1, 1, d],
        [h, w] => [1, h, w],
        [c, h, w] => [c, h, w],
        _ => {
            return Err(PyValueError::new_err(format!(
                "{name} x has shape {shape:?}; expected (samples, features), (samples, height, \
                 width) or (samples, channels, height, width)"
            )))
        }
    };
    let y = labels(&format!("{name} y"), y)?;
    let y8: Vec<u8> = y
        .iter()
        .map(|&l| {
            u8::try_from(l)
                .map_err(|_| PyValueError::new_err(format!("{name} y: label {l} is above 255")))
        })
        .collect::<PyResult<_>>()?;
    let samples = values.into_samples();
    Dataset::from_features(name, samples, y8, sample, classes).map_err(|e| py_error(e.into()))
}

/// Trains a whole run as `cargo xtask train` does, writing the usual run directory (config,
/// metrics, probes, checkpoints, plots) to `out`; returns the per-epoch metrics as a list of
/// dicts.
///
/// config: a dict of config keys (snake_case or the TOML's kebab-case) or the path of a TOML
/// config file. data: None (the config's data set), a data set's name ("digits", "mnist",
/// ...), or in-memory arrays (x_train, y_train, x_test, y_test): float32/float64 samples
/// batch first, integer labels. callback(metrics) is called after every epoch of every
/// algorithm. resume=True continues the run in `out` (mid-epoch included). Ctrl-C stops
/// within one batch, leaves checkpoints to resume from, and raises KeyboardInterrupt.
#[pyfunction]
#[pyo3(signature = (config = None, data = None, out = None, resume = false, callback = None))]
fn train<'py>(
    py: Python<'py>,
    config: Option<&Bound<'py, PyAny>>,
    data: Option<&Bound<'py, PyAny>>,
    out: Option<PathBuf>,
    resume: bool,
    callback: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let mut base = TrainConfig::default();
    let out = out.ok_or_else(|| PyValueError::new_err("out: the run directory is required"))?;
    if resume {
        base = TrainConfig::read(&out.join("config.toml")).map_err(py_error)?;
    }
    let mut cfg = match config {
        None => base,
        Some(c) if c.cast::<PyDict>().is_ok() => {
            let d = c.cast::<PyDict>()?;
            with_keys(&base, Some(d), |_| Ok(()))?
        }
        Some(c) => {
            let path: PathBuf = c.extract().map_err(|_| {
                PyTypeError::new_err("config must be a dict or the path of a TOML file")
            })?;
            let text = ar_train::read_config_text(&path).map_err(py_error)?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                PyValueError::new_err(format!(
                    "{}: {}",
                    path.display(),
                    ar_train::toml_error(&text, &e)
                ))
            })?;
            base.overlay(table, &path).map_err(py_error)?
        }
    };
    let mut memory = None;
    match data {
        None => {}
        Some(d) if d.extract::<String>().is_ok() => cfg.dataset = d.extract()?,
        Some(d) => {
            let parts: Vec<Bound<'py, PyAny>> = d.extract().map_err(|_| {
                PyTypeError::new_err(
                    "data must be a data set's name or (x_train, y_train, x_test, y_test)",
                )
            })?;
            let [xt, yt, xv, yv] = <[Bound<'py, PyAny>; 4]>::try_from(parts).map_err(|p| {
                PyValueError::new_err(format!(
                    "data: expected 4 arrays (x_train, y_train, x_test, y_test), got {}",
                    p.len()
                ))
            })?;
            let ymax = labels("train y", &yt)?
                .into_iter()
                .chain(labels("test y", &yv)?)
                .max()
                .unwrap_or(0);
            let classes = ymax + 1;
            let train = in_memory("train", &xt, &yt, classes, cfg.precision)?;
            let test = in_memory("test", &xv, &yv, classes, cfg.precision)?;
            if train.shape != test.shape {
                return Err(PyValueError::new_err(format!(
                    "data: train samples have shape {:?} but test samples {:?}",
                    train.shape, test.shape
                )));
            }
            cfg.dataset = "arrays".into();
            memory = Some(Data { train, test, normalization: Normalization::UnitInterval });
        }
    }
    let threads = cfg.threads;
    let stop = Arc::new(AtomicBool::new(false));
    let request = TrainRequest { dir: out, config: cfg, data: memory, resume, stop: stop.clone() };
    let callback = callback.map(Bound::unbind);
    // The session runs on a thread of its own (on the rayon pool), while this one, Python's,
    // waits and looks for signals: Python runs its SIGINT handler on the main thread only.
    let mut interrupted: Option<PyErr> = None;
    let (result, raised) = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let mut raised: Option<PyErr> = None;
            let result = catch_unwind(AssertUnwindSafe(|| {
                let mut observer = |e: Event<'_>| {
                    let (Event::EpochFinished(m), Some(cb), None) = (&e, &callback, &raised) else {
                        return;
                    };
                    let called =
                        Python::attach(|py| cb.call1(py, (metrics_dict(py, m)?,)).map(drop));
                    if let Err(err) = called {
                        raised = Some(err);
                        stop.store(true, Ordering::SeqCst);
                    }
                };
                with_threads(threads, || ar_engine::train(request, &mut observer))
            }));
            (result, raised)
        });
        while !worker.is_finished() {
            py.detach(|| std::thread::sleep(std::time::Duration::from_millis(10)));
            if interrupted.is_none() {
                if let Err(err) = py.check_signals() {
                    interrupted = Some(err);
                    stop.store(true, Ordering::SeqCst);
                }
            }
        }
        worker.join().expect("the worker catches its panics")
    });
    let report = result.map_err(panic_error)?.and_then(|r| r).map_err(py_error)?;
    if let Some(err) = interrupted.or(raised) {
        return Err(err);
    }
    match report.outcome {
        Outcome::Finished => {}
        Outcome::Stopped => return Err(PyKeyboardInterrupt::new_err("training stopped; checkpoints saved, resume with resume=True")),
        Outcome::Diverged { label, epoch, batch, loss, .. } => {
            return Err(PyRuntimeError::new_err(format!(
                "{label} diverged at epoch {epoch}, batch {batch}: the loss is {loss}; try a smaller lr"
            )))
        }
    }
    let list = PyList::empty(py);
    for m in &report.history {
        list.append(metrics_dict(py, m)?)?;
    }
    Ok(list)
}

fn metrics_dict<'py>(py: Python<'py>, m: &ar_train::EpochMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("algorithm", &m.algorithm)?;
    d.set_item("epoch", m.epoch)?;
    d.set_item("train_loss", m.train_loss)?;
    d.set_item("train_accuracy", m.train_accuracy)?;
    d.set_item("test_loss", m.test_loss)?;
    d.set_item("test_accuracy", m.test_accuracy)?;
    d.set_item("seconds", m.seconds)?;
    d.set_item("samples_per_second", m.samples_per_second)?;
    Ok(d)
}

/// Every config key (snake_case) with its default, as `cargo xtask train` has them.
#[pyfunction]
fn defaults(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    config_dict(py, &TrainConfig::default(), |_| true)
}

/// The module.
#[pymodule(name = "_arrs")]
fn arrs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<Trainer>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(defaults, m)?)?;
    m.add("BACKENDS", BackendName::NAMES.to_vec())?;
    Ok(())
}
