//! `cargo xtask eval CKPT`: the test accuracy of a checkpoint written by `train`, on the data it
//! was trained for (read from the checkpoint's stored config), and optionally a dump of inputs
//! and outputs for checking the checkpoint in another framework.

use anyhow::{bail, Context};
use ar_models::{load_checkpoint, load_checkpoint_allowing_legacy};
use ar_ndarray::NdArray;
use ar_train::{dump_predictions, evaluate};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint (`RUN/checkpoints/NAME.safetensors`).
    checkpoint: PathBuf,
    /// Override the data directory stored in the checkpoint's config.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Also write the first test inputs, the network's outputs and its predictions to this
    /// safetensors file (f64 tensors `inputs`, `outputs`, `predictions`).
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,
    /// How many test samples --dump writes.
    #[arg(long, default_value_t = 256)]
    dump_count: usize,
    /// Also read a checkpoint of the earlier format, whose header carries no digest (its
    /// config and training state cannot be verified; a warning says so).
    #[arg(long)]
    allow_legacy: bool,
}

/// Evaluates the checkpoint in f64 on the CPU.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let be = NdArray::<f64>::new();
    let ckpt = if args.allow_legacy {
        load_checkpoint_allowing_legacy(&args.checkpoint, &be)?
    } else {
        load_checkpoint(&args.checkpoint, &be)?
    };
    for w in &ckpt.warnings {
        eprintln!("warning: {w}");
    }
    let text = ckpt.metadata.get("config").with_context(|| {
        format!("{}: no training config stored in the checkpoint header", args.checkpoint.display())
    })?;
    let mut config = ar_train::TrainConfig::parse(text, &args.checkpoint)?;
    if args.data_dir.is_some() {
        config.data_dir = args.data_dir.clone();
    }
    let data = config.load_data()?;
    let (test_set, norm) = (&data.test, &data.normalization);
    if test_set.sample_len() != ckpt.net.input_width()
        || test_set.num_classes != ckpt.net.output_width()
    {
        bail!("{}: the model does not fit {}", args.checkpoint.display(), test_set.name);
    }
    let (loss, accuracy) = evaluate(&ckpt.net, test_set, norm, config.loss)?;
    println!(
        "{}: {} (epoch {}), test set of {} {}: accuracy {:.2}%, loss {:.5}",
        args.checkpoint.display(),
        ckpt.metadata.get("algorithm").map_or("?", String::as_str),
        ckpt.state.epochs_done,
        test_set.len(),
        test_set.name,
        100.0 * accuracy,
        loss
    );
    if let Some(path) = &args.dump {
        let n = dump_predictions(&ckpt.net, test_set, norm, args.dump_count, path)?;
        println!("wrote {n} inputs, outputs and predictions to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
