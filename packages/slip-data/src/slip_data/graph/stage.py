"""Graph stage driver: parse each raw file once (cached), build, write atomically, mark done."""

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from slip_data.atomic import atomic_path, remove_stale_temps, write_json
from slip_data.graph.build import GraphOptions, build_graph, top_reviews
from slip_data.graph.partitions import Partitions, partition_counts
from slip_data.graph.read import parse_to_parquet
from slip_data.progress import item_progress

DONE_FILE = "graph.json"
PARTITIONS = "partitions"  # the pair step's work units; removed once the stage is done


@dataclass(frozen=True)
class RawCategory:
    """The two raw files of one category, wherever the fetch stage put them."""

    name: str
    meta: Path
    reviews: Path


def _fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _parsed(raw: Path, kind: str, dest: Path) -> dict:
    """Parse `raw` into `dest` unless a parse of the same raw file is already there."""
    stamp = dest.with_suffix(".json")
    source = _fingerprint(raw)
    if dest.exists() and stamp.exists():
        previous = json.loads(stamp.read_text())
        if previous.get("source") == source:
            return previous["report"]
    report = parse_to_parquet(raw, kind, dest).as_dict()
    write_json(stamp, {"source": source, "report": report})
    return report


def _write_reviews(
    reviews: Iterable[pl.LazyFrame], nodes: pl.DataFrame, *, max_reviews: int, dest: Path
) -> None:
    """The kept review texts, one review file at a time so memory holds one file's texts."""
    schema = pa.schema([("graph_id", pa.int64()), ("reviews", pa.large_list(pa.large_string()))])
    with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for frame in reviews:
            writer.write_table(top_reviews(frame, nodes, max_reviews).to_arrow().cast(schema))


def run_graph(
    raws: Sequence[RawCategory], graph_dir: Path, options: GraphOptions, *, quiet: bool = False
) -> dict:
    """Run the stage; returns the summary also written to graph.json (the done marker)."""
    graph_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(graph_dir)
    inputs = [
        {"category": r.name, "meta": _fingerprint(r.meta), "reviews": _fingerprint(r.reviews)}
        for r in raws
    ]
    done = graph_dir / DONE_FILE
    if done.exists():
        previous = json.loads(done.read_text())
        if previous.get("inputs") == inputs and previous.get("options") == options.as_dict():
            shutil.rmtree(graph_dir / PARTITIONS, ignore_errors=True)  # if killed right after
            return previous

    parsed_dir = graph_dir / "parsed"
    jobs = {
        f"{kind}:{raw.name}": (path, kind, parsed_dir / f"{kind}_{raw.name}.parquet")
        for raw in raws
        for kind, path in (("meta", raw.meta), ("review", raw.reviews))
    }
    reports: dict[str, dict] = {}
    # Threads suffice: inflating, JSON parsing and Parquet writing all run outside the GIL.
    with item_progress(quiet) as progress, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        task = progress.add_task("parse raw files", total=len(jobs))
        futures = {pool.submit(_parsed, *job): name for name, job in jobs.items()}
        for future in as_completed(futures):
            reports[futures[future]] = future.result()
            progress.advance(task)
    reports = {name: reports[name] for name in jobs}

    meta = pl.concat(
        [
            pl.scan_parquet(parsed_dir / f"meta_{r.name}.parquet").with_columns(
                category=pl.lit(r.name)
            )
            for r in raws
        ]
    )
    reviews = {r.name: pl.scan_parquet(parsed_dir / f"review_{r.name}.parquet") for r in raws}
    users, key_ranges = partition_counts(
        sum(reports[f"review:{r.name}"]["kept"] for r in raws), options.memory_gb
    )
    parts = Partitions.open(
        graph_dir / PARTITIONS,
        users=users,
        key_ranges=key_ranges,
        made_for={"inputs": inputs, "options": options.as_dict()},
    )
    nodes, edges, counts = build_graph(meta, reviews, options, parts=parts, quiet=quiet)
    for name, frame in (("nodes", nodes), ("edges", edges)):
        with atomic_path(graph_dir / f"{name}.parquet") as tmp:
            frame.write_parquet(tmp)
    _write_reviews(
        reviews.values(), nodes, max_reviews=options.max_reviews, dest=graph_dir / "reviews.parquet"
    )
    summary = {"inputs": inputs, "options": options.as_dict(), "counts": counts, "files": reports}
    summary["partitions"] = {"users": users, "key_ranges": key_ranges}
    write_json(done, summary)
    shutil.rmtree(parts.root)
    return summary
