//! Networks as DAGs: a planted fault (one reader's contribution dropped) is caught by the
//! oracles, merge nodes refuse mismatched parents by name, the layer spec's residual blocks
//! parse (and refuse mistakes by position), the closed form falls back to Euler where its
//! passes would cost more, and a residual model trains and survives a checkpoint round trip.

use ar_backend::Backend;
use ar_core::{
    closed_form_vjps, Algorithm, Gradients, Init, InitialState, Layer, LayerSpec, Loss, Method,
    Network, Relaxation, Schedule, Signals, Solver, Variant,
};
use ar_models::ModelSpec;
use ar_ndarray::NdArray;
use ar_verify::cases::{autograd_gradients, dag_cases, relaxation, residual_cases, Case};
use ar_verify::checks::{compare, update};

type Be = NdArray<f64>;

/// AR's update with a planted fault: layer `k`'s contribution to node `j` left out.
fn planted(
    case: &Case<Be>,
    algorithm: &Algorithm,
    k: usize,
    j: usize,
) -> Vec<(Vec<f64>, Vec<f64>)> {
    let (net, be) = (&case.net, case.net.backend());
    let x = net.upload_batch(&case.batch.x, case.batch.size).unwrap();
    let t = be.from_host(&case.batch.targets, &[case.batch.size, net.output_width()]);
    let cache = net.forward(&x);
    let top = case.loss.top_gradient(be, &cache.output, &t);
    let mut signals = Signals::with_planted_fault(k, j);
    signals.compute(net, &cache, &top, algorithm);
    Gradients::compute(net, &cache, &signals, &algorithm.variant).to_host(be)
}

#[test]
fn a_dropped_readers_contribution_fails_the_suite() {
    let exact = Variant::exact();
    let algorithms = [
        Algorithm::backprop(),
        Algorithm {
            method: Method::Relaxation(relaxation(1.0, 1, Schedule::Sweep)),
            variant: exact,
        },
        Algorithm {
            method: Method::Relaxation(Relaxation {
                solver: Solver::ClosedForm,
                ..Relaxation::papers()
            }),
            variant: exact,
        },
    ];
    let mut planted_faults = 0;
    for case in dag_cases(&Be::new()).into_iter().chain(residual_cases(&Be::new())) {
        let oracle = autograd_gradients(&case).expect("the DAG cases have no strided max pooling");
        // Every merge node's skip edge: the merge's contribution to the node it skips from.
        for k in 1..=case.net.depth() {
            if !matches!(case.net.layers[k - 1], Layer::Add) {
                continue;
            }
            let j = case.net.parents(k)[0];
            if j == 0 {
                continue; // the input's signal is not needed
            }
            for algorithm in &algorithms {
                let clean = update(&case.net, &case.batch, case.loss, algorithm).0;
                let faulty = planted(&case, algorithm, k, j);
                let tol = if matches!(algorithm.method, Method::Backprop)
                    || matches!(algorithm.method, Method::Relaxation(r) if r.eta == 1.0)
                {
                    1e-10
                } else {
                    // T = 100 from the feedforward start is not converged: compare with the
                    // clean relaxation instead of the gradient.
                    let rows = compare(&case.name, "planted", &faulty, &clean, Some(1e-10));
                    assert!(rows.iter().any(|r| !r.passed), "{}: fault {k}->{j} unseen", case.name);
                    planted_faults += 1;
                    continue;
                };
                let good = compare(&case.name, "clean", &clean, &oracle, Some(tol));
                assert!(good.iter().all(|r| r.passed), "{}: clean run fails", case.name);
                let bad = compare(&case.name, "planted", &faulty, &oracle, Some(tol));
                assert!(bad.iter().any(|r| !r.passed), "{}: fault {k}->{j} unseen", case.name);
                planted_faults += 1;
            }
        }
    }
    assert!(planted_faults >= 9, "{planted_faults}");
}

#[test]
fn merge_nodes_name_both_parents_and_their_shapes() {
    let specs = [
        LayerSpec::Dense { outputs: 4, activation: ar_backend::Activation::Tanh },
        LayerSpec::Add,
        LayerSpec::Dense { outputs: 2, activation: ar_backend::Activation::Identity },
    ];
    let parents = [vec![0], vec![0, 1], vec![2]];
    let e = Network::build_graph(Be::new(), &[3], &specs, &parents, Init::PyTorch, 0).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("the input") && e.contains("[3]") && e.contains("layer 1") && e.contains("[4]"),
        "{e}"
    );
    let bad_parent = [vec![0], vec![1, 3], vec![2]];
    let e =
        Network::build_graph(Be::new(), &[3], &specs, &bad_parent, Init::PyTorch, 0).unwrap_err();
    assert!(e.to_string().contains("not below it"), "{e}");
    let unread = [vec![0], vec![0], vec![1]];
    let specs = [specs[0], specs[0], specs[2]];
    let e = Network::build_graph(Be::new(), &[3], &specs, &unread, Init::PyTorch, 0).unwrap_err();
    assert!(e.to_string().contains("read by no later layer"), "{e}");
}

#[test]
fn residual_blocks_parse_into_graphs_and_mistakes_name_their_position() {
    let m = ModelSpec::parse("conv4x3/p1:relu,res(conv4x3/p1:relu,conv4x3/p1),gap,fc3", &[1, 6, 6])
        .unwrap();
    assert_eq!(m.parents, vec![vec![0], vec![1], vec![2], vec![1, 3], vec![4], vec![5]]);
    assert_eq!(m.layers[3], LayerSpec::Add);
    assert_eq!(m.zero_init, vec![2]);
    let net = m.build(Be::new(), Init::PyTorch, 0).unwrap();
    assert_eq!(net.output_shapes()[4], vec![4]);
    let be = Be::new();
    assert!(be.to_host(net.layers[2].weights().unwrap().weight).iter().all(|&w| w == 0.0));
    let proj =
        ModelSpec::parse("res(conv4x3/s2/p1:relu,conv4x3/p1|conv4x1/s2),gap,fc2", &[2, 8, 8])
            .unwrap();
    assert_eq!(proj.parents[3], vec![3, 2], "the shortcut first, then the branch");
    for (bad, needle) in [
        ("res(fc4,fc4", "expected ')'"),
        ("fc4,res()", "character 9"),
        ("res(flatten)", "needs a weighted layer"),
        ("fc4,,fc2", "character 5"),
        ("fc4)", "unexpected ')'"),
    ] {
        let e = ModelSpec::parse(bad, &[4]).unwrap_err().to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
    let shapes = ModelSpec::parse("res(conv4x3/s2/p1,conv4x3/p1),gap,fc2", &[2, 8, 8])
        .unwrap()
        .build(Be::new(), Init::PyTorch, 0)
        .unwrap_err()
        .to_string();
    assert!(shapes.contains("[2, 8, 8]") && shapes.contains("[4, 4, 4]"), "{shapes}");
}

#[test]
fn families_count_their_weighted_layers() {
    for (name, shape, weighted, merges) in [
        ("plain-mlp-4-8", &[1, 4, 4][..], 4, 0),
        ("res-mlp-8-8", &[1, 4, 4], 8, 3),
        ("plain-cnn-8-2", &[1, 12, 12], 8, 0),
        ("res-cnn-8-2", &[1, 12, 12], 10, 3),
        ("res-cnn-16-2", &[3, 12, 12], 18, 7),
        ("plain-cnn-5-2", &[3, 12, 12], 5, 0),
        ("res-cnn-4-2", &[1, 12, 12], 4, 1),
    ] {
        let m = ModelSpec::preset(name, shape, 10).unwrap();
        let count = |f: fn(&LayerSpec) -> bool| m.layers.iter().filter(|l| f(l)).count();
        let w = count(|l| matches!(l, LayerSpec::Dense { .. } | LayerSpec::Conv2d { .. }));
        assert_eq!((w, count(|l| *l == LayerSpec::Add)), (weighted, merges), "{name}");
        m.build(Be::new(), Init::PyTorch, 0).unwrap();
    }
    for bad in ["res-mlp-5-8", "res-cnn-2-4", "plain-mlp-1-8", "res-mlp-8-0", "res-mlp-8"] {
        assert!(ModelSpec::preset(bad, &[1, 4, 4], 10).is_err(), "{bad}");
    }
}

#[test]
fn the_closed_form_falls_back_to_euler_where_its_passes_cost_more() {
    let deep = ModelSpec::preset("plain-mlp-300-3", &[4], 2).unwrap();
    let net = deep.build(Be::new(), Init::PyTorch, 0).unwrap();
    let case = Case {
        name: "plain-mlp-300-3".into(),
        batch: ar_verify::checks::Batch {
            x: vec![0.3, -0.2, 0.5, 0.1],
            targets: vec![1.0, 0.0],
            size: 1,
        },
        net,
        loss: Loss::Mse,
    };
    let be = case.net.backend();
    let x = case.net.upload_batch(&case.batch.x, 1).unwrap();
    let t = be.from_host(&case.batch.targets, &[1, 2]);
    let cache = case.net.forward(&x);
    let top = Loss::Mse.top_gradient(be, &cache.output, &t);
    // From the feedforward start the passes cost about S^2 / 2 VJPs, more than the sweep's
    // T S (300 layers, T = 100); from zero, one per relaxing layer on a chain.
    for (schedule, init, expected) in [
        (Schedule::Sweep, InitialState::Feedforward, Solver::Euler),
        (Schedule::Sweep, InitialState::Zero, Solver::ClosedForm),
        (Schedule::Parallel, InitialState::Feedforward, Solver::ClosedForm),
        (Schedule::Parallel, InitialState::Zero, Solver::ClosedForm),
    ] {
        let auto = Relaxation { schedule, init, ..Relaxation::papers() };
        let run =
            |r: Relaxation| Algorithm { method: Method::Relaxation(r), variant: Variant::exact() };
        let stats = Signals::new().compute(&case.net, &cache, &top, &run(auto)).unwrap();
        assert_eq!(stats.solver, expected, "{schedule:?} {init:?}");
        let (euler, _) = update(
            &case.net,
            &case.batch,
            case.loss,
            &run(Relaxation { solver: Solver::Euler, ..auto }),
        );
        let (closed, _) = update(
            &case.net,
            &case.batch,
            case.loss,
            &run(Relaxation { solver: Solver::ClosedForm, ..auto }),
        );
        for row in compare(&case.name, "closed form", &closed, &euler, Some(1e-12)) {
            assert!(row.passed, "{schedule:?} {init:?} layer {:?}: {:.3e}", row.layer, row.value);
        }
    }
}

/// The closed form's VJPs through weighted layers (docs/algorithm.md quotes them): from zero,
/// as many as backprop's on a chain and 12 against backprop's 8 on `res-cnn-8-16`, where the
/// feedforward start's Horner passes take 29.
#[test]
fn the_zero_starts_closed_form_takes_few_vjps() {
    let zero = Relaxation { init: InitialState::Zero, ..Relaxation::papers() };
    let chain = ModelSpec::preset("plain-mlp-300-3", &[4], 2).unwrap();
    let chain = chain.build(Be::new(), Init::PyTorch, 0).unwrap();
    // Backprop sends through the 298 weighted layers between the first and the top; under the
    // parallel schedule the clamp reaches only T = 100 layers down (powers above T vanish).
    assert_eq!(closed_form_vjps(&chain, &zero), 298);
    let parallel = Relaxation { schedule: Schedule::Parallel, ..zero };
    assert_eq!(closed_form_vjps(&chain, &parallel), 100);
    let res = ModelSpec::preset("res-cnn-8-16", &[3, 32, 32], 10).unwrap();
    let res = res.build(Be::new(), Init::PyTorch, 0).unwrap();
    assert_eq!(closed_form_vjps(&res, &zero), 12);
    assert_eq!(closed_form_vjps(&res, &Relaxation::papers()), 29);
}

#[test]
fn a_residual_checkpoint_keeps_its_graph_and_module_paths() {
    use ar_core::Optimizer;
    use ar_models::{load_checkpoint, save_checkpoint, TrainingState};
    let be = Be::new();
    let spec = "conv3x3/p1:relu,res(conv3x3/p1:relu,conv3x3/p1),res(conv4x3/s2/p1,conv4x3/p1|conv4x1/s2),gap,fc2";
    let mut model = ModelSpec::parse(spec, &[1, 6, 6]).unwrap();
    model.zero_init.clear();
    let net = model.build(be, Init::PyTorch, 3).unwrap();
    let dir = std::env::temp_dir().join(format!("ar-verify-res-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("res.safetensors");
    let state = TrainingState { epochs_done: 1, batches_done: 0 };
    save_checkpoint(&path, &net, &Optimizer::sgd(0.1, 0.0), state, &Default::default()).unwrap();
    let names: Vec<String> = net.parameters().into_iter().map(|(n, _, _)| n).collect();
    for want in ["layers.0.weight", "layers.1.branch.1.bias", "layers.2.shortcut.0.weight"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let back = load_checkpoint(&path, &be).unwrap().net;
    assert_eq!(back.names(), net.names());
    assert!(!back.is_chain());
    for k in 1..=net.depth() {
        assert_eq!(back.parents(k), net.parents(k), "layer {k}");
    }
    assert_eq!(back.parameters(), net.parameters());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn oversized_layers_are_refused_before_anything_is_allocated() {
    for (spec, shape, needle) in [
        (
            "conv4x3/p100000,flatten,fc10",
            &[1, 28, 28][..],
            "output per sample of 4 x 200026 x 200026",
        ),
        ("flatten,fc100000000,fc10", &[1, 28, 28], "weight of 100000000 x 784"),
        ("conv100000000x1,flatten,fc10", &[1, 28, 28], "weight of 100000000 x 1 x 1 x 1"),
    ] {
        let e = ModelSpec::parse(spec, shape)
            .unwrap()
            .build(Be::new(), Init::PyTorch, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle) && e.contains("more than the"), "{spec}: {e}");
    }
}
