//! Gradient-alignment probes: how far a run's update is from the exact gradient, layer by layer,
//! on a fixed batch; and for separate backward weights, how far they are from `W^T`.

use ar_backend::Backend;
use ar_core::metrics::{angle_degrees, relative_error};
use ar_core::{Algorithm, Gradients, Layer, Loss, Network, Signals};
use serde::{Deserialize, Serialize};

/// One layer's agreement with the exact gradient at one training step (a row of `probes.*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    /// The algorithm's label.
    pub algorithm: String,
    /// Training steps taken so far.
    pub step: u64,
    /// The epoch under way (1-based).
    pub epoch: usize,
    /// The measurements (their fields are columns of the row).
    #[serde(flatten)]
    pub probe: LayerProbe,
}

/// Per-layer agreement of `algorithm`'s update with the exact gradient on the batch `(x, t)`;
/// the relaxed signals' error against backprop's deltas; and for feedback matrices, their angle
/// to `W^T` and norm ratio.
pub fn probe<B: Backend>(
    net: &Network<B>,
    algorithm: &Algorithm,
    loss: Loss,
    x: &B::Tensor,
    t: &B::Tensor,
) -> Vec<LayerProbe> {
    let be = net.backend();
    let cache = net.forward(x);
    let top = loss.top_gradient(be, &cache.output, t);
    let (mut exact, mut ours) = (Signals::new(), Signals::new());
    exact.compute(net, &cache, &top, &Algorithm::backprop());
    ours.compute(net, &cache, &top, algorithm);
    let g_exact =
        Gradients::compute(net, &cache, &exact, &Algorithm::backprop().variant).to_host(be);
    let g_ours = Gradients::compute(net, &cache, &ours, &algorithm.variant).to_host(be);
    let depth = net.depth();
    let flat = |g: &(Vec<f64>, Vec<f64>)| -> Vec<f64> { g.0.iter().chain(&g.1).copied().collect() };
    (0..depth)
        .filter(|&i| net.layers[i].is_parametric())
        .map(|i| {
            let (a, b) = (flat(&g_ours[i]), flat(&g_exact[i]));
            let signal_error = (i + 1 < depth).then(|| {
                relative_error(&be.to_host(&ours.as_slice()[i]), &be.to_host(&exact.as_slice()[i]))
            });
            let (feedback_angle_deg, feedback_norm_ratio) = feedback_alignment(net, i)
                .map_or((None, None), |(angle, ratio)| (Some(angle), Some(ratio)));
            LayerProbe {
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

/// One layer's measurements from [`probe`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerProbe {
    /// The layer (1-based).
    pub layer: usize,
    /// Angle in degrees between the update (weights and bias) and the exact gradient.
    pub angle_deg: f64,
    /// `||update - gradient|| / ||gradient||`.
    pub relative_error: f64,
    /// The relative error of the layer's learning signal against backprop's delta (not for the
    /// top layer, whose signal is the loss gradient itself).
    pub signal_error: Option<f64>,
    /// Angle between the backward weights and `W^T` (a convolution's backward kernel against
    /// `K`), where the layer has separate backward weights.
    pub feedback_angle_deg: Option<f64>,
    /// `||psi|| / ||W^T||`, where the layer has separate backward weights.
    pub feedback_norm_ratio: Option<f64>,
}

/// The angle (degrees) and norm ratio of layer `i`'s backward weights against `W^T` (a
/// convolution's backward kernel against `K`), if it has separate ones.
fn feedback_alignment<B: Backend>(net: &Network<B>, i: usize) -> Option<(f64, f64)> {
    let be = net.backend();
    let layer = &net.layers[i];
    let w = layer.weights()?;
    let (wh, psi) = (be.to_host(w.weight), be.to_host(w.feedback?));
    let reference = match layer {
        Layer::Dense(d) => {
            let s = d.shape(be);
            ar_core::transpose(&wh, s.outputs, s.inputs)
        }
        _ => wh,
    };
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    Some((angle_degrees(&psi, &reference), norm(&psi) / norm(&reference)))
}
