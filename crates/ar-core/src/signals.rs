//! The learning signals `v_k`: exact backprop (one top-down pass of VJPs) or activation
//! relaxation (docs/algorithm.md, "Activation relaxation"), with every variant, in buffers reused across batches.

use crate::algorithm::{
    Algorithm, FPrime, Feedback, InitialState, Method, Relaxation, Schedule, Solver, Variant,
};
use crate::layer::Layer;
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
    /// The solver that ran: [`Solver::Auto`] resolved on this network (the closed form, or
    /// Euler where the closed form's passes would cost more than the `T` steps).
    pub solver: Solver,
}

/// One learning signal per node, `v_1 .. v_L` with `v_L = g_L` clamped, and the scratch
/// buffers that compute them. Keep one `Signals` per training run: after the first batch of a
/// given size, the default relaxation allocates nothing in its loop.
///
/// Only weighted layers below the top hold relaxing state, and the input when
/// [`Relaxation::relax_input`] is set. The outputs of parameter-free layers (pooling, flatten,
/// merge nodes) are scratch: their signal is the sum of their readers' VJPs, passed through at
/// once, and after a relaxation they hold whatever the last pass through them left (read only
/// the weighted layers' signals).
#[derive(Clone, Debug)]
pub struct Signals<B: Backend> {
    /// `v[k]` is the signal at node `k` (`v[0]` the input's, relaxed only with
    /// [`Relaxation::relax_input`]); the last one is the top gradient.
    v: Vec<B::Tensor>,
    /// Whether the last computation relaxed `v[0]`.
    input_relaxed: bool,
    /// `e[k] = f_k' * v_k`, the signal entering weighted layer `k`'s backward map.
    e: Vec<B::Tensor>,
    /// Whether `e[k]` holds `f_k' * v_k` with the stored `f'` and the final `v_k`, as the weight
    /// update uses it ([`Signals::sent_product`]): set only by a backprop sweep, where a layer
    /// sends once its signal is complete.
    sent_product: Vec<bool>,
    /// Each stateful node's drive from the clamped top alone (the part of its drive that is
    /// constant while the forward pass is frozen), where it has one.
    clamp_drive: Vec<Option<B::Tensor>>,
    /// Previous iterate, for the tolerance stop.
    prev: Vec<B::Tensor>,
    /// The zero start's closed form: its schedule for the last graph, and each node's sums
    /// `y_n(e)` ([`ZeroStart`]).
    zero_start: Option<ZeroStart>,
    sums: Vec<Vec<B::Tensor>>,
    /// The closed form's last coefficients, with the settings they were computed for (their
    /// cost grows with `T` times the square of the depth: a 500-layer chain's took longer
    /// than its step).
    coefficients: Option<(CoefficientKey, Vec<f64>, Vec<f64>)>,
    /// `f'` re-evaluated at the relaxing state (fderiv-relax).
    state_fprime: Vec<Option<B::Tensor>>,
    shapes: Vec<Vec<usize>>,
    /// A planted fault: `(k, j)`, layer `k`'s contribution to node `j` left out.
    fault: Option<(usize, usize)>,
}

impl<B: Backend> Default for Signals<B> {
    fn default() -> Self {
        Signals {
            v: Vec::new(),
            input_relaxed: false,
            e: Vec::new(),
            sent_product: Vec::new(),
            clamp_drive: Vec::new(),
            prev: Vec::new(),
            zero_start: None,
            sums: Vec::new(),
            coefficients: None,
            state_fprime: Vec::new(),
            shapes: Vec::new(),
            fault: None,
        }
    }
}

/// The most relaxing nodes on one path of the network, each driving the next: with eta = 1
/// the parallel schedule gives backprop's signals after this many iterations (one sweep does
/// under the sweep schedule).
pub fn relaxation_depth<B: Backend>(net: &Network<B>, relax_input: bool) -> usize {
    let plan = Plan::new(net, relax_input);
    let heights = plan.heights(&plan.carries(STATES));
    plan.order.iter().map(|&j| heights[j] + 1).max().unwrap_or(0)
}

/// The indices of the nodes that relax: weighted layers below the top (1-based), and the input
/// (0) first when `relax_input` is set.
pub fn stateful_layers<B: Backend>(net: &Network<B>, relax_input: bool) -> Vec<usize> {
    let hidden = (1..net.depth()).filter(|&k| net.layers[k - 1].is_parametric());
    relax_input.then_some(0).into_iter().chain(hidden).collect()
}

/// The solver a relaxation runs on `net` ([`RelaxStats::solver`]): [`Relaxation::solver_for`],
/// with the auto solver's closed form replaced by Euler where the closed form's passes would
/// take more VJPs than the `T` Euler steps (deep networks under the sweep schedule). `None`
/// for backprop.
pub fn solver_on<B: Backend>(net: &Network<B>, algorithm: &Algorithm) -> Option<Solver> {
    let Method::Relaxation(r) = algorithm.method else { return None };
    let plan = Plan::new(net, r.relax_input);
    Some(plan.solver(&r, &algorithm.variant))
}

/// Which signals a drive sums: those reaching it from relaxing states, from the clamped top,
/// or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mode {
    states: bool,
    clamp: bool,
}

const FULL: Mode = Mode { states: true, clamp: true };
const STATES: Mode = Mode { states: true, clamp: false };
const CLAMP: Mode = Mode { states: false, clamp: true };

/// The relaxation's view of a network: which nodes relax, and through which readers each
/// node's drive arrives.
struct Plan {
    depth: usize,
    /// Whether each node relaxes.
    stateful: Vec<bool>,
    /// The relaxing nodes, ascending.
    order: Vec<usize>,
    /// `children[j]`: the nodes reading `j` (ascending, repeated where read twice).
    children: Vec<Vec<usize>>,
    /// Whether each node is a weighted layer's output (its VJP a product with the weights).
    weighted: Vec<bool>,
}

impl Plan {
    fn new<B: Backend>(net: &Network<B>, relax_input: bool) -> Self {
        let depth = net.depth();
        let order = stateful_layers(net, relax_input);
        let mut stateful = vec![false; depth + 1];
        for &j in &order {
            stateful[j] = true;
        }
        let children = (0..=depth).map(|j| net.children(j).to_vec()).collect();
        let weighted = (0..=depth).map(|k| k > 0 && net.layers[k - 1].is_parametric()).collect();
        Plan { depth, stateful, order, children, weighted }
    }

    /// Whether a node's whole drive comes from the clamp (constant while the forward pass is
    /// frozen), for every node.
    fn constant(&self, variant: &Variant) -> Vec<bool> {
        let unfrozen = variant.any(|c| c.fprime_backward == FPrime::AtState);
        let states_only = self.carries(STATES);
        (0..=self.depth)
            .map(|j| self.stateful[j] && !unfrozen && self.kids(j, &states_only).is_empty())
            .collect()
    }

    /// The solver that runs: see [`solver_on`].
    fn solver(&self, r: &Relaxation, variant: &Variant) -> Solver {
        match r.solver_for(variant) {
            Solver::ClosedForm if r.solver == Solver::Auto => {
                let closed = closed_form_cost(self, r, &self.carries(STATES));
                let euler = euler_cost(self, r, &self.carries(FULL), &self.constant(variant));
                if closed <= euler {
                    Solver::ClosedForm
                } else {
                    Solver::Euler
                }
            }
            s => s,
        }
    }

    /// For every node, whether a signal of `mode` reaches it from above.
    fn carries(&self, mode: Mode) -> Vec<bool> {
        let mut c = vec![false; self.depth + 1];
        c[self.depth] = mode.clamp;
        for j in (0..self.depth).rev() {
            c[j] =
                if self.stateful[j] { mode.states } else { self.children[j].iter().any(|&k| c[k]) };
        }
        c
    }

    /// The readers of `j` whose signal of `mode` it sums.
    fn kids(&self, j: usize, carries: &[bool]) -> Vec<usize> {
        self.children[j].iter().copied().filter(|&k| carries[k]).collect()
    }

    /// The pass-through nodes (neither relaxing nor the top) whose signals `j`'s drive of
    /// `mode` reads, directly or through one another, marked in `out`.
    fn mark_instants(&self, j: usize, carries: &[bool], out: &mut [bool]) {
        for k in self.kids(j, carries) {
            if k != self.depth && !self.stateful[k] && !out[k] {
                out[k] = true;
                self.mark_instants(k, carries, out);
            }
        }
    }

    /// The relaxing nodes whose drive of `mode` reads relaxing states (through pass-through
    /// nodes), for each relaxing node `j` in `order`: `frontier[j]`.
    fn state_frontier(&self, j: usize, carries: &[bool], out: &mut Vec<usize>) {
        for k in self.kids(j, carries) {
            if self.stateful[k] {
                if !out.contains(&k) {
                    out.push(k);
                }
            } else if k != self.depth {
                self.state_frontier(k, carries, out);
            }
        }
    }

    /// Whether each node relaxes with a share of its drive from the clamped top (`d`).
    fn clamped(&self) -> Vec<bool> {
        let clamp_only = self.carries(CLAMP);
        (0..=self.depth)
            .map(|j| self.stateful[j] && !self.kids(j, &clamp_only).is_empty())
            .collect()
    }

    /// The zero start's closed form with the relaxing nodes below `cut` summed by shift (see
    /// [`ZeroStart`]).
    fn zero_start(&self, top: usize, states_only: &[bool], cut: usize) -> ZeroStart {
        let n = self.depth + 1;
        let above: Vec<usize> = self.order.iter().copied().filter(|&j| j >= cut).collect();
        let mut instants = vec![false; n];
        for &j in &above {
            self.mark_instants(j, states_only, &mut instants);
        }
        // Phase 1: a node holds part of N^m d where a chain of m relaxing nodes, each driving
        // the next, links it to a clamped node. Each pass looks only at the nodes that the
        // last pass's holders drive.
        let computed = |j: usize| instants[j] || (self.stateful[j] && j >= cut);
        let kids_of: Vec<Vec<usize>> = (0..n).map(|j| self.kids(j, states_only)).collect();
        let mut drives: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (j, kids) in kids_of.iter().enumerate().filter(|&(j, _)| computed(j)) {
            for &k in kids {
                if !drives[k].contains(&j) {
                    drives[k].push(j);
                }
            }
        }
        let clamped = self.clamped();
        let mut held: Vec<usize> = above.iter().copied().filter(|&j| clamped[j]).collect();
        let (mut is_held, mut live) = (vec![false; n], vec![false; n]);
        let mut passes = Vec::new();
        while passes.len() < top && !held.is_empty() {
            for &j in &held {
                is_held[j] = true;
            }
            let mut reached = Vec::new();
            let mut stack = held.clone();
            while let Some(k) = stack.pop() {
                for &j in &drives[k] {
                    if !live[j] {
                        live[j] = true; // reached; set to whether it holds below
                        reached.push(j);
                        if !self.stateful[j] {
                            stack.push(j);
                        }
                    }
                }
            }
            // Pass-through nodes top-down, then relaxing nodes bottom-up.
            reached.sort_by_key(|&j| if self.stateful[j] { (1, j) } else { (0, n - j) });
            let mut pass = Vec::new();
            for &j in &reached {
                let kids: Vec<usize> = kids_of[j]
                    .iter()
                    .copied()
                    .filter(|&k| if self.stateful[k] { is_held[k] } else { live[k] })
                    .collect();
                live[j] = !kids.is_empty();
                if live[j] {
                    pass.push((j, kids));
                }
            }
            for &j in &held {
                is_held[j] = false;
            }
            held = pass.iter().map(|&(j, _)| j).filter(|&j| self.stateful[j]).collect();
            for &j in &reached {
                live[j] = false;
            }
            if !pass.is_empty() {
                passes.push(pass);
            }
        }
        // The shifts each node's sums are kept at: 0 for every relaxing node (its state), and
        // what the nodes below the cut read, carried up from the bottom (one more across a
        // relaxing reader) until a node that phase 1 computes.
        let accumulated: Vec<bool> = (0..n).map(computed).collect();
        let mut shifts: Vec<Vec<usize>> =
            (0..n).map(|j| if self.stateful[j] { vec![0] } else { Vec::new() }).collect();
        let mut below = Vec::new();
        for j in 0..n {
            if accumulated[j] || shifts[j].is_empty() {
                continue;
            }
            below.push(j);
            let own = shifts[j].clone();
            for &k in &kids_of[j] {
                let step = usize::from(self.stateful[k]);
                for &e in &own {
                    if !shifts[k].contains(&(e + step)) {
                        shifts[k].push(e + step);
                    }
                }
            }
        }
        below.reverse();
        ZeroStart {
            children: self.children.clone(),
            stateful: self.stateful.clone(),
            top,
            passes,
            shifts,
            accumulated,
            below,
        }
    }

    /// The zero start's closed form at its cheapest cut: the VJPs through weighted layers
    /// counted four times a pass-through node's, cuts tried from the bottom up until the part
    /// below the cut alone costs more than the best found (none on a chain, where phase 1
    /// already takes one VJP per layer).
    fn cheapest_zero_start(&self, top: usize, states_only: &[bool]) -> ZeroStart {
        let weight = |k: usize| if self.weighted[k] { 4 } else { 1 };
        let mut best = self.zero_start(top, states_only, 0);
        // Summing by shift only pays where a node holds more than one power.
        let mut holds: Vec<usize> = self.clamped().into_iter().map(usize::from).collect();
        for (j, _) in best.passes.iter().flatten() {
            holds[*j] += 1;
        }
        if self.order.iter().all(|&j| holds[j] <= 1) {
            return best;
        }
        let mut best_cost = best.sends(self, states_only, weight);
        for &j in &self.order {
            let z = self.zero_start(top, states_only, j + 1);
            let (first, second) = z.phases(self, states_only, weight);
            if first + second < best_cost {
                best_cost = first + second;
                best = z;
            }
            if second >= best_cost {
                break;
            }
        }
        best
    }

    /// For every relaxing node, the length of the longest chain of relaxing nodes below it,
    /// each driven by the next through pass-through nodes (0 at the bottom).
    fn heights(&self, carries: &[bool]) -> Vec<usize> {
        let mut h = vec![0; self.depth + 1];
        for &j in &self.order {
            let mut frontier = Vec::new();
            self.state_frontier(j, carries, &mut frontier);
            for k in frontier {
                h[k] = h[k].max(h[j] + 1);
            }
        }
        h
    }
}

/// The settings closed-form coefficients depend on: schedule, eta's bits, `T`, highest power.
type CoefficientKey = (Schedule, u64, usize, usize);

/// The closed form's schedule from the zero start, fixed by the graph. With `V(0) = 0` the
/// state is `V(T) = sum_m q_m N^m d`. Phase 1 computes the powers `x(m) = N^m d` top-down, one
/// pass per power, each only at the nodes where it is nonzero: on a chain of layers each node
/// holds one power, so the whole state costs one VJP per layer. On a DAG a node holds one power
/// per distinct length of the chains linking it to the clamp, which grows towards the bottom of
/// a residual network. Below a cut, phase 2 therefore sums by shift instead: node `n` keeps
/// `y_n(e) = sum_m q_(m+e) x_n(m)` for the shifts `e` the nodes below it read, computed
/// top-down from its readers' (`y_n(e) = sum_c J_c^T y_c(e + 1)` for a relaxing reader `c`,
/// `e` for a pass-through one), so a node near the bottom takes one VJP per distinct distance
/// to the nodes below it instead of one per power. A relaxing node's state is `y(0)`; the
/// nodes phase 1 computes accumulate their `y(e)` from their powers.
#[derive(Clone, Debug)]
struct ZeroStart {
    /// The graph it was made for (see [`Plan`]) and its number of passes.
    children: Vec<Vec<usize>>,
    stateful: Vec<bool>,
    top: usize,
    /// Phase 1: for each power `m = 1..`, the nodes computed (pass-through nodes top-down,
    /// then relaxing nodes bottom-up), each with the readers it sums: relaxing readers holding
    /// part of `x(m - 1)`, pass-through readers computed earlier in the pass.
    passes: Vec<Vec<(usize, Vec<usize>)>>,
    /// `shifts[n]`: the shifts `e` whose sums `y_n(e)` node `n` keeps (`0` first at relaxing
    /// nodes: the state).
    shifts: Vec<Vec<usize>>,
    /// Whether node `n`'s sums are accumulated from its powers in phase 1.
    accumulated: Vec<bool>,
    /// Phase 2: the nodes below the cut whose sums are computed, top-down.
    below: Vec<usize>,
}

impl ZeroStart {
    /// Whether this schedule was made for `plan`'s graph with `top` passes.
    fn fits(&self, plan: &Plan, top: usize) -> bool {
        self.top == top && self.stateful == plan.stateful && self.children == plan.children
    }

    /// The VJPs of phase 1 and of phase 2, each reader `k`'s counted `weight(k)` times.
    fn phases(
        &self,
        plan: &Plan,
        states_only: &[bool],
        weight: impl Fn(usize) -> usize,
    ) -> (usize, usize) {
        let first = self.passes.iter().flatten().flat_map(|(_, k)| k).map(|&k| weight(k)).sum();
        let second = self
            .below
            .iter()
            .map(|&j| {
                let kids: usize = plan.kids(j, states_only).iter().map(|&k| weight(k)).sum();
                kids * self.shifts[j].len()
            })
            .sum();
        (first, second)
    }

    /// All its VJPs, weighted as in [`ZeroStart::phases`].
    fn sends(&self, plan: &Plan, states_only: &[bool], weight: impl Fn(usize) -> usize) -> usize {
        let (first, second) = self.phases(plan, states_only, weight);
        first + second
    }
}

/// The value of node `j` computed from the relaxing state `states` (`states[i]` is `v_i`, see
/// [`Signals::states`]): a relaxing node's state, and through the forward maps of
/// parameter-free nodes above (a merge node adds the feedforward value of a parent with no
/// relaxing state below). `None` when no relaxing state lies below (the value is the
/// feedforward activity).
fn state_value<B: Backend>(
    net: &Network<B>,
    cache: &ForwardCache<B>,
    states: &[B::Tensor],
    input_relaxed: bool,
    j: usize,
) -> Option<B::Tensor> {
    if j == 0 {
        return input_relaxed.then(|| states[0].clone());
    }
    let layer = &net.layers[j - 1];
    if layer.is_parametric() {
        // Weighted nodes below the top relax (the top is never read by a layer).
        return Some(states[j].clone());
    }
    let parents = net.parents(j);
    let values: Vec<Option<B::Tensor>> =
        parents.iter().map(|&p| state_value(net, cache, states, input_relaxed, p)).collect();
    if values.iter().all(Option::is_none) {
        return None;
    }
    if matches!(layer, Layer::Add) {
        let filled: Vec<B::Tensor> = values
            .into_iter()
            .zip(parents)
            .map(|(v, &p)| v.unwrap_or_else(|| cache.activity(p).clone()))
            .collect();
        let order: Vec<usize> = (0..filled.len()).collect();
        return Some(net.sum_of(&order, |i| &filled[i]));
    }
    let x = values.into_iter().next().flatten().expect("one parent, with a state below");
    Some(layer.forward_parameter_free(net.backend(), &x).0)
}

/// The input of layer `k` (1-based) computed from the relaxing state `states` (`states[j]` is
/// `v_j`, see [`Signals::states`]): the state of the node it reads, or the value computed from
/// the states below through the forward maps of parameter-free nodes. `None` when no relaxing
/// state lies below (the input is the feedforward activity).
pub fn state_input<B: Backend>(
    net: &Network<B>,
    cache: &ForwardCache<B>,
    states: &[B::Tensor],
    input_relaxed: bool,
    k: usize,
) -> Option<B::Tensor> {
    state_value(net, cache, states, input_relaxed, net.parents(k)[0])
}

impl<B: Backend> Signals<B> {
    /// Empty buffers; they are sized on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signals that leave out layer `k`'s contribution to node `j` (one reader's VJP dropped):
    /// a planted fault, so that the verification suite can show that it catches one. Never
    /// used in training.
    pub fn with_planted_fault(k: usize, j: usize) -> Self {
        Signals { fault: Some((k, j)), ..Self::default() }
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

    /// `f_k' * v_k` for weighted node `k` (`f'` stored) where the last computation already
    /// formed it to send `v_k` down and `v_k` has not changed since (backprop), else `None`.
    pub fn sent_product(&self, k: usize) -> Option<&B::Tensor> {
        self.sent_product.get(k).copied().unwrap_or(false).then(|| &self.e[k])
    }

    /// Whether the last computation relaxed the input (`v_0`).
    pub fn input_relaxed(&self) -> bool {
        self.input_relaxed
    }

    /// Computes every node's learning signal for one batch: `v_L = top` (the loss gradient
    /// `g_L`), then either backprop (`v_j` the sum over `j`'s readers `c` of `J_c^T v_c`, top
    /// down) or the relaxation of the stateful nodes. Returns the relaxation's statistics
    /// (`None` for backprop). The algorithm must have been validated and the network must carry
    /// feedback weights where the variant needs them.
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
        self.sent_product.clear();
        self.sent_product.resize(depth + 1, false);
        match algorithm.method {
            Method::Backprop => {
                // Down to the first weighted layer: nothing below it learns.
                let needed = net.signals_needed(false);
                for j in (0..depth).rev().filter(|&j| needed[j]) {
                    let kids = net.children(j).to_vec();
                    self.gather(net, cache, &algorithm.variant, j, &kids, 1.0, 0.0);
                }
                // Each layer sent with its final signal, with the stored f' unless its variant
                // says otherwise (and none was left out by a planted fault); the weight update
                // reuses those products.
                for k in 1..=depth {
                    let layer = &net.layers[k - 1];
                    self.sent_product[k] = self.fault.is_none()
                        && layer.is_parametric()
                        && needed[net.parents(k)[0]]
                        && algorithm.variant.for_layer(layer).fprime_backward == FPrime::Stored;
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
        self.clamp_drive = vec![None; shapes.len()];
        self.prev.clear();
        self.sums.clear();
        self.state_fprime.clear();
        self.shapes = shapes;
    }

    /// `v_j <- alpha * sum_{c in kids} J_c^T(v_c) + beta * v_j`, the readers' VJPs blended in
    /// one after the other (`v_j <- beta * v_j` when `kids` is empty).
    #[allow(clippy::too_many_arguments)]
    fn gather(
        &mut self,
        net: &Network<B>,
        cache: &ForwardCache<B>,
        variant: &Variant,
        j: usize,
        kids: &[usize],
        alpha: f64,
        beta: f64,
    ) {
        if let Some(fault) = self.fault.filter(|&(c, p)| p == j && kids.contains(&c)) {
            let kept: Vec<usize> = kids.iter().copied().filter(|&c| (c, j) != fault).collect();
            self.fault = None;
            self.gather(net, cache, variant, j, &kept, alpha, beta);
            self.fault = Some(fault);
            return;
        }
        if kids.is_empty() {
            net.backend().axpby(0.0, cache.activity(j), beta, &mut self.v[j]);
        }
        for (n, &c) in kids.iter().enumerate() {
            self.send(net, cache, variant, c, j, alpha, if n == 0 { beta } else { 1.0 });
        }
    }

    /// `v_j <- alpha * J_k^T(v_k) + beta * v_j` for node `j` read by layer `k`: through `W_k^T`
    /// or the backward weights after multiplying by `f_k'` (stored, re-evaluated at the state,
    /// or dropped, by variant) for weighted layers; through the routing for parameter-free ones
    /// (the identity for a merge node).
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        net: &Network<B>,
        cache: &ForwardCache<B>,
        variant: &Variant,
        k: usize,
        j: usize,
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
            let fprime = match state_input(net, cache, &self.v, self.input_relaxed, k) {
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
        let target = &mut below[j];
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

    /// Euler relaxation `v_j <- (1 - eta) v_j + eta sum_c J_c^T v_c` of the stateful nodes, or
    /// its closed form.
    fn relax(
        &mut self,
        net: &Network<B>,
        cache: &ForwardCache<B>,
        variant: &Variant,
        r: &Relaxation,
    ) -> RelaxStats {
        let be = net.backend();
        let plan = Plan::new(net, r.relax_input);
        let stateful = plan.order.clone();
        let wanted = r.solver_for(variant);
        if stateful.is_empty() {
            return RelaxStats { iterations: 0, residual: None, solver: wanted };
        }
        self.input_relaxed = r.relax_input;
        let unfrozen = variant.any(|c| c.fprime_backward == FPrime::AtState);
        if unfrozen && self.state_fprime.is_empty() {
            self.state_fprime = vec![None; net.depth() + 1];
        }
        let (full, states_only, clamp_only) =
            (plan.carries(FULL), plan.carries(STATES), plan.carries(CLAMP));
        // A node none of whose drive comes from relaxing states has a constant drive while the
        // forward pass is frozen: computed once per batch.
        let constant = plan.constant(variant);
        let solver = plan.solver(r, variant);
        if !unfrozen {
            // The clamped top's share of each drive: all of a constant node's drive, and the
            // closed form's `d`.
            for &j in &stateful {
                let kids = plan.kids(j, &clamp_only);
                if kids.is_empty() || !(constant[j] || solver == Solver::ClosedForm) {
                    continue;
                }
                let mut instants = vec![false; net.depth() + 1];
                plan.mark_instants(j, &clamp_only, &mut instants);
                for m in (0..=net.depth()).rev().filter(|&m| instants[m]) {
                    self.gather(net, cache, variant, m, &plan.kids(m, &clamp_only), 1.0, 0.0);
                }
                self.gather(net, cache, variant, j, &kids, 1.0, 0.0);
                let drive = self.clamp_drive[j].get_or_insert_with(|| be.zeros(&self.shapes[j]));
                be.axpby(1.0, &self.v[j], 0.0, drive);
            }
        }
        if solver == Solver::ClosedForm {
            // The closed form reads V(0) from the forward cache (or not at all, from zero) and
            // writes every state before reading it.
            self.closed_form(net, cache, variant, r, &plan, &states_only, &plan.clamped());
            return RelaxStats { iterations: r.steps, residual: None, solver };
        }
        for &j in &stateful {
            match r.init {
                InitialState::Feedforward => be.axpby(1.0, cache.activity(j), 0.0, &mut self.v[j]),
                InitialState::Zero => be.axpby(0.0, cache.activity(j), 0.0, &mut self.v[j]),
            }
        }
        if r.tolerance.is_some() && self.prev.len() != self.shapes.len() {
            self.prev = self.shapes.iter().map(|s| be.zeros(s)).collect();
        }
        let (eta, keep) = (r.eta, 1.0 - r.eta);
        let mut residual = None;
        let mut iterations = 0;
        // The pass-through nodes read by the drives computed each step.
        let mut instants = vec![false; net.depth() + 1];
        for &j in stateful.iter().filter(|&&j| !constant[j]) {
            plan.mark_instants(j, &full, &mut instants);
        }
        let kids: Vec<Vec<usize>> = (0..=net.depth()).map(|j| plan.kids(j, &full)).collect();
        // Parallel: every pass-through signal from the old iterate first, then the states
        // bottom-up, so each reads the old iterate of the nodes above. Sweep: top-down over
        // both, so each node reads its readers' new values.
        let order: Vec<usize> = match r.schedule {
            Schedule::Parallel => {
                let through = (0..=net.depth()).rev().filter(|&m| instants[m]);
                through.chain(stateful.iter().copied()).collect()
            }
            Schedule::Sweep => {
                (0..=net.depth()).rev().filter(|&m| instants[m] || plan.stateful[m]).collect()
            }
        };
        for _ in 0..r.steps {
            if r.tolerance.is_some() {
                for &j in &stateful {
                    be.axpby(1.0, &self.v[j], 0.0, &mut self.prev[j]);
                }
            }
            for &j in &order {
                if !plan.stateful[j] {
                    self.gather(net, cache, variant, j, &kids[j], 1.0, 0.0);
                } else if constant[j] {
                    let drive = self.clamp_drive[j].as_ref().expect("computed above");
                    be.axpby(eta, drive, keep, &mut self.v[j]);
                } else {
                    self.gather(net, cache, variant, j, &kids[j], eta, keep);
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
        RelaxStats { iterations, residual, solver }
    }

    /// The state after `T` Euler steps in closed form (see [`Solver::ClosedForm`]): with
    /// `V(T) = sum_{m=0}^{P} N^m (p_m V(0) + q_m d)`, Horner's rule from the highest power
    /// down, where `N` maps the relaxing states to their drives (the clamp left out), `d` is
    /// the clamp's share of every drive and `P` the longest chain of relaxing nodes, each
    /// driving the next (under the parallel schedule no power above `T` survives). Each Horner
    /// pass first computes the pass-through signals from the previous pass's states, then
    /// updates the stateful nodes bottom-up in place, so every node still reads the previous
    /// pass's values above it. `V(0)` is read from the forward cache (a node's first pass
    /// writes its state before any pass reads it) and `d` is in `clamp_drive` for the nodes
    /// marked in `clamped`. From the zero start only the `q_m N^m d` terms remain, which
    /// [`Signals::closed_form_from_zero`] evaluates far more cheaply ([`ZeroStart`]).
    #[allow(clippy::too_many_arguments)]
    fn closed_form(
        &mut self,
        net: &Network<B>,
        cache: &ForwardCache<B>,
        variant: &Variant,
        r: &Relaxation,
        plan: &Plan,
        states_only: &[bool],
        clamped: &[bool],
    ) {
        if r.init == InitialState::Zero {
            self.closed_form_from_zero(net, cache, variant, r, plan, states_only, clamped);
            return;
        }
        let be = net.backend();
        let heights = plan.heights(states_only);
        let max_power = max_power(plan, r, &heights);
        let (p, q) = self.coefficients(r, max_power);
        let kids: Vec<Vec<usize>> = (0..=net.depth()).map(|j| plan.kids(j, states_only)).collect();
        for power in (0..=max_power).rev() {
            // Horner's scheme: after this pass, node j holds sum_{m >= power} N^(m - power) c_m,
            // which the passes below carry down `power` more nodes. At a node with a shorter
            // chain below it that would fall below the bottom: the value is never read (the
            // next pass overwrites it first), so it is not computed.
            let active: Vec<usize> =
                plan.order.iter().copied().filter(|&j| heights[j] >= power).collect();
            let driven = |j: usize| power < max_power && !kids[j].is_empty();
            let mut instants = vec![false; net.depth() + 1];
            for &j in active.iter().filter(|&&j| driven(j)) {
                plan.mark_instants(j, states_only, &mut instants);
            }
            for m in (0..=net.depth()).rev().filter(|&m| instants[m]) {
                self.gather(net, cache, variant, m, &kids[m], 1.0, 0.0);
            }
            for &j in &active {
                let beta = if driven(j) {
                    self.gather(net, cache, variant, j, &kids[j], 1.0, 0.0);
                    1.0
                } else {
                    0.0 // N V is zero here
                };
                be.axpby(p[power], cache.activity(j), beta, &mut self.v[j]);
                if clamped[j] {
                    let drive = self.clamp_drive[j].as_ref().expect("computed before the solver");
                    be.axpby(q[power], drive, 1.0, &mut self.v[j]);
                }
            }
        }
    }

    /// [`closed_form_coefficients`] for `r` up to `max_power`, computed once per setting.
    fn coefficients(&mut self, r: &Relaxation, max_power: usize) -> (Vec<f64>, Vec<f64>) {
        let key = (r.schedule, r.eta.to_bits(), r.steps, max_power);
        match &self.coefficients {
            Some((k, p, q)) if *k == key => (p.clone(), q.clone()),
            _ => {
                let (p, q) = closed_form_coefficients(r.schedule, r.eta, r.steps, max_power);
                self.coefficients = Some((key, p.clone(), q.clone()));
                (p, q)
            }
        }
    }

    /// The closed form from the zero start ([`ZeroStart`]): `V(T) = sum_m q_m N^m d`, phase 1
    /// by powers of the clamp's drive, phase 2 by shifts below the cut.
    #[allow(clippy::too_many_arguments)]
    fn closed_form_from_zero(
        &mut self,
        net: &Network<B>,
        cache: &ForwardCache<B>,
        variant: &Variant,
        r: &Relaxation,
        plan: &Plan,
        states_only: &[bool],
        clamped: &[bool],
    ) {
        let be = net.backend();
        let top = max_power(plan, r, &plan.heights(states_only));
        let z = match self.zero_start.take() {
            Some(z) if z.fits(plan, top) => z,
            _ => plan.cheapest_zero_start(top, states_only),
        };
        let widest = z.shifts.iter().flatten().copied().max().unwrap_or(0);
        let (_, q) = self.coefficients(r, top + widest);
        let sized = self.sums.len() == z.shifts.len()
            && self.sums.iter().zip(&z.shifts).all(|(s, e)| s.len() == e.len());
        if !sized {
            self.sums = (z.shifts.iter().zip(&self.shapes))
                .map(|(e, shape)| e.iter().map(|_| be.zeros(shape)).collect())
                .collect();
        }
        // Phase 1, from x(0) = d at the clamped nodes above the cut; a node's first power
        // overwrites its sums, and those of nodes no power reaches are cleared at the end.
        let mut touched = vec![false; z.shifts.len()];
        for &n in plan.order.iter().filter(|&&n| z.accumulated[n] && clamped[n]) {
            let d = self.clamp_drive[n].as_ref().expect("computed before the solver");
            be.axpby(1.0, d, 0.0, &mut self.v[n]);
            for (sum, &e) in self.sums[n].iter_mut().zip(&z.shifts[n]) {
                be.axpby(q[e], d, 0.0, sum);
            }
            touched[n] = true;
        }
        for (pass, m) in z.passes.iter().zip(1..) {
            for (j, kids) in pass {
                self.gather(net, cache, variant, *j, kids, 1.0, 0.0);
                let beta = if touched[*j] { 1.0 } else { 0.0 };
                for (sum, &e) in self.sums[*j].iter_mut().zip(&z.shifts[*j]) {
                    be.axpby(q[m + e], &self.v[*j], beta, sum);
                }
                touched[*j] = true;
            }
        }
        for n in (0..touched.len()).filter(|&n| z.accumulated[n] && !touched[n]) {
            for sum in &mut self.sums[n] {
                be.axpby(0.0, cache.activity(n), 0.0, sum);
            }
        }
        // Phase 2: each reader's sum at the matching shift is moved into its signal's slot
        // for the VJP, then back.
        for &j in &z.below {
            let kids = plan.kids(j, states_only);
            for (i, &e) in z.shifts[j].iter().enumerate() {
                if kids.is_empty() {
                    self.gather(net, cache, variant, j, &[], 1.0, 0.0);
                }
                for (n, &k) in kids.iter().enumerate() {
                    let shift = e + usize::from(plan.stateful[k]);
                    let at = z.shifts[k].iter().position(|&s| s == shift).expect("carried up");
                    std::mem::swap(&mut self.v[k], &mut self.sums[k][at]);
                    let beta = if n == 0 { 0.0 } else { 1.0 };
                    self.gather(net, cache, variant, j, &[k], 1.0, beta);
                    std::mem::swap(&mut self.v[k], &mut self.sums[k][at]);
                }
                if plan.stateful[j] && clamped[j] {
                    let d = self.clamp_drive[j].as_ref().expect("computed before the solver");
                    be.axpby(q[e], d, 1.0, &mut self.v[j]);
                }
                std::mem::swap(&mut self.v[j], &mut self.sums[j][i]);
            }
        }
        for &j in &plan.order {
            std::mem::swap(&mut self.v[j], &mut self.sums[j][0]);
        }
        self.zero_start = Some(z);
    }
}

/// The highest power of `N` the closed form needs: the longest chain of relaxing nodes, and
/// under the parallel schedule at most `T` (its coefficients vanish above).
fn max_power(plan: &Plan, r: &Relaxation, heights: &[usize]) -> usize {
    let longest = plan.order.iter().map(|&j| heights[j]).max().unwrap_or(0);
    match r.schedule {
        Schedule::Parallel => longest.min(r.steps),
        Schedule::Sweep => longest,
    }
}

/// The VJPs (sends) of the closed form's passes, the clamp's share excluded (both solvers
/// compute it): from the zero start those of phase 1 without a cut, an upper bound of the
/// schedule that runs, which is cheap to find.
fn closed_form_cost(plan: &Plan, r: &Relaxation, states_only: &[bool]) -> usize {
    if r.init == InitialState::Zero {
        let top = max_power(plan, r, &plan.heights(states_only));
        return plan.zero_start(top, states_only, 0).sends(plan, states_only, |_| 1);
    }
    horner_sends(plan, r, states_only, |_| 1)
}

/// The sends of the Horner passes, each reader `k`'s counted `weight(k)` times.
fn horner_sends(
    plan: &Plan,
    r: &Relaxation,
    states_only: &[bool],
    weight: impl Fn(usize) -> usize,
) -> usize {
    let heights = plan.heights(states_only);
    let top = max_power(plan, r, &heights);
    let sum = |kids: Vec<usize>| kids.into_iter().map(&weight).sum::<usize>();
    (0..top)
        .map(|power| {
            let mut instants = vec![false; plan.depth + 1];
            let mut sends = 0;
            for &j in plan.order.iter().filter(|&&j| heights[j] >= power) {
                let kids = plan.kids(j, states_only);
                if !kids.is_empty() {
                    sends += sum(kids);
                    plan.mark_instants(j, states_only, &mut instants);
                }
            }
            sends
                + (0..=plan.depth)
                    .filter(|&m| instants[m])
                    .map(|m| sum(plan.kids(m, states_only)))
                    .sum::<usize>()
        })
        .sum()
}

/// The VJPs through weighted layers that the closed form makes on `net` for `r`, the top's
/// (which every solver makes once) left out: Horner's passes from the feedforward start, the
/// zero start's schedule from zero (docs/algorithm.md, "The closed-form solver"). Backprop
/// makes one per weighted layer below the top whose input needs a signal.
pub fn closed_form_vjps<B: Backend>(net: &Network<B>, r: &Relaxation) -> usize {
    let plan = Plan::new(net, r.relax_input);
    let states_only = plan.carries(STATES);
    let weighted = |k: usize| usize::from(plan.weighted[k]);
    if r.init == InitialState::Zero {
        let top = max_power(&plan, r, &plan.heights(&states_only));
        return plan.cheapest_zero_start(top, &states_only).sends(&plan, &states_only, weighted);
    }
    horner_sends(&plan, r, &states_only, weighted)
}

/// The VJPs (sends) of `T` Euler steps.
fn euler_cost(plan: &Plan, r: &Relaxation, full: &[bool], constant: &[bool]) -> usize {
    let mut instants = vec![false; plan.depth + 1];
    let mut sends = 0;
    for &j in plan.order.iter().filter(|&&j| !constant[j]) {
        sends += plan.kids(j, full).len();
        plan.mark_instants(j, full, &mut instants);
    }
    let through: usize =
        (0..=plan.depth).filter(|&m| instants[m]).map(|m| plan.kids(m, full).len()).sum();
    r.steps * (sends + through)
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

    /// The zero start's closed form equals Euler at every cut, not only the one it picks: a
    /// residual stack whose skips give its lower nodes several chain lengths to the clamp.
    #[test]
    fn the_zero_start_equals_euler_at_every_cut() {
        use crate::{Init, InitialState, LayerSpec};
        use ar_backend::Activation;
        type Be = ar_ndarray::NdArray<f64>;
        let be = Be::new();
        let dense = |outputs, activation| LayerSpec::Dense { outputs, activation };
        let (tanh, linear) = (Activation::Tanh, Activation::Identity);
        let specs = [
            dense(5, tanh),
            dense(5, tanh),
            dense(5, linear),
            LayerSpec::Add,
            dense(5, tanh),
            dense(5, linear),
            LayerSpec::Add,
            dense(5, tanh),
            LayerSpec::Add,
            dense(3, linear),
        ];
        let parents = [
            vec![0],
            vec![1],
            vec![2],
            vec![1, 3],
            vec![4],
            vec![5],
            vec![4, 6],
            vec![7],
            vec![8, 2],
            vec![9],
        ];
        let net = Network::build_graph(be, &[4], &specs, &parents, Init::PyTorch, 11).unwrap();
        let x: Vec<f64> = (0..8).map(|i| (f64::from(i) * 0.7).sin()).collect();
        let cache = net.forward(&be.from_host(&x, &[2, 4]));
        let top = be.from_host(&[0.3, -0.5, 0.2, 0.1, 0.4, -0.6], &[2, 3]);
        let mut summed_by_shift = 0;
        for schedule in [Schedule::Parallel, Schedule::Sweep] {
            for (steps, eta) in [(100, 0.1), (3, 0.5), (1, 1.0)] {
                for relax_input in [false, true] {
                    let euler = Relaxation {
                        eta,
                        steps,
                        tolerance: None,
                        schedule,
                        init: InitialState::Zero,
                        solver: Solver::Euler,
                        relax_input,
                    };
                    let run =
                        |r| Algorithm { method: Method::Relaxation(r), variant: Variant::exact() };
                    let (reference, _) = learning_signals(&net, &cache, &top, &run(euler));
                    let plan = Plan::new(&net, relax_input);
                    let states_only = plan.carries(STATES);
                    let closed = Relaxation { solver: Solver::ClosedForm, ..euler };
                    let passes = max_power(&plan, &closed, &plan.heights(&states_only));
                    for cut in 0..=net.depth() + 1 {
                        let schedule_at_cut = plan.zero_start(passes, &states_only, cut);
                        summed_by_shift += usize::from(
                            schedule_at_cut
                                .below
                                .iter()
                                .any(|&j| schedule_at_cut.shifts[j].len() > 1),
                        );
                        let mut signals = Signals::new();
                        signals.zero_start = Some(schedule_at_cut);
                        signals.compute(&net, &cache, &top, &run(closed));
                        for &j in &plan.order {
                            let worst = crate::metrics::relative_error(
                                &be.to_host(&signals.states()[j]),
                                &be.to_host(&reference.states()[j]),
                            );
                            assert!(
                                worst <= 1e-12,
                                "{schedule:?} T {steps} eta {eta} input {relax_input} cut {cut} node {j}: {worst:e}"
                            );
                        }
                    }
                }
            }
        }
        assert!(summed_by_shift > 0);
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
