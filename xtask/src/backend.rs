//! `--backend` and `--precision`: the engine crate's choice of backend at run time
//! (`ar_engine::dispatch`), with the command line's errors and flag parser.

use ar_backend::{Backend, Precision};
pub use ar_engine::BackendName;
use clap::builder::{PossibleValuesParser, TypedValueParser};

/// Work that runs on any backend.
pub trait Job: Send {
    /// What it produces.
    type Output: Send;
    /// Runs on `be`.
    fn run<B: Backend>(self, be: B) -> anyhow::Result<Self::Output>;
}

/// A command-line job as an engine job.
struct Engine<J>(J);

impl<J: Job> ar_engine::Job for Engine<J> {
    type Output = anyhow::Result<J::Output>;
    fn run<B: Backend>(self, be: B) -> Self::Output {
        self.0.run(be)
    }
}

/// Runs `job` on the named backend in the given precision. Asking for CUDA in a build without
/// it, or on a machine without a GPU, is an error of one line.
pub fn dispatch<J: Job>(
    name: BackendName,
    precision: Precision,
    job: J,
) -> anyhow::Result<J::Output> {
    ar_engine::dispatch(name, precision, Engine(job)).map_err(crate::train::cli_error)?
}

/// The value parser of a `--backend` flag: the engine's names, listed in `--help`.
pub fn parser() -> impl TypedValueParser<Value = BackendName> {
    PossibleValuesParser::new(BackendName::NAMES)
        .map(|name| name.parse::<BackendName>().expect("one of the listed names"))
}
