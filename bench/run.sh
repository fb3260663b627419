#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
#
# DermLens vs ONNX Runtime vs PyTorch on the same network and weights.
#
#   bench/run.sh [MODEL | --imported] [-- bench.py options]
#
# One command, from anywhere in the tree. It
#   1. builds DermLens (release) in build-release-bench/ (or $DL_BENCH_BUILD)
#      with the timing driver;
#   2. installs the peers if missing: onnxruntime-node into bench/node_modules
#      (npm install --ignore-scripts: the CPU binaries ship inside the npm
#      package) and Debian's python3-torch (apt-get, needs root);
#   3. exports MODEL (default weights/mobilenet_v2_imagenet.safetensors) with
#      `dermlens export --onnx` for ONNX Runtime; bench/bench.py builds the
#      same graph in PyTorch from the same safetensors file;
#   4. checks the three agree within 1e-3 on tests/data/imagenet/dog_224_rgb_hwc.u8;
#   5. times batch 1 and 8 x 1 and 2 threads, alternating the contenders in
#      every round, medians; prints ms/image, GFLOP/s, peer/DermLens ratios,
#      Grad-CAM cost, plug-in engine time on a 4000x3000 layer, load time,
#      peak RSS, and one whole-network training step (batch 32, AdamW,
#      label-smoothed cross-entropy) per thread count, DermLens against
#      PyTorch alternating: `training step (batch 32, N threads): ...`.
#      Raw numbers go to bench/out/results.json;
#   6. without MODEL, also the imported rows: torchvision resnet50 and
#      efficientnet_b0 (seeded random weights) exported to ONNX by PyTorch
#      (bench/out/ARCH.onnx), converted by `dermlens import`, and timed against
#      ONNX Runtime running that same .onnx file, PyTorch running the
#      torchvision module itself (agreement bound: 1e-4 of the logit range);
#      raw numbers in bench/out/results-ARCH.json. `--imported` runs only
#      these rows (needs Debian's python3-torchvision too).
# Options after `--` go to bench/bench.py, e.g. `-- --rounds 9 --reps 20`,
# `-- --check-only`, `-- --train-only` (the agreement check, then only the
# training rows), `-- --quick` (batch 1 only, few runs: a smoke test) or
# `-- --cpu` (process CPU time instead of wall time) or `-- --baseline-driver
# OTHER/bench/bench_dermlens` (another build, e.g. main's, alternated in the
# same rounds: before/after). The machine should be
# otherwise idle: wall times taken under load are only indicative (--cpu is
# the fairer comparison on a shared machine, still inflated by cache and
# memory contention). bench/bench_kernels MODEL [THREADS] times every
# convolution on its own, DermLens' kernels against OpenBLAS.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
model="$root/weights/mobilenet_v2_imagenet.safetensors"
shipped=1 imported=1
if [ $# -gt 0 ] && [ "$1" = "--imported" ]; then shipped=0; shift
elif [ $# -gt 0 ] && [ "$1" != "--" ]; then model=$1; imported=0; shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
build="${DL_BENCH_BUILD:-$root/build-release-bench}" # a release build dir
out="$here/out"
mkdir -p "$out"

echo "== build (release)"
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" --buildtype=release -Dplugin=disabled -Dgimp_tests=disabled >/dev/null
fi
ninja -C "$build" cli/dermlens bench/bench_dermlens bench/bench_kernels >/dev/null

echo "== peers"
if ! node "$here/ort.js" check >/dev/null 2>&1; then
    command -v npm >/dev/null || { echo "run.sh: node/npm missing (apt-get install nodejs npm)" >&2; exit 1; }
    (cd "$here" && npm install --ignore-scripts --no-audit --no-fund >/dev/null) # package.json + lock
fi
node "$here/ort.js" check
PY=/usr/bin/python3
if ! "$PY" -c 'import torch, numpy, torchvision' 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y python3-torch python3-torchvision python3-numpy >/dev/null
    elif [ "$imported" = 1 ] || ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
        echo "run.sh: Debian PyTorch missing: sudo apt-get install python3-torch python3-torchvision" >&2
        exit 1
    fi
fi

bench() { # MODEL ONNX JSON [bench.py options]
    m=$1 o=$2 j=$3
    shift 3
    "$PY" "$here/bench.py" --model "$m" --onnx "$o" \
        --driver "$build/bench/bench_dermlens" --ort "$here/ort.js" \
        --image "$root/tests/data/imagenet/dog_224_rgb_hwc.u8" --json-out "$j" "$@"
}

if [ "$shipped" = 1 ]; then
    echo "== export"
    "$build/cli/dermlens" export --onnx "$model" -o "$out/model.onnx"
    echo "== check and time"
    bench "$model" "$out/model.onnx" "$out/results.json" "$@"
fi

if [ "$imported" = 1 ]; then
    for arch in resnet50 efficientnet_b0; do
        echo "== imported $arch: PyTorch -> ONNX -> dermlens import"
        "$PY" "$here/bench.py" --torchvision "$arch" --export-onnx --onnx "$out/$arch.onnx"
        rm -f "$out/$arch.safetensors"
        "$build/cli/dermlens" import "$out/$arch.onnx" -o "$out/$arch.safetensors" \
            --name "$arch (torchvision, random weights, imported)"
        echo "== check and time (imported $arch; ONNX Runtime on $arch.onnx)"
        bench "$out/$arch.safetensors" "$out/$arch.onnx" "$out/results-$arch.json" \
            --torchvision "$arch" --tol-rel 1e-4 "$@"
    done
fi
