//! The training loop: algorithms side by side from identical weights and batch order, a run
//! directory (resolved config, metrics as JSON lines and CSV, gradient-alignment probes,
//! checkpoints, plots), progress bars, Ctrl-C and divergence handling, and exact resume.

use super::{describe, label_with_variant, Args};
use crate::backend::{dispatch, Job};
use crate::plot::{line_chart, Series};
use crate::UsageError;
use anyhow::{bail, Context};
use ar_backend::Backend;
use ar_core::metrics::{angle_degrees, relative_error};
use ar_core::{Algorithm, Gradients, Loss, Network, Signals, Trainer};
use ar_data::{BatchOrder, Dataset, Normalization};
use ar_models::{load_checkpoint, save_checkpoint, TrainingState};
use ar_ndarray::NdArray;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Exit status after a Ctrl-C that saved checkpoints (128 + SIGINT, as shells report).
const INTERRUPTED: u8 = 130;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.epochs() == 0 {
        return Err(UsageError("--epochs must be at least 1".into()).into());
    }
    if args.batch_size == 0 {
        return Err(UsageError("--batch-size must be at least 1".into()).into());
    }
    if args.algorithms.is_empty() {
        return Err(UsageError("--algorithms needs at least one of ar, bp, fa".into()).into());
    }
    let mut seen = Vec::new();
    for a in &args.algorithms {
        if seen.contains(a) {
            return Err(UsageError(format!("--algorithms lists {a:?} twice")).into());
        }
        seen.push(*a);
    }
    if args.dry_run {
        for &name in &args.algorithms {
            args.algorithm(name)
                .validate()
                .with_context(|| format!("--algorithms {}", super::label(name)))?;
            args.optimizer::<NdArray<f64>>().validate()?;
        }
        args.init()?;
        print!("{}", toml::to_string(&args).context("serialising the configuration")?);
        return Ok(ExitCode::SUCCESS);
    }
    dispatch(args.backend, args.precision, Session(&args))
}

struct Session<'a>(&'a Args);

impl Job for Session<'_> {
    type Output = ExitCode;
    fn run<B: Backend>(self, be: B) -> anyhow::Result<ExitCode> {
        session(self.0, be)
    }
}

/// One algorithm being trained.
struct Run<B: Backend> {
    label: String,
    net: Network<B>,
    trainer: Trainer<B>,
    state: TrainingState,
    /// Sums over the batches of the epoch under way (restored on resume).
    partial: Partial,
    seconds: f64,
    checkpoint: PathBuf,
    history: Vec<EpochMetrics>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
struct Partial {
    loss_sum: f64,
    correct: usize,
    seen: usize,
}

#[derive(Clone, Debug, Serialize)]
struct EpochMetrics {
    algorithm: String,
    epoch: usize,
    train_loss: f64,
    train_accuracy: f64,
    test_loss: f64,
    test_accuracy: f64,
    seconds: f64,
    samples_per_second: f64,
}

#[derive(Clone, Debug, Serialize)]
struct ProbeRow {
    algorithm: String,
    step: u64,
    epoch: usize,
    layer: usize,
    angle_deg: f64,
    relative_error: f64,
    signal_error: Option<f64>,
    feedback_angle_deg: Option<f64>,
    feedback_norm_ratio: Option<f64>,
}

/// Appends rows to a JSON-lines file and a CSV file with a header.
struct Table {
    jsonl: File,
    csv: File,
    columns: Vec<String>,
}

impl Table {
    fn open(dir: &Path, stem: &str, columns: &[&str]) -> anyhow::Result<Self> {
        let open = |p: PathBuf| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .with_context(|| format!("opening {}", p.display()))
        };
        let csv_path = dir.join(format!("{stem}.csv"));
        let fresh = !csv_path.exists() || std::fs::metadata(&csv_path)?.len() == 0;
        let mut csv = open(csv_path)?;
        if fresh {
            writeln!(csv, "{}", columns.join(","))?;
        }
        let columns = columns.iter().map(|c| c.to_string()).collect();
        Ok(Table { jsonl: open(dir.join(format!("{stem}.jsonl")))?, csv, columns })
    }

    fn write<T: Serialize>(&mut self, row: &T) -> anyhow::Result<()> {
        let value = serde_json::to_value(row)?;
        writeln!(self.jsonl, "{}", serde_json::to_string(&value)?)?;
        let cells: Vec<String> = self
            .columns
            .iter()
            .map(|c| match value.get(c) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            })
            .collect();
        writeln!(self.csv, "{}", cells.join(","))?;
        Ok(())
    }
}

fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    // A second Ctrl-C while saving would kill the process; that is the user's call.
    let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
    flag
}

fn default_out(args: &Args) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let algs: Vec<String> =
        args.algorithms.iter().map(|a| format!("{a:?}").to_lowercase()).collect();
    let name = format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}-{}-{}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        args.dataset,
        algs.join("-")
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let runs = repo.canonicalize().unwrap_or(repo).join("runs");
    let mut dir = runs.join(&name);
    let mut n = 2;
    while dir.exists() {
        dir = runs.join(format!("{name}-{n}"));
        n += 1;
    }
    dir
}

fn session<B: Backend>(args: &Args, be: B) -> anyhow::Result<ExitCode> {
    let (train_set, test_set, norm) = args.data()?;
    let spec = args.model(&train_set)?;
    let init = args.init()?;
    let epochs = args.epochs();
    let resuming = args.resume.is_some();
    let out = match (&args.resume, &args.out) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => default_out(args),
    };
    if resuming && !out.join("config.toml").is_file() {
        return Err(UsageError(format!(
            "--resume {}: no config.toml there; is it a run directory?",
            out.display()
        ))
        .into());
    }
    if !resuming && out.join("config.toml").exists() {
        return Err(UsageError(format!(
            "{} already holds a run: continue it with --resume {0}, or choose another --out",
            out.display()
        ))
        .into());
    }
    let mut runs = Vec::new();
    for &name in &args.algorithms {
        let algorithm = args.algorithm(name);
        let label = label_with_variant(name, &algorithm);
        let checkpoint = out
            .join("checkpoints")
            .join(format!("{}.safetensors", label.replace(['\'', '+'], "_")));
        let mut net = spec.build(be.clone(), init, args.seed)?;
        if algorithm.needs_feedback_weights() {
            net.init_feedback(init, args.seed);
        }
        let mut trainer = Trainer::new(algorithm, args.loss, args.optimizer(), &net)
            .with_context(|| format!("--algorithms {}", super::label(name)))?;
        let (mut state, mut partial) =
            (TrainingState { epochs_done: 0, batches_done: 0 }, Partial::default());
        if resuming {
            let c = load_checkpoint(&checkpoint, &be)
                .with_context(|| format!("resuming {label}: cannot read its checkpoint"))?;
            if c.net.widths() != net.widths() || c.net.input_width() != net.input_width() {
                bail!(
                    "{}: the checkpoint's model does not match the run's config",
                    checkpoint.display()
                );
            }
            net = c.net;
            trainer.optimizer_mut().restore(net.depth(), c.optimizer_steps, c.optimizer_state)?;
            state = c.state;
            if let Some(p) = c.metadata.get("partial_epoch") {
                partial = serde_json::from_str(p).context("checkpoint: bad partial_epoch")?;
            }
        }
        runs.push(Run {
            label,
            net,
            trainer,
            state,
            partial,
            seconds: 0.0,
            checkpoint,
            history: Vec::new(),
        });
    }

    for sub in ["checkpoints", "plots"] {
        std::fs::create_dir_all(out.join(sub))
            .with_context(|| format!("creating {}", out.join(sub).display()))?;
    }
    let config = toml::to_string(args).context("serialising the configuration")?;
    std::fs::write(out.join("config.toml"), &config)
        .with_context(|| format!("writing {}", out.join("config.toml").display()))?;
    let mut metrics = Table::open(
        &out,
        "metrics",
        &[
            "algorithm",
            "epoch",
            "train_loss",
            "train_accuracy",
            "test_loss",
            "test_accuracy",
            "seconds",
            "samples_per_second",
        ],
    )?;
    let mut probes = Table::open(
        &out,
        "probes",
        &[
            "algorithm",
            "step",
            "epoch",
            "layer",
            "angle_deg",
            "relative_error",
            "signal_error",
            "feedback_angle_deg",
            "feedback_norm_ratio",
        ],
    )?;

    if !args.quiet {
        println!(
            "data: {} ({} train / {} test, {}x{}x{}), model: {spec}, loss: {}, batch {}, {:?} lr {}, seed {}, backend {}",
            train_set.name,
            train_set.len(),
            test_set.len(),
            train_set.shape[0],
            train_set.shape[1],
            train_set.shape[2],
            args.loss,
            args.batch_size,
            args.optimizer,
            args.lr,
            args.seed,
            be.name()
        );
        for r in &runs {
            println!("  {}: {}", r.label, describe(r.trainer.algorithm()));
        }
        println!("run directory: {}", out.display());
        if resuming {
            let s = runs[0].state;
            println!(
                "resuming after epoch {} and {} batches of the next",
                s.epochs_done, s.batches_done
            );
        }
    }

    let interrupted = interrupt_flag();
    let probe_batch: Vec<usize> = (0..args.batch_size.min(train_set.len())).collect();
    let batches_per_epoch = train_set.len().div_ceil(args.batch_size);
    let width = runs.iter().map(|r| r.label.len()).max().unwrap_or(2);
    let first_epoch = runs.iter().map(|r| r.state.epochs_done).min().unwrap_or(0);
    for epoch in first_epoch..epochs {
        let order = BatchOrder::shuffled(train_set.len(), args.batch_size, args.seed, epoch as u64);
        let mut line = format!("epoch {:>3}", epoch + 1);
        for r in &mut runs {
            if r.state.epochs_done > epoch {
                continue;
            }
            let bar = progress_bar(
                args.quiet,
                batches_per_epoch,
                &format!("epoch {} {}", epoch + 1, r.label),
            );
            bar.set_position(r.state.batches_done as u64);
            let start = Instant::now();
            for (bi, batch) in order.batches().enumerate().skip(r.state.batches_done) {
                let (x, t) = upload(&r.net, &train_set, batch, &norm)?;
                let outcome = r.trainer.step(&mut r.net, &x, &t);
                let step = (epoch * batches_per_epoch + bi + 1) as u64;
                if !outcome.loss.is_finite() {
                    bar.abandon();
                    let kept = if r.checkpoint.exists() {
                        format!("The last good checkpoint, {}, is kept.", r.checkpoint.display())
                    } else {
                        "No checkpoint was written yet.".to_string()
                    };
                    bail!(
                        "{} diverged at epoch {}, batch {} (step {step}): the loss is {}. {kept} \
                         Try a smaller --lr{}.",
                        r.label,
                        epoch + 1,
                        bi + 1,
                        outcome.loss,
                        if r.label.starts_with("ar") { " or --eta" } else { "" }
                    );
                }
                r.partial.loss_sum += outcome.loss * batch.len() as f64;
                r.partial.correct += outcome.correct;
                r.partial.seen += batch.len();
                r.state.batches_done = bi + 1;
                if args.probe_every > 0 && step % args.probe_every as u64 == 0 {
                    let (px, pt) = upload(&r.net, &train_set, &probe_batch, &norm)?;
                    for row in probe(
                        &r.net,
                        r.trainer.algorithm(),
                        r.trainer.loss(),
                        &px,
                        &pt,
                        &r.label,
                        step,
                        epoch + 1,
                    ) {
                        probes.write(&row)?;
                    }
                }
                bar.set_position((bi + 1) as u64);
                let rate = r.partial.seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss {:.4} acc {:.1}% {rate:.0} samples/s",
                    r.partial.loss_sum / r.partial.seen.max(1) as f64,
                    100.0 * r.partial.correct as f64 / r.partial.seen.max(1) as f64
                ));
                if interrupted.load(Ordering::SeqCst) {
                    bar.abandon();
                    break;
                }
            }
            if interrupted.load(Ordering::SeqCst) {
                break;
            }
            bar.finish_and_clear();
            r.seconds += start.elapsed().as_secs_f64();
            let (test_loss, test_accuracy) = evaluate(&r.net, &test_set, &norm, r.trainer.loss())?;
            let m = EpochMetrics {
                algorithm: r.label.clone(),
                epoch: epoch + 1,
                train_loss: r.partial.loss_sum / r.partial.seen.max(1) as f64,
                train_accuracy: r.partial.correct as f64 / r.partial.seen.max(1) as f64,
                test_loss,
                test_accuracy,
                seconds: start.elapsed().as_secs_f64(),
                samples_per_second: r.partial.seen as f64 / start.elapsed().as_secs_f64().max(1e-9),
            };
            metrics.write(&m)?;
            line.push_str(&format!(
                "  | {:<width$} loss {:.4} train {:5.1}% test {:5.1}%",
                r.label,
                m.train_loss,
                100.0 * m.train_accuracy,
                100.0 * m.test_accuracy
            ));
            r.history.push(m);
            r.state = TrainingState { epochs_done: epoch + 1, batches_done: 0 };
            r.partial = Partial::default();
            save(r, args, &config)?;
        }
        if interrupted.load(Ordering::SeqCst) {
            for r in &runs {
                save(r, args, &config)?;
            }
            eprintln!(
                "interrupted: checkpoints saved in {}; continue with `cargo xtask train --resume {}`",
                out.join("checkpoints").display(),
                out.display()
            );
            return Ok(ExitCode::from(INTERRUPTED));
        }
        if !args.quiet {
            println!("{line}");
        }
        write_plots(&out)?;
    }

    println!("\nfinal test accuracy after {epochs} epochs (run directory {}):", out.display());
    for r in &runs {
        let (_, acc) = evaluate(&r.net, &test_set, &norm, r.trainer.loss())?;
        let batches = r.history.len() * batches_per_epoch;
        println!(
            "  {:<width$} {:6.2}%   {:.2} s training{}",
            r.label,
            100.0 * acc,
            r.seconds,
            if batches > 0 {
                format!(" ({:.2} ms per batch)", 1e3 * r.seconds / batches as f64)
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(quiet: bool, len: usize, prefix: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

fn save<B: Backend>(r: &Run<B>, args: &Args, config: &str) -> anyhow::Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert("config".to_string(), config.to_string());
    meta.insert("algorithm".to_string(), r.label.clone());
    meta.insert("dataset".to_string(), args.dataset.clone());
    meta.insert("partial_epoch".to_string(), serde_json::to_string(&r.partial)?);
    save_checkpoint(&r.checkpoint, &r.net, r.trainer.optimizer(), r.state, &meta)?;
    Ok(())
}

/// Per-layer agreement of the run's update with the exact gradient on a fixed batch; the
/// relaxed signals' error against backprop's deltas; and for feedback matrices, their angle to
/// `W^T` and norm ratio.
fn probe<B: Backend>(
    net: &Network<B>,
    algorithm: &Algorithm,
    loss: Loss,
    x: &B::Tensor,
    t: &B::Tensor,
    label: &str,
    step: u64,
    epoch: usize,
) -> Vec<ProbeRow> {
    let be = net.backend();
    let cache = net.forward(x);
    let top = loss.top_gradient(be, &cache.output, t);
    let (mut exact, mut ours) = (Signals::new(), Signals::new());
    exact.compute(net, &cache, &top, &Algorithm::backprop());
    ours.compute(net, &cache, &top, algorithm);
    let g_exact = Gradients::compute(net, &cache, exact.as_slice(), &Algorithm::backprop().variant)
        .to_host(be);
    let g_ours = Gradients::compute(net, &cache, ours.as_slice(), &algorithm.variant).to_host(be);
    let depth = net.depth();
    (0..depth)
        .filter(|&i| net.layers[i].is_parametric())
        .map(|i| {
            let flat = |g: &(Vec<f64>, Vec<f64>)| -> Vec<f64> {
                g.0.iter().chain(&g.1).copied().collect()
            };
            let (a, b) = (flat(&g_ours[i]), flat(&g_exact[i]));
            let signal_error = (i + 1 < depth).then(|| {
                relative_error(&be.to_host(&ours.as_slice()[i]), &be.to_host(&exact.as_slice()[i]))
            });
            // psi against W^T for dense layers; a convolution's backward kernel against K.
            let (feedback_angle_deg, feedback_norm_ratio) =
                match (&net.layers[i], net.layers[i].weights()) {
                    (layer, Some(w)) if w.feedback.is_some() => {
                        let (wh, p) =
                            (be.to_host(w.weight), be.to_host(w.feedback.expect("checked")));
                        let reference = match layer {
                            ar_core::Layer::Dense(d) => {
                                let s = d.shape(be);
                                let mut wt = vec![0.0; wh.len()];
                                for o in 0..s.outputs {
                                    for k in 0..s.inputs {
                                        wt[k * s.outputs + o] = wh[o * s.inputs + k];
                                    }
                                }
                                wt
                            }
                            _ => wh,
                        };
                        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
                        (Some(angle_degrees(&p, &reference)), Some(norm(&p) / norm(&reference)))
                    }
                    _ => (None, None),
                };
            ProbeRow {
                algorithm: label.to_string(),
                step,
                epoch,
                layer: i + 1,
                angle_deg: angle_degrees(&a, &b),
                relative_error: relative_error(&a, &b),
                signal_error,
                feedback_angle_deg,
                feedback_norm_ratio,
            }
        })
        .collect()
}

/// Redraws the run's plots from its metrics and probe files.
fn write_plots(out: &Path) -> anyhow::Result<()> {
    let read = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let num =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
    };
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for row in read("metrics.jsonl") {
        let alg = text(&row, "algorithm");
        series
            .entry(format!("{alg} test"))
            .or_default()
            .push((num(&row, "epoch"), 100.0 * num(&row, "test_accuracy")));
        series
            .entry(format!("{alg} train"))
            .or_default()
            .push((num(&row, "epoch"), 100.0 * num(&row, "train_accuracy")));
    }
    let to_series = |m: BTreeMap<String, Vec<(f64, f64)>>| -> Vec<Series> {
        m.into_iter().map(|(name, points)| Series { name, points }).collect()
    };
    let svg = line_chart("accuracy", "epoch", "accuracy (%)", &to_series(series));
    std::fs::write(out.join("plots/accuracy.svg"), svg)?;
    let mut angles: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for row in read("probes.jsonl") {
        let key = format!("{} layer {}", text(&row, "algorithm"), num(&row, "layer"));
        angles.entry(key).or_default().push((num(&row, "step"), num(&row, "angle_deg")));
    }
    if !angles.is_empty() {
        let svg = line_chart(
            "angle between the update and the gradient",
            "training step",
            "degrees",
            &to_series(angles),
        );
        std::fs::write(out.join("plots/gradient_angles.svg"), svg)?;
    }
    Ok(())
}

pub(crate) fn upload<B: Backend>(
    net: &Network<B>,
    data: &Dataset,
    batch: &[usize],
    norm: &Normalization,
) -> anyhow::Result<(B::Tensor, B::Tensor)> {
    let x = net.upload_batch(&data.features(batch, norm), batch.len())?;
    let t = net.backend().from_host(&data.one_hot(batch), &[batch.len(), data.num_classes]);
    Ok((x, t))
}

/// The batch-mean loss and the accuracy of `net` on `data`.
pub(crate) fn evaluate<B: Backend>(
    net: &Network<B>,
    data: &Dataset,
    norm: &Normalization,
    loss: Loss,
) -> anyhow::Result<(f64, f64)> {
    let be = net.backend();
    let (mut correct, mut loss_sum) = (0usize, 0.0);
    for batch in BatchOrder::sequential(data.len(), 256).batches() {
        let (x, t) = upload(net, data, batch, norm)?;
        let out = net.predict(&x);
        loss_sum +=
            loss.value(&be.to_host(&out), &be.to_host(&t), data.num_classes) * batch.len() as f64;
        let predicted = be.argmax_rows(&out);
        correct += predicted
            .iter()
            .zip(batch)
            .filter(|(p, &i)| **p == usize::from(data.labels[i]))
            .count();
    }
    Ok((loss_sum / data.len() as f64, correct as f64 / data.len() as f64))
}
