import json

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from slip_data.crawl.results import write_part
from slip_data.homophily import EdgeLabelCounts, label_homophily
from slip_data.shard import writer
from slip_data.shard.plan import plan_shards
from slip_data.shard.writer import ShardOptions, write_shards
from slip_data.shard_contract import ShardFormatError, read_manifest

TEXT_COLUMNS = ("parent_asin", "title", "text", "reviews")  # a node file's, not the plan's


def write_inputs(nodes, results, folder, *, crawl_dirs=("crawl",), attempts=1):
    """The graph's nodes.parquet and the crawl `results` (one part in each of `crawl_dirs`, the
    results dealt out in turn), as the graph and crawl stages write them."""
    graph_dir = folder / "graph"
    graph_dir.mkdir(parents=True, exist_ok=True)
    nodes.sort("graph_id").write_parquet(graph_dir / "nodes.parquet")
    rows = results.with_columns(attempts=pl.lit(attempts, dtype=pl.Int64)).to_dicts()
    for index, crawl_dir in enumerate(crawl_dirs):
        part = rows[index :: len(crawl_dirs)]
        write_part(folder / crawl_dir, len(list((folder / crawl_dir).glob("parts/*"))), part)
    return graph_dir


def run_shard(nodes, edges, results, folder, options, *, memory_gb=2.0, written=True):
    """The whole stage into `folder`/shards, from graph outputs and crawl results (with their
    images) written as the earlier stages write them; texts and images loaded from memory."""
    texts = nodes.select("graph_id", *TEXT_COLUMNS)
    stored = results.filter(pl.col("image").is_not_null()).unique("sha256", maintain_order=True)

    def load_images(rows):
        shas = rows["image_sha256"].drop_nulls().unique()
        return stored.filter(pl.col("sha256").is_in(shas.implode())).select("sha256", "image")

    def load_texts(graph_ids):
        return texts.filter(pl.col("graph_id").is_in(graph_ids.implode()))

    if written:
        write_inputs(nodes, results, folder)
    graph_edges = folder / "graph-edges.parquet"
    edges.write_parquet(graph_edges)
    plan = plan_shards(
        folder / "graph",
        folder / "crawl",
        folder / "shards",
        keep_missing_images=options.keep_missing_images,
        rows_per_shard=options.rows_per_shard,
        memory_gb=memory_gb,
    )
    return write_shards(
        plan,
        folder / "shards",
        options,
        edges=graph_edges,
        provenance={},
        texts=load_texts,
        images=load_images,
    )


def graph_outputs(n=7):
    nodes = pl.DataFrame(
        {
            "graph_id": range(n),
            "parent_asin": [f"A{i}" for i in range(n)],
            "category": ["All_Beauty"] * n,
            "label": ["Soap" if i % 2 else "Cream" for i in range(n)],
            "title": [f"title {i}" for i in range(n)],
            "text": [""] * n,
            "reviews": [[f"review {i}"] for i in range(n)],
            "image_url": [f"http://i/{i % 6}.jpg" for i in range(n)],  # nodes 0 and 6 share one
            "split": ["train", "train", "val", "test", "train", "train", "train"][:n],
        },
        schema_overrides={"graph_id": pl.Int64},
    )
    edges = pl.DataFrame(
        {"src": [0, 0, 1, 2, 3], "dst": [1, 6, 2, 3, 4], "weight": [2, 1, 1, 3, 1]},
        schema={"src": pl.Int64, "dst": pl.Int64, "weight": pl.Int32},
    )
    ok = {0, 1, 3, 4, 5}
    images = pl.DataFrame(
        {
            "url": [f"http://i/{i}.jpg" for i in range(6)],
            "status": ["ok" if i in ok else "http_404" for i in range(6)],
            "image": [bytes([i]) * 10 if i in ok else None for i in range(6)],
            "sha256": [f"{i:064x}" if i in ok else None for i in range(6)],
            "width": [8 if i in ok else None for i in range(6)],
            "height": [6 if i in ok else None for i in range(6)],
        }
    )
    return nodes, edges, images


def test_shards_drop_missing_images_and_renumber(tmp_path):
    nodes, edges, images = graph_outputs()
    manifest = run_shard(nodes, edges, images, tmp_path, ShardOptions(rows_per_shard=2))
    kept = pl.concat(
        pl.read_parquet(tmp_path / "shards" / f["path"])
        for f in manifest["files"]
        if f["kind"] == "nodes"
    )
    # node 2's image failed; node 6 shares node 0's image URL, fetched once
    assert kept["parent_asin"].to_list() == ["A0", "A1", "A3", "A4", "A5", "A6"]
    assert kept["node_id"].to_list() == list(range(6))
    assert manifest["counts"] == {"nodes": 6, "edges": 3, "labels": 2}
    assert manifest["dropped_images"] == {"http_404": 1}
    assert manifest["crawl_status"] == {"http_404": 1, "ok": 6}
    edges_out = pl.read_parquet(tmp_path / "shards" / "edges.parquet")
    # (0,1) and (0,6) survive as (0,1), (0,5); (3,4) becomes (2,3); edges touching node 2 go
    assert edges_out.rows() == [(0, 1, 2), (0, 5, 1), (2, 3, 1)]
    assert manifest["label_names"] == ["Cream", "Soap"]
    assert kept["label_id"].to_list() == [0, 1, 1, 0, 1, 0]
    assert [f["rows"] for f in manifest["files"] if f["kind"] == "nodes"] == [2, 2, 2]
    labels = pl.read_parquet(tmp_path / "shards" / "labels.parquet")
    assert labels["count"].to_list() == [3, 3]
    assert manifest["split_sizes"] == {"train": 5, "val": 0, "test": 1}


def test_schema_matches_the_documented_contract(tmp_path):
    nodes, edges, images = graph_outputs()
    manifest = run_shard(nodes, edges, images, tmp_path, ShardOptions())
    schema = pq.read_schema(tmp_path / "shards" / manifest["files"][0]["path"])
    assert [(f.name, str(f.type)) for f in schema] == [
        ("node_id", "int64"),
        ("parent_asin", "large_string"),
        ("main_category", "large_string"),
        ("label", "large_string"),
        ("label_id", "int32"),
        ("title", "large_string"),
        ("text", "large_string"),
        ("reviews", "large_list<element: large_string>"),
        ("image", "large_binary"),
        ("image_sha256", "large_string"),
        ("width", "int32"),
        ("height", "int32"),
        ("split", "large_string"),
    ]
    on_disk = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert on_disk["format_version"] == 1
    assert on_disk["edges_stored"] == "once per undirected pair, src < dst"


def test_rewrite_gives_the_same_bytes_and_removes_stale_shards(tmp_path):
    nodes, edges, images = graph_outputs()
    run_shard(nodes, edges, images, tmp_path, ShardOptions(rows_per_shard=1))
    assert len(list((tmp_path / "shards").glob("nodes-*.parquet"))) == 6
    first = run_shard(nodes, edges, images, tmp_path, ShardOptions(rows_per_shard=4))
    second = run_shard(nodes, edges, images, tmp_path, ShardOptions(rows_per_shard=4))
    assert sorted(p.name for p in (tmp_path / "shards").glob("nodes-*.parquet")) == [
        "nodes-00000.parquet",
        "nodes-00001.parquet",
    ]
    assert first["files"] == second["files"]  # sha256 of every file is unchanged


def test_keep_missing_images_keeps_every_node(tmp_path):
    nodes, edges, images = graph_outputs()
    options = ShardOptions(keep_missing_images=True)
    manifest = run_shard(nodes, edges, images, tmp_path, options)
    assert manifest["counts"]["nodes"] == 7
    kept = pl.read_parquet(tmp_path / "shards" / "nodes-00000.parquet")
    assert kept.filter(pl.col("image").is_null())["parent_asin"].to_list() == ["A2"]


def test_read_manifest_checks_version_and_presence(tmp_path):
    with pytest.raises(ShardFormatError, match=r"no manifest\.json"):
        read_manifest(tmp_path)
    nodes, edges, images = graph_outputs()
    run_shard(nodes, edges, images, tmp_path, ShardOptions())
    folder, manifest = read_manifest(tmp_path)  # the build folder works too
    assert folder == tmp_path / "shards" and manifest["counts"]["nodes"] == 6
    manifest_path = tmp_path / "shards" / "manifest.json"
    manifest_path.write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ShardFormatError, match="version 99"):
        read_manifest(tmp_path)
    manifest_path.write_text("{truncated")
    with pytest.raises(ShardFormatError, match="unreadable manifest"):
        read_manifest(tmp_path)


def test_edges_stream_in_whole_row_groups_whatever_the_batches(tmp_path, monkeypatch):
    """The edges are remapped batch by batch without a sort; every row group but the last holds
    EDGE_ROW_GROUP_ROWS rows wherever the batches end, so the file is the one the whole table
    would give; the homophily counted batch by batch is the whole edge list's."""
    monkeypatch.setattr(writer, "EDGE_ROW_GROUP_ROWS", 3)
    n = 12
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n) if (a * b) % 3 != 1]
    edges = pl.DataFrame(
        {"src": [a for a, _ in pairs], "dst": [b for _, b in pairs], "weight": range(len(pairs))},
        schema={"src": pl.Int64, "dst": pl.Int64, "weight": pl.Int32},
    )
    graph_edges = tmp_path / "graph-edges.parquet"
    edges.write_parquet(graph_edges, row_group_size=5)  # batches of 3 cut across them
    node_ids = np.full(n, -1)
    kept = [0, 2, 3, 5, 7, 8, 11]  # the nodes with an image, in graph id order
    node_ids[kept] = np.arange(len(kept))
    labels = np.array([0, 1, 1, 2, 0, 1, 2])  # of the kept nodes, by node id
    counts = EdgeLabelCounts(labels)
    entry = writer.write_edges(
        graph_edges, tmp_path / "edges.parquet", node_ids=node_ids, counts=counts
    )

    expected = (
        edges.filter(pl.col("src").is_in(kept) & pl.col("dst").is_in(kept))
        .with_columns(pl.col("src", "dst").replace_strict(kept, range(len(kept))))
        .sort("src", "dst")
        .to_arrow()
    )
    whole = tmp_path / "whole.parquet"
    pq.write_table(expected, whole, compression="zstd", row_group_size=3)
    assert (tmp_path / "edges.parquet").read_bytes() == whole.read_bytes()
    assert entry["rows"] == expected.num_rows == counts.edges > 3
    src, dst = expected["src"].to_numpy(), expected["dst"].to_numpy()
    assert counts.homophily() == label_homophily(labels, src, dst)
    assert counts.homophily()["edge"] == np.mean(labels[src] == labels[dst])


def test_no_edges_between_kept_nodes_are_one_empty_row_group(tmp_path):
    graph_edges = tmp_path / "graph-edges.parquet"
    pl.DataFrame(
        {"src": [0, 0], "dst": [1, 2], "weight": [1, 1]},
        schema={"src": pl.Int64, "dst": pl.Int64, "weight": pl.Int32},
    ).write_parquet(graph_edges)
    entry = writer.write_edges(
        graph_edges,
        tmp_path / "edges.parquet",
        node_ids=np.array([-1, 0, 1]),
        counts=EdgeLabelCounts(np.zeros(2, dtype=np.int64)),
    )
    written = pq.ParquetFile(tmp_path / "edges.parquet")
    assert entry["rows"] == written.metadata.num_rows == 0 and written.num_row_groups == 1
    assert written.schema_arrow == writer.EDGE_SCHEMA


def test_edges_out_of_order_are_refused(tmp_path):
    graph_edges = tmp_path / "graph-edges.parquet"
    pl.DataFrame(
        {"src": [0, 1, 0], "dst": [2, 2, 1], "weight": [1, 1, 1]},
        schema={"src": pl.Int64, "dst": pl.Int64, "weight": pl.Int32},
    ).write_parquet(graph_edges)
    with pytest.raises(ValueError, match=r"not sorted by \(src, dst\)"):
        writer.write_edges(
            graph_edges,
            tmp_path / "edges.parquet",
            node_ids=np.arange(3),
            counts=EdgeLabelCounts(np.zeros(3, dtype=np.int64)),
        )
    assert not (tmp_path / "edges.parquet").exists()
