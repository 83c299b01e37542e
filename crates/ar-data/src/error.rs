//! The data crate's error type: every variant names the file and what was wrong with it.

use std::path::PathBuf;

/// Why a data set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file was read but its contents are not what the format requires.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// A requested operation does not fit the data (an impossible split, say).
    #[error("{0}")]
    Invalid(String),
    /// Files a data set needs are not on disk.
    #[error("{dataset}: missing data; looked for {}; {hint}", list_paths(.looked_for))]
    Missing {
        /// The data set's name (`mnist`, ...).
        dataset: String,
        /// Every path that was tried, in order.
        looked_for: Vec<PathBuf>,
        /// What to do about it (names the `cargo xtask data fetch` command).
        hint: String,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(no paths)".into();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

impl DataError {
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Format { path: path.into(), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }

    /// A [`DataError::Missing`] for `dataset`, with the standard hint to fetch it.
    pub fn missing(dataset: &str, looked_for: Vec<PathBuf>) -> Self {
        DataError::Missing {
            dataset: dataset.to_string(),
            looked_for,
            hint: format!("run `cargo xtask data fetch {dataset}` to get it"),
        }
    }
}
