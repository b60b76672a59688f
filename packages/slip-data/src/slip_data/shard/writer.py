"""Shard stage: graph nodes plus crawled images to the Parquet shards of docs/shard-format.md.

Everything is derived from the graph and crawl outputs in a fixed order, so a rerun after any
interruption writes the same bytes; the manifest goes last and marks the shards complete.
"""

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from slip_data import __version__
from slip_data.atomic import atomic_path, remove_stale_temps, write_json
from slip_data.bounds import Bounds
from slip_data.graph.build import SPLITS
from slip_data.homophily import label_homophily
from slip_data.option_fields import check_fields, option
from slip_data.progress import item_progress
from slip_data.shard_contract import FORMAT, FORMAT_VERSION, MANIFEST, NODE_COLUMNS, file_sha256

NODE_SCHEMA = pl.from_arrow(pa.schema(NODE_COLUMNS).empty_table()).schema  # as polars types
ROW_GROUP_ROWS = 1024


@dataclass(frozen=True)
class ShardOptions:
    rows_per_shard: Annotated[int, Bounds(at_least=1)] = option(
        10_000, "Products per node shard file."
    )
    keep_missing_images: bool = option(False, "Keep products whose image failed (image null).")

    def __post_init__(self) -> None:
        check_fields(self)


ImageLoader = Callable[[pl.Series], pl.DataFrame]
"""Stored image sha256s -> a frame (sha256, image) holding each of them once."""

TextLoader = Callable[[pl.Series], pl.DataFrame]
"""graph ids -> a frame (graph_id, parent_asin, title, text, reviews) of those nodes."""

TEXT_COLUMNS = ("parent_asin", "title", "text", "reviews")
"""Node columns a node file needs but the plan does not: loaded file by file."""

DONE_DIR = ".done"  # one record per written node file: a rerun or a later unit reuses it


def _write_parquet(frame: pl.DataFrame, target: Path | io.BytesIO, compression: str) -> None:
    """pyarrow's writer: its bytes follow the values alone, where polars' also follow how the
    frame lies in memory (a list column sliced from a larger frame writes other bytes), and a
    rerun, a work unit and a plain build must write the same bytes."""
    table = frame.to_arrow()
    pq.write_table(table, target, compression=compression, row_group_size=ROW_GROUP_ROWS)


def _write(frame: pl.DataFrame, path: Path, kind: str) -> dict:
    with atomic_path(path) as tmp:
        _write_parquet(frame, tmp, "zstd")
    return {
        "path": path.name,
        "kind": kind,
        "rows": frame.height,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
    }


def _join_images(nodes: pl.DataFrame, results: pl.DataFrame) -> pl.DataFrame:
    """Attach each node's crawl result (not the image bytes); a URL never crawled gets status
    not_crawled."""
    crawled = results.select(
        image_url="url",
        image_status="status",
        image_sha256="sha256",
        width=pl.col("width").cast(pl.Int32),
        height=pl.col("height").cast(pl.Int32),
    )
    return nodes.join(crawled, on="image_url", how="left").with_columns(
        pl.col("image_status").fill_null("not_crawled")
    )


@dataclass(frozen=True)
class ShardPlan:
    """Everything the shards hold but the image bytes and the texts, rows in file order.

    Cheap to derive from the graph's small columns and the crawl statuses, so every work unit
    derives it itself and then loads only the texts and images of its own node files.
    """

    table: pl.DataFrame  # graph_id and NODE_SCHEMA without `image` and the TEXT_COLUMNS
    edges: pl.DataFrame
    labels: pl.DataFrame
    label_names: list[str]
    crawl_status: dict[str, int]
    dropped_images: dict[str, int]
    rows_per_shard: int

    @property
    def num_files(self) -> int:
        return max(1, -(-self.table.height // self.rows_per_shard))

    def rows(self, index: int) -> pl.DataFrame:
        return self.table.slice(index * self.rows_per_shard, self.rows_per_shard)


def plan_shards(
    nodes: pl.DataFrame, edges: pl.DataFrame, results: pl.DataFrame, *, options: ShardOptions
) -> ShardPlan:
    """Keep, number and label the nodes; remap the edges to the new node ids. `nodes` needs
    graph_id, category, label, split and image_url; other columns are dropped."""
    joined = _join_images(nodes, results)
    crawl_status = dict(sorted(joined.group_by("image_status").len().iter_rows()))
    dropped_images = {}
    if not options.keep_missing_images:
        missing = joined.filter(pl.col("image_status") != "ok")
        dropped_images = dict(sorted(missing.group_by("image_status").len().iter_rows()))
        joined = joined.filter(pl.col("image_status") == "ok")

    label_names = sorted(joined["label"].unique().to_list())
    label_ids = pl.DataFrame(
        {"label": label_names, "label_id": range(len(label_names))},
        schema={"label": pl.String, "label_id": pl.Int32},
    )
    table = (
        joined.sort("graph_id")
        .with_columns(node_id=pl.int_range(pl.len(), dtype=pl.Int64))
        .join(label_ids, on="label", how="left")
        .with_columns(main_category="category", split=pl.col("split").cast(pl.String))
    )
    remap = table.select("graph_id", "node_id")
    final_edges = (
        edges.join(remap.rename({"graph_id": "src", "node_id": "src_id"}), on="src")
        .join(remap.rename({"graph_id": "dst", "node_id": "dst_id"}), on="dst")
        .select(src="src_id", dst="dst_id", weight=pl.col("weight").cast(pl.Int32))
        .sort("src", "dst")
    )
    planned = [name for name in NODE_SCHEMA if name not in ("image", *TEXT_COLUMNS)]
    table = table.select("graph_id", *[pl.col(name).cast(NODE_SCHEMA[name]) for name in planned])
    labels = (
        table.group_by("label_id", "label")
        .agg(
            count=pl.len().cast(pl.Int64),
            **{f"count_{s}": (pl.col("split") == s).sum().cast(pl.Int64) for s in SPLITS},
        )
        .sort("label_id")
    )
    return ShardPlan(
        table=table,
        edges=final_edges,
        labels=labels,
        label_names=label_names,
        crawl_status=crawl_status,
        dropped_images=dropped_images,
        rows_per_shard=options.rows_per_shard,
    )


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


def _rows_with_texts(plan: ShardPlan, index: int, texts: TextLoader) -> pl.DataFrame:
    """Node file `index`'s rows, every column but the image bytes, in NODE_SCHEMA order."""
    rows = plan.rows(index)
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
        task = progress.add_task("write shards", total=sum(plan.rows(i).height for i in indices))
        for index in indices:
            rows = _rows_with_texts(plan, index, texts)  # read once: to compare, then to write
            fingerprint = _fingerprint(rows)
            entry = _finished_entry(shards_dir, index, fingerprint)
            if entry is None:
                # a manifest must never list a file whose bytes are about to change
                (shards_dir / MANIFEST).unlink(missing_ok=True)
                stored = images(rows["image_sha256"].drop_nulls().unique())
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
    provenance: dict,
    texts: TextLoader,
    images: ImageLoader,
    quiet: bool = False,
) -> dict:
    """Write node files (those not written yet), edges, labels and last the manifest; returns
    the manifest."""
    shards_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(shards_dir)
    entries = write_node_files(
        plan, shards_dir, range(plan.num_files), texts=texts, images=images, quiet=quiet
    )
    files = [entries[index] for index in range(plan.num_files)]
    (shards_dir / MANIFEST).unlink(missing_ok=True)  # edges and labels may change too
    files.append(_write(plan.edges, shards_dir / "edges.parquet", "edges"))
    files.append(_write(plan.labels, shards_dir / "labels.parquet", "labels"))

    table = plan.table
    split_sizes = dict(table.group_by("split").len().iter_rows())
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "slip_data_version": __version__,
        "counts": {"nodes": table.height, "edges": plan.edges.height, "labels": plan.labels.height},
        "split_sizes": {s: split_sizes.get(s, 0) for s in SPLITS},
        "label_names": plan.label_names,
        "categories": sorted(table["main_category"].unique().to_list()),
        "edges_stored": "once per undirected pair, src < dst",
        "homophily": label_homophily(
            table["label_id"].to_numpy(), plan.edges["src"].to_numpy(), plan.edges["dst"].to_numpy()
        ),
        "crawl_status": plan.crawl_status,
        "dropped_images": plan.dropped_images,
        "files": files,
        "build": provenance | {"shard": asdict(options)},
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
