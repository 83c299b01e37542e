//! The engine's handles against the generic code they wrap: the same numbers through either.

use ar_engine::{BackendName, Learner, Model};
use ar_train::{AlgorithmName, TrainConfig};

fn config() -> TrainConfig {
    TrainConfig {
        model: "6-5-3".into(),
        precision: ar_backend::Precision::F64,
        ..TrainConfig::default()
    }
}

fn batch() -> (Vec<f64>, Vec<usize>) {
    let x = (0..24).map(|i| ((i * 7) % 11) as f64 / 11.0).collect();
    (x, vec![0, 2, 1, 2])
}

#[test]
fn backends_are_chosen_by_name_and_unknown_ones_refused() {
    assert_eq!(BackendName::parse("candle").unwrap(), BackendName::Candle);
    let e = BackendName::parse("tpu").unwrap_err().to_string();
    assert!(e.starts_with("backend ") && e.contains("tpu") && e.contains("ndarray"), "{e}");
    let bad = TrainConfig { backend: "tpu".into(), ..config() };
    assert!(Model::new(&bad, &[6], 3).unwrap_err().to_string().contains("tpu"));
}

#[test]
fn exact_ar_gradients_equal_backprop_through_the_handles() {
    let (x, labels) = batch();
    let mut model = Model::new(&config(), &[6], 3).unwrap();
    // At eta = 1 the relaxation reaches backprop's deltas exactly (docs/algorithm.md).
    let exact = TrainConfig { eta: 1.0, steps: 4, ..config() };
    let mut ar = Learner::new(&mut model, &exact, AlgorithmName::Ar).unwrap();
    let mut bp = Learner::new(&mut model, &exact, AlgorithmName::Bp).unwrap();
    let (ga, gb) =
        (ar.gradients(&model, &x, &labels).unwrap(), bp.gradients(&model, &x, &labels).unwrap());
    let names: Vec<&str> = ga.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]);
    for (a, b) in ga.iter().zip(&gb) {
        assert_eq!(a.1, b.1);
        let err = a.2.iter().zip(&b.2).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(err < 1e-12, "{}: {err}", a.0);
    }
    let probes = ar.probe(&model, &x, &labels).unwrap();
    assert!(probes.iter().all(|p| p.relative_error < 1e-10), "{probes:?}");
}

#[test]
fn steps_change_the_model_and_parameters_round_trip() {
    let (x, labels) = batch();
    let mut model = Model::new(&config(), &[6], 3).unwrap();
    let before = model.parameters();
    let mut ar = Learner::new(&mut model, &config(), AlgorithmName::Ar).unwrap();
    let step = ar.step(&mut model, &x, &labels).unwrap();
    assert!(step.loss > 0.0 && step.correct <= 4);
    assert_ne!(model.parameters(), before);
    model.load_parameters(&before).unwrap();
    assert_eq!(model.parameters(), before);
    let mut wrong = before.clone();
    wrong[0].1 = vec![6, 5];
    let e = model.load_parameters(&wrong).unwrap_err().to_string();
    assert!(e.contains("layers.0.weight") && e.contains("[5, 6]"), "{e}");
    let e = ar.step(&mut model, &x, &[0, 1, 2, 3]).unwrap_err().to_string();
    assert!(e.contains("label 3 of sample 3"), "{e}");
    let e = model.predict(&x[..5]).unwrap_err().to_string();
    assert!(e.contains("5 values") && e.contains("6 values"), "{e}");
}
