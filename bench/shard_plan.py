"""Benchmark: the shard stage's peak RSS, the whole stage and its plan alone, on demo builds with
many edges per product (where holding and sorting the edges showed), at one or more catalogue
sizes: the peak per node (RSS above the imports' over the nodes) shows whether memory grows with
the catalogue.

    uv run python bench/shard_plan.py                     # 200,000 demo products, mean degree 100
    uv run python bench/shard_plan.py --products 20000    # a quicker look
    uv run python bench/shard_plan.py --products 50000 100000 200000 --kinds imports plan
    git archive OLD packages/slip-data/src | tar -x -C /tmp/old   # the code before, as anchor
    uv run python bench/shard_plan.py --anchor-src /tmp/old/packages/slip-data/src
    uv run python bench/shard_plan.py --synthetic-crawl --products 200000 1000000 \
        --mean-degree 8 --kinds imports plan --memory-gb 0.01    # the plan alone at 1M products

One demo catalogue is fetched, graphed and crawled once (kept under bench/_work/shard-plan/).
With --synthetic-crawl it is fetched and graphed, and the crawl's parts are written directly
(kept as synthetic-*): 1,000 rows a part in node order as the crawl writes them, each URL's
sha256 the hash of the URL, every 100th a failure, no image bytes. The plan reads no image, so
its measurements hold, and 1M products take minutes instead of the crawl's hour; `shard` would
write no image (it is for `imports plan`).
Each measurement then runs in its own child process, whose peak RSS comes from wait4 (what
`/usr/bin/time -v` reports as "Maximum resident set size"):

- imports: the interpreter with slip_data.pipeline and polars, nothing read;
- plan: `_shard_plan`, what every shard work unit derives first;
- shard: `pipeline.shard` on an empty shards folder (every node file written);
- rerun: `pipeline.shard` again (node files kept; edges, labels and manifest written again).

With --anchor-src the same run first on that source (with the budget, if it plans on disk), and
the ratios anchor / ours of peak RSS and wall time are printed; when both write the shards, they
must be the same, the edges compared by content (their row groups may differ). The plan kept on
disk (shards/.plan) is removed before each measurement, so `plan` and `shard` make it from
scratch.
"""

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import fields
from importlib.util import find_spec
from pathlib import Path

import pyarrow.parquet as pq
from graph_build import _measure as measure  # bench/ is on the path

WORK = Path(__file__).resolve().parent / "_work" / "shard-plan"
KINDS = ("imports", "plan", "shard", "rerun")
PART_ROWS = 1000  # the crawl's default part_size


def demo_build(root: Path, demo: list[str], crawl: list[str], *, synthetic: bool = False) -> Path:
    """A build folder after fetch (`demo`: the demo's options), graph and crawl (`crawl`: its
    options; `synthetic`: parts written directly instead); the marker is written once all ran."""
    ready = root / "bench-ready"
    if not ready.is_file():
        demo = ["--source", "demo", "--categories", "all", *demo]
        stages = [("fetch", demo), ("graph", []), *([] if synthetic else [("crawl", crawl)])]
        for stage, extra in stages:
            command = [sys.executable, "-m", "slip_data", stage, "--out", str(root), *extra, "-q"]
            subprocess.run(command, check=True)
        if synthetic:
            write_synthetic_crawl(root)
        ready.touch()
    return root


def write_synthetic_crawl(root: Path) -> None:
    """Crawl parts for the graph's image URLs as the crawl writes them, without crawling (the
    module docstring says what they hold)."""
    from slip_data.crawl.results import write_part

    nodes = pq.ParquetFile(root / "graph" / "nodes.parquet")
    row = 0
    for seq, batch in enumerate(nodes.iter_batches(PART_ROWS, columns=["image_url"])):
        rows = []
        for url in batch.column(0).to_pylist():
            ok = row % 100 != 99
            sha256 = hashlib.sha256(url.encode()).hexdigest() if ok else None
            size = 256 if ok else None
            status = "ok" if ok else "http_404"
            rows.append(dict(url=url, status=status, attempts=1, sha256=sha256, width=size,
                             height=size))  # fmt: skip
            row += 1
        write_part(root / "crawl", seq, rows)


def anchored(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, with those of a benchmark measured against an anchor source in children."""
    parser.add_argument("--anchor-src", help="a slip-data source folder to measure first")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return parser.parse_args()


def child(kind: str, root: Path, memory_gb: float | None) -> dict:
    from slip_data.pipeline import Layout, _shard_plan, shard
    from slip_data.shard.writer import ShardOptions

    options = ShardOptions()
    if memory_gb is not None and "plan_memory_gb" in {f.name for f in fields(ShardOptions)}:
        options = ShardOptions(plan_memory_gb=memory_gb)
    elif memory_gb is not None and find_spec("slip_data.shard.plan"):  # an older anchor: the
        from slip_data.shard import plan  # plan's budget was a module constant; or none (in RAM)

        plan.MEMORY_GB = memory_gb

    if kind == "plan":
        _shard_plan(Layout(root), options)
    if kind in ("shard", "rerun"):
        shard(Layout(root), options, quiet=True)
    return {}


def run(root: Path, src: str | None, kinds: list[str], memory_gb: float | None) -> dict[str, dict]:
    shutil.rmtree(root / "shards", ignore_errors=True)
    results = {}
    for kind in kinds:
        if kind != "rerun":  # a rerun keeps what the shard run wrote, its plan included
            shutil.rmtree(root / "shards" / ".plan", ignore_errors=True)
        budget = [] if memory_gb is None else [str(memory_gb)]
        results[kind] = measure(["--child", kind, str(root), *budget], script=__file__, src=src)
    return results


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


def measure_size(products: int, args: argparse.Namespace) -> dict[str, dict]:
    """Anchor (if given) and ours on one demo build; prints its lines."""
    demo = ["--demo-products", str(products), "--demo-mean-degree", str(args.mean_degree)]
    name = f"{'synthetic' if args.synthetic_crawl else 'demo'}-{products}-d{args.mean_degree}"
    root = demo_build(WORK / name, demo, [], synthetic=args.synthetic_crawl)
    runs = {}
    if args.anchor_src:
        runs["anchor"] = run(root, args.anchor_src, args.kinds, args.memory_gb)
        shutil.rmtree(root / "shards-anchor", ignore_errors=True)
        if (root / "shards").exists():
            (root / "shards").rename(root / "shards-anchor")
    runs["ours"] = run(root, None, args.kinds, args.memory_gb)
    wrote = "shard" in args.kinds
    if args.anchor_src and wrote and not same_shards(root / "shards-anchor", root / "shards"):
        raise SystemExit("bench/shard_plan: the anchor's shards differ from ours")

    nodes = pq.read_metadata(root / "graph" / "nodes.parquet").num_rows
    edges = pq.read_metadata(root / "graph" / "edges.parquet").num_rows
    print(f"demo {products:,} products, mean degree {args.mean_degree}: {nodes:,} graph nodes, "
          f"{edges:,} graph edges")  # fmt: skip
    for name, results in runs.items():
        if wrote:
            edges_file = (
                root / ("shards-anchor" if name == "anchor" else "shards") / "edges.parquet"
            )
            groups = pq.ParquetFile(edges_file).metadata.num_row_groups
            size = edges_file.stat().st_size / 1e6
            print(f"{name}: edges.parquet {size:.1f} MB in {groups:,} row groups")
        else:
            print(f"{name}:")
        base = results.get("imports", {}).get("peak_rss_mb", 0.0)
        for kind, result in results.items():
            peak, seconds = result["peak_rss_mb"], result["wall_seconds"]
            per_node = (
                "" if kind == "imports" else f"  {(peak - base) * 2**20 / nodes:6,.0f} B/node"
            )
            print(f"  {kind:8} peak RSS {peak:7,.0f} MB  {seconds:6.1f} s{per_node}")
    if args.anchor_src:
        for kind in args.kinds:
            anchor, ours = runs["anchor"][kind], runs["ours"][kind]
            ratio = anchor["peak_rss_mb"] / ours["peak_rss_mb"]
            faster = anchor["wall_seconds"] / ours["wall_seconds"]
            print(f"  {kind:8} anchor / ours peak RSS {ratio:.2f}x, time {faster:.2f}x")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, nargs="+", default=[200_000])
    parser.add_argument("--mean-degree", type=int, default=100)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument(
        "--memory-gb", type=float, help="the shard plan's budget (default: --plan-memory-gb's)"
    )
    parser.add_argument(
        "--synthetic-crawl", action="store_true", help="crawl parts written, not crawled"
    )
    args = anchored(parser)
    if args.child:
        kind, root, *budget = args.child
        print(json.dumps(child(kind, Path(root), float(budget[0]) if budget else None)))
        return
    for products in args.products:
        measure_size(products, args)


if __name__ == "__main__":
    main()
