//! Chain networks train bit-identically across the graph engine's introduction: a digest of
//! every per-epoch metric and final parameter of a few chain runs (MLP and CNN; closed form,
//! Euler under both schedules, backprop, feedback alignment, fderiv-relax). The MLP digests are
//! the values the chain-only engine (commit ed0e90a) gave, and the graph engine reproduced all
//! five at 8b58772. The CNN digests were taken again when stride-1 convolutions with padding
//! moved to the wide im2col layout (ar-ndarray's conv.rs), which sums their products in another
//! order (checked against direct loops there); at ed0e90a they were a7d082739d281141,
//! 1b5a503f85cf5c0f and f8f27151b0998f6d. They changed again when a convolution's bias
//! gradient (ar-ndarray's `sum_channels`) moved from one running sum per channel to sixteen
//! lanes added pairwise (it was 804f5fd2cab41e24, aee10fe0f80b5e74 and 2c032975057b20f4 before;
//! with one lane the new code gives those bits again). And again when a stride-1 weight
//! gradient with at most 16 output channels became one product per kernel tap on the shifted
//! input (conv.rs's `tap_products`, which reduces over another span and order; it was
//! 421aba1a873b7834, d2b328d93fe4ed2e and b145b595bf3278f2 before, and with `MAX_SHIFTED_ROWS
//! = 0` the new code gives those bits again). And when the bias gradient came to be summed
//! with the kernel's, per block of samples (`conv2d_grads_into`; it was a659a4a5e9d5e9bd,
//! 76fa462e2e0fe6f2 and 8fb7d507373968c3 before, which calling the kernel's gradient and
//! `sum_channels_into` apart gives again). Any other change to these digests is a change of
//! results and needs a reason.

use ar_core::{Feedback, Schedule, Solver};
use ar_ndarray::NdArray;
use ar_train::{AlgorithmName, Fderiv, Session, Silent, TrainConfig};

/// FNV-1a over the bits of every metric that does not depend on timing and every parameter.
fn digest(config: TrainConfig, name: &str) -> u64 {
    let dir = std::env::temp_dir().join(format!("ar-train-pin-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let config = TrainConfig { precision: ar_train::Precision::F64, ..config };
    let mut s = Session::create(&dir, config, NdArray::<f64>::new()).unwrap();
    s.run(&mut Silent).unwrap();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: f64| {
        for b in x.to_bits().to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for t in s.trainees() {
        for m in &t.history {
            for v in [m.train_loss, m.train_accuracy, m.test_loss, m.test_accuracy] {
                eat(v);
            }
        }
        for (_, _, values) in t.net.parameters() {
            values.iter().for_each(|&v| eat(v));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    h
}

fn base(model: &str) -> TrainConfig {
    TrainConfig {
        model: model.into(),
        epochs: Some(2),
        precision: ar_backend::Precision::F64,
        probe_every: 0,
        ..TrainConfig::default()
    }
}

#[test]
fn chain_runs_are_bit_identical_to_the_chain_only_engine() {
    let runs: Vec<(&str, TrainConfig)> = vec![
        ("mlp-closed-form", base("digits-mlp")),
        (
            "mlp-euler-parallel-fa",
            TrainConfig {
                solver: Solver::Euler,
                schedule: Schedule::Parallel,
                algorithms: vec![AlgorithmName::Ar, AlgorithmName::Fa],
                feedback: Feedback::Learned,
                ..base("digits-mlp")
            },
        ),
        ("cnn-closed-form", base("cnn-digits")),
        ("cnn-euler-sweep", TrainConfig { solver: Solver::Euler, ..base("cnn-digits") }),
        (
            "cnn-fderiv-relax",
            TrainConfig {
                fderiv: Some(Fderiv::Both),
                algorithms: vec![AlgorithmName::Ar],
                steps: 20,
                epochs: Some(1),
                ..base("cnn-digits")
            },
        ),
    ];
    let got: Vec<(&str, String)> =
        runs.into_iter().map(|(n, c)| (n, format!("{:016x}", digest(c, n)))).collect();
    let want = vec![
        ("mlp-closed-form", "8bb0591f72545e2d"),
        ("mlp-euler-parallel-fa", "6d91c1c8761fa494"),
        ("cnn-closed-form", "83b9a7b719caaeaf"),
        ("cnn-euler-sweep", "4da4526e48410bc3"),
        ("cnn-fderiv-relax", "1d2d13745bf53c44"),
    ];
    assert_eq!(got.iter().map(|(n, d)| (*n, d.as_str())).collect::<Vec<_>>(), want, "{got:?}");
}
