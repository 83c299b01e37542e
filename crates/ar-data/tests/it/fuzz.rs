//! Property tests: arbitrary bytes, and valid files with bytes changed or cut off, never make a
//! reader panic; a strict prefix of a valid IDX or MAT file is always an error.

use crate::common::{
    cifar_records, compress_mat_body, gzip, idx_images, idx_labels, random_bytes, svhn_mat,
    svhn_sample, MatArray, MatData, MatWriter,
};
use ar_data::mat::parse_mat;
use ar_data::{
    parse_cifar10, parse_cifar100, parse_idx_images, parse_idx_labels, parse_svhn, DataError,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::path::Path;
use std::sync::OnceLock;

type Parser = fn(&[u8], &Path) -> Result<(), DataError>;

/// Every reader, with its result discarded.
const PARSERS: [(&str, Parser); 6] = [
    ("idx images", |b, p| parse_idx_images(b, p).map(drop)),
    ("idx labels", |b, p| parse_idx_labels(b, p).map(drop)),
    ("cifar10", |b, p| parse_cifar10(b, p).map(drop)),
    ("cifar100", |b, p| parse_cifar100(b, p).map(drop)),
    ("mat", |b, p| parse_mat(b, p).map(drop)),
    ("svhn", |b, p| parse_svhn(b, p).map(drop)),
];

/// Valid files of every format, with the parser that accepts each.
fn valid_files() -> &'static [(&'static str, Parser, Vec<u8>)] {
    static FILES: OnceLock<Vec<(&'static str, Parser, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let images = idx_images(3, 4, 5, &random_bytes(60, 30));
        let labels = idx_labels(&[1, 2, 3]);
        let sample = svhn_sample(2, 31);
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let read = |name: &str| std::fs::read(fixtures.join(name)).unwrap();
        vec![
            ("idx images", PARSERS[0].1, images.clone()),
            ("idx images gz", PARSERS[0].1, gzip(&images)),
            ("idx labels", PARSERS[1].1, labels.clone()),
            ("idx labels gz", PARSERS[1].1, gzip(&labels)),
            ("cifar10", PARSERS[2].1, cifar_records(&[&[3], &[9]], &random_bytes(2 * 3072, 32))),
            (
                "cifar100",
                PARSERS[3].1,
                cifar_records(&[&[3, 33], &[19, 99]], &random_bytes(2 * 3072, 33)),
            ),
            (
                "svhn le",
                PARSERS[5].1,
                svhn_mat(&sample, &MatWriter { big_endian: false, compress: false }),
            ),
            (
                "svhn be z",
                PARSERS[5].1,
                svhn_mat(&sample, &MatWriter { big_endian: true, compress: true }),
            ),
            ("svhn scipy", PARSERS[5].1, read("svhn_small_plain.mat")),
            ("svhn scipy z", PARSERS[5].1, read("svhn_small_compressed.mat")),
        ]
    })
}

/// The 128-byte header of a little-endian MAT-file.
fn mat_header() -> Vec<u8> {
    valid_files()[6].2[..128].to_vec()
}

/// `bytes` with each edit `(where, offset, value)` applied (`where` 0: anywhere, 1: in the first
/// 256 bytes, 2: in the last 256, where the headers and the small arrays lie), then cut short.
fn mutate(bytes: &[u8], edits: &[(u8, usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let len = out.len();
    for &(place, offset, v) in edits {
        let i = match place {
            0 => offset % len,
            1 => offset % len.min(256),
            _ => len - 1 - offset % len.min(256),
        };
        out[i] = v;
    }
    if let Some(c) = cut {
        out.truncate(c % (out.len() + 1));
    }
    out
}

/// `(class, dims, data)` of one well-formed MAT array, usually close to what SVHN's `X`
/// (`image` true) or `y` holds for `n` samples, so that the checks after parsing are reached.
fn svhn_like_array(n: u32, image: bool) -> impl Strategy<Value = (u8, Vec<u32>, MatData)> {
    let (shape, ints): (Vec<u32>, u8) =
        if image { (vec![32, 32, 3, n], 255) } else { (vec![n, 1], 11) };
    let dims = prop_oneof![
        6 => Just(shape.clone()),
        1 => Just(shape.iter().rev().copied().collect::<Vec<_>>()),
        1 => (0u32..4).prop_map(move |m| if image { vec![32, 32, 3, m] } else { vec![m, 1] }),
        1 => prop::collection::vec(0u32..40, 0..5),
    ];
    let len = shape.iter().product::<u32>() as usize;
    let unit = if image { 3072 } else { 1 };
    let count =
        prop_oneof![4 => Just(len), 1 => (0usize..4).prop_map(move |k| k * unit), 1 => 0usize..7];
    let data = (count, any::<bool>(), any::<u64>()).prop_flat_map(move |(count, bytes, seed)| {
        if bytes {
            Just(MatData::U8(
                random_bytes(count, seed)
                    .iter()
                    .map(|b| if image { *b } else { b % (ints + 1) })
                    .collect(),
            ))
            .boxed()
        } else {
            prop::collection::vec(
                prop_oneof![4 => (0..=ints).prop_map(f64::from), 1 => any::<f64>()],
                count,
            )
            .prop_map(MatData::F64)
            .boxed()
        }
    });
    let class = prop_oneof![4 => Just(if image { 9u8 } else { 6 }), 1 => 0u8..20];
    (class, dims, data)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, rng_seed: RngSeed::Fixed(0xa5), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4000)) {
        for (_, parse) in PARSERS {
            let _ = parse(&bytes, Path::new("fuzz"));
        }
    }

    #[test]
    fn arbitrary_bytes_after_valid_headers_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..600),
        which in 0usize..4,
    ) {
        let mut bytes = match which {
            0 => vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4],
            1 => vec![0, 0, 8, 1, 0, 0, 0, 9],
            2 => { let mut h = mat_header(); h.extend_from_slice(&[14, 0, 0, 0]); h }
            _ => { let mut h = mat_header(); h.extend_from_slice(&[15, 0, 0, 0]); h }
        };
        bytes.extend_from_slice(&tail);
        for (_, parse) in PARSERS {
            let _ = parse(&bytes, Path::new("fuzz"));
        }
    }

    #[test]
    fn mutated_valid_files_never_panic(
        file in 0usize..10,
        edits in prop::collection::vec((0u8..3, any::<usize>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<usize>()),
    ) {
        let (_, parse, bytes) = &valid_files()[file];
        let _ = parse(&mutate(bytes, &edits, cut), Path::new("fuzz"));
    }

    #[test]
    fn compressed_mutated_mat_contents_never_panic(
        file in prop::sample::select(vec![6usize, 8]),
        edits in prop::collection::vec((0u8..3, any::<usize>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<usize>()),
    ) {
        // Mutate the plain elements, then compress them, so the damage lies inside the stream.
        let (_, parse, bytes) = &valid_files()[file];
        let mut mutated = mutate(&bytes[128..], &edits, cut);
        mutated.splice(0..0, bytes[..128].iter().copied());
        let _ = parse(&compress_mat_body(&mutated), Path::new("fuzz"));
    }

    #[test]
    fn well_formed_mat_files_of_arbitrary_content_never_panic(
        (x, y) in (0u32..4).prop_flat_map(|n| (svhn_like_array(n, true), svhn_like_array(n, false))),
        keep in prop::sample::select(vec![(true, true), (true, true), (true, true), (true, false), (false, true)]),
        swap in any::<bool>(),
        big_endian in any::<bool>(),
        compress in any::<bool>(),
    ) {
        let mut arrays = Vec::new();
        for (name, (class, dims, data), keep) in [("X", x, keep.0), ("y", y, keep.1)] {
            if keep {
                arrays.push(MatArray { name, class, dims, data });
            }
        }
        if swap {
            arrays.reverse();
        }
        let bytes = MatWriter { big_endian, compress }.write(&arrays);
        let _ = parse_svhn(&bytes, Path::new("fuzz"));
    }

    #[test]
    fn strict_prefixes_of_valid_files_are_errors(file in 0usize..10, cut in any::<usize>()) {
        let (name, parse, bytes) = &valid_files()[file];
        let prefix = &bytes[..cut % bytes.len()];
        let whole_records = name.starts_with("cifar10")
            && prefix.len() % if *name == "cifar10" { 3073 } else { 3074 } == 0
            && !prefix.is_empty();
        prop_assert_eq!(parse(prefix, Path::new("fuzz")).is_ok(), whole_records, "{} cut at {}", name, prefix.len());
    }
}

#[test]
fn every_valid_file_parses() {
    for (name, parse, bytes) in valid_files() {
        assert!(parse(bytes, Path::new("ok")).is_ok(), "{name}");
    }
    for file in [6, 8] {
        let rewrapped = compress_mat_body(&valid_files()[file].2);
        assert_eq!(
            parse_svhn(&rewrapped, Path::new("z")).unwrap(),
            parse_svhn(&valid_files()[file].2, Path::new("p")).unwrap()
        );
    }
}
