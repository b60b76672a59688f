"""The graph stage in work units, so that no unit holds every product, review, user or pair at once.

Each meta file is filtered on its own, or in row slices when it is large: the rows no filter
drops go into R files by node range (a range of parent_asin, so of item ids), and every row's
parent_asin and first failed filter into R small files the same way. A product's rows all fall in
one node range, so each range finds its duplicates across files and slices (read in meta order,
then slice order: the rows' order in the files) and numbers its items on its own; the driver adds
up R counts for the ranges' first items. Links are written per review file (or row slice of a
large one) into U files by user hash (a user's whole history lands in one user partition), each
row's item found in its node range's id table; each user partition's pairs are counted and
written into K files by key range; each key range adds its counts over the U partitions and
applies --min-weight.
Keys are src * n_items + dst, so the K edge ranges follow each other in the sorted edge list, as
the R node ranges do in graph_id order: --min-degree and the writes stream over them, and across
the units only arrays of one number per product are held, never every parent_asin.
Every file is written atomically and every unit is skipped when done, so a killed build resumes
per unit. The units of a step run on the build's engine (`Steps.run`: one after another here, in
spawned processes, or as Ray tasks), so they take paths and small values, and read what they need
from the files: the partitions folder must be on a filesystem every worker sees.

Layout under `root` (graph/partitions/, removed once the stage is done):

    plan.json                     what the files were made for: inputs, options, U, K, R and the
                                  rows of a meta, link and text unit
    nodes/bounds.json             the R - 1 parent_asin bounds of the node ranges
    nodes/{meta}.s{i}.ids.r{j}.parquet  row slice i of one meta file (slice 0: the whole file
                                  when it fits a unit): its (parent_asin, first filter failed)
                                  rows in node range j, in file order
    nodes/{meta}.s{i}.r{j}.parquet  its rows no filter dropped in node range j (the node columns)
    nodes/{meta}.s{i}.json        that unit's done marker: its rows, and those kept
    ids/r{i}.parquet              node range i's id table: each of its meta parent_asins with its
                                  item counted from the range's first (null: dropped), sorted
    ids/r{i}.json                 that unit's done marker: the products kept, and dropped by reason
    links/{review}.s{i}.u{j}.parquet  row slice i of one review file (slice 0: the whole file
                                  when it fits a unit): its (user, item, timestamp) rows of user
                                  partition j
    links/{review}.s{i}.json      that unit's done marker: the reviews it dropped, by reason
    pairs/u{j}.k{r}.parquet       user partition j's (key, count) runs in key range r, sorted
    pairs/u{j}.json               that unit's done marker: the repeat reviews it merged
    edges/k{r}.parquet            key range r's edges (src, dst, weight), sorted
    texts/...                     the review texts' units: texts.py
"""

import json
import math
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from rich.progress import Progress

from slip_data.atomic import atomic_path, write_json
from slip_data.distribute import GB, UnitOptions, run_units

# Peak bytes per review of a user-partition unit (links, histories, pair keys and their sort) and
# of a key-range unit (the runs of every user partition and their sort): docs/scale.md's model of
# the pair step (97 B per review + 35 B per pair; 36 B per pair) at 6.5 pairs per review, with a
# margin. A corpus with more pairs per review needs a smaller --memory-gb.
USER_UNIT_BYTES_PER_REVIEW = 400
RANGE_UNIT_BYTES_PER_REVIEW = 250
# Peak bytes per product of a node-range unit (its rows read, put in graph_id order, their splits
# drawn, written): 2.7 times the rows' size in memory, measured on the demo (609 B a node, whose
# columns take 228 B there), at docs/scale.md's assumed 1.3 KB a real node, with a margin.
NODE_UNIT_BYTES_PER_PRODUCT = 4000
# Peak bytes per product of a meta unit (a row slice's meta columns read, its node columns
# computed, written by node range): 610 to 690 B measured on one 1M-product demo file, 1.5 to 1.7
# times the 414 B its meta columns take in memory (docs/scale.md), at the 2 KB of meta columns a
# real product is assumed to take, with a margin (a unit's imports and buffers come on top). A
# meta file with more rows than the budget allows is filtered in row slices.
META_UNIT_BYTES_PER_PRODUCT = 5_000
# Peak bytes per review of a link unit: 88 to 96 B measured on one 5M-review file (docs/scale.md),
# with a margin. A review file with more rows than the budget allows is linked in row slices.
LINK_UNIT_BYTES_PER_REVIEW = 120
# Peak bytes per review of a review-text unit (texts.py: a row slice's texts cleaned and sorted,
# a node range's over the slices joined, sorted and grouped): 1.5 and 1.6 KB measured with 483 B
# of title and text a review (0.6 and 0.45 KB at the demo's 56 B; docs/scale.md), at the 500 B a
# real review is assumed to take, with a margin. Longer reviews need a smaller --memory-gb.
TEXT_UNIT_BYTES_PER_REVIEW = 2000
MAX_PARTITIONS = 256  # each way: the pair step writes U x K files
BOUND_SAMPLES = 1024  # meta rows sampled per node range to cut the ranges
LOOKUP_ROWS = 1 << 18  # reviews joined to an id table at once: the join's own memory is bounded
UNKNOWN, FILTERED = -2, -1  # a review's item when its product has no meta row, or was dropped
LAYOUT = 3  # 2: the id tables by node range; 3: the meta files in row slices


def _capped_histories(user_items: pl.DataFrame, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Items of the users with two or more, grouped by user, as (items, group sizes).

    A user keeps their `cap` most recent items (ties by item id): no user adds more than
    cap * (cap - 1) / 2 pairs. Only the few users above the cap need sorting by time.
    """
    counted = user_items.with_columns(n=pl.len().over("user")).filter(pl.col("n") > 1)
    heavy = (
        counted.filter(pl.col("n") > cap)
        .sort(["user", "timestamp", "item"], descending=[False, True, False])
        .filter(pl.int_range(pl.len()).over("user") < cap)
    )
    kept = pl.concat([counted.filter(pl.col("n") <= cap), heavy]).sort("user")
    users = kept["user"].to_numpy()
    bounds = np.concatenate([[0], np.flatnonzero(users[1:] != users[:-1]) + 1, [users.size]])
    return kept["item"].to_numpy(), np.diff(bounds)


def pair_counts(user_items: pl.DataFrame, n_items: int, *, cap: int) -> pl.DataFrame:
    """Every pair these users made as (key, count), sorted by key: key = src * n_items + dst.

    Instead of a self-join (which makes every pair twice plus k self pairs per user), pair each
    item with the one `d` places further in its user's history, for d = 1, 2, ...: each pass only
    touches users with more than d items, so the work is the number of pairs. Each pair becomes
    one int64 key, and a sort plus run-length count gives the counts (a hash group-by over tens
    of millions of distinct keys is several times slower: docs/benchmarks.md).
    """
    items, sizes = _capped_histories(user_items, cap)
    position = np.arange(items.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    size = np.repeat(sizes, sizes)
    candidates = np.flatnonzero(size > 1)
    batches: list[np.ndarray] = []
    distance = 1
    while candidates.size:
        candidates = candidates[position[candidates] + distance < size[candidates]]
        first, second = items[candidates], items[candidates + distance]
        batches.append(np.minimum(first, second) * n_items + np.maximum(first, second))
        distance += 1
    del position, size, candidates
    if not batches:
        batches.append(np.empty(0, dtype=np.int64))
    keys = pl.Series("key", np.concatenate(batches))
    del batches  # only the sorted run lengths from here on: peak memory is about 3 key arrays
    return keys.sort().rle().struct.unnest().select(key="value", count="len")


def edges_from_counts(counts: pl.DataFrame, n_items: int, min_weight: int) -> pl.DataFrame:
    """(src, dst, weight) of the (key, count) rows with `min_weight` users or more, in order."""
    return counts.filter(pl.col("count") >= min_weight).select(
        src=pl.col("key") // n_items,
        dst=pl.col("key") % n_items,
        weight=pl.col("count").cast(pl.Int32),
    )


def partition_counts(*, reviews: int, products: int, memory_gb: float) -> dict[str, int]:
    """The fewest user partitions, key ranges and node ranges whose units fit in `memory_gb`, and
    the most rows a meta, link and text unit may take."""
    budget = memory_gb * GB

    def cut(size: float) -> int:
        return min(max(math.ceil(size / budget), 1), MAX_PARTITIONS)

    return {
        "users": cut(reviews * USER_UNIT_BYTES_PER_REVIEW),
        "key_ranges": cut(reviews * RANGE_UNIT_BYTES_PER_REVIEW),
        "node_ranges": cut(products * NODE_UNIT_BYTES_PER_PRODUCT),
        "meta_rows": max(math.floor(budget / META_UNIT_BYTES_PER_PRODUCT), 1),
        "link_rows": max(math.floor(budget / LINK_UNIT_BYTES_PER_REVIEW), 1),
        "text_rows": max(math.floor(budget / TEXT_UNIT_BYTES_PER_REVIEW), 1),
    }


@dataclass(frozen=True)
class RowSlice:
    """A unit's rows of the parsed file `name` (its category): from row `start`, at most `rows`."""

    name: str
    path: Path
    start: int
    rows: int


@dataclass(frozen=True)
class Partitions:
    """Where the units of one build write, and how its work is cut."""

    root: Path
    users: int
    key_ranges: int
    node_ranges: int
    meta_rows: int
    link_rows: int
    text_rows: int

    @classmethod
    def open(cls, root: Path, cut: dict[str, int], *, made_for: dict) -> "Partitions":
        """The folder for the plan `cut` (partition_counts's fields): files left by a run with
        another plan are removed first."""
        # the user hash may change with polars, the files' layout with this module
        plan = {"made_for": made_for, **cut, "polars": pl.__version__, "layout": LAYOUT}
        stamp = root / "plan.json"
        if root.exists() and (not stamp.exists() or json.loads(stamp.read_text()) != plan):
            shutil.rmtree(root)
        if not stamp.exists():
            write_json(stamp, plan)
        return cls(root, **cut)

    def id_file(self, unit: str, node_range: int) -> Path:
        return self.root / "nodes" / f"{unit}.ids.r{node_range}.parquet"

    def node_file(self, unit: str, node_range: int) -> Path:
        return self.root / "nodes" / f"{unit}.r{node_range}.parquet"

    def id_table(self, node_range: int) -> Path:
        return self.root / "ids" / f"r{node_range}.parquet"

    @staticmethod
    def row_slices(files: Mapping[str, Path], rows: int) -> dict[str, RowSlice]:
        """Units by name, in the order of `files`, then of their rows: each parsed file in slices
        of at most `rows` rows (the meta units' `meta_rows`, the link units' `link_rows`, the
        review texts' `text_rows`)."""
        units = {}
        for name, path in files.items():
            for index in range(slice_count(path, rows)):
                units[f"{name}.s{index}"] = RowSlice(name, path, index * rows, rows)
        return units

    def link_file(self, unit: str, user_part: int) -> Path:
        return self.root / "links" / f"{unit}.u{user_part}.parquet"

    def pair_file(self, user_part: int, key_range: int) -> Path:
        return self.root / "pairs" / f"u{user_part}.k{key_range}.parquet"

    def edge_file(self, key_range: int) -> Path:
        return self.root / "edges" / f"k{key_range}.parquet"

    def key_bounds(self, n_items: int) -> np.ndarray:
        """The K + 1 key bounds of the ranges, cut by src so that each holds about as many pairs:
        with src < dst, a node's share of pairs falls linearly with its id."""
        share = np.arange(self.key_ranges + 1) / self.key_ranges
        src = np.rint(n_items * (1 - np.sqrt(1 - share))).astype(np.int64)
        return src * n_items


def slice_count(path: Path, rows: int) -> int:
    """How many slices of at most `rows` rows a parsed file is cut into (at least one)."""
    return max(math.ceil(pq.ParquetFile(path).metadata.num_rows / rows), 1)


def _write(frame: pl.DataFrame, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        frame.write_parquet(tmp)


def _write_parts(frame: pl.DataFrame, part: pl.Series, files: list[Path]) -> None:
    """Row i of `frame` into files[part[i]]; a file no row goes to is written empty."""
    groups = frame.with_columns(part.alias("part")).partition_by(
        "part", as_dict=True, include_key=False
    )
    for index, dest in enumerate(files):
        _write(groups.get((index,), frame.clear()), dest)


def node_bounds(parts: Partitions, metas: Mapping[str, pl.LazyFrame]) -> pl.Series:
    """The R - 1 bounds of the node ranges: range i holds the parent_asins from bound i - 1 up to,
    not including, bound i. Cut so that each holds about as many meta rows, from every n-th row of
    each file (about BOUND_SAMPLES a range: a sort of every parent_asin would cost more than the
    id table), and kept on disk, so that a resumed build cuts as the units it resumes did."""
    stamp = parts.root / "nodes" / "bounds.json"
    if not stamp.exists():
        bounds = []
        if parts.node_ranges > 1:
            rows = sum(meta.select(pl.len()).collect().item() for meta in metas.values())
            every = max(rows // (parts.node_ranges * BOUND_SAMPLES), 1)
            sample = pl.concat(
                [
                    meta.select("parent_asin").gather_every(every).collect()
                    for meta in metas.values()
                ]
            )["parent_asin"].sort()
            cuts = [sample.len() * i // parts.node_ranges for i in range(1, parts.node_ranges)]
            bounds = sample.gather(cuts).to_list() if sample.len() else []
        write_json(stamp, bounds)
    return pl.Series("bound", json.loads(stamp.read_text()), dtype=pl.String)


def filter_meta(parts: Partitions, unit: str, rows: pl.LazyFrame, *, bounds: pl.Series) -> None:
    """Step 2, one meta file or row slice of one: (parent_asin, dropped) of every row, and the
    rows no filter dropped, each into R files by node range, in file order. `rows` holds the node
    columns and `dropped`, the first filter a row fails (null: none). Duplicates across files and
    slices are left to `id_range`."""
    marker = parts.root / "nodes" / f"{unit}.json"
    if marker.exists():
        return
    frame = rows.collect()
    rows_in = frame.height
    part = bounds.search_sorted(frame["parent_asin"], side="right")
    ranges = range(parts.node_ranges)
    ids = frame.select("parent_asin", "dropped")
    _write_parts(ids, part, [parts.id_file(unit, node_range) for node_range in ranges])
    del ids
    kept = frame["dropped"].is_null()
    part = part.filter(kept)
    frame = frame.filter(kept).drop("dropped")
    _write_parts(frame, part, [parts.node_file(unit, node_range) for node_range in ranges])
    write_json(marker, {"rows": rows_in, "kept": frame.height})


def id_range(parts: Partitions, node_range: int, *, meta_slices: list[str]) -> dict:
    """Step 2's second units, one node range: (parent_asin, item) of each of its meta
    parent_asins, sorted, into its id table. Returns its done marker: {"kept": products kept,
    "dropped": {reason: products}}.

    A parent_asin's first row in category order is its product, and every later row is dropped
    as a duplicate, even when a filter then drops the first: all of a product's rows are in one
    node range, so the range decides alone. `meta_slices`: the meta units in meta order, then
    slice order, so their rows follow each other as in the files. Items number the range's kept
    products in parent_asin order from 0 (the driver adds the kept products of the ranges
    before); a dropped product's item is null. Only parent_asin and a small code per meta row
    are read.
    """
    marker = parts.id_table(node_range).with_suffix(".json")
    if marker.exists():
        return json.loads(marker.read_text())
    rows = pl.read_parquet([parts.id_file(unit, node_range) for unit in meta_slices])
    first = rows["parent_asin"].is_first_distinct()
    dropped = Counter(duplicate_parent_asin=int((~first).sum()))
    rows = rows.filter(first).sort("parent_asin")
    reasons = rows["dropped"].drop_nulls().cast(pl.String).value_counts()
    dropped.update(dict(zip(reasons["dropped"], reasons["count"], strict=True)))
    kept = pl.col("dropped").is_null()
    ids = rows.select("parent_asin", item=pl.when(kept).then(kept.cum_sum().cast(pl.Int64) - 1))
    _write(ids, parts.id_table(node_range))
    done = {"kept": ids["item"].count(), "dropped": dict(+dropped)}
    write_json(marker, done)
    return done


def node_range(
    parts: Partitions,
    node_range: int,
    *,
    meta_slices: list[str],
    offset: int,
    graph_ids: np.ndarray | None,
) -> pl.DataFrame:
    """Node range `node_range`'s rows with their graph_id, in graph_id order: each node's first
    row in the order of `meta_slices` (as `id_range`'s). A product's item is its range's plus
    `offset` (the kept products of the ranges before); `graph_ids[item]` is its graph_id (-1: not
    a node), or the item itself when None."""
    ids = pl.read_parquet(parts.id_table(node_range)).drop_nulls("item")
    items = ids["item"].to_numpy() + offset
    graph_id = pl.Series("graph_id", items if graph_ids is None else graph_ids[items])
    nodes = ids.select("parent_asin").with_columns(graph_id)
    rows = pl.read_parquet([parts.node_file(unit, node_range) for unit in meta_slices])
    order = (  # which row goes where, found on the ids alone: the texts are copied once
        rows.select("parent_asin", row=pl.int_range(pl.len()))
        .filter(pl.col("parent_asin").is_first_distinct())
        .join(nodes.filter(pl.col("graph_id") >= 0), on="parent_asin")
        .sort("graph_id")
    )
    return rows[order["row"]].with_columns(order["graph_id"])


def _items(
    asins: pl.Series, part: pl.Series, *, parts: Partitions, offsets: list[int]
) -> pl.Series:
    """The item of each of `asins` (UNKNOWN: not a meta parent_asin, FILTERED: a product the node
    filters dropped), looked up in the id table of its node range (`part`, offsets[i]: range
    i's first item), one range and at most LOOKUP_ROWS reviews at a time. Polars' arrays only,
    so that what the joins free is reused (numpy's come from another allocator)."""
    items = pl.repeat(UNKNOWN, asins.len(), dtype=pl.Int64, eager=True).alias("item")
    order = part.arg_sort()
    sizes = np.bincount(part.to_numpy(), minlength=parts.node_ranges)
    ends = np.cumsum(sizes)
    for node_range in np.flatnonzero(sizes):
        table = pl.read_parquet(parts.id_table(node_range))
        end = ends[node_range]
        for start in range(end - sizes[node_range], end, LOOKUP_ROWS):
            rows = order.slice(start, min(LOOKUP_ROWS, end - start)).alias("row")
            found = pl.DataFrame([asins.gather(rows), rows]).join(table, on="parent_asin")
            items.scatter(found["row"], (found["item"] + offsets[node_range]).fill_null(FILTERED))
    return items


def link_reviews(
    parts: Partitions,
    unit: str,
    rows: RowSlice,
    *,
    bounds: pl.Series,
    offsets: list[int],
    verified_only: bool,
) -> Counter:
    """Step 3, one review file or row slice of one: its kept (user hash, item, timestamp) rows
    into the U user files.

    Each row's item is found in its node range's id table (`bounds`, `offsets`: the ranges and
    their first items; the table holds every meta `parent_asin` of the range, with its item or
    null for a product the node filters dropped): the unit holds its rows and one range's table,
    never every product's. Returns the unit's dropped reviews by reason.
    """
    marker = parts.root / "links" / f"{unit}.json"
    if marker.exists():
        return Counter(json.loads(marker.read_text()))
    reviews = pl.scan_parquet(rows.path).slice(rows.start, rows.rows)
    # the items first, from parent_asin alone: its strings are freed before the other columns
    asins = reviews.select("parent_asin").collect().to_series()
    part = bounds.search_sorted(asins, side="right")
    items = _items(asins, part, parts=parts, offsets=offsets)
    del asins, part
    dropped = Counter(
        unknown_product=(items == UNKNOWN).sum(), filtered_product=(items == FILTERED).sum()
    )
    rest = reviews.select(
        "timestamp",
        user=pl.col("user_id").hash(seed=0),  # 8 bytes, not the text
        verified=pl.col("verified_purchase").fill_null(False),
    ).collect()
    kept = items >= 0
    if verified_only:
        dropped["unverified"] = (kept & ~rest["verified"]).sum()
        kept &= rest["verified"]
    linked = rest.select("user", items, "timestamp").filter(kept)
    del rest, items, kept
    files = [parts.link_file(unit, user_part) for user_part in range(parts.users)]
    _write_parts(linked, linked["user"] % parts.users, files)
    counts = {reason: int(n) for reason, n in dropped.items()}
    write_json(marker, counts)
    return Counter(counts)


def pair_users(
    parts: Partitions, user_part: int, *, links: list[str], n_items: int, cap: int
) -> int:
    """Step 4, one user partition: its pairs' (key, count) runs into the K key-range files.

    Returns the reviews merged because a user reviewed the same product again.
    """
    marker = parts.root / "pairs" / f"u{user_part}.json"
    if marker.exists():
        return json.loads(marker.read_text())["repeat_review_same_user"]
    user_items = (
        pl.scan_parquet([parts.link_file(unit, user_part) for unit in links])
        .group_by("user", "item")
        .agg(timestamp=pl.col("timestamp").fill_null(0).max(), reviews=pl.len())
        .collect()
    )
    repeats = int(user_items["reviews"].sum() - user_items.height)
    counts = pair_counts(user_items.drop("reviews"), n_items, cap=cap)
    del user_items
    cuts = np.searchsorted(counts["key"].to_numpy(), parts.key_bounds(n_items))
    for key_range in range(parts.key_ranges):
        start, stop = cuts[key_range], cuts[key_range + 1]
        _write(counts.slice(start, stop - start), parts.pair_file(user_part, key_range))
    write_json(marker, {"repeat_review_same_user": repeats})
    return repeats


def _summed(runs: pl.DataFrame) -> pl.DataFrame:
    """One row per key, the counts of its runs added: `runs` sorted by key (a hash group-by
    would not need the sort, but is several times slower on this many keys)."""
    keys = runs["key"].to_numpy()
    starts = np.flatnonzero(np.diff(keys, prepend=-1))  # keys are >= 0
    added = np.add.reduceat(runs["count"].to_numpy(), starts) if starts.size else starts
    return pl.DataFrame({"key": keys[starts], "count": added}, schema=runs.schema)


def count_range(parts: Partitions, key_range: int, *, n_items: int, min_weight: int) -> Path:
    """Step 5, one key range: add its counts over every user partition, keep the edges with at
    least `min_weight` users, write them sorted."""
    dest = parts.edge_file(key_range)
    if dest.exists():
        return dest
    runs = pl.read_parquet(
        [parts.pair_file(user_part, key_range) for user_part in range(parts.users)]
    )
    counts = _summed(runs.sort("key"))
    del runs
    _write(edges_from_counts(counts, n_items, min_weight), dest)
    return dest


@dataclass(frozen=True)
class Steps:
    """Where the build's units run (--engine, --processes, --unit-retries), the memory one unit
    may take (--memory-gb: reserved on Ray), and whether their progress shows."""

    units: UnitOptions
    memory_gb: float
    quiet: bool

    def run(self, step: str, func: Callable[..., Any], args: list[tuple], **shared) -> list[Any]:
        """`func(*args[i], **shared)` for every unit of one step, retried as `units` says: as
        many units as the plan cut, whatever `--num-shards` (the crawl's and shard's)."""
        cut = replace(self.units, num_shards=len(args))
        results = run_units(
            func,
            args,
            cut,
            name=f"graph {step}",
            quiet=self.quiet,
            kwargs=shared,
            memory_bytes=math.ceil(self.memory_gb * GB),
        )
        return [results[index] for index in range(len(args))]


def pair_step(
    reviews: Mapping[str, Path],
    *,
    bounds: pl.Series,
    offsets: list[int],
    parts: Partitions,
    verified_only: bool,
    cap: int,
    min_weight: int,
    steps: Steps,
) -> Counter:
    """Steps 3 to 5 over the parsed review files: the K edge ranges (src < dst, ids below
    n_items = offsets[-1], sorted), each unit skipped when an earlier run finished it. `bounds`
    and `offsets`: the node ranges' and their first items. Returns the reviews dropped, by
    reason."""
    n_items = offsets[-1]
    links = parts.row_slices(reviews, parts.link_rows)
    args = [(parts, unit, rows) for unit, rows in links.items()]
    linked = steps.run(
        "link_reviews",
        link_reviews,
        args,
        bounds=bounds,
        offsets=offsets,
        verified_only=verified_only,
    )
    dropped = sum(linked, Counter())
    args = [(parts, user_part) for user_part in range(parts.users)]
    repeats = steps.run("pair_users", pair_users, args, links=list(links), n_items=n_items, cap=cap)
    dropped["repeat_review_same_user"] += sum(repeats)
    args = [(parts, key_range) for key_range in range(parts.key_ranges)]
    steps.run("count_range", count_range, args, n_items=n_items, min_weight=min_weight)
    return dropped


def _read_edges(parts: Partitions, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
    for key_range in range(parts.key_ranges):
        yield pl.read_parquet(parts.edge_file(key_range), columns=columns)


def k_core(parts: Partitions, n_items: int, min_degree: int, *, progress: Progress) -> np.ndarray:
    """Step 6: whether each item is in the k-core (it keeps `min_degree` edges once the items
    below are dropped, until none is left), in passes over the K edge ranges, one at a time: a
    pass holds one range and arrays of one number per item."""
    keep = np.ones(n_items, dtype=bool)
    task = progress.add_task("k-core passes", total=None)
    while True:
        degree = np.zeros(n_items, dtype=np.int64)
        for edges in _read_edges(parts, ["src", "dst"]):
            src, dst = edges["src"].to_numpy(), edges["dst"].to_numpy()
            live = keep[src] & keep[dst]
            degree += np.bincount(src[live], minlength=n_items)
            degree += np.bincount(dst[live], minlength=n_items)
        progress.advance(task)
        survivors = keep & (degree >= min_degree)
        if survivors.sum() == keep.sum():
            return keep
        keep = survivors


def edge_ranges(parts: Partitions, new_id: np.ndarray | None) -> Iterator[pl.DataFrame]:
    """Step 9's input: the K edge ranges in order; with `new_id` (-1: dropped), only the edges
    between kept nodes, renumbered. `new_id` keeps the order of the kept ids, so the edges stay
    sorted."""
    for edges in _read_edges(parts):
        if new_id is None:
            yield edges
            continue
        src, dst = new_id[edges["src"].to_numpy()], new_id[edges["dst"].to_numpy()]
        inside = (src >= 0) & (dst >= 0)
        yield pl.DataFrame(
            {"src": src[inside], "dst": dst[inside], "weight": edges["weight"].to_numpy()[inside]}
        )
