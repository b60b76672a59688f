"""Graph stage: parsed meta and reviews to filtered nodes and weighted co-purchase edges.

Every join runs in polars on integer ids. The outputs are sorted, so the same inputs and options
always give the same rows in the same order.
"""

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

SPLITS = ("train", "val", "test")
NODE_COLUMNS = [
    "graph_id",
    "parent_asin",
    "category",
    "label",
    "title",
    "text",
    "reviews",
    "image_url",
    "split",
]


@dataclass(frozen=True)
class GraphOptions:
    """Knobs of the graph stage; docs/data.md explains each rule and its default."""

    verified_only: bool = False
    min_weight: int = 1
    max_items_per_user: int = 100
    min_degree: int = 0
    label_level: int = 1
    label_levels: dict[str, int] = field(default_factory=dict)
    max_reviews: int = 25
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0

    def __post_init__(self) -> None:
        fractions = self.split_fractions
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(f"split fractions must be three shares summing to 1, got {fractions}")
        for name in ("min_weight", "max_items_per_user"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        levels = [self.label_level, *self.label_levels.values()]
        if min(levels) < 0 or self.min_degree < 0 or self.max_reviews < 0:
            raise ValueError("label levels, min_degree and max_reviews must not be negative")

    def as_dict(self) -> dict:
        return asdict(self) | {"split_fractions": list(self.split_fractions)}


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


def _pairs(user_items: pl.LazyFrame, options: GraphOptions) -> pl.LazyFrame:
    """Weighted item pairs from (user, item, timestamp) rows, long histories capped first.

    A user keeps their `max_items_per_user` most recent items (ties by item id), so no user adds
    more than cap * (cap - 1) / 2 pairs.
    """
    capped = (
        user_items.sort(["user", "timestamp", "item"], descending=[False, True, False])
        .with_columns(position=pl.int_range(pl.len()).over("user"))
        .filter(pl.col("position") < options.max_items_per_user)
        .filter(pl.len().over("user") > 1)
        .select("user", "item")
    )
    return (
        capped.join(capped, on="user", suffix="_b")
        .filter(pl.col("item") < pl.col("item_b"))
        .group_by("item", "item_b")
        .agg(weight=pl.len().cast(pl.Int32))
        .filter(pl.col("weight") >= options.min_weight)
        .select(src=pl.col("item"), dst=pl.col("item_b"), weight="weight")
    )


def _prune_degree(
    edges: pl.DataFrame, n_nodes: int, min_degree: int
) -> tuple[pl.DataFrame, pl.Series]:
    """Drop nodes below `min_degree` until none is left (the k-core); returns edges and kept ids."""
    keep = pl.Series("item", range(n_nodes), dtype=pl.Int64)
    while min_degree > 0:
        degree = (
            pl.concat([edges.select(item="src"), edges.select(item="dst")])
            .group_by("item")
            .len()
            .filter(pl.col("len") >= min_degree)
        )
        survivors = keep.filter(keep.is_in(degree["item"].implode()))
        if survivors.len() == keep.len():
            break
        keep = survivors
        kept = keep.implode()
        edges = edges.filter(pl.col("src").is_in(kept) & pl.col("dst").is_in(kept))
    return edges, keep


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
    meta: pl.LazyFrame, reviews: pl.LazyFrame, options: GraphOptions
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Nodes (graph_id order), undirected edges (src < dst) and counts of what was dropped."""
    nodes, dropped = select_nodes(meta, options)
    nodes = nodes.with_columns(item=pl.int_range(pl.len(), dtype=pl.Int64))
    review_counts: Counter = Counter()

    all_asins = meta.select("parent_asin").unique()
    linked = reviews.join(nodes.lazy().select("parent_asin", "item"), on="parent_asin", how="left")
    totals = linked.select(
        total=pl.len(),
        unknown=(~pl.col("parent_asin").is_in(all_asins.collect()["parent_asin"].implode())).sum(),
        filtered=pl.col("item").is_null().sum(),
        unverified=(pl.col("verified_purchase") != True).sum(),  # noqa: E712 (null counts as not)
    ).collect()
    review_counts["unknown_product"] = totals["unknown"].item()
    review_counts["filtered_product"] = totals["filtered"].item() - totals["unknown"].item()
    linked = linked.filter(pl.col("item").is_not_null())
    if options.verified_only:
        review_counts["unverified"] = totals["unverified"].item()
        linked = linked.filter(pl.col("verified_purchase").fill_null(False))

    user_items = (
        linked.select(
            user=pl.col("user_id").cast(pl.Categorical).to_physical(),
            item="item",
            timestamp=pl.col("timestamp").fill_null(0),
        )
        .group_by("user", "item")
        .agg(pl.col("timestamp").max(), reviews=pl.len())
    )
    repeats = user_items.select((pl.col("reviews") - 1).sum()).collect().item()
    review_counts["repeat_review_same_user"] = repeats or 0
    edges = _pairs(user_items.drop("reviews"), options).collect()
    edges, keep = _prune_degree(edges, nodes.height, options.min_degree)
    if keep.len() < nodes.height:
        dropped["min_degree"] = nodes.height - keep.len()
        nodes = nodes.filter(pl.col("item").is_in(keep.implode()))
    remap = nodes.select("item", graph_id=pl.int_range(pl.len(), dtype=pl.Int64))
    edges = (
        edges.join(remap.rename({"item": "src"}), on="src")
        .join(remap.rename({"item": "dst", "graph_id": "dst_id"}), on="dst")
        .select(src="graph_id", dst="dst_id", weight="weight")
        .sort("src", "dst")
    )
    review_text = _top_reviews(linked, options.max_reviews)
    nodes = (
        nodes.join(remap, on="item")
        .join(review_text, on="item", how="left")
        .with_columns(
            reviews=pl.col("reviews").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            split=assign_split(nodes["parent_asin"], options.split_fractions, options.seed),
        )
        .sort("graph_id")
        .select(NODE_COLUMNS)
    )
    counts = {
        "nodes": nodes.height,
        "edges": edges.height,
        "dropped_products": dict(sorted(dropped.items())),
        "dropped_reviews": {k: v for k, v in sorted(review_counts.items()) if v},
    }
    return nodes, edges, counts


def _top_reviews(linked: pl.LazyFrame, max_reviews: int) -> pl.DataFrame:
    """Up to `max_reviews` review texts per product: most helpful first, then newest."""
    body = _clean_html(pl.col("text").fill_null(""))
    title = _clean_html(pl.col("title").fill_null(""))
    line = pl.when(title != "").then(pl.concat_str(title, pl.lit(": "), body)).otherwise(body)
    return (
        linked.select("item", "helpful_vote", "timestamp", "user_id", line=line)
        .filter(pl.col("line") != "")
        .sort(
            ["item", "helpful_vote", "timestamp", "user_id", "line"],
            descending=[False, True, True, False, False],
            nulls_last=True,
        )
        .group_by("item", maintain_order=True)
        .agg(reviews=pl.col("line").head(max_reviews))
        .collect()
    )


def read_graph(graph_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The graph stage's outputs, as the shard stage reads them."""
    nodes = pl.read_parquet(graph_dir / "nodes.parquet")
    return nodes, pl.read_parquet(graph_dir / "edges.parquet")
