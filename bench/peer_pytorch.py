"""An independent PyTorch implementation of the steps `cargo xtask bench` times, for a
side-by-side comparison on the same machine (run by `cargo xtask bench --peer`; needs torch).

--model mlp: paper 1's MLP 784-300-300-100-10 (ReLU, linear output).
--model cnn: paper 2's CNN on 3x32x32 inputs: conv 6 5x5 tanh, max-pool 2, conv 16 5x5 tanh,
             flatten (1600), fc 120 tanh, fc 120 tanh, fc 10 linear.
Both with MSE as the batch mean of 1/2 ||y - t||^2 and plain SGD:
  bp:       forward, autograd backward, SGD step;
  ar-euler: forward with the pre-activations and f'(a) frozen once per batch, the relaxation
            v_k <- v_k + eta (-v_k + J_{k+1}^T (f'_{k+1} * v_{k+1})) of the hidden layers only
            (the input does not relax; sweep order; top clamped at the output error; the top
            hidden layer's drive computed once), where J_{k+1} is layer k+1's linear map (with the
            pooling or flattening before it, its routing frozen), then each weight gradient from
            e_k = f'_k * v_k and the layer's input.
Prints one JSON object per algorithm: {"backend", "algorithm", "seconds"}. On --device cuda the
clock stops after torch.cuda.synchronize().
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


def mlp_layers(device):
    widths = [784, 300, 300, 100, 10]
    layers = []
    for k, (i, o) in enumerate(zip(widths[:-1], widths[1:])):
        w = torch.randn(o, i, device=device) * 0.05
        b = torch.zeros(o, device=device)
        last = k == len(widths) - 2
        layers.append(([w, b], linear, None if last else "relu"))
    return layers, (784,)


def cnn_layers(device):
    def conv(cin, cout):
        return [torch.randn(cout, cin, 5, 5, device=device) * 0.1, torch.zeros(cout, device=device)]

    def fc(i, o):
        return [torch.randn(o, i, device=device) * 0.05, torch.zeros(o, device=device)]

    layers = [
        (conv(3, 6), lambda h, w, b: F.conv2d(h, w, b), "tanh"),
        (conv(6, 16), lambda h, w, b: F.conv2d(F.max_pool2d(h, 2), w, b), "tanh"),
        (fc(1600, 120), flat_linear, "tanh"),
        (fc(120, 120), linear, "tanh"),
        (fc(120, 10), linear, None),
    ]
    return layers, (3, 32, 32)


def act(kind, a):
    return {"relu": torch.relu, "tanh": torch.tanh, None: lambda x: x}[kind](a)


def fprime(kind, a):
    if kind == "relu":
        return (a > 0).to(a.dtype)
    if kind == "tanh":
        return 1 - torch.tanh(a) ** 2
    return torch.ones_like(a)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--batches", type=int, default=937)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--eta", type=float, default=0.1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    make = mlp_layers if args.model == "mlp" else cnn_layers
    batch, lr, pool = args.batch_size, 0.064, 16
    _, shape = make(device)
    xs = [torch.rand(batch, *shape, device=device) * 2 - 1 for _ in range(pool)]
    ts = [F.one_hot(torch.randint(0, 10, (batch,)), 10).float().to(device) for _ in range(pool)]

    # Backprop with autograd.
    layers, _ = make(device)
    params = [t.requires_grad_() for ps, _, _ in layers for t in ps]
    opt = torch.optim.SGD(params, lr=lr)

    def bp_step(x, t):
        h = x
        for (w, b), f, kind in layers:
            h = act(kind, f(h, w, b))
        loss = 0.5 * ((h - t) ** 2).sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # Activation relaxation, written out: a dense layer sends e @ W down, a conv layer (with the
    # pooling before it) its input map frozen by torch.func.vjp.
    layers2, _ = make(device)

    @torch.no_grad()
    def ar_step(x, t):
        hs, fps, maps = [x], [], []
        for (w, b), f, kind in layers2:
            h = hs[-1]
            if f is linear or f is flat_linear:
                a = f(h, w, b)
                vjp = lambda e, w=w, shape=h.shape: ((e @ w).reshape(shape),)
            else:
                a, vjp = torch.func.vjp(lambda h, w=w, b=b, f=f: f(h, w, b), h)
            fps.append(fprime(kind, a))
            maps.append(vjp)
            hs.append(act(kind, a))
        L = len(layers2)
        v = [None] + [h.clone() for h in hs[1:L]] + [hs[L] - t]
        top_drive = maps[L - 1](fps[L - 1] * v[L])[0]
        for _ in range(args.steps):
            for k in range(L - 1, 0, -1):
                drive = top_drive if k == L - 1 else maps[k](fps[k] * v[k + 1])[0]
                v[k].mul_(1 - args.eta).add_(drive, alpha=args.eta)
        for k, ((w, b), f, _) in enumerate(layers2):
            e = fps[k] * v[k + 1]
            with torch.enable_grad():
                w.requires_grad_(), b.requires_grad_()
                gw, gb = torch.autograd.grad((f(hs[k], w, b) * e).sum(), [w, b])
                w.requires_grad_(False), b.requires_grad_(False)
            w.sub_(lr / batch * gw)
            b.sub_(lr / batch * gb)

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
