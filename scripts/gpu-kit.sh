#!/usr/bin/env bash
# Builds the GPU kit: what scripts/gpu-check.sh needs on a GPU machine that has no Rust
# toolchain and no network. With the CUDA wheels (scripts/build-cuda.sh), it builds the release
# xtask with `--features cuda`, the ar-candle test binary and its cnn_ops example (the CNN's
# operations timed one by one), strips and compresses them (xz), and puts them with MNIST (xz)
# and the PyTorch peer script into .gpu-kit/ (ignored by git), then prints its size, which must
# stay under 32 MiB: a GPU machine lent for minutes receives the kit with the sources (results/
# left behind) as at most 64 MiB in all.
# Works from a clean clone (it fetches MNIST if datasets/ lacks it) and can be rerun at will.
#
# Usage: scripts/gpu-kit.sh
# Settings: AR_GPU_KIT (the kit folder, default .gpu-kit/), and build-cuda.sh's (CUDA_COMPUTE_CAP,
# default 90 for the H100 and H200; CARGO_TARGET_DIR, default target/cuda).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kit=${AR_GPU_KIT:-$root/.gpu-kit}
limit_mib=32
log() { echo "gpu-kit: $*" >&2; }
die() { echo "gpu-kit: error: $*" >&2; exit 1; }

cd "$root"
build=scripts/build-cuda.sh
$build build --release -p xtask --features cuda
$build build --release -p ar-candle --features cuda --example cnn_ops
# The test binary's path, from cargo's JSON messages.
tests=$($build test --release -p ar-candle --features cuda --no-run --message-format=json |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "it":
        print(m["executable"])')
[[ -x $tests ]] || die "cargo did not report the ar-candle test binary"
eval "$($build --print-env)"
xtask=$CARGO_TARGET_DIR/release/xtask

mnist=$root/datasets/mnist
if ! ls "$mnist"/*-ubyte >/dev/null 2>&1; then
    log "fetching MNIST into $mnist"
    cargo xtask data fetch mnist
fi

rm -rf "$kit"
mkdir -p "$kit/datasets/mnist"
# Stripped, each binary is some 50 MB, 30 of them candle's compiled kernels; xz takes them to
# about a ninth, gzip only to a quarter (gpu-check.sh unpacks them).
ops=$CARGO_TARGET_DIR/release/examples/cnn_ops
for pair in "$xtask:xtask" "$tests:ar-candle-tests" "$ops:cnn_ops"; do
    strip -o "$kit/${pair#*:}" "${pair%%:*}"
    xz -9e -T2 "$kit/${pair#*:}"
done
for f in "$mnist"/*-ubyte; do
    xz -9e -T2 -c "$f" >"$kit/datasets/mnist/${f##*/}.xz"
done
cp bench/peer_pytorch.py scripts/gpu-check.sh "$kit/"
du -ah "$kit" | sort -h | tail -n 12
size=$(du -sm "$kit" | cut -f1)
log "kit in $kit: $size MiB (limit $limit_mib MiB)"
((size <= limit_mib)) || die "the kit is over $limit_mib MiB"
