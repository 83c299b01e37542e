//! The in-memory data set value, normalisation, stratified splits and seeded batch orders.

use crate::DataError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A labelled image data set held in memory as raw pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Short name (`digits`, `mnist`, ...).
    pub name: String,
    /// `len() * channels * height * width` raw values, sample-major, each sample channel-major
    /// (CHW, PyTorch's layout).
    pub pixels: Vec<u8>,
    /// One class index per sample, below `num_classes`.
    pub labels: Vec<u8>,
    /// `[channels, height, width]` of one sample.
    pub shape: [usize; 3],
    /// The number of classes.
    pub num_classes: usize,
    /// The largest possible raw pixel value (16 for digits, 255 for 8-bit images).
    pub max_pixel: u8,
    /// A name per class.
    pub class_names: Vec<String>,
}

/// How raw pixels become network inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Normalization {
    /// `x / max_pixel`, in [0, 1] (paper 1).
    UnitInterval,
    /// `2 x / max_pixel - 1`, in [-1, 1] (paper 2).
    Symmetric,
    /// `(x / max_pixel - mean[c]) / std[c]` per channel `c`.
    Standardize {
        /// Per-channel mean of the [0, 1]-scaled pixels.
        mean: Vec<f64>,
        /// Per-channel standard deviation of the [0, 1]-scaled pixels.
        std: Vec<f64>,
    },
}

impl Dataset {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per sample (`channels * height * width`).
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The normalised pixels of the given samples, row-major `[indices.len(), sample_len()]`.
    pub fn features(&self, indices: &[usize], norm: &Normalization) -> Vec<f64> {
        let n = self.sample_len();
        let plane = self.shape[1] * self.shape[2];
        let max = f64::from(self.max_pixel);
        let mut out = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            for (j, &p) in self.pixels[i * n..(i + 1) * n].iter().enumerate() {
                let x = f64::from(p) / max;
                out.push(match norm {
                    Normalization::UnitInterval => x,
                    Normalization::Symmetric => 2.0 * x - 1.0,
                    Normalization::Standardize { mean, std } => {
                        let c = j / plane;
                        (x - mean[c]) / std[c]
                    }
                });
            }
        }
        out
    }

    /// One-hot targets of the given samples, row-major `[indices.len(), num_classes]`.
    pub fn one_hot(&self, indices: &[usize]) -> Vec<f64> {
        let mut out = vec![0.0; indices.len() * self.num_classes];
        for (row, &i) in indices.iter().enumerate() {
            out[row * self.num_classes + usize::from(self.labels[i])] = 1.0;
        }
        out
    }

    /// Per-channel mean and standard deviation of the [0, 1]-scaled pixels, for
    /// [`Normalization::Standardize`].
    pub fn channel_stats(&self) -> (Vec<f64>, Vec<f64>) {
        let [c, h, w] = self.shape;
        let max = f64::from(self.max_pixel);
        let (mut sum, mut sq) = (vec![0.0; c], vec![0.0; c]);
        for (j, &p) in self.pixels.iter().enumerate() {
            let ch = (j / (h * w)) % c;
            let x = f64::from(p) / max;
            sum[ch] += x;
            sq[ch] += x * x;
        }
        let count = (self.len() * h * w).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let std =
            sq.iter().zip(&mean).map(|(s, m)| (s / count - m * m).max(1e-12).sqrt()).collect();
        (mean, std)
    }

    /// The samples at `indices`, in that order, as a new data set.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let n = self.sample_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * n..(i + 1) * n]);
        }
        Dataset {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone_header()
        }
    }

    fn clone_header(&self) -> Dataset {
        Dataset {
            name: self.name.clone(),
            pixels: Vec::new(),
            labels: Vec::new(),
            shape: self.shape,
            num_classes: self.num_classes,
            max_pixel: self.max_pixel,
            class_names: self.class_names.clone(),
        }
    }

    /// Splits into `(rest, held_out)` with `held_out_fraction` of every class held out (rounded,
    /// at least one sample of each class with two or more), chosen by a seeded shuffle. The same
    /// data and seed always give the same split.
    pub fn split_stratified(
        &self,
        held_out_fraction: f64,
        seed: u64,
    ) -> Result<(Dataset, Dataset), DataError> {
        if !(held_out_fraction > 0.0 && held_out_fraction < 1.0) {
            return Err(DataError::Invalid(format!(
                "held-out fraction must lie strictly between 0 and 1, got {held_out_fraction}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut rest, mut held) = (Vec::new(), Vec::new());
        for class in 0..self.num_classes {
            let mut members: Vec<usize> =
                (0..self.len()).filter(|&i| usize::from(self.labels[i]) == class).collect();
            members.shuffle(&mut rng);
            let mut k = (members.len() as f64 * held_out_fraction).round() as usize;
            if members.len() >= 2 {
                k = k.clamp(1, members.len() - 1);
            }
            held.extend_from_slice(&members[..k]);
            rest.extend_from_slice(&members[k..]);
        }
        rest.sort_unstable();
        held.sort_unstable();
        if rest.is_empty() || held.is_empty() {
            return Err(DataError::Invalid(format!(
                "a {held_out_fraction} split of {} samples leaves one side empty",
                self.len()
            )));
        }
        Ok((self.subset(&rest), self.subset(&held)))
    }
}

/// The order in which one epoch visits a data set: a seeded shuffle cut into batches. The order
/// depends only on `(seed, epoch)`, so a resumed run sees the same batches.
#[derive(Clone, Debug)]
pub struct BatchOrder {
    order: Vec<usize>,
    batch_size: usize,
}

impl BatchOrder {
    /// A shuffled order of `0..len` for epoch `epoch` of a run seeded with `seed`, in batches of
    /// `batch_size` (the last batch may be smaller). Panics if `batch_size` is zero.
    pub fn shuffled(len: usize, batch_size: usize, seed: u64, epoch: u64) -> Self {
        assert!(batch_size > 0, "batch size must be positive");
        let mut order: Vec<usize> = (0..len).collect();
        let mixed = seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(mixed));
        BatchOrder { order, batch_size }
    }

    /// `0..len` in order, in batches (for evaluation).
    pub fn sequential(len: usize, batch_size: usize) -> Self {
        assert!(batch_size > 0, "batch size must be positive");
        BatchOrder { order: (0..len).collect(), batch_size }
    }

    /// The batches, as slices of sample indices.
    pub fn batches(&self) -> impl Iterator<Item = &[usize]> {
        self.order.chunks(self.batch_size)
    }

    /// The number of batches.
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digits_bundled;

    #[test]
    fn stratified_split_is_deterministic_disjoint_and_balanced() {
        let d = digits_bundled();
        let (train, test) = d.split_stratified(0.2, 7).unwrap();
        assert_eq!(train.len() + test.len(), d.len());
        assert_eq!(d.split_stratified(0.2, 7).unwrap().1, test);
        assert_ne!(d.split_stratified(0.2, 8).unwrap().1, test);
        for class in 0..10u8 {
            let total = d.labels.iter().filter(|&&l| l == class).count() as f64;
            let held = test.labels.iter().filter(|&&l| l == class).count() as f64;
            assert!((held - 0.2 * total).abs() <= 0.5, "class {class}: {held} of {total}");
        }
        assert!(d.split_stratified(1.0, 0).is_err());
    }

    #[test]
    fn normalisations_map_pixel_ranges() {
        let d = digits_bundled();
        let idx = [0, 1];
        let unit = d.features(&idx, &Normalization::UnitInterval);
        let sym = d.features(&idx, &Normalization::Symmetric);
        assert_eq!(unit.len(), 128);
        assert!(unit.iter().all(|&x| (0.0..=1.0).contains(&x)));
        assert!(unit.iter().zip(&sym).all(|(u, s)| (2.0 * u - 1.0 - s).abs() < 1e-15));
        assert_eq!(unit[2], 5.0 / 16.0);
        let (mean, std) = d.channel_stats();
        let z = d
            .features(&(0..d.len()).collect::<Vec<_>>(), &Normalization::Standardize { mean, std });
        let m = z.iter().sum::<f64>() / z.len() as f64;
        assert!(m.abs() < 1e-9, "standardised mean {m}");
        let hot = d.one_hot(&idx);
        assert_eq!(hot.iter().sum::<f64>(), 2.0);
        assert_eq!(hot[usize::from(d.labels[1]) + 10], 1.0);
    }

    #[test]
    fn batch_orders_cover_every_sample_once_and_depend_on_seed_and_epoch() {
        let a = BatchOrder::shuffled(10, 4, 1, 0);
        let sizes: Vec<usize> = a.batches().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(a.num_batches(), 3);
        let mut seen: Vec<usize> = a.batches().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let again: Vec<usize> =
            BatchOrder::shuffled(10, 4, 1, 0).batches().flatten().copied().collect();
        let other_epoch: Vec<usize> =
            BatchOrder::shuffled(10, 4, 1, 1).batches().flatten().copied().collect();
        let first: Vec<usize> = a.batches().flatten().copied().collect();
        assert_eq!(first, again);
        assert_ne!(first, other_epoch);
    }
}
