//! SVHN MAT-files: files from scipy.io.savemat (tests/fixtures), files from the tests' own
//! writer in both byte orders, compressed and not, and the error messages.

use crate::common::{svhn_mat, svhn_sample, MatArray, MatData, MatWriter, TempDir};
use ar_data::mat::parse_mat;
use ar_data::{load, parse_svhn, read_svhn_file, Split};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The facts `make_svhn_fixtures.py` recorded: labels, `(n, c, y, x, value)` picks, checksum.
struct Expected {
    labels: Vec<u8>,
    picks: Vec<[usize; 5]>,
    checksum: u64,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture("svhn_small_expected.txt")).unwrap();
    let mut e = Expected { labels: Vec::new(), picks: Vec::new(), checksum: 0 };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap();
        let nums: Vec<u64> = words.map(|w| w.parse().unwrap()).collect();
        match key {
            "labels" => e.labels = nums.iter().map(|&v| v as u8).collect(),
            "pixel" => e.picks.push([0, 1, 2, 3, 4].map(|k| nums[k] as usize)),
            "checksum" => e.checksum = nums[0],
            _ => {}
        }
    }
    assert!(!e.labels.is_empty() && !e.picks.is_empty() && e.checksum != 0);
    e
}

#[test]
fn scipy_written_files_read_back_exactly_compressed_or_not() {
    let e = expected();
    let plain = read_svhn_file(&fixture("svhn_small_plain.mat")).unwrap();
    let compressed = read_svhn_file(&fixture("svhn_small_compressed.mat")).unwrap();
    assert_eq!(plain, compressed);
    assert_eq!(plain.labels, e.labels);
    assert!(plain.labels.contains(&0), "a raw label 10 became 0");
    assert_eq!(plain.shape, [3, 32, 32]);
    for [n, c, y, x, value] in e.picks {
        assert_eq!(
            usize::from(plain.pixels().unwrap()[n * 3072 + c * 1024 + y * 32 + x]),
            value,
            "pixel n={n} c={c} y={y} x={x}"
        );
    }
    let checksum: u64 = plain
        .pixels()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, &p)| u64::from(p) * (i as u64 % 251 + 1))
        .sum();
    assert_eq!(checksum, e.checksum);
    let mat =
        parse_mat(&std::fs::read(fixture("svhn_small_compressed.mat")).unwrap(), Path::new("f"))
            .unwrap();
    assert!(!mat.big_endian);
    let x = mat.get("X").unwrap();
    assert_eq!((x.class_name(), x.dims.as_slice()), ("uint8", &[32, 32, 3, 5][..]));
    assert_eq!(mat.get("y").unwrap().class_name(), "double");
}

#[test]
fn own_writer_round_trips_in_both_byte_orders_compressed_or_not() {
    let sample = svhn_sample(3, 20);
    for big_endian in [false, true] {
        for compress in [false, true] {
            let bytes = svhn_mat(&sample, &MatWriter { big_endian, compress });
            let d = parse_svhn(&bytes, Path::new("t.mat")).unwrap();
            assert_eq!(
                d.pixels().unwrap(),
                sample.chw,
                "big_endian={big_endian} compress={compress}"
            );
            assert_eq!(d.labels, vec![0, 1, 2]);
            assert_eq!(parse_mat(&bytes, Path::new("t.mat")).unwrap().big_endian, big_endian);
        }
    }
}

#[test]
fn labels_stored_narrower_than_their_class_and_a_single_image_are_read() {
    // MATLAB stores whole doubles as miUINT8; it also drops a trailing singleton dimension.
    let sample = svhn_sample(1, 21);
    let bytes = MatWriter { big_endian: false, compress: false }.write(&[
        MatArray { name: "y", class: 6, dims: vec![1, 1], data: MatData::U8(vec![10]) },
        MatArray {
            name: "X",
            class: 9,
            dims: vec![32, 32, 3],
            data: MatData::U8(sample.x.clone()),
        },
    ]);
    let d = parse_svhn(&bytes, Path::new("one.mat")).unwrap();
    assert_eq!((d.labels.as_slice(), d.pixels().unwrap()), (&[0u8][..], &sample.chw[..]));
}

#[test]
fn load_finds_the_split_files() {
    let dir = TempDir::new("svhn");
    let sample = svhn_sample(2, 22);
    dir.write(
        "test_32x32.mat",
        &svhn_mat(&sample, &MatWriter { big_endian: false, compress: true }),
    );
    let d = load("svhn", dir.path(), Split::Test).unwrap();
    assert_eq!((d.name.as_str(), d.pixels().unwrap().len(), d.num_classes), ("svhn", 2 * 3072, 10));
    let err = load("svhn", dir.path(), Split::Train).unwrap_err().to_string();
    assert!(
        err.contains("train_32x32.mat") && err.contains("cargo xtask data fetch svhn"),
        "{err}"
    );
}

fn svhn_err(arrays: &[MatArray]) -> String {
    let bytes = MatWriter { big_endian: false, compress: false }.write(arrays);
    parse_svhn(&bytes, Path::new("dir/bad.mat")).unwrap_err().to_string()
}

fn x(n: u32, dims: Vec<u32>) -> MatArray<'static> {
    MatArray { name: "X", class: 9, dims, data: MatData::U8(vec![7; 3072 * n as usize]) }
}

fn y(labels: Vec<f64>) -> MatArray<'static> {
    MatArray { name: "y", class: 6, dims: vec![labels.len() as u32, 1], data: MatData::F64(labels) }
}

#[test]
fn missing_variables_wrong_dims_mismatches_and_bad_labels_name_file_and_variable() {
    let err = svhn_err(&[x(2, vec![32, 32, 3, 2])]);
    assert!(
        err.contains("dir/bad.mat")
            && err.contains("variable 'y' is missing")
            && err.contains("\"X\""),
        "{err}"
    );
    let err = svhn_err(&[y(vec![1.0])]);
    assert!(err.contains("variable 'X' is missing"), "{err}");
    let err = svhn_err(&[x(2, vec![32, 32, 6, 1]), y(vec![1.0])]);
    assert!(err.contains("variable 'X' has dimensions [32, 32, 6, 1]"), "{err}");
    let err = svhn_err(&[x(2, vec![32, 32, 3, 2]), y(vec![1.0, 2.0, 3.0])]);
    assert!(err.contains("'y' has 3 labels but 'X' has 2 images"), "{err}");
    let err = svhn_err(&[x(2, vec![32, 32, 3, 2]), y(vec![1.0, 11.0])]);
    assert!(err.contains("variable 'y': label 11 of sample 1 is out of range"), "{err}");
    let err = svhn_err(&[x(2, vec![32, 32, 3, 2]), y(vec![0.0, 1.0])]);
    assert!(err.contains("label 0 of sample 0"), "{err}");
    let err = svhn_err(&[x(2, vec![32, 32, 3, 2]), y(vec![2.5, 1.0])]);
    assert!(err.contains("label 2.5"), "{err}");
    let err = svhn_err(&[
        MatArray {
            name: "X",
            class: 6,
            dims: vec![32, 32, 3, 1],
            data: MatData::F64(vec![300.0; 3072]),
        },
        y(vec![1.0]),
    ]);
    assert!(err.contains("variable 'X': value 300 at index 0"), "{err}");
    // Dimensions that do not match the stored values.
    let err = svhn_err(&[x(1, vec![32, 32, 3, 2]), y(vec![1.0, 2.0])]);
    assert!(err.contains("variable 'X'") && err.contains("need 6144 values"), "{err}");
}

#[test]
fn bad_headers_and_truncation_are_errors() {
    let good = svhn_mat(&svhn_sample(1, 23), &MatWriter { big_endian: false, compress: false });
    let p = Path::new("h.mat");
    let err = parse_svhn(&good[..100], p).unwrap_err().to_string();
    assert!(
        err.contains("h.mat") && err.contains("truncated") && err.contains("128-byte"),
        "{err}"
    );
    let err = parse_svhn(&good[..good.len() - 3], p).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    let mut v4 = good.clone();
    v4[..6].copy_from_slice(b"OCTAVE");
    let err = parse_svhn(&v4, p).unwrap_err().to_string();
    assert!(err.contains("not a MATLAB 5.0 MAT-file") && err.contains("OCTAVE"), "{err}");
    let mut hdf5 = good.clone();
    hdf5[7..10].copy_from_slice(b"7.3");
    assert!(parse_svhn(&hdf5, p).unwrap_err().to_string().contains("7.3 (HDF5)"));
    let mut endian = good.clone();
    endian[126..128].copy_from_slice(b"XX");
    assert!(parse_svhn(&endian, p)
        .unwrap_err()
        .to_string()
        .contains("expected 'IM' or 'MI', found bytes 58 58"));
    let mut version = good.clone();
    version[124] = 2;
    assert!(parse_svhn(&version, p).unwrap_err().to_string().contains("version 0x0102"));
    let compressed =
        svhn_mat(&svhn_sample(1, 23), &MatWriter { big_endian: false, compress: true });
    let mut corrupt = compressed.clone();
    corrupt[140] ^= 0xff;
    assert!(parse_svhn(&corrupt, p).is_err());
}
