"""An independent PyTorch implementation of the steps `cargo xtask bench` times, for a
side-by-side comparison on the same machine (run by `cargo xtask bench --peer`; needs torch).

Paper-1 MLP 784-300-300-100-10 (ReLU, linear output), batch 64, MSE as the batch mean of
1/2 ||y - t||^2, plain SGD:
  bp:       forward, autograd backward, SGD step;
  ar-euler: forward with the pre-activations and f'(a) frozen once per batch, the relaxation
            v_k <- v_k + eta (-v_k + W_{k+1}^T (f'_{k+1} * v_{k+1})) of the hidden layers only
            (the input does not relax; sweep order; top clamped at the output error; the top
            hidden layer's drive computed once), then dW_k = mean_b (f'_k * v_k) h_{k-1}^T.
Prints one JSON object per algorithm: {"backend", "algorithm", "seconds"}.
"""

import argparse
import json
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batches", type=int, default=937)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eta", type=float, default=0.1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    widths = [784, 300, 300, 100, 10]
    batch, lr, pool = 64, 0.064, 16
    xs = [torch.rand(batch, 784) for _ in range(pool)]
    ts = [torch.nn.functional.one_hot(torch.randint(0, 10, (batch,)), 10).float() for _ in range(pool)]

    def init():
        ws = [torch.randn(o, i) * 0.05 for i, o in zip(widths[:-1], widths[1:])]
        bs = [torch.zeros(o) for o in widths[1:]]
        return ws, bs

    def act(k, a):
        return a if k == len(widths) - 2 else torch.relu(a)

    def fprime(k, a):
        return torch.ones_like(a) if k == len(widths) - 2 else (a > 0).to(a.dtype)

    # Backprop with autograd.
    ws, bs = init()
    params = [t.requires_grad_() for t in ws + bs]
    opt = torch.optim.SGD(params, lr=lr)
    def bp_step(x, t):
        h = x
        for k in range(len(ws)):
            h = act(k, h @ ws[k].T + bs[k])
        loss = 0.5 * ((h - t) ** 2).sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # Activation relaxation, written out.
    ws2, bs2 = init()
    @torch.no_grad()
    def ar_step(x, t):
        hs, fps = [x], []
        for k in range(len(ws2)):
            a = hs[-1] @ ws2[k].T + bs2[k]
            fps.append(fprime(k, a))
            hs.append(act(k, a))
        L = len(ws2)
        v = [None] + [h.clone() for h in hs[1:L]] + [hs[L] - t]
        top_drive = (fps[L - 1] * v[L]) @ ws2[L - 1]
        for _ in range(args.steps):
            for k in range(L - 1, 0, -1):
                drive = top_drive if k == L - 1 else (fps[k] * v[k + 1]) @ ws2[k]
                v[k].mul_(1 - args.eta).add_(drive, alpha=args.eta)
        for k in range(L):
            e = fps[k] * v[k + 1]
            ws2[k].sub_(lr / batch * (e.T @ hs[k]))
            bs2[k].sub_(lr / batch * e.sum(dim=0))

    for name, step in [("bp", bp_step), ("ar-euler", ar_step)]:
        step(xs[0], ts[0])
        start = time.perf_counter()
        for i in range(args.batches):
            step(xs[i % pool], ts[i % pool])
        seconds = time.perf_counter() - start
        backend = f"pytorch-{torch.__version__}-f32-{args.threads}threads"
        print(json.dumps({"backend": backend, "algorithm": name, "seconds": seconds}))


if __name__ == "__main__":
    main()
