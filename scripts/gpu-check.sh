#!/usr/bin/env bash
# The GPU check: proves the candle-cuda backend on an NVIDIA GPU in one run, from the kit that
# scripts/gpu-kit.sh builds (no Rust toolchain or network needed there). Steps, each logged:
#   1. nvidia-smi; PyTorch's CUDA and cuDNN versions; the CUDA and cuDNN libraries found in the
#      Python environment's nvidia/ folders (the PyTorch wheels) and put on the loader path; ldd
#      of the binaries;
#   2. the conformance suite with AR_REQUIRE_CUDA=1 (ndarray f64 against candle-cuda f32, f64);
#   3. verify-gradients --backend candle-cuda (f64 and f32);
#   4. bench --backend candle-cuda (MLP, CNN and residual CNN, at batch 64 and 1024) beside the
#      PyTorch peer on the same GPU, with the medians over the runs and the ratios the targets
#      are stated in; the CNN's operations timed one by one (cnn_ops); ndarray on the machine's
#      CPU for scale;
#   5. train --backend candle-cuda --model cnn-paper --dataset mnist --epochs 1.
# Every step has a time limit, a failing step does not stop the others, and the exit status is
# that of the first failure. With one bench run at each batch size the check takes about 3.5
# minutes on an H200, with `AR_BENCH_RUNS=3` about 6.5.
#
# Usage:
#   scripts/gpu-check.sh              # on the GPU machine, from the repository root, kit built
#   scripts/gpu-check.sh --dry-run    # the same steps on the CPU (--backend candle), small sizes
#
# Settings (environment variables):
#   OUT             where the summary and the logs (one .tar.gz) go (default gpu-check-out/)
#   AR_GPU_KIT      the kit (default .gpu-kit/ in the repository root)
#   AR_XTASK        the xtask binary (default: the kit's; a dry run may name a CPU build)
#   AR_CANDLE_TESTS the ar-candle test binary (default: the kit's)
#   AR_CNN_OPS      ar-candle's cnn_ops example (default: the kit's; the step is skipped without)
#   PYTHON          the interpreter with torch, for the peer (default python3)
#   AR_BENCH_RUNS   how many times to run each GPU bench (default 1; the figures vary by run)
#   AR_BENCH_SIZES  the GPU bench's batch sizes (default "64 1024")
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dry_run=false
case ${1:-} in
    --dry-run) dry_run=true ;;
    "") ;;
    *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
kit=${AR_GPU_KIT:-$root/.gpu-kit}
xtask=${AR_XTASK:-$kit/xtask}
tests=${AR_CANDLE_TESTS:-$kit/ar-candle-tests}
ops=${AR_CNN_OPS:-$kit/cnn_ops}
python=${PYTHON:-python3}
bench_runs=${AR_BENCH_RUNS:-1}
out=${OUT:-$PWD/gpu-check-out}
logs=$out/logs
mkdir -p "$logs"
summary=$out/summary.txt
: >"$summary"
status=0

if $dry_run; then
    backend=candle
    # Small sizes: the point is that every step runs, not the figures.
    bench_sizes=("--batches 3 --cnn-batches 1 --res-cnn-batches 1 --steps 5")
    batch_sizes=(8)
    train_args=(--dataset digits --model cnn-digits --epochs 1)
    peer_args=()
    "$python" -c 'import torch' 2>/dev/null && peer_args=(--peer --peer-device cpu --peer-threads 2)
else
    backend=candle-cuda
    export AR_REQUIRE_CUDA=1
    bench_sizes=("--batches 100 --cnn-batches 20 --res-cnn-batches 5")
    read -ra batch_sizes <<<"${AR_BENCH_SIZES:-64 1024}"
    train_args=(--dataset mnist --model cnn-paper --epochs 1)
    peer_args=(--peer --peer-device cuda)
fi


# Runs "$@" under a time limit, logging to $out/NAME.log; records the outcome in the summary.
step() {
    local name=$1 limit=$2
    shift 2
    echo "==> $name: $*" >>"$logs/$name.log"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >>"$logs/$name.log" 2>&1
    local rc=$?
    local line="$name: exit $rc in $((SECONDS - start)) s (limit $limit s)"
    [[ $rc -eq 124 || $rc -eq 137 ]] && line="$line, TIMED OUT"
    echo "$line" | tee -a "$summary"
    tail -n 25 "$logs/$name.log"
    [[ $rc -ne 0 && $status -eq 0 ]] && status=$rc
    return 0
}

# The kit carries its binaries and data compressed (xz): unpack them outside it, with Python's
# lzma where the machine has no xz.
unxz() {
    if command -v xz >/dev/null; then
        xz -dc "$1"
    else
        "$python" -c 'import lzma, sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$1"
    fi
}
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
if [[ -d $kit/datasets ]]; then
    for packed in "$kit"/datasets/*/*.xz; do
        set_dir=$unpacked/datasets/$(basename "$(dirname "$packed")")
        mkdir -p "$set_dir"
        unxz "$packed" >"$set_dir/$(basename "$packed" .xz)"
    done
    export AR_DATA_DIR=$unpacked/datasets
fi

for name in xtask tests ops; do
    binary=${!name}
    if [[ ! -e $binary && -e $binary.xz ]]; then
        unxz "$binary.xz" >"$unpacked/${binary##*/}" && chmod +x "$unpacked/${binary##*/}"
        printf -v "$name" %s "$unpacked/${binary##*/}"
    fi
done
# 1. The device and the CUDA libraries.
for binary in "$xtask" "$tests"; do
    [[ -x $binary ]] || { echo "gpu-check: $binary is missing (run scripts/gpu-kit.sh)" >&2; exit 1; }
done
if ! $dry_run; then
    step nvidia-smi 15 nvidia-smi
    step torch 30 "$python" -c 'import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())'
    site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    libdirs=$(find "$site/nvidia" \( -name 'libcublas.so*' -o -name 'libcurand.so*' \
        -o -name 'libnvrtc.so*' -o -name 'libcudart.so*' -o -name 'libcudnn.so*' \) \
        -printf '%h\n' 2>/dev/null | sort -u |
        paste -sd:)
    for driver in /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu; do
        [[ -e $driver/libcuda.so.1 ]] && libdirs=$libdirs:$driver
    done
    export LD_LIBRARY_PATH=$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" | tee -a "$summary"
    step ldd 10 bash -c "ldd '$xtask' | grep -E 'cuda|cublas|curand|nvrtc|cudnn|not found'"
fi

# 2. Conformance: ndarray f64 against candle (CUDA f32 and f64, and candle's CPU).
step conformance 90 "$tests" conformance --test-threads 4

# 3. The gradient suite on the backend, in f64 and f32.
step verify-gradients 130 "$xtask" verify-gradients --backend "$backend" \
    --json "$logs/verify-gradients.json"

# 4. Speed beside PyTorch on the same device, and ndarray on the CPU cores for scale.
for run in $(seq "$bench_runs"); do
    for batch in "${batch_sizes[@]}"; do
        name=bench-$backend-$batch-run$run
        # shellcheck disable=SC2086 # the sizes are words
        step "$name" 60 "$xtask" bench --backend "$backend" --batch-size "$batch" \
            ${bench_sizes[0]} "${peer_args[@]}" --peer-script "$root/bench/peer_pytorch.py" \
            --python "$python" --json "$logs/$name.json"
    done
done
# The medians over the runs and the ratios the targets are stated in, into the summary.
for batch in "${batch_sizes[@]}"; do
    runs=("$logs/bench-$backend-$batch-run"*.json)
    [[ -e ${runs[0]} ]] || continue
    { echo "bench at batch $batch,"; "$python" "$root/bench/bench_medians.py" "${runs[@]}"; } 2>&1 |
        tee -a "$summary"
done
# Where a CNN step's time goes: each operation timed alone (skipped when the binary is absent).
if [[ -x $ops ]]; then
    for batch in "${batch_sizes[@]}"; do
        step "cnn-ops-$batch" 30 "$ops" "$([[ $backend == candle-cuda ]] && echo cuda || echo cpu)" \
            "$batch" 20
    done
fi
# shellcheck disable=SC2086
step bench-ndarray 35 "$xtask" bench --backend ndarray ${bench_sizes[0]} \
    --json "$logs/bench-ndarray.json"

# 5. One epoch of training on the device.
scratch=$(mktemp -d)
step train 100 "$xtask" train --backend "$backend" "${train_args[@]}" --out "$scratch/run"
cp "$scratch/run/metrics.csv" "$logs/train-metrics.csv" 2>/dev/null
rm -rf "$scratch"

# One archive of the logs (a GPU machine returns only a few files).
tar -C "$out" -czf "$out/gpu-check-logs.tar.gz" logs && rm -rf "$logs"
echo "==> summary (logs in $out/gpu-check-logs.tar.gz)"
cat "$summary"
exit $status
