#!/usr/bin/env bash
# Checks bench/gpu.py on the CPU first (--cpu-check, every section at toy sizes, about 3 minutes: a
# bug found here costs no GPU time), then gathers what it needs on a lent GPU machine that reaches
# no network into .gpu/ (ignored by git): the wheels of the packages that machine's image lacks
# (open_clip and what it needs beyond the image, at uv.lock's versions) and the demo shards.
# Then, with the device tool:
#     run(command="bash bench/gpu_run.sh", carry=[".gpu"], timeout_s=590)
# (bench/gpu_run.sh passes its arguments on to bench/gpu.py, e.g. --sections compile,smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
log=bench/_work/gpu-cpu-check.log
mkdir -p bench/_work
if ! uv run python bench/gpu.py --cpu-check --out bench/_work/gpu/cpu-check.json >"$log" 2>&1; then
  tail -30 "$log"
  echo "bench/gpu_kit.sh: bench/gpu.py --cpu-check failed; its log: $log" >&2
  exit 1
fi
kit=.gpu
rm -rf "$kit"
mkdir -p "$kit/wheels"
for name in open-clip-torch ftfy wcwidth; do
  version=$(python3 -c 'import sys, tomllib
lock = tomllib.load(open("uv.lock", "rb"))
print(next(p["version"] for p in lock["package"] if p["name"] == sys.argv[1]))' "$name")
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d "$kit/wheels" "$name==$version"
done
shards=$(uv run python -c 'import sys; sys.path.insert(0, "bench")
from train_step import demo_shards
print(demo_shards(2000))' | tail -1)
cp -r "$shards" "$kit/shards"
ls "$kit/wheels"
du -sh "$kit"
