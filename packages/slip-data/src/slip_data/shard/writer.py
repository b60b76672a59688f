"""Shard stage: graph nodes plus crawled images to the Parquet shards of docs/shard-format.md.

Everything is derived from the graph and crawl outputs in a fixed order, so a rerun after any
interruption writes the same bytes; the manifest goes last and marks the shards complete.
"""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from slip_data import SHARD_FORMAT_VERSION, __version__
from slip_data.atomic import atomic_path, remove_stale_temps, write_json
from slip_data.graph.build import SPLITS
from slip_data.progress import item_progress

MANIFEST = "manifest.json"
NODE_SCHEMA = {
    "node_id": pl.Int64,
    "parent_asin": pl.String,
    "main_category": pl.String,
    "label": pl.String,
    "label_id": pl.Int32,
    "title": pl.String,
    "text": pl.String,
    "reviews": pl.List(pl.String),
    "image": pl.Binary,
    "image_sha256": pl.String,
    "width": pl.Int32,
    "height": pl.Int32,
    "split": pl.String,
}
ROW_GROUP_ROWS = 1024


@dataclass(frozen=True)
class ShardOptions:
    rows_per_shard: int = 10_000
    keep_missing_images: bool = False

    def __post_init__(self) -> None:
        if self.rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be at least 1, got {self.rows_per_shard}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write(frame: pl.DataFrame, path: Path, kind: str) -> dict:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return {
        "path": path.name,
        "kind": kind,
        "rows": frame.height,
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }


def _join_images(nodes: pl.DataFrame, images: pl.DataFrame) -> pl.DataFrame:
    """Attach each node's crawl result; a URL never crawled gets status not_crawled."""
    crawled = images.select(
        image_url="url",
        image_status="status",
        image="image",
        image_sha256="sha256",
        width=pl.col("width").cast(pl.Int32),
        height=pl.col("height").cast(pl.Int32),
    )
    return nodes.join(crawled, on="image_url", how="left").with_columns(
        pl.col("image_status").fill_null("not_crawled")
    )


def _chunks(frame: pl.DataFrame, rows: int) -> Iterator[pl.DataFrame]:
    for start in range(0, max(frame.height, 1), rows):
        yield frame.slice(start, rows)


def run_shard(
    nodes: pl.DataFrame,
    edges: pl.DataFrame,
    images: pl.DataFrame,
    shards_dir: Path,
    options: ShardOptions,
    provenance: dict,
    quiet: bool = False,
) -> dict:
    """Write node shards, edges, labels and the manifest; returns the manifest."""
    shards_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(shards_dir)
    joined = _join_images(nodes, images)
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
    table = table.select([pl.col(name).cast(dtype) for name, dtype in NODE_SCHEMA.items()])
    labels = (
        table.group_by("label_id", "label")
        .agg(
            count=pl.len().cast(pl.Int64),
            **{f"count_{s}": (pl.col("split") == s).sum().cast(pl.Int64) for s in SPLITS},
        )
        .sort("label_id")
    )

    files = []
    chunks = list(_chunks(table, options.rows_per_shard))
    with item_progress(quiet) as progress:
        task = progress.add_task("write shards", total=table.height)
        for index, chunk in enumerate(chunks):
            files.append(_write(chunk, shards_dir / f"nodes-{index:05d}.parquet", "nodes"))
            progress.advance(task, chunk.height)
    files.append(_write(final_edges, shards_dir / "edges.parquet", "edges"))
    files.append(_write(labels, shards_dir / "labels.parquet", "labels"))

    split_sizes = dict(table.group_by("split").len().iter_rows())
    manifest = {
        "format": "slip-shards",
        "format_version": SHARD_FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "slip_data_version": __version__,
        "counts": {"nodes": table.height, "edges": final_edges.height, "labels": labels.height},
        "split_sizes": {s: split_sizes.get(s, 0) for s in SPLITS},
        "label_names": label_names,
        "categories": sorted(table["main_category"].unique().to_list()),
        "edges_stored": "once per undirected pair, src < dst",
        "crawl_status": crawl_status,
        "dropped_images": dropped_images,
        "files": files,
        "build": provenance | {"shard": asdict(options)},
    }
    write_json(shards_dir / MANIFEST, manifest)
    wanted = {entry["path"] for entry in files} | {MANIFEST}
    for stale in shards_dir.glob("*.parquet"):
        if stale.name not in wanted:
            stale.unlink()
    return manifest


class ShardFormatError(ValueError):
    """Shards that are missing, of another format version, or not whole; one-line message."""


def read_manifest(shards_dir: Path) -> tuple[Path, dict]:
    """The folder holding the shards (`shards_dir` or `shards_dir/shards`) and its manifest."""
    for folder in (shards_dir, shards_dir / "shards"):
        path = folder / MANIFEST
        if path.is_file():
            break
    else:
        raise ShardFormatError(f"no {MANIFEST} in {shards_dir} or {shards_dir / 'shards'}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ShardFormatError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.get("format_version") != SHARD_FORMAT_VERSION:
        raise ShardFormatError(
            f"{path}: shard format version {manifest.get('format_version')!r}, "
            f"this slip-data reads version {SHARD_FORMAT_VERSION}"
        )
    return folder, manifest
