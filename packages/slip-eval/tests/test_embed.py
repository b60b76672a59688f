"""`slip-eval embed` and `to_pyg` on tiny shards and a tiny slip-mode checkpoint (built, not
trained): the Parquet rows are the cached embeddings normalised (and the graph heads' refinement
with --structure), keyed and labelled as the shards are; the PyG graph is the shards' edges between
the embedded nodes, both ways, with masks by split; other shards are refused in one line."""

import hashlib
import json
import shutil
from unittest import mock

import numpy as np
import open_clip
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from cli_runner import slip_eval
from tiny_shards import jpeg as tiny_jpeg
from tiny_shards import write_shard_folder

from slip_eval.data import SPLITS, DataError, embed_split, open_split
from slip_eval.embeddings import MANIFEST, to_pyg
from slip_eval.graph import refine
from slip_eval.graph_head import GraphHead
from slip_eval.models import load_model
from slip_eval.shard_contract import file_sha256

N = 18  # nodes, 9 to a node file; node i in SPLITS[i % 3]; node 17 (test) has no image
NO_IMAGE = 17
EDGES = [  # in-split, across splits, and to the node without an image
    (0, 1), (0, 3), (1, 4), (2, 5), (2, 9), (3, 6), (4, 7), (5, 8), (6, 9), (7, 10), (8, 11),
    (10, 12), (11, 14), (14, 17), (15, 17),
]  # fmt: skip
MODEL_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "head_width": 8, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
GRAPH_HEAD = {"dim": 16, "layers": 1, "heads": 2, "fusion": "gated_residual"}


def jpeg(i: int) -> bytes:
    return tiny_jpeg((13 * i, 255 - 13 * i, 40 + 7 * i))


def write_shards(folder):
    """The node columns and files of docs/shard-format.md that slip-eval reads."""
    tables = []
    for start in range(0, N, 9):
        ids = list(range(start, start + 9))
        images = [None if i == NO_IMAGE else jpeg(i) for i in ids]
        tables.append({
            "node_id": pa.array(ids, pa.int64()),
            "parent_asin": [f"B{i:05d}" for i in ids],
            "label": ["a" if i % 2 == 0 else "b" for i in ids],
            "label_id": pa.array([i % 2 for i in ids], pa.int32()),
            "title": [f"product {i}" for i in ids],
            "image": pa.array(images, pa.binary()),
            "image_sha256": [data and hashlib.sha256(data).hexdigest() for data in images],
            "split": [SPLITS[i % 3] for i in ids],
        })  # fmt: skip
    manifest = {"format": "slip-shards", "format_version": 1, "counts": {"nodes": N},
                "label_names": ["a", "b"]}  # fmt: skip
    return write_shard_folder(folder, tables, EDGES, manifest)


def write_checkpoint(path, mode="slip"):
    """A checkpoint of an untrained tiny model; in slip mode its heads' gates opened, so refining
    changes the embeddings."""
    torch.manual_seed(0)
    clip = open_clip.CLIP(**MODEL_CFG)
    state = {
        "format": "slip-checkpoint", "format_version": 1, "mode": mode, "model_name": "tiny",
        "model_cfg": MODEL_CFG, "preprocess_cfg": {"size": 16, "mean": [0.5] * 3, "std": [0.5] * 3},
        "clip_state_dict": clip.state_dict(),
    }  # fmt: skip
    if mode == "slip":
        heads = {}
        for name in ("image_graph", "text_graph"):
            head = GraphHead(**GRAPH_HEAD)
            head.gates.data.fill_(0.8)
            heads[name] = head.state_dict()
        state |= {"graph_head": GRAPH_HEAD, "graph_state_dict": heads}
    torch.save(state, path)
    return path


def no_encoder(*args, **kwargs):
    raise AssertionError("an encoder ran")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Shards, a checkpoint, and `embed --structure` of all three splits."""
    root = tmp_path_factory.mktemp("embed")
    shards, ckpt = write_shards(root / "shards"), write_checkpoint(root / "step-00000001.pt")
    out, cache = root / "embeddings", root / "cache"
    args = ["--ckpt", ckpt, "--shards", shards, "--cache-dir", cache, "--quiet"]
    assert slip_eval("embed", *args, "--out", out, "--structure") == 0
    return {"shards": shards, "ckpt": ckpt, "out": out, "cache": cache, "args": args}


def cached(made, name):
    """The split and its embeddings as the cache holds them (read with the encoders disabled)."""
    model = load_model(str(made["ckpt"]), None, None)
    split = open_split(made["shards"], name)
    with mock.patch.object(open_clip.CLIP, "encode_image", no_encoder):
        raw = embed_split(model, split, cache_dir=made["cache"], quiet=True)
    return model, split, raw


def vectors(table, name) -> torch.Tensor:
    return torch.from_numpy(np.stack(table[name].to_numpy(zero_copy_only=False)))


def test_rows_are_the_cached_embeddings_normalised_keyed_and_labelled_as_the_shards(made):
    manifest = json.loads((made["out"] / MANIFEST).read_text())
    shard_manifest = json.loads((made["shards"] / "manifest.json").read_text())
    nodes = ds.dataset(sorted(made["shards"].glob("nodes-*.parquet"))).to_table()
    for name in SPLITS:
        table = pq.read_table(made["out"] / f"{name}.parquet")
        _, _, raw = cached(made, name)
        assert torch.equal(vectors(table, "image"), F.normalize(raw["image"], dim=-1))
        assert torch.equal(vectors(table, "text"), F.normalize(raw["text"], dim=-1))
        assert table.schema.field("image").type == pa.list_(pa.float32(), 16)
        wanted = nodes.filter(pc.and_(pc.equal(nodes["split"], name), nodes["image"].is_valid()))
        for column in ("node_id", "parent_asin", "label_id", "label", "split"):
            assert table[column].to_pylist() == wanted[column].to_pylist(), column
        assert NO_IMAGE not in table["node_id"].to_pylist()
    assert manifest["format"] == "slip-embeddings" and manifest["format_version"] == 1
    assert manifest["model"]["fingerprint"] == file_sha256(made["ckpt"])
    assert manifest["shards"]["files"] == [
        {"path": f["path"], "sha256": f["sha256"]} for f in shard_manifest["files"]
    ]
    assert manifest["dim"] == 16 and manifest["structure"] is True
    assert manifest["rows"] == {"train": 6, "val": 6, "test": 5}
    names = [column["name"] for column in manifest["columns"]]
    assert names == [
        "node_id", "parent_asin", "split", "label_id", "label",
        "image", "text", "image_graph", "text_graph",
    ]  # fmt: skip
    for entry in manifest["files"]:
        path = made["out"] / entry["path"]
        assert (
            entry["sha256"] == file_sha256(path)
            and entry["rows"] == pq.read_metadata(path).num_rows
        )
        assert pq.read_schema(path).names == names


def test_structure_columns_are_the_heads_refinement_over_each_splits_own_edges(made):
    for name in SPLITS:
        model, split, raw = cached(made, name)
        table = pq.read_table(made["out"] / f"{name}.parquet")
        assert split.edge_index.shape[1] > 0
        for column, head, plain in zip(
            ("image_graph", "text_graph"), model.graph_heads, ("image", "text"), strict=True
        ):
            refined = refine(head, raw[plain], split.edge_index)
            assert torch.allclose(vectors(table, column), refined, atol=1e-6)
            assert not torch.allclose(refined, F.normalize(raw[plain], dim=-1), atol=1e-3)


def test_a_rerun_reads_the_cache_and_runs_no_encoder(made, tmp_path):
    out = tmp_path / "again"
    with (
        mock.patch.object(open_clip.CLIP, "encode_image", no_encoder),
        mock.patch.object(open_clip.CLIP, "encode_text", no_encoder),
    ):
        assert slip_eval("embed", *made["args"], "--out", out, "--structure") == 0
    for name in SPLITS:
        assert (out / f"{name}.parquet").read_bytes() == (
            made["out"] / f"{name}.parquet"
        ).read_bytes()


def test_large_splits_are_written_a_row_group_at_a_time_with_a_progress_bar(made, tmp_path):
    out = tmp_path / "chunked"
    args = [arg for arg in made["args"] if arg != "--quiet"]
    with mock.patch("slip_eval.embeddings.ROWS_PER_GROUP", 4):
        assert slip_eval("embed", *args, "--out", out, "--structure") == 0
    for name in SPLITS:
        assert pq.ParquetFile(out / f"{name}.parquet").num_row_groups == 2
        whole = pq.read_table(made["out"] / f"{name}.parquet")
        assert pq.read_table(out / f"{name}.parquet").equals(whole)


def test_a_rerun_of_fewer_splits_removes_the_files_it_no_longer_lists(made, tmp_path):
    out = tmp_path / "fewer"
    shutil.copytree(made["out"], out)
    (out / "notes.parquet").write_bytes(b"the user's")
    assert slip_eval("embed", *made["args"], "--out", out, "--split", "test") == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert [entry["path"] for entry in manifest["files"]] == ["test.parquet"]
    assert manifest["structure"] is False and len(manifest["columns"]) == 7
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "notes.parquet", "test.parquet"]


def edge_pairs(edge_index) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.T.tolist()))


def test_to_pyg_is_the_shards_graph_between_the_embedded_nodes_with_masks_by_split(made):
    data = to_pyg(made["out"], made["shards"])
    node_ids = [i for i in range(N) if i != NO_IMAGE]
    assert data.node_id.tolist() == node_ids and data.num_nodes == len(node_ids)
    local = {node: i for i, node in enumerate(node_ids)}
    edges = pq.read_table(made["shards"] / "edges.parquet")
    expected = {
        (local[s], local[d])
        for s, d in zip(edges["src"].to_pylist(), edges["dst"].to_pylist(), strict=True)
        if s in local and d in local
    }
    pairs = edge_pairs(data.edge_index)
    assert pairs == expected | {(d, s) for s, d in expected}
    assert pairs == {(d, s) for s, d in pairs} and data.edge_index.shape[1] == 2 * len(expected)
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask])
    assert masks.dtype == torch.bool and masks.sum(0).tolist() == [1] * len(node_ids)
    assert masks.float().argmax(0).tolist() == [node % 3 for node in node_ids]
    assert data.y.tolist() == [node % 2 for node in node_ids] and data.y.dtype == torch.long
    for name, rows in zip(SPLITS, masks, strict=True):
        table = pq.read_table(made["out"] / f"{name}.parquet")
        assert torch.equal(data.x[rows], vectors(table, "image")), name


def test_to_pyg_features_and_structure(made):
    both = (made["out"], made["shards"])
    image, text = (to_pyg(*both, features=f).x for f in ("image", "text"))
    assert image.shape == text.shape == (N - 1, 16) and not torch.equal(image, text)
    assert torch.equal(to_pyg(*both, features="concat").x, torch.cat([image, text], 1))
    assert torch.allclose(to_pyg(*both, features="mean").x, F.normalize(image + text, dim=-1))
    refined = to_pyg(*both, features="concat", structure=True)
    test = pq.read_table(made["out"] / "test.parquet")
    expected = torch.cat([vectors(test, "image_graph"), vectors(test, "text_graph")], 1)
    assert torch.equal(refined.x[refined.test_mask], expected)
    with pytest.raises(DataError, match="features: 'sum' is not one of"):
        to_pyg(*both, features="sum")


def test_to_pyg_refuses_other_shards_changed_files_and_missing_columns(made, tmp_path):
    shards = shutil.copytree(made["shards"], tmp_path / "shards")
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["files"][0]["sha256"] = "0" * 64
    (shards / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError) as error:
        to_pyg(made["out"], shards)
    line = str(error.value)
    assert line.startswith(f"{made['out'] / MANIFEST}: made from other shards than {shards}")
    assert "differ at nodes-00000.parquet" in line
    assert "\n" not in line
    out = shutil.copytree(made["out"], tmp_path / "embeddings")
    table = pq.read_table(out / "val.parquet")
    pq.write_table(table, out / "val.parquet", compression="none")
    with pytest.raises(DataError, match=r"val\.parquet: sha256 \w+ is not the embeddings"):
        to_pyg(out, made["shards"])
    assert slip_eval("embed", *made["args"], "--out", out, "--split", "val") == 0
    with pytest.raises(DataError, match="no graph-refined embeddings"):
        to_pyg(out, made["shards"], structure=True)
    with pytest.raises(DataError, match=f"^{tmp_path / MANIFEST}: not a readable embeddings"):
        to_pyg(tmp_path, made["shards"])


def test_errors_are_one_line_and_exit_status_2(made, tmp_path, capsys):
    shards = shutil.copytree(made["shards"], tmp_path / "shards")
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["files"][1]["sha256"] = "0" * 64  # the second node file, holding test products
    (shards / "manifest.json").write_text(json.dumps(manifest))
    clip = write_checkpoint(tmp_path / "clip.pt", mode="clip")
    args = ["--ckpt", made["ckpt"], "--cache-dir", tmp_path / "cache", "--quiet"]
    runs = {
        "node file": (["--shards", shards, "--split", "test"], "nodes-00001.parquet: sha256 "),
        "split": (["--shards", made["shards"], "--split", "test,dev"], "--split: 'test,dev': "),
        "no heads": (
            ["--shards", made["shards"], "--structure", "--ckpt", clip],
            "--structure: the model has no graph head",
        ),
    }
    for name, (more, expected) in runs.items():
        assert slip_eval("embed", *args, *more, "--out", tmp_path / "out") == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err
        assert not (tmp_path / "out" / MANIFEST).exists()
