"""Graph stage driver: parse each raw file once (cached), build, write atomically, mark done."""

import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

from slip_data.atomic import remove_stale_temps, write_json
from slip_data.distribute import UnitOptions, engine_session, run_units
from slip_data.graph.build import GraphOptions, build_graph
from slip_data.graph.partitions import Partitions, partition_counts
from slip_data.graph.read import parse_to_parquet
from slip_data.progress import item_progress

DONE_FILE = "graph.json"
PARTITIONS = "partitions"  # the build's work units; removed once the stage is done


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


def _parse(jobs: list[tuple[Path, str, Path]], units: UnitOptions, *, quiet: bool) -> list[dict]:
    """Each raw file's parse report, in order. On Ray or in local processes each file is a work
    unit, so the parse spreads over machines as the build's units do; in this process, one thread
    per core is enough, as inflating, JSON parsing and Parquet writing run outside the GIL."""
    if units.engine == "ray" or units.processes > 1:
        cut = replace(units, num_shards=len(jobs))
        done = run_units(_parsed, jobs, cut, name="graph parse", quiet=quiet)
        return [done[index] for index in range(len(jobs))]
    reports: dict[int, dict] = {}
    with item_progress(quiet) as progress, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        task = progress.add_task("parse raw files", total=len(jobs))
        futures = {pool.submit(_parsed, *job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            reports[futures[future]] = future.result()
            progress.advance(task)
    return [reports[index] for index in range(len(jobs))]


def run_graph(
    raws: Sequence[RawCategory],
    graph_dir: Path,
    options: GraphOptions,
    *,
    units: UnitOptions = UnitOptions(),  # noqa: B008 - frozen, so sharing it is safe
    quiet: bool = False,
) -> dict:
    """Run the stage, its work units on the engine of `units` (their number comes from the
    partition plan, not `units.num_shards`); returns the summary also written to graph.json (the
    done marker)."""
    if units.shard_index is not None:
        raise ValueError(
            "--shard-index runs one crawl or shard unit; the graph stage runs all of its units "
            "(--engine, --processes)"
        )
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
    metas = {r.name: parsed_dir / f"meta_{r.name}.parquet" for r in raws}
    reviews = {r.name: parsed_dir / f"review_{r.name}.parquet" for r in raws}
    with engine_session(units):  # Ray starts once, for the parse and the build
        reports = dict(zip(jobs, _parse(list(jobs.values()), units, quiet=quiet), strict=True))
        cut = partition_counts(
            reviews=sum(reports[f"review:{r.name}"]["kept"] for r in raws),
            products=sum(reports[f"meta:{r.name}"]["kept"] for r in raws),
            memory_gb=options.memory_gb,
        )
        made_for = {"inputs": inputs, "options": options.as_dict()}
        parts = Partitions.open(graph_dir / PARTITIONS, cut, made_for=made_for)
        counts = build_graph(
            metas, reviews, options, parts=parts, out=graph_dir, units=units, quiet=quiet
        )
    summary = {"inputs": inputs, "options": options.as_dict(), "counts": counts, "files": reports}
    summary["partitions"] = cut
    write_json(done, summary)
    shutil.rmtree(parts.root)
    return summary
