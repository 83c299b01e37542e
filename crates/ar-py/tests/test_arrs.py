"""The Python package against independent references: a numpy backprop written here, the
command line's own runs and checkpoints, and the errors a user meets. Run by .ci/run after
`pip install ./crates/ar-py`; the CLI comparisons need the xtask binary (AR_XTASK, default
target/release/xtask of this repository)."""

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import arrs

REPO = Path(__file__).resolve().parents[3]


def xtask():
    path = Path(os.environ.get("AR_XTASK", REPO / "target" / "release" / "xtask"))
    if not path.exists():
        pytest.skip(f"the xtask binary is not built ({path}); set AR_XTASK")
    return str(path)


def read_safetensors(path):
    """A safetensors file's tensors as numpy arrays (the format: u64 header size, JSON header,
    raw little-endian data), read without the safetensors package."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": "<f4", "F64": "<f8"}[t["dtype"]]
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtype).reshape(t["shape"])
    return out


# ---------------------------------------------------------------- exactness against numpy


def numpy_mlp_backprop(params, x, y, classes):
    """dL/dW of the batch-mean 1/2 ||h - t||^2 for a tanh MLP with a linear output."""
    n = len(x)
    t = np.eye(classes)[y]
    hs, h = [x], x
    layers = sorted({k.rsplit(".", 1)[0] for k in params}, key=lambda s: int(s.split(".")[1]))
    for i, name in enumerate(layers):
        a = h @ params[name + ".weight"].T + params[name + ".bias"]
        h = a if i == len(layers) - 1 else np.tanh(a)
        hs.append(h)
    grads, delta = {}, h - t
    for i in reversed(range(len(layers))):
        name = layers[i]
        if i < len(layers) - 1:
            delta = delta * (1 - hs[i + 1] ** 2)
        grads[name + ".weight"] = delta.T @ hs[i] / n
        grads[name + ".bias"] = delta.sum(0) / n
        delta = delta @ params[name + ".weight"]
    return grads


def conv2d(x, k, b):
    """Valid cross-correlation, stride 1: x (n, c, h, w), k (o, c, kh, kw)."""
    n, c, h, w = x.shape
    o, _, kh, kw = k.shape
    out = np.zeros((n, o, h - kh + 1, w - kw + 1))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + h - kh + 1, j : j + w - kw + 1]
            out += np.einsum("nchw,oc->nohw", patch, k[:, :, i, j])
    return out + b[None, :, None, None]


def numpy_cnn_backprop(params, x, y, classes):
    """dL/dW for conv(tanh) -> flatten -> linear, batch-mean 1/2 ||h - t||^2."""
    k, kb = params["layers.0.weight"], params["layers.0.bias"]
    w, wb = params["layers.2.weight"], params["layers.2.bias"]
    n = len(x)
    h1 = np.tanh(conv2d(x, k, kb))
    flat = h1.reshape(n, -1)
    out = flat @ w.T + wb
    delta = out - np.eye(classes)[y]
    grads = {"layers.2.weight": delta.T @ flat / n, "layers.2.bias": delta.sum(0) / n}
    d1 = (delta @ w).reshape(h1.shape) * (1 - h1**2)
    kh, kw = k.shape[2:]
    gk = np.zeros_like(k)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + d1.shape[2], j : j + d1.shape[3]]
            gk[:, :, i, j] = np.einsum("nohw,nchw->oc", d1, patch) / n
    grads["layers.0.weight"] = gk
    grads["layers.0.bias"] = d1.sum((0, 2, 3)) / n
    return grads


@pytest.mark.parametrize(
    "spec, shape",
    [("7-6-5-3", (7,)), ("conv2x3:tanh,flatten,fc3", (1, 5, 5))],
    ids=["mlp", "cnn"],
)
def test_exact_ar_gradients_equal_a_numpy_backprop(spec, shape):
    rng = np.random.default_rng(1)
    model = arrs.Model(spec, input_shape=shape, classes=3, precision="f64", seed=3)
    x = rng.standard_normal((6, *shape))
    y = np.array([0, 1, 2, 2, 1, 0])
    params = model.state_dict()
    ref = (numpy_mlp_backprop if spec[0].isdigit() else numpy_cnn_backprop)(
        params, x.reshape(6, -1) if spec[0].isdigit() else x, y, 3
    )
    # At eta = 1 the relaxation reaches backprop's deltas exactly (docs/algorithm.md).
    for algorithm, keys in [("ar", dict(eta=1.0, steps=8)), ("ar", dict(eta=1.0, steps=8, solver="euler")), ("bp", {})]:
        got = arrs.Trainer(model, algorithm, **keys).gradients(x, y)
        assert set(got) == set(ref)
        for name in ref:
            assert got[name].dtype == np.float64
            err = np.abs(got[name] - ref[name]).max() / max(np.abs(ref[name]).max(), 1e-300)
            assert err < 1e-10, (algorithm, keys, name, err)


def test_probes_measure_ar_against_the_exact_gradient():
    model = arrs.Model("digits-mlp", input_shape=(1, 8, 8), precision="f64")
    x = np.random.default_rng(0).random((16, 64))
    y = np.arange(16) % 10
    exact = arrs.Trainer(model, "ar", eta=1.0, steps=4).probes(x, y)
    assert [p["layer"] for p in exact] == [1, 2, 3]
    assert all(p["relative_error"] < 1e-12 and p["angle_deg"] < 1e-5 for p in exact)
    fa = arrs.Trainer(model, "fa").probes(x, y)
    # The first layer sends no signal down, so only the layers above have backward weights.
    assert fa[0]["angle_deg"] > 1.0 and fa[0]["feedback_angle_deg"] is None
    assert fa[-1]["feedback_angle_deg"] > 1.0


def test_repeat_step_trains_as_that_many_calls_of_step():
    """The reference of bench/python_overhead.py computes what the Python loop computes."""
    x = np.random.default_rng(1).random((16, 64), dtype=np.float32)
    y = np.arange(16) % 10
    looped, repeated = (arrs.Trainer(arrs.Model("digits-mlp", input_shape=(1, 8, 8)), "ar") for _ in range(2))
    last = [looped.step(x, y) for _ in range(3)][-1]
    assert repeated._repeat_step(x, y, 3) == last
    assert repeated.steps == looped.steps == 3
    a, b = looped.model.state_dict(), repeated.model.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_python_threads_train_as_the_main_thread_does():
    """Each Python thread computes on a pool of its own (the binding's on_callers_pool): steps
    taken from other threads, one at a time and two at once, give the main thread's bits."""
    import threading

    x = np.random.default_rng(3).random((16, 64), dtype=np.float32)
    y = np.arange(16) % 10

    def train(out, key):
        trainer = arrs.Trainer(arrs.Model("digits-mlp", input_shape=(1, 8, 8)), "ar")
        losses = [trainer.step(x, y) for _ in range(3)]
        out[key] = (losses, trainer.model.state_dict())

    results = {}
    train(results, "main")
    for keys in (["one"], ["two", "three"]):
        threads = [threading.Thread(target=train, args=(results, k)) for k in keys]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    losses, state = results["main"]
    for key in ("one", "two", "three"):
        assert results[key][0] == losses, key
        assert all(np.array_equal(results[key][1][k], state[k]) for k in state), key


@pytest.mark.parametrize("precision", ["f32", "f64"])
def test_float32_input_trains_as_its_float64_widening(precision):
    """float32 input goes to the engine as it is (no f64 copy): the same steps, bit for bit, as
    the same values in float64, C-ordered or not."""
    x = np.random.default_rng(2).random((16, 64), dtype=np.float32)
    y = np.arange(16) % 10
    inputs = [x, x.astype(np.float64), np.asfortranarray(x), np.asfortranarray(x.astype(np.float64))]
    states = []
    for xi in inputs:
        trainer = arrs.Trainer(arrs.Model("digits-mlp", input_shape=(1, 8, 8), precision=precision), "ar")
        losses = [trainer.step(xi, y) for _ in range(2)]
        states.append((losses, trainer.model.state_dict()))
    for losses, state in states[1:]:
        assert losses == states[0][0]
        assert all(np.array_equal(state[k], states[0][1][k]) for k in state)


# ------------------------------------------------------- the same results as the command line


def test_train_gives_the_command_lines_metrics_bit_for_bit(tmp_path):
    cli = tmp_path / "cli"
    subprocess.run(
        [xtask(), "train", "--epochs", "3", "--algorithms", "ar,bp", "--quiet", "--out", str(cli)],
        check=True,
        capture_output=True,
    )
    seen = []
    rows = arrs.train(
        {"epochs": 3, "algorithms": ["ar", "bp"]}, out=tmp_path / "py", callback=seen.append
    )
    assert seen == rows and len(rows) == 6
    cli_rows = [json.loads(line) for line in (cli / "metrics.jsonl").read_text().splitlines()]
    keys = ["algorithm", "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"]
    assert [[r[k] for k in keys] for r in rows] == [[r[k] for k in keys] for r in cli_rows]
    assert (tmp_path / "py" / "checkpoints" / "ar.safetensors").exists()


def test_in_memory_arrays_train_and_an_unknown_key_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 10)) * 3
    y = rng.integers(0, 3, 300)
    x = (centers[y] + rng.standard_normal((300, 10))).astype(np.float32)
    config = {"model": "10-16-3", "epochs": 5, "algorithms": "ar", "lr": 0.05, "batch_size": 20}
    rows = arrs.train(config, data=(x[:240], y[:240], x[240:], y[240:]), out=tmp_path / "run")
    assert rows[-1]["test_accuracy"] > 0.9, rows[-1]
    assert "dataset = \"arrays\"" in (tmp_path / "run" / "config.toml").read_text()
    with pytest.raises(ValueError, match="learning_rate"):
        arrs.train({"learning_rate": 1}, out=tmp_path / "bad")
    # Classes are counted from the labels; a label beyond the model's outputs is caught so.
    with pytest.raises(ValueError, match="8 classes"):
        arrs.train(config, data=(x, np.full(300, 7), x, y), out=tmp_path / "bad2")
    with pytest.raises(ValueError, match="200 labels need 2000 values"):
        arrs.train(config, data=(x, y[:200], x, y), out=tmp_path / "bad3")
    with pytest.raises(ValueError, match="train samples have shape"):
        arrs.train(config, data=(x[:, :5].copy(), y, x, y), out=tmp_path / "bad4")


def test_state_dict_round_trip_and_checkpoints_both_ways(tmp_path):
    model = arrs.Model("digits-mlp", input_shape=(1, 8, 8))
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    state = model.state_dict()
    assert state["layers.0.weight"].shape == (64, 64) and state["layers.0.weight"].dtype == np.float32
    other = arrs.Model("digits-mlp", input_shape=(1, 8, 8), seed=9)
    assert not np.array_equal(other.predict(x), model.predict(x))
    other.load_state_dict(state)
    assert np.array_equal(other.predict(x), model.predict(x))

    # The command line's checkpoint in Python: predictions equal its own dump.
    run = tmp_path / "cli"
    exe = xtask()
    subprocess.run([exe, "train", "--epochs", "2", "--quiet", "--out", str(run)], check=True, capture_output=True)
    ckpt = run / "checkpoints" / "ar.safetensors"
    subprocess.run([exe, "eval", str(ckpt), "--dump", str(tmp_path / "dump.safetensors")], check=True, capture_output=True)
    dump = read_safetensors(tmp_path / "dump.safetensors")
    loaded, meta = arrs.load(ckpt)
    assert meta["algorithm"] == "ar" and "config" in meta
    assert np.allclose(loaded.predict(dump["inputs"]), dump["outputs"], atol=1e-6)

    # And the reverse: a checkpoint Python writes, evaluated by the command line.
    trainer = arrs.Trainer(loaded, "ar")
    trainer.step(dump["inputs"].astype(np.float32), dump["predictions"].astype(np.int64))
    mine = tmp_path / "py.safetensors"
    trainer.save(mine)
    subprocess.run([exe, "eval", str(mine), "--dump", str(tmp_path / "dump2.safetensors")], check=True, capture_output=True)
    dump2 = read_safetensors(tmp_path / "dump2.safetensors")
    assert np.allclose(loaded.predict(dump2["inputs"]), dump2["outputs"], atol=1e-6)
    fresh = arrs.Trainer(arrs.Model("digits-mlp", input_shape=(1, 8, 8), seed=5), "ar")
    fresh.restore(mine)
    assert np.array_equal(fresh.model.predict(x), loaded.predict(x))


# ------------------------------------------------------------------------------- bad input


def test_bad_input_raises_a_clear_exception_and_the_process_lives_on():
    model = arrs.Model("digits-mlp", input_shape=(1, 8, 8))
    trainer = arrs.Trainer(model, "ar")
    x = np.random.default_rng(0).random((4, 64), dtype=np.float32)
    y = np.array([0, 1, 2, 3])
    with_inf = x.copy()
    with_inf[2, 5] = np.inf
    # Finite in float64, infinite once rounded to the f32 model's precision: refused too,
    # from a C-ordered or a strided array, as input, as a parameter and as training data.
    huge = x.astype(np.float64)
    huge[3, 7] = 1e300
    huge_strided = np.repeat(huge, 2, axis=1)[:, ::2]
    weights = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    weights["layers.1.bias"][4] = -1e39
    cases = [
        (TypeError, "float32 or float64", lambda: trainer.step(x.astype(np.int32), y)),
        (TypeError, "integer class labels", lambda: trainer.step(x, y.astype(np.float32))),
        (ValueError, "samples of 64 values", lambda: trainer.step(x[:, :60], y)),
        (ValueError, "4 samples but y 3", lambda: trainer.step(x, y[:3])),
        (ValueError, "sample 2 holds a non-finite value \\(inf\\)", lambda: trainer.step(with_inf, y)),
        (ValueError, "sample 0 holds a non-finite value \\(NaN\\)", lambda: model.predict(np.full((1, 64), np.nan))),
        (ValueError, "sample 3 holds 1e300, beyond the range of float32", lambda: trainer.step(huge, y)),
        (ValueError, "sample 3 holds 1e300, beyond the range of float32", lambda: model.predict(huge_strided)),
        (ValueError, "layers.1.bias: value 4 \\(in C order\\) holds -1e39", lambda: model.load_state_dict(weights)),
        (ValueError, "train x: sample 3 holds 1e300", lambda: arrs.train({"model": "64-10"}, data=(huge, y, x, y), out="/nonexistent/run")),
        (ValueError, "label 10", lambda: trainer.step(x, [0, 1, 2, 10])),
        (ValueError, "negative", lambda: trainer.step(x, [0, -1, 2, 3])),
        (ValueError, "unknown key 'lrate'", lambda: arrs.Trainer(model, lrate=0.1)),
        (ValueError, "eta", lambda: arrs.Trainer(model, eta="fast")),
        (ValueError, "seed: is a key of the Model", lambda: arrs.Trainer(model, seed=2)),
        (ValueError, "algorithm", lambda: arrs.Trainer(model, "sgd")),
        (ValueError, "invalid model spec", lambda: arrs.Model("conv3x3,,fc10")),
        (ValueError, "backend", lambda: arrs.Model(backend="tpu")),
        (ValueError, "missing parameters", lambda: model.load_state_dict({})),
        (ValueError, "layers.0.weight", lambda: model.load_state_dict({"layers.0.weight": np.zeros((3, 3))}, strict=False)),
        (OSError, "nonexistent", lambda: arrs.load("/nonexistent/ckpt.safetensors")),
    ]
    for kind, message, call in cases:
        with pytest.raises(kind, match=message):
            call()
    # Non-contiguous arrays are accepted (copied) and give the same numbers.
    wide = np.random.default_rng(1).random((4, 128), dtype=np.float32)
    strided = wide[:, ::2]
    assert not strided.flags["C_CONTIGUOUS"]
    assert np.array_equal(model.predict(strided), model.predict(np.ascontiguousarray(strided)))
    assert np.array_equal(model.predict(np.asfortranarray(x)), model.predict(x))
    x64 = x.astype(np.float64)
    assert np.array_equal(model.predict(np.asfortranarray(x64)), model.predict(x64))
    assert np.isfinite(trainer.step(x, y)[0])
    # In an f64 model the same value is finite, and taken.
    assert np.isfinite(arrs.Model("digits-mlp", input_shape=(1, 8, 8), precision="f64").predict(huge)).all()


# -------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_raises_keyboard_interrupt_and_leaves_a_run_that_resumes(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, arrs
        def tell(m):
            print("epoch", m["epoch"], flush=True)
        try:
            arrs.train({{"epochs": 400, "algorithms": "ar"}}, out={str(tmp_path / "run")!r}, callback=tell)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("epoch")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "interrupted" in out, (proc.returncode, out)
    done = len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) - 1
    assert 1 <= done < 400
    assert (tmp_path / "run" / "checkpoints" / "ar.safetensors").exists()
    # Resumed to 6 epochs... or further if it got that far: the run ends as an uninterrupted one.
    epochs = max(done + 2, 6)
    resumed = arrs.train({"epochs": epochs}, out=tmp_path / "run", resume=True)
    straight = arrs.train({"epochs": epochs, "algorithms": "ar"}, out=tmp_path / "straight")
    keys = ["epoch", "train_loss", "test_loss", "test_accuracy"]
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in straight]
