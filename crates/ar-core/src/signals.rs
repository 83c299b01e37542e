//! The learning signals `v_k`: exact backprop (one top-down pass of VJPs) or activation
//! relaxation (docs/algorithm.md, "Activation relaxation"), with every variant, in buffers reused across batches.

use crate::algorithm::{
    Algorithm, FPrime, Feedback, InitialState, Method, Relaxation, Schedule, Solver, Variant,
};
use crate::network::{ForwardCache, Network};
use ar_backend::{Backend, BackendExt};

/// How a relaxation ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelaxStats {
    /// Iterations run.
    pub iterations: usize,
    /// The last residual `max_k ||v_k(t+1) - v_k(t)|| / (eta ||v_k(t+1)||)`, when a tolerance
    /// was set (it is only measured then).
    pub residual: Option<f64>,
}

/// One learning signal per layer output, `v_1 .. v_L` with `v_L = g_L` clamped, and the scratch
/// buffers that compute them. Keep one `Signals` per training run: after the first batch of a
/// given size, the default relaxation allocates nothing in its loop.
///
/// Only weighted layers below the top hold relaxing state, and the input when
/// [`Relaxation::relax_input`] is set. The outputs of parameter-free layers (pooling, flatten)
/// are scratch: their signal is the VJP of the signal above, passed through at once, and after a
/// relaxation they hold whatever the last pass through them left (read only the weighted
/// layers' signals).
#[derive(Clone, Debug)]
pub struct Signals<B: Backend> {
    /// `v[k]` is the signal at layer `k`'s output (`v[0]` the input's, relaxed only with
    /// [`Relaxation::relax_input`]); the last one is the top gradient.
    v: Vec<B::Tensor>,
    /// Whether the last computation relaxed `v[0]`.
    input_relaxed: bool,
    /// `e[k] = f_k' * v_k`, the signal entering weighted layer `k`'s backward map.
    e: Vec<B::Tensor>,
    /// The top stateful layer's drive, constant during a relaxation with a frozen forward pass.
    top_drive: Option<B::Tensor>,
    /// Previous iterate, for the tolerance stop.
    prev: Vec<B::Tensor>,
    /// `f'` re-evaluated at the relaxing state (fderiv-relax).
    state_fprime: Vec<Option<B::Tensor>>,
    shapes: Vec<Vec<usize>>,
}

impl<B: Backend> Default for Signals<B> {
    fn default() -> Self {
        Signals {
            v: Vec::new(),
            input_relaxed: false,
            e: Vec::new(),
            top_drive: None,
            prev: Vec::new(),
            state_fprime: Vec::new(),
            shapes: Vec::new(),
        }
    }
}

/// The indices of the layers whose outputs relax: weighted layers below the top (1-based), and
/// the input (0) first when `relax_input` is set.
pub fn stateful_layers<B: Backend>(net: &Network<B>, relax_input: bool) -> Vec<usize> {
    let hidden = (1..net.depth()).filter(|&k| net.layers[k - 1].is_parametric());
    relax_input.then_some(0).into_iter().chain(hidden).collect()
}

/// The layer from which the drive of stateful layer `j` starts: the next weighted layer above
/// it, or the top.
fn drive_source<B: Backend>(net: &Network<B>, j: usize) -> usize {
    (j + 1..=net.depth()).find(|&u| net.layers[u - 1].is_parametric()).unwrap_or(net.depth())
}

/// The input of layer `k` (1-based) computed from the relaxing state `states` (`states[j]` is
/// `v_j`, see [`Signals::states`]): the state of the nearest weighted layer below `k`, or the
/// relaxed input `v_0` when `input_relaxed`, through the forward maps of the parameter-free
/// layers in between. `None` when no relaxing state lies below (the input is the data).
pub fn state_input<B: Backend>(
    net: &Network<B>,
    states: &[B::Tensor],
    input_relaxed: bool,
    k: usize,
) -> Option<B::Tensor> {
    let j =
        (1..k).rev().find(|&i| net.layers[i - 1].is_parametric()).or(input_relaxed.then_some(0))?;
    let be = net.backend();
    let mut x = states[j].clone();
    for m in j + 1..k {
        x = net.layers[m - 1].forward_parameter_free(be, &x).0;
    }
    Some(x)
}

impl<B: Backend> Signals<B> {
    /// Empty buffers; they are sized on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// The signals `v_1 .. v_L` of the last [`Signals::compute`] (`v_L` is the top gradient).
    /// Only the weighted layers' entries are meaningful after a relaxation.
    pub fn as_slice(&self) -> &[B::Tensor] {
        &self.v[1..]
    }

    /// `v_0 .. v_L`: [`Signals::as_slice`] with the input's slot first (meaningful only when
    /// [`Signals::input_relaxed`]).
    pub fn states(&self) -> &[B::Tensor] {
        &self.v
    }

    /// Whether the last computation relaxed the input (`v_0`).
    pub fn input_relaxed(&self) -> bool {
        self.input_relaxed
    }

    /// Computes every layer's learning signal for one batch: `v_L = top` (the loss gradient
    /// `g_L`), then either backprop `v_{k-1} = J_k^T v_k` or the relaxation of the stateful
    /// layers. Returns the relaxation's statistics (`None` for backprop). The algorithm must have
    /// been validated and the network must carry feedback weights where the variant needs them.
    pub fn compute(
        &mut self,
        net: &Network<B>,
        cache: &ForwardCache<B>,
        top: &B::Tensor,
        algorithm: &Algorithm,
    ) -> Option<RelaxStats> {
        let be = net.backend();
        self.ensure_buffers(be, net, cache.batch_size(be));
        let depth = net.depth();
        be.axpby(1.0, top, 0.0, &mut self.v[depth]);
        self.input_relaxed = false;
        match algorithm.method {
            Method::Backprop => {
                // Down to the first weighted layer: nothing below it learns.
                let first = (1..=depth).find(|&k| net.layers[k - 1].is_parametric());
                for k in (first.unwrap_or(depth) + 1..=depth).rev() {
                    self.send_down(net, cache, &algorithm.variant, k, 1.0, 0.0);
                }
                None
            }
            Method::Relaxation(r) => Some(self.relax(net, cache, &algorithm.variant, &r)),
        }
    }

    fn ensure_buffers(&mut self, be: &B, net: &Network<B>, batch: usize) {
        let shapes: Vec<Vec<usize>> =
            (0..=net.depth()).map(|k| net.batch_shape(k, batch)).collect();
        if shapes == self.shapes {
            return;
        }
        self.v = shapes.iter().map(|s| be.zeros(s)).collect();
        self.e = shapes.iter().map(|s| be.zeros(s)).collect();
        self.top_drive = None;
        self.prev.clear();
        self.state_fprime.clear();
        self.shapes = shapes;
    }

    /// `v_{k-1} <- alpha * J_k^T(v_k) + beta * v_{k-1}`: through `W_k^T` or the backward
    /// weights after multiplying by `f_k'` (stored, re-evaluated at the state, or dropped, by
    /// variant) for weighted layers; through the routing for parameter-free ones.
    fn send_down(
        &mut self,
        net: &Network<B>,
        cache: &ForwardCache<B>,
        variant: &Variant,
        k: usize,
        alpha: f64,
        beta: f64,
    ) {
        let be = net.backend();
        let layer = &net.layers[k - 1];
        let choices = variant.for_layer(layer);
        let at_state = layer.is_parametric() && choices.fprime_backward == FPrime::AtState;
        if at_state {
            // f_k' at the pre-activation of layer k's input computed from the state being
            // relaxed (not yet updated in this iteration).
            let activation = layer.weights().expect("weighted").activation;
            let fprime = match state_input(net, &self.v, self.input_relaxed, k) {
                Some(x) => {
                    let mut a = be.zeros(&self.shapes[k]);
                    layer.linear_into(be, &x, !variant.state_fprime_without_bias, &mut a);
                    be.activate_derivative(activation, &a)
                }
                None => cache.fprime[k - 1].clone().expect("weighted layers store f'"),
            };
            self.state_fprime[k] = Some(fprime);
        }
        let (below, above) = self.v.split_at_mut(k);
        let target = &mut below[k - 1];
        let signal = &above[0];
        let argmax = cache.argmax[k - 1].as_ref();
        if !layer.is_parametric() {
            layer.backward_into(be, signal, false, argmax, alpha, beta, target);
            return;
        }
        let use_feedback = choices.feedback != Feedback::Transpose;
        if choices.fprime_backward == FPrime::Dropped {
            layer.backward_into(be, signal, use_feedback, None, alpha, beta, target);
            return;
        }
        let fprime = if at_state {
            self.state_fprime[k].as_ref().expect("computed above")
        } else {
            cache.fprime[k - 1].as_ref().expect("weighted layers store f'")
        };
        let e = &mut self.e[k];
        be.mul_into(fprime, signal, e);
        layer.backward_into(be, e, use_feedback, None, alpha, beta, target);
    }

    /// The drive of stateful layer `j` blended into its state:
    /// `v_j <- alpha * N_j(v) + beta * v_j`, passing through the parameter-free layers between.
    fn drive(
        &mut self,
        net: &Network<B>,
        cache: &ForwardCache<B>,
        variant: &Variant,
        j: usize,
        alpha: f64,
        beta: f64,
    ) {
        let source = drive_source(net, j);
        for m in ((j + 2)..=source).rev() {
            self.send_down(net, cache, variant, m, 1.0, 0.0);
        }
        self.send_down(net, cache, variant, j + 1, alpha, beta);
    }

    /// Euler relaxation `v_j <- (1 - eta) v_j + eta J^T v_above` of the stateful layers.
    fn relax(
        &mut self,
        net: &Network<B>,
        cache: &ForwardCache<B>,
        variant: &Variant,
        r: &Relaxation,
    ) -> RelaxStats {
        let be = net.backend();
        let stateful = stateful_layers(net, r.relax_input);
        let Some(&top_state) = stateful.last() else {
            return RelaxStats { iterations: 0, residual: None };
        };
        self.input_relaxed = r.relax_input;
        let unfrozen = variant.any(|c| c.fprime_backward == FPrime::AtState);
        if unfrozen && self.state_fprime.is_empty() {
            self.state_fprime = vec![None; net.depth() + 1];
        }
        // With the forward pass frozen, the drive of the top stateful layer never changes.
        let frozen_top = !unfrozen;
        if frozen_top {
            self.drive(net, cache, variant, top_state, 1.0, 0.0);
            let drive = self.top_drive.get_or_insert_with(|| be.zeros(&self.shapes[top_state]));
            be.axpby(1.0, &self.v[top_state], 0.0, drive);
        }
        for &j in &stateful {
            match r.init {
                InitialState::Feedforward => be.axpby(1.0, cache.activity(j), 0.0, &mut self.v[j]),
                InitialState::Zero => be.axpby(0.0, cache.activity(j), 0.0, &mut self.v[j]),
            }
        }
        if r.solver_for(variant) == Solver::ClosedForm {
            self.closed_form(net, cache, variant, r, &stateful);
            return RelaxStats { iterations: r.steps, residual: None };
        }
        if r.tolerance.is_some() && self.prev.len() != self.shapes.len() {
            self.prev = self.shapes.iter().map(|s| be.zeros(s)).collect();
        }
        let (eta, keep) = (r.eta, 1.0 - r.eta);
        let mut residual = None;
        let mut iterations = 0;
        // Parallel: bottom-up, so each layer still reads the old iterate of the layer above.
        // Sweep: top-down, so each layer reads the layer above's new value.
        let order: Vec<usize> = match r.schedule {
            Schedule::Parallel => stateful.clone(),
            Schedule::Sweep => stateful.iter().rev().copied().collect(),
        };
        for _ in 0..r.steps {
            if r.tolerance.is_some() {
                for &j in &stateful {
                    be.axpby(1.0, &self.v[j], 0.0, &mut self.prev[j]);
                }
            }
            for &j in &order {
                if j == top_state && frozen_top {
                    let drive = self.top_drive.as_ref().expect("computed above");
                    be.axpby(eta, drive, keep, &mut self.v[j]);
                } else {
                    self.drive(net, cache, variant, j, eta, keep);
                }
            }
            iterations += 1;
            if let Some(tol) = r.tolerance {
                let mut worst: f64 = 0.0;
                for &j in &stateful {
                    be.axpby(1.0, &self.v[j], -1.0, &mut self.prev[j]);
                    let change = be.dot(&self.prev[j], &self.prev[j]).sqrt();
                    let size = be.dot(&self.v[j], &self.v[j]).sqrt();
                    let rel = if change == 0.0 { 0.0 } else { change / (eta * size) };
                    worst = worst.max(rel);
                }
                residual = Some(worst);
                if worst <= tol {
                    break;
                }
            }
        }
        RelaxStats { iterations, residual }
    }

    /// The state after `T` Euler steps in closed form (see [`Solver::ClosedForm`]): with
    /// `V(T) = sum_{j=0}^{S-1} N^j (p_j V(0) + q_j d)` over the `S` stateful layers, Horner's
    /// rule from the highest power down, where `N` maps each stateful layer's state to the drive
    /// of the one below and `d` is the top drive. Each Horner step updates the stateful layers
    /// bottom-up in place, so every layer still reads the previous step's value above it. The
    /// states start at `V(0)` and the top drive is already in `top_drive`.
    fn closed_form(
        &mut self,
        net: &Network<B>,
        cache: &ForwardCache<B>,
        variant: &Variant,
        r: &Relaxation,
        stateful: &[usize],
    ) {
        let be = net.backend();
        let levels = stateful.len();
        let top_state = stateful[levels - 1];
        let (p, q) = closed_form_coefficients(r.schedule, r.eta, r.steps, levels - 1);
        let feedforward = r.init == InitialState::Feedforward;
        for power in (0..levels).rev() {
            // Horner's scheme: after this pass, layer j holds sum_{m >= power} N^(m - power) c_m,
            // which the passes below carry down `power` more layers. At a layer fewer than
            // `power` levels above the bottom that would fall below it: the value is never read
            // (the next pass overwrites it first), so it is not computed. This halves the
            // drives, and the most expensive one (into the bottom layer) runs once.
            for &j in stateful.iter().skip(power) {
                let beta = if j == top_state || power == levels - 1 {
                    // N V is zero at the top stateful layer, and V starts from zero.
                    0.0
                } else {
                    self.drive(net, cache, variant, j, 1.0, 0.0);
                    1.0
                };
                if feedforward {
                    be.axpby(p[power], cache.activity(j), beta, &mut self.v[j]);
                } else if beta == 0.0 {
                    // V(0) = 0 contributes nothing: only clear what the previous batch left.
                    be.axpby(0.0, cache.activity(j), 0.0, &mut self.v[j]);
                }
                if j == top_state {
                    let drive = self.top_drive.as_ref().expect("computed before the solver");
                    be.axpby(q[power], drive, 1.0, &mut self.v[j]);
                }
            }
        }
    }
}

/// The coefficients `(p_j, q_j)`, `j = 0..=max_power`, of the state after `steps` Euler steps:
/// `V(T) = sum_j N^j (p_j V(0) + q_j d)`, where `d = J_L^T v_L` is the top drive at layer
/// `L - 1`. In the formulas below `c = eta d` is what one Euler step adds, and `q_j` is `eta`
/// times the coefficient of `c`.
///
/// Parallel, `V(t+1) = M V(t) + c` with `M = (1 - eta) I + eta N`:
/// `p_j = C(T, j) (1 - eta)^(T - j) eta^j`,
/// `q_j = eta * eta^j sum_{s=j}^{T-1} C(s, j) (1 - eta)^(s - j)`.
///
/// Sweep, `V(t+1) = G((1 - eta) V(t) + c)` with `G = (I - eta N)^-1 = sum_j eta^j N^j`:
/// `p_j = (1 - eta)^T C(T + j - 1, j) eta^j`,
/// `q_j = eta * eta^j sum_{s=0}^{T-1} C(s + j, j) (1 - eta)^s`.
pub fn closed_form_coefficients(
    schedule: Schedule,
    eta: f64,
    steps: usize,
    max_power: usize,
) -> (Vec<f64>, Vec<f64>) {
    let keep = 1.0 - eta;
    let choose = |n: usize, k: usize| -> f64 {
        if k > n {
            return 0.0;
        }
        (0..k).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64)
    };
    let pow = |x: f64, n: usize| -> f64 { x.powi(i32::try_from(n).unwrap_or(i32::MAX)) };
    let t = steps;
    let mut p = Vec::with_capacity(max_power + 1);
    let mut q = Vec::with_capacity(max_power + 1);
    for j in 0..=max_power {
        let eta_j = pow(eta, j);
        let drive_j = eta * eta_j;
        match schedule {
            Schedule::Parallel => {
                p.push(if j > t { 0.0 } else { choose(t, j) * pow(keep, t - j) * eta_j });
                q.push(drive_j * (j..t).map(|s| choose(s, j) * pow(keep, s - j)).sum::<f64>());
            }
            Schedule::Sweep => {
                p.push(if t == 0 {
                    f64::from(u8::from(j == 0))
                } else {
                    pow(keep, t) * choose(t + j - 1, j) * eta_j
                });
                q.push(drive_j * (0..t).map(|s| choose(s + j, j) * pow(keep, s)).sum::<f64>());
            }
        }
    }
    (p, q)
}

/// Convenience: the learning signals of one batch in fresh buffers (see [`Signals::compute`]).
pub fn learning_signals<B: Backend>(
    net: &Network<B>,
    cache: &ForwardCache<B>,
    top: &B::Tensor,
    algorithm: &Algorithm,
) -> (Signals<B>, Option<RelaxStats>) {
    let mut s = Signals::new();
    let stats = s.compute(net, cache, top, algorithm);
    (s, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_at_eta_one_reduce_to_backprop_and_shifts() {
        // Parallel, eta 1, T 2: V(2) = N^2 V(0) + (I + N) c, so p = [0, 0, 1], q = [1, 1, 0].
        let (p, q) = closed_form_coefficients(Schedule::Parallel, 1.0, 2, 2);
        assert_eq!((p, q), (vec![0.0, 0.0, 1.0], vec![1.0, 1.0, 0.0]));
        // Sweep, eta 1, any T: V(T) = (I + N + N^2) c, nothing of V(0) survives.
        let (p, q) = closed_form_coefficients(Schedule::Sweep, 1.0, 5, 2);
        assert_eq!((p, q), (vec![0.0, 0.0, 0.0], vec![1.0, 1.0, 1.0]));
    }

    #[test]
    fn coefficients_match_a_scalar_euler_run() {
        // With N = 0 (one hidden layer) the relaxation is the scalar recursion
        // v <- (1 - eta) v + eta d, so v(T) = (1 - eta)^T v(0) + eta d sum_{s<T} (1 - eta)^s.
        for schedule in [Schedule::Parallel, Schedule::Sweep] {
            let (p, q) = closed_form_coefficients(schedule, 0.3, 17, 0);
            let (mut v, d) = (2.0f64, 0.7f64);
            for _ in 0..17 {
                v = 0.7 * v + 0.3 * d;
            }
            assert!((p[0] * 2.0 + q[0] * d - v).abs() < 1e-14, "{schedule:?}");
        }
    }
}
