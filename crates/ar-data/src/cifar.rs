//! CIFAR-10 and CIFAR-100 "binary version" files: fixed-size records of label bytes then
//! 3072 pixel bytes (the R, G and B planes of a 32x32 image, which is already CHW).

use crate::files::read_file;
use crate::idx::check_labels;
use crate::sets::{locate, Split};
use crate::{DataError, Dataset};
use std::path::Path;

/// Pixel bytes per CIFAR image: 3 planes of 32x32.
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// The CIFAR-10 class names, by label.
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The CIFAR-100 fine class names, by fine label (the order of `fine_label_names.txt`).
#[rustfmt::skip]
pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
    "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
    "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman",
    "worm",
];

/// Splits a CIFAR batch file into `(pixels, labels)`. Each record is `label_bytes` label bytes,
/// of which the last is kept, then [`CIFAR_IMAGE_BYTES`] pixels. Earlier label bytes must be
/// below `other_label_limits` (the coarse CIFAR-100 label below 20).
fn parse_records(
    bytes: &[u8],
    path: &Path,
    label_bytes: usize,
    classes: usize,
    other_label_limits: &[(usize, &str)],
) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let record = label_bytes + CIFAR_IMAGE_BYTES;
    if bytes.is_empty() {
        return Err(DataError::format(path, "empty file: no records"));
    }
    if !bytes.len().is_multiple_of(record) {
        return Err(DataError::format(
            path,
            format!(
                "size {} is not a whole number of {record}-byte records ({} records and {} bytes left over; truncated or not a CIFAR file)",
                bytes.len(),
                bytes.len() / record,
                bytes.len() % record
            ),
        ));
    }
    let n = bytes.len() / record;
    let mut pixels = Vec::with_capacity(n * CIFAR_IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        for (k, &(limit, what)) in other_label_limits.iter().enumerate() {
            if usize::from(rec[k]) >= limit {
                return Err(DataError::format(
                    path,
                    format!(
                        "{what} label {} of record {i} is out of range (expected 0..={})",
                        rec[k],
                        limit - 1
                    ),
                ));
            }
        }
        labels.push(rec[label_bytes - 1]);
        pixels.extend_from_slice(&rec[label_bytes..]);
    }
    check_labels(&labels, classes, path)?;
    Ok((pixels, labels))
}

/// Parses one CIFAR-10 batch file (records of 1 label byte + 3072 pixels) into
/// `(pixels, labels)`; `path` only names the source in errors.
pub fn parse_cifar10(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    parse_records(bytes, path, 1, 10, &[])
}

/// Parses one CIFAR-100 file (records of a coarse and a fine label byte + 3072 pixels) into
/// `(pixels, fine labels)`; `path` only names the source in errors.
pub fn parse_cifar100(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    parse_records(bytes, path, 2, 100, &[(20, "coarse")])
}

/// A parser of one CIFAR file into `(pixels, labels)`.
type ParseFn = fn(&[u8], &Path) -> Result<(Vec<u8>, Vec<u8>), DataError>;

fn read_batches(
    name: &str,
    dir: &Path,
    split: Split,
    parse: ParseFn,
    class_names: &[&str],
) -> Result<Dataset, DataError> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for path in locate(name, dir, split)? {
        let (p, l) = parse(&read_file(&path)?, &path)?;
        pixels.extend_from_slice(&p);
        labels.extend_from_slice(&l);
    }
    let class_names = class_names.iter().map(|s| s.to_string()).collect();
    Ok(Dataset::from_pixels(name, pixels, 255, labels, [3, 32, 32], class_names))
}

/// Reads CIFAR-10 from `dir/cifar-10-batches-bin/` (or from `dir` itself): `data_batch_1.bin`
/// to `data_batch_5.bin` for [`Split::Train`], `test_batch.bin` for [`Split::Test`].
pub fn read_cifar10(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    read_batches("cifar10", dir, split, parse_cifar10, &CIFAR10_CLASSES)
}

/// Reads CIFAR-100 (fine labels, 100 classes) from `dir/cifar-100-binary/` (or from `dir`
/// itself): `train.bin` or `test.bin`.
pub fn read_cifar100(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    read_batches("cifar100", dir, split, parse_cifar100, &CIFAR100_CLASSES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cifar100_names_are_the_hundred_sorted_fine_labels() {
        assert!(CIFAR100_CLASSES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(CIFAR100_CLASSES[19], "cattle");
        assert_eq!(CIFAR100_CLASSES[99], "worm");
    }
}
