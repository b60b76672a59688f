"""The shard contract, checked the way a reader sees it: pyarrow, PIL and docs/shard-format.md only.

Nothing from slip_data is imported here: the shards are built by the `slip-data` command.
"""

import hashlib
import io
import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def shards(demo_build) -> Path:
    return demo_build / "shards"


def test_manifest_lists_whole_files(shards):
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["format"] == "slip-shards" and manifest["format_version"] == 1
    for entry in manifest["files"]:
        data = (shards / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
        assert pq.read_metadata(shards / entry["path"]).num_rows == entry["rows"]
    assert sum(manifest["split_sizes"].values()) == manifest["counts"]["nodes"]


def test_nodes_edges_and_labels_agree(shards):
    manifest = json.loads((shards / "manifest.json").read_text())
    node_files = [shards / f["path"] for f in manifest["files"] if f["kind"] == "nodes"]
    nodes = ds.dataset(node_files, format="parquet").to_table()
    n = manifest["counts"]["nodes"]
    assert nodes.num_rows == n > 300
    assert nodes["node_id"].to_pylist() == list(range(n))
    assert len(set(nodes["parent_asin"].to_pylist())) == n
    assert set(nodes["split"].to_pylist()) <= {"train", "val", "test"}
    names = manifest["label_names"]
    for label, label_id in zip(
        nodes["label"].to_pylist(), nodes["label_id"].to_pylist(), strict=True
    ):
        assert names[label_id] == label
    assert all(title.strip() for title in nodes["title"].to_pylist())

    edges = pq.read_table(shards / "edges.parquet")
    assert edges.num_rows == manifest["counts"]["edges"] > 0
    assert pc.all(pc.less(edges["src"], edges["dst"])).as_py()
    assert pc.max(edges["dst"]).as_py() < n and pc.min(edges["src"]).as_py() >= 0
    assert pc.min(edges["weight"]).as_py() >= 1
    pairs = list(zip(edges["src"].to_pylist(), edges["dst"].to_pylist(), strict=True))
    assert pairs == sorted(set(pairs))

    labels = pq.read_table(shards / "labels.parquet")
    assert labels["label"].to_pylist() == names
    assert sum(labels["count"].to_pylist()) == n


def test_images_decode_and_match_their_hash(shards):
    manifest = json.loads((shards / "manifest.json").read_text())
    first = shards / manifest["files"][0]["path"]
    table = pq.read_table(first, columns=["image", "image_sha256", "width", "height"])
    for row in table.slice(0, 50).to_pylist():
        assert hashlib.sha256(row["image"]).hexdigest() == row["image_sha256"]
        image = Image.open(io.BytesIO(row["image"]))
        assert image.format == "JPEG" and image.size == (row["width"], row["height"])
        assert max(image.size) <= 256


def test_slip_train_reads_what_slip_data_writes(shards, tmp_path):
    from slip_train.shards import build_node_cache, open_shards, read_node_cache

    opened = open_shards(shards)
    manifest = json.loads((shards / "manifest.json").read_text())
    assert opened.num_nodes == manifest["counts"]["nodes"]
    images = read_node_cache(build_node_cache(opened, tmp_path))["image"]
    table = pq.read_table(shards / manifest["files"][0]["path"], columns=["node_id", "image"])
    for node_id, image in zip(table["node_id"].to_pylist()[:20], table["image"].to_pylist()[:20],
                              strict=True):  # fmt: skip
        assert images[node_id].as_py() == image
