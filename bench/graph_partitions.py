"""Benchmark: the graph stage cut into work units, against one unit each way.

    uv run python bench/graph_partitions.py                      # 1M and 5M demo reviews, 0.25 GB
    uv run python bench/graph_partitions.py --reviews 1000000 --memory-gb 0.1
    git archive OLD packages/slip-data/src | tar -x -C /tmp/old   # the code before, as anchor
    uv run python bench/graph_partitions.py --anchor-src /tmp/old/packages/slip-data/src

The raw files are parsed once; then each build (build only, parsed files cached) runs in its own
child process, so its wall time and peak RSS (from wait4) are its own. The anchor is the same
stage at the default budget (one unit each way at these sizes), or with --anchor-src the
slip-data source given, measured in the same run. The cut build must write the same
nodes.parquet, edges.parquet and reviews.parquet: byte for byte against the default budget, and
the same rows (read back, compared by a digest of every row) against --anchor-src, whose writer
may differ (before the fixed row groups, the bytes did). The digests are taken in another child,
after each build, so that reading the outputs counts in no build's peak. Demo catalogues are
cached under bench/_work/.
"""

import argparse
import hashlib
import json
import time
from pathlib import Path

from graph_build import WORK, _catalogue, _raws  # the same demo catalogues (bench/ is on the path)
from graph_build import _measure as measure

COMPARED = ("nodes.parquet", "edges.parquet", "reviews.parquet")


def child_build(root: Path, graph_dir: Path, memory_gb: float | None) -> dict:
    """One graph stage run, build only once the parsed files exist; `memory_gb` None: the option
    is left out (a source from before it existed)."""
    from slip_data.graph.build import GraphOptions
    from slip_data.graph.stage import DONE_FILE, run_graph

    (graph_dir / DONE_FILE).unlink(missing_ok=True)
    options = GraphOptions() if memory_gb is None else GraphOptions(memory_gb=memory_gb)
    start = time.perf_counter()
    summary = run_graph(_raws(root), graph_dir, options, quiet=True)
    elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed,
        "edges": summary["counts"]["edges"],
        "nodes": summary["counts"]["nodes"],
        "partitions": summary.get("partitions", {}),
    }


def child_digests(graph_dir: Path) -> dict:
    """Per output, the sha256 of its bytes and of its rows as read back (schema, then a hash of
    every row in order)."""
    import polars as pl

    digests = {}
    for name in COMPARED:
        frame = pl.read_parquet(graph_dir / name)
        rows = hashlib.sha256(str(frame.schema).encode())
        rows.update(frame.hash_rows(seed=0).to_numpy().tobytes())
        digests[name] = {
            "bytes": hashlib.sha256((graph_dir / name).read_bytes()).hexdigest(),
            "rows": rows.hexdigest(),
        }
    return digests


def _line(name: str, result: dict) -> str:
    """One build's figures; a count its code did not have (an older source) shows as -."""
    cut = {"users": 1, "key_ranges": 1, "node_ranges": "-"} | result["partitions"]
    slices = f", link units of {cut['link_rows']:,} rows" if "link_rows" in cut else ""
    return (
        f"  {name:<34} U={cut['users']:<3} K={cut['key_ranges']:<3} R={cut['node_ranges']:<3} "
        f"{result['seconds']:7.2f} s in stage, peak RSS {result['peak_rss_mb']:,.0f} MB{slices}"
    )


def compare(reviews: int, memory_gb: float, anchor_src: str | None) -> bool:
    root = _catalogue(reviews)
    graph_dir = WORK / f"partitions-{reviews}"
    build = ["--child", str(root), str(graph_dir)]
    digest = ["--digests", str(graph_dir)]
    measure([*build, "none"], script=__file__)  # parses the raw files, once
    anchor = measure([*build, "none"], script=__file__, src=anchor_src)
    anchor_digests = measure(digest, script=__file__)
    cut = measure([*build, str(memory_gb)], script=__file__)
    cut_digests = measure(digest, script=__file__)
    kind = "rows" if anchor_src else "bytes"
    same = all(anchor_digests[n][kind] == cut_digests[n][kind] for n in COMPARED)
    name = "anchor: " + ("--anchor-src" if anchor_src else "default budget")
    print(
        f"graph stage, build only, {reviews:,} demo reviews -> {cut['nodes']:,} nodes, "
        f"{cut['edges']:,} edges (same {kind} in the three outputs: {same}):\n"
        f"{_line(name, anchor)}\n{_line(f'--memory-gb {memory_gb}', cut)}\n"
        f"  cut / anchor: peak RSS {cut['peak_rss_mb'] / anchor['peak_rss_mb']:.2f}, "
        f"time {cut['seconds'] / anchor['seconds']:.2f}"
    )
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--memory-gb", type=float, default=0.25)
    parser.add_argument("--anchor-src", help="slip-data source folder the anchor runs with")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--digests", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, graph_dir, memory_gb = args.child
        budget = None if memory_gb == "none" else float(memory_gb)
        print(json.dumps(child_build(Path(root), Path(graph_dir), budget)))
        return
    if args.digests:
        print(json.dumps(child_digests(Path(args.digests))))
        return
    if not all([compare(n, args.memory_gb, args.anchor_src) for n in args.reviews]):
        raise SystemExit("the cut build wrote other outputs than the anchor")


if __name__ == "__main__":
    main()
