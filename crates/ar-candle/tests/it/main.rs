//! Behaviour tests of the candle backend: conformance with ndarray, training equivalence, and
//! the device errors.

mod conformance;
mod devices;
mod training;
