"""Benchmark: the test suite's wall time on one core's worth of workers against all cores.

    uv run python bench/suite_time.py              # a fresh clone of HEAD, both ways
    uv run python bench/suite_time.py --ci         # and the whole `.ci/run` there, timed

On a fresh clone of this checkout's HEAD (in a temp folder, its own environment from uv.lock):
pytest as one process (`-n 0`, the anchor), then as `scripts/test.sh` runs it (`-n auto --dist
loadscope`, one worker per core). Both runs start from an empty temp folder, so each builds the
shared demo fixtures once. Prints both wall times and the ratio; `--ci` then times `bash .ci/run`
(lint, test setup, the suite, the independence check) on the same clone.
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ci", action="store_true", help="also time `bash .ci/run`")
    args = parser.parse_args()
    uv = shutil.which("uv") or "uv"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    with tempfile.TemporaryDirectory(prefix="slip-suite-") as work:
        clone = Path(work) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run([uv, "sync", "--frozen", "--quiet", "--compile-bytecode"], cwd=clone,
                       env=env, check=True)  # fmt: skip
        pytest = [uv, "run", "pytest", "-q", "-p", "no:cacheprovider"]
        serial = timed([*pytest, "-n", "0"], clone, env)
        print(f"pytest, one process:           {serial:6.0f} s")
        parallel = timed([*pytest, "-n", "auto", "--dist", "loadscope"], clone, env)
        print(f"pytest, a worker per core ({os.cpu_count()}): {parallel:6.0f} s")
        print(f"ratio one process / workers: {serial / parallel:.2f}")
        if args.ci:
            ci = timed(["bash", ".ci/run"], clone, env)
            print(f".ci/run on the fresh clone:    {ci:6.0f} s")


if __name__ == "__main__":
    main()
