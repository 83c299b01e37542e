//! Seeded weight initialisation on the host: the papers' N(0, sigma), PyTorch's default for
//! `nn.Linear`, and He (Kaiming) normal for deep ReLU networks.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// How a layer's weights and biases are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Weights from N(0, std^2), zero biases (the papers use std 0.05).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// PyTorch's `nn.Linear` default: weights and biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    PyTorch,
    /// He et al. 2015 (arXiv:1502.01852): weights from N(0, 2 / fan_in), zero biases, which
    /// keeps the activity's scale through deep ReLU stacks (PyTorch's default shrinks it by
    /// about sqrt(6) per ReLU layer).
    Kaiming,
}

impl Init {
    /// The papers' initialisation, N(0, 0.05^2) weights and zero biases.
    pub fn papers() -> Self {
        Init::Normal { std: 0.05 }
    }

    /// Draws `(weight [outputs * inputs], bias [outputs])` for one dense layer.
    pub fn dense(
        &self,
        rng: &mut ChaCha8Rng,
        inputs: usize,
        outputs: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        match *self {
            Init::Normal { std } => {
                let normal = Normal::new(0.0, std).expect("a finite, non-negative std");
                let w = (0..inputs * outputs).map(|_| normal.sample(rng)).collect();
                (w, vec![0.0; outputs])
            }
            Init::Kaiming => {
                let std = (2.0 / inputs as f64).sqrt();
                Init::Normal { std }.dense(rng, inputs, outputs)
            }
            Init::PyTorch => {
                let bound = 1.0 / (inputs as f64).sqrt();
                let w = (0..inputs * outputs).map(|_| rng.random_range(-bound..bound)).collect();
                let b = (0..outputs).map(|_| rng.random_range(-bound..bound)).collect();
                (w, b)
            }
        }
    }
}

/// Independent random streams of one seed, so that adding feedback weights never changes the
/// forward weights drawn for the same seed.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// Forward weights and biases.
    Forward,
    /// Backward (feedback) matrices.
    Feedback,
}

/// The generator for one stream of a seed (ChaCha8: the same numbers on every platform).
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(match stream {
        Stream::Forward => 0,
        Stream::Feedback => 1,
    });
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaiming_draws_have_variance_two_over_fan_in_and_zero_biases() {
        let (w, b) = Init::Kaiming.dense(&mut rng(7, Stream::Forward), 200, 300);
        let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        // 60000 draws: the sample variance is within a few percent of 2 / 200.
        assert!((var / 0.01 - 1.0).abs() < 0.03, "{var}");
        assert!(b.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn draws_are_reproducible_and_streams_independent() {
        let a = Init::papers().dense(&mut rng(3, Stream::Forward), 4, 5);
        let b = Init::papers().dense(&mut rng(3, Stream::Forward), 4, 5);
        let c = Init::papers().dense(&mut rng(3, Stream::Feedback), 4, 5);
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
        assert!(a.1.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn pytorch_default_is_bounded_by_inverse_sqrt_fan_in() {
        let (w, b) = Init::PyTorch.dense(&mut rng(1, Stream::Forward), 100, 50);
        assert!(w.iter().chain(&b).all(|x| x.abs() < 0.1));
        let mean = w.iter().sum::<f64>() / w.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
    }

    #[test]
    fn normal_std_matches() {
        let (w, _) = Init::Normal { std: 0.05 }.dense(&mut rng(9, Stream::Forward), 200, 200);
        let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        assert!((var.sqrt() - 0.05).abs() < 0.002, "{}", var.sqrt());
    }
}
