//! The in-memory data set value, normalisation, stratified splits and seeded batch orders.

use crate::DataError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A labelled data set held in memory: raw pixels as read from a data set's files, or float
/// features handed over by a program (such as numpy arrays from Python).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Short name (`digits`, `mnist`, ...).
    pub name: String,
    /// `len() * channels * height * width` values, sample-major, each sample channel-major
    /// (CHW, PyTorch's layout).
    pub samples: Samples,
    /// One class index per sample, below `num_classes`.
    pub labels: Vec<u8>,
    /// `[channels, height, width]` of one sample.
    pub shape: [usize; 3],
    /// The number of classes.
    pub num_classes: usize,
    /// A name per class.
    pub class_names: Vec<String>,
}

/// The values of a [`Dataset`]'s samples.
#[derive(Clone, Debug, PartialEq)]
pub enum Samples {
    /// Raw 8-bit pixels, scaled by a [`Normalization`] on the way to the network.
    Pixels {
        /// The pixel values.
        values: Vec<u8>,
        /// The largest possible raw value (16 for digits, 255 for 8-bit images).
        max: u8,
    },
    /// Features in single precision, used as they are (the unit-interval normalisation passes
    /// them through; the others treat them as values already scaled to [0, 1]).
    F32(Vec<f32>),
    /// Features in double precision, used as they are.
    F64(Vec<f64>),
}

impl Samples {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Samples::Pixels { values, .. } => values.len(),
            Samples::F32(v) => v.len(),
            Samples::F64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` scaled to [0, 1] for pixels, as it is for features.
    fn unit(&self, i: usize) -> f64 {
        match self {
            Samples::Pixels { values, max } => f64::from(values[i]) / f64::from(*max),
            Samples::F32(v) => f64::from(v[i]),
            Samples::F64(v) => v[i],
        }
    }

    /// Values `range` as a new value of the same kind.
    fn slice(&self, range: std::ops::Range<usize>) -> Samples {
        match self {
            Samples::Pixels { values, max } => {
                Samples::Pixels { values: values[range].to_vec(), max: *max }
            }
            Samples::F32(v) => Samples::F32(v[range].to_vec()),
            Samples::F64(v) => Samples::F64(v[range].to_vec()),
        }
    }

    /// Appends `other` (of the same kind) to these values.
    fn extend(&mut self, other: Samples) {
        match (self, other) {
            (Samples::Pixels { values, .. }, Samples::Pixels { values: more, .. }) => {
                values.extend(more)
            }
            (Samples::F32(v), Samples::F32(more)) => v.extend(more),
            (Samples::F64(v), Samples::F64(more)) => v.extend(more),
            _ => unreachable!("samples of one data set are of one kind"),
        }
    }
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

    /// A data set of pixels read from files: `pixels` sample-major, each in `0..=max_pixel`.
    pub fn from_pixels(
        name: &str,
        pixels: Vec<u8>,
        max_pixel: u8,
        labels: Vec<u8>,
        shape: [usize; 3],
        class_names: Vec<String>,
    ) -> Dataset {
        Dataset {
            name: name.into(),
            samples: Samples::Pixels { values: pixels, max: max_pixel },
            labels,
            shape,
            num_classes: class_names.len(),
            class_names,
        }
    }

    /// A data set of float features (`samples` sample-major, `shape` per sample) and labels
    /// below `num_classes`, checked: the sizes must agree, every value be finite and every
    /// label in range; errors name the first offending sample.
    pub fn from_features(
        name: &str,
        samples: Samples,
        labels: Vec<u8>,
        shape: [usize; 3],
        num_classes: usize,
    ) -> Result<Dataset, DataError> {
        let per = shape.iter().product::<usize>();
        if per == 0 || num_classes == 0 || labels.is_empty() {
            return Err(DataError::Invalid(format!(
                "{name}: needs at least one sample, one value per sample and one class \
                 (got {} samples of shape {shape:?}, {num_classes} classes)",
                labels.len()
            )));
        }
        if samples.len() != labels.len() * per {
            return Err(DataError::Invalid(format!(
                "{name}: {} labels need {} values ({per} per sample), got {}",
                labels.len(),
                labels.len() * per,
                samples.len()
            )));
        }
        if let Some(i) = (0..samples.len()).find(|&i| !samples.unit(i).is_finite()) {
            return Err(DataError::Invalid(format!(
                "{name}: sample {} holds a non-finite value ({})",
                i / per,
                samples.unit(i)
            )));
        }
        if let Some(i) = labels.iter().position(|&l| usize::from(l) >= num_classes) {
            return Err(DataError::Invalid(format!(
                "{name}: label {} of sample {i} is not below the {num_classes} classes",
                labels[i]
            )));
        }
        Ok(Dataset {
            name: name.into(),
            samples,
            labels,
            shape,
            num_classes,
            class_names: (0..num_classes).map(|c| c.to_string()).collect(),
        })
    }

    /// The raw pixels, for a data set read from files.
    pub fn pixels(&self) -> Option<&[u8]> {
        match &self.samples {
            Samples::Pixels { values, .. } => Some(values),
            _ => None,
        }
    }

    /// Values per sample (`channels * height * width`).
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The normalised pixels of the given samples, row-major `[indices.len(), sample_len()]`.
    pub fn features(&self, indices: &[usize], norm: &Normalization) -> Vec<f64> {
        let n = self.sample_len();
        let plane = self.shape[1] * self.shape[2];
        let mut out = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            for j in 0..n {
                let x = self.samples.unit(i * n + j);
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

    /// Per-channel mean and standard deviation of the [0, 1]-scaled pixels (of features as they
    /// are), for [`Normalization::Standardize`].
    pub fn channel_stats(&self) -> (Vec<f64>, Vec<f64>) {
        let [c, h, w] = self.shape;
        let (mut sum, mut sq) = (vec![0.0; c], vec![0.0; c]);
        for j in 0..self.samples.len() {
            let ch = (j / (h * w)) % c;
            let x = self.samples.unit(j);
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
        let mut samples = self.samples.slice(0..0);
        for &i in indices {
            samples.extend(self.samples.slice(i * n..(i + 1) * n));
        }
        Dataset {
            samples,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone_header()
        }
    }

    fn clone_header(&self) -> Dataset {
        Dataset {
            name: self.name.clone(),
            samples: self.samples.slice(0..0),
            labels: Vec::new(),
            shape: self.shape,
            num_classes: self.num_classes,
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
    /// A shuffled order of `0..len` for epoch `epoch` (counted from 0: a run's metrics call it
    /// epoch `epoch + 1`) of a run seeded with `seed`, in batches of `batch_size` (the last
    /// batch may be smaller). Panics if `batch_size` is zero.
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
    fn feature_data_sets_pass_values_through_and_refuse_bad_ones() {
        let values = vec![0.5f32, -2.0, 3.25, 7.0, 0.0, 1.0];
        let d =
            Dataset::from_features("x", Samples::F32(values), vec![1, 0, 2], [2, 1, 1], 3).unwrap();
        assert_eq!(d.features(&[2, 0], &Normalization::UnitInterval), vec![0.0, 1.0, 0.5, -2.0]);
        assert_eq!(d.subset(&[1]).samples, Samples::F32(vec![3.25, 7.0]));
        assert_eq!(d.one_hot(&[0]), vec![0.0, 1.0, 0.0]);
        let bad = |samples, labels: Vec<u8>| {
            Dataset::from_features("x", samples, labels, [2, 1, 1], 3).unwrap_err().to_string()
        };
        let e = bad(Samples::F64(vec![0.0, 1.0, f64::NAN, 0.0]), vec![0, 0]);
        assert!(e.contains("sample 1") && e.contains("NaN"), "{e}");
        let e = bad(Samples::F64(vec![0.0; 4]), vec![0, 3]);
        assert!(e.contains("label 3 of sample 1"), "{e}");
        let e = bad(Samples::F64(vec![0.0; 5]), vec![0, 1]);
        assert!(e.contains("need 4 values") && e.contains("got 5"), "{e}");
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
