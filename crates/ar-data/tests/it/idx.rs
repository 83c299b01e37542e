//! IDX (MNIST, Fashion-MNIST): round trips through raw and gzip files, and the error messages.

use crate::common::{gzip, idx_images, idx_labels, random_bytes, TempDir};
use ar_data::{
    parse_idx_images, parse_idx_labels, read_mnist_like, DataError, Split, FASHION_MNIST_CLASSES,
};
use std::path::Path;

const SIDE: u32 = 28;
const PIXELS: usize = 28 * 28;

fn write_split(dir: &TempDir, prefix: &str, pixels: &[u8], labels: &[u8], gz: bool) {
    let images = idx_images(labels.len() as u32, SIDE, SIDE, pixels);
    let labels = idx_labels(labels);
    let (images, labels, ext) =
        if gz { (gzip(&images), gzip(&labels), ".gz") } else { (images, labels, "") };
    dir.write(&format!("{prefix}-images-idx3-ubyte{ext}"), &images);
    dir.write(&format!("{prefix}-labels-idx1-ubyte{ext}"), &labels);
}

#[test]
fn mnist_round_trips_through_raw_files() {
    let dir = TempDir::new("mnist-raw");
    let pixels = random_bytes(3 * PIXELS, 1);
    write_split(&dir, "train", &pixels, &[7, 0, 9], false);
    write_split(&dir, "t10k", &pixels[..PIXELS], &[4], false);
    let train = read_mnist_like(dir.path(), "mnist", Split::Train).unwrap();
    assert_eq!(train.name, "mnist");
    assert_eq!(train.shape, [1, 28, 28]);
    assert_eq!(train.labels, vec![7, 0, 9]);
    assert_eq!(train.pixels().unwrap(), pixels);
    assert_eq!(train.num_classes, 10);
    assert_eq!(train.class_names[3], "3");
    let test = read_mnist_like(dir.path(), "mnist", Split::Test).unwrap();
    assert_eq!((test.labels.as_slice(), test.pixels().unwrap()), (&[4u8][..], &pixels[..PIXELS]));
}

#[test]
fn fashion_mnist_round_trips_through_gzip_files_with_class_names() {
    let dir = TempDir::new("fashion-gz");
    let pixels = random_bytes(3 * PIXELS, 2);
    write_split(&dir, "t10k", &pixels, &[9, 0, 5], true);
    let d = read_mnist_like(dir.path(), "fashion-mnist", Split::Test).unwrap();
    assert_eq!(d.pixels().unwrap(), pixels);
    assert_eq!(d.labels, vec![9, 0, 5]);
    assert_eq!(d.class_names, FASHION_MNIST_CLASSES.to_vec());
    assert_eq!(d.class_names[9], "Ankle boot");
    // The training files are absent.
    assert!(matches!(
        read_mnist_like(dir.path(), "fashion-mnist", Split::Train),
        Err(DataError::Missing { .. })
    ));
}

#[test]
fn a_gz_named_file_holding_raw_bytes_is_still_read() {
    let dir = TempDir::new("mnist-misnamed");
    let pixels = random_bytes(PIXELS, 3);
    dir.write("train-images-idx3-ubyte.gz", &idx_images(1, SIDE, SIDE, &pixels));
    dir.write("train-labels-idx1-ubyte.gz", &idx_labels(&[2]));
    assert_eq!(read_mnist_like(dir.path(), "mnist", Split::Train).unwrap().labels, vec![2]);
}

#[test]
fn wrong_magic_names_the_file_and_both_magics() {
    let p = Path::new("dir/train-images-idx3-ubyte");
    let err = parse_idx_images(&idx_labels(&[1, 2]), p).unwrap_err().to_string();
    assert!(err.contains("dir/train-images-idx3-ubyte"), "{err}");
    assert!(err.contains("expected 2051") && err.contains("found 2049"), "{err}");
    let err = parse_idx_labels(&idx_images(1, 1, 1, &[0]), Path::new("l")).unwrap_err().to_string();
    assert!(err.contains("expected 2049") && err.contains("found 2051"), "{err}");
    // A wrong type code (0x0d = float) in the third byte.
    let mut floats = idx_images(1, 1, 1, &[0]);
    floats[2] = 0x0d;
    let err = parse_idx_images(&floats, p).unwrap_err().to_string();
    assert!(err.contains("found 3331") && err.contains("00 00 0d 03"), "{err}");
}

#[test]
fn truncated_and_oversized_files_are_errors() {
    let p = Path::new("imgs");
    let full = idx_images(2, 3, 3, &[1; 18]);
    let err = parse_idx_images(&full[..full.len() - 1], p).unwrap_err().to_string();
    assert!(
        err.contains("imgs") && err.contains("truncated") && err.contains("2 images of 3x3"),
        "{err}"
    );
    let err = parse_idx_images(&full[..10], p).unwrap_err().to_string();
    assert!(err.contains("truncated header"), "{err}");
    let err = parse_idx_images(&full[..2], p).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    let mut long = full.clone();
    long.push(0);
    assert!(parse_idx_images(&long, p).unwrap_err().to_string().contains("1 unexpected bytes"));
    let huge = idx_images(u32::MAX, u32::MAX, u32::MAX, &[0; 8]);
    assert!(parse_idx_images(&huge, p).is_err());
    let err =
        parse_idx_labels(&idx_labels(&[1, 2, 3])[..10], Path::new("labs")).unwrap_err().to_string();
    assert!(err.contains("labs") && err.contains("truncated") && err.contains("3 labels"), "{err}");
    let err = parse_idx_images(&gzip(&full)[..20], p).unwrap_err().to_string();
    assert!(err.contains("gzip"), "{err}");
}

#[test]
fn count_mismatch_bad_labels_and_wrong_size_are_errors() {
    let dir = TempDir::new("mnist-bad");
    let pixels = random_bytes(3 * PIXELS, 4);
    dir.write("train-images-idx3-ubyte", &idx_images(3, SIDE, SIDE, &pixels));
    let labels = dir.write("train-labels-idx1-ubyte", &idx_labels(&[1, 2]));
    let err = read_mnist_like(dir.path(), "mnist", Split::Train).unwrap_err().to_string();
    assert!(
        err.contains(&labels.display().to_string()) && err.contains("2 labels for 3 images"),
        "{err}"
    );

    dir.write("train-labels-idx1-ubyte", &idx_labels(&[1, 10, 2]));
    let err = read_mnist_like(dir.path(), "mnist", Split::Train).unwrap_err().to_string();
    assert!(
        err.contains("train-labels-idx1-ubyte")
            && err.contains("label 10 of sample 1 is out of range"),
        "{err}"
    );

    dir.write("train-images-idx3-ubyte", &idx_images(3, 27, 29, &pixels[..3 * 27 * 29]));
    dir.write("train-labels-idx1-ubyte", &idx_labels(&[1, 2, 3]));
    let err = read_mnist_like(dir.path(), "mnist", Split::Train).unwrap_err().to_string();
    assert!(err.contains("must be 28x28, found 27x29"), "{err}");

    dir.write("train-images-idx3-ubyte", &idx_images(0, SIDE, SIDE, &[]));
    dir.write("train-labels-idx1-ubyte", &idx_labels(&[]));
    assert!(read_mnist_like(dir.path(), "mnist", Split::Train)
        .unwrap_err()
        .to_string()
        .contains("no images"));

    assert!(matches!(
        read_mnist_like(dir.path(), "cifar10", Split::Train),
        Err(DataError::Invalid(_))
    ));
}
