"""AR against backprop on MNIST from numpy, with the probes' angles to the exact gradient.

Get the data first: `cargo xtask data fetch mnist` (files in datasets/mnist/). Then
`python crates/ar-py/examples/mnist_ar_vs_bp.py [PLOT.png]`; the plot needs matplotlib.
"""

import sys
from pathlib import Path

import numpy as np

import arrs

root = Path(__file__).resolve().parents[3] / "datasets" / "mnist"


def idx(name, offset):
    return np.frombuffer((root / name).read_bytes(), dtype=np.uint8, offset=offset)


x_train = idx("train-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255
y_train = idx("train-labels-idx1-ubyte", 8).astype(np.int64)
x_test = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255
y_test = idx("t10k-labels-idx1-ubyte", 8).astype(np.int64)

rng = np.random.default_rng(0)
angles = {}
for algorithm in ["ar", "bp"]:
    model = arrs.Model("paper1-mlp", input_shape=784, classes=10, seed=0)
    trainer = arrs.Trainer(model, algorithm, lr=0.1, momentum=0.9)  # AR: eta 0.1, T 100
    angles[algorithm] = []
    order = rng.permutation(len(x_train))[:12800]  # 200 batches of 64, to keep it short
    for i, batch in enumerate(order.reshape(-1, 64)):
        trainer.step(x_train[batch], y_train[batch])
        if i % 20 == 0:
            probes = trainer.probes(x_train[:64], y_train[:64])
            angles[algorithm].append([p["angle_deg"] for p in probes])
    loss, accuracy = trainer.evaluate(x_test, y_test)
    print(f"{algorithm}: test accuracy {100 * accuracy:.2f}% after {trainer.steps} steps")

ar = np.array(angles["ar"])
print("AR's angle to the exact gradient per layer (degrees), first and last probe:")
print(np.round(ar[0], 4), np.round(ar[-1], 4))

if len(sys.argv) > 1:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for layer in range(ar.shape[1] - 1):  # the top layer's signal is the loss gradient: 0 degrees
        plt.plot(np.arange(len(ar)) * 20, ar[:, layer], label=f"layer {layer + 1}")
    plt.xlabel("training step")
    plt.ylabel("angle to the exact gradient (degrees)")
    plt.yscale("log")
    plt.legend()
    plt.title("AR (eta 0.1, T 100) on MNIST, paper 1's MLP")
    plt.savefig(sys.argv[1], dpi=100)
    print("plot:", sys.argv[1])
