import itertools

import networkx as nx
import polars as pl
import pytest
from rawfiles import product, review, write_jsonl_gz

from slip_data.graph.build import GraphOptions, assign_split
from slip_data.graph.stage import RawCategory, run_graph


def read_graph(graph_dir):
    """The graph stage's outputs whole: nodes with their reviews, and edges."""
    nodes = pl.read_parquet(graph_dir / "nodes.parquet").join(
        pl.read_parquet(graph_dir / "reviews.parquet"), on="graph_id", how="left"
    )
    nodes = nodes.sort("graph_id").with_columns(
        pl.col("reviews").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )
    return nodes, pl.read_parquet(graph_dir / "edges.parquet")


def build(tmp_path, meta, reviews, **options):
    raw = RawCategory(
        "All_Beauty",
        write_jsonl_gz(tmp_path / "meta.jsonl.gz", meta),
        write_jsonl_gz(tmp_path / "reviews.jsonl.gz", reviews),
    )
    summary = run_graph([raw], tmp_path / "graph", GraphOptions(**options), quiet=True)
    nodes, edges = read_graph(tmp_path / "graph")
    return nodes, edges, summary["counts"]


def edge_map(nodes, edges):
    asin = dict(zip(nodes["graph_id"], nodes["parent_asin"], strict=True))
    return {(asin[s], asin[d]): w for s, d, w in edges.iter_rows()}


def test_edges_weigh_shared_buyers_and_are_stored_once(tmp_path):
    meta = [product(a) for a in "ABCD"]
    reviews = [
        review("u1", "A"), review("u1", "B"), review("u1", "C"),
        review("u2", "A"), review("u2", "B"),
        review("u3", "D"),
    ]  # fmt: skip
    nodes, edges, _ = build(tmp_path, meta, reviews)
    assert edge_map(nodes, edges) == {("A", "B"): 2, ("A", "C"): 1, ("B", "C"): 1}
    assert (edges["src"] < edges["dst"]).all()
    assert nodes["graph_id"].to_list() == list(range(4))


def test_same_as_networkx_weighted_projection(tmp_path):
    meta = [product(f"P{i:02d}") for i in range(30)]
    reviews = [
        review(f"u{u}", f"P{(u * 7 + k * 3) % 30:02d}", timestamp=k)
        for u in range(40)
        for k in range(1 + u % 5)
    ]
    nodes, edges, _ = build(tmp_path, meta, reviews)
    bipartite = nx.Graph()
    bipartite.add_edges_from((r["user_id"], r["parent_asin"]) for r in reviews)
    products = {r["parent_asin"] for r in reviews}
    projected = nx.bipartite.weighted_projected_graph(bipartite, products)
    expected = {tuple(sorted((a, b))): d["weight"] for a, b, d in projected.edges(data=True)}
    assert edge_map(nodes, edges) == expected


def test_min_weight_and_verified_only(tmp_path):
    meta = [product(a) for a in "ABC"]
    reviews = [
        review("u1", "A"), review("u1", "B"),
        review("u2", "A"), review("u2", "B"),
        review("u3", "B"), review("u3", "C", verified_purchase=False),
    ]  # fmt: skip
    nodes, edges, _ = build(tmp_path / "w", meta, reviews, min_weight=2)
    assert edge_map(nodes, edges) == {("A", "B"): 2}
    nodes, edges, counts = build(tmp_path / "v", meta, reviews, verified_only=True)
    assert edge_map(nodes, edges) == {("A", "B"): 2}
    assert counts["dropped_reviews"]["unverified"] == 1


def test_long_histories_keep_the_most_recent_items(tmp_path):
    meta = [product(f"P{i}") for i in range(6)]
    reviews = [review("heavy", f"P{i}", timestamp=i) for i in range(6)]
    nodes, edges, _ = build(tmp_path, meta, reviews, max_items_per_user=3)
    assert set(edge_map(nodes, edges)) == set(itertools.combinations(["P3", "P4", "P5"], 2))


def test_node_filters_are_counted_by_reason(tmp_path):
    meta = [
        product("A"),
        product("A", title="duplicate"),
        product("B", title="  "),
        product("C", images=[]),
        product("D", categories=[]),
        product("E", categories=["Root"]),
    ]
    reviews = [review("u1", "A"), review("u1", "B"), review("u1", "Z"), review("u1", "A")]
    nodes, _, counts = build(tmp_path, meta, reviews)
    assert nodes["parent_asin"].to_list() == ["A"]
    assert counts["dropped_products"] == {
        "duplicate_parent_asin": 1,
        "no_title": 1,
        "no_image": 1,
        "no_label": 2,
    }
    assert counts["dropped_reviews"] == {
        "unknown_product": 1,
        "filtered_product": 1,
        "repeat_review_same_user": 1,
    }


def test_hostile_raw_lines_are_skipped_and_counted_not_fatal(tmp_path):
    meta = [product("A"), product("B"), product("C", title=["a", "list"]), "null", "[1, 2]"]
    reviews = [
        review("u1", "A"),
        review("u1", "B"),
        review("u2", "A", rating=float("nan")),  # Python's json writes NaN
        review("u2", "B", timestamp=2**64),
        review(12, "A"),
    ]
    raw = RawCategory(
        "All_Beauty",
        write_jsonl_gz(tmp_path / "meta.jsonl.gz", meta),
        write_jsonl_gz(tmp_path / "reviews.jsonl.gz", reviews),
    )
    files = run_graph([raw], tmp_path / "graph", GraphOptions(), quiet=True)["files"]
    assert files["meta:All_Beauty"]["skipped"] == {"not_an_object": 2, "wrong_type_title": 1}
    assert files["meta:All_Beauty"]["examples"]["wrong_type_title"] == [f"{raw.meta}:3"]
    assert files["review:All_Beauty"]["skipped"] == {
        "missing_user_id": 1,
        "non_standard_json": 1,
        "number_out_of_range": 1,
    }
    nodes, edges = read_graph(tmp_path / "graph")
    assert nodes["parent_asin"].to_list() == ["A", "B"] and edges.height == 1


def test_main_image_hi_res_preferred_else_large(tmp_path):
    from rawfiles import image

    meta = [
        product("A", images=[image("http://i/a1", "PT01"), image("http://i/a2")]),
        product("B", images=[image("http://i/b", hi_res=False)]),
        product("C", images=[image("http://i/c", "PT01")]),
    ]
    nodes, _, _ = build(tmp_path, meta, [])
    assert nodes["image_url"].to_list() == [
        "http://i/a2._SL1500_.jpg",
        "http://i/b.jpg",
        "http://i/c._SL1500_.jpg",
    ]


def test_label_level_per_category(tmp_path):
    meta = [product("A", sub="Hands")]
    nodes, _, _ = build(tmp_path / "1", meta, [])
    assert nodes["label"].to_list() == ["Hands"]
    nodes, _, _ = build(tmp_path / "2", meta, [], label_levels={"All_Beauty": 2})
    assert nodes["label"].to_list() == ["Leaf"]


def test_min_degree_keeps_the_k_core(tmp_path):
    meta = [product(a) for a in "ABCDE"]
    reviews = [
        review("u1", "A"), review("u1", "B"), review("u1", "C"),
        review("u2", "C"), review("u2", "D"),
    ]  # fmt: skip
    nodes, edges, counts = build(tmp_path, meta, reviews, min_degree=2)
    assert nodes["parent_asin"].to_list() == ["A", "B", "C"]
    assert len(edge_map(nodes, edges)) == 3
    assert counts["dropped_products"]["min_degree"] == 2


def test_reviews_text_top_by_helpfulness_capped_and_cleaned(tmp_path):
    meta = [product("A")]
    reviews = [
        review(f"u{i}", "A", timestamp=i, helpful_vote=i, text=f"r{i}<br />line &amp; more")
        for i in range(30)
    ]
    nodes, _, _ = build(tmp_path, meta, reviews, max_reviews=25)
    texts = nodes["reviews"][0].to_list()
    assert len(texts) == 25
    assert texts[0] == "Fine: r29\nline & more"
    assert nodes["text"][0] == "feature\ndescription"


def test_split_is_deterministic_and_follows_the_fractions():
    asins = pl.Series([f"B{i:08d}" for i in range(20000)])
    first = assign_split(asins, (0.8, 0.1, 0.1), seed=0)
    assert first.to_list() == assign_split(asins, (0.8, 0.1, 0.1), seed=0).to_list()
    assert first.to_list() != assign_split(asins, (0.8, 0.1, 0.1), seed=1).to_list()
    shares = first.value_counts(normalize=True)
    share = dict(zip(shares["split"].cast(pl.String), shares["proportion"], strict=True))
    assert share["train"] == pytest.approx(0.8, abs=0.02)
    assert share["test"] == pytest.approx(0.1, abs=0.02)
    # a node's split does not depend on the other nodes
    assert assign_split(asins[:10], (0.8, 0.1, 0.1), 0).to_list() == first[:10].to_list()


def test_rerun_is_skipped_and_options_change_rebuilds(tmp_path):
    raw = RawCategory(
        "All_Beauty",
        write_jsonl_gz(tmp_path / "meta.jsonl.gz", [product(a) for a in "AB"]),
        write_jsonl_gz(tmp_path / "reviews.jsonl.gz", [review("u1", "A"), review("u1", "B")]),
    )
    graph_dir = tmp_path / "graph"
    run_graph([raw], graph_dir, GraphOptions(), quiet=True)
    before = (graph_dir / "nodes.parquet").stat().st_mtime_ns
    run_graph([raw], graph_dir, GraphOptions(), quiet=True)
    assert (graph_dir / "nodes.parquet").stat().st_mtime_ns == before
    summary = run_graph([raw], graph_dir, GraphOptions(min_weight=2), quiet=True)
    assert summary["counts"]["edges"] == 0
    assert pl.read_parquet(graph_dir / "edges.parquet").height == 0


def test_bad_options_are_one_line_errors():
    with pytest.raises(ValueError, match="split fractions"):
        GraphOptions(split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="min_weight"):
        GraphOptions(min_weight=0)
