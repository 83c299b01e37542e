//! `--backend` and `--precision`: choosing the tensor backend at run time and running generic
//! work on it.

use ar_backend::{Backend, Precision};
use ar_candle::Candle;
use ar_ndarray::NdArray;
use clap::ValueEnum;
use serde::Serialize;

/// Where the tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendName {
    /// ndarray on the CPU (the gemm crate's kernels, on every core).
    Ndarray,
    /// candle on the CPU.
    Candle,
    /// candle on the first CUDA GPU (needs a build with `--features cuda`; see README).
    CandleCuda,
}

impl std::fmt::Display for BackendName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.to_possible_value().expect("no variant is skipped");
        f.write_str(v.get_name())
    }
}

/// Work that runs on any backend.
pub trait Job {
    /// What it produces.
    type Output;
    /// Runs on `be`.
    fn run<B: Backend>(self, be: B) -> anyhow::Result<Self::Output>;
}

/// Runs `job` on the named backend in the given precision. Asking for CUDA in a build without
/// it, or on a machine without a GPU, is an error of one line.
pub fn dispatch<J: Job>(
    name: BackendName,
    precision: Precision,
    job: J,
) -> anyhow::Result<J::Output> {
    match (name, precision) {
        (BackendName::Ndarray, Precision::F32) => job.run(NdArray::<f32>::new()),
        (BackendName::Ndarray, Precision::F64) => job.run(NdArray::<f64>::new()),
        (BackendName::Candle, p) => job.run(Candle::cpu(p)),
        (BackendName::CandleCuda, p) => job.run(Candle::cuda(0, p)?),
    }
}
