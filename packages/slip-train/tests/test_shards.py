"""slip-train reads shards by their documented format: these tests write tiny ones by hand."""

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slip_train.shards import ShardError, image_cache, open_shards


def write_shards(folder, n=5, per_shard=2, drop_column=None, version=1):
    folder.mkdir(parents=True, exist_ok=True)
    files = []

    def add(name, table, kind):
        pq.write_table(table, folder / name)
        data = (folder / name).read_bytes()
        entry = {"path": name, "kind": kind, "rows": table.num_rows, "bytes": len(data)}
        files.append(entry | {"sha256": hashlib.sha256(data).hexdigest()})

    for index, start in enumerate(range(0, n, per_shard)):
        ids = list(range(start, min(n, start + per_shard)))
        columns = {
            "node_id": pa.array(ids, pa.int64()),
            "parent_asin": [f"A{i}" for i in ids],
            "main_category": ["Books"] * len(ids),
            "label": ["Fiction"] * len(ids),
            "label_id": pa.array([0] * len(ids), pa.int32()),
            "title": [f"title {i}" for i in ids],
            "text": [""] * len(ids),
            "reviews": pa.array([["a review"] for _ in ids], pa.list_(pa.string())),
            "image": [f"jpeg-bytes-{i}".encode() for i in ids],
            "image_sha256": ["0" * 64] * len(ids),
            "width": pa.array([8] * len(ids), pa.int32()),
            "height": pa.array([8] * len(ids), pa.int32()),
            "split": ["train"] * len(ids),
        }
        columns.pop(drop_column, None)
        add(f"nodes-{index:05d}.parquet", pa.table(columns), "nodes")
    edges = pa.table(
        {
            "src": pa.array([0, 1], pa.int64()),
            "dst": pa.array([1, 4], pa.int64()),
            "weight": pa.array([2, 1], pa.int32()),
        }
    )
    add("edges.parquet", edges, "edges")
    manifest = {"format_version": version, "counts": {"nodes": n, "edges": 2}, "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_open_reads_nodes_in_id_order_and_edges(tmp_path):
    write_shards(tmp_path / "build" / "shards")
    shards = open_shards(tmp_path / "build")  # a build folder works too
    assert shards.num_nodes == 5 and len(shards.node_files) == 3
    assert shards.nodes(["node_id"])["node_id"].to_pylist() == [0, 1, 2, 3, 4]
    assert shards.edges()["dst"].to_pylist() == [1, 4]


def test_image_cache_is_indexed_by_node_id_and_rebuilt_when_shards_change(tmp_path):
    folder = write_shards(tmp_path / "shards")
    images = image_cache(open_shards(folder), tmp_path / "cache")
    assert [images[i].as_py() for i in (4, 0, 2)] == [b"jpeg-bytes-%d" % i for i in (4, 0, 2)]
    built = (tmp_path / "cache" / "images.arrow").stat().st_mtime_ns
    image_cache(open_shards(folder), tmp_path / "cache")
    assert (tmp_path / "cache" / "images.arrow").stat().st_mtime_ns == built  # reused
    write_shards(folder, n=3)
    images = image_cache(open_shards(folder), tmp_path / "cache")
    assert len(images) == 3 and images[2].as_py() == b"jpeg-bytes-2"
    assert not list((tmp_path / "cache").glob(".*"))  # no temp file left


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no manifest.json in"),
        (lambda p: write_shards(p, version=2), "shard format version 2; this slip-train reads 1"),
        (lambda p: write_shards(p, drop_column="label_id"), "missing column label_id"),
    ],
)
def test_bad_shards_are_one_line_errors(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(ShardError) as error:
        open_shards(tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_listed_file_that_is_gone_or_corrupt(tmp_path):
    folder = write_shards(tmp_path)
    (folder / "edges.parquet").write_bytes(b"not parquet")
    with pytest.raises(ShardError, match="not a readable Parquet file"):
        open_shards(folder)
    (folder / "edges.parquet").unlink()
    with pytest.raises(ShardError, match="listed in the manifest but missing"):
        open_shards(folder)
