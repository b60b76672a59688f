"""Shard stage: graph nodes plus crawled images to the Parquet shards of docs/shard-format.md.

Everything is derived from the graph and crawl outputs in a fixed order, so a rerun after any
interruption writes the same bytes; the manifest goes last and marks the shards complete.
"""

import hashlib
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from slip_data import __version__
from slip_data.atomic import atomic_path, remove_stale_temps, write_json
from slip_data.bounds import Bounds
from slip_data.homophily import EdgeLabelCounts
from slip_data.option_fields import check_fields, option
from slip_data.parquet_groups import write_row_groups
from slip_data.progress import item_progress
from slip_data.shard.plan import ShardPlan
from slip_data.shard_contract import FORMAT, FORMAT_VERSION, MANIFEST, NODE_COLUMNS, file_sha256

NODE_SCHEMA = pl.from_arrow(pa.schema(NODE_COLUMNS).empty_table()).schema  # as polars types
ROW_GROUP_ROWS = 1024
EDGE_SCHEMA = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("weight", pa.int32())])
EDGE_ROW_GROUP_ROWS = 1 << 20
"""Larger than a node file's: a reader that opens the file holds its footer, which grows with
the row groups, and billions of edges in groups of 1,024 would make it gigabytes."""


@dataclass(frozen=True)
class ShardOptions:
    rows_per_shard: Annotated[int, Bounds(at_least=1)] = option(
        10_000, "Products per node shard file."
    )
    keep_missing_images: bool = option(False, "Keep products whose image failed (image null).")
    plan_memory_gb: Annotated[float, Bounds(above=0)] = option(
        2.0,
        "Memory (GB) one step of the shard plan may use: sets its buckets and node ranges, never "
        "the shards.",
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def as_dict(self) -> dict:
        """The options that decide the shards: `plan_memory_gb` only decides how the plan is cut."""
        return {k: v for k, v in asdict(self).items() if k != "plan_memory_gb"}


ImageLoader = Callable[[pl.DataFrame], pl.DataFrame]
"""A node file's plan rows -> a frame (sha256, image) holding each of their images once."""

TextLoader = Callable[[pl.Series], pl.DataFrame]
"""graph ids -> a frame (graph_id, parent_asin, title, text, reviews) of those nodes."""

DONE_DIR = ".done"  # one record per written node file: a rerun or a later unit reuses it


def _write_parquet(frame: pl.DataFrame, target: Path | io.BytesIO, compression: str) -> None:
    """pyarrow's writer: its bytes follow the values alone, where polars' also follow how the
    frame lies in memory (a list column sliced from a larger frame writes other bytes), and a
    rerun, a work unit and a plain build must write the same bytes."""
    table = frame.to_arrow()
    pq.write_table(table, target, compression=compression, row_group_size=ROW_GROUP_ROWS)


def _entry(path: Path, kind: str, rows: int) -> dict:
    """The manifest's entry of a written file."""
    return {
        "path": path.name,
        "kind": kind,
        "rows": rows,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
    }


def _write(frame: pl.DataFrame, path: Path, kind: str) -> dict:
    with atomic_path(path) as tmp:
        _write_parquet(frame, tmp, "zstd")
    return _entry(path, kind, frame.height)


def _fingerprint(rows: pl.DataFrame) -> str:
    """What a node file holds, images named by sha256: equal fingerprints, equal files."""
    buffer = io.BytesIO()
    _write_parquet(rows, buffer, "none")
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _node_file(shards_dir: Path, index: int) -> Path:
    return shards_dir / f"nodes-{index:05d}.parquet"


def _done_record(shards_dir: Path, index: int) -> Path:
    return shards_dir / DONE_DIR / f"nodes-{index:05d}.json"


def _finished_entry(shards_dir: Path, index: int, fingerprint: str) -> dict | None:
    """The manifest entry of node file `index` if a run already wrote these very rows."""
    try:
        record = json.loads(_done_record(shards_dir, index).read_text())
        path = _node_file(shards_dir, index)
        if record["fingerprint"] == fingerprint and path.stat().st_size == record["entry"]["bytes"]:
            return record["entry"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or damaged record, or missing file: write the file again
    return None


def _check_order(src: np.ndarray, dst: np.ndarray, after: tuple[int, int]) -> None:
    """The graph stage writes its edges sorted by (src, dst), and the node ids keep that order:
    a file out of order would make edges.parquet break its contract unnoticed."""
    later = (np.diff(src) > 0) | ((src[1:] == src[:-1]) & (np.diff(dst) > 0))
    if not later.all() or (src.size and (int(src[0]), int(dst[0])) <= after):
        raise ValueError("the graph's edges are not sorted by (src, dst): build the graph again")


def _kept_edges(
    graph_edges: Path, *, node_ids: np.ndarray, counts: EdgeLabelCounts
) -> Iterator[pl.DataFrame]:
    """The graph's edges between kept nodes in node ids, one batch at a time, checked in order
    and added to `counts` (for the homophily): no sort, as the graph's order survives the
    monotone map."""
    after = (-1, -1)
    source = pq.ParquetFile(graph_edges)
    for batch in source.iter_batches(EDGE_ROW_GROUP_ROWS, columns=EDGE_SCHEMA.names):
        src = node_ids[batch.column("src").to_numpy()]
        dst = node_ids[batch.column("dst").to_numpy()]
        kept = (src >= 0) & (dst >= 0)
        src, dst = src[kept], dst[kept]
        _check_order(src, dst, after)
        if src.size:
            after = (int(src[-1]), int(dst[-1]))
        counts.add(src, dst)
        weight = batch.column("weight").to_numpy()[kept].astype(np.int32)
        yield pl.DataFrame({"src": src, "dst": dst, "weight": weight})


def write_edges(
    graph_edges: Path, path: Path, *, node_ids: np.ndarray, counts: EdgeLabelCounts
) -> dict:
    """Write the graph's edges between kept nodes in node ids (_kept_edges) in whole row groups
    of EDGE_ROW_GROUP_ROWS, wherever the batches end, so the bytes follow the edges alone (no
    edges: one empty group); returns the manifest entry."""
    edges = _kept_edges(graph_edges, node_ids=node_ids, counts=counts)
    count = write_row_groups(
        path,
        edges,
        schema=EDGE_SCHEMA,
        rows=EDGE_ROW_GROUP_ROWS,
        compression="zstd",
        empty_group=True,
    )
    return _entry(path, "edges", count)


def _rows_with_texts(rows: pl.DataFrame, texts: TextLoader) -> pl.DataFrame:
    """A node file's plan `rows` with their texts, every column but the image bytes, in
    NODE_SCHEMA order."""
    found = texts(rows["graph_id"]).with_columns(
        pl.col("reviews").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )
    joined = rows.join(found, on="graph_id", how="left", maintain_order="left")
    return joined.select(
        [pl.col(name).cast(dtype) for name, dtype in NODE_SCHEMA.items() if name != "image"]
    )


def write_node_files(
    plan: ShardPlan,
    shards_dir: Path,
    indices: Sequence[int],
    *,
    texts: TextLoader,
    images: ImageLoader,
    quiet: bool = False,
) -> dict[int, dict]:
    """Write the node files `indices` (skipping those already written with the same rows);
    returns index -> manifest entry. Work units call this on disjoint indices."""
    shards_dir.mkdir(parents=True, exist_ok=True)
    entries = {}
    with item_progress(quiet) as progress:
        task = progress.add_task("write shards", total=sum(plan.file_rows(i) for i in indices))
        for index in indices:
            planned = plan.rows(index)
            rows = _rows_with_texts(planned, texts)  # read once: to compare, then to write
            fingerprint = _fingerprint(rows)
            entry = _finished_entry(shards_dir, index, fingerprint)
            if entry is None:
                # a manifest must never list a file whose bytes are about to change
                (shards_dir / MANIFEST).unlink(missing_ok=True)
                stored = images(planned)
                chunk = rows.join(
                    stored.rename({"sha256": "image_sha256"}),
                    on="image_sha256",
                    how="left",
                    maintain_order="left",
                ).select(list(NODE_SCHEMA))
                entry = _write(chunk, _node_file(shards_dir, index), "nodes")
                record = {"fingerprint": fingerprint, "entry": entry}
                write_json(_done_record(shards_dir, index), record)
            entries[index] = entry
            progress.advance(task, rows.height)
    return entries


def write_shards(
    plan: ShardPlan,
    shards_dir: Path,
    options: ShardOptions,
    *,
    edges: Path,
    provenance: dict,
    texts: TextLoader,
    images: ImageLoader,
    quiet: bool = False,
) -> dict:
    """Write node files (those not written yet), edges (from the graph's `edges`), labels and
    last the manifest; returns the manifest."""
    shards_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(shards_dir)
    entries = write_node_files(
        plan, shards_dir, range(plan.num_files), texts=texts, images=images, quiet=quiet
    )
    files = [entries[index] for index in range(plan.num_files)]
    (shards_dir / MANIFEST).unlink(missing_ok=True)  # edges and labels may change too
    counts = EdgeLabelCounts(plan.label_ids())
    written = write_edges(
        edges, shards_dir / "edges.parquet", node_ids=plan.node_ids(), counts=counts
    )
    files.append(written)
    files.append(_write(plan.labels, shards_dir / "labels.parquet", "labels"))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "slip_data_version": __version__,
        "counts": {"nodes": plan.nodes, "edges": written["rows"], "labels": plan.labels.height},
        "split_sizes": plan.split_sizes,
        "label_names": plan.label_names,
        "categories": plan.categories,
        "edges_stored": "once per undirected pair, src < dst",
        "homophily": counts.homophily(),
        "crawl_status": plan.crawl_status,
        "dropped_images": plan.dropped_images,
        "files": files,
        "build": provenance | {"shard": options.as_dict()},
    }
    write_json(shards_dir / MANIFEST, manifest)
    wanted = {entry["path"] for entry in files} | {MANIFEST}
    for stale in shards_dir.glob("*.parquet"):
        if stale.name not in wanted:
            stale.unlink()
    for record in (shards_dir / DONE_DIR).glob("*.json"):
        if f"{record.stem}.parquet" not in wanted:
            record.unlink()
    return manifest
