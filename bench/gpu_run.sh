#!/usr/bin/env bash
# Runs bench/gpu.py on a lent GPU machine whose image's python3 holds torch, PyG, numba and
# pyarrow, from what bench/gpu_kit.sh put in .gpu/ (carried there): installs the wheels beside the
# image's packages, puts slip-train's source on the path and leaves the log, the figures and the
# device's name and clocks in $OUT (bench/_work/gpu/ without it). Arguments go to bench/gpu.py.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/wheels/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/packages/slip-train/src:$PWD/bench" PYTHONUNBUFFERED=1
out=${OUT:-bench/_work/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv \
  >"$out/nvidia-smi.csv" 2>&1
python3 bench/gpu.py --shards .gpu/shards --out "$out/gpu.json" "$@" 2>&1 | tee "$out/gpu.log"
