"""Trains the paper-1 MLP's backprop on Fashion-MNIST (or MNIST) with this project's engine
(`arrs`) on batch orders and initial weights chosen from either code, and optionally the
authors' backprop beside it in lockstep: the fidelity study of docs/results.md.

With `--with-theirs`, their `FCLayer`s (from their main.py, not part of this repository) with
every known difference moved to ours (linear output, ours learning rate, one trained bias per
unit: as bench/authors_mlp.py's controls) take the same steps on the same batches from the same
weights, and the largest weight difference after the first step is printed (it should be f32
rounding) with both codes' test accuracy after each epoch.

Batch orders: `--order torch` draws each epoch's order with `torch.randperm` from a generator
seeded with `--seed` (as authors_mlp.py's `--reshuffle`); `--order-file F` reads this
project's orders, written by `cargo run --release -p ar-data --example batch_order -- 60000 64
SEED EPOCHS F`. Initial weights: `--init ours` is `arrs.Model(..., seed=SEED)`, this project's
draw; `--init torch` is their `FCLayer`'s `normal_(0, 0.05)` after `torch.manual_seed(SEED)`.
Every batch is used, the last one short (60000 = 937 x 64 + 32), as this project's runs do.

Needs torch and arrs (`pip install ./crates/ar-py`). Usage:
  python bench/fidelity_lockstep.py --authors-main PATH/main.py --data datasets/fashion-mnist \\
      --seed 3 --order-file order-3.bin --init ours --epochs 10
Prints one JSON object per epoch.
"""

import argparse
import importlib.util
import json
import os
import sys

import numpy as np
import torch

import arrs

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("authors_mlp", os.path.join(here, "authors_mlp.py"))
authors_mlp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(authors_mlp)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--authors-main", required=True, help="path to their main.py")
    p.add_argument("--data", required=True, help="folder with the four IDX files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--init", choices=["ours", "torch"], default="ours")
    p.add_argument("--order-file", default=None,
                   help="this project's batch orders (see above); default: torch.randperm")
    p.add_argument("--with-theirs", action="store_true",
                   help="also train their layers in lockstep and compare")
    a = p.parse_args()
    torch.set_num_threads(1)
    authors = authors_mlp.load_authors(a.authors_main)

    def split(name):
        find = authors_mlp.find
        x = authors_mlp.read_idx(find(a.data, f"{name}-images-idx3-ubyte")).float().div(255)
        y = authors_mlp.read_idx(find(a.data, f"{name}-labels-idx1-ubyte")).long()
        return x.reshape(len(x), 784), y

    (x, y), (xt, yt) = split("train"), split("t10k")
    torch.manual_seed(a.seed)
    sizes, lr = [784, 300, 300, 100, 10], 0.0005 * 0.1
    fns = [authors.relu] * 3 + [authors.linear]
    layers = [authors.FCLayer(i, o, 64, f, authors.relu_deriv, 0.1, lr, device=authors.DEVICE)
              for i, o, f in zip(sizes, sizes[1:], fns)]
    for layer in layers:
        layer.weights = torch.nn.Parameter(layer.weights)
        layer.bias = torch.nn.Parameter(torch.zeros(1, layer.output_size))
    model = arrs.Model("paper1-mlp", input_shape=784, classes=10, seed=a.seed)
    if a.init == "torch":
        state = {}
        for i, layer in enumerate(layers):
            state[f"layers.{i}.weight"] = layer.weights.detach().numpy().T.copy()
            state[f"layers.{i}.bias"] = np.zeros(layer.output_size, dtype=np.float32)
        model.load_state_dict(state)
    else:
        state = model.state_dict()
        with torch.no_grad():
            for i, layer in enumerate(layers):
                layer.weights.copy_(torch.from_numpy(state[f"layers.{i}.weight"].T.copy()))
    ours = arrs.Trainer(model, algorithm="bp", loss="mse", optimizer="sgd", lr=0.064, momentum=0.0)
    orders = None
    if a.order_file:
        orders = np.fromfile(a.order_file, dtype="<u4").reshape(-1, len(x)).astype(np.int64)
        if len(orders) < a.epochs:
            sys.exit(f"{a.order_file}: {len(orders)} epochs of orders, {a.epochs} asked for")
    generator = torch.Generator().manual_seed(a.seed)

    def their_step(xb, yb):
        target = authors.onehot(yb)
        out = xb
        for layer in layers:
            out = layer.fn(out @ layer.weights + layer.bias)
        loss = authors.mse_loss(out, target)
        for layer in layers:
            layer.weights.grad, layer.bias.grad = None, None
        loss.backward()
        with torch.no_grad():
            for layer in layers:
                layer.weights -= layer.weight_lr * 10 * layer.weights.grad
                layer.bias -= layer.weight_lr * 10 * layer.bias.grad

    def their_accuracy():
        with torch.no_grad():
            out = xt
            for layer in layers:
                out = layer.fn(out @ layer.weights + layer.bias)
            return (out.argmax(1) == yt).float().mean().item()

    for epoch in range(1, a.epochs + 1):
        if orders is not None:
            order = torch.from_numpy(orders[epoch - 1])
        else:
            order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            xb, yb = x[batch], y[batch]
            ours.step(xb.numpy(), yb.numpy())
            if a.with_theirs:
                their_step(xb, yb)
                if epoch == 1 and start == 0:
                    mine = ours.model.state_dict()
                    diff = max(float(np.abs(mine[f"layers.{i}.weight"]
                                            - layer.weights.detach().numpy().T).max())
                               for i, layer in enumerate(layers))
                    print(json.dumps({"first_step_max_weight_difference": diff}), flush=True)
        _, accuracy = ours.evaluate(xt.numpy(), yt.numpy())
        row = {"epoch": epoch, "ours": accuracy}
        if a.with_theirs:
            row["theirs"] = their_accuracy()
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
