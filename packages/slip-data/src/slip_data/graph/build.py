"""Graph stage: parsed meta and reviews to filtered nodes and weighted co-purchase edges.

Every join runs in polars on integer ids. The outputs are sorted, so the same inputs and options
always give the same rows in the same order.
"""

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl

from slip_data.bounds import Bounds
from slip_data.categories import parse_categories
from slip_data.graph.partitions import (
    Partitions,
    edges_from_counts,
    pair_counts,
    partitioned_edges,
)
from slip_data.option_fields import check_fields, option, text_option

SPLITS = ("train", "val", "test")
NODE_COLUMNS = [
    "graph_id",
    "parent_asin",
    "category",
    "label",
    "title",
    "text",
    "image_url",
    "split",
]


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
        2.0, "Memory (GB) a unit of the pair step may use: sets the partition counts."
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


def _label(options: GraphOptions) -> pl.Expr:
    level = pl.col("category").replace_strict(
        options.label_levels, default=options.label_level, return_dtype=pl.Int64
    )
    label = pl.col("categories").list.get(level, null_on_oob=True).str.strip_chars()
    return pl.when(label != "").then(label)


def _join_text(column: str) -> pl.Expr:
    return pl.col(column).list.eval(pl.element().filter(pl.element().str.strip_chars() != ""))


def _clean_html(text: pl.Expr) -> pl.Expr:
    """Review texts carry `<br />` and entities; keep them readable as plain text."""
    return (
        text.str.replace_all(r"(?i)<br\s*/?>", "\n")
        .str.replace_all(r"<[^>]{0,200}>", "")
        .str.replace_many(["&amp;", "&quot;", "&#39;", "&lt;", "&gt;"], ["&", '"', "'", "<", ">"])
        .str.strip_chars()
    )


def select_nodes(meta: pl.LazyFrame, options: GraphOptions) -> tuple[pl.DataFrame, Counter]:
    """Apply the node filters in order, counting each dropped product by its first reason."""
    frame = meta.with_columns(
        pl.col("title").str.strip_chars(),
        image_url=_image_url(),
        label=_label(options),
        text=pl.concat_list(_join_text("features"), _join_text("description")).list.join("\n"),
        first=pl.col("parent_asin").is_first_distinct(),
    ).collect()
    reasons = {
        "duplicate_parent_asin": ~pl.col("first"),
        "no_title": pl.col("title").is_null() | (pl.col("title") == ""),
        "no_image": pl.col("image_url").is_null(),
        "no_label": pl.col("label").is_null(),
    }
    dropped: Counter = Counter()
    for reason, rule in reasons.items():
        hit = frame.select(rule.fill_null(True).sum()).item()
        if hit:
            dropped[reason] = hit
        frame = frame.filter(~rule.fill_null(True))
    nodes = frame.select("parent_asin", "category", "label", "title", "text", "image_url")
    return nodes.sort("parent_asin"), dropped


def co_purchase_edges(
    user_items: pl.DataFrame, n_items: int, *, cap: int, min_weight: int
) -> pl.DataFrame:
    """Weighted item pairs (src < dst, sorted) from (user, item, timestamp) rows held at once:
    the graph stage's pair step on one partition, for callers whose users fit in memory."""
    return edges_from_counts(pair_counts(user_items, n_items, cap=cap), n_items, min_weight)


def _prune_degree(edges: pl.DataFrame, n_nodes: int, min_degree: int) -> np.ndarray:
    """Ids of the nodes in the k-core: drop nodes below `min_degree` until none is left."""
    keep = np.ones(n_nodes, dtype=bool)
    src, dst = edges["src"].to_numpy(), edges["dst"].to_numpy()
    while min_degree > 0:
        live = keep[src] & keep[dst]
        degree = np.bincount(src[live], minlength=n_nodes) + np.bincount(
            dst[live], minlength=n_nodes
        )
        survivors = keep & (degree >= min_degree)
        if survivors.sum() == keep.sum():
            break
        keep = survivors
    return np.flatnonzero(keep)


def _renumber(edges: pl.DataFrame, kept: np.ndarray, n_nodes: int) -> pl.DataFrame:
    """Edges between kept nodes, in the ids 0..len(kept)-1 (order preserved, so still sorted)."""
    new_id = np.full(n_nodes, -1, dtype=np.int64)
    new_id[kept] = np.arange(kept.size)
    src, dst = new_id[edges["src"].to_numpy()], new_id[edges["dst"].to_numpy()]
    inside = (src >= 0) & (dst >= 0)
    return pl.DataFrame(
        {"src": src[inside], "dst": dst[inside], "weight": edges["weight"].to_numpy()[inside]}
    )


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


def build_graph(
    meta: pl.LazyFrame,
    reviews: Mapping[str, pl.LazyFrame],
    options: GraphOptions,
    *,
    parts: Partitions,
    quiet: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Nodes (graph_id order), undirected edges (src < dst) and counts of what was dropped.

    `reviews` holds one frame per raw review file, by name; only their id, user and time columns
    are read, one file at a time. The pairs are made and counted in the work units of `parts`.
    """
    nodes, dropped = select_nodes(meta, options)
    ids = (
        meta.select("parent_asin")
        .unique()
        .join(
            nodes.lazy().select("parent_asin", item=pl.int_range(pl.len())),
            on="parent_asin",
            how="left",
        )
        .collect()
    )
    edges, review_counts = partitioned_edges(
        reviews,
        ids,
        n_items=nodes.height,
        parts=parts,
        verified_only=options.verified_only,
        cap=options.max_items_per_user,
        min_weight=options.min_weight,
        quiet=quiet,
    )
    del ids
    if options.min_degree:
        kept = _prune_degree(edges, nodes.height, options.min_degree)
        if kept.size < nodes.height:
            dropped["min_degree"] = nodes.height - kept.size
            edges = _renumber(edges, kept, nodes.height)
            nodes = nodes[kept]
    nodes = nodes.with_columns(
        graph_id=pl.int_range(pl.len(), dtype=pl.Int64),
        split=assign_split(nodes["parent_asin"], options.split_fractions, options.seed),
    ).select(NODE_COLUMNS)
    counts = {
        "nodes": nodes.height,
        "edges": edges.height,
        "dropped_products": dict(sorted(dropped.items())),
        "dropped_reviews": {k: int(v) for k, v in sorted(review_counts.items()) if v},
    }
    return nodes, edges, counts


def top_reviews(reviews: pl.LazyFrame, nodes: pl.DataFrame, max_reviews: int) -> pl.DataFrame:
    """(graph_id, reviews): up to `max_reviews` texts per product, most helpful first, then newest.

    Run once per review file, so that only one file's texts are in memory at a time.
    """
    body = _clean_html(pl.col("text").fill_null(""))
    title = _clean_html(pl.col("title").fill_null(""))
    line = pl.when(title != "").then(pl.concat_str(title, pl.lit(": "), body)).otherwise(body)
    return (
        reviews.join(nodes.lazy().select("parent_asin", "graph_id"), on="parent_asin")
        .with_columns(user=pl.col("user_id").hash(seed=0))
        .sort(  # stable, so full ties keep the file's order
            ["graph_id", "helpful_vote", "timestamp", "user"],
            descending=[False, True, True, False],
            nulls_last=True,
            maintain_order=True,
        )
        .select("graph_id", line=line)
        .filter(pl.col("line") != "")
        .group_by("graph_id", maintain_order=True)
        .agg(reviews=pl.col("line").head(max_reviews))
        .collect()
    )


PLAN_COLUMNS = ("graph_id", "category", "label", "split", "image_url")


def read_plan_nodes(graph_dir: Path) -> pl.DataFrame:
    """The nodes' small columns, in graph_id order: what the shard plan needs, no text."""
    return pl.read_parquet(graph_dir / "nodes.parquet", columns=list(PLAN_COLUMNS)).sort("graph_id")


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
