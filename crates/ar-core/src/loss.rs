//! Losses: their batch-mean value and the top gradient `g_L = dl/dh_L` per sample.

use ar_backend::{Backend, BackendExt};
use std::fmt;
use std::str::FromStr;

/// A per-sample loss, averaged over the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `l = 1/2 ||h_L - t||^2` (the papers' loss); `g_L = h_L - t`.
    Mse,
    /// Softmax cross-entropy on the outputs as logits, `l = -sum_i t_i log softmax(h_L)_i`;
    /// `g_L = softmax(h_L) - t`.
    CrossEntropy,
}

impl Loss {
    /// `g_L` for every sample, `[batch, classes]` (not divided by the batch size: the weight
    /// gradients take the batch mean).
    pub fn top_gradient<B: Backend>(
        self,
        be: &B,
        output: &B::Tensor,
        targets: &B::Tensor,
    ) -> B::Tensor {
        match self {
            Loss::Mse => be.sub(output, targets),
            Loss::CrossEntropy => be.sub(&be.softmax_rows(output), targets),
        }
    }

    /// The batch-mean loss from host copies of outputs and targets (`[batch, classes]`, row-major).
    pub fn value(self, output: &[f64], targets: &[f64], classes: usize) -> f64 {
        assert_eq!(output.len(), targets.len(), "loss: outputs and targets differ in size");
        let batch = output.len() / classes;
        let mut total = 0.0;
        for (y, t) in output.chunks(classes).zip(targets.chunks(classes)) {
            total += match self {
                Loss::Mse => 0.5 * y.iter().zip(t).map(|(y, t)| (y - t) * (y - t)).sum::<f64>(),
                Loss::CrossEntropy => {
                    let max = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let log_z = max + y.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                    y.iter().zip(t).map(|(y, t)| -t * (y - log_z)).sum::<f64>()
                }
            };
        }
        total / batch as f64
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::CrossEntropy => "cross-entropy",
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Loss {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mse" => Ok(Loss::Mse),
            "cross-entropy" | "ce" | "xent" => Ok(Loss::CrossEntropy),
            _ => Err(format!("unknown loss '{s}' (expected mse or cross-entropy)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_loss_values() {
        // MSE: 1/2 ((1 - 0)^2 + (2 - 1)^2) = 1, for each of two rows; mean 1.
        assert_eq!(Loss::Mse.value(&[1.0, 2.0, 1.0, 2.0], &[0.0, 1.0, 0.0, 1.0], 2), 1.0);
        // CE of equal logits over 4 classes: ln 4.
        let ce = Loss::CrossEntropy.value(&[3.0; 4], &[0.0, 0.0, 1.0, 0.0], 4);
        assert!((ce - 4f64.ln()).abs() < 1e-15);
        // CE with huge logits stays finite: logits [1000, 0], target class 1 gives 1000.
        let ce = Loss::CrossEntropy.value(&[1000.0, 0.0], &[0.0, 1.0], 2);
        assert!((ce - 1000.0).abs() < 1e-9);
    }
}
