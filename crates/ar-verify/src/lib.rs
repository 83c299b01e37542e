//! The gradient-equivalence suite: our backprop and activation relaxation checked against
//! oracles that share no code with what they check (finite differences on an independent host
//! forward pass, candle's autograd in [`oracle`], exact identities of the algorithm), with a
//! report per model and layer; and the timing of training steps behind `cargo xtask bench`.

pub mod cases;
pub mod checks;
pub mod oracle;
pub mod reference;
mod report;
pub mod timing;

pub use report::{Report, Row};
