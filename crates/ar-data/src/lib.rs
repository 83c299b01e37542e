//! Data sets for activation relaxation experiments: readers for the standard files, one plain
//! in-memory [`Dataset`] value, normalisation, deterministic splits and seeded batch orders.
//!
//! This crate knows nothing of tensors or backends and never opens a socket. [`load`] reads any
//! of the data sets in [`NAMES`]; the format modules' readers and in-memory parsers are public
//! too. Every reader checks the headers and sizes of what it reads and fails with a
//! [`DataError`] naming the file, never a panic.

mod cifar;
mod dataset;
mod digits;
mod error;
mod files;
mod idx;
pub mod mat;
mod sets;
mod svhn;

pub use cifar::{
    parse_cifar10, parse_cifar100, read_cifar10, read_cifar100, CIFAR100_CLASSES, CIFAR10_CLASSES,
    CIFAR_IMAGE_BYTES,
};
pub use dataset::{BatchOrder, Dataset, Normalization, Samples};
pub use digits::{digits_bundled, read_digits, read_digits_csv, DIGITS_GZ};
pub use error::DataError;
pub use idx::{
    parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels, read_mnist_like,
    IdxImages, FASHION_MNIST_CLASSES, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC,
};
pub use sets::{
    data_root, dataset_dir, default_normalization, expected_files, load, load_train_test, locate,
    ExpectedFile, Split, DATA_DIR_ENV, NAMES,
};
pub use svhn::{parse_svhn, read_svhn, read_svhn_file, svhn_from_mat};
