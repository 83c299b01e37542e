//! Behaviour tests of training steps: feedback weights under every variant, buffer reuse,
//! precision agreement, and configuration errors.

use ar_backend::{Activation, Backend};
use ar_core::metrics::relative_error;
use ar_core::{
    Algorithm, DenseShape, Feedback, Init, Loss, Method, Network, Optimizer, Relaxation, Schedule,
    Solver, Trainer, Variant,
};
use ar_ndarray::NdArray;

type Be = NdArray<f64>;

fn net(be: &Be) -> Network<Be> {
    let shapes =
        [(6, 9, Activation::Tanh), (9, 5, Activation::Sigmoid), (5, 3, Activation::Identity)]
            .map(|(inputs, outputs, activation)| DenseShape { inputs, outputs, activation });
    Network::dense_stack(*be, &shapes, Init::PyTorch, 42).unwrap()
}

fn batch(be: &Be, size: usize, salt: f64) -> (<Be as Backend>::Tensor, <Be as Backend>::Tensor) {
    let x: Vec<f64> = (0..size * 6).map(|i| ((i as f64 + salt) * 0.71).sin()).collect();
    let mut t = vec![0.0; size * 3];
    for b in 0..size {
        t[b * 3 + (b + salt as usize) % 3] = 1.0;
    }
    (be.from_host(&x, &[size, 6]), be.from_host(&t, &[size, 3]))
}

/// `psi_k - W_k^T` for every layer above the first, flattened.
fn feedback_gap(be: &Be, net: &Network<Be>) -> Vec<f64> {
    let mut gap = Vec::new();
    for layer in net.layers.iter().skip(1) {
        let d = layer.as_dense().expect("an MLP layer");
        let s = d.shape(be);
        let (w, psi) = (be.to_host(&d.weight), be.to_host(d.feedback.as_ref().unwrap()));
        for i in 0..s.inputs {
            for o in 0..s.outputs {
                gap.push(psi[i * s.outputs + o] - w[o * s.inputs + i]);
            }
        }
    }
    gap
}

fn learned(decay: f64) -> Algorithm {
    Algorithm {
        method: Method::Relaxation(Relaxation::papers()),
        variant: Variant { feedback: Feedback::Learned, feedback_decay: decay, ..Variant::exact() },
    }
}

#[test]
fn learned_feedback_that_starts_at_transpose_stays_there() {
    let be = Be::new();
    let mut n = net(&be);
    n.set_feedback_to_transpose();
    let mut trainer = Trainer::new(learned(0.0), Loss::Mse, Optimizer::sgd(0.2, 0.9), &n).unwrap();
    for step in 0..10 {
        let (x, t) = batch(&be, 4, step as f64);
        trainer.step(&mut n, &x, &t);
    }
    let gap = feedback_gap(&be, &n);
    assert!(
        gap.iter().all(|g| g.abs() < 1e-14),
        "max gap {:e}",
        gap.iter().fold(0.0f64, |m, g| m.max(g.abs()))
    );
}

/// Kolen-Pollack: with plain SGD, psi - W^T obeys gap <- (1 - lr lambda) gap exactly (the
/// gradient terms cancel); without decay the gap never changes.
#[test]
fn kolen_pollack_decay_shrinks_the_gap_geometrically() {
    let be = Be::new();
    for decay in [0.0, 0.05] {
        let mut n = net(&be);
        n.init_feedback(Init::Normal { std: 0.3 }, 7, &learned(decay));
        let before = feedback_gap(&be, &n);
        let lr = 0.1;
        let mut trainer =
            Trainer::new(learned(decay), Loss::Mse, Optimizer::sgd(lr, 0.0), &n).unwrap();
        let steps = 20;
        for step in 0..steps {
            let (x, t) = batch(&be, 3, step as f64);
            trainer.step(&mut n, &x, &t);
        }
        let factor = (1.0 - lr * decay).powi(steps);
        let predicted: Vec<f64> = before.iter().map(|g| g * factor).collect();
        let err = relative_error(&feedback_gap(&be, &n), &predicted);
        assert!(err < 1e-12, "decay {decay}: gap off the (1 - lr lambda)^n law by {err:e}");
    }
}

#[test]
fn random_feedback_never_changes_while_weights_do() {
    let be = Be::new();
    let mut n = net(&be);
    n.init_feedback(Init::papers(), 1, &learned(0.0));
    let psi_before: Vec<Vec<f64>> = n.layers[1..]
        .iter()
        .map(|l| be.to_host(l.as_dense().expect("an MLP layer").feedback.as_ref().unwrap()))
        .collect();
    let w_before = be.to_host(&n.layers[1].as_dense().expect("an MLP layer").weight);
    for algorithm in [Algorithm::feedback_alignment(), {
        let mut a = Algorithm::relaxation(Relaxation::papers());
        a.variant.feedback = Feedback::Random;
        a
    }] {
        let mut trainer =
            Trainer::new(algorithm, Loss::CrossEntropy, Optimizer::sgd(0.5, 0.5), &n).unwrap();
        for step in 0..5 {
            let (x, t) = batch(&be, 2, step as f64);
            trainer.step(&mut n, &x, &t);
        }
    }
    let psi_after: Vec<Vec<f64>> = n.layers[1..]
        .iter()
        .map(|l| be.to_host(l.as_dense().expect("an MLP layer").feedback.as_ref().unwrap()))
        .collect();
    assert_eq!(psi_before, psi_after);
    assert_ne!(w_before, be.to_host(&n.layers[1].as_dense().expect("an MLP layer").weight));
}

#[test]
fn trainer_rejects_missing_feedback_weights_and_bad_settings() {
    let be = Be::new();
    let n = net(&be);
    let err = Trainer::new(learned(0.0), Loss::Mse, Optimizer::sgd(0.1, 0.0), &n)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer 2") && err.contains("init_feedback"), "{err}");
    let err = Trainer::new(Algorithm::backprop(), Loss::Mse, Optimizer::sgd(-1.0, 0.0), &n)
        .unwrap_err()
        .to_string();
    assert!(err.contains("learning rate") && err.contains("-1"), "{err}");
    let err = Trainer::new(Algorithm::backprop(), Loss::Mse, Optimizer::sgd(0.1, 1.0), &n)
        .unwrap_err()
        .to_string();
    assert!(err.contains("momentum"), "{err}");
}

/// Reused buffers give the same answer as fresh ones, across changing batch sizes.
#[test]
fn reused_buffers_match_fresh_ones_across_batch_sizes() {
    let be = Be::new();
    let n = net(&be);
    let mut r = Relaxation::papers();
    r.schedule = Schedule::Parallel;
    r.solver = Solver::Euler;
    let algorithm = Algorithm::relaxation(r);
    let mut reused = Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.1, 0.0), &n).unwrap();
    for (size, salt) in [(4, 0.0), (1, 1.0), (4, 2.0), (7, 3.0)] {
        let (x, t) = batch(&be, size, salt);
        let mut fresh = Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.1, 0.0), &n).unwrap();
        let (a, _) = reused.gradients(&n, &x, &t);
        let (b, _) = fresh.gradients(&n, &x, &t);
        assert_eq!(a.to_host(&be), b.to_host(&be), "batch {size}");
    }
}

/// A forward pass written into the previous pass's tensors gives the same bits as a fresh one,
/// on a residual network (convolutions, a skip edge, global pooling), across batch sizes and
/// with a cache another network left.
#[test]
fn a_forward_pass_into_old_buffers_equals_a_fresh_one() {
    use ar_backend::ConvGeometry;
    use ar_core::{ForwardCache, LayerSpec};
    let be = Be::new();
    let conv = |out_channels, activation| LayerSpec::Conv2d {
        out_channels,
        kernel: 3,
        geometry: ConvGeometry { stride: 1, padding: 1 },
        activation,
    };
    let specs = [
        conv(4, Activation::Relu),
        conv(4, Activation::Tanh),
        LayerSpec::Add,
        LayerSpec::GlobalAvgPool,
        LayerSpec::Dense { outputs: 3, activation: Activation::Identity },
    ];
    let parents = [vec![0], vec![1], vec![1, 2], vec![3], vec![4]];
    let residual =
        Network::build_graph(be, &[2, 5, 5], &specs, &parents, Init::PyTorch, 7).unwrap();
    let other = Network::build_graph(be, &[2, 5, 5], &specs, &parents, Init::PyTorch, 8).unwrap();
    let input = |size: usize, salt: f64| {
        let x: Vec<f64> = (0..size * 50).map(|i| ((i as f64 + salt) * 0.37).sin()).collect();
        be.from_host(&x, &[size, 2, 5, 5])
    };
    let values = |c: &ForwardCache<Be>| {
        let all =
            c.activities.iter().chain(c.pre.iter().flatten()).chain(c.fprime.iter().flatten());
        all.chain([&c.output]).map(|t| be.to_host(t)).collect::<Vec<_>>()
    };
    let mut cache = Some(other.forward(&input(3, 9.0)));
    for (size, salt) in [(3, 0.0), (3, 1.0), (1, 2.0), (4, 3.0), (4, 4.0)] {
        let x = input(size, salt);
        let reused = residual.forward_reusing(&x, cache.take());
        assert_eq!(values(&reused), values(&residual.forward(&x)), "batch {size}, salt {salt}");
        cache = Some(reused);
    }
}

/// The same step in f32 and f64 from the same initial weights agrees to f32 rounding.
#[test]
fn f32_and_f64_steps_agree_to_single_precision() {
    let (b32, b64) = (NdArray::<f32>::new(), Be::new());
    let shapes = [
        DenseShape { inputs: 6, outputs: 8, activation: Activation::Relu },
        DenseShape { inputs: 8, outputs: 3, activation: Activation::Identity },
    ];
    let n32 = Network::dense_stack(b32, &shapes, Init::papers(), 9).unwrap();
    let n64 = Network::dense_stack(b64, &shapes, Init::papers(), 9).unwrap();
    let (x, t) = batch(&b64, 5, 0.0);
    let (xh, th) = (b64.to_host(&x), b64.to_host(&t));
    let algorithm =
        Algorithm::relaxation(Relaxation { solver: Solver::Euler, ..Relaxation::papers() });
    let mut t32 = Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.1, 0.0), &n32).unwrap();
    let mut t64 = Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.1, 0.0), &n64).unwrap();
    let (g32, o32) =
        t32.gradients(&n32, &b32.from_host(&xh, &[5, 6]), &b32.from_host(&th, &[5, 3]));
    let (g64, o64) = t64.gradients(&n64, &x, &t);
    assert!((o32.loss - o64.loss).abs() <= 1e-6 * o64.loss);
    for ((w32, b32v), (w64, b64v)) in g32.to_host(&b32).iter().zip(g64.to_host(&b64)) {
        assert!(relative_error(w32, &w64) < 1e-5 && relative_error(b32v, &b64v) < 1e-5);
    }
}

#[test]
fn feedback_alignment_trains_a_network_that_starts_with_pooling() {
    // Backprop-style passes stop at the first weighted layer, which therefore needs no backward
    // matrix (none is drawn for it), also when parameter-free layers lie below it.
    let be = Be::new();
    let pool = ar_core::PoolGeometry { kernel: 2, stride: 2 };
    let specs = [
        ar_core::LayerSpec::MaxPool2d(pool),
        ar_core::LayerSpec::Flatten,
        ar_core::LayerSpec::Dense { outputs: 5, activation: Activation::Tanh },
        ar_core::LayerSpec::Dense { outputs: 3, activation: Activation::Identity },
    ];
    let mut n = Network::build(be, &[1, 4, 4], &specs, Init::PyTorch, 3).unwrap();
    let fa = Algorithm::feedback_alignment();
    n.init_feedback(Init::papers(), 1, &fa);
    assert!(n.layers[2].weights().unwrap().feedback.is_none());
    let mut trainer = Trainer::new(fa, Loss::Mse, Optimizer::sgd(0.1, 0.0), &n).unwrap();
    let x =
        be.from_host(&(0..32).map(|i| (i as f64 * 0.37).sin()).collect::<Vec<_>>(), &[2, 1, 4, 4]);
    let t = be.from_host(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &[2, 3]);
    let before = be.to_host(n.layers[2].weights().unwrap().weight);
    trainer.step(&mut n, &x, &t);
    assert_ne!(before, be.to_host(n.layers[2].weights().unwrap().weight));
}

#[test]
fn a_relaxing_input_needs_and_trains_the_first_layers_backward_matrix() {
    let be = Be::new();
    let r = Relaxation { relax_input: true, ..Relaxation::papers() };
    let algorithm = Algorithm {
        method: Method::Relaxation(r),
        variant: Variant { feedback: Feedback::Learned, ..Variant::exact() },
    };
    let without = Algorithm { method: Method::Relaxation(Relaxation::papers()), ..algorithm };
    let mut n = net(&be);
    n.init_feedback(Init::papers(), 1, &without);
    let err =
        Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.1, 0.0), &n).unwrap_err().to_string();
    assert!(err.contains("layer 1") && err.contains("init_feedback"), "{err}");
    let mut n = net(&be);
    n.init_feedback(Init::papers(), 1, &algorithm);
    let psi = |n: &Network<Be>| be.to_host(n.layers[0].weights().unwrap().feedback.unwrap());
    let before = psi(&n);
    let mut trainer = Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.1, 0.0), &n).unwrap();
    let (x, t) = batch(&be, 4, 0.0);
    trainer.step(&mut n, &x, &t);
    assert_ne!(before, psi(&n));
    // The other layers' backward matrices are drawn as without the relaxing input.
    let mut plain = net(&be);
    plain.init_feedback(Init::papers(), 1, &without);
    let mut relaxing = net(&be);
    relaxing.init_feedback(Init::papers(), 1, &algorithm);
    for k in 1..3 {
        let f = |m: &Network<Be>| be.to_host(m.layers[k].weights().unwrap().feedback.unwrap());
        assert_eq!(f(&plain), f(&relaxing));
    }
}

/// conv 2 3x3 (pad 1), conv 3 3x3 (pad 1), flatten, dense 5, dense 3 on 1x4x4, with the convs'
/// activation as given.
fn cnn(be: &Be, conv_activation: Activation) -> Network<Be> {
    let g = ar_core::ConvGeometry { stride: 1, padding: 1 };
    let conv = |out_channels| ar_core::LayerSpec::Conv2d {
        out_channels,
        kernel: 3,
        geometry: g,
        activation: conv_activation,
    };
    let specs = [
        conv(2),
        conv(3),
        ar_core::LayerSpec::Flatten,
        ar_core::LayerSpec::Dense { outputs: 5, activation: Activation::Tanh },
        ar_core::LayerSpec::Dense { outputs: 3, activation: Activation::Identity },
    ];
    Network::build(*be, &[1, 4, 4], &specs, Init::PyTorch, 5).unwrap()
}

fn cnn_batch(be: &Be) -> (<Be as Backend>::Tensor, <Be as Backend>::Tensor) {
    let x = (0..32).map(|i| (i as f64 * 0.53).cos()).collect::<Vec<_>>();
    (be.from_host(&x, &[2, 1, 4, 4]), be.from_host(&[0.0, 1.0, 0.0, 0.0, 0.0, 1.0], &[2, 3]))
}

fn relaxing(label: &str) -> Algorithm {
    label.parse().unwrap()
}

/// The update of one step of `algorithm` on `net`, every layer's weight on the host.
fn one_update(net: &Network<Be>, algorithm: Algorithm) -> Vec<Vec<f64>> {
    let be = *net.backend();
    let (x, t) = cnn_batch(&be);
    let mut trainer = Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(1.0, 0.0), net).unwrap();
    let (grads, _) = trainer.gradients(net, &x, &t);
    grads.layers.iter().flatten().map(|g| be.to_host(&g.weight)).collect()
}

#[test]
fn per_layer_type_feedback_builds_backward_weights_only_where_used() {
    let be = Be::new();
    let has_psi = |n: &Network<Be>| -> Vec<bool> {
        n.layers.iter().filter_map(|l| l.weights()).map(|w| w.feedback.is_some()).collect()
    };
    // Learned dense feedback, W^T through the convolutions (the authors' "everything" CNN
    // condition): backward matrices for the dense layers only (none for the first layer).
    let mut n = cnn(&be, Activation::Tanh);
    n.init_feedback(Init::papers(), 1, &relaxing("ar+learned+conv-transpose"));
    assert_eq!(has_psi(&n), [false, false, true, true]);
    // The other way round: a backward kernel for the second convolution only.
    let mut n = cnn(&be, Activation::Tanh);
    n.init_feedback(Init::papers(), 1, &relaxing("ar+conv-learned"));
    assert_eq!(has_psi(&n), [false, true, false, false]);
    // And a step trains the dense psi and leaves the convolutions on W^T.
    let mut n = cnn(&be, Activation::Tanh);
    let algorithm = relaxing("ar+learned+conv-transpose");
    n.init_feedback(Init::papers(), 1, &algorithm);
    let psi = |n: &Network<Be>| be.to_host(n.layers[3].weights().unwrap().feedback.unwrap());
    let before = psi(&n);
    let mut trainer = Trainer::new(algorithm, Loss::Mse, Optimizer::sgd(0.1, 0.0), &n).unwrap();
    let (x, t) = cnn_batch(&be);
    trainer.step(&mut n, &x, &t);
    assert_ne!(before, psi(&n));
    assert!(n.layers[1].weights().unwrap().feedback.is_none());
}

#[test]
fn conv_transpose_ignores_the_convolutions_backward_kernels() {
    // Two networks alike but for the second convolution's backward kernel (random in one,
    // exactly K in the other): with conv-transpose their updates agree exactly; with learned
    // kernels everywhere they differ.
    let be = Be::new();
    let mut random = cnn(&be, Activation::Tanh);
    random.init_feedback(Init::papers(), 1, &relaxing("ar+learned"));
    let mut exact_kernel = random.clone();
    let k = exact_kernel.layers[1].weights().unwrap().weight.clone();
    *exact_kernel.layers[1].weights_mut().unwrap().feedback = Some(k);
    let split = relaxing("ar+learned+conv-transpose");
    assert_eq!(one_update(&random, split), one_update(&exact_kernel, split));
    let all = relaxing("ar+learned");
    assert_ne!(one_update(&random, all), one_update(&exact_kernel, all));
}

#[test]
fn conv_fprime_choices_apply_to_convolutions_only() {
    let be = Be::new();
    let exact = relaxing("ar");
    let conv_drops = relaxing("ar+conv-f'-neither");
    // An MLP has no convolution: the override changes nothing.
    let mlp = net(&be);
    let update = |n: &Network<Be>, a: Algorithm| -> Vec<Vec<f64>> {
        let (x, t) = batch(&be, 3, 0.5);
        let mut trainer = Trainer::new(a, Loss::Mse, Optimizer::sgd(1.0, 0.0), n).unwrap();
        let (g, _) = trainer.gradients(n, &x, &t);
        g.layers.iter().flatten().map(|g| be.to_host(&g.weight)).collect()
    };
    assert_eq!(update(&mlp, exact), update(&mlp, conv_drops));
    // Convolutions with f' = 1 (identity) do not care either; with tanh they do.
    let linear = cnn(&be, Activation::Identity);
    assert_eq!(one_update(&linear, exact), one_update(&linear, conv_drops));
    let curved = cnn(&be, Activation::Tanh);
    assert_ne!(one_update(&curved, exact), one_update(&curved, conv_drops));
}

/// Every weighted layer's `(weight, bias)` on the host.
fn params(n: &Network<Be>) -> Vec<(Vec<f64>, Vec<f64>)> {
    let be = *n.backend();
    n.layers
        .iter()
        .filter_map(|l| l.weights())
        .map(|w| (be.to_host(w.weight), be.to_host(w.bias)))
        .collect()
}

/// One SGD step (lr 1, no momentum) of exact AR under `rule`: the change of every parameter.
fn sgd_change(rule: ar_core::ConvUpdate, zero_conv_bias: bool) -> Vec<(Vec<f64>, Vec<f64>)> {
    let be = Be::new();
    let mut n = cnn(&be, Activation::Tanh);
    if zero_conv_bias {
        n.zero_conv_biases();
    }
    let before = params(&n);
    let mut trainer = Trainer::new(relaxing("ar"), Loss::Mse, Optimizer::sgd(1.0, 0.0), &n)
        .unwrap()
        .with_conv_update(rule)
        .unwrap();
    let (x, t) = cnn_batch(&be);
    trainer.step(&mut n, &x, &t);
    let diff = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a - b).collect::<Vec<_>>();
    params(&n).iter().zip(&before).map(|(a, b)| (diff(&a.0, &b.0), diff(&a.1, &b.1))).collect()
}

#[test]
fn conv_update_scales_clips_and_drops_conv_biases_only() {
    let plain = sgd_change(ar_core::ConvUpdate::default(), false);
    let conv = |i: usize| i < 2; // the first two weighted layers are the convolutions
                                 // Scale 2: the convolutions move twice as far (to the rounding of `new - old`).
    let scaled = sgd_change(ar_core::ConvUpdate { lr_scale: 2.0, ..Default::default() }, false);
    for (i, (s, p)) in scaled.iter().zip(&plain).enumerate() {
        let factor = if conv(i) { 2.0 } else { 1.0 };
        for (a, b) in s.0.iter().zip(&p.0) {
            assert!((a - b * factor).abs() <= 1e-15, "layer {i}: {a} vs {factor} x {b}");
        }
    }
    // Clip: each conv step element is the plain one clamped; the dense layers are untouched.
    let c = 1e-3;
    let clipped = sgd_change(ar_core::ConvUpdate { clip: Some(c), ..Default::default() }, false);
    for (i, (s, p)) in clipped.iter().zip(&plain).enumerate() {
        let want: Vec<f64> =
            p.0.iter().map(|x| if conv(i) { x.clamp(-c, c) } else { *x }).collect();
        for (a, b) in s.0.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-15, "layer {i}: {a} vs {b}");
        }
    }
    assert!(plain[1].0.iter().any(|x| x.abs() > c), "the clip must bind somewhere");
    // No conv bias: zero biases stay zero; the dense biases still learn.
    let unbiased = sgd_change(ar_core::ConvUpdate { bias: false, ..Default::default() }, true);
    for (i, (_, db)) in unbiased.iter().enumerate() {
        assert_eq!(db.iter().all(|x| *x == 0.0), conv(i), "layer {i} bias change {db:?}");
    }
    let bad = ar_core::ConvUpdate { lr_scale: 0.0, ..Default::default() };
    let be = Be::new();
    let n = cnn(&be, Activation::Tanh);
    let err = Trainer::new(relaxing("ar"), Loss::Mse, Optimizer::sgd(1.0, 0.0), &n)
        .unwrap()
        .with_conv_update(bad)
        .unwrap_err();
    assert!(err.to_string().contains("scale"), "{err}");
}
