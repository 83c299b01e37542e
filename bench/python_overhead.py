"""The Python binding's overhead per training step on the paper-1 MLP at batch 64, float32 and
float64 inputs. docs/python.md records the figures; run it on an idle machine:

    pip install ./crates/ar-py
    python bench/python_overhead.py [--rounds 41] [--block 50]

By default, in one process: blocks of `--block` calls of arrs.Trainer.step from a Python loop
alternate with blocks of as many steps taken by the engine in one call
(Trainer._repeat_step: the same Learner::step on the same batch, no Python call, conversion or
check per step), on the same trainer, in the order ABBA so that a slow drift of the machine
cancels, each round restarting from the same weights (a checkpoint restored, not timed); the
overhead is the median over rounds of the per-step ratio of the two. Last, the fixed cost of
a call alone: the median time of a call that takes no step, right after a step and back to
back with another such call.

--against-example instead alternates whole processes: the Python loop against the Rust example
crates/ar-engine/examples/step_time.rs (`cargo build --release -p ar-engine --example
step_time`), per-step medians; on a shared 2-core virtual machine those vary by 10-20% from
run to run, more than the overhead itself. --instructions also counts instructions with
valgrind's callgrind (one thread, repeatable to the instruction): per step, the difference
between a run of 2N and a run of N steps, for the binding and for the Rust example.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import arrs

REPO = Path(__file__).resolve().parents[1]


def inputs(dtype):
    """The batch crates/ar-engine/examples/step_time.rs trains on: the same 64-bit LCG in [0, 1),
    rounded to float32, so that the binding and the Rust example compute the same trajectory."""
    state, values = 1, np.empty(64 * 784)
    for i in range(values.size):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        values[i] = (state >> 11) / float(1 << 53)
    return values.astype(np.float32).astype(dtype).reshape(64, 784)


def python_median(algorithm, dtype, steps):
    model = arrs.Model("paper1-mlp", input_shape=784, classes=10)
    trainer = arrs.Trainer(model, algorithm)
    x = inputs(dtype)
    y = np.arange(64) % 10
    for _ in range(20):
        trainer.step(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss, _ = trainer.step(x, y)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), loss


def in_process(algorithm, dtype, rounds, block):
    """Per-step seconds of the Python loop and of the engine's own loop, alternating on one
    trainer: (median Python, median engine, ratios Python / engine of each round)."""
    trainer = arrs.Trainer(arrs.Model("paper1-mlp", input_shape=784, classes=10), algorithm)
    x, y = inputs(dtype), np.arange(64) % 10
    trainer._repeat_step(x, y, 20)
    # Every round starts again from this state: thousands of steps on one batch drive the
    # network to a regime three times slower per step (7 ms after 4000 steps against 2.4 after
    # 300), which is neither the Rust example's nor a training run's.
    scratch = tempfile.TemporaryDirectory()
    start = Path(scratch.name) / "start.safetensors"
    trainer.save(start)
    py, engine, ratios = [], [], []

    def python_block():
        start = time.perf_counter()
        for _ in range(block):
            trainer.step(x, y)
        return (time.perf_counter() - start) / block

    def engine_block():
        start = time.perf_counter()
        trainer._repeat_step(x, y, block)
        return (time.perf_counter() - start) / block

    for r in range(rounds):
        trainer.restore(start)
        if r % 2 == 0:
            p, e = python_block(), engine_block()
        else:
            e, p = engine_block(), python_block()
        py.append(p)
        engine.append(e)
        ratios.append(p / e)
    scratch.cleanup()
    return statistics.median(py), statistics.median(engine), ratios


def per_call(algorithm, dtype, calls=400, after_step=True):
    """Median seconds of a call that takes no step (Trainer._repeat_step with n = 0: the
    arguments' checks, the input's scan, the hand-off to the engine's thread pool and back),
    each timed right after a real step as in a training loop, or (after_step=False) right
    after another such call: the difference is what a step leaves behind (colder caches,
    pool workers gone to sleep)."""
    trainer = arrs.Trainer(arrs.Model("paper1-mlp", input_shape=784, classes=10), algorithm)
    x, y = inputs(dtype), np.arange(64) % 10
    times = []
    for _ in range(calls):
        trainer._repeat_step(x, y, 1 if after_step else 0)
        start = time.perf_counter()
        trainer._repeat_step(x, y, 0)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rust_median(algorithm, steps):
    exe = REPO / "target" / "release" / "examples" / "step_time"
    out = subprocess.run([str(exe), algorithm, str(steps)], check=True, capture_output=True, text=True)
    words = out.stdout.split()
    return float(words[words.index("median_ms") + 1]), float(words[words.index("last_loss") + 1])


def instructions(command):
    """Instructions executed by `command` under callgrind, on one rayon thread."""
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            check=True, capture_output=True, env=env,
        )
        for line in out.read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("no callgrind summary")


def per_step_instructions(command_for, steps):
    return (instructions(command_for(2 * steps)) - instructions(command_for(steps))) / steps


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, help="alternations: 41 blocks each way in one process, 3 processes each with --against-example")
    p.add_argument("--block", type=int, default=50, help="steps per block, in one process")
    p.add_argument("--steps", type=int, default=300, help="steps per process, with --against-example")
    p.add_argument("--against-example", action="store_true", help="time the Rust example in its own processes instead")
    p.add_argument("--instructions", action="store_true", help="also count instructions (valgrind)")
    p.add_argument("--run", nargs=3, metavar=("ALGORITHM", "DTYPE", "STEPS"), help=argparse.SUPPRESS)
    a = p.parse_args()
    a.rounds = a.rounds or (3 if a.against_example else 41)
    if a.run:
        python_median(a.run[0], np.dtype(a.run[1]).type, int(a.run[2]))
        return
    if a.instructions:
        exe = str(REPO / "target" / "release" / "examples" / "step_time")
        print("algorithm  rust_instr/step  python_f32_instr/step  python_f64_instr/step  overhead_f32  overhead_f64")
        for algorithm in ["ar", "bp"]:
            rust = per_step_instructions(lambda n: [exe, algorithm, str(n)], 20)
            py = [
                per_step_instructions(lambda n: [sys.executable, __file__, "--run", algorithm, dt, str(n)], 20)
                for dt in ["float32", "float64"]
            ]
            print(f"{algorithm:9}  {rust:15.0f}  {py[0]:21.0f}  {py[1]:21.0f}  {100 * (py[0] / rust - 1):+11.2f}%  {100 * (py[1] / rust - 1):+11.2f}%")
    if not a.against_example:
        print(f"in one process: {a.rounds} rounds of {a.block} steps each way, per-step medians")
        print("algorithm  input    engine_ms  python_ms  overhead (median)  overhead (quartiles)")
        for algorithm in ["ar", "bp"]:
            for dtype in [np.float32, np.float64]:
                p, e, ratios = in_process(algorithm, dtype, a.rounds, a.block)
                q = statistics.quantiles(ratios, n=4)
                name = np.dtype(dtype).name
                print(f"{algorithm:9}  {name:7}  {1e3 * e:9.4f}  {1e3 * p:9.4f}  "
                      f"{100 * (statistics.median(ratios) - 1):+16.2f}%  "
                      f"{100 * (q[0] - 1):+.2f}% .. {100 * (q[2] - 1):+.2f}%")
        for after_step, when in [(True, "right after a step"), (False, "back to back")]:
            print(f"a call that takes no step, {when} (median us): " + ", ".join(
                f"{alg} {np.dtype(dt).name} {1e6 * per_call(alg, dt, after_step=after_step):.1f}"
                for alg in ["ar", "bp"] for dt in [np.float32, np.float64]))
        return
    print("algorithm  rust_ms  python_f32_ms  python_f64_ms  overhead_f32  overhead_f64")
    for algorithm in ["ar", "bp"]:
        losses = set()
        rust, f32, f64 = [], [], []
        for _ in range(a.rounds):
            for times, run in [
                (rust, lambda: rust_median(algorithm, a.steps)),
                (f32, lambda: python_median(algorithm, np.float32, a.steps)),
                (f64, lambda: python_median(algorithm, np.float64, a.steps)),
            ]:
                median, loss = run()
                times.append(median)
                losses.add(loss)
        r, p32, p64 = statistics.median(rust), statistics.median(f32), statistics.median(f64)
        print(f"{algorithm:9}  {r:7.4f}  {p32:13.4f}  {p64:13.4f}  {100 * (p32 / r - 1):+11.2f}%  {100 * (p64 / r - 1):+11.2f}%")
        # Every run trains the same weights on the same batch: the same last loss, or the two
        # sides did not compute the same thing.
        if len(losses) != 1:
            sys.exit(f"{algorithm}: the runs end with different losses {sorted(losses)}")


if __name__ == "__main__":
    main()
