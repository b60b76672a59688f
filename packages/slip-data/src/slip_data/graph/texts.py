"""The review texts in work units, so that no unit holds a whole review file's texts.

reviews.parquet holds, review file by review file in category order, one row per node with a
non-empty review text in that file: (graph_id, reviews), in graph_id order, with up to
`max_reviews` texts, most helpful first, then newest, then by user hash, then in the file's order.
A node reviewed in two files (its parent_asin under two categories, its meta in one) has a row in
each. Sorting a whole file's texts took tens of GB for the largest real file, so each parsed
review file is cut into S row slices of `text_rows` rows and as many node ranges (of graph ids,
found by parent_asin bounds): a slice unit keeps each product's best texts and writes them by
node range, then a range unit joins its nodes and takes the best over the file's S slices in the
same order, which is the whole file's top. The driver writes the ranges in order, in row groups
of REVIEW_GROUP_ROWS per file, so the bytes are the same at any cut.

Layout under the partitions folder:

    texts/{review}.s{i}.r{t}.parquet  row slice i's best texts in node range t: (parent_asin,
                                      helpful_vote, timestamp, row, user, line)
    texts/{review}.s{i}.json          that unit's done marker: the texts it kept
    texts/{review}.r{t}.parquet       node range t's (graph_id, reviews) rows: the unit's output
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from slip_data.atomic import atomic_path, write_json
from slip_data.graph.partitions import (
    MAX_PARTITIONS,
    Partitions,
    RowSlice,
    Steps,
    _write,
    _write_parts,
    slice_count,
)
from slip_data.parquet_groups import write_groups

# Rows per row group of reviews.parquet, a file's last one shorter: what the driver's write holds
# at once (up to 25 texts a product: about 200 MB at 500 B a text) and the step by which
# read_texts skips. Files written whole had pyarrow's 1,048,576 (12 GB assumed for Electronics).
REVIEW_GROUP_ROWS = 1 << 14
REVIEW_SCHEMA = pa.schema([("graph_id", pa.int64()), ("reviews", pa.large_list(pa.large_string()))])
# The order of a product's texts; the row in the file breaks full ties.
ORDER = ("helpful_vote", "timestamp", "user", "row")
DESCENDING = (True, True, False, False)


def _clean_html(text: pl.Expr) -> pl.Expr:
    """Review texts carry `<br />` and entities; keep them readable as plain text."""
    return (
        text.str.replace_all(r"(?i)<br\s*/?>", "\n")
        .str.replace_all(r"<[^>]{0,200}>", "")
        .str.replace_many(["&amp;", "&quot;", "&#39;", "&lt;", "&gt;"], ["&", '"', "'", "<", ">"])
        .str.strip_chars()
    )


def _line() -> pl.Expr:
    """A review's text as kept: `title: text`, or the text alone when the title is empty."""
    body = _clean_html(pl.col("text").fill_null(""))
    title = _clean_html(pl.col("title").fill_null(""))
    return pl.when(title != "").then(pl.concat_str(title, pl.lit(": "), body)).otherwise(body)


def _best_first(texts: pl.LazyFrame, product: str) -> pl.LazyFrame:
    return texts.sort([product, *ORDER], descending=[False, *DESCENDING], nulls_last=True)


@dataclass(frozen=True)
class TextRange:
    """A range unit: node range `index` of review file `review`, cut into `slices` row slices."""

    review: str
    slices: int
    index: int


def _range_count(slices: int) -> int:
    """A file's node ranges: as many as its slices, so that a range unit holds about a slice."""
    return min(slices, MAX_PARTITIONS)


def _slice_file(parts: Partitions, unit: str, node_range: int) -> Path:
    return parts.root / "texts" / f"{unit}.r{node_range}.parquet"


def _range_file(parts: Partitions, texts: TextRange) -> Path:
    return parts.root / "texts" / f"{texts.review}.r{texts.index}.parquet"


def slice_texts(
    parts: Partitions, unit: str, rows: RowSlice, *, bounds: dict[int, list[str]], keep: int
) -> None:
    """A review file's row slice: each product's `keep` best non-empty texts (with their rows in
    the file, for the ties) into the file's node-range files, whose parent_asin bounds are
    bounds[ranges]. Nodes or not: the range units join the nodes, so no id table is read. A
    file in one slice is its range unit's input whole: its texts are not sorted twice."""
    marker = parts.root / "texts" / f"{unit}.json"
    if marker.exists():
        return
    slices = slice_count(rows.path, rows.rows)
    ranges = _range_count(slices)
    texts = (
        pl.scan_parquet(rows.path)
        .slice(rows.start, rows.rows)
        .with_row_index("row", offset=rows.start)
        .filter(pl.col("parent_asin").is_not_null())
        .select("parent_asin", *ORDER[:2], "row", user=pl.col("user_id").hash(seed=0), line=_line())
        .filter(pl.col("line") != "")
    )
    if slices > 1:
        texts = _best_first(texts, "parent_asin").filter(
            pl.int_range(pl.len()).over("parent_asin") < keep
        )
    best = texts.collect()
    part = pl.Series(bounds[ranges], dtype=pl.String).search_sorted(best["parent_asin"], "right")
    _write_parts(best, part, [_slice_file(parts, unit, index) for index in range(ranges)])
    write_json(marker, {"kept": best.height})


def top_texts(
    parts: Partitions, texts: TextRange, *, nodes: Path, n_nodes: int, max_reviews: int
) -> Path:
    """A node range of one review file: the `max_reviews` best texts of each of its nodes over
    the file's slices, as (graph_id, reviews) rows in graph_id order. The range's nodes are read
    from `nodes` (nodes.parquet, `n_nodes` rows), its row groups outside the range skipped."""
    dest = _range_file(parts, texts)
    if dest.exists():
        return dest
    start, stop = _graph_ids(texts.index, _range_count(texts.slices), n_nodes)
    units = [f"{texts.review}.s{index}" for index in range(texts.slices)]
    best = (
        pl.scan_parquet([_slice_file(parts, unit, texts.index) for unit in units])
        .join(
            pl.scan_parquet(nodes)
            .select("parent_asin", "graph_id")
            .filter(pl.col("graph_id").is_between(start, stop, closed="left")),
            on="parent_asin",
        )
        .pipe(_best_first, "graph_id")
        .group_by("graph_id", maintain_order=True)
        .agg(reviews=pl.col("line").head(max_reviews))
        .collect()
    )
    _write(best, dest)
    return dest


def _graph_ids(index: int, ranges: int, n_nodes: int) -> tuple[int, int]:
    """The graph ids [start, stop) of node range `index` of `ranges`."""
    return index * n_nodes // ranges, (index + 1) * n_nodes // ranges


def _parent_asins(nodes: Path, graph_ids: list[int]) -> list[str]:
    """The parent_asin of each of `graph_ids` in `nodes` (nodes.parquet, whose row g is graph_id
    g), each read from its row group alone: the driver never holds every node's."""
    column = pl.scan_parquet(nodes).select("parent_asin")
    return [column.slice(graph_id, 1).collect().item() for graph_id in graph_ids]


def text_step(
    reviews: Mapping[str, Path],
    *,
    n_nodes: int,
    nodes_file: Path,
    parts: Partitions,
    max_reviews: int,
    steps: Steps,
) -> list[list[Path]]:
    """The slice units, then the range units, of every parsed review file; returns each file's
    range files, in order. `nodes_file`: nodes.parquet as written, `n_nodes` rows."""
    slices = parts.row_slices(reviews, parts.text_rows)
    counts = {review: slice_count(path, parts.text_rows) for review, path in reviews.items()}
    bounds = {}  # the parent_asin of each range's first node, by the number of ranges
    for ranges in {_range_count(count) for count in counts.values()}:
        firsts = [_graph_ids(index, ranges, n_nodes)[0] for index in range(1, ranges)]
        bounds[ranges] = _parent_asins(nodes_file, firsts) if n_nodes else []
    args = [(parts, unit, rows) for unit, rows in slices.items()]
    # a node whose texts are all past max_reviews still has a row, of no texts: keep one
    steps.run("slice_texts", slice_texts, args, bounds=bounds, keep=max(max_reviews, 1))
    ranges = [
        TextRange(review, count, index)
        for review, count in counts.items()
        for index in range(_range_count(count))
    ]
    steps.run(
        "top_texts",
        top_texts,
        [(parts, each) for each in ranges],
        nodes=nodes_file,
        n_nodes=n_nodes,
        max_reviews=max_reviews,
    )
    return [
        [_range_file(parts, each) for each in ranges if each.review == review] for review in reviews
    ]


def write_reviews(files: Iterable[Iterable[pl.DataFrame]], dest: Path) -> None:
    """reviews.parquet from each review file's (graph_id, reviews) frames in order: a file's rows
    in groups of REVIEW_GROUP_ROWS, each in one chunk (a file with none: one empty group), so
    the bytes depend on the rows alone, not on the cut."""
    with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, REVIEW_SCHEMA) as writer:
        for frames in files:
            write_groups(writer, frames, rows=REVIEW_GROUP_ROWS, empty_group=True)
