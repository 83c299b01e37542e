//! Training runs for activation relaxation: the library behind `cargo xtask train`.
//!
//! A [`Session`] trains one or more algorithms (AR, backprop, feedback alignment) side by side
//! from identical weights and batch order, as a [`TrainConfig`] describes, in a run directory:
//! the resolved `config.toml`, per-epoch metrics and gradient-alignment probes as JSON lines and
//! CSV, safetensors checkpoints after every epoch and whenever it is stopped, and SVG plots.
//! [`Session::resume`] continues a stopped or killed run, mid-epoch included, and ends
//! bit-identical to an uninterrupted one. Progress goes to an [`Observer`]; a stop flag
//! ([`Session::stop_flag`]) ends a run cleanly. Nothing here prints, parses command lines or
//! handles signals.
//!
//! ```
//! use ar_train::{Event, Session, TrainConfig};
//! # fn main() -> Result<(), ar_train::TrainError> {
//! let dir = std::env::temp_dir().join(format!("ar-train-doc-{}", std::process::id()));
//! # std::fs::remove_dir_all(&dir).ok();
//! let backend = ar_ndarray::NdArray::<f32>::new();
//! let config = TrainConfig { epochs: Some(2), probe_every: 20, ..TrainConfig::default() };
//! let mut session = Session::create(&dir, config, backend)?;
//! let mut angles = Vec::new();
//! session.run(&mut |e: Event<'_>| {
//!     if let Event::Probed { label: "ar", probes, .. } = e {
//!         angles.push(probes[0].angle_deg); // layer 1's angle to the exact gradient
//!     }
//! })?;
//! for t in session.trainees() {
//!     println!("{}: {:.2}%", t.label, 100.0 * t.history.last().unwrap().test_accuracy);
//! }
//! assert!(!angles.is_empty() && angles.iter().all(|a| *a < 5.0));
//! session.set_epochs(3)?; // one more epoch, as a resume with a larger --epochs would
//! session.run(&mut |_: Event<'_>| {})?;
//! assert_eq!(session.trainees()[0].history.len(), 3);
//! # drop(session);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```
//!
//! The types a config's fields use are re-exported here ([`Precision`], [`Feedback`],
//! [`Schedule`], ...), so a crate user needs no other crate of the workspace to write one.

mod config;
mod error;
mod keys;
mod plot;
mod probe;
pub mod report;
mod rundir;
mod session;
pub mod slurm;
pub mod sweep;

pub use ar_backend::{Activation, Precision};
pub use ar_core::{Feedback, FprimeUse, InitialState, Loss, Schedule, Solver};
pub use config::{
    read_config_text, toml_error, AlgorithmName, Data, Fderiv, InitName, OptimizerName, TrainConfig,
};
pub use error::TrainError;
pub use keys::{Key, KeyKind, KEYS};
pub use plot::{line_chart, Series};
pub use probe::{probe, LayerProbe, ProbeRow};
pub use rundir::{checkpoint_path, timestamped_dir, RunDir, METRICS_COLUMNS, PROBES_COLUMNS};
pub use session::{EpochMetrics, Event, Observer, Outcome, Session, Silent, Trainee};

use ar_backend::Backend;
use ar_core::Network;
use ar_data::{BatchOrder, Dataset, Normalization};

/// The inputs and one-hot targets of the samples `batch` of `data`, uploaded for `net`.
pub fn upload<B: Backend>(
    net: &Network<B>,
    data: &Dataset,
    batch: &[usize],
    norm: &Normalization,
) -> Result<(B::Tensor, B::Tensor), TrainError> {
    let x = net.upload_batch(&data.features(batch, norm), batch.len())?;
    let t = net.upload_targets(&data.one_hot(batch), batch.len())?;
    Ok((x, t))
}

/// The mean loss and the accuracy of `net` on all of `data`, in batches of 256.
pub fn evaluate<B: Backend>(
    net: &Network<B>,
    data: &Dataset,
    norm: &Normalization,
    loss: Loss,
) -> Result<(f64, f64), TrainError> {
    let be = net.backend();
    let (mut correct, mut loss_sum) = (0usize, 0.0);
    for batch in BatchOrder::sequential(data.len(), 256).batches() {
        let (x, t) = upload(net, data, batch, norm)?;
        let out = net.predict(&x);
        let (out, t) = (be.to_host(&out), be.to_host(&t));
        loss_sum += loss.value(&out, &t, data.num_classes) * batch.len() as f64;
        correct += ar_core::count_correct(&out, &t, data.num_classes);
    }
    Ok((loss_sum / data.len() as f64, correct as f64 / data.len() as f64))
}

/// The first `n` samples of `data` (inputs, the network's outputs, its predicted classes),
/// written as f64 tensors `inputs`, `outputs` and `predictions` to a safetensors file, for
/// checking a checkpoint in another framework. Returns how many samples it wrote; `n = 0` is
/// refused.
pub fn dump_predictions<B: Backend>(
    net: &Network<B>,
    data: &Dataset,
    norm: &Normalization,
    n: usize,
    path: &std::path::Path,
) -> Result<usize, TrainError> {
    if n == 0 {
        return Err(TrainError::Config {
            key: "dump-count".into(),
            message: "0: a dump needs at least one sample".into(),
        });
    }
    let n = n.min(data.len());
    let idx: Vec<usize> = (0..n).collect();
    let (x, _) = upload(net, data, &idx, norm)?;
    let be = net.backend();
    let out = net.predict(&x);
    let predictions = be.argmax_rows(&out).into_iter().map(|p| p as f64).collect();
    ar_models::write_f64_tensors(
        path,
        &[
            ("inputs", vec![n, data.sample_len()], be.to_host(&x)),
            ("outputs", vec![n, data.num_classes], be.to_host(&out)),
            ("predictions", vec![n], predictions),
        ],
    )?;
    Ok(n)
}
