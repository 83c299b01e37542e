//! The training crate's error type: configurations, run directories, and the errors of the
//! crates it drives.

use std::path::PathBuf;

/// Why a run could not be set up, continued or recorded.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting is out of range or contradicts another; `key` is its config key (the
    /// command line's long flag).
    #[error("{key} {message}")]
    Config {
        /// The config key at fault, such as `epochs`.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A run directory cannot be used as asked: it already holds a run (when starting one), or
    /// holds none (when resuming).
    #[error("{0}")]
    RunDir(String),
    /// Another process holds the run directory's lock.
    #[error(
        "{dir} is in use by process {pid} (another run or resume of it is going on); \
         wait for it to end or choose another directory"
    )]
    Locked {
        /// The run directory.
        dir: PathBuf,
        /// The holder's process id, as it recorded it.
        pid: String,
    },
    /// A file of the run directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A file of the run directory was read but is not what it should be.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The SLURM scheduler could not be reached or refused a job.
    #[error("{0}")]
    Slurm(String),
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] ar_data::DataError),
    /// The model could not be built, or a checkpoint could not be read or written.
    #[error(transparent)]
    Model(#[from] ar_models::ModelError),
    /// The algorithm rejected a setting or an input.
    #[error(transparent)]
    Core(#[from] ar_core::CoreError),
}

impl TrainError {
    /// Whether the request itself is at fault (a setting, a model that does not fit the data, a
    /// directory used the wrong way), rather than a file or the machine.
    pub fn is_usage(&self) -> bool {
        use ar_models::ModelError;
        matches!(
            self,
            TrainError::Config { .. }
                | TrainError::RunDir(_)
                | TrainError::Model(ModelError::Spec { .. } | ModelError::Mismatch { .. })
                | TrainError::Core(ar_core::CoreError::InvalidConfig(_))
        )
    }

    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
        move |source| TrainError::Io { path: path.to_path_buf(), source }
    }
}
