//! `cargo xtask eval CKPT`: the test accuracy of a checkpoint written by `train`, on the data it
//! was trained for (read from the checkpoint's stored config), and optionally a dump of inputs
//! and outputs for checking the checkpoint in another framework.

use anyhow::{bail, Context};
use ar_backend::Backend;
use ar_models::load_checkpoint;
use ar_ndarray::NdArray;
use ar_train::{evaluate, upload};
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

/// Evaluates the checkpoint in f64 on the CPU.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let be = NdArray::<f64>::new();
    let ckpt = load_checkpoint(&args.checkpoint, &be)?;
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
        let n = args.dump_count.min(test_set.len());
        let idx: Vec<usize> = (0..n).collect();
        let (x, _) = upload(&ckpt.net, test_set, &idx, norm)?;
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
