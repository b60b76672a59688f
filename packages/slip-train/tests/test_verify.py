"""slip-train checks what the shard manifest promises: each image against its image_sha256 when it
is decoded (a bad one is dropped from its batch, counted and warned about), each node file against
its sha256 when the node cache is built, and the node cache itself when it is opened."""

import hashlib
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import torch
from torchvision import transforms
from train_shards import write_colour_shards

from slip_train.batches import PlannedBatch
from slip_train.data import BatchDataset, load_train_data
from slip_train.shards import ShardError, build_node_cache, open_shards, read_node_cache


def flip_image_byte(folder, node):
    """One byte inside `node`'s image flipped, its image_sha256 left as written and the manifest
    updated to the new file: only the per-image check can tell."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"]:
        path = folder / entry["path"]
        if entry["kind"] != "nodes":
            continue
        table = pq.read_table(path)
        ids = table["node_id"].to_pylist()
        if node not in ids:
            continue
        images = table["image"].to_pylist()
        data = bytearray(images[ids.index(node)])
        data[len(data) // 2] ^= 0x01
        images[ids.index(node)] = bytes(data)
        column = table.schema.get_field_index("image")
        table = table.set_column(column, "image", pa.array(images, pa.binary()))
        pq.write_table(table, path)
        entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        entry["bytes"] = path.stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))


def rewrite_unlisted(path):
    """The same rows written again uncompressed: other bytes, the manifest's sha256 unchanged."""
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    pq.write_table(pq.read_table(path), path, compression="none")
    return before, hashlib.sha256(path.read_bytes()).hexdigest()


def node_tokens(titles):
    """The node id in each title ("red product 7"): the tokens say which titles were kept."""
    return torch.tensor([int(title.split()[-1]) for title in titles])


def dataset(cache):
    transform = transforms.Compose([transforms.Resize(16), transforms.CenterCrop(16)])
    return BatchDataset(cache, transform=transform, tokenizer=node_tokens, image_size=16)


def test_a_damaged_image_is_dropped_from_its_batch_counted_and_warned(tmp_path, capfd):
    folder = write_colour_shards(tmp_path / "shards", n=16, replace={6: b"\xff\xd8 broken"})
    flip_image_byte(folder, 5)
    loader = dataset(load_train_data(folder, "train", tmp_path / "cache").cache)
    batch = PlannedBatch(
        epoch=0, index=0, seed=1, nodes=torch.tensor([1, 5, 2, 6, 3]),
        edge_index=torch.tensor([[0, 0, 1, 2, 3, 2], [1, 2, 2, 3, 4, 4]]),
    )  # fmt: skip
    out = loader.__getitems__(batch)
    assert out["skipped_images"] == 2
    assert out["nodes"].tolist() == out["tokens"].tolist() == [1, 2, 3]
    assert out["images"].shape == (3, 3, 16, 16)
    # edges touching nodes 5 and 6 are gone; (1, 2) and (1, 3) renumbered to rows 0-1 and 1-2,
    # both ways (the worker prepares the graph as the heads and the structural loss take it)
    assert out["edge_index"].tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    lines = capfd.readouterr().err.splitlines()
    stored = pq.read_table(folder / "nodes-00000.parquet")["image_sha256"][5].as_py()
    assert len(lines) == 2
    assert lines[0].startswith("slip-train: skipped node 5: image sha256 ") and stored in lines[0]
    assert lines[1].startswith("slip-train: skipped node 6: its image does not decode")
    again = loader.__getitems__(batch)  # counted every time, warned about once
    assert again["skipped_images"] == 2 and capfd.readouterr().err == ""
    assert torch.equal(again["images"], out["images"])


def test_under_torchrun_a_bad_image_stops_the_run_in_one_line(tmp_path, monkeypatch):
    folder = write_colour_shards(tmp_path / "shards", n=16)
    flip_image_byte(folder, 5)
    monkeypatch.setenv("WORLD_SIZE", "2")  # a rank cannot drop a node from its equal share
    loader = dataset(load_train_data(folder, "train", tmp_path / "cache").cache)
    batch = PlannedBatch(0, 0, 1, torch.tensor([1, 5]), torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ShardError, match=r"node 5: image sha256 .* torchrun") as error:
        loader.__getitems__(batch)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["nodes-00001.parquet", "edges.parquet"])
def test_a_file_changed_after_it_was_written_is_a_one_line_error(tmp_path, name):
    folder = write_colour_shards(tmp_path / "shards", n=96)  # node files of 64 and 32 rows
    listed, actual = rewrite_unlisted(folder / name)
    with pytest.raises(ShardError) as error:
        load_train_data(folder, "train", tmp_path / "cache")  # reads the edges, builds the cache
    message = str(error.value)
    assert name in message and listed in message and actual in message and "\n" not in message
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("nodes.arrow"))


def _replace_cache(path, table):
    """`table` written over the cache by rename: the memory-mapped original is never truncated."""
    new = path.with_name("replacement")
    with pa.OSFile(str(new), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    new.replace(path)


def _old_schema(path):
    """A cache of the image and title columns only (as slip-train wrote before image_sha256)."""
    _replace_cache(path, read_node_cache(path).select(["image", "title"]))


def _short(path):
    _replace_cache(path, read_node_cache(path).slice(0, 10))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        pytest.param(
            lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
            "not a readable Arrow",
            id="truncated",
        ),
        pytest.param(lambda p: p.write_bytes(b"not arrow"), "not a readable Arrow", id="garbage"),
        pytest.param(_old_schema, "schema ['image', 'title']", id="old-schema"),
        pytest.param(_short, "10 rows, not the manifest's 16", id="rows"),
    ],
)
def test_a_corrupt_node_cache_is_rebuilt(tmp_path, capfd, damage, reason):
    shards = open_shards(write_colour_shards(tmp_path / "shards", n=16))
    path = build_node_cache(shards, tmp_path / "cache")
    fresh = read_node_cache(path).to_pydict()
    damage(path)
    assert build_node_cache(shards, tmp_path / "cache") == path
    assert read_node_cache(path).to_pydict() == fresh
    (line,) = capfd.readouterr().err.splitlines()
    assert line.startswith(f"slip-train: node cache {path}: ") and reason in line
    assert line.endswith("; rebuilding it")
    build_node_cache(shards, tmp_path / "cache")  # sound now: reused without a word
    assert capfd.readouterr().err == ""
    assert not list((tmp_path / "cache").glob(".*"))  # no temp file left


def test_training_skips_a_damaged_image_and_logs_the_count(tmp_path):
    folder = write_colour_shards(tmp_path / "shards", replace={2: b"\xff\xd8 broken"})
    flip_image_byte(folder, 3)
    config = tmp_path / "run.toml"
    config.write_text(
        f'[data]\nshards = "{folder}"\ncache_dir = "{tmp_path / "cache"}"\nnum_workers = 1\n'
        f'[sampler]\nbatch_size = 144\n[train]\nsteps = 2\ndevice = "cpu"\n'
        f'out_dir = "{tmp_path / "run"}"\n'
    )  # a batch of every train node holds nodes 2 and 3
    cli = [sys.executable, "-c", "from slip_train.cli import main; main()"]
    ran = subprocess.run([*cli, "run", str(config), "--quiet"], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    warned = [line for line in ran.stderr.splitlines() if line.startswith("slip-train: skipped")]
    assert sorted(line.split(":")[1] for line in warned) == [" skipped node 2", " skipped node 3"]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["skipped_images"] for r in log] == [2, 2]
    assert [r["samples"] for r in log] == [142, 142]
