"""How many relaxation steps AR from the feedforward start needs before its update is the gradient.

From the feedforward start every relaxing activity begins at its feedforward value, which the
relaxation must wash out: after T steps a remainder of it, shrinking like (1 - eta)^T times a
polynomial in T, is still in the update. Whether that remainder matters depends on how large the
activities are against the gradient, which differs between models. This script measures it at
initialisation: for each model, initialisation and T, exact AR from the feedforward start (sweep
schedule, eta 0.1, cross-entropy, f64) on the first 64 Fashion-MNIST training images, and prints
each weighted layer's angle (degrees) and relative error ||update - gradient|| / ||gradient||
to backprop's gradient, the probes of the training runs (docs/results-depth.md). In the
residual presets a layer feeding a block's zero-initialised last layer has a zero gradient at
initialisation and shows 90.00/inf.

    pip install ./crates/ar-py
    python experiments/depth/remainder.py --models plain-cnn-4-8,plain-mlp-4-128 --steps 50,110,200,300

Data: datasets/fashion-mnist (cargo xtask data fetch fashion-mnist).
"""

import argparse
from pathlib import Path

import numpy as np

import arrs

REPO = Path(__file__).resolve().parents[2]


def idx(path, header):
    """The bytes of an IDX file after its header."""
    return np.frombuffer(path.read_bytes()[header:], dtype=np.uint8)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="plain-mlp-4-128,plain-cnn-4-8", help="presets, comma-separated")
    p.add_argument("--inits", default="pytorch,kaiming", help="initialisations, comma-separated")
    p.add_argument("--steps", default="50,110,200,300,500", help="relaxation steps T, comma-separated")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument("--data-dir", type=Path, default=REPO / "datasets", help="root of the data sets")
    a = p.parse_args()
    folder = a.data_dir / "fashion-mnist"
    images = idx(folder / "train-images-idx3-ubyte", 16)[: 64 * 784].astype(np.float64) / 255
    labels = idx(folder / "train-labels-idx1-ubyte", 8)[:64].astype(np.int64)
    print("model  init  T  per weighted layer: angle (degrees) / relative error")
    for model in a.models.split(","):
        cnn = "cnn" in model
        x = images.reshape(64, 1, 28, 28) if cnn else images.reshape(64, 784)
        for init in a.inits.split(","):
            for steps in [int(t) for t in a.steps.split(",")]:
                net = arrs.Model(model, input_shape=[1, 28, 28] if cnn else 784, classes=10,
                                 init=init, seed=a.seed, precision="f64")
                trainer = arrs.Trainer(net, "ar", steps=steps, start="feedforward", schedule="sweep",
                                       eta=0.1, loss="cross-entropy")
                layers = " ".join(f"{r['layer']}: {r['angle_deg']:.2f}/{r['relative_error']:.1e}"
                                  for r in trainer.probes(x, labels))
                print(f"{model}  {init}  {steps}  {layers}", flush=True)


if __name__ == "__main__":
    main()
