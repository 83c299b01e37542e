//! Tensor backends by name: which ones a build has, and running generic work on the chosen one.

use ar_backend::{Backend, Precision};
use ar_candle::Candle;
use ar_ndarray::NdArray;
use ar_train::{sweep::on_pool, TrainError};

/// Where the tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendName {
    /// ndarray on the CPU (the gemm crate's kernels, on every core).
    Ndarray,
    /// candle on the CPU.
    Candle,
    /// candle on the first CUDA GPU (needs a build with the `cuda` feature; see README).
    CandleCuda,
}
ar_core::named_enum!(
    BackendName,
    "backend",
    Ndarray => "ndarray",
    Candle => "candle",
    CandleCuda => "candle-cuda"
);

/// Work that runs on any backend (on a worker of rayon's pool for a CPU one, hence `Send`).
pub trait Job: Send {
    /// What it produces (often a `Result` of the job's own).
    type Output: Send;
    /// Runs on `be`.
    fn run<B: Backend>(self, be: B) -> Self::Output;
}

impl BackendName {
    /// The backend named `name` (one of [`BackendName::NAMES`]), as a config error of key
    /// `backend` otherwise.
    pub fn parse(name: &str) -> Result<Self, TrainError> {
        name.parse().map_err(|message| TrainError::Config { key: "backend".into(), message })
    }
}

/// Runs `job` on the named backend in the given precision. Asking for CUDA in a build without
/// it, or on a machine without a GPU, is an error of one line (key `backend`). A CPU backend's
/// job runs on a worker of the rayon pool ([`on_pool`]: one hand-off for the whole job, not one
/// per parallel kernel).
pub fn dispatch<J: Job>(
    name: BackendName,
    precision: Precision,
    job: J,
) -> Result<J::Output, TrainError> {
    Ok(match (name, precision) {
        (BackendName::Ndarray, Precision::F32) => on_pool(|| job.run(NdArray::<f32>::new())),
        (BackendName::Ndarray, Precision::F64) => on_pool(|| job.run(NdArray::<f64>::new())),
        (BackendName::Candle, p) => on_pool(|| job.run(Candle::cpu(p))),
        (BackendName::CandleCuda, p) => {
            let be = Candle::cuda(0, p).map_err(|e| TrainError::Config {
                key: "backend".into(),
                message: format!("candle-cuda: {e}"),
            })?;
            job.run(be)
        }
    })
}
