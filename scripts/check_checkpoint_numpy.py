"""Checks a checkpoint written by `cargo xtask train` outside Rust: loads it with the
safetensors package into numpy, runs the MLP's forward pass in numpy (PyTorch's layout:
h = f(h @ W.T + b)), and compares with the outputs and predictions that
`cargo xtask eval CKPT --dump DUMP` wrote for the same inputs.

usage: python3 scripts/check_checkpoint_numpy.py CKPT DUMP
"""

import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

ACTIVATIONS = {
    "identity": lambda a: a,
    "relu": lambda a: np.maximum(a, 0.0),
    "leaky-relu": lambda a: np.where(a > 0.0, a, 0.01 * a),
    "tanh": np.tanh,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "softplus": lambda a: np.logaddexp(0.0, a),
}


def main(ckpt_path, dump_path):
    with safe_open(ckpt_path, framework="numpy") as f:
        header = f.metadata()
    layers = json.loads(header["model"])
    weights = load_file(ckpt_path)
    dump = load_file(dump_path)
    h = dump["inputs"].astype(np.float64)
    for i, layer in enumerate(layers):
        assert layer["kind"] == "dense", layer
        w = weights[f"layers.{i}.weight"].astype(np.float64)
        b = weights[f"layers.{i}.bias"].astype(np.float64)
        assert w.shape == (layer["outputs"], layer["inputs"]), (w.shape, layer)
        h = ACTIVATIONS[layer["activation"]](h @ w.T + b)
    worst = float(np.max(np.abs(h - dump["outputs"])))
    scale = float(np.max(np.abs(dump["outputs"])))
    ours = dump["predictions"].astype(np.int64)
    theirs = np.argmax(h, axis=1)
    agree = int(np.sum(ours == theirs))
    print(f"numpy forward pass of {ckpt_path}: {len(layers)} layers, {h.shape[0]} samples, "
          f"largest output difference {worst:.3e} (outputs up to {scale:.3e}), "
          f"predictions agree on {agree}/{len(ours)}")
    if worst > 1e-9 * max(1.0, scale) or agree != len(ours):
        sys.exit("MISMATCH between the CLI and numpy")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
