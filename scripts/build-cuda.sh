#!/usr/bin/env bash
# Builds the candle backend with CUDA (the ar-candle `cuda` feature, cuDNN included) on a machine
# without a system CUDA toolkit: installs the toolkit and cuDNN 9 from NVIDIA's PyPI wheels into a local virtual
# environment, assembles the usual CUDA_HOME layout (bin/ include/ lib/ nvvm/) from them, and
# runs cargo with CUDA_HOME, PATH and the compute capability set. Needs python3 (with venv),
# gcc/g++ (nvcc's host compiler), network access to PyPI once, and some 4 GB of disk. No GPU is
# needed to build; running the result needs an NVIDIA GPU and driver (libcuda.so.1).
#
# Usage:
#   scripts/build-cuda.sh                      # cargo build --release -p ar-candle --features cuda
#   scripts/build-cuda.sh test --no-run        # any cargo subcommand and arguments instead
#   source <(scripts/build-cuda.sh --print-env) # the environment, to run cargo yourself
#
# Settings (environment variables):
#   AR_CUDA_VENV       the virtual environment (default .venv-cuda/ in the repository root)
#   CUDA_COMPUTE_CAP   the GPU's compute capability (default 90: H100; 80 for A100, 89 for L4)
#   CARGO_TARGET_DIR   the cargo target directory (default target/cuda, so that CUDA and CPU
#                      builds do not rebuild each other's candle)
#   CUDAFORGE_THREADS  parallel nvcc jobs for candle's kernels (default: all cores)
#
# The wheels carry CUDA 13.4, the newest release that cudarc 0.19 knows (PyPI's CUDA 12 nvcc
# wheels hold only ptxas, not nvcc); running needs an NVIDIA driver for CUDA 13 (>= 580). The
# driver library libcuda.so is not on PyPI: the script links against a stub generated from cudarc's list of
# driver functions (soname libcuda.so.1, like NVIDIA's own stub), and the real driver is found
# at run time. To run the built binaries, the CUDA libraries must be on the loader path:
# `--print-env` prints the LD_LIBRARY_PATH that does it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${AR_CUDA_VENV:-$root/.venv-cuda}
toolkit=$venv/cuda
series=13.0
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

log() { echo "build-cuda: $*" >&2; }
die() { echo "build-cuda: error: $*" >&2; exit 1; }

install_wheels() {
    command -v python3 >/dev/null || die "python3 is needed to install the CUDA wheels"
    command -v g++ >/dev/null || die "g++ is needed as nvcc's host compiler (apt-get install g++)"
    if [[ ! -x $venv/bin/pip ]]; then
        log "creating the virtual environment $venv"
        python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv?)"
    fi
    log "installing the CUDA $series toolkit wheels (about 1.5 GB to download the first time)"
    # nvcc pulls in nvvm (cicc, libdevice) and crt (device headers); thrust and cub come with cccl.
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "nvidia-cuda-nvcc==$series.*" \
        "nvidia-nvvm==$series.*" \
        "nvidia-cuda-crt==$series.*" \
        "nvidia-cuda-runtime==$series.*" \
        "nvidia-cuda-nvrtc==$series.*" \
        "nvidia-cuda-cccl>=13,<14" \
        "nvidia-cublas>=13,<14" \
        "nvidia-curand>=10.4,<11" \
        "nvidia-cudnn-cu13>=9,<10"
}

# The CUDA 13 wheels unpack into one tree, site-packages/nvidia/cu13/{bin,include,lib,nvvm}.
# Mirror it (as symbolic links) where the libraries also have the unversioned names the linker
# wants (the wheels ship only libfoo.so.N), plus the driver stub.
assemble_toolkit() {
    local site
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13
    [[ -x $site/bin/nvcc ]] || die "no nvcc in $site/bin after pip install"
    rm -rf "$toolkit"
    mkdir -p "$toolkit"
    cp -rs "$site/." "$toolkit/"
    # cuDNN comes in its own tree, site-packages/nvidia/cudnn/{include,lib}: mirror it alongside.
    cp -rs "$site/../cudnn/include/." "$toolkit/include/"
    cp -rs "$site/../cudnn/lib/." "$toolkit/lib/"
    mkdir -p "$toolkit/lib/stubs"
    local lib plain
    for lib in "$toolkit"/lib/*.so.*; do
        plain=${lib##*/}
        plain=${plain%%.so*}.so
        [[ -e $toolkit/lib/$plain ]] || ln -s "$(readlink -f "$lib")" "$toolkit/lib/$plain"
    done
    ln -sfn lib "$toolkit/lib64"
    make_driver_stub
    log "toolkit assembled in $toolkit ($("$toolkit/bin/nvcc" --version | tail -1))"
}

# A stub libcuda.so exporting every driver function that cudarc declares; each returns
# CUDA_ERROR_UNKNOWN. Only the linker sees it: at run time the soname libcuda.so.1 resolves to
# the installed driver.
make_driver_stub() {
    local cudarc
    cudarc=$(cd "$root" && cargo metadata --format-version 1 --features ar-candle/cuda 2>/dev/null |
        "$venv/bin/python" -c 'import json, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(p["manifest_path"] for p in pkgs if p["name"] == "cudarc").rsplit("/", 1)[0])') ||
        die "cannot find the cudarc sources (cargo metadata)"
    local src=$toolkit/lib/stubs/cuda_stub.c
    grep -ho 'pub unsafe fn cu[A-Za-z0-9_]*' "$cudarc/src/driver/sys/mod.rs" | awk '{print $4}' |
        sort -u | sed 's/.*/int &(void) { return 999; }/' >"$src"
    [[ -s $src ]] || die "found no driver functions in $cudarc/src/driver/sys/mod.rs"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$toolkit/lib/stubs/libcuda.so" "$src"
}

print_env() {
    echo "export CUDA_HOME='$toolkit' CUDA_PATH='$toolkit' CUDA_ROOT='$toolkit'"
    echo "export PATH='$toolkit/bin':\"\$PATH\""
    echo "export LD_LIBRARY_PATH='$toolkit/lib':\"\${LD_LIBRARY_PATH:-}\""
    echo "export CUDA_COMPUTE_CAP='$CUDA_COMPUTE_CAP'"
    echo "export CARGO_TARGET_DIR='${CARGO_TARGET_DIR:-$root/target/cuda}'"
}

if [[ ! -x $toolkit/bin/nvcc || ! -e $toolkit/lib/stubs/libcuda.so ]]; then
    install_wheels
    assemble_toolkit
fi

if [[ ${1:-} == --print-env ]]; then
    print_env
    exit 0
fi

eval "$(print_env)"
cd "$root"
args=("$@")
[[ ${#args[@]} -gt 0 ]] || args=(build --release -p ar-candle --features cuda)
log "cargo ${args[*]} (CUDA_HOME=$CUDA_HOME, compute capability $CUDA_COMPUTE_CAP)"
start=$SECONDS
cargo "${args[@]}"
log "done in $((SECONDS - start)) s"
