"""Rebuilds a checkpoint's network as a torch.nn module and evaluates it on a test set.

A residual model's checkpoint (any model `cargo xtask train` writes) names its tensors by module
path: `layers.{i}` for the spec's i-th item, and inside a residual block `layers.{i}.branch.{j}`
and `layers.{i}.shortcut.{j}` (docs/models.md, "Checkpoints"). This script builds the torch module
with exactly those paths from the checkpoint's header alone (the layer records, the graph and the
names), loads the weights with `load_state_dict(strict=True)`, and prints its test accuracy, to
compare with `cargo xtask eval CHECKPOINT`. Not run by CI (it needs torch).

    python bench/residual_torch.py RUN/checkpoints/bp.safetensors --data datasets/fashion-mnist

MNIST-like IDX test files (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) scaled to
[0, 1], the project's normalisation for MNIST and Fashion-MNIST.
"""

import argparse
import gzip
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors import safe_open

ACTIVATIONS = {
    "identity": lambda a: a,
    "relu": torch.relu,
    "leaky-relu": lambda a: torch.nn.functional.leaky_relu(a, 0.01),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": torch.nn.functional.softplus,
}


class Dense(torch.nn.Linear):
    """nn.Linear followed by the layer's activation (its parameters keep Linear's names)."""

    def __init__(self, record):
        super().__init__(record["inputs"], record["outputs"])
        self.act = ACTIVATIONS[record["activation"]]

    def forward(self, x):
        return self.act(super().forward(x))


class Conv(torch.nn.Conv2d):
    """nn.Conv2d followed by the layer's activation."""

    def __init__(self, r):
        super().__init__(r["in_channels"], r["out_channels"], r["kernel"], r["stride"], r["padding"])
        self.act = ACTIVATIONS[r["activation"]]

    def forward(self, x):
        return self.act(super().forward(x))


class GlobalAvgPool(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class Residual(torch.nn.Module):
    """shortcut(x) + branch(x); the shortcut is the identity unless the block has one."""

    def __init__(self, branch, shortcut):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut if shortcut is not None else torch.nn.Identity()

    def forward(self, x):
        return self.shortcut(x) + self.branch(x)


def leaf(record):
    kind = record["kind"]
    if kind == "dense":
        return Dense(record)
    if kind == "conv2d":
        return Conv(record)
    if kind == "maxpool2d":
        return torch.nn.MaxPool2d(record["kernel"], record["stride"])
    if kind == "avgpool2d":
        return torch.nn.AvgPool2d(record["kernel"], record["stride"])
    if kind == "flatten":
        return torch.nn.Flatten()
    if kind == "globalavgpool":
        return GlobalAvgPool()
    sys.exit(f"layer kind {kind!r} has no torch counterpart here")


def sequence(path, by_name):
    """The nn.Sequential whose items are the layers named {path}.0, {path}.1, ..."""
    items = []
    j = 0
    while f"{path}.{j}" in by_name:
        items.append(module(f"{path}.{j}", by_name))
        j += 1
    return torch.nn.Sequential(*items)


def module(name, by_name):
    record = by_name[name]
    if record["kind"] != "add":
        return leaf(record)
    shortcut = sequence(f"{name}.shortcut", by_name) if f"{name}.shortcut.0" in by_name else None
    return Residual(sequence(f"{name}.branch", by_name), shortcut)


class Model(torch.nn.Module):
    def __init__(self, records, names):
        super().__init__()
        by_name = dict(zip(names, records))
        self.layers = sequence("layers", by_name)

    def forward(self, x):
        return self.layers(x)


def read_idx(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            raw = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
            dims = raw[3]
            shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    sys.exit(f"{path}[.gz] not found")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True, help="folder with the IDX test files")
    args = ap.parse_args()
    with safe_open(args.checkpoint, "np") as f:
        header = f.metadata()
    records = json.loads(header["model"])
    names = json.loads(header.get("names", "null")) or [f"layers.{i}" for i in range(len(records))]
    input_shape = json.loads(header["input_shape"])
    model = Model(records, names).double()
    tensors = load_file(args.checkpoint)
    state = {k: torch.from_numpy(v.astype(np.float64)) for k, v in tensors.items()
             if not k.startswith("optimizer.") and not k.endswith(".feedback")}
    model.load_state_dict(state, strict=True)
    images = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte")).astype(np.float64) / 255.0
    labels = read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte")).astype(np.int64)
    x = torch.from_numpy(images.reshape([len(images)] + input_shape))
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 500):
            out = model(x[start:start + 500])
            correct += (out.argmax(1).numpy() == labels[start:start + 500]).sum()
    print(f"torch module, loaded strictly ({len(state)} tensors): "
          f"test accuracy {100.0 * correct / len(x):.2f}% on {len(x)} samples")


if __name__ == "__main__":
    main()
