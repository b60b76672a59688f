"""Benchmark: the crawl and shard stages in work units, per engine, against one plain process.

    uv run python bench/work_units.py                          # ~2 min on 2 cores
    uv run python bench/work_units.py --products 20000 --units 8 --processes 4

One demo catalogue is fetched and graphed once (cached under bench/_work/work_units/base); each
variant then crawls and shards a copy of it through the `slip-data` command, timed from spawn to
exit (start-up included: Ray's own start is part of what --engine ray costs). The anchor is the
plain build (one unit, this process) measured in the same run; every variant's shards must equal
the anchor's byte for byte, or the benchmark fails. The demo's image server runs in the driver
process on 127.0.0.1, so the crawl here is CPU-bound on this machine, not network-bound.
"""

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work" / "work_units"
SLIP_DATA = [sys.executable, "-m", "slip_data"]


def slip_data(*args: str) -> float:
    """Seconds one `slip-data` command takes, spawn to exit."""
    start = time.perf_counter()
    subprocess.run([*SLIP_DATA, *args, "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def shards_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((root / "shards").glob("*.parquet")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=4000)
    parser.add_argument("--units", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()

    base = WORK / f"base-{args.products}"
    if not (base / "graph" / "graph.json").is_file():
        demo = ["--source", "demo", "--categories", "all", "--demo-products", str(args.products)]
        slip_data("fetch", "--out", str(base), *demo)
        slip_data("graph", "--out", str(base))
    units = ["--num-shards", str(args.units)]
    variants = {
        "plain (anchor)": [],
        f"local, {args.units} units, {args.processes} processes": [
            *units,
            "--processes",
            str(args.processes),
        ],
    }
    if not args.skip_ray:
        variants[f"ray (local instance), {args.units} units"] = [*units, "--engine", "ray"]

    rows, anchor = [], None
    for name, options in variants.items():
        root = WORK / "runs" / name.split(" ")[0].rstrip(",")
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(base, root)
        crawl_s = slip_data("crawl", "--out", str(root), *options)
        shard_s = slip_data("shard", "--out", str(root), "--rows-per-shard", "500", *options)
        digest = shards_digest(root)
        anchor = anchor or (crawl_s, shard_s, digest)
        if digest != anchor[2]:
            sys.exit(f"{name}: shards differ from the plain build's")
        rows.append((name, crawl_s, shard_s))

    print(f"{args.products} demo products; the shards of every variant equal the anchor's")
    print(f"{'variant':44} {'crawl s':>8} {'ratio':>6} {'shard s':>8} {'ratio':>6}")
    for name, crawl_s, shard_s in rows:
        print(
            f"{name:44} {crawl_s:8.2f} {anchor[0] / crawl_s:5.2f}x"
            f" {shard_s:8.2f} {anchor[1] / shard_s:5.2f}x"
        )


if __name__ == "__main__":
    main()
