//! CIFAR-10 and CIFAR-100 binary files: round trips through both folder layouts, and errors.

use crate::common::{cifar_records, random_bytes, TempDir};
use ar_data::{
    load, parse_cifar10, parse_cifar100, read_cifar10, read_cifar100, Split, CIFAR10_CLASSES,
};
use std::path::Path;

#[test]
fn cifar10_reads_five_training_batches_in_order_and_the_test_batch() {
    let dir = TempDir::new("cifar10");
    let pixels = random_bytes(12 * 3072, 10);
    let mut expected_labels = Vec::new();
    for k in 0..5 {
        let labels = [(2 * k) as u8, (2 * k + 1) as u8];
        expected_labels.extend_from_slice(&labels);
        let recs =
            cifar_records(&[&labels[..1], &labels[1..]], &pixels[2 * k * 3072..(2 * k + 2) * 3072]);
        dir.write(&format!("cifar-10-batches-bin/data_batch_{}.bin", k + 1), &recs);
    }
    dir.write(
        "cifar-10-batches-bin/test_batch.bin",
        &cifar_records(&[&[3], &[9]], &pixels[10 * 3072..]),
    );
    let train = read_cifar10(dir.path(), Split::Train).unwrap();
    assert_eq!(train.labels, expected_labels);
    assert_eq!(train.pixels().unwrap(), &pixels[..10 * 3072]);
    assert_eq!((train.shape, train.num_classes), ([3, 32, 32], 10));
    assert_eq!(train.class_names, CIFAR10_CLASSES.to_vec());
    let test = load("cifar10", dir.path(), Split::Test).unwrap();
    assert_eq!(test.labels, vec![3, 9]);
    assert_eq!(test.pixels().unwrap(), &pixels[10 * 3072..]);
    // The red plane comes first: pixel (c=0, y=0, x=1) is the record's second pixel byte.
    assert_eq!(test.pixels().unwrap()[1], pixels[10 * 3072 + 1]);
}

#[test]
fn cifar100_keeps_the_fine_label_and_accepts_files_directly_in_the_directory() {
    let dir = TempDir::new("cifar100");
    let pixels = random_bytes(3 * 3072, 11);
    dir.write("train.bin", &cifar_records(&[&[19, 99], &[0, 0], &[7, 42]], &pixels));
    let d = read_cifar100(dir.path(), Split::Train).unwrap();
    assert_eq!(d.labels, vec![99, 0, 42]);
    assert_eq!(d.pixels().unwrap(), pixels);
    assert_eq!((d.num_classes, d.class_names.len()), (100, 100));
    assert_eq!(d.class_names[d.labels[0] as usize], "worm");
}

#[test]
fn partial_records_and_out_of_range_labels_are_errors() {
    let p = Path::new("cifar/data_batch_1.bin");
    let two = cifar_records(&[&[1], &[2]], &random_bytes(2 * 3072, 12));
    let err = parse_cifar10(&two[..two.len() - 5], p).unwrap_err().to_string();
    assert!(err.contains("cifar/data_batch_1.bin") && err.contains("3073-byte records"), "{err}");
    assert!(err.contains("1 records and 3068 bytes left over"), "{err}");
    assert!(parse_cifar10(&[], p).unwrap_err().to_string().contains("empty"));
    let bad = cifar_records(&[&[1], &[10]], &random_bytes(2 * 3072, 12));
    let err = parse_cifar10(&bad, p).unwrap_err().to_string();
    assert!(err.contains("label 10 of sample 1 is out of range"), "{err}");
    // The same bytes are not whole CIFAR-100 records (3074 bytes each).
    assert!(parse_cifar100(&two, p).unwrap_err().to_string().contains("3074-byte records"));
    let coarse = cifar_records(&[&[20, 5]], &random_bytes(3072, 13));
    assert!(parse_cifar100(&coarse, p)
        .unwrap_err()
        .to_string()
        .contains("coarse label 20 of record 0"));
    let fine = cifar_records(&[&[2, 100]], &random_bytes(3072, 13));
    assert!(parse_cifar100(&fine, p)
        .unwrap_err()
        .to_string()
        .contains("label 100 of sample 0 is out of range"));
}
