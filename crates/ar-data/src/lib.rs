//! Data sets for activation relaxation experiments: readers for the standard files, one plain
//! in-memory [`Dataset`] value, normalisation, deterministic splits and seeded batch orders.
//!
//! This crate knows nothing of tensors or backends and never opens a socket.

mod dataset;
mod digits;
mod error;

pub use dataset::{BatchOrder, Dataset, Normalization};
pub use digits::{digits_bundled, read_digits, read_digits_csv, DIGITS_GZ};
pub use error::DataError;
