"""Benchmark: the graph stage on demo reviews, and against networkx's bipartite projection.

    uv run python bench/graph_build.py                 # 10M reviews, networkx on a 1M subset
    uv run python bench/graph_build.py --reviews 1000000 --subset 200000   # quicker look
    uv run python bench/graph_build.py --skip-big                      # only the networkx anchor

Each measurement runs in its own child process, so its wall time and peak RSS (from wait4) are
its own. The networkx anchor runs in the same invocation, on the same parsed reviews, and must give
the same edges. Generated data is cached under bench/_work/ (git-ignored).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work" / "graph"
REVIEWS_PER_PRODUCT = 10
CAP = 100  # the default history cap; the networkx input is capped by the same documented rule


def _catalogue(reviews: int) -> Path:
    from slip_data.sources.demo import DemoSpec, write_demo_catalogue

    root = WORK / f"demo-{reviews}"
    products = reviews // REVIEWS_PER_PRODUCT
    spec = DemoSpec(products=products, reviews_per_product=REVIEWS_PER_PRODUCT)
    write_demo_catalogue(spec, root, quiet=False)
    return root


def _raws(root: Path):
    from slip_data.categories import CATEGORIES
    from slip_data.fetch.stage import local_raws

    return local_raws(CATEGORIES, root)


def child_ours(root: Path, graph_dir: Path, phase: str, cap: int, memory_gb: float = 2.0) -> dict:
    """`full`: parse + build from raw gzip; `build`: build only, parsed files already there."""
    from slip_data.graph.build import GraphOptions
    from slip_data.graph.stage import DONE_FILE, run_graph

    if phase == "full":
        shutil.rmtree(graph_dir, ignore_errors=True)
    else:
        (graph_dir / DONE_FILE).unlink(missing_ok=True)
    start = time.perf_counter()
    summary = run_graph(
        _raws(root),
        graph_dir,
        GraphOptions(max_items_per_user=cap, memory_gb=memory_gb),
        quiet=True,
    )
    elapsed = time.perf_counter() - start
    files = summary["files"]
    return {
        "seconds": elapsed,
        "reviews": sum(v["kept"] for k, v in files.items() if k.startswith("review:")),
        "nodes": summary["counts"]["nodes"],
        "edges": summary["counts"]["edges"],
    }


def child_networkx(graph_dir: Path, cap: int) -> dict:
    """Weighted projection of the user-product graph, from the same parsed reviews.

    The input gets the documented history cap (a user's `cap` most recent products, ties by
    product), written here again in plain polars, so the check does not lean on slip-data's code.
    """
    import networkx as nx
    import polars as pl

    nodes = pl.read_parquet(graph_dir / "nodes.parquet", columns=["parent_asin"])
    reviews = (
        pl.scan_parquet(graph_dir / "parsed" / "review_*.parquet")
        .select("user_id", "parent_asin", "timestamp")
        .join(nodes.lazy().with_row_index("item"), on="parent_asin")
        .group_by("user_id", "parent_asin", "item")
        .agg(pl.col("timestamp").fill_null(0).max())
        .sort(["user_id", "timestamp", "item"], descending=[False, True, False])
        .filter(pl.int_range(pl.len()).over("user_id") < cap)
        .collect()
    )
    start = time.perf_counter()
    bipartite = nx.Graph()
    users = [("u", user) for user in reviews["user_id"]]
    bipartite.add_edges_from(zip(users, reviews["parent_asin"], strict=True))
    products = set(reviews["parent_asin"])
    projected = nx.bipartite.weighted_projected_graph(bipartite, products)
    elapsed = time.perf_counter() - start
    ours = pl.read_parquet(graph_dir / "edges.parquet")
    asin = nodes["parent_asin"].to_list()
    mine = {(asin[s], asin[d]): w for s, d, w in ours.iter_rows()}
    theirs = {tuple(sorted((a, b))): data["weight"] for a, b, data in projected.edges(data=True)}
    return {"seconds": elapsed, "edges": len(theirs), "same_edges": mine == theirs}


def _measure(args: list[str], *, script: str = __file__, src: str | None = None) -> dict:
    """Run `script` as a child (with `src` first on its path); its JSON result plus wall time and
    peak RSS."""
    env = dict(os.environ, PYTHONPATH=src) if src else None
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE, env=env)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"child {args} failed with status {status}")
    result = json.loads(out)
    result["wall_seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def _line(name: str, result: dict) -> str:
    return (
        f"  {name:<22} {result['seconds']:7.2f} s in stage, {result['wall_seconds']:7.2f} s wall, "
        f"peak RSS {result['peak_rss_mb']:,.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=10_000_000)
    parser.add_argument("--subset", type=int, default=1_000_000)
    parser.add_argument("--skip-big", action="store_true", help="only the networkx comparison")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, root, graph_dir, *rest = args.child
        if kind == "ours":
            result = child_ours(
                Path(root), Path(graph_dir), rest[0], int(rest[1]), *map(float, rest[2:])
            )
        else:
            result = child_networkx(Path(graph_dir), int(rest[0]))
        print(json.dumps(result))
        return

    if not args.skip_big:
        _graph_stage(args.reviews)
    _networkx_comparison(args.subset)


def _graph_stage(reviews: int) -> None:
    big = _catalogue(reviews)
    full = _measure(["--child", "ours", str(big), str(WORK / "graph-big"), "full", str(CAP)])
    build = _measure(["--child", "ours", str(big), str(WORK / "graph-big"), "build", str(CAP)])
    print(
        f"graph stage, {full['reviews']:,} reviews -> {full['nodes']:,} nodes, "
        f"{full['edges']:,} edges:\n{_line('parse + build', full)}\n{_line('build only', build)}"
    )


def _networkx_comparison(subset: int) -> None:
    small = _catalogue(subset)
    sub_dir = WORK / "graph-subset"
    _measure(["--child", "ours", str(small), str(sub_dir), "full", str(CAP)])
    ours = _measure(["--child", "ours", str(small), str(sub_dir), "build", str(CAP)])
    anchor = _measure(["--child", "networkx", str(small), str(sub_dir), str(CAP)])
    print(
        f"co-purchase projection, {ours['reviews']:,} reviews, history cap {CAP}, "
        f"{anchor['edges']:,} edges (same edges: {anchor['same_edges']}):\n"
        f"{_line('slip-data graph build', ours)}\n{_line('networkx projection', anchor)}\n"
        f"  speed ratio (networkx / slip-data): {anchor['seconds'] / ours['seconds']:.1f}x"
    )
    if not anchor["same_edges"]:
        raise SystemExit("edges differ from networkx's projection")


if __name__ == "__main__":
    main()
