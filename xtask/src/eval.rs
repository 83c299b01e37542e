//! `cargo xtask eval CKPT`: the test accuracy of a checkpoint written by `train`, on the data it
//! was trained for (read from the checkpoint's stored config), and optionally a dump of inputs
//! and outputs for checking the checkpoint in another framework.

use crate::train::session::{evaluate, upload};
use anyhow::{bail, Context};
use ar_backend::Backend;
use ar_models::load_checkpoint;
use ar_ndarray::NdArray;
use clap::Parser;
use std::collections::HashMap;
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
}

/// Wraps `train`'s flags so a stored config can be parsed exactly like a command line.
#[derive(Parser, Debug)]
struct TrainFlags {
    #[command(flatten)]
    args: crate::train::Args,
}

/// Evaluates the checkpoint in f64 on the CPU.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let be = NdArray::<f64>::new();
    let ckpt = load_checkpoint(&args.checkpoint, &be)?;
    let config = ckpt.metadata.get("config").with_context(|| {
        format!("{}: no training config stored in the checkpoint header", args.checkpoint.display())
    })?;
    let dir = std::env::temp_dir().join(format!("ar-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("config.toml");
    std::fs::write(&file, config)?;
    let known: Vec<String> = <TrainFlags as clap::CommandFactory>::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(String::from))
        .collect();
    let flags = crate::config::flags_from_file(&file, &known).map_err(|e| anyhow::anyhow!(e.0));
    std::fs::remove_dir_all(&dir).ok();
    let mut argv: Vec<std::ffi::OsString> = vec!["eval".into()];
    argv.extend(flags?);
    if let Some(d) = &args.data_dir {
        argv.extend(["--data-dir".into(), d.clone().into_os_string()]);
    }
    let train = TrainFlags::try_parse_from(argv).context("the checkpoint's stored config")?.args;
    let (_, test_set, norm) = train.data()?;
    if test_set.sample_len() != ckpt.net.input_width()
        || test_set.num_classes != ckpt.net.output_width()
    {
        bail!("{}: the model does not fit {}", args.checkpoint.display(), test_set.name);
    }
    let (loss, accuracy) = evaluate(&ckpt.net, &test_set, &norm, train.loss)?;
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
        let n = args.dump_count.min(test_set.len());
        let idx: Vec<usize> = (0..n).collect();
        let (x, _) = upload(&ckpt.net, &test_set, &idx, &norm)?;
        let out = ckpt.net.predict(&x);
        let predictions: Vec<f64> = be.argmax_rows(&out).into_iter().map(|p| p as f64).collect();
        let tensors: Vec<(&str, Vec<usize>, Vec<f64>)> = vec![
            ("inputs", vec![n, test_set.sample_len()], be.to_host(&x)),
            ("outputs", vec![n, test_set.num_classes], be.to_host(&out)),
            ("predictions", vec![n], predictions),
        ];
        let bytes: Vec<(&str, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let views = bytes
            .iter()
            .map(|(n, s, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F64, s.clone(), b)
                    .map(|v| (n.to_string(), v))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let data = safetensors::serialize(views, None::<HashMap<String, String>>)?;
        ar_models::write_atomically(path, &data)?;
        println!("wrote {n} inputs, outputs and predictions to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
