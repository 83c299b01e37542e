//! The individual checks: each compares two sets of per-layer gradients, or a set of gradients
//! with finite differences, and turns the result into report rows.

use crate::reference::{central_difference, HostNet, Param};
use crate::report::Row;
use ar_backend::Backend;
use ar_core::metrics::{angle_degrees, relative_error, worst_element};
use ar_core::{Algorithm, Gradients, Loss, Network, Signals};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Per-layer `(dW, db)` on the host.
pub type HostGrads = Vec<(Vec<f64>, Vec<f64>)>;

/// A batch and its one-hot targets on the host.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `[batch, inputs]`, row-major.
    pub x: Vec<f64>,
    /// `[batch, classes]`, row-major.
    pub targets: Vec<f64>,
    /// The batch size.
    pub size: usize,
}

/// The update an algorithm produces for one batch, on the host, and the relaxation's iterations.
pub fn update<B: Backend>(
    net: &Network<B>,
    batch: &Batch,
    loss: Loss,
    algorithm: &Algorithm,
) -> (HostGrads, usize) {
    let be = net.backend();
    let x = net.upload_batch(&batch.x, batch.size).expect("cases build consistent batches");
    let t = be.from_host(&batch.targets, &[batch.size, net.output_width()]);
    let cache = net.forward(&x);
    let top = loss.top_gradient(be, &cache.output, &t);
    let mut signals = Signals::new();
    let stats = signals.compute(net, &cache, &top, algorithm);
    let grads = Gradients::compute(net, &cache, &signals, &algorithm.variant);
    (grads.to_host(be), stats.map_or(0, |s| s.iterations))
}

fn flatten(layer: &(Vec<f64>, Vec<f64>)) -> Vec<f64> {
    layer.0.iter().chain(&layer.1).copied().collect()
}

/// Rows comparing `ours` with `reference` layer by layer: relative error `||a - b|| / ||b||`
/// over weights and biases together, pass when at most `tolerance` (info rows when `None`).
pub fn compare(
    model: &str,
    check: &str,
    ours: &HostGrads,
    reference: &HostGrads,
    tolerance: Option<f64>,
) -> Vec<Row> {
    ours.iter()
        .zip(reference)
        .enumerate()
        .filter(|(_, (a, _))| !a.0.is_empty())
        .map(|(i, (a, b))| {
            let (a, b) = (flatten(a), flatten(b));
            let rel = relative_error(&a, &b);
            let (worst_at, worst) = worst_element(&a, &b);
            Row::new(model, check, Some(i + 1), rel, tolerance)
                .with_angle(angle_degrees(&a, &b))
                .with_note(format!("worst |diff| {worst:.2e} at element {worst_at}"))
        })
        .collect()
}

/// Checks `grads` (claimed to be the batch-mean loss gradient) against central finite
/// differences of an independent host forward pass on up to `per_layer` sampled weights and a
/// quarter as many biases per layer. One row per layer, relative error over the sampled entries.
pub fn finite_differences<B: Backend>(
    model: &str,
    net: &Network<B>,
    batch: &Batch,
    loss: Loss,
    grads: &HostGrads,
    per_layer: usize,
    tolerance: f64,
    seed: u64,
) -> Vec<Row> {
    let host = HostNet::from_network(net);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for layer in 0..host.layers.len() {
        let (weights, biases) = host.param_counts(layer);
        if weights == 0 {
            continue;
        }
        let (mut fd, mut ours, mut skipped) = (Vec::new(), Vec::new(), 0usize);
        for is_bias in [false, true] {
            let count = if is_bias { biases } else { weights };
            let want = if is_bias { per_layer.div_ceil(4) } else { per_layer };
            let picks: Vec<usize> = if count <= want {
                (0..count).collect()
            } else {
                (0..want).map(|_| rng.random_range(0..count)).collect()
            };
            for index in picks {
                let p = Param { layer, is_bias, index };
                match central_difference(&host, p, &batch.x, &batch.targets, batch.size, loss) {
                    Some(d) => {
                        fd.push(d);
                        let g = &grads[layer];
                        ours.push(if is_bias { g.1[index] } else { g.0[index] });
                    }
                    None => skipped += 1,
                }
            }
        }
        let rel = relative_error(&ours, &fd);
        let (worst_at, worst) = worst_element(&ours, &fd);
        let mut note =
            format!("{} entries, worst |diff| {worst:.2e} at sample {worst_at}", fd.len());
        if skipped > 0 {
            note.push_str(&format!(", {skipped} skipped at a kink"));
        }
        rows.push(
            Row::new(model, "finite differences", Some(layer + 1), rel, Some(tolerance))
                .with_note(note),
        );
    }
    rows
}

/// Our forward pass against the independent host forward pass (one model-level row).
pub fn forward_agreement<B: Backend>(
    model: &str,
    net: &Network<B>,
    batch: &Batch,
    tolerance: f64,
) -> Row {
    let be = net.backend();
    let x = net.upload_batch(&batch.x, batch.size).expect("consistent batch");
    let ours = be.to_host(&net.predict(&x));
    let (reference, _) = HostNet::from_network(net).forward(&batch.x, batch.size);
    Row::new(model, "forward pass", None, relative_error(&ours, &reference), Some(tolerance))
}
