"""Results as numbered Parquet part files, each written atomically; the latest row per URL wins.

Appending new parts instead of rewriting old ones keeps a kill -9 from costing more than the
results not yet written, and a rerun from re-fetching what is already settled.
"""

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from slip_data.atomic import atomic_path, remove_stale_temps, write_json

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


UNITS_DIR = "units"
HASHED_URLS = 1 << 16


def unit_dir(crawl_root: Path, index: int, num_units: int) -> Path:
    """Where work unit `index` of `num_units` keeps its parts; one unit uses the root itself."""
    if num_units == 1:
        return Path(crawl_root)
    return Path(crawl_root) / UNITS_DIR / f"{index:05d}-of-{num_units:05d}"


def result_dirs(crawl_root: Path) -> list[Path]:
    """The root and every unit folder, whatever number of units each run used."""
    units = Path(crawl_root) / UNITS_DIR
    return [Path(crawl_root), *(sorted(units.iterdir()) if units.is_dir() else [])]


def url_list_sha256(urls: Sequence[str]) -> str:
    """Names a URL list, its order included: ranges of one list can be compared across runs.
    Hashed a slice at a time, so no second copy of a long list is made."""
    digest = hashlib.sha256()
    for start in range(0, len(urls), HASHED_URLS):
        digest.update(json.dumps(list(urls[start : start + HASHED_URLS])).encode())
    return digest.hexdigest()


@dataclass(frozen=True, kw_only=True)
class UnitSpan:
    """A work unit's URLs, `urls[start:stop]` of the list named `urls_sha256`, whose earlier
    results lie under `root` (the root's own parts and every unit folder's)."""

    root: Path
    urls_sha256: str
    start: int
    stop: int


MADE_FOR = "made-for.json"
UNKNOWN = {"urls_sha256": None}  # parts from before their folder kept a record: any URL


def _made_for(folder: Path) -> list[dict]:
    """The URL ranges `folder`'s parts were written for. The root (where a crawl without units
    writes, for any URL) has no record, nor has a folder from before the records: their parts
    may hold any URL."""
    try:
        return json.loads((folder / MADE_FOR).read_text())["ranges"]
    except FileNotFoundError:
        return [UNKNOWN] if part_files(folder) else []
    except (OSError, ValueError, KeyError, TypeError):
        return [UNKNOWN]


def record_span(folder: Path, span: UnitSpan) -> None:
    """Add `span` to the ranges `folder` is written for, before this run writes a part there."""
    made_for = _made_for(folder)
    entry = {"urls_sha256": span.urls_sha256, "start": span.start, "stop": span.stop}
    if entry not in made_for:
        remove_stale_temps(folder, recursive=False, of=MADE_FOR)
        write_json(folder / MADE_FOR, {"ranges": [*made_for, entry]})


def _may_hold(folder: Path, span: UnitSpan) -> bool:
    return any(
        made["urls_sha256"] != span.urls_sha256
        or (made["start"] < span.stop and span.start < made["stop"])
        for made in _made_for(folder)
    )


def span_parts(span: UnitSpan) -> list[Path]:
    """The part files that can hold a result of `span`'s URLs: a unit folder written for
    another range of the same list holds none of them, so only its record is read."""
    folders = [folder for folder in result_dirs(span.root) if _may_hold(folder, span)]
    return [path for folder in folders for _, path in part_files(folder)]


def all_part_paths(crawl_root: Path) -> list[Path]:
    """Every part file of the root and of every unit folder."""
    return [path for folder in result_dirs(crawl_root) for _, path in part_files(folder)]


def read_parts(
    crawl_root: Path,
    columns: Sequence[str],
    keep: pl.Expr | None = None,
    *,
    paths: Sequence[Path] | None = None,
    with_part: bool = False,
):
    """Rows of every readable part under `crawl_root` (of `paths` only, if given), with the
    part's path in a `part` column if `with_part`; an unreadable part is reported in one line
    and skipped."""
    schema = {name: SCHEMA[name] for name in columns}
    frames = []
    for path in all_part_paths(crawl_root) if paths is None else paths:
        try:
            frame = pl.read_parquet(path, columns=list(columns)).cast(schema)
        except Exception as exc:  # any damage to one file must not lose the others
            reason = " ".join(str(exc).split())[:200]
            log.warning(
                "skipping unreadable crawl part %s: %s: %s", path, type(exc).__name__, reason
            )
            continue
        frame = frame if keep is None else frame.filter(keep)
        part = pl.lit(str(path), dtype=pl.Categorical)  # 4 bytes a row, not the path's length
        frames.append(frame.with_columns(part=part) if with_part else frame)
    if with_part:
        schema = {**schema, "part": pl.Categorical}
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def read_latest(
    crawl_root: Path,
    columns: Sequence[str] = tuple(SCHEMA),
    *,
    urls: Sequence[str] | None = None,
    paths: Sequence[Path] | None = None,
) -> pl.DataFrame:
    """Latest row per URL across the parts of the root and of every unit folder (of `paths`
    only, if given); only the rows of `urls` if given (a work unit holds its own URLs' rows, not
    the whole crawl's).

    A URL's `attempts` grows with every run that fetches it again, in whichever folder, so the
    row with the most attempts is the latest (within a folder, the later part on a tie).
    """
    wanted = [name for name in columns if name != "image"]
    keep = (
        None
        if urls is None
        else pl.col("url").is_in(pl.Series(list(urls), dtype=pl.String).implode())
    )
    read = list(dict.fromkeys([*wanted, "attempts", "url"]))
    rows = read_parts(crawl_root, read, keep, paths=paths)
    latest = (
        rows.with_row_index("_order")
        .sort("attempts", "_order")
        .unique(subset="url", keep="last", maintain_order=True)
        .sort("_order")
        .select(wanted)
    )
    if "image" not in columns:
        return latest
    return latest.join(
        stored_images(crawl_root)(latest["sha256"].drop_nulls().unique()),
        on="sha256",
        how="left",
        maintain_order="left",
    ).select(list(columns))


def image_parts(crawl_root: Path) -> pl.DataFrame:
    """(sha256, part) for every row with an image sha256: each image's bytes are stored in one
    of the parts that name its sha256. Read from the small columns only."""
    keep = pl.col("sha256").is_not_null()
    return read_parts(crawl_root, ["sha256"], keep, with_part=True).unique()


def stored_images(
    crawl_root: Path, where: pl.DataFrame | None = None
) -> Callable[[pl.Series], pl.DataFrame]:
    """A loader of image bytes by sha256 that keeps only the rows it is asked for: identical
    images are stored once, and a work unit of the shard stage needs only its own. With `where`
    (image_parts), it opens only the parts that can hold them; else every part. The crawl
    writes URLs in node order, so a node file's images sit in a few parts."""

    def load(shas: pl.Series) -> pl.DataFrame:
        wanted = shas.implode()
        paths = None
        if where is not None:
            parts = where.filter(pl.col("sha256").is_in(wanted))["part"].cast(pl.String)
            parts = parts.unique().sort()
            paths = [Path(part) for part in parts]
        keep = pl.col("image").is_not_null() & pl.col("sha256").is_in(wanted)
        found = read_parts(crawl_root, ["sha256", "image"], keep, paths=paths)
        return found.unique("sha256", keep="first", maintain_order=True)

    return load


def load_results(crawl_dir: Path) -> pl.DataFrame:
    """One row per URL (latest result): url, status, error, attempts, source_sha256, sha256,
    width, height, image.

    `attempts` counts tries over all runs; `image` holds the stored JPEG, only when status is ok;
    URLs that served identical bytes share one stored image (same `sha256`).
    """
    return read_latest(crawl_dir)
