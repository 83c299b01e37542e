"""An independent PyTorch implementation of the steps `cargo xtask bench` times, for a
side-by-side comparison on the same machine (run by `cargo xtask bench --peer`; needs torch).

--model mlp: paper 1's MLP 784-300-300-100-10 (ReLU, linear output).
--model cnn: paper 2's CNN on 3x32x32 inputs: conv 6 5x5 tanh, max-pool 2, conv 16 5x5 tanh,
             flatten (1600), fc 120 tanh, fc 120 tanh, fc 10 linear.
--model res-cnn: the residual CNN res-cnn-8-16 on 3x32x32 inputs: conv 16 3x3/p1 ReLU, then three
             blocks add(shortcut, conv 3x3/p1 ReLU -> conv 3x3/p1 linear) of 16 channels at 32x32,
             32 at 16x16 and 64 at 8x8 (the last two open with a stride-2 conv, their shortcut a
             1x1 stride-2 linear conv; the first's shortcut is the identity), global average
             pooling, fc 10 linear; each block's last conv starts at zero (weights and bias).
All with MSE as the batch mean of 1/2 ||y - t||^2 and plain SGD:
  bp:       forward, autograd backward, SGD step;
  ar-euler: forward with the pre-activations and f'(a) frozen once per batch, the relaxation
            v_k <- v_k + eta (-v_k + sum over the nodes j reading k of J_j^T (f'_j * v_j)) of the
            hidden weighted nodes only (the input does not relax; sweeps from the top down; top
            clamped at the output error; what the top sends down computed once), where J_j is
            node j's linear map (with the pooling or flattening before it, its routing frozen),
            then each weight gradient from e_k = f'_k * v_k and the node's input. The weightless
            nodes of res-cnn hold no state: an add node's signal is the sum of what its readers
            send (it sends it unchanged to both its inputs), the pooling's likewise (it sends it
            spread evenly over the plane); each is recomputed where the sweep reaches it.
Prints one JSON object per algorithm: {"backend", "algorithm", "seconds"}. On --device cuda the
clock stops after torch.cuda.synchronize(); convolutions and products run in full f32 (no TF32). --check instead prints one JSON line: ar-euler's
largest relative error in a weight gradient against autograd's, with eta 1 and T 1 (one sweep:
exactly backprop) and with eta 0.1 and T 100 (not converged), in f64 and f32, on one random batch
with the zero-started convs drawn at random.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F


def linear(h, w, b):
    return h @ w.T + b


def flat_linear(h, w, b):
    return h.flatten(1) @ w.T + b


def conv(stride=1, padding=0):
    return lambda h, w, b: F.conv2d(h, w, b, stride=stride, padding=padding)


def add(a, b):
    return a + b


def gap(h):
    return h.mean(dim=(2, 3))


def conv_params(cin, cout, k, device, zero=False):
    w = torch.randn(cout, cin, k, k, device=device) * 0.1
    return [torch.zeros_like(w) if zero else w, torch.zeros(cout, device=device)]


def fc_params(i, o, device):
    return [torch.randn(o, i, device=device) * 0.05, torch.zeros(o, device=device)]


# A model is a list of nodes (parents, params, f, activation): node k (from 1; node 0 is the input)
# is act(f(*parents' values, *params)); a node without params is weightless (add, gap).


def mlp_nodes(device):
    widths = [784, 300, 300, 100, 10]
    nodes = []
    for k, (i, o) in enumerate(zip(widths[:-1], widths[1:])):
        last = k == len(widths) - 2
        nodes.append(([k], fc_params(i, o, device), linear, None if last else "relu"))
    return nodes, (784,)


def cnn_nodes(device):
    layers = [
        (conv_params(3, 6, 5, device), conv(), "tanh"),
        (conv_params(6, 16, 5, device), lambda h, w, b: F.conv2d(F.max_pool2d(h, 2), w, b), "tanh"),
        (fc_params(1600, 120, device), flat_linear, "tanh"),
        (fc_params(120, 120, device), linear, "tanh"),
        (fc_params(120, 10, device), linear, None),
    ]
    return [([k], ps, f, kind) for k, (ps, f, kind) in enumerate(layers)], (3, 32, 32)


def res_cnn_nodes(device):
    same, down, project = conv(1, 1), conv(2, 1), conv(2, 0)
    nodes = [
        ([0], conv_params(3, 16, 3, device), same, "relu"),  # 1
        ([1], conv_params(16, 16, 3, device), same, "relu"),  # 2: block A
        ([2], conv_params(16, 16, 3, device, zero=True), same, None),  # 3
        ([1, 3], [], add, None),  # 4
        ([4], conv_params(16, 32, 3, device), down, "relu"),  # 5: block B
        ([5], conv_params(32, 32, 3, device, zero=True), same, None),  # 6
        ([4], conv_params(16, 32, 1, device), project, None),  # 7
        ([7, 6], [], add, None),  # 8
        ([8], conv_params(32, 64, 3, device), down, "relu"),  # 9: block C
        ([9], conv_params(64, 64, 3, device, zero=True), same, None),  # 10
        ([8], conv_params(32, 64, 1, device), project, None),  # 11
        ([11, 10], [], add, None),  # 12
        ([12], [], gap, None),  # 13
        ([13], fc_params(64, 10, device), linear, None),  # 14
    ]
    return nodes, (3, 32, 32)


MODELS = {"mlp": mlp_nodes, "cnn": cnn_nodes, "res-cnn": res_cnn_nodes}


def act(kind, a):
    return {"relu": torch.relu, "tanh": torch.tanh, None: lambda x: x}[kind](a)


def fprime(kind, a):
    if kind == "relu":
        return (a > 0).to(a.dtype)
    if kind == "tanh":
        return 1 - torch.tanh(a) ** 2
    return torch.ones_like(a)


def forward(nodes, x):
    hs = [x]
    for parents, ps, f, kind in nodes:
        hs.append(act(kind, f(*[hs[p] for p in parents], *ps)))
    return hs


def mse(y, t):
    return 0.5 * ((y - t) ** 2).sum(dim=1).mean()


def pass_back(f, ins):
    """The VJP map of a weightless node: an add sends its signal unchanged to each input, the
    global average pooling spreads it evenly over the plane."""
    if f is add:
        return lambda v: (v,) * len(ins)
    shape = ins[0].shape
    return lambda v: ((v / (shape[2] * shape[3]))[:, :, None, None].expand(shape),)


@torch.no_grad()
def ar_grads(nodes, x, t, steps, eta):
    """Activation relaxation, written out: a dense node sends e @ W down, a conv node (with the
    pooling before it) its input map frozen by torch.func.vjp, a weightless node its pass_back.
    Returns the weight gradients (summed over the batch) in the order of the nodes' params."""
    hs, fps, maps = [x], [None], [None]
    for parents, ps, f, kind in nodes:
        ins = [hs[p] for p in parents]
        if not ps:
            a, vjp = f(*ins), pass_back(f, ins)
        elif f is linear or f is flat_linear:
            a = f(*ins, *ps)
            vjp = lambda e, w=ps[0], shape=ins[0].shape: ((e @ w).reshape(shape),)
        else:
            a, vjp = torch.func.vjp(lambda h, ps=ps, f=f: f(h, *ps), *ins)
        fps.append(fprime(kind, a) if ps else None)
        maps.append(vjp)
        hs.append(act(kind, a))
    L = len(nodes)
    # For each node below the top: (node, weighted, [(reader, which of the reader's inputs)]).
    sweep = [(k, fps[k] is not None, []) for k in range(L - 1, 0, -1)]
    for j, (parents, _, _, _) in enumerate(nodes, 1):
        for i, k in enumerate(parents):
            if k > 0:
                sweep[L - 1 - k][2].append((j, i))
    v = [h.clone() if fp is not None else None for h, fp in zip(hs[:L], fps)] + [hs[L] - t]
    top_sends = maps[L](fps[L] * v[L])

    def drive(readers):
        total = None
        for j, i in readers:
            if j == L:
                d = top_sends[i]
            else:
                d = maps[j](v[j] if fps[j] is None else fps[j] * v[j])[i]
            total = d if total is None else total + d
        return total

    for _ in range(steps):
        for k, weighted, readers in sweep:
            if weighted:
                v[k].mul_(1 - eta).add_(drive(readers), alpha=eta)
            else:
                v[k] = drive(readers)
    grads = []
    for k, (parents, ps, f, _) in enumerate(nodes, 1):
        if ps:
            e = fps[k] * v[k]
            with torch.enable_grad():
                ps_ = [p.detach().requires_grad_() for p in ps]
                grads += torch.autograd.grad((f(hs[parents[0]], *ps_) * e).sum(), ps_)
    return grads


def check(make, device, batch):
    errors = {}
    for dtype in [torch.float64, torch.float32]:
        torch.set_default_dtype(dtype)
        torch.manual_seed(0)
        nodes, shape = make(device)
        for _, ps, _, _ in nodes:
            if ps and not ps[0].any():
                ps[0].normal_(0, 0.1)
        params = [p for _, ps, _, _ in nodes for p in ps]
        x = torch.rand(batch, *shape, device=device) * 2 - 1
        t = F.one_hot(torch.randint(0, 10, (batch,)), 10).to(device, dtype)
        for p in params:
            p.requires_grad_()
        bp = torch.autograd.grad(mse(forward(nodes, x)[-1], t), params)
        for p in params:
            p.requires_grad_(False)
        for eta, steps in [(1.0, 1), (0.1, 100)]:
            ar = ar_grads(nodes, x, t, steps, eta)
            err = max(((g / batch - r).norm() / r.norm()).item() for g, r in zip(ar, bp))
            errors[f"{str(dtype)[6:]}-eta{eta:g}-T{steps}"] = err
    print(json.dumps({"check": "ar-euler vs autograd, max relative error", **errors}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=list(MODELS), default="mlp")
    p.add_argument("--batches", type=int, default=937)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--eta", type=float, default=0.1)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # Full f32, as ours computes: by default PyTorch lets cuDNN run f32 convolutions in TF32
    # (a 10-bit mantissa) on A100 and later GPUs.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    device = torch.device(args.device)
    make = MODELS[args.model]
    batch, lr, pool = args.batch_size, 0.064, 16
    if args.check:
        return check(make, device, batch)
    _, shape = make(device)
    xs = [torch.rand(batch, *shape, device=device) * 2 - 1 for _ in range(pool)]
    ts = [F.one_hot(torch.randint(0, 10, (batch,)), 10).float().to(device) for _ in range(pool)]

    # Backprop with autograd.
    nodes, _ = make(device)
    params = [t.requires_grad_() for _, ps, _, _ in nodes for t in ps]
    opt = torch.optim.SGD(params, lr=lr)

    def bp_step(x, t):
        loss = mse(forward(nodes, x)[-1], t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # Activation relaxation (ar_grads) and the same SGD step.
    nodes2, _ = make(device)
    params2 = [t for _, ps, _, _ in nodes2 for t in ps]

    def ar_step(x, t):
        for w, g in zip(params2, ar_grads(nodes2, x, t, args.steps, args.eta)):
            w.sub_(lr / batch * g)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for name, step in [("bp", bp_step), ("ar-euler", ar_step)]:
        step(xs[0], ts[0])
        sync()
        start = time.perf_counter()
        for i in range(args.batches):
            step(xs[i % pool], ts[i % pool])
        sync()
        seconds = time.perf_counter() - start
        where = args.device if device.type == "cuda" else f"{args.threads}threads"
        backend = f"pytorch-{torch.__version__}-f32-{where}"
        print(json.dumps({"backend": backend, "algorithm": name, "seconds": seconds}))


if __name__ == "__main__":
    main()
