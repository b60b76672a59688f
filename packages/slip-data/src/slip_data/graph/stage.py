"""Graph stage driver: parse each raw file once (cached), build, write atomically, mark done."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from slip_data.atomic import atomic_path, remove_stale_temps, write_json
from slip_data.graph.build import GraphOptions, build_graph
from slip_data.graph.read import parse_to_parquet
from slip_data.progress import item_progress

DONE_FILE = "graph.json"


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


def run_graph(
    raws: Sequence[RawCategory], graph_dir: Path, options: GraphOptions, quiet: bool = False
) -> dict:
    """Run the stage; returns the summary also written to graph.json (the done marker)."""
    graph_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(graph_dir)
    inputs = [{"category": r.name, "meta": _fingerprint(r.meta), "reviews": _fingerprint(r.reviews)}
              for r in raws]  # fmt: skip
    done = graph_dir / DONE_FILE
    if done.exists():
        previous = json.loads(done.read_text())
        if previous.get("inputs") == inputs and previous.get("options") == options.as_dict():
            return previous

    parsed_dir = graph_dir / "parsed"
    reports: dict[str, dict] = {}
    with item_progress(quiet) as progress:
        task = progress.add_task("parse raw files", total=2 * len(raws))
        for raw in raws:
            for kind, path in (("meta", raw.meta), ("review", raw.reviews)):
                dest = parsed_dir / f"{kind}_{raw.name}.parquet"
                reports[f"{kind}:{raw.name}"] = _parsed(path, kind, dest)
                progress.advance(task)

    meta = pl.concat(
        [
            pl.scan_parquet(parsed_dir / f"meta_{r.name}.parquet").with_columns(
                category=pl.lit(r.name)
            )
            for r in raws
        ]
    )
    reviews = pl.concat([pl.scan_parquet(parsed_dir / f"review_{r.name}.parquet") for r in raws])
    nodes, edges, counts = build_graph(meta, reviews, options)
    for name, frame in (("nodes", nodes), ("edges", edges)):
        with atomic_path(graph_dir / f"{name}.parquet") as tmp:
            frame.write_parquet(tmp)
    summary = {"inputs": inputs, "options": options.as_dict(), "counts": counts, "files": reports}
    write_json(done, summary)
    return summary
