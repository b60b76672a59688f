"""Benchmark: a whole demo build (fetch, graph, crawl, shard) stage by stage, at two sizes.

    uv run python bench/build_scale.py                                 # 100k and 1M products
    uv run python bench/build_scale.py --products 2000,20000 --out e2e.json
    uv run python bench/build_scale.py --products 100000,4000000 --reviews-per-product 10 \
        --keep --resume                     # stop it with SIGTERM, go on later with the same line

Each stage runs as its own `slip-data <stage>` child at the default options, as a user types it,
timed spawn to exit, its peak RSS from wait4; the build folder's size on disk after each stage.
The demo source generates the catalogue (fetch), serves its raw files and renders every product's
image from the command's own process (crawl), so the crawl's rate includes drawing the images.
The anchor is the smallest size, built in the same run: each larger size prints its stage times
and peaks over the anchor's, beside the ratio of products. Above 1M products the demo draws its
catalogue in independent blocks of 1M. Builds go under bench/_work/build_scale/ (git-ignored) and
are removed after they are measured (`--keep` keeps them). A build longer than a sitting is
stopped with SIGTERM (the running stage is stopped as Ctrl-C stops it, its attempt recorded) and
`--resume` goes on: each stage resumes its own work, and a stage's figures add its attempts up.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from slip_data.atomic import write_json

WORK = Path(__file__).resolve().parent / "_work" / "build_scale"
STAGES = ("fetch", "graph", "crawl", "shard")


def _disk_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def _attempt(stage: str, out: Path, options: list[str]) -> dict:
    """One `slip-data <stage>` child: wall seconds, CPU, peak RSS. SIGINT or SIGTERM to the
    bench stops the child as Ctrl-C would and returns the attempt so far, marked interrupted."""
    command = [sys.executable, "-m", "slip_data", stage, "--out", str(out), "--quiet", *options]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    interrupted = False
    try:
        output = process.stdout.read().decode(errors="replace")
    except KeyboardInterrupt:
        interrupted, output = True, ""
        process.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0 and not interrupted:
        raise SystemExit(f"{stage} failed (status {status}):\n{output[-2000:]}")
    return {
        "wall_seconds": time.perf_counter() - start,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "interrupted": interrupted,
        "said": output.strip().splitlines()[-1] if output.strip() else "",
    }


def _stage(stage: str, out: Path, *, options: list[str], record: dict, record_path: Path) -> dict:
    """A stage's figures over its attempts (a stage resumes its own work when run again): wall
    and CPU seconds added up, the highest peak, the folder's size after the last (recorded then,
    so that a resumed run shows each stage's size, not the whole build's)."""
    attempts = record.setdefault(stage, [])
    if not attempts or attempts[-1]["interrupted"]:
        attempts.append(_attempt(stage, out, options) | {"folder_mb": _disk_mb(out)})
        write_json(record_path, record)
        if attempts[-1]["interrupted"]:
            raise SystemExit(f"interrupted in {stage}: --resume goes on from there")
    return {
        "stage": stage,
        "attempts": len(attempts),
        "wall_seconds": sum(a["wall_seconds"] for a in attempts),
        "peak_rss_mb": max(a["peak_rss_mb"] for a in attempts),
        "cpu_seconds": sum(a["cpu_seconds"] for a in attempts),
        "folder_mb": attempts[-1]["folder_mb"],
        "said": attempts[-1]["said"],
    }


def _build(products: int, *, reviews_per_product: float, keep: bool, resume: bool) -> dict:
    name = f"demo-{products}" + (f"-rpp{reviews_per_product:g}" if reviews_per_product else "")
    out = WORK / name
    if out.exists() and not resume:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    record_path = WORK / f"{name}.attempts.json"
    record = json.loads(record_path.read_text()) if resume and record_path.is_file() else {}
    fetch = ["--source", "demo", "--demo-products", str(products), "--categories", "all"]
    fetch += ["--demo-reviews-per-product", str(reviews_per_product)]
    stages = [
        _stage(
            stage,
            out,
            options=fetch if stage == "fetch" else [],
            record=record,
            record_path=record_path,
        )
        for stage in STAGES
    ]
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    raw = json.loads((out / "report.json").read_text())["raw_files"]
    row = {
        "products": products,
        "reviews_per_product": reviews_per_product,
        "reviews": sum(v["lines"] for name, v in raw.items() if name.startswith("review:")),
        "nodes": manifest["counts"]["nodes"],
        "edges": manifest["counts"]["edges"],
        "stages": stages,
        "seconds": sum(stage["wall_seconds"] for stage in stages),
        "peak_rss_mb": max(stage["peak_rss_mb"] for stage in stages),
    }
    if not keep:
        shutil.rmtree(out)
        record_path.unlink(missing_ok=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", default="100000,1000000", help="demo products, a list")
    parser.add_argument(
        "--reviews-per-product", type=float, default=0.0, help="demo density; 0: the default"
    )
    parser.add_argument("--keep", action="store_true", help="keep each size's build folder")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on with the folders of an interrupted run (SIGINT or SIGTERM stops one)",
    )
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    # stopped as Ctrl-C stops it, even when started in the background (where SIGINT is ignored,
    # and an ignored signal stays ignored in the stages' children)
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.default_int_handler)
    sizes = sorted(int(size) for size in args.products.split(","))
    rows = []
    for products in sizes:
        row = _build(
            products,
            reviews_per_product=args.reviews_per_product,
            keep=args.keep,
            resume=args.resume,
        )
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
                f"({stage['attempts']} attempt{'s' if stage['attempts'] > 1 else ''}) "
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
