//! The gradient-equivalence suite: our backprop and activation relaxation checked against
//! oracles that share no code with what they check (finite differences on an independent host
//! forward pass; exact identities of the algorithm), with a report per model and layer.

pub mod cases;
pub mod checks;
pub mod reference;
mod report;

pub use report::{Report, Row};
