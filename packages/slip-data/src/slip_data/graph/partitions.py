"""The pair step in work units, so that no unit holds every review, user or pair at once.

Links are written per review file into U files by user hash (a user's whole history lands in one
user partition); each user partition's pairs are counted and written into K files by key range;
each key range adds its counts over the U partitions and applies --min-weight. Keys are
src * n_items + dst, so the K ranges of edges concatenate into the sorted edge list. Every file is
written atomically and every unit is skipped when done, so a killed build resumes per unit.

Layout under `root` (graph/partitions/, removed once the stage is done):

    plan.json                   what the files were made for: inputs, options, U, K
    links/{review}.u{j}.parquet one review file's (user, item, timestamp) rows of user partition j
    links/{review}.json         that unit's done marker: the reviews it dropped, by reason
    pairs/u{j}.k{r}.parquet     user partition j's (key, count) runs in key range r, sorted
    pairs/u{j}.json             that unit's done marker: the repeat reviews it merged
    edges/k{r}.parquet          key range r's edges (src, dst, weight), sorted
"""

import json
import math
import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from slip_data.atomic import atomic_path, write_json
from slip_data.progress import item_progress

# Peak bytes per review of a user-partition unit (links, histories, pair keys and their sort) and
# of a key-range unit (the runs of every user partition and their sort): docs/scale.md's model of
# the pair step (97 B per review + 35 B per pair; 36 B per pair) at 6.5 pairs per review, with a
# margin. A corpus with more pairs per review needs a smaller --memory-gb.
USER_UNIT_BYTES_PER_REVIEW = 400
RANGE_UNIT_BYTES_PER_REVIEW = 250
MAX_PARTITIONS = 256  # each way: the pair step writes U x K files
GB = 1 << 30


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


def partition_counts(reviews: int, memory_gb: float) -> tuple[int, int]:
    """(U, K): the fewest user partitions and key ranges whose units fit in `memory_gb` each."""
    budget = memory_gb * GB
    users = math.ceil(reviews * USER_UNIT_BYTES_PER_REVIEW / budget)
    ranges = math.ceil(reviews * RANGE_UNIT_BYTES_PER_REVIEW / budget)
    return min(max(users, 1), MAX_PARTITIONS), min(max(ranges, 1), MAX_PARTITIONS)


@dataclass(frozen=True)
class Partitions:
    """Where the units of one build write, and how its work is cut."""

    root: Path
    users: int
    key_ranges: int

    @classmethod
    def open(cls, root: Path, *, users: int, key_ranges: int, made_for: dict) -> "Partitions":
        """The folder for this plan: files left by a run with another plan are removed first."""
        plan = {"made_for": made_for, "users": users, "key_ranges": key_ranges}
        plan["polars"] = pl.__version__  # the user hash may change between polars versions
        stamp = root / "plan.json"
        if root.exists() and (not stamp.exists() or json.loads(stamp.read_text()) != plan):
            shutil.rmtree(root)
        if not stamp.exists():
            write_json(stamp, plan)
        return cls(root, users, key_ranges)

    def link_file(self, review: str, user_part: int) -> Path:
        return self.root / "links" / f"{review}.u{user_part}.parquet"

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


def _write(frame: pl.DataFrame, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        frame.write_parquet(tmp)


def link_reviews(
    parts: Partitions, review: str, frame: pl.LazyFrame, *, ids: pl.DataFrame, verified_only: bool
) -> Counter:
    """Step 3, one review file: its kept (user hash, item, timestamp) rows into the U user files.

    `ids` maps every meta `parent_asin` to its item, null for a product the node filters dropped.
    Returns the file's dropped reviews by reason.
    """
    marker = parts.root / "links" / f"{review}.json"
    if marker.exists():
        return Counter(json.loads(marker.read_text()))
    linked = (
        frame.select(
            "parent_asin",
            "timestamp",
            user=pl.col("user_id").hash(seed=0),  # before the join: 8 bytes, not the text
            verified=pl.col("verified_purchase").fill_null(False),
        )
        .join(ids.lazy().with_columns(known=pl.lit(True)), on="parent_asin", how="left")
        .select("user", "item", "timestamp", "verified", known=pl.col("known").fill_null(False))
        .collect()
    )
    dropped = Counter(
        unknown_product=(~linked["known"]).sum(),
        filtered_product=(linked["known"] & linked["item"].is_null()).sum(),
    )
    kept = pl.col("item").is_not_null()
    if verified_only:
        dropped["unverified"] = (linked["item"].is_not_null() & ~linked["verified"]).sum()
        kept &= pl.col("verified")
    linked = (
        linked.lazy()
        .filter(kept)
        .select("user", "item", "timestamp", part=(pl.col("user") % parts.users).cast(pl.UInt32))
        .collect()
    )
    groups = linked.partition_by("part", as_dict=True, include_key=False)
    empty = linked.clear().drop("part")
    for user_part in range(parts.users):
        _write(groups.get((user_part,), empty), parts.link_file(review, user_part))
    counts = {reason: int(n) for reason, n in dropped.items()}
    write_json(marker, counts)
    return Counter(counts)


def pair_users(
    parts: Partitions, user_part: int, *, reviews: list[str], n_items: int, cap: int
) -> int:
    """Step 4, one user partition: its pairs' (key, count) runs into the K key-range files.

    Returns the reviews merged because a user reviewed the same product again.
    """
    marker = parts.root / "pairs" / f"u{user_part}.json"
    if marker.exists():
        return json.loads(marker.read_text())["repeat_review_same_user"]
    user_items = (
        pl.scan_parquet([parts.link_file(review, user_part) for review in reviews])
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


def partitioned_edges(
    reviews: Mapping[str, pl.LazyFrame],
    ids: pl.DataFrame,
    *,
    n_items: int,
    parts: Partitions,
    verified_only: bool,
    cap: int,
    min_weight: int,
    quiet: bool = False,
) -> tuple[pl.DataFrame, Counter]:
    """Sorted edges (src < dst, ids below `n_items`) and the reviews dropped, by reason: steps 3
    to 5, each unit skipped when an earlier run finished it."""
    dropped: Counter = Counter()
    with item_progress(quiet) as progress:
        task = progress.add_task("link reviews", total=len(reviews))
        for review, frame in reviews.items():
            dropped += link_reviews(parts, review, frame, ids=ids, verified_only=verified_only)
            progress.advance(task)
        task = progress.add_task("pair users", total=parts.users)
        for user_part in range(parts.users):
            dropped["repeat_review_same_user"] += pair_users(
                parts, user_part, reviews=list(reviews), n_items=n_items, cap=cap
            )
            progress.advance(task)
        task = progress.add_task("count key ranges", total=parts.key_ranges)
        files = []
        for key_range in range(parts.key_ranges):
            files.append(count_range(parts, key_range, n_items=n_items, min_weight=min_weight))
            progress.advance(task)
    return pl.concat([pl.read_parquet(file) for file in files], rechunk=True), dropped
