"""Benchmark: a whole demo build (fetch, graph, crawl, shard) stage by stage, at two sizes.

    uv run python bench/build_scale.py                                 # 100k and 1M products
    uv run python bench/build_scale.py --products 2000,20000 --out e2e.json

Each stage runs as its own `slip-data <stage>` child at the default options, as a user types it,
timed spawn to exit, its peak RSS from wait4; the build folder's size on disk after each stage.
The demo source generates the catalogue (fetch), serves its raw files and renders every product's
image from the command's own process (crawl), so the crawl's rate includes drawing the images.
The anchor is the smallest size, built in the same run: each larger size prints its stage times
and peaks over the anchor's, beside the ratio of products. 1M products is the demo generator's
most for one catalogue (2.1M reviews at its default density). Builds go under
bench/_work/build_scale/ (git-ignored) and are removed after they are measured (`--keep` keeps
them).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work" / "build_scale"
STAGES = ("fetch", "graph", "crawl", "shard")


def _disk_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def _stage(stage: str, out: Path, options: list[str]) -> dict:
    """One `slip-data` stage in a child: wall seconds, peak RSS, the folder's size after it."""
    command = [sys.executable, "-m", "slip_data", stage, "--out", str(out), "--quiet", *options]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{stage} failed (status {status}):\n{output[-2000:]}")
    return {
        "stage": stage,
        "wall_seconds": time.perf_counter() - start,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "folder_mb": _disk_mb(out),
        "said": output.strip().splitlines()[-1] if output.strip() else "",
    }


def _build(products: int, keep: bool) -> dict:
    out = WORK / f"demo-{products}"
    if out.exists():
        shutil.rmtree(out)
    fetch = ["--source", "demo", "--demo-products", str(products), "--categories", "all"]
    stages = [_stage(stage, out, fetch if stage == "fetch" else []) for stage in STAGES]
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    raw = json.loads((out / "report.json").read_text())["raw_files"]
    row = {
        "products": products,
        "reviews": sum(v["lines"] for name, v in raw.items() if name.startswith("review:")),
        "nodes": manifest["counts"]["nodes"],
        "edges": manifest["counts"]["edges"],
        "stages": stages,
        "seconds": sum(stage["wall_seconds"] for stage in stages),
        "peak_rss_mb": max(stage["peak_rss_mb"] for stage in stages),
    }
    if not keep:
        shutil.rmtree(out)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", default="100000,1000000", help="demo products, a list")
    parser.add_argument("--keep", action="store_true", help="keep each size's build folder")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.products.split(","))
    rows = []
    for products in sizes:
        row = _build(products, args.keep)
        rows.append(row)
        anchor = rows[0]
        n = row["products"] / anchor["products"]
        print(
            f"{products:,} products, {row['reviews']:,} reviews -> {row['nodes']:,} nodes, "
            f"{row['edges']:,} edges: "
            f"{row['seconds']:,.0f} s, peak RSS {row['peak_rss_mb']:,.0f} MB "
            f"(products / anchor's {n:.2f}x)",
            flush=True,
        )
        for stage, first in zip(row["stages"], anchor["stages"], strict=True):
            print(
                f"  {stage['stage']:<6} {stage['wall_seconds']:8.1f} s wall "
                f"({stage['wall_seconds'] / first['wall_seconds']:5.2f}x the anchor's), "
                f"{stage['cpu_seconds']:8.1f} s CPU, peak RSS {stage['peak_rss_mb']:7,.0f} MB "
                f"({stage['peak_rss_mb'] / first['peak_rss_mb']:4.2f}x), "
                f"folder {stage['folder_mb']:9,.0f} MB; {stage['said']}",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
