"""Graph stage: parsed meta and reviews to filtered nodes and weighted co-purchase edges.

Every join runs in polars on integer ids. The outputs are sorted, so the same inputs and options
always give the same rows in the same order, and written in row groups of a fixed size
(parquet_groups.py), so the same rows always give the same bytes, however the work was cut
(partitions.py).
"""

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from itertools import accumulate
from pathlib import Path
from typing import Annotated, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
from rich.progress import Progress

from slip_data.bounds import Bounds
from slip_data.categories import parse_categories
from slip_data.distribute import UnitOptions
from slip_data.graph.partitions import (
    Partitions,
    RowSlice,
    Steps,
    edge_ranges,
    edges_from_counts,
    filter_meta,
    id_range,
    k_core,
    node_bounds,
    node_range,
    pair_counts,
    pair_step,
)
from slip_data.graph.texts import text_step, write_reviews
from slip_data.option_fields import check_fields, option, text_option
from slip_data.parquet_groups import write_row_groups
from slip_data.progress import item_progress

SPLITS = ("train", "val", "test")
# As arrow types, those polars' frames convert to (large strings, the split a dictionary).
NODE_SCHEMA = (
    pl.DataFrame(
        schema={
            "graph_id": pl.Int64,
            "parent_asin": pl.String,
            "category": pl.String,
            "label": pl.String,
            "title": pl.String,
            "text": pl.String,
            "image_url": pl.String,
            "split": pl.Enum(SPLITS),
        }
    )
    .to_arrow()
    .schema
)
EDGE_SCHEMA = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("weight", pa.int32())])
# Rows per row group of nodes.parquet and edges.parquet: what the writer holds at most, and the
# step by which a reader after some graph ids skips the rest.
NODE_GROUP_ROWS = 1 << 16
EDGE_GROUP_ROWS = 1 << 18
NODE_FILTERS = ("no_title", "no_image", "no_label")  # in the order they apply


def parse_label_levels(spec: str) -> dict[str, int]:
    """`Books=2,Software=1`: the label level of each category named (the others: label_level)."""
    levels = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, level = item.partition("=")
        if not sep or not level.strip().isdigit():
            raise ValueError(f"--label-levels entry {item!r} is not CATEGORY=LEVEL")
        levels[parse_categories(name.strip())[0]] = int(level)
    return levels


def parse_split(spec: str) -> tuple[float, float, float]:
    """`0.8,0.1,0.1`: the train, val and test shares."""
    try:
        shares = tuple(float(part) for part in spec.split(","))
    except ValueError:
        raise ValueError(f"--split {spec!r} is not three numbers like 0.8,0.1,0.1") from None
    if len(shares) != 3:
        raise ValueError(f"--split {spec!r} needs three shares (train,val,test)")
    return shares  # type: ignore[return-value]


@dataclass(frozen=True)
class GraphOptions:
    """Knobs of the graph stage; docs/data.md explains each rule and its default."""

    verified_only: bool = option(False, "Link products through verified purchases only.")
    min_weight: Annotated[int, Bounds(at_least=1)] = option(
        1, "Keep edges with at least this many shared buyers."
    )
    max_items_per_user: Annotated[int, Bounds(at_least=1)] = option(
        100, "A user's most recent N products make pairs."
    )
    min_degree: Annotated[int, Bounds(at_least=0)] = option(
        0, "Keep the k-core with this minimum degree (0: off)."
    )
    label_level: Annotated[int, Bounds(at_least=0)] = option(
        1, "Level of `categories` used as label (0 = root)."
    )
    label_levels: dict[str, int] = text_option(  # noqa: RUF009 - a field, its default made anew
        "",
        "Per-category levels, e.g. 'Books=2,Software=1'.",
        parse_label_levels,
        flag="--label-levels",
    )
    max_reviews: Annotated[int, Bounds(at_least=0)] = option(25, "Review texts kept per product.")
    split_fractions: tuple[float, float, float] = text_option(
        "0.8,0.1,0.1", "train,val,test shares.", parse_split, flag="--split"
    )
    seed: Annotated[int, Bounds(at_least=-(2**63), at_most=2**63 - 1)] = option(
        0, "Seed of the train/val/test node split."
    )
    memory_gb: Annotated[float, Bounds(above=0)] = option(
        2.0,
        "Memory (GB) one work unit of the graph stage may use: sets the partition counts; "
        "--processes P runs P units at once.",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        fractions = self.split_fractions
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(f"split fractions must be three shares summing to 1, got {fractions}")
        if min(self.label_levels.values(), default=0) < 0:
            raise ValueError("label levels must not be negative")

    def as_dict(self) -> dict:
        """The options that decide the outputs: `memory_gb` only decides how the work is cut."""
        chosen = {k: v for k, v in asdict(self).items() if k != "memory_gb"}
        return chosen | {"split_fractions": list(self.split_fractions)}


def _image_url() -> pl.Expr:
    """The MAIN image (else the first), its hi_res URL preferred, else large."""
    images = pl.col("images")
    main = images.list.eval(
        pl.element().filter(pl.element().struct.field("variant") == "MAIN")
    ).list.first()
    chosen = pl.coalesce(main, images.list.first())
    hi_res, large = chosen.struct.field("hi_res"), chosen.struct.field("large")
    blank_to_null = [
        pl.when(url.str.strip_chars() != "").then(url.str.strip_chars()) for url in (hi_res, large)
    ]
    return pl.coalesce(*blank_to_null)


def _label(options: GraphOptions, category: str) -> pl.Expr:
    level = options.label_levels.get(category, options.label_level)
    label = pl.col("categories").list.get(level, null_on_oob=True).str.strip_chars()
    return pl.when(label != "").then(label)


def _join_text(column: str) -> pl.Expr:
    return pl.col(column).list.eval(pl.element().filter(pl.element().str.strip_chars() != ""))


def node_rows(meta: pl.LazyFrame, category: str, options: GraphOptions) -> pl.LazyFrame:
    """One meta file's node columns, and `dropped`: the first node filter a row fails (null:
    none). The one filter that needs every file, `duplicate_parent_asin`, is `id_range`'s."""
    title = pl.col("title")
    dropped = (
        pl.when(title.is_null() | (title == ""))
        .then(pl.lit("no_title"))
        .when(pl.col("image_url").is_null())
        .then(pl.lit("no_image"))
        .when(pl.col("label").is_null())
        .then(pl.lit("no_label"))
    )
    return meta.select(
        "parent_asin",
        category=pl.lit(category),
        label=_label(options, category),
        title=title.str.strip_chars(),
        text=pl.concat_list(_join_text("features"), _join_text("description")).list.join("\n"),
        image_url=_image_url(),
    ).with_columns(dropped=dropped.cast(pl.Enum(NODE_FILTERS)))


def co_purchase_edges(
    user_items: pl.DataFrame, n_items: int, *, cap: int, min_weight: int
) -> pl.DataFrame:
    """Weighted item pairs (src < dst, sorted) from (user, item, timestamp) rows held at once:
    the graph stage's pair step on one partition, for callers whose users fit in memory."""
    return edges_from_counts(pair_counts(user_items, n_items, cap=cap), n_items, min_weight)


def assign_split(asins: pl.Series, fractions: tuple[float, float, float], seed: int) -> pl.Series:
    """A node's split depends only on its id and the seed: stable when other nodes come or go."""
    key = seed.to_bytes(8, "little", signed=True)
    draws = [
        int.from_bytes(hashlib.blake2b(a.encode(), digest_size=8, key=key).digest(), "little")
        / 2**64
        for a in asins
    ]
    train_cut, val_cut = fractions[0], fractions[0] + fractions[1]
    names = ["train" if u < train_cut else "val" if u < val_cut else "test" for u in draws]
    return pl.Series("split", names, dtype=pl.Enum(SPLITS))


def _node_ranges(
    parts: Partitions,
    *,
    meta_slices: list[str],
    offsets: list[int],
    graph_ids: np.ndarray | None,
    options: GraphOptions,
) -> Iterator[pl.DataFrame]:
    """Steps 7 and 9's input: the R node ranges in graph_id order, each with its splits."""
    for index in range(parts.node_ranges):
        frame = node_range(
            parts, index, meta_slices=meta_slices, offset=offsets[index], graph_ids=graph_ids
        )
        split = assign_split(frame["parent_asin"], options.split_fractions, options.seed)
        yield frame.with_columns(split)


T = TypeVar("T")


def _advancing(frames: Iterable[T], *, progress: Progress, task: str, total: int) -> Iterator[T]:
    """`frames`, with a progress bar that moves as the writer takes them."""
    task_id = progress.add_task(task, total=total)
    for frame in frames:
        yield frame
        progress.advance(task_id)


def filter_meta_file(
    parts: Partitions, unit: str, rows: RowSlice, *, options: GraphOptions, bounds: pl.Series
) -> None:
    """Step 2's unit as the engine runs it: `filter_meta` on one parsed meta file or row slice of
    one, read from its path in the unit's own process, its rows only."""
    meta = pl.scan_parquet(rows.path).slice(rows.start, rows.rows)
    filter_meta(parts, unit, node_rows(meta, rows.name, options), bounds=bounds)


def _select_nodes(
    parts: Partitions,
    metas: Mapping[str, Path],
    options: GraphOptions,
    *,
    meta_slices: Mapping[str, RowSlice],
    steps: Steps,
) -> tuple[pl.Series, list[int], Counter]:
    """Step 2: each meta file, or row slice of one (`meta_slices`), filtered on its own, then
    each node range's id table over all of them. Returns the node ranges' bounds, their first
    items (R + 1 numbers, the last n_items) and the products dropped by reason."""
    bounds = node_bounds(parts, {name: pl.scan_parquet(path) for name, path in metas.items()})
    args = [(parts, unit, rows) for unit, rows in meta_slices.items()]
    steps.run("filter_meta", filter_meta_file, args, options=options, bounds=bounds)
    args = [(parts, index) for index in range(parts.node_ranges)]
    done = steps.run("id_range", id_range, args, meta_slices=list(meta_slices))
    offsets = [0, *accumulate(unit["kept"] for unit in done)]
    dropped = sum((Counter(unit["dropped"]) for unit in done), Counter())
    return bounds, offsets, dropped


def build_graph(
    metas: Mapping[str, Path],
    reviews: Mapping[str, Path],
    options: GraphOptions,
    *,
    parts: Partitions,
    out: Path,
    units: UnitOptions,
    quiet: bool = False,
) -> dict:
    """Write nodes.parquet (graph_id order), edges.parquet (src < dst, sorted) and
    reviews.parquet into `out`; return the counts of what was kept and what was dropped.

    `metas` and `reviews` are the parsed files, by category, in category order. Steps 2 to 5 run
    in the work units of `parts` on the engine of `units`; the k-core and the writes run here,
    holding arrays of one number per product and one range at a time.
    """
    steps = Steps(units, options.memory_gb, quiet)
    meta_slices = parts.row_slices(metas, parts.meta_rows)
    bounds, offsets, dropped = _select_nodes(
        parts, metas, options, meta_slices=meta_slices, steps=steps
    )
    n_items = n_nodes = offsets[-1]
    review_counts = pair_step(
        reviews,
        bounds=bounds,
        offsets=offsets,
        parts=parts,
        verified_only=options.verified_only,
        cap=options.max_items_per_user,
        min_weight=options.min_weight,
        steps=steps,
    )
    with item_progress(quiet) as progress:
        new_id = None
        if options.min_degree:
            keep = k_core(parts, n_items, options.min_degree, progress=progress)
            if not keep.all():
                n_nodes = int(keep.sum())
                dropped["min_degree"] = n_items - n_nodes
                new_id = np.where(keep, np.cumsum(keep) - 1, -1)
        frames = _node_ranges(
            parts,
            meta_slices=list(meta_slices),
            offsets=offsets,
            graph_ids=new_id,
            options=options,
        )
        write_row_groups(
            out / "nodes.parquet",
            _advancing(frames, progress=progress, task="write nodes", total=parts.node_ranges),
            schema=NODE_SCHEMA,
            rows=NODE_GROUP_ROWS,
            compression="zstd",
            use_dictionary=["category", "label", "split"],
        )
        n_edges = write_row_groups(
            out / "edges.parquet",
            _advancing(
                edge_ranges(parts, new_id),
                progress=progress,
                task="write edges",
                total=parts.key_ranges,
            ),
            schema=EDGE_SCHEMA,
            rows=EDGE_GROUP_ROWS,
            compression="zstd",
            use_dictionary=["weight"],
        )
        del new_id  # 8 B a product: not held through the text units
    ranges = text_step(
        reviews,
        n_nodes=n_nodes,
        nodes_file=out / "nodes.parquet",
        parts=parts,
        max_reviews=options.max_reviews,
        steps=steps,
    )
    with item_progress(quiet) as progress:
        texts = ((pl.read_parquet(path) for path in files) for files in ranges)
        write_reviews(
            _advancing(texts, progress=progress, task="review texts", total=len(reviews)),
            out / "reviews.parquet",
        )
    return {
        "nodes": n_nodes,
        "edges": n_edges,
        "dropped_products": dict(sorted(dropped.items())),
        "dropped_reviews": {k: int(v) for k, v in sorted(review_counts.items()) if v},
    }


def read_texts(graph_dir: Path, graph_ids: pl.Series) -> pl.DataFrame:
    """graph_id, parent_asin, title, text and reviews of the nodes `graph_ids` only."""
    wanted = pl.col("graph_id").is_in(graph_ids.implode())
    nodes = pl.scan_parquet(graph_dir / "nodes.parquet").filter(wanted)
    reviews = pl.scan_parquet(graph_dir / "reviews.parquet").filter(wanted)
    return (
        nodes.select("graph_id", "parent_asin", "title", "text")
        .join(reviews, on="graph_id", how="left")
        .collect()
    )
