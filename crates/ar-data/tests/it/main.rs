//! Behaviour tests of the data readers: round trips through files written in each exact format,
//! error messages, the catalogue and `load`, and property tests that no input makes a reader panic.

mod cifar;
mod common;
mod fuzz;
mod idx;
mod sets;
mod svhn;
