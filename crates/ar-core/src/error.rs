//! The core crate's error type, for configurations and inputs that come from outside.

/// Why a configuration or an input was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CoreError {
    /// An algorithm or training setting is out of range or contradicts another.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Data handed to the network does not fit its shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
}
