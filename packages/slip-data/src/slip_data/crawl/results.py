"""Results as numbered Parquet part files, each written atomically; the latest row per URL wins.

Appending new parts instead of rewriting old ones keeps a kill -9 from costing more than the
results not yet written, and a rerun from re-fetching what is already settled.
"""

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from slip_data.atomic import atomic_path, remove_stale_temps, write_json
from slip_data.parquet_groups import write_groups

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


def _list_sha256(pieces: Iterable[pl.Series]) -> tuple[int, str]:
    """(length, sha256) of the list made of `pieces` in turn, whatever their lengths: the JSON of
    each slice of HASHED_URLS is hashed as it goes by, so no slice is held whole."""
    digest, length = hashlib.sha256(), 0
    for piece in pieces:
        start = 0
        while start < len(piece):
            held = length % HASHED_URLS  # of the current slice, already hashed
            take = min(HASHED_URLS - held, len(piece) - start)
            items = json.dumps(piece.slice(start, take).to_list())[1:-1]  # `"a", "b"`
            digest.update(("[" if held == 0 else ", ").encode() + items.encode())
            start, length = start + take, length + take
            if length % HASHED_URLS == 0:
                digest.update(b"]")
    if length % HASHED_URLS:
        digest.update(b"]")
    return length, digest.hexdigest()


URL_LIST = "urls.parquet"
URLS_SHA256 = "urls_sha256"  # the list's name, in the file's Parquet metadata


def _recorded_sha256(path: Path) -> str | None:
    try:
        return pl.read_parquet_metadata(path).get(URLS_SHA256)
    except (OSError, pl.exceptions.PolarsError):  # none yet, or damaged: written again
        return None


def write_url_list(crawl_root: Path, pieces: Callable[[], Iterable[pl.Series]]) -> tuple[int, str]:
    """Keep the crawl's URL list, the pieces `pieces()` yields in turn, in `crawl_root`, where each
    work unit reads its own range (the driver hands out ranges, not URLs); returns the list's
    length and sha256. The file records the sha256, so an unchanged list (a rerun; every unit of a
    job array runs this) is named in one pass over the pieces and not written again."""
    length, named = _list_sha256(pieces())
    path = Path(crawl_root) / URL_LIST
    remove_stale_temps(Path(crawl_root), recursive=False, of=URL_LIST)
    if _recorded_sha256(path) != named:
        schema = pa.schema([("url", pa.large_string())], metadata={URLS_SHA256: named})
        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as out:
            frames = (piece.to_frame("url") for piece in pieces())
            write_groups(out, frames, rows=HASHED_URLS, empty_group=True)
    return length, named


# Node rows read at a time, and the most rows whose URLs share a hash compared in one pass.
READ_ROWS = 1 << 16
COMPARED_ROWS = 1 << 20


def _url_hashes(urls: pl.Series) -> np.ndarray:
    """A 64-bit hash of each URL, the same for equal URLs within this process; different URLs
    may share one (the list keeps them apart by their strings)."""
    return urls.hash(seed=0).to_numpy()


def _in_sorted(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Whether each of `values` is in the sorted array `table`: a binary search, no hash set."""
    if not len(table):
        return np.zeros(len(values), bool)
    at = np.searchsorted(table, values).clip(max=len(table) - 1)
    return table[at] == values


class _SeenHashes:
    """The distinct hashes met so far, 8 B each, as sorted runs whose lengths fall down the list
    (a log-structured merge): a lookup searches every run, and two runs merge when the newer
    grows as long as the one before, so N hashes cost O(N log N) and about 2 x 8 B each during
    the last merge, where one sorted array would copy itself on every batch."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def seen(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hashes), bool)
        for run in self._runs:
            found |= _in_sorted(hashes, run)
        return found

    def add(self, new: np.ndarray) -> None:
        """Add `new`, distinct, sorted, and none of them seen."""
        self._runs.append(new)
        while len(self._runs) > 1 and len(self._runs[-2]) <= len(self._runs[-1]):
            merged = np.concatenate([self._runs.pop(-2), self._runs.pop()])
            merged.sort(kind="stable")  # two sorted runs: merged in one sweep
            self._runs.append(merged)


def _node_urls(nodes_file: Path, columns: Sequence[str]) -> Iterator[tuple[int, pl.DataFrame]]:
    """(first row, frame) of `columns` of `nodes_file`, READ_ROWS rows at a time."""
    start = 0
    for batch in pq.ParquetFile(nodes_file).iter_batches(READ_ROWS, columns=list(columns)):
        frame = pl.from_arrow(batch)
        yield start, frame
        start += frame.height


def _first_by_hash(nodes_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Whether each node row is the first with its URL's hash, and the hashes of the rows that
    are not; checks that the rows run in graph_id order, which the list follows."""
    keep = np.zeros(pq.ParquetFile(nodes_file).metadata.num_rows, bool)
    seen, repeated, last = _SeenHashes(), [], -1
    for start, frame in _node_urls(nodes_file, ["graph_id", "image_url"]):
        ids = frame["graph_id"].to_numpy()
        back = np.flatnonzero(np.diff(ids, prepend=last) <= 0)
        if len(back):
            raise ValueError(
                f"{nodes_file} is not in graph_id order (row {start + back[0]}): run "
                "`slip-data graph` again"
            )
        last = ids[-1]
        hashes = _url_hashes(frame["image_url"])
        distinct, first = np.unique(hashes, return_index=True)
        new = ~seen.seen(distinct)
        seen.add(distinct[new])
        rows = keep[start : start + frame.height]  # a view: set in place
        rows[first[new]] = True
        repeated.append(hashes[~rows])
    return keep, np.concatenate(repeated) if repeated else np.empty(0, np.uint64)


def _compare_repeats(nodes_file: Path, keep: np.ndarray, repeated: np.ndarray) -> None:
    """Keep also, of the rows whose hash is `repeated`, the first row of each URL by its string,
    so that URLs sharing a hash are all kept (the first row of each hash already is). Their hashes
    go in groups of about COMPARED_ROWS rows, each a pass over the file holding their URLs only."""
    hashes, repeats = np.unique(repeated, return_counts=True)
    group = (np.cumsum(repeats + 1) - 1) // COMPARED_ROWS  # + 1: the hash's first row
    for wanted in np.split(hashes, np.flatnonzero(np.diff(group)) + 1) if len(hashes) else []:
        found = []
        for start, frame in _node_urls(nodes_file, ["image_url"]):
            at = np.flatnonzero(_in_sorted(_url_hashes(frame["image_url"]), wanted))
            rows = pl.DataFrame({"row": start + at, "url": frame["image_url"].gather(at)})
            found.append(rows.unique("url", keep="first", maintain_order=True))
        firsts = pl.concat(found).unique("url", keep="first", maintain_order=True)["row"]
        keep[firsts.to_numpy()] = True


def _kept_urls(nodes_file: Path, keep: np.ndarray) -> Iterator[pl.Series]:
    for start, frame in _node_urls(nodes_file, ["image_url"]):
        yield frame["image_url"].filter(pl.Series(keep[start : start + frame.height]))


def write_node_urls(crawl_root: Path, nodes_file: Path) -> tuple[int, str]:
    """`write_url_list` of the distinct image URLs of `nodes_file` in graph_id order (each where
    it first comes): (how many, the list's sha256). Read a batch at a time, holding 8 B a
    distinct URL (its hash) and 1 B a row, not the URLs: polars' sort and unique of the column
    held about 225 B a URL."""
    keep, repeated = _first_by_hash(nodes_file)
    _compare_repeats(nodes_file, keep, repeated)
    del repeated
    return write_url_list(crawl_root, partial(_kept_urls, nodes_file, keep))


def read_url_range(crawl_root: Path, start: int, stop: int) -> list[str]:
    """URLs `start` to `stop` of the list `write_url_list` kept: a work unit's, read in its own
    process from the row groups that hold them."""
    urls = pl.scan_parquet(Path(crawl_root) / URL_LIST).slice(start, stop - start).collect()
    return urls["url"].to_list()


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


def _hash_in(urls: pl.Series) -> pl.Expr:
    """Whether a row's URL has the hash of one of `urls`, their hashes sorted once: polars'
    `is_in` builds its hash set of `urls` again for each frame it filters, which for every part
    of a resumed unit cost parts x URLs. A URL sharing a hash with one of `urls` passes too."""
    table = np.sort(_url_hashes(urls))
    return pl.col("url").map_batches(
        lambda column: pl.Series(_in_sorted(_url_hashes(column), table)),
        return_dtype=pl.Boolean,
    )


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
    read = list(dict.fromkeys([*wanted, "attempts", "url"]))
    if urls is None:
        rows = read_parts(crawl_root, read, paths=paths)
    else:
        mine = pl.Series(list(urls), dtype=pl.String)
        rows = read_parts(crawl_root, read, _hash_in(mine), paths=paths)
        rows = rows.filter(pl.col("url").is_in(mine.implode()))  # hashes shared by other URLs
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


def stored_images(
    crawl_root: Path, where: pl.DataFrame | None = None
) -> Callable[[pl.Series], pl.DataFrame]:
    """A loader of image bytes by sha256 that keeps only the rows it is asked for: identical
    images are stored once, and a work unit of the shard stage needs only its own. With `where`
    ((sha256, part) pairs: the shard plan's image_parts), it opens only the parts that can hold
    them; else every part. The crawl writes URLs in node order, so a node file's images sit in a
    few parts."""

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
