//! Behaviour of training sessions, in process: stop and resume end bit-identical to an
//! uninterrupted run, run directories are locked and kept consistent with their checkpoints,
//! damaged checkpoints are refused on resume, and the thread count leaves every bit unchanged.

use ar_backend::Backend;
use ar_core::Feedback;
use ar_ndarray::NdArray;
use ar_train::{
    AlgorithmName, EpochMetrics, Event, OptimizerName, Outcome, Session, Silent, TrainConfig,
    TrainError,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

mod chain_pin;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ar-train-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

/// Two epochs of AR with learned feedback and feedback alignment under Adam (so momentum-like
/// optimiser state and feedback matrices are part of what must survive a resume).
fn config() -> TrainConfig {
    TrainConfig {
        algorithms: vec![AlgorithmName::Ar, AlgorithmName::Fa],
        feedback: Feedback::Learned,
        optimizer: OptimizerName::Adam,
        lr: 0.01,
        epochs: Some(2),
        probe_every: 7,
        ..TrainConfig::default()
    }
}

/// Every parameter and optimiser state value of every algorithm, as bits.
fn state<B: Backend>(s: &Session<B>) -> Vec<(String, Vec<u64>)> {
    let mut out = Vec::new();
    for t in s.trainees() {
        let be = t.net.backend();
        for (name, _, values) in t.net.parameters() {
            out.push((format!("{} {name}", t.label), values.iter().map(|v| v.to_bits()).collect()));
        }
        for (name, tensor) in t.trainer.optimizer().state() {
            let bits = be.to_host(tensor).iter().map(|v| v.to_bits()).collect();
            out.push((format!("{} {name}", t.label), bits));
        }
        out.push((format!("{} steps", t.label), vec![t.trainer.optimizer().steps()]));
    }
    out
}

/// The metrics that do not depend on timing.
fn metrics<B: Backend>(s: &Session<B>) -> Vec<(String, usize, [u64; 4])> {
    s.trainees()
        .iter()
        .flat_map(|t| t.history.iter())
        .map(|m: &EpochMetrics| {
            let v = [m.train_loss, m.train_accuracy, m.test_loss, m.test_accuracy];
            (m.algorithm.clone(), m.epoch, v.map(f64::to_bits))
        })
        .collect()
}

/// The rows of a table without the timing columns.
fn table(dir: &Path, stem: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(format!("{stem}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("seconds");
            o.remove("samples_per_second");
            v
        })
        .collect()
}

fn stop_mid_epoch_and_resume<B: Backend>(be: B, name: &str) {
    let (full_dir, cut_dir) = (scratch(&format!("{name}-full")), scratch(&format!("{name}-cut")));
    let mut full = Session::create(
        &full_dir,
        TrainConfig { precision: be.precision(), ..config() },
        be.clone(),
    )
    .unwrap();
    assert_eq!(full.run(&mut Silent).unwrap(), Outcome::Finished);

    let mut cut = Session::create(
        &cut_dir,
        TrainConfig { precision: be.precision(), ..config() },
        be.clone(),
    )
    .unwrap();
    let stop = cut.stop_flag();
    let mut observer = |e: Event<'_>| {
        if let Event::Batch { epoch: 2, batch: 3, .. } = e {
            stop.store(true, Ordering::SeqCst);
        }
    };
    assert_eq!(cut.run(&mut observer).unwrap(), Outcome::Stopped);
    let stopped_at: Vec<_> = cut.trainees().iter().map(|t| t.state).collect();
    assert_eq!((stopped_at[0].epochs_done, stopped_at[0].batches_done), (1, 3));
    assert_eq!((stopped_at[1].epochs_done, stopped_at[1].batches_done), (1, 0), "fa waits");
    drop(cut);

    let mut resumed = Session::resume(&cut_dir, be).unwrap();
    assert!(resumed.resumed());
    assert_eq!(resumed.trainees()[0].state, stopped_at[0]);
    assert_eq!(resumed.run(&mut Silent).unwrap(), Outcome::Finished);
    assert!(resumed.is_finished());
    assert_eq!(state(&resumed), state(&full), "weights and optimiser state");
    assert_eq!(metrics(&resumed), metrics(&full), "epoch metrics");
    assert_eq!(metrics(&full).len(), 4);
    for stem in ["metrics", "probes"] {
        assert_eq!(table(&cut_dir, stem), table(&full_dir, stem), "{stem}.jsonl");
    }
    std::fs::remove_dir_all(&full_dir).ok();
    std::fs::remove_dir_all(&cut_dir).ok();
}

#[test]
fn stopping_mid_epoch_and_resuming_ends_bit_identical_in_f32() {
    stop_mid_epoch_and_resume(NdArray::<f32>::new(), "f32");
}

#[test]
fn stopping_mid_epoch_and_resuming_ends_bit_identical_in_f64() {
    stop_mid_epoch_and_resume(NdArray::<f64>::new(), "f64");
}

/// One epoch of paper 1's hidden widths (64-300-300-100-10) and of the digits CNN (AR by Euler steps and backprop), run on
/// rayon pools of 1, 2 and 3 threads: the weights and optimiser state agree bit for bit, because
/// the backend cuts its products into blocks fixed by the shapes alone.
#[test]
fn the_number_of_threads_does_not_change_a_single_bit() {
    for model in ["64-300-300-100-10", "cnn-digits"] {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let dir = scratch(&format!("threads-{model}-{threads}"));
            let c = TrainConfig {
                model: model.into(),
                algorithms: vec![AlgorithmName::Ar, AlgorithmName::Bp],
                solver: ar_core::Solver::Euler,
                epochs: Some(1),
                ..TrainConfig::default()
            };
            let mut s = Session::create(&dir, c, NdArray::<f32>::new()).unwrap();
            assert_eq!(pool.install(|| s.run(&mut Silent)).unwrap(), Outcome::Finished);
            let (weights, history) = (state(&s), metrics(&s));
            drop(s);
            std::fs::remove_dir_all(&dir).ok();
            (weights, history)
        };
        let (weights, history) = run(1);
        for threads in [2, 3] {
            let (w, h) = run(threads);
            let differs = w.iter().zip(&weights).find(|(a, b)| a != b).map(|(a, _)| &a.0);
            assert_eq!(
                differs, None,
                "{model}: {threads} threads against 1, first tensor that differs"
            );
            assert_eq!(h, history, "{model}: epoch metrics, {threads} threads against 1");
        }
    }
}

/// A process killed after an epoch's checkpoint but with rows written past it (here: rows of a
/// later epoch appended by hand) resumes with the tables cut back to its checkpoints.
#[test]
fn rows_written_after_the_last_checkpoint_are_dropped_on_resume() {
    let dir = scratch("torn");
    let one = TrainConfig { epochs: Some(1), ..config() };
    Session::create(&dir, one, NdArray::<f32>::new()).unwrap().run(&mut Silent).unwrap();
    let extra = r#"{"algorithm":"fa","epoch":2,"train_loss":1.0,"train_accuracy":0.5,"test_loss":1.0,"test_accuracy":0.5,"seconds":1.0,"samples_per_second":1.0}"#;
    let mut text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.push_str(extra);
    text.push_str("\n{\"algorithm\":\"ar+lea");
    std::fs::write(dir.join("metrics.jsonl"), text).unwrap();
    let s = Session::resume_with(&dir, config(), NdArray::<f32>::new()).unwrap();
    assert_eq!(s.trainees().iter().map(|t| t.history.len()).collect::<Vec<_>>(), [1, 1]);
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_run_directory_is_locked_while_a_session_holds_it() {
    let dir = scratch("lock");
    let tiny = TrainConfig { epochs: Some(1), ..TrainConfig::default() };
    let first = Session::create(&dir, tiny.clone(), NdArray::<f32>::new()).unwrap();
    // Held by this very process: the refusal says to drop the live session.
    match Session::resume(&dir, NdArray::<f32>::new()) {
        Err(e @ TrainError::RunDir(_)) => {
            assert!(e.to_string().contains("this same process: drop that session"), "{e}")
        }
        other => panic!("expected the lock to refuse a second session: {other:?}"),
    }
    let e = Session::create(&dir, tiny, NdArray::<f32>::new()).unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("already holds a run"), "{e}");
    drop(first);
    Session::resume(&dir, NdArray::<f32>::new()).expect("the lock is free once the holder is gone");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_config_whose_precision_is_not_the_backends_is_refused() {
    let dir = scratch("precision");
    let f64_config = TrainConfig { precision: ar_train::Precision::F64, ..TrainConfig::default() };
    let e = Session::create(&dir, f64_config, NdArray::<f32>::new()).unwrap_err();
    let text = e.to_string();
    assert!(e.is_usage() && text.starts_with("precision f64") && text.contains("f32"), "{e}");
    assert!(!dir.join("config.toml").exists(), "nothing is written");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_damaged_checkpoint_is_refused_on_resume() {
    let dir = scratch("damaged");
    let one = TrainConfig { epochs: Some(1), algorithms: vec![AlgorithmName::Bp], ..config() };
    Session::create(&dir, one, NdArray::<f32>::new()).unwrap().run(&mut Silent).unwrap();
    let file = dir.join("checkpoints/bp.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 300..n - 100] {
        *b ^= 0xff;
    }
    std::fs::write(&file, bytes).unwrap();
    let e = Session::resume(&dir, NdArray::<f32>::new()).unwrap_err().to_string();
    assert!(e.contains("bp.safetensors") && e.contains("tensor '"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_diverging_run_stops_with_where_and_keeps_its_checkpoint() {
    let dir = scratch("diverge");
    let c = TrainConfig {
        algorithms: vec![AlgorithmName::Bp],
        lr: 1e9,
        momentum: 0.0,
        epochs: Some(3),
        ..TrainConfig::default()
    };
    let mut s = Session::create(&dir, c, NdArray::<f32>::new()).unwrap();
    match s.run(&mut Silent).unwrap() {
        Outcome::Diverged { label, epoch, step, loss, .. } => {
            assert_eq!((label.as_str(), epoch), ("bp", 1));
            assert!(step >= 1 && !loss.is_finite());
        }
        other => panic!("expected divergence, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A 2-config x 2-seed sweep on the digits, stopped in its second job and run again: the first
/// job is skipped, the second resumes and ends bit-identical to an uninterrupted run, and the
/// rest run; a third pass does nothing.
#[test]
fn a_stopped_sweep_run_again_skips_finished_jobs_and_resumes_the_interrupted_one() {
    use ar_train::sweep::{plan, JobStatus};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let root = scratch("sweep");
    let configs = root.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let write = |name: &str, algorithms: &[AlgorithmName]| {
        let c = TrainConfig {
            algorithms: algorithms.to_vec(),
            probe_every: 5,
            precision: ar_train::Precision::F64,
            ..config()
        };
        std::fs::write(configs.join(name), c.to_toml()).unwrap();
    };
    write("a-ar.toml", &[AlgorithmName::Ar]);
    write("b-bp.toml", &[AlgorithmName::Bp]);
    std::fs::write(configs.join("notes.txt"), "not a config").unwrap();
    let be = NdArray::<f64>::new();
    let sweep = plan(std::slice::from_ref(&configs), &[0, 1], Some(1), None, &root.join("runs"));
    let jobs = sweep.unwrap().jobs;
    let names: Vec<String> = jobs.iter().map(|j| format!("{}/{}", j.name, j.config.seed)).collect();
    assert_eq!(names, ["a-ar/0", "a-ar/1", "b-bp/0", "b-bp/1"]);
    assert!(jobs.iter().all(|j| j.status() == JobStatus::Fresh && j.config.epochs() == 1));

    // First pass: job 0 finishes, job 1 is stopped mid-epoch.
    let stop = Arc::new(AtomicBool::new(false));
    assert_eq!(jobs[0].run(be, stop.clone(), &mut Silent).unwrap(), Some(Outcome::Finished));
    let raise = stop.clone();
    let mut observer = |e: Event<'_>| {
        if let Event::Batch { batch: 9, .. } = e {
            raise.store(true, Ordering::SeqCst);
        }
    };
    assert_eq!(jobs[1].run(be, stop.clone(), &mut observer).unwrap(), Some(Outcome::Stopped));
    assert!(matches!(jobs[0].status(), JobStatus::Done(_)));
    assert_eq!(jobs[1].status(), JobStatus::Partial);

    // Second pass, as the same command run again, two jobs at a time.
    stop.store(false, Ordering::SeqCst);
    let mut ended = Vec::new();
    let run = |j: &ar_train::sweep::Job| j.run(be, stop.clone(), &mut Silent).unwrap();
    ar_train::sweep::run_parallel(&jobs, 2, &stop, run, |i, o| ended.push((i, o)));
    ended.sort_by_key(|(i, _)| *i);
    let outcomes: Vec<_> = ended.into_iter().map(|(_, o)| o).collect();
    assert_eq!(outcomes.len(), 4);
    assert_eq!(outcomes[0], None, "the finished job is skipped");
    assert!(outcomes[1..].iter().all(|o| *o == Some(Outcome::Finished)));
    let uninterrupted = root.join("uninterrupted");
    let mut full = Session::create(&uninterrupted, jobs[1].config.clone(), be).unwrap();
    full.run(&mut Silent).unwrap();
    let resumed = Session::resume(&jobs[1].dir, be).unwrap();
    assert_eq!(state(&resumed), state(&full));
    assert_eq!(table(&jobs[1].dir, "metrics"), table(&uninterrupted, "metrics"));
    drop(resumed);

    // Third pass: everything is done.
    assert!(jobs.iter().all(|j| j.run(be, stop.clone(), &mut Silent).unwrap().is_none()));
    // The report reads the committed form (probes.csv without probes.jsonl) alike.
    let summary = || {
        ar_train::report::summarize(&ar_train::report::collect(&root.join("runs")).unwrap().records)
    };
    let from_json = summary();
    assert_eq!(from_json.len(), 2);
    assert!(from_json.iter().all(|r| r.n == 2 && !r.angles.is_empty()), "{from_json:?}");
    for job in &jobs {
        std::fs::remove_file(job.dir.join("probes.jsonl")).unwrap();
    }
    assert_eq!(summary(), from_json);
    // A relative error that is not finite (a zero gradient) is an empty cell: that row is left out.
    let csv = jobs[0].dir.join("probes.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str(&format!("{},999,1,1,90.0,,,,\n", from_json[0].algorithm));
    std::fs::write(&csv, text).unwrap();
    assert_eq!(summary(), from_json);
    // The report's rows name each run's config file; a config with no run gets a row saying why.
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let cifar = TrainConfig { dataset: "cifar10".into(), model: "cnn-paper".into(), ..config() };
    std::fs::write(other.join("c-cifar.toml"), cifar.to_toml()).unwrap();
    // A run that diverged before its first epoch ended has no metrics, and still gets its row.
    let diverged = root.join("runs/d-diverged/seed-0");
    std::fs::create_dir_all(&diverged).unwrap();
    std::fs::write(diverged.join("config.toml"), config().to_toml()).unwrap();
    let outcome = r#"{"epochs":1,"outcome":"diverged: ar at epoch 1, batch 3"}"#;
    std::fs::write(diverged.join(ar_train::sweep::DONE_FILE), outcome).unwrap();
    let files = ar_train::sweep::config_files(&[configs.clone(), other]).unwrap();
    let mut runs = ar_train::report::collect(&root.join("runs")).unwrap();
    let rows = ar_train::report::rows(&runs, &files).unwrap();
    let conditions: Vec<(&str, usize)> = rows.iter().map(|r| (r.condition.as_str(), r.n)).collect();
    let expected = [("a-ar", 2), ("b-bp", 2), ("c-cifar", 0), ("d-diverged", 0), ("d-diverged", 0)];
    assert_eq!(conditions, expected, "d-diverged: one row per algorithm (ar+learned, fa)");
    assert!(rows[3].notes[0].contains("diverged: ar at epoch 1, batch 3"), "{:?}", rows[3]);
    assert!(rows[0].source.ends_with("configs/a-ar.toml"), "{}", rows[0].source);
    assert!(rows[2].notes[0].starts_with("not run here: data not reachable"), "{:?}", rows[2]);
    let table = ar_train::report::markdown(&rows, "sweep {config} {options}");
    assert!(
        table.contains("### cifar10") && table.contains("c-cifar.toml --seeds 0..3`"),
        "{table}"
    );
    // Each command reruns what its row shows: the seeds, and the epochs (1, where the file says 2).
    assert!(table.contains("configs/a-ar.toml --seeds 0..2 --epochs 1`"), "{table}");
    assert!(table.contains("d-diverged.toml --seeds 0 --epochs 2`"), "{table}");
    let gaps = ar_train::report::Row { seeds: vec![0, 2, 5], ..rows[0].clone() };
    assert_eq!(gaps.sweep_options(), "--seeds 0,2,5 --epochs 1");
    // One seed has no spread: its accuracy cells carry no "+- 0.00".
    let one = ar_train::report::Row { n: 1, final_accuracy: (0.9, 0.0), ..rows[0].clone() };
    let line = ar_train::report::markdown(&[one], "sweep {config}");
    assert!(line.contains("| 1 | 1 | 90.00 | ") && !line.contains("90.00 +-"), "{line}");
    assert!(table.contains("| d-diverged | ar+learned | 0 | - |"), "{table}");
    // Cut back to no epoch, no finished run has a result left; the diverged one keeps its note.
    ar_train::report::truncate(&mut runs.records, 0);
    let left = ar_train::report::summarize(&runs.records);
    assert!(left.iter().all(|r| r.condition == "d-diverged") && left.len() == 2, "{left:?}");
    // Asking for more epochs reopens the finished jobs.
    let more = plan(&[configs], &[0], Some(2), None, &root.join("runs")).unwrap();
    assert_eq!(more.jobs[0].status(), JobStatus::Partial);
    std::fs::remove_dir_all(&root).ok();
}

/// A report leaves out, and names in its rows' notes, every run it cannot read or that does not
/// add up: a finished run whose last metrics line is torn, an impossible accuracy or epoch, a
/// missing config.toml, a probes file with a garbled line; a sweep does not take a damaged
/// finished run for done, nor train over it.
#[test]
fn a_report_names_every_run_it_leaves_out_and_a_sweep_refuses_damaged_finished_runs() {
    use ar_train::report::{collect, rows};
    use ar_train::sweep::{plan, JobStatus};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let root = scratch("report-damage");
    let configs = root.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let c = TrainConfig {
        algorithms: vec![AlgorithmName::Bp],
        probe_every: 5,
        precision: ar_train::Precision::F64,
        ..config()
    };
    std::fs::write(configs.join("a-bp.toml"), c.to_toml()).unwrap();
    let out = root.join("runs");
    let jobs = plan(std::slice::from_ref(&configs), &[0, 1, 2, 3, 4, 5], Some(2), None, &out)
        .unwrap()
        .jobs;
    let stop = Arc::new(AtomicBool::new(false));
    let be = NdArray::<f64>::new();
    for job in &jobs {
        assert_eq!(job.run(be, stop.clone(), &mut Silent).unwrap(), Some(Outcome::Finished));
    }
    let files = ar_train::sweep::config_files(std::slice::from_ref(&configs)).unwrap();
    let healthy = rows(&collect(&out).unwrap(), &files).unwrap();
    assert_eq!((healthy.len(), healthy[0].n, healthy[0].notes.len()), (1, 6, 0), "{healthy:?}");

    let seed = |n: usize| out.join(format!("a-bp/seed-{n}"));
    let edit = |path: PathBuf, f: &dyn Fn(String) -> String| {
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, f(text)).unwrap();
    };
    // Seed 0: the last metrics line torn (its epoch 2 lost), the run still marked finished.
    edit(seed(0).join("metrics.jsonl"), &|t| t[..t.len() - 20].to_string());
    // Seed 1: an impossible accuracy; seed 2: an impossible epoch.
    let set = |line: usize, key: &'static str, value: serde_json::Value| {
        move |t: String| {
            let mut lines: Vec<String> = t.lines().map(String::from).collect();
            let mut row: serde_json::Value = serde_json::from_str(&lines[line]).unwrap();
            row[key] = value.clone();
            lines[line] = row.to_string();
            lines.join("\n") + "\n"
        }
    };
    edit(seed(1).join("metrics.jsonl"), &set(0, "test_accuracy", (-7.5).into()));
    edit(seed(2).join("metrics.jsonl"), &set(1, "epoch", 4_000_000_000u64.into()));
    // Seed 3: no config.toml.
    std::fs::remove_file(seed(3).join("config.toml")).unwrap();
    // Seed 4: a garbled line in the middle of the committed form of the probes.
    std::fs::remove_file(seed(4).join("probes.jsonl")).unwrap();
    edit(seed(4).join("probes.csv"), &|t| {
        let mut lines: Vec<&str> = t.lines().collect();
        lines[2] = "bp,7,1";
        lines.join("\n") + "\n"
    });
    let runs = collect(&out).unwrap();
    assert_eq!((runs.len(), runs.left_out()), (6, 5));
    let damaged = rows(&runs, &files).unwrap();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    let row = &damaged[0];
    assert_eq!(row.n, 1, "only seed 5 is left in the figures: {row:?}");
    let notes = row.notes.join("\n");
    for expected in [
        "seed 0: metrics.jsonl line 2",
        "marked finished at epoch 2, but metrics.jsonl ends at epoch 1 for bp",
        "seed 1: metrics.jsonl, bp epoch 1: an accuracy outside [0, 1]",
        "seed 2: metrics.jsonl, bp epoch 4000000000: expected epoch 2 of 2",
        "seed-3: no config.toml; left out",
        "seed 4: probes.csv line 3: 3 cells under a header of",
    ] {
        assert!(notes.contains(expected), "no '{expected}' in:\n{notes}");
    }
    // The sweep sees the same damage: the runs marked done with damaged files are neither
    // skipped as done nor trained over; the one without a config is not a run to resume.
    let again = plan(std::slice::from_ref(&configs), &[0, 1, 2, 3, 4, 5], Some(2), None, &out)
        .unwrap()
        .jobs;
    for (i, job) in again.iter().enumerate() {
        match (i, job.status()) {
            (0 | 1 | 2 | 4, JobStatus::Damaged(why)) => assert!(!why.is_empty()),
            (3, JobStatus::Fresh) | (5, JobStatus::Done(_)) => {}
            (i, status) => panic!("job {i}: {status:?}"),
        }
    }
    let before = std::fs::read(seed(1).join("metrics.jsonl")).unwrap();
    let err = again[1].run(be, stop.clone(), &mut Silent).unwrap_err().to_string();
    assert!(err.contains("marked done") && err.contains("move the run directory away"), "{err}");
    assert_eq!(std::fs::read(seed(1).join("metrics.jsonl")).unwrap(), before);
    std::fs::remove_dir_all(&root).ok();
}

/// A sweep written as a SLURM array: one task per job, each task's manifest line giving back
/// exactly its job; resources, throttle and requeue in the script; bad values refused.
#[test]
fn a_slurm_array_maps_each_task_to_its_sweep_job() {
    use ar_train::slurm::{array_job, task_job, SlurmOptions};
    use ar_train::sweep::plan;
    let root = scratch("slurm");
    let configs = root.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    for name in ["a-ar", "b-bp"] {
        std::fs::write(configs.join(format!("{name}.toml")), config().to_toml()).unwrap();
    }
    let sweep = plan(
        std::slice::from_ref(&configs),
        &[3, 4, 5],
        Some(2),
        Some("candle"),
        &root.join("runs"),
    )
    .unwrap();
    let opts = SlurmOptions {
        partition: Some("gpu".into()),
        time: Some("1:00:00".into()),
        cpus_per_task: Some(4),
        mem: Some("8G".into()),
        gres: Some("gpu:1".into()),
        array_limit: Some(2),
        sbatch: vec!["account=proj".into(), "exclusive".into()],
        setup: vec!["module load gcc/13".into()],
        binary: root.join("bin/xtask"),
        data_dir: Some(root.join("data")),
    };
    let array = array_job(&sweep, &opts).unwrap();
    assert_eq!(array.tasks, 6);
    let directives: Vec<&str> =
        array.script.lines().filter_map(|l| l.strip_prefix("#SBATCH --")).collect();
    for expected in [
        "array=0-5%2",
        "partition=gpu",
        "time=1:00:00",
        "cpus-per-task=4",
        "mem=8G",
        "gres=gpu:1",
        "requeue",
        "account=proj",
        "exclusive",
    ] {
        assert!(directives.contains(&expected), "{expected} missing from\n{}", array.script);
    }
    let last = array.script.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("exec '{}' sweep --manifest ", root.join("bin/xtask").display())),
        "{last}"
    );
    assert!(last.ends_with("--task \"$SLURM_ARRAY_TASK_ID\""), "{last}");
    assert!(array.script.contains("\nmodule load gcc/13\nexec "), "{}", array.script);
    let data = format!("export AR_DATA_DIR='{}'", root.join("data").display());
    assert!(array.script.contains(&data), "{}", array.script);
    let no_data = array_job(&sweep, &SlurmOptions { data_dir: None, ..opts.clone() }).unwrap();
    assert!(!no_data.script.contains("AR_DATA_DIR="), "{}", no_data.script);
    let tasks: Vec<&str> = array.manifest.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(tasks.len(), 6);
    array.write().unwrap();
    assert!(array.log_dir.is_dir());
    for (i, job) in sweep.jobs.iter().enumerate() {
        assert_eq!(&task_job(&array.manifest_path, i, None).unwrap(), job, "task {i}");
    }
    assert_eq!(sweep.jobs[4].config.seed, 4);
    assert_eq!(sweep.jobs[4].config.backend, "candle");
    let err = task_job(&array.manifest_path, 6, None).unwrap_err().to_string();
    assert!(err.contains("no task 6"), "{err}");
    // A task trains on the CPUs SLURM gave it, unless its config names a thread count.
    assert_eq!(task_job(&array.manifest_path, 1, Some(4)).unwrap().config.threads, Some(4));
    let pinned = TrainConfig { threads: Some(1), ..config() };
    std::fs::write(configs.join("b-bp.toml"), pinned.to_toml()).unwrap();
    assert_eq!(task_job(&array.manifest_path, 4, Some(4)).unwrap().config.threads, Some(1));
    // The same sweep writes the same files; a different one, or a changed config, others.
    let changed = array_job(&sweep, &opts).unwrap().script_path;
    assert_ne!(changed, array.script_path, "a config's contents changed");
    std::fs::write(configs.join("b-bp.toml"), config().to_toml()).unwrap();
    assert_eq!(array_job(&sweep, &opts).unwrap().script_path, array.script_path);
    let other =
        plan(std::slice::from_ref(&configs), &[3], Some(2), None, &root.join("runs")).unwrap();
    assert_ne!(array_job(&other, &opts).unwrap().script_path, array.script_path);
    let more = SlurmOptions { setup: vec![], ..opts.clone() };
    assert_ne!(array_job(&sweep, &more).unwrap().script_path, array.script_path);
    // Extra options may not take over the array or repeat a flag of its own.
    for (option, says) in
        [("array=0-3", "sets the array"), ("mem=9G", "use --mem"), ("Acc=x", "KEY=VALUE")]
    {
        let o = SlurmOptions { sbatch: vec![option.into()], ..opts.clone() };
        let e = array_job(&sweep, &o).unwrap_err().to_string();
        assert!(e.contains(option) && e.contains(says), "{option}: {e}");
    }
    let two_lines = SlurmOptions { setup: vec!["a\nb".into()], ..opts.clone() };
    assert!(array_job(&sweep, &two_lines).unwrap_err().to_string().contains("setup"));
    // What an #SBATCH line cannot carry is refused, naming the value.
    let spaced = SlurmOptions { mem: Some("8 G".into()), ..opts.clone() };
    assert!(array_job(&sweep, &spaced).unwrap_err().to_string().contains("mem '8 G'"));
    let spaced = SlurmOptions { binary: root.join("my bin/xtask"), ..opts };
    assert!(array_job(&sweep, &spaced).unwrap_err().to_string().contains("my bin"));
    std::fs::remove_dir_all(&root).ok();
}

/// Each sweep job trains on a thread pool of its config's `threads`, whatever the process's own
/// pool (a SLURM task's CPUs reach it through `task_job`, tested above).
#[test]
fn a_sweep_job_trains_on_as_many_threads_as_its_config_names() {
    use ar_train::sweep::Job;
    use std::sync::{atomic::AtomicBool, Arc};
    let root = scratch("sweep-threads");
    let be = NdArray::<f32>::new();
    for threads in [1, 3] {
        let base = TrainConfig { threads: Some(threads), model: "64-10".into(), ..config() };
        let dir = root.join(format!("t{threads}"));
        let job = Job::from_config("t", &root.join("t.toml"), &base, 0, Some(1), None, dir);
        let mut seen = Vec::new();
        let mut observer = |e: Event<'_>| {
            if let Event::Batch { .. } = e {
                seen.push(rayon::current_num_threads());
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        job.unwrap().run(be, stop, &mut observer).unwrap();
        assert!(!seen.is_empty() && seen.iter().all(|&n| n == threads), "{threads}: {seen:?}");
    }
    std::fs::remove_dir_all(&root).ok();
}

/// Work handed to `on_pool` (and to `with_threads` without a count) runs on a worker of the
/// rayon pool, so the kernels' parallel regions split there instead of being handed over one
/// by one; called from a worker, it runs inline on that worker.
#[test]
fn on_pool_runs_its_work_on_a_worker_of_the_pool() {
    use ar_train::sweep::{on_pool, with_threads};
    assert_eq!(rayon::current_thread_index(), None, "the test starts outside the pool");
    assert!(on_pool(rayon::current_thread_index).is_some());
    assert!(with_threads(None, rayon::current_thread_index).unwrap().is_some());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (outer, inner) = pool.install(|| {
        let outer = (std::thread::current().id(), rayon::current_num_threads());
        (outer, on_pool(|| (std::thread::current().id(), rayon::current_num_threads())))
    });
    assert_eq!(outer, inner);
    assert_eq!(inner.1, 2);
}

/// Work handed to `on_callers_pool` runs on the calling thread itself, as worker 0 of a pool of
/// the default size whose other workers take part in the work's parallel regions; on a
/// thread that is already a pool's worker it runs inline there.
#[test]
fn on_callers_pool_runs_its_work_on_the_calling_thread_with_a_pool_around_it() {
    use ar_train::sweep::on_callers_pool;
    use rayon::prelude::*;
    let default = rayon::ThreadPoolBuilder::new().build().unwrap().current_num_threads();
    std::thread::spawn(move || {
        let me = std::thread::current().id();
        let here = || (std::thread::current().id(), rayon::current_thread_index());
        assert_eq!(on_callers_pool(here), (me, Some(0)));
        assert_eq!(on_callers_pool(rayon::current_num_threads), default);
        if default > 1 {
            let ids: std::collections::HashSet<_> = on_callers_pool(|| {
                (0..64)
                    .into_par_iter()
                    .map(|_| {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        std::thread::current().id()
                    })
                    .collect()
            });
            assert!(ids.len() > 1, "the pool's other workers took no part");
        }
    })
    .join()
    .unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (outer, inner) = pool.install(|| {
        let ids = || (std::thread::current().id(), rayon::current_num_threads());
        (ids(), on_callers_pool(ids))
    });
    assert_eq!(outer, inner);
}

/// A sweep's check finds, without training or touching a run directory, each condition that
/// could not start (data missing, a model that does not fit the data) and passes the others.
#[test]
fn a_sweep_check_names_each_condition_that_could_not_start() {
    use ar_train::sweep::plan;
    let root = scratch("sweep-check");
    let configs = root.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let write = |name: &str, c: TrainConfig| {
        std::fs::write(configs.join(format!("{name}.toml")), c.to_toml()).unwrap()
    };
    write("a-good", config());
    write("b-no-data", TrainConfig { dataset: "mnist".into(), ..config() });
    write("c-misfit", TrainConfig { model: "flatten,flatten".into(), ..config() });
    write("d-mse-out", TrainConfig { model: "64-20".into(), ..config() });
    write("e-good-too", TrainConfig { model: "64-10".into(), ..config() });
    let runs = root.join("runs");
    let sweep = plan(std::slice::from_ref(&configs), &[0, 1], Some(1), None, &runs).unwrap();
    let empty = root.join("no-data-here");
    std::fs::create_dir_all(&empty).unwrap();
    // Digits are bundled (read from the root only if a copy is there); MNIST is not.
    let failed = sweep.check(NdArray::<f32>::new(), Some(&empty));
    let said: Vec<(String, String)> =
        failed.iter().map(|(j, e)| (j.name.clone(), e.to_string())).collect();
    assert_eq!(said.len(), 3, "{said:?}");
    assert!(said[0].0 == "b-no-data" && said[0].1.contains("no-data-here"), "{said:?}");
    assert!(said[1].0 == "c-misfit" && said[1].1.contains("flatten"), "{said:?}");
    assert!(said[2].0 == "d-mse-out" && said[2].1.contains("10 classes"), "{said:?}");
    assert!(!runs.exists(), "the check touched no run directory");
    std::fs::remove_dir_all(&root).ok();
}

/// A model whose output does not match the data's classes, and a hidden activation given for
/// a layer-spec model (which it would not change), are refused before the run directory is
/// touched.
#[test]
fn models_that_do_not_fit_the_data_or_ignore_a_flag_are_refused_up_front() {
    let dir = scratch("refused-models");
    let flat = TrainConfig { model: "flatten,flatten".into(), ..TrainConfig::default() };
    let e = Session::create(&dir, flat, NdArray::<f32>::new()).unwrap_err().to_string();
    assert!(e.contains("outputs 64 values") && e.contains("10 classes"), "{e}");
    let relu = TrainConfig {
        model: "cnn-digits".into(),
        hidden_activation: Some(ar_backend::Activation::Relu),
        ..TrainConfig::default()
    };
    let e = Session::create(&dir, relu, NdArray::<f32>::new()).unwrap_err().to_string();
    assert!(e.contains("hidden-activation") && e.contains("MLP presets"), "{e}");
    assert!(!dir.exists(), "the run directory was created");
}

/// `eval --dump-count 0` failed with a shape mismatch; now the count is refused by name.
#[test]
fn a_dump_of_no_samples_is_refused_naming_the_flag() {
    let config = TrainConfig::default();
    let data = config.load_data().unwrap();
    let net = config
        .model(&data.train)
        .unwrap()
        .build(NdArray::<f64>::new(), ar_core::Init::papers(), 0)
        .unwrap();
    let path =
        std::env::temp_dir().join(format!("ar-train-dump0-{}.safetensors", std::process::id()));
    let e = ar_train::dump_predictions(&net, &data.test, &data.normalization, 0, &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dump-count") && e.contains("at least one"), "{e}");
    assert!(!path.exists());
}

/// `--config /dev/zero` and `eval /dev/zero` read without end; a huge config file was read
/// whole. Both are refused before reading, naming the file.
#[test]
fn devices_and_huge_files_are_refused_as_configs_and_checkpoints() {
    let e = ar_train::read_config_text(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(e.contains("/dev/zero") && e.contains("not a regular file"), "{e}");
    let big = std::env::temp_dir().join(format!("ar-train-big-{}.toml", std::process::id()));
    std::fs::write(&big, vec![b'#'; 2 << 20]).unwrap();
    let e = TrainConfig::read(&big).unwrap_err().to_string();
    std::fs::remove_file(&big).ok();
    assert!(e.contains("2097152 bytes") && e.contains("at most 1048576"), "{e}");
    let e = ar_models::load_checkpoint(Path::new("/dev/zero"), &NdArray::<f64>::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("/dev/zero") && e.contains("not a regular file"), "{e}");
}
