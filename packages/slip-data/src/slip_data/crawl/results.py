"""Results as numbered Parquet part files, each written atomically; the latest row per URL wins.

Appending new parts instead of rewriting old ones keeps a kill -9 from costing more than the
results not yet written, and a rerun from re-fetching what is already settled.
"""

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from slip_data.atomic import atomic_path

log = logging.getLogger(__name__)

SCHEMA: dict[str, Any] = {
    "url": pl.String,
    "status": pl.String,
    "error": pl.String,
    "attempts": pl.Int64,
    "source_sha256": pl.String,
    "sha256": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
    "image": pl.Binary,
}
_PART = re.compile(r"part-(\d{6,})\.parquet")


def parts_dir(crawl_dir: Path) -> Path:
    return Path(crawl_dir) / "parts"


def part_files(crawl_dir: Path) -> list[tuple[int, Path]]:
    """(seq, path) of every part file, oldest first."""
    folder = parts_dir(crawl_dir)
    if not folder.is_dir():
        return []
    found = ((_PART.fullmatch(path.name), path) for path in folder.iterdir())
    return sorted((int(match.group(1)), path) for match, path in found if match)


def next_seq(crawl_dir: Path) -> int:
    """First free part number; counts unreadable parts too so none is ever overwritten."""
    existing = part_files(crawl_dir)
    return existing[-1][0] + 1 if existing else 0


def write_part(crawl_dir: Path, seq: int, rows: Sequence[dict[str, Any]]) -> None:
    frame = pl.DataFrame(list(rows), schema=SCHEMA)
    with atomic_path(parts_dir(crawl_dir) / f"part-{seq:06d}.parquet") as tmp:
        frame.write_parquet(tmp)


def read_latest(crawl_dir: Path, columns: Sequence[str] = tuple(SCHEMA)) -> pl.DataFrame:
    """Latest row per URL across parts; an unreadable part is reported in one line and skipped."""
    schema = {name: SCHEMA[name] for name in columns}
    frames = []
    for _, path in part_files(crawl_dir):
        try:
            frames.append(pl.read_parquet(path, columns=list(columns)).cast(schema))
        except Exception as exc:  # any damage to one file must not lose the others
            reason = " ".join(str(exc).split())[:200]
            log.warning(
                "skipping unreadable crawl part %s: %s: %s", path, type(exc).__name__, reason
            )
    if not frames:
        return pl.DataFrame(schema=schema)
    rows = pl.concat(frames)
    latest = rows.unique(subset="url", keep="last", maintain_order=True)
    if "image" not in schema:
        return latest
    # Identical images are stored once: the other rows name the stored image by its sha256.
    stored = rows.filter(pl.col("image").is_not_null()).unique("sha256", maintain_order=True)
    return latest.drop("image").join(
        stored.select("sha256", "image"), on="sha256", how="left", maintain_order="left"
    )


def load_results(crawl_dir: Path) -> pl.DataFrame:
    """One row per URL (latest result): url, status, error, attempts, source_sha256, sha256,
    width, height, image.

    `attempts` counts tries over all runs; `image` holds the stored JPEG, only when status is ok;
    URLs that served identical bytes share one stored image (same `sha256`).
    """
    return read_latest(crawl_dir)
