"""slip-eval checks what the shard manifest promises when it computes embeddings (each node file
against its sha256, each image against its image_sha256: a one-line error), and checks each
embedding-cache entry it loads (a bad one is recomputed and rewritten)."""

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from tiny_shards import jpeg as tiny_jpeg
from tiny_shards import write_shard_folder
from torch import nn
from torchvision.transforms.functional import pil_to_tensor

from slip_eval.data import DataError, embed_split, open_split
from slip_eval.models import LoadedModel

N = 12  # nodes, 6 to a node file; even ones in the test split


def jpeg(i: int) -> bytes:
    return tiny_jpeg((20 * i, 255 - 20 * i, 90))


def write_shards(folder):
    """A shard folder of the columns and files slip-eval reads (docs/shard-format.md)."""
    tables = []
    for start in range(0, N, 6):
        ids = list(range(start, start + 6))
        images = [jpeg(i) for i in ids]
        tables.append({
            "node_id": pa.array(ids, pa.int64()),
            "title": [f"product {i}" for i in ids],
            "label_id": pa.array([i % 2 for i in ids], pa.int32()),
            "split": ["test" if i % 2 == 0 else "train" for i in ids],
            "image": pa.array(images, pa.binary()),
            "image_sha256": [hashlib.sha256(data).hexdigest() for data in images],
        })  # fmt: skip
    manifest = {"format_version": 1, "counts": {"nodes": N}, "label_names": ["a", "b"]}
    return write_shard_folder(folder, tables, [(0, 2), (2, 4)], manifest)


def flip_image_byte(folder, node):
    """One byte inside `node`'s image flipped, its image_sha256 left as written and the manifest
    updated to the new file: only the per-image check can tell."""
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["files"][node // 6]
    path = folder / entry["path"]
    table = pq.read_table(path)
    images = table["image"].to_pylist()
    data = bytearray(images[node % 6])
    data[len(data) // 2] ^= 0x01
    images[node % 6] = bytes(data)
    table = table.set_column(table.schema.get_field_index("image"), "image", pa.array(images))
    pq.write_table(table, path)
    entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return path, table["image_sha256"][node % 6].as_py(), hashlib.sha256(data).hexdigest()


def rewrite_unlisted(path):
    """The same rows written again uncompressed: other bytes, the manifest's sha256 unchanged."""
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    pq.write_table(pq.read_table(path), path, compression="none")
    return before, hashlib.sha256(path.read_bytes()).hexdigest()


class TinyClip(nn.Module):
    """Mean colour as the image embedding, title length and the product number as the text's:
    enough to tell the rows apart."""

    def encode_image(self, pixels):
        return pixels.float().mean(dim=(2, 3))

    def encode_text(self, tokens):
        return tokens.float()


def tiny_model() -> LoadedModel:
    def tokenize(titles):
        return torch.tensor([[len(t), int(t.split()[-1]), 1] for t in titles])

    return LoadedModel(
        clip=TinyClip(),
        transform=pil_to_tensor,
        tokenizer=tokenize,
        name="tiny",
        pretrained="tiny",
        fingerprint="f" * 64,
        graph_heads=None,
    )


def test_an_image_that_is_not_its_image_sha256_is_a_one_line_error(tmp_path):
    folder = write_shards(tmp_path / "shards")
    path, stored, actual = flip_image_byte(folder, 8)
    split = open_split(folder, "test")
    with pytest.raises(DataError) as error:
        embed_split(tiny_model(), split, cache_dir=tmp_path / "cache", quiet=True)
    message = str(error.value)
    assert message.startswith(f"{path}: node 8: image sha256 {actual} ") and stored in message
    assert "\n" not in message and not list((tmp_path / "cache").glob("*.pt"))


def test_a_node_file_changed_after_it_was_written_is_a_one_line_error(tmp_path):
    folder = write_shards(tmp_path / "shards")
    split = open_split(folder, "test")
    listed, actual = rewrite_unlisted(folder / "nodes-00001.parquet")
    with pytest.raises(DataError) as error:
        embed_split(tiny_model(), split, cache_dir=tmp_path / "cache", quiet=True)
    message = str(error.value)
    assert message.startswith(f"{folder / 'nodes-00001.parquet'}: sha256 {actual} ")
    assert listed in message and "\n" not in message


def test_edges_changed_after_they_were_written_is_a_one_line_error(tmp_path):
    folder = write_shards(tmp_path / "shards")
    listed, actual = rewrite_unlisted(folder / "edges.parquet")
    with pytest.raises(DataError) as error:
        open_split(folder, "test")
    message = str(error.value)
    assert "edges.parquet: sha256" in message and listed in message and actual in message
    assert "\n" not in message


def test_a_cache_hit_reads_no_node_file(tmp_path):
    folder = write_shards(tmp_path / "shards")
    split = open_split(folder, "test")
    fresh = embed_split(tiny_model(), split, cache_dir=tmp_path / "cache", quiet=True)
    rewrite_unlisted(folder / "nodes-00000.parquet")  # not read again: the cache answers
    cached = embed_split(tiny_model(), split, cache_dir=tmp_path / "cache", quiet=True)
    assert set(cached) == {"image", "text"}
    assert all(torch.equal(cached[k], fresh[k]) for k in fresh)


def _entry(target):
    return torch.load(target, weights_only=True)


def _save(target, entry):
    torch.save(entry, target)


DAMAGE = {
    "rows": (lambda t: _save(t, _entry(t) | {"image": _entry(t)["image"][:-1]}), "5 rows"),
    "width": (lambda t: _save(t, _entry(t) | {"text": _entry(t)["text"][:, :2]}), "width"),
    "nan": (
        lambda t: _save(t, _entry(t) | {"image": _entry(t)["image"].fill_(float("nan"))}),
        "not finite",
    ),
    "float64": (lambda t: _save(t, _entry(t) | {"text": _entry(t)["text"].double()}), "float32"),
    "1-d": (lambda t: _save(t, _entry(t) | {"text": _entry(t)["text"][:, 0]}), "2-D"),
    "key": (lambda t: _save(t, _entry(t) | {"key": "0" * 24}), "another key"),
    "no-key": (lambda t: _save(t, {k: _entry(t)[k] for k in ("image", "text")}), "not a dict"),
    "not-a-dict": (lambda t: _save(t, [1, 2, 3]), "not a dict"),
    "truncated": (lambda t: t.write_bytes(t.read_bytes()[:100]), "not readable"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_bad_cache_entry_is_recomputed_and_rewritten(tmp_path, capfd, kind):
    damage, reason = DAMAGE[kind]
    split = open_split(write_shards(tmp_path / "shards"), "test")
    fresh = embed_split(tiny_model(), split, cache_dir=None, quiet=True)  # no cache: the reference
    embed_split(tiny_model(), split, cache_dir=tmp_path / "cache", quiet=True)
    (target,) = (tmp_path / "cache").glob("*.pt")
    damage(target)
    again = embed_split(tiny_model(), split, cache_dir=tmp_path / "cache", quiet=True)
    assert set(again) == {"image", "text"}
    assert all(torch.equal(again[k], fresh[k]) for k in fresh)
    (line,) = capfd.readouterr().err.splitlines()
    assert line.startswith(f"slip-eval: embedding cache {target}: ") and reason in line
    assert line.endswith("; recomputing it")
    embed_split(
        tiny_model(), split, cache_dir=tmp_path / "cache", quiet=True
    )  # rewritten: a clean hit
    assert capfd.readouterr().err == ""
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [target.name]
