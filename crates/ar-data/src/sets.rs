//! The catalogue of data sets: their names, the files each split needs, finding those files
//! on disk, and one [`load`] entry point for all of them.

use crate::cifar::{read_cifar10, read_cifar100};
use crate::idx::read_mnist_like;
use crate::svhn::read_svhn;
use crate::{digits_bundled, read_digits, DataError, Dataset, Normalization};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The data sets [`load`] knows, by name.
pub const NAMES: &[&str] = &["digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"];

/// Which part of a data set to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training set.
    Train,
    /// The test set.
    Test,
}

impl Split {
    /// Both splits, training first.
    pub const ALL: [Split; 2] = [Split::Train, Split::Test];

    /// `train` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            other => {
                Err(DataError::Invalid(format!("unknown split '{other}' (expected train or test)")))
            }
        }
    }
}

/// One file a split of a data set is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedFile {
    /// What the file holds (`train images`, `batch 3`, ...).
    pub role: String,
    /// Paths relative to the data set's directory, any one of which will do; the first that
    /// exists is read.
    pub candidates: Vec<PathBuf>,
    /// Whether the split cannot be read without it (`false` only for digits, which falls back to
    /// the bundled copy).
    pub required: bool,
}

impl ExpectedFile {
    fn new(role: impl Into<String>, candidates: &[String], required: bool) -> Self {
        ExpectedFile {
            role: role.into(),
            candidates: candidates.iter().map(PathBuf::from).collect(),
            required,
        }
    }
}

fn unknown(name: &str) -> DataError {
    DataError::Invalid(format!("unknown data set '{name}' (expected one of {})", NAMES.join(", ")))
}

/// The files a split of data set `name` is read from, relative to its directory (the `dir`
/// given to [`load`]). MNIST-style files may be raw or gzip-compressed (`.gz`); CIFAR files may
/// lie in the tarball's folder (`cifar-10-batches-bin/`, `cifar-100-binary/`) or directly in the
/// directory. Digits needs no file: `digits.csv.gz` is read if present, else the bundled copy.
pub fn expected_files(name: &str, split: Split) -> Result<Vec<ExpectedFile>, DataError> {
    let train = split == Split::Train;
    Ok(match name {
        "digits" => {
            vec![ExpectedFile::new("samples (optional: bundled)", &["digits.csv.gz".into()], false)]
        }
        "mnist" | "fashion-mnist" => {
            let prefix = if train { "train" } else { "t10k" };
            ["images-idx3", "labels-idx1"]
                .iter()
                .map(|kind| {
                    let base = format!("{prefix}-{kind}-ubyte");
                    let role = format!(
                        "{split} {}",
                        if kind.starts_with("images") { "images" } else { "labels" }
                    );
                    ExpectedFile::new(role, &[base.clone(), format!("{base}.gz")], true)
                })
                .collect()
        }
        "cifar10" => {
            let files: Vec<String> = if train {
                (1..=5).map(|k| format!("data_batch_{k}.bin")).collect()
            } else {
                vec!["test_batch.bin".into()]
            };
            files
                .iter()
                .map(|f| {
                    ExpectedFile::new(
                        format!("{split} batch {f}"),
                        &[format!("cifar-10-batches-bin/{f}"), f.clone()],
                        true,
                    )
                })
                .collect()
        }
        "cifar100" => {
            let f = format!("{split}.bin");
            vec![ExpectedFile::new(
                format!("{split} records"),
                &[format!("cifar-100-binary/{f}"), f],
                true,
            )]
        }
        "svhn" => vec![ExpectedFile::new(
            format!("{split} images and labels"),
            &[format!("{split}_32x32.mat")],
            true,
        )],
        other => return Err(unknown(other)),
    })
}

/// The paths in `dir` of the files a split of data set `name` is read from (the first existing
/// candidate of each required [`ExpectedFile`], in order), or [`DataError::Missing`] naming
/// every path tried for each file that is absent.
pub fn locate(name: &str, dir: &Path, split: Split) -> Result<Vec<PathBuf>, DataError> {
    let mut found = Vec::new();
    let mut looked_for = Vec::new();
    for file in expected_files(name, split)?.into_iter().filter(|f| f.required) {
        let paths: Vec<PathBuf> = file.candidates.iter().map(|c| dir.join(c)).collect();
        match paths.iter().find(|p| p.is_file()) {
            Some(p) => found.push(p.clone()),
            None => looked_for.extend(paths),
        }
    }
    if looked_for.is_empty() {
        Ok(found)
    } else {
        Err(DataError::missing(name, looked_for))
    }
}

/// Reads a split of data set `name` (one of [`NAMES`]) from its directory `dir`.
///
/// The digits set has no train/test split of its own: for either split this returns all 1797
/// samples (from `dir/digits.csv.gz` if that exists, else the bundled copy), and callers hold
/// out a test set with [`Dataset::split_stratified`].
pub fn load(name: &str, dir: &Path, split: Split) -> Result<Dataset, DataError> {
    match name {
        "digits" => {
            let file = dir.join("digits.csv.gz");
            if file.is_file() {
                read_digits(&file)
            } else {
                Ok(digits_bundled())
            }
        }
        "mnist" | "fashion-mnist" => read_mnist_like(dir, name, split),
        "cifar10" => read_cifar10(dir, split),
        "cifar100" => read_cifar100(dir, split),
        "svhn" => read_svhn(dir, split),
        other => Err(unknown(other)),
    }
}

/// The environment variable that names the root data directory when none is given.
pub const DATA_DIR_ENV: &str = "AR_DATA_DIR";

/// The root data directory: `explicit` if given, else `$AR_DATA_DIR`, else `datasets` in the
/// working directory. Each data set lives in a folder of its name below it ([`dataset_dir`]).
pub fn data_root(explicit: Option<&Path>) -> PathBuf {
    match (explicit, std::env::var_os(DATA_DIR_ENV)) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => PathBuf::from("datasets"),
    }
}

/// The folder of data set `name` under the root data directory `root` (digits lies at the root
/// itself, the others in a folder of their name).
pub fn dataset_dir(root: &Path, name: &str) -> PathBuf {
    if name == "digits" {
        root.to_path_buf()
    } else {
        root.join(name)
    }
}

/// The normalisation the papers use for data set `name`: [0, 1] for digits, MNIST and
/// Fashion-MNIST (paper 1), [-1, 1] for CIFAR-10, CIFAR-100 and SVHN (paper 2).
pub fn default_normalization(name: &str) -> Result<Normalization, DataError> {
    match name {
        "digits" | "mnist" | "fashion-mnist" => Ok(Normalization::UnitInterval),
        "cifar10" | "cifar100" | "svhn" => Ok(Normalization::Symmetric),
        other => Err(unknown(other)),
    }
}

/// The training and test sets of data set `name` from the root data directory `root`. Digits
/// has no test split of its own: `test_fraction` of each class is held out by a stratified split
/// seeded by `seed`; the other data sets ignore both and read their own test split.
pub fn load_train_test(
    name: &str,
    root: &Path,
    test_fraction: f64,
    seed: u64,
) -> Result<(Dataset, Dataset), DataError> {
    let dir = dataset_dir(root, name);
    if name == "digits" {
        return load(name, &dir, Split::Train)?.split_stratified(test_fraction, seed).map_err(
            |e| DataError::Invalid(format!("digits' test fraction {test_fraction}: {e}")),
        );
    }
    Ok((load(name, &dir, Split::Train)?, load(name, &dir, Split::Test)?))
}
