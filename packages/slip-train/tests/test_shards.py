"""slip-train reads shards by their documented format: these tests write tiny ones by hand."""

import pyarrow.parquet as pq
import pytest
from train_shards import write_shards

from slip_train.shards import ShardError, build_node_cache, open_shards, read_node_cache


def test_open_reads_nodes_in_id_order_and_edges(tmp_path):
    write_shards(tmp_path / "build" / "shards")
    shards = open_shards(tmp_path / "build")  # a build folder works too
    assert shards.num_nodes == 5 and len(shards.node_files) == 3
    ids = [pq.read_table(path)["node_id"].to_pylist() for path in shards.node_files]
    assert ids == [[0, 1], [2, 3], [4]]
    assert pq.read_table(shards.edge_file())["dst"].to_pylist() == [1, 4]


def test_node_cache_is_indexed_by_node_id_and_rebuilt_when_shards_change(tmp_path):
    folder = write_shards(tmp_path / "shards")
    path = build_node_cache(open_shards(folder), tmp_path / "cache")
    rows = read_node_cache(path).take([4, 0, 2])
    assert rows["image"].to_pylist() == [b"jpeg-bytes-%d" % i for i in (4, 0, 2)]
    assert rows["title"].to_pylist() == [f"title {i}" for i in (4, 0, 2)]
    built = path.stat().st_mtime_ns
    build_node_cache(open_shards(folder), tmp_path / "cache")
    assert path.stat().st_mtime_ns == built  # reused
    write_shards(folder, n=3)
    table = read_node_cache(build_node_cache(open_shards(folder), tmp_path / "cache"))
    assert table.num_rows == 3 and table["image"][2].as_py() == b"jpeg-bytes-2"
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
