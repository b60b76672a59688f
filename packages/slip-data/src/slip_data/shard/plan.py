"""The shard plan in work units on disk, so that no step holds every node or crawl result.

A node's row needs its URL's latest crawl result (the row with the most attempts, the later part
on a tie: crawl/results.py `read_latest`) and the crawl parts that name its image. Both are
found by hashing: the crawl parts are read in chunks, each chunk's rows going into B buckets by a
hash of the URL and its (sha256, part) pairs into B buckets by a hash of the sha256, and each node
range's (graph_id, image_url) into B buckets by the URL's hash; each URL bucket takes the latest
row per URL and joins the nodes of its bucket, and each sha256 bucket gives its nodes their parts.
A step writes its B buckets as one file, its rows in bucket order with the bucket as a column, so
a bucket's reader reads the row groups that hold it (their statistics say which): one file a
step, where a file a bucket made thousands of small atomic writes at small budgets.
The plan rows are then made per node range, in graph_id order, from the bucket files' rows of that
range (sorted by graph_id, so a read skips the other row groups). When the budget holds the whole
crawl and every node (one bucket, so one chunk and one range), the steps run as one in memory and
write only the range's files: the bucket files would be written and read back whole for nothing.
Counts and labels are summed over the ranges; label and node ids are given when a node file's rows
are read. Across the steps only arrays of one number per node are held (the graph id -> node id
map and the label ids, for the edges and the homophily).

Layout under `shards/.plan/` (kept after the stage: units and reruns reuse it):

    plan.json                  what the files were made for (graph nodes, crawl parts, options)
                               and how the work is cut: B, the chunks of parts, the range rows
    crawl/c{c}.u.parquet       chunk c's crawl rows by URL bucket (url, attempts, order, ...)
    crawl/c{c}.s.parquet       chunk c's (sha256, part) pairs by sha256 bucket
    crawl/c{c}.json            chunk c's done marker
    nodes/r{r}.parquet         node range r's (graph_id, image_url) by URL bucket
    urls/u{j}.s.parquet        URL bucket j's nodes with an image, by sha256 bucket
    urls/u{j}.parquet          URL bucket j's nodes with their crawl result, by graph_id
    shas/s{k}.parquet          sha256 bucket k's nodes with the parts naming their image
    ranges/r{r}.parquet        node range r's plan rows (the nodes kept), by graph_id
    ranges/r{r}.json           its counts: kept, crawl status, dropped, labels, categories

(with one bucket, plan.json and ranges/r0.* only).

Every file is written atomically and each step is skipped once its last file exists, so a
killed stage resumes per step; a plan made for other inputs, options or budget is removed. One
process at a time makes or reads the plan (`shards/.plan.lock`): the units of a job array
(`--shard-index`) each need it whole, and the first makes it while the others wait, then find
every step done.
"""

import fcntl
import itertools
import json
import math
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from slip_data.atomic import atomic_path, remove_stale_temps, write_json
from slip_data.crawl.results import SCHEMA, all_part_paths, read_parts
from slip_data.distribute import GB
from slip_data.graph.build import SPLITS

PLAN_DIR = ".plan"
# Peak bytes a step takes per row it holds (a crawl row of a chunk or a bucket, a node of a bucket
# or of a range), measured on the demo (bench/shard_plan.py), with a margin.
CRAWL_ROW_BYTES = 1000
NODE_ROW_BYTES = 1000
MAX_BUCKETS = 64  # each way
PLAN_LAYOUT = 2  # bump when the plan's files change, so that an older plan is made again
GROUP_ROWS = 1 << 13  # rows per row group of the plan's files: what a node file's read skips by
RESULT_COLUMNS = ["url", "attempts", "status", "sha256", "width", "height"]
RESULT_SCHEMA = {name: SCHEMA[name] for name in RESULT_COLUMNS}
RANGE_COLUMNS = ["graph_id", "category", "label", "split"]


def plan_cut(*, crawl_rows: Sequence[int], nodes: int, memory_gb: float) -> dict:
    """The fewest buckets, chunks of parts (consecutive, as the latest row follows their order)
    and node ranges whose steps fit in `memory_gb`."""
    budget = memory_gb * GB
    rows = sum(crawl_rows) * CRAWL_ROW_BYTES + nodes * NODE_ROW_BYTES
    buckets = min(max(math.ceil(rows / budget), 1), MAX_BUCKETS)
    chunk_rows = max(int(budget // CRAWL_ROW_BYTES), 1)
    chunks, start, held = [], 0, 0
    for index, count in enumerate(crawl_rows):
        if held and held + count > chunk_rows:
            chunks.append([start, index])
            start, held = index, 0
        held += count
    if held or start < len(crawl_rows) or not chunks:  # one chunk, empty, for no parts
        chunks.append([start, len(crawl_rows)])
    return {
        "buckets": buckets,
        "chunks": chunks,
        "range_rows": max(int(budget // NODE_ROW_BYTES), 1),
    }


def _part_rows(path: Path) -> int:
    """Rows of a crawl part, from its footer; 0 for one that cannot be read (the read skips it)."""
    try:
        return pq.read_metadata(path).num_rows
    except Exception:  # any damage: the chunk's read reports it in one line
        return 0


def _write(frame: pl.DataFrame, dest: Path) -> None:
    """lz4, not zstd: the plan's files are written once and read back a few times, and zstd's
    smaller files took much of the plan's time to write (docs/scale.md)."""
    with atomic_path(dest) as tmp:
        frame.write_parquet(tmp, compression="lz4", row_group_size=GROUP_ROWS, statistics=True)


def read_rows(path: Path, start: int, stop: int, columns: list[str] | None = None) -> pl.DataFrame:
    """Rows `start` to `stop` of a Parquet file: polars reads only the row groups that hold them,
    and keeps little of what it read (pyarrow's reads kept up to 70 MB of a node file's groups:
    docs/benchmarks.md)."""
    rows = pl.scan_parquet(path)
    return (rows.select(columns) if columns else rows).slice(start, stop - start).collect()


def _bucket(column: str, buckets: int) -> pl.Expr:
    """A row's bucket: polars' hash is stable within a version, which the plan records."""
    return (pl.col(column).hash(seed=0) % buckets).cast(pl.Int16).alias("bucket")


def _write_buckets(frame: pl.DataFrame, column: str, *, buckets: int, dest: Path) -> None:
    """`frame`'s rows in the order of their `column`'s bucket (each bucket's rows in frame order),
    the bucket a column: one file for the B buckets (`_read_bucket` reads one)."""
    _write(frame.with_columns(_bucket(column, buckets)).sort("bucket", maintain_order=True), dest)


def _read_bucket(paths: list[Path], bucket: int) -> pl.DataFrame:
    """Bucket `bucket`'s rows of files `_write_buckets` wrote, in file order: the row groups
    outside it are skipped by their statistics."""
    rows = pl.scan_parquet(paths).filter(pl.col("bucket") == bucket)
    return rows.drop("bucket").collect()


@dataclass(frozen=True)
class PlanFiles:
    """Where one plan's steps write, and how its work is cut."""

    root: Path
    parts: list[str]  # the crawl parts, in read order: a part's number is its index here
    buckets: int
    chunks: list[list[int]]
    range_rows: int

    @classmethod
    def open(cls, root: Path, *, made_for: dict, cut_for: Callable[[], dict]) -> "PlanFiles":
        """The folder for `made_for`: files left by a plan made for anything else are removed
        first; the cut (`cut_for()`) is made once and kept, so a resumed plan cuts as before."""
        stamp = root / "plan.json"
        if stamp.exists():
            plan = json.loads(stamp.read_text())
            if plan["made_for"] == made_for:
                remove_stale_temps(root)
                return cls(root, **plan["cut"])
            shutil.rmtree(root)
        plan = {"made_for": made_for, "cut": cut_for()}
        write_json(stamp, plan)
        return cls(root, **plan["cut"])

    def crawl_file(self, chunk: int, kind: str) -> Path:
        return self.root / "crawl" / f"c{chunk}.{kind}.parquet"

    def node_file(self, node_range: int) -> Path:
        return self.root / "nodes" / f"r{node_range}.parquet"

    def url_file(self, bucket: int, *, by_sha: bool = False) -> Path:
        return self.root / "urls" / f"u{bucket}{'.s' if by_sha else ''}.parquet"

    def sha_file(self, bucket: int) -> Path:
        return self.root / "shas" / f"s{bucket}.parquet"

    def range_file(self, node_range: int, suffix: str = "parquet") -> Path:
        return self.root / "ranges" / f"r{node_range}.{suffix}"


def _chunk_rows(files: PlanFiles, chunk: int) -> pl.DataFrame:
    """Chunk `chunk`'s crawl rows with their part number and order (part number, row). Its parts
    are read in one scan (a read per part costs more than the rows); if any part is damaged or
    of another schema, part by part, where `read_parts` reports and skips what it cannot read."""
    start, stop = files.chunks[chunk]
    paths = files.parts[start:stop]
    part = pl.col("part").cast(pl.String).cast(pl.Enum(paths)).to_physical().cast(pl.Int64) + start
    try:
        scan = pl.scan_parquet(paths, include_file_paths="part", glob=False)
        rows = scan.select(*RESULT_COLUMNS, part=part).cast(RESULT_SCHEMA).collect()
    except (pl.exceptions.PolarsError, OSError):  # no parts, a damaged one, another schema
        rows = read_parts(Path(), RESULT_COLUMNS, paths=[Path(p) for p in paths], with_part=True)
        rows = rows.with_columns(part=part)
    return rows.with_columns(
        order=pl.col("part") * (1 << 32) + pl.int_range(pl.len(), dtype=pl.Int64).over("part")
    )


def _named(rows: pl.DataFrame) -> pl.DataFrame:
    """The (sha256, part) pairs of crawl rows: each image's bytes are in one of its parts. Rows
    without an image are kept (a join never matches a null), so the columns are not copied."""
    return rows.select("sha256", "part")


def bucket_crawl(files: PlanFiles, chunk: int) -> None:
    """Step 1, one chunk of crawl parts: its rows into the B URL buckets, with their order, and
    its (sha256, part) pairs into the B sha256 buckets."""
    marker = files.root / "crawl" / f"c{chunk}.json"
    if marker.exists():
        return
    rows = _chunk_rows(files, chunk)
    _write_buckets(
        rows.drop("part"), "url", buckets=files.buckets, dest=files.crawl_file(chunk, "u")
    )
    named = _named(rows).drop_nulls().unique()
    _write_buckets(named, "sha256", buckets=files.buckets, dest=files.crawl_file(chunk, "s"))
    write_json(marker, {"rows": rows.height})


def bucket_nodes(files: PlanFiles, node_range: int, *, nodes_path: Path) -> None:
    """Step 1, one node range: its (graph_id, image_url) into the B URL buckets, so that a URL
    bucket reads its own nodes, not all of them."""
    dest = files.node_file(node_range)
    if dest.exists():
        return
    start = node_range * files.range_rows
    nodes = read_rows(nodes_path, start, start + files.range_rows, ["graph_id", "image_url"])
    _write_buckets(nodes, "image_url", buckets=files.buckets, dest=dest)


def _latest(rows: pl.DataFrame) -> pl.DataFrame:
    """The latest of crawl rows per URL: most attempts, then the later part and row."""
    latest = rows.sort("attempts", "order").unique(subset="url", keep="last")
    return latest.select(
        image_url="url",
        image_status="status",
        image_sha256="sha256",
        width=pl.col("width").cast(pl.Int32),
        height=pl.col("height").cast(pl.Int32),
    )


def _with_latest(nodes: pl.DataFrame, crawled: pl.DataFrame) -> pl.DataFrame:
    """`nodes` (graph_id, image_url) with their URL's latest crawl row (`_latest`), by graph_id;
    a URL never crawled gets status not_crawled."""
    return (
        nodes.join(crawled, on="image_url", how="left")
        .with_columns(pl.col("image_status").fill_null("not_crawled"))
        .drop("image_url")
        .sort("graph_id")
    )


def _named_sha256(images: pl.DataFrame) -> pl.DataFrame:
    """(graph_id, image_sha256) of the nodes whose latest crawl row has an image."""
    return images.filter(pl.col("image_sha256").is_not_null()).select("graph_id", "image_sha256")


def _with_parts(nodes: pl.DataFrame, named: pl.DataFrame) -> pl.DataFrame:
    """`nodes` (graph_id, image_sha256) with the parts that name their image (`named`: (sha256,
    part) pairs, repeats allowed), by graph_id. The pairs are made unique and sorted as numbers
    after the join, which is cheaper than on the sha256 strings or per node."""
    return (
        nodes.lazy()
        .join(named.lazy(), left_on="image_sha256", right_on="sha256")
        .select("graph_id", image_parts=pl.col("part").cast(pl.Int32))
        .unique()
        .sort("graph_id", "image_parts")
        .group_by("graph_id", maintain_order=True)
        .agg("image_parts")
        .collect()
    )


def join_urls(files: PlanFiles, bucket: int, *, ranges: int) -> None:
    """Step 2, one URL bucket: its nodes with their URL's latest crawl row."""
    dest = files.url_file(bucket)
    if dest.exists():
        return
    chunks = range(len(files.chunks))
    crawled = _latest(_read_bucket([files.crawl_file(c, "u") for c in chunks], bucket))
    nodes = _read_bucket([files.node_file(r) for r in range(ranges)], bucket)
    joined = _with_latest(nodes, crawled)
    shas = _named_sha256(joined)
    by_sha = files.url_file(bucket, by_sha=True)
    _write_buckets(shas, "image_sha256", buckets=files.buckets, dest=by_sha)
    _write(joined, dest)


def join_shas(files: PlanFiles, bucket: int) -> None:
    """Step 3, one sha256 bucket: each node with an image of the bucket gets the parts that
    name it (one of them holds its bytes)."""
    dest = files.sha_file(bucket)
    if dest.exists():
        return
    named = _read_bucket([files.crawl_file(c, "s") for c in range(len(files.chunks))], bucket)
    nodes = _read_bucket([files.url_file(j, by_sha=True) for j in range(files.buckets)], bucket)
    _write(_with_parts(nodes, named), dest)


def _range_rows(paths: list[Path], low: int, high: int) -> pl.DataFrame:
    """The rows of graph ids `low` to `high` of files sorted by graph_id."""
    wanted = pl.col("graph_id").is_between(low, high)
    return pl.concat([pl.scan_parquet(path).filter(wanted).collect() for path in paths])


def _range_nodes(
    files: PlanFiles, node_range: int, *, nodes_path: Path, columns: list[str]
) -> pl.DataFrame:
    """Node range `node_range`'s `columns` of the graph's nodes, refused out of graph_id order."""
    start = node_range * files.range_rows
    nodes = read_rows(nodes_path, start, start + files.range_rows, columns)
    ids = nodes["graph_id"]
    if not ids.is_sorted() or ids.n_unique() != ids.len():
        raise ValueError("the graph's nodes are not in graph_id order: build the graph again")
    return nodes


def _write_range(
    files: PlanFiles,
    node_range: int,
    *,
    nodes: pl.DataFrame,
    images: pl.DataFrame,
    parts: pl.DataFrame,
    keep_missing: bool,
) -> dict:
    """Node range `node_range`'s plan rows and counts from its nodes (RANGE_COLUMNS), their
    crawl results and their images' parts. Returns the counts."""
    joined = (
        nodes.join(images, on="graph_id", how="left")
        .join(parts, on="graph_id", how="left")
        .sort("graph_id")
    )
    statuses = joined["image_status"].value_counts()
    crawl_status = dict(zip(statuses["image_status"], statuses["count"], strict=True))
    dropped = {} if keep_missing else {s: n for s, n in crawl_status.items() if s != "ok"}
    if not keep_missing:
        joined = joined.filter(pl.col("image_status") == "ok")
    rows = joined.select(
        "graph_id",
        main_category="category",
        label="label",
        image_sha256="image_sha256",
        width="width",
        height="height",
        split=pl.col("split").cast(pl.String),
        image_parts="image_parts",
    )
    labels = rows.group_by("label", "split").len().sort("label", "split")
    _write(rows, files.range_file(node_range))
    counts = {
        "kept": rows.height,
        "graph_nodes": nodes["graph_id"].last() + 1 if nodes.height else 0,
        "crawl_status": crawl_status,
        "dropped_images": dropped,
        "labels": labels.rows(),
        "categories": sorted(rows["main_category"].unique().to_list()),
    }
    write_json(files.range_file(node_range, "json"), counts)
    return counts


def plan_range(files: PlanFiles, node_range: int, *, nodes_path: Path, keep_missing: bool) -> dict:
    """Step 4, one node range: its plan rows and counts. Returns the counts."""
    marker = files.range_file(node_range, "json")
    if marker.exists():
        return json.loads(marker.read_text())
    nodes = _range_nodes(files, node_range, nodes_path=nodes_path, columns=RANGE_COLUMNS)
    low, high = (nodes["graph_id"].first(), nodes["graph_id"].last()) if nodes.height else (0, -1)
    images = _range_rows([files.url_file(j) for j in range(files.buckets)], low, high)
    parts = _range_rows([files.sha_file(k) for k in range(files.buckets)], low, high)
    return _write_range(
        files, node_range, nodes=nodes, images=images, parts=parts, keep_missing=keep_missing
    )


def plan_whole(files: PlanFiles, *, nodes_path: Path, keep_missing: bool) -> dict:
    """Steps 1 to 4 in one, for a cut of one bucket (so one chunk and one range: the budget holds
    the whole crawl and every node at once): the same rows, without the bucket files, whose
    writes and reads took most of the plan's time. Returns the counts."""
    marker = files.range_file(0, "json")
    if marker.exists():
        return json.loads(marker.read_text())
    rows = _chunk_rows(files, 0)
    crawled = _latest(rows)
    named = _named(rows)
    del rows
    urls = read_rows(nodes_path, 0, files.range_rows, ["graph_id", "image_url"])
    images = _with_latest(urls, crawled)
    del urls, crawled
    parts = _with_parts(_named_sha256(images), named)
    del named
    nodes = _range_nodes(files, 0, nodes_path=nodes_path, columns=RANGE_COLUMNS)
    return _write_range(
        files, 0, nodes=nodes, images=images, parts=parts, keep_missing=keep_missing
    )


@dataclass(frozen=True, kw_only=True)
class ShardPlan:
    """Everything the node files and labels hold but the image bytes and the texts: the plan rows
    on disk, read one node file's rows at a time, and their counts."""

    files: PlanFiles
    kept: list[int]  # plan rows per node range
    labels: pl.DataFrame
    label_names: list[str]
    crawl_status: dict[str, int]
    dropped_images: dict[str, int]
    split_sizes: dict[str, int]
    categories: list[str]
    rows_per_shard: int
    graph_nodes: int  # graph ids run below this

    @property
    def nodes(self) -> int:
        return sum(self.kept)

    @property
    def num_files(self) -> int:
        return max(1, -(-self.nodes // self.rows_per_shard))

    def file_rows(self, index: int) -> int:
        return max(min(self.rows_per_shard, self.nodes - index * self.rows_per_shard), 0)

    def rows(self, index: int) -> pl.DataFrame:
        """Node file `index`'s plan rows: graph_id, the node columns but the texts and the image,
        and image_parts (the numbers of the crawl parts that name the image)."""
        start = index * self.rows_per_shard
        stop = start + self.file_rows(index)
        offsets = np.concatenate([[0], np.cumsum(self.kept)])
        frames = [
            read_rows(self.files.range_file(r), max(start - low, 0), min(stop, high) - low)
            for r, (low, high) in enumerate(itertools.pairwise(offsets))
            if low < stop and start < high
        ]
        label_ids = pl.DataFrame(
            {"label": self.label_names, "label_id": range(len(self.label_names))},
            schema={"label": pl.String, "label_id": pl.Int32},
        )
        rows = pl.concat(frames) if frames else self._empty()
        return rows.with_columns(node_id=pl.int_range(start, stop, dtype=pl.Int64)).join(
            label_ids, on="label", how="left", maintain_order="left"
        )

    def _empty(self) -> pl.DataFrame:
        return read_rows(self.files.range_file(0), 0, 0)

    def _ranges(self, name: str) -> Iterator[tuple[slice, np.ndarray]]:
        """(node ids, column `name`) of each node range's plan rows, one range at a time."""
        start = 0
        for node_range, kept in enumerate(self.kept):
            column = pl.read_parquet(self.files.range_file(node_range), columns=[name])[name]
            yield slice(start, start + kept), column.to_numpy()
            start += kept

    def node_ids(self) -> np.ndarray:
        """graph id -> node id, -1 for a node left out: both follow graph_id order, so the map
        is monotone and keeps the edges' (src, dst) order."""
        ids = np.full(self.graph_nodes, -1, dtype=np.int64)
        for node_ids, graph_ids in self._ranges("graph_id"):
            ids[graph_ids] = np.arange(node_ids.start, node_ids.stop)
        return ids

    def label_ids(self) -> np.ndarray:
        """Each kept node's label id, by node id."""
        ids = np.zeros(self.nodes, dtype=np.int32)
        for node_ids, labels in self._ranges("label"):
            ids[node_ids] = np.searchsorted(self.label_names, labels)
        return ids

    def image_parts(self, rows: pl.DataFrame) -> pl.DataFrame:
        """(sha256, part) of `rows`' images: the crawl parts, by path, that name them."""
        named = rows.select(sha256="image_sha256", part="image_parts").explode("part").drop_nulls()
        return named.with_columns(part=pl.Series(self.files.parts, dtype=pl.String)[named["part"]])


def _summed(counts: list[dict], key: str) -> dict[str, int]:
    return dict(sorted(sum((Counter(c[key]) for c in counts), Counter()).items()))


def _labels(counts: list[dict]) -> pl.DataFrame:
    """labels.parquet's rows: per label, its nodes and those of each split; ids in name order."""
    rows = [row for c in counts for row in c["labels"]]
    frame = pl.DataFrame(
        rows, schema={"label": pl.String, "split": pl.String, "n": pl.Int64}, orient="row"
    )
    totals = frame.group_by("label").agg(
        count=pl.col("n").sum(),
        **{f"count_{s}": pl.col("n").filter(pl.col("split") == s).sum() for s in SPLITS},
    )
    return totals.sort("label").select(
        label_id=pl.int_range(pl.len(), dtype=pl.Int32),
        label="label",
        count="count",
        **{f"count_{s}": f"count_{s}" for s in SPLITS},
    )


@contextmanager
def one_planner(shards_dir: Path) -> Iterator[None]:
    """Wait for, then hold, the plan's lock: an flock, which the kernel drops when its holder dies
    (the next holder then resumes the plan from its last finished step) and which Linux's NFS
    client takes on the server, so units on several machines of a shared folder wait too."""
    shards_dir.mkdir(parents=True, exist_ok=True)
    with open(shards_dir / f"{PLAN_DIR}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _planned(files: PlanFiles, *, nodes: int, nodes_path: Path, keep_missing: bool) -> list[dict]:
    """Each node range's counts, its steps made or read back."""
    ranges = max(-(-nodes // files.range_rows), 1)
    if files.buckets == 1:
        return [plan_whole(files, nodes_path=nodes_path, keep_missing=keep_missing)]
    for chunk in range(len(files.chunks)):
        bucket_crawl(files, chunk)
    for node_range in range(ranges):
        bucket_nodes(files, node_range, nodes_path=nodes_path)
    for bucket in range(files.buckets):
        join_urls(files, bucket, ranges=ranges)
    for bucket in range(files.buckets):
        join_shas(files, bucket)
    return [
        plan_range(files, r, nodes_path=nodes_path, keep_missing=keep_missing)
        for r in range(ranges)
    ]


def plan_shards(
    graph_dir: Path,
    crawl_root: Path,
    shards_dir: Path,
    *,
    keep_missing_images: bool,
    rows_per_shard: int,
    memory_gb: float,
) -> ShardPlan:
    """The plan of the graph's nodes and the crawl's results under `crawl_root`, made (or
    resumed) under `shards_dir`/.plan in steps that each fit in `memory_gb` (`--plan-memory-gb`:
    it sets the buckets and ranges, never the outputs)."""
    nodes_path = Path(graph_dir) / "nodes.parquet"
    parts = [str(path) for path in all_part_paths(crawl_root)]
    made_for = {
        "nodes": [nodes_path.stat().st_size, nodes_path.stat().st_mtime_ns],
        "parts": [[p, Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in parts],
        "keep_missing_images": keep_missing_images,
        "memory_gb": memory_gb,
        "polars": pl.__version__,  # the bucket hash may change
        "layout": PLAN_LAYOUT,
    }
    nodes = pq.read_metadata(nodes_path).num_rows

    def cut() -> dict:
        rows = [_part_rows(Path(p)) for p in parts]
        return {"parts": parts, **plan_cut(crawl_rows=rows, nodes=nodes, memory_gb=memory_gb)}

    with one_planner(Path(shards_dir)):
        files = PlanFiles.open(Path(shards_dir) / PLAN_DIR, made_for=made_for, cut_for=cut)
        counts = _planned(
            files, nodes=nodes, nodes_path=nodes_path, keep_missing=keep_missing_images
        )
    labels = _labels(counts)
    splits = labels.select(pl.col(f"count_{s}").sum() for s in SPLITS).row(0)
    return ShardPlan(
        files=files,
        kept=[c["kept"] for c in counts],
        labels=labels,
        label_names=labels["label"].to_list(),
        crawl_status=_summed(counts, "crawl_status"),
        dropped_images=_summed(counts, "dropped_images"),
        split_sizes=dict(zip(SPLITS, map(int, splits), strict=True)),
        categories=sorted({name for c in counts for name in c["categories"]}),
        rows_per_shard=rows_per_shard,
        graph_nodes=max(c["graph_nodes"] for c in counts),
    )
