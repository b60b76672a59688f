"""Benchmark: the shard stage's peak RSS, the whole stage and its plan alone, on a demo build with
many edges per product (where holding and sorting the edges showed).

    uv run python bench/shard_plan.py                     # 200,000 demo products, mean degree 100
    uv run python bench/shard_plan.py --products 20000    # a quicker look
    git archive OLD packages/slip-data/src | tar -x -C /tmp/old   # the code before, as anchor
    uv run python bench/shard_plan.py --anchor-src /tmp/old/packages/slip-data/src

One demo catalogue is fetched, graphed and crawled once (kept under bench/_work/shard-plan/).
Each measurement then runs in its own child process, whose peak RSS comes from wait4 (what
`/usr/bin/time -v` reports as "Maximum resident set size"):

- imports: the interpreter with slip_data.pipeline and polars, nothing read;
- plan: `_shard_plan`, what every shard work unit derives first;
- shard: `pipeline.shard` on an empty shards folder (every node file written);
- rerun: `pipeline.shard` again (node files kept; edges, labels and manifest written again).

With --anchor-src the same four run first on that source; both must write the same shards, the
edges compared by content (their row groups may differ).
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from graph_build import _measure as measure  # bench/ is on the path

WORK = Path(__file__).resolve().parent / "_work" / "shard-plan"
KINDS = ("imports", "plan", "shard", "rerun")


def demo_build(root: Path, demo: list[str], crawl: list[str]) -> Path:
    """A build folder after fetch (`demo`: the demo's options), graph and crawl (`crawl`: its
    options); the marker is written once all three ran."""
    ready = root / "bench-ready"
    if not ready.is_file():
        demo = ["--source", "demo", "--categories", "all", *demo]
        for stage, extra in (("fetch", demo), ("graph", []), ("crawl", crawl)):
            command = [sys.executable, "-m", "slip_data", stage, "--out", str(root), *extra, "-q"]
            subprocess.run(command, check=True)
        ready.touch()
    return root


def anchored(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, with those of a benchmark measured against an anchor source in children."""
    parser.add_argument("--anchor-src", help="a slip-data source folder to measure first")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    return parser.parse_args()


def child(kind: str, root: Path) -> dict:
    from slip_data.pipeline import Layout, _shard_plan, shard
    from slip_data.shard.writer import ShardOptions

    if kind == "plan":
        _shard_plan(Layout(root), ShardOptions())
    if kind in ("shard", "rerun"):
        shard(Layout(root), ShardOptions(), quiet=True)
    return {}


def run(root: Path, src: str | None) -> dict[str, dict]:
    shutil.rmtree(root / "shards", ignore_errors=True)
    return {kind: measure(["--child", kind, str(root)], script=__file__, src=src) for kind in KINDS}


def same_shards(anchor: Path, ours: Path) -> bool:
    """Every file but edges.parquet byte for byte, edges.parquet by content, the manifests but
    for their time of writing and the files' entries."""
    manifests = [json.loads((folder / "manifest.json").read_text()) for folder in (anchor, ours)]
    files = [{f["path"]: f for f in manifest.pop("files")} for manifest in manifests]
    for manifest in manifests:
        manifest.pop("created")
    edges = [pq.read_table(folder / "edges.parquet") for folder in (anchor, ours)]
    for listed in files:
        listed.pop("edges.parquet")
    return manifests[0] == manifests[1] and files[0] == files[1] and edges[0].equals(edges[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--mean-degree", type=int, default=100)
    args = anchored(parser)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return

    demo = ["--demo-products", str(args.products), "--demo-mean-degree", str(args.mean_degree)]
    root = demo_build(WORK / f"demo-{args.products}-d{args.mean_degree}", demo, [])
    runs = {}
    if args.anchor_src:
        runs["anchor"] = run(root, args.anchor_src)
        shutil.rmtree(root / "shards-anchor", ignore_errors=True)
        (root / "shards").rename(root / "shards-anchor")
    runs["ours"] = run(root, None)
    if args.anchor_src and not same_shards(root / "shards-anchor", root / "shards"):
        raise SystemExit("bench/shard_plan: the anchor's shards differ from ours")

    counts = json.loads((root / "shards" / "manifest.json").read_text())["counts"]
    print(
        f"demo {args.products:,} products, mean degree {args.mean_degree}: "
        f"{counts['nodes']:,} nodes, {counts['edges']:,} edges"
    )
    for name, results in runs.items():
        edges = root / ("shards-anchor" if name == "anchor" else "shards") / "edges.parquet"
        groups = pq.ParquetFile(edges).metadata.num_row_groups
        print(f"{name}: edges.parquet {edges.stat().st_size / 1e6:.1f} MB in {groups:,} row groups")
        for kind, result in results.items():
            peak, seconds = result["peak_rss_mb"], result["wall_seconds"]
            print(f"  {kind:8} peak RSS {peak:7,.0f} MB  {seconds:6.1f} s")


if __name__ == "__main__":
    main()
