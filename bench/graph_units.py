"""Benchmark: the graph stage's work units: time and peak RSS per unit, and the whole stage with
its units inline (--processes 1) against P spawned processes at once.

    uv run python bench/graph_units.py                        # 10M demo reviews, --processes 1,2
    uv run python bench/graph_units.py --memory-gb 0.5 --processes 1,2
    uv run python bench/graph_units.py --meta-file            # one large meta file's units

The catalogue is bench/graph_scale.py's 10M-review demo (seed 0, generated if missing), parsed
once into bench/_work/graph/units/ (git-ignored, kept). Each --processes value then builds the
graph from the parsed files in its own child, the stage's `run_units` wrapped so that every unit
reports its time and the peak RSS of the process that ran it while it ran (VmHWM, reset through
/proc/self/clear_refs as the unit starts): with P > 1 each unit runs in a fresh spawned process,
so the figure is what a worker needs for it (its imports included); inline it is the driver's
RSS, which holds what the allocator kept. The driver's own peak is the largest VmHWM it read
(wait4's figure would miss what the resets dropped). The steps that stay in the driver (node
bounds, the k-core, the three writes) are timed the same way, and the partitions folder's size
is taken after the pair step's last units. The anchor is the first
--processes value, measured in the same run: each row prints its stage time over the anchor's,
and whether the three outputs are the same bytes.

--meta-file measures step 2's meta units on one large meta file instead: the demo's 33 parsed meta
files joined into one (1M products, each file's row groups as the parse wrote them), filtered as
one unit (the whole file, as before the meta slices) and then in the row slices of --memory-gb,
each unit alone in a fresh process: the peak RSS of that process while the unit ran (VmHWM, as
above: wait4's figure would start from the parent's RSS at the fork), the RSS it started the unit
from (its imports) and whether the slices' files hold the whole file's rows.
"""

import argparse
import hashlib
import json
import re
import shutil
import statistics
import sys
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

from graph_build import CAP, WORK, _measure, _raws
from graph_scale import GRAPH_BUILD, _catalogue

UNITS = WORK / "units"
JOINED = UNITS / "joined-meta"
OUTPUTS = ("nodes.parquet", "edges.parquet", "reviews.parquet")
STEPS = (
    "filter_meta",
    "id_range",
    "link_reviews",
    "pair_users",
    "count_range",
    "slice_texts",
    "top_texts",
)
DRIVER = ("node_bounds", "k_core", "write_row_groups", "write_reviews")


SEEN_MB = [0.0]  # the largest VmHWM this process read, across resets


def _peak_mb(reset: bool = False) -> float:
    """This process's peak RSS (VmHWM); with `reset`, the peak is set back to the current RSS."""
    status = Path("/proc/self/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    SEEN_MB[0] = max(SEEN_MB[0], peak)
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    return peak


def _measured(func, *args, **kwargs) -> tuple:
    """A unit, run where the engine put it: (its result, seconds, peak RSS MB while it ran)."""
    _peak_mb(reset=True)
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start, _peak_mb()


def timed_units(rows: list[dict], after=None):
    """The stage's `run_units`, each unit timed and its peak RSS read into `rows`; then
    `after(name, args)`, if given."""
    from slip_data.distribute import run_units

    def run(func, args, options, *, name, quiet, kwargs, memory_bytes=None):
        results = run_units(partial(_measured, func), args, options, name=name, quiet=quiet,
                            kwargs=kwargs, memory_bytes=memory_bytes)  # fmt: skip
        for index, (_, seconds, peak) in sorted(results.items()):
            rows.append({"step": name.split()[-1], "unit": index, "seconds": seconds,
                         "peak_rss_mb": peak})  # fmt: skip
        if after:
            after(name, args)
        return {index: result for index, (result, _, _) in results.items()}

    return run


def _child(graph_dir: Path, processes: int, memory_gb: float) -> dict:
    """Build from the parsed files with the units on `processes` local processes, each unit
    measured; the stage's time, counts and per-unit rows."""
    from slip_data.distribute import UnitOptions
    from slip_data.graph import build, partitions
    from slip_data.graph.build import GraphOptions
    from slip_data.graph.stage import DONE_FILE, run_graph

    rows: list[dict] = []

    driver: list[dict] = []
    folder_mb = []

    def folder_size(name, args):
        if name.endswith("count_range"):
            files = args[0][0].root.rglob("*")
            folder_mb.append(sum(f.stat().st_size for f in files if f.is_file()) / 2**20)

    def timed(name, real):
        def step(*args, **kwargs):
            result, seconds, peak = _measured(real, *args, **kwargs)
            driver.append({"step": name, "seconds": seconds, "peak_rss_mb": peak})
            return result

        return step

    partitions.run_units = timed_units(rows, folder_size)  # Steps.run's call, for every step
    for name in DRIVER:
        setattr(build, name, timed(name, getattr(build, name)))
    (graph_dir / DONE_FILE).unlink(missing_ok=True)
    options = GraphOptions(max_items_per_user=CAP, memory_gb=memory_gb)
    start = time.perf_counter()
    summary = run_graph(
        _raws(graph_dir.parent / "catalogue"),
        graph_dir,
        options,
        units=UnitOptions(processes=processes),
        quiet=True,
    )
    return {
        "processes": processes,
        "seconds": time.perf_counter() - start,
        "driver_peak_rss_mb": max(_peak_mb(), SEEN_MB[0]),
        "partitions": summary["partitions"],
        "nodes": summary["counts"]["nodes"],
        "edges": summary["counts"]["edges"],
        "reviews": sum(v["kept"] for k, v in summary["files"].items() if k.startswith("review")),
        "outputs_sha256": {
            name: hashlib.sha256((graph_dir / name).read_bytes()).hexdigest() for name in OUTPUTS
        },
        "units": rows,
        "driver": driver,
        "partitions_mb": folder_mb[0],
    }


def _prepared(memory_gb: float) -> Path:
    """The graph folder with the 10M catalogue parsed (one full run of the stage, once)."""
    graph_dir = UNITS / "graph"
    link = UNITS / "catalogue"
    if not link.exists():
        UNITS.mkdir(parents=True, exist_ok=True)
        link.symlink_to(_catalogue(1))
    if not (graph_dir / "parsed").is_dir():
        child = ["--child", "ours", str(link), str(graph_dir), "full", str(CAP), str(memory_gb)]
        _measure(child, script=str(GRAPH_BUILD))
    return graph_dir


def _joined_meta(graph_dir: Path) -> Path:
    """The parsed meta files as one, in name order, each row group as the parse wrote it."""
    import pyarrow.parquet as pq

    from slip_data.atomic import atomic_path

    dest = JOINED / "meta_Joined.parquet"
    if not dest.exists():
        files = [
            pq.ParquetFile(path) for path in sorted((graph_dir / "parsed").glob("meta_*.parquet"))
        ]
        JOINED.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, files[0].schema_arrow) as writer:
            for file in files:
                for group in range(file.num_row_groups):
                    writer.write_table(file.read_row_group(group))
    return dest


def _meta_unit(root: Path, cut: dict, unit: str, start: int) -> dict:
    """One meta unit of `cut`, from row `start` of the joined file, in this fresh process."""
    from slip_data.graph.build import GraphOptions, filter_meta_file
    from slip_data.graph.partitions import Partitions, RowSlice, node_bounds

    parts = Partitions(root, **cut)
    bounds = node_bounds(parts, {})  # cut by the caller, read back
    rows = RowSlice("Joined", JOINED / "meta_Joined.parquet", start, cut["meta_rows"])
    status = Path("/proc/self/status").read_text()
    before = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    _, seconds, peak = _measured(filter_meta_file, parts, unit, rows, options=GraphOptions(),
                                 bounds=bounds)  # fmt: skip
    return {"seconds": seconds, "rss_before_mb": before, "unit_peak_mb": peak}


def _meta_units(graph_dir: Path, memory_gb: float) -> None:
    """The joined meta file as one unit, then in the row slices of `memory_gb`, each unit in its
    own process; prints each cut's units and whether their files hold the same rows."""
    import polars as pl
    import pyarrow.parquet as pq

    from slip_data.graph.partitions import Partitions, node_bounds, partition_counts

    path = _joined_meta(graph_dir)
    products = pq.ParquetFile(path).metadata.num_rows
    budget = partition_counts(reviews=1, products=products, memory_gb=memory_gb)
    frames = {}
    for name, meta_rows in (("whole file", products), (f"{memory_gb:g} GB", budget["meta_rows"])):
        root = JOINED / name.replace(" ", "-")
        shutil.rmtree(root, ignore_errors=True)
        cut = budget | {"meta_rows": meta_rows}
        parts = Partitions(root, **cut)
        node_bounds(parts, {"Joined": pl.scan_parquet(path)})
        units = parts.row_slices({"Joined": path}, meta_rows)
        rows = []
        for unit, each in units.items():
            args = ["--meta-unit", str(root), json.dumps(cut), unit, str(each.start)]
            rows.append(_measure(args, script=__file__))
        peaks = [row["unit_peak_mb"] for row in rows]
        print(
            f"{name}: {products:,} products, R = {cut['node_ranges']}, {len(units)} units of at "
            f"most {meta_rows:,} rows: peak RSS of a unit's process {max(peaks):,.0f} MB largest, "
            f"{statistics.mean(peaks):,.0f} MB mean, from {rows[0]['rss_before_mb']:,.0f} MB at "
            f"the unit's start; {sum(row['seconds'] for row in rows):.1f} s in all",
            flush=True,
        )
        frames[name] = [
            pl.read_parquet([file(unit, index) for unit in units])
            for index in range(cut["node_ranges"])
            for file in (parts.id_file, parts.node_file)
        ]
    whole, sliced = frames.values()
    same = all(a.equals(b) for a, b in zip(whole, sliced, strict=True))
    print(f"the slices' files hold the whole file's rows, in order: {same}")


def _per_step(row: dict, steps: tuple[str, ...] = STEPS) -> None:
    """Per step: units, and the mean and largest time and peak RSS of a unit."""
    by_step = defaultdict(list)
    for unit in row["units"]:
        by_step[unit["step"]].append(unit)
    for step in steps:
        units = by_step[step]
        if not units:
            continue
        seconds = [unit["seconds"] for unit in units]
        peaks = [unit["peak_rss_mb"] for unit in units]
        print(
            f"    {step:<13} {len(units):>3} units: {statistics.mean(seconds):6.2f} s mean, "
            f"{max(seconds):6.2f} s largest, {sum(seconds):7.2f} s in all; peak RSS "
            f"{statistics.mean(peaks):,.0f} MB mean, {max(peaks):,.0f} MB largest"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2", help="comma list; the first is the anchor")
    parser.add_argument("--memory-gb", type=float, default=2.0, help="the stage's --memory-gb")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--meta-file", action="store_true", help="one large meta file's units")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--meta-unit", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        graph_dir, processes, memory_gb = args.child
        print(json.dumps(_child(Path(graph_dir), int(processes), float(memory_gb))))
        return
    if args.meta_unit:
        root, cut, unit, start = args.meta_unit
        print(json.dumps(_meta_unit(Path(root), json.loads(cut), unit, int(start))))
        return

    graph_dir = _prepared(args.memory_gb)
    if args.meta_file:
        _meta_units(graph_dir, args.memory_gb)
        return
    rows = []
    for processes in [int(p) for p in args.processes.split(",")]:
        child = ["--child", str(graph_dir), str(processes), str(args.memory_gb)]
        row = _measure(child, script=__file__)
        row["largest_unit_mb"] = max(unit["peak_rss_mb"] for unit in row["units"])
        rows.append(row)
        anchor = rows[0]
        print(
            f"--processes {processes}: {row['reviews']:,} reviews, U, K, R = "
            f"{row['partitions']['users']}, {row['partitions']['key_ranges']}, "
            f"{row['partitions']['node_ranges']}: {row['seconds']:.1f} s in stage "
            f"({row['seconds'] / anchor['seconds']:.2f}x the anchor's), driver peak RSS "
            f"{row['driver_peak_rss_mb']:,.0f} MB, largest unit's {row['largest_unit_mb']:,.0f} "
            f"MB; same bytes as the anchor: "
            f"{row['outputs_sha256'] == anchor['outputs_sha256']}",
            flush=True,
        )
        _per_step(row)
        for step in row["driver"]:
            print(
                f"    driver: {step['step']:<17} {step['seconds']:6.2f} s, peak RSS "
                f"{step['peak_rss_mb']:,.0f} MB"
            )
        print(f"    partitions folder after the pair step: {row['partitions_mb']:,.0f} MB")
    if args.out:
        args.out.write_text(json.dumps({"memory_gb": args.memory_gb, "rows": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
