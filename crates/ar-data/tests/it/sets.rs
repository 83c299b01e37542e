//! The catalogue: names, expected files, missing-file errors and `load` for digits.

use crate::common::TempDir;
use ar_data::{expected_files, load, locate, DataError, Split, DIGITS_GZ, NAMES};

#[test]
fn every_name_has_expected_files_for_both_splits() {
    for name in NAMES {
        for split in Split::ALL {
            let files = expected_files(name, split).unwrap();
            assert!(!files.is_empty(), "{name} {split}");
            assert!(files.iter().all(|f| !f.candidates.is_empty()));
        }
    }
    let mnist = expected_files("mnist", Split::Test).unwrap();
    assert_eq!(mnist[0].candidates[1].to_str(), Some("t10k-images-idx3-ubyte.gz"));
    assert_eq!(expected_files("cifar10", Split::Train).unwrap().len(), 5);
    assert!(!expected_files("digits", Split::Train).unwrap()[0].required);
    assert!(matches!(expected_files("imagenet", Split::Train), Err(DataError::Invalid(_))));
    assert_eq!("test".parse::<Split>().unwrap(), Split::Test);
    assert!("valid".parse::<Split>().is_err());
}

#[test]
fn missing_files_name_every_path_and_the_fetch_command() {
    let dir = TempDir::new("missing");
    let err = load("mnist", dir.path(), Split::Train).unwrap_err();
    let DataError::Missing { dataset, looked_for, .. } = &err else { panic!("{err}") };
    assert_eq!((dataset.as_str(), looked_for.len()), ("mnist", 4));
    let msg = err.to_string();
    for p in looked_for {
        assert!(msg.contains(&p.display().to_string()), "{msg}");
    }
    assert!(
        msg.contains("train-labels-idx1-ubyte.gz") && msg.contains("cargo xtask data fetch mnist"),
        "{msg}"
    );
    let err = locate("cifar10", dir.path(), Split::Train).unwrap_err().to_string();
    assert!(
        err.contains("cifar-10-batches-bin/data_batch_5.bin") && err.contains("fetch cifar10"),
        "{err}"
    );
    assert!(load("cifar100", dir.path(), Split::Test)
        .unwrap_err()
        .to_string()
        .contains("cifar-100-binary/test.bin"));
    assert!(matches!(load("nope", dir.path(), Split::Train), Err(DataError::Invalid(_))));
}

#[test]
fn digits_come_from_the_directory_if_present_else_the_bundled_copy() {
    let dir = TempDir::new("digits");
    let bundled = load("digits", dir.path(), Split::Train).unwrap();
    assert_eq!(bundled.len(), 1797);
    assert_eq!(load("digits", dir.path(), Split::Test).unwrap(), bundled);
    assert_eq!(
        locate("digits", dir.path(), Split::Train).unwrap(),
        Vec::<std::path::PathBuf>::new()
    );
    dir.write("digits.csv.gz", DIGITS_GZ);
    assert_eq!(load("digits", dir.path(), Split::Train).unwrap(), bundled);
    dir.write("digits.csv.gz", &crate::common::gzip(format!("{}9\n", "1,".repeat(64)).as_bytes()));
    let own = load("digits", dir.path(), Split::Test).unwrap();
    assert_eq!((own.len(), own.labels[0]), (1, 9));
}
