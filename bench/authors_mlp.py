"""Runs the authors' own MLP code on local MNIST / Fashion-MNIST files, for the reference rows of
docs/results.md: their `main.py` from github.com/BerenMillidge/ActivationRelaxation (not part of
this repository: clone it and pass its path), its classes and functions used unmodified.

What this script replaces, and nothing else: torchvision's downloading datasets (the IDX files
are read here and batched by torch's DataLoader with the shuffle flags of their `get_dataset`:
MNIST train and test shuffled, Fashion-MNIST train in file order, test shuffled; each loader
iterated once, as their code does, so the batch order never changes between epochs), their
`save_model` (which rsyncs to a server; a no-op here) and their per-batch printing (silenced).
The network and training are those of their `__main__`: 784-300-300-100-10, ReLU hidden layers,
softmax output (with their linear derivative in the relaxation), N(0, 0.05) weights, one bias per
batch position, MSE summed over the batch (`--loss_fn mse`), their lr 5e-4 (backprop: their
`BackpropNet` multiplies it by 10), eta 0.1, T 100, batch 64, the last two batches of the
training and test sets dropped, test accuracy as the mean over test batches.
`torch.manual_seed(seed)` is set before the data loaders, as the only source of randomness.

Usage:
  python bench/authors_mlp.py --authors-main PATH/main.py --data datasets/mnist \\
      --dataset mnist --network ar --epochs 10 --seed 1 --threads 2

Controls, each moving one of their choices to this project's, for finding which difference
accounts for a gap (each is ours, not theirs, and off by default): `--reshuffle` (a new seeded
order every epoch, all full batches, instead of one fixed order), `--linear-output` (the last
layer linear instead of softmax), `--bp-lr-scale 0.1` (undoes their backprop's tenfold learning
rate), `--full-test` (every test image, in file order, instead of a shuffled set less two
batches), `--bp-unit-biases` (backprop with one bias per unit, zero at first and trained with
the weights, instead of one per batch position never updated: their training loop is replaced
by `train_bp_with_biases` below for this control).

Prints one JSON object per epoch ({"epoch", "test_accuracy", "train_loss", "seconds"}) and a
summary object last. Needs torch (not torchvision, matplotlib or scipy: their imports are stubbed
when missing, since nothing here calls them).
"""

import argparse
import contextlib
import gzip
import importlib.util
import io
import json
import os
import struct
import sys
import time
import types

import torch


def stub_missing(names):
    """Empty modules for imports their main.py makes at the top but this script never uses."""
    for name in names:
        try:
            __import__(name)
        except ImportError:
            module = types.ModuleType(name)
            sys.modules[name] = module
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, module)


@contextlib.contextmanager
def silenced():
    """Their code's printing, from Python and from the `echo` subprocesses it starts, dropped."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def load_authors(path):
    stub_missing(["torchvision", "torchvision.transforms", "matplotlib", "matplotlib.pyplot",
                  "scipy"])
    spec = importlib.util.spec_from_file_location("authors_main", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.DEVICE = torch.device("cpu")
    return module


def read_idx(path):
    """An IDX file (optionally gzipped) as a uint8 tensor of its shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, kind, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or kind != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    body = data[4 + 4 * dims:]
    if len(body) != int(torch.tensor(shape).prod()):
        raise ValueError(f"{path}: {len(body)} values for shape {shape}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def find(folder, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise FileNotFoundError(f"{folder}: no {stem} or {stem}.gz")


def batches(folder, split, batch_size, shuffle):
    """Their get_dataset's batches: ToTensor's x / 255 as [1, 28, 28], then flattened to 784."""
    images = read_idx(find(folder, f"{split}-images-idx3-ubyte")).float().div(255).unsqueeze(1)
    labels = read_idx(find(folder, f"{split}-labels-idx1-ubyte")).long()
    dataset = torch.utils.data.TensorDataset(images, labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)
    return [(img.reshape(len(img), 784), label) for img, label in list(iter(loader))]


def train_bp_with_biases(authors, net, train, test):
    """One epoch of their `BackpropNet.train` (MSE summed over the batch, each weight moved by
    ten times its layer's learning rate times its gradient), with each layer's bias moved the
    same way: the `--bp-unit-biases` control. Returns what theirs returns: per-batch losses,
    accuracies, and test accuracies."""
    losses, accs = [], []
    for img, label in train:
        target = authors.onehot(label)
        out = net.forward(img)
        loss = authors.mse_loss(out, target)
        for layer in net.layers:
            layer.weights.grad, layer.bias.grad = None, None
        loss.backward()
        with torch.no_grad():
            for layer in net.layers:
                layer.weights -= layer.weight_lr * 10 * layer.weights.grad
                layer.bias -= layer.weight_lr * 10 * layer.bias.grad
        losses.append(loss.item())
        accs.append(authors.accuracy(out.detach(), target))
    with torch.no_grad():
        test_accs = [authors.accuracy(net.forward(x), authors.onehot(y)) for x, y in test]
    return losses, accs, test_accs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--authors-main", required=True, help="path to their main.py")
    p.add_argument("--data", required=True, help="folder with the four IDX files")
    p.add_argument("--dataset", choices=["mnist", "fashion"], required=True,
                   help="which of their get_dataset branches' shuffle flags to use")
    p.add_argument("--network", choices=["ar", "bp"], required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-batches", type=int, default=None,
                   help="train on only the first N batches of each epoch (a quick check)")
    p.add_argument("--gradient-angle", action="store_true",
                   help="their store_gradient_angle (their default; costs a second relaxation "
                        "and an autograd pass per batch, changes no weight)")
    p.add_argument("--reshuffle", action="store_true",
                   help="control: a new seeded batch order every epoch, all full batches")
    p.add_argument("--linear-output", action="store_true",
                   help="control: a linear last layer instead of their softmax")
    p.add_argument("--bp-lr-scale", type=float, default=1.0,
                   help="control: scales their backprop's learning rate (0.1 undoes its x10)")
    p.add_argument("--full-test", action="store_true",
                   help="control: every test image in file order, no batch dropped")
    p.add_argument("--bp-unit-biases", action="store_true",
                   help="control: backprop trains one bias per unit (theirs: one per batch "
                        "position, never updated)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    authors = load_authors(args.authors_main)
    torch.manual_seed(args.seed)
    train = batches(args.data, "train", args.batch_size, shuffle=args.dataset == "mnist")
    test = batches(args.data, "t10k", args.batch_size, shuffle=not args.full_test)
    if args.reshuffle:
        samples = torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])
        order = torch.Generator().manual_seed(args.seed)

    lr, eta, steps = 0.0005, 0.1, 100
    if args.network == "bp":
        lr *= args.bp_lr_scale
    last = authors.linear if args.linear_output else authors.softmax
    relu, relu_d = authors.relu, authors.relu_deriv
    cpu = authors.DEVICE
    layers = [
        authors.FCLayer(784, 300, args.batch_size, relu, relu_d, eta, lr, device=cpu),
        authors.FCLayer(300, 300, args.batch_size, relu, relu_d, eta, lr, device=cpu),
        authors.FCLayer(300, 100, args.batch_size, relu, relu_d, eta, lr, device=cpu),
        authors.FCLayer(100, 10, args.batch_size, last, authors.linear_deriv, eta, lr, device=cpu),
    ]
    with silenced():
        if args.network == "ar":
            net = authors.Net(layers, steps, use_backwards_weights=False,
                              update_backwards_weights=True, use_backward_nonlinearity=True,
                              store_gradient_angle=args.gradient_angle,
                              loss_fn=authors.mse_loss, loss_fn_deriv=authors.mse_deriv,
                              device=cpu)
        else:
            net = authors.BackpropNet(layers, loss_fn=authors.mse_loss, device=cpu)
            if args.bp_unit_biases:
                for layer in layers:
                    layer.bias = torch.nn.Parameter(torch.zeros(1, layer.output_size))
                net.train = lambda train, test, *rest: train_bp_with_biases(authors, net, train,
                                                                            test)
    net.save_model = lambda *a, **k: None

    if args.train_batches is not None:
        # Keep the two last batches: their training loop drops them.
        train = train[: args.train_batches] + train[-2:]
    accuracies, seconds = [], []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        if args.reshuffle:
            # Their loop drops its last two batches: pass every full batch and two to drop.
            perm = torch.randperm(len(samples[0]), generator=order)
            full = len(perm) // args.batch_size * args.batch_size
            cut = perm[:full].split(args.batch_size)
            train = [(samples[0][i], samples[1][i]) for i in cut] + [None, None]
        held_out = test if args.full_test else test[0:-2]
        if args.full_test and len(held_out[-1][0]) != args.batch_size:
            # Their biases have one row per batch position: a short last batch is evaluated
            # on the first rows, which is what the forward pass of a full batch does to them.
            x, y = held_out[-1]
            short = len(x)
            pad = torch.cat([x, torch.zeros(args.batch_size - short, x.shape[1])])
            held_out = held_out[:-1]
            tail = (pad, y)
        else:
            tail = None
        with silenced():
            losses, _, test_accs = net.train(train[0:-2], held_out, "", "", 1, steps)
            if tail is not None:
                out = net.forward(tail[0])[: len(tail[1])]
                correct = (out.argmax(1) == tail[1]).sum().item()
        if tail is not None:
            # Weighted: every test image counts once.
            n = args.batch_size * len(test_accs) + len(tail[1])
            test_accs = [(sum(test_accs) * args.batch_size + correct) / n]
        seconds.append(time.perf_counter() - start)
        accuracies.append(sum(test_accs) / len(test_accs))
        print(json.dumps({"epoch": epoch, "test_accuracy": accuracies[-1],
                          "train_loss": sum(losses) / len(losses), "seconds": seconds[-1]}),
              flush=True)
    print(json.dumps({"network": args.network, "dataset": args.dataset, "seed": args.seed,
                      "epochs": args.epochs, "threads": args.threads,
                      "final_test_accuracy": accuracies[-1],
                      "seconds_per_epoch": sum(seconds) / len(seconds),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
