"""Benchmark: the graph stage's review texts in work units against the driver's whole-file
`top_reviews` they replaced: time, peak RSS, and whether reviews.parquet is the same bytes.

    uv run python bench/graph_texts.py                        # 10M demo reviews, --memory-gb 2,0.1
    uv run python bench/graph_texts.py --files 3 --longer 10 --memory-gb 2,0.5

The reviews are graph_units.py's parsed 10M-review demo (bench/_work/graph/units/, made if
missing); `--files N` takes the first N of its 33 review files, and `--longer N` repeats every
review's text N times (a copy under bench/_work/graph/texts/), nearer real reviews' lengths than
the demo's 46 B. A first child finds the nodes from the parsed meta files (the stage's node units
and one node range's id table; no k-core), kept for later runs. Then each row is a child
of its own: the anchor, the code before the units (each review file's texts joined, sorted and
kept whole, then written), measured in the same run, and the units at each --memory-gb, inline in
one process as `--processes 1` runs them, with the write. Peak RSS is the child's VmHWM, reset
as the step starts (after imports, and the anchor's reading of the nodes); each unit's own peak
is taken the same way. Each row prints its time and peak over the anchor's.
"""

import argparse
import hashlib
import json
import shutil
import sys
import time
from functools import partial
from pathlib import Path

from graph_build import WORK, _measure
from graph_units import SEEN_MB, _peak_mb, _per_step, _prepared, timed_units

TEXTS = WORK / "texts"
MAX_REVIEWS = 25  # the default


def _reviews(files: int, longer: int) -> dict[str, Path]:
    """The parsed review files measured, by category: the first `files`, texts `longer` times."""
    import polars as pl

    parsed = sorted((_prepared(2.0) / "parsed").glob("review_*.parquet"))[:files]
    reviews = {path.stem.removeprefix("review_"): path for path in parsed}
    if longer == 1:
        return reviews
    folder = TEXTS / f"longer{longer}"
    for name, path in reviews.items():
        dest = folder / path.name
        if not dest.exists():
            folder.mkdir(parents=True, exist_ok=True)
            text = pl.concat_str([pl.col("text")] * longer, separator=" ")
            pl.scan_parquet(path).with_columns(text=text).sink_parquet(dest)
        reviews[name] = dest
    return reviews


def _prepare(root: Path) -> None:
    """The id table of the parsed meta files, and (parent_asin, graph_id) of the nodes."""
    import polars as pl

    from slip_data.graph.build import NODE_GROUP_ROWS, GraphOptions, filter_meta_file
    from slip_data.graph.partitions import Partitions, id_range, node_bounds

    parsed = sorted((_prepared(2.0) / "parsed").glob("meta_*.parquet"))
    metas = {path.stem.removeprefix("meta_"): path for path in parsed}
    parts = Partitions(
        root, users=1, key_ranges=1, node_ranges=1, meta_rows=10**9, link_rows=1, text_rows=1
    )
    bounds = node_bounds(parts, {name: pl.scan_parquet(path) for name, path in metas.items()})
    slices = parts.row_slices(metas, parts.meta_rows)  # one a file
    for unit, rows in slices.items():
        filter_meta_file(parts, unit, rows, options=GraphOptions(), bounds=bounds)
    id_range(parts, 0, meta_slices=list(slices))  # one node range: its items are the graph ids
    ids = pl.read_parquet(parts.id_table(0))
    nodes = ids.drop_nulls("item").select("parent_asin", graph_id="item")
    nodes.write_parquet(root / "nodes.parquet", row_group_size=NODE_GROUP_ROWS)


def _todays(root: Path, reviews: dict[str, Path], dest: Path) -> dict:
    """The review texts as the driver wrote them before the units: each file's whole."""
    import polars as pl
    import pyarrow.parquet as pq

    from slip_data.graph.texts import REVIEW_SCHEMA, _best_first, _line

    nodes = pl.read_parquet(root / "nodes.parquet")
    _peak_mb(reset=True)
    start = time.perf_counter()
    with pq.ParquetWriter(dest, REVIEW_SCHEMA) as writer:
        for path in reviews.values():
            frame = (  # the order of the units, the file's rows breaking full ties
                pl.scan_parquet(path)
                .with_row_index("row")
                .join(nodes.lazy(), on="parent_asin")
                .with_columns(user=pl.col("user_id").hash(seed=0))
                .pipe(_best_first, "graph_id")
                .select("graph_id", line=_line())
                .filter(pl.col("line") != "")
                .group_by("graph_id", maintain_order=True)
                .agg(reviews=pl.col("line").head(MAX_REVIEWS))
                .collect()
            )
            writer.write_table(frame.rechunk().to_arrow().cast(REVIEW_SCHEMA))
    return {"seconds": time.perf_counter() - start, "step_peak_mb": _peak_mb(), "units": []}


def _units(root: Path, reviews: dict[str, Path], dest: Path, memory_gb: float) -> dict:
    """The review texts' units, inline, then the write."""
    import polars as pl
    import pyarrow.parquet as pq

    from slip_data.distribute import UnitOptions
    from slip_data.graph import partitions
    from slip_data.graph.partitions import Partitions, Steps, partition_counts
    from slip_data.graph.texts import text_step, write_reviews

    rows: list[dict] = []
    partitions.run_units = timed_units(rows)
    text_rows = partition_counts(reviews=1, products=1, memory_gb=memory_gb)["text_rows"]
    parts = Partitions(
        root, users=1, key_ranges=1, node_ranges=1, meta_rows=1, link_rows=1, text_rows=text_rows
    )
    shutil.rmtree(root / "texts", ignore_errors=True)
    _peak_mb(reset=True)
    start = time.perf_counter()
    ranges = text_step(
        reviews,
        n_nodes=pq.ParquetFile(root / "nodes.parquet").metadata.num_rows,
        nodes_file=root / "nodes.parquet",
        parts=parts,
        max_reviews=MAX_REVIEWS,
        steps=Steps(UnitOptions(), memory_gb=memory_gb, quiet=True),
    )
    write_reviews(((pl.read_parquet(path) for path in files) for files in ranges), dest)
    seconds = time.perf_counter() - start
    shutil.rmtree(root / "texts")
    peak = max(_peak_mb(), SEEN_MB[0])  # the units reset VmHWM: the largest read
    return {"seconds": seconds, "step_peak_mb": peak, "units": rows, "text_rows": text_rows}


def _child(kind: str, files: int, longer: int, memory_gb: float) -> dict:
    root = TEXTS / "parts"
    reviews = _reviews(files, longer)
    if kind == "prepare":
        _prepare(root)
        return {}
    dest = TEXTS / "reviews.parquet"
    measure = _todays if kind == "todays" else partial(_units, memory_gb=memory_gb)
    result = measure(root, reviews, dest)
    result["sha256"] = hashlib.sha256(dest.read_bytes()).hexdigest()
    result["reviews"] = sum(_rows(path) for path in reviews.values())
    return result


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-gb", default="2,0.1", help="comma list of the stage's budgets")
    parser.add_argument("--files", type=int, default=33, help="the first N review files")
    parser.add_argument("--longer", type=int, default=1, help="each review's text N times")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, files, longer, memory_gb = args.child
        print(json.dumps(_child(kind, int(files), int(longer), float(memory_gb))))
        return

    TEXTS.mkdir(parents=True, exist_ok=True)
    common = [str(args.files), str(args.longer)]
    if not (TEXTS / "parts" / "nodes.parquet").exists():
        _measure(["--child", "prepare", *common, "0"], script=__file__)
    anchor = _measure(["--child", "todays", *common, "0"], script=__file__)
    rows = [{"row": "before the units", **anchor}]
    for memory_gb in args.memory_gb.split(","):
        child = ["--child", "units", *common, memory_gb]
        rows.append({"row": f"units, --memory-gb {memory_gb}", **_measure(child, script=__file__)})
    print(f"{anchor['reviews']:,} reviews in {args.files} files, texts x{args.longer}:")
    for row in rows:
        print(
            f"  {row['row']:<24} {row['seconds']:7.2f} s ({row['seconds'] / anchor['seconds']:.2f}x"
            f" the anchor's), peak RSS {row['step_peak_mb']:,.0f} MB "
            f"({row['step_peak_mb'] / anchor['step_peak_mb']:.2f}x); same bytes: "
            f"{row['sha256'] == anchor['sha256']}"
        )
        if row["units"]:
            print(f"    {row['text_rows']:,} rows a slice")
            _per_step(row, ("slice_texts", "top_texts"))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
