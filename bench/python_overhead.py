"""The Python binding's overhead per training step: the median time of arrs.Trainer.step on the
paper-1 MLP at batch 64 (float32 and float64 inputs), beside the engine's own step through the
Rust example crates/ar-engine/examples/step_time.rs, alternating the two. docs/python.md
records the figures; run it on an idle machine:

    cargo build --release -p ar-engine --example step_time
    python bench/python_overhead.py [--rounds 3] [--steps 300]

Wall-clock medians on a shared 2-core machine vary by 10-20% from run to run, more than the
overhead itself, so --instructions also counts instructions with valgrind's callgrind (one
thread, repeatable to the instruction): per step, the difference between a run of 2N and a run
of N steps, for the binding and for the Rust example.
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
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--instructions", action="store_true", help="also count instructions (valgrind)")
    p.add_argument("--run", nargs=3, metavar=("ALGORITHM", "DTYPE", "STEPS"), help=argparse.SUPPRESS)
    a = p.parse_args()
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
