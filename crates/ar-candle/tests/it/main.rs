//! Behaviour tests of the candle backend: conformance with ndarray, the autograd oracle against
//! ar-core, training equivalence, and the device errors.

mod conformance;
mod devices;
mod oracle;
mod training;
