import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from train_shards import write_colour_shards

from slip_train import graph_cache, sampler
from slip_train.batches import BatchPlanner
from slip_train.data import load_train_data
from slip_train.sampler import CSRGraph, build_csr, csr_arrays


def sort_built_csr(src, dst, num_nodes, keep=None):
    """The CSR as slip-train built it before the streaming build: both directions in one edge
    list, sorted by (node, neighbour), int64 throughout."""
    if keep is not None:
        inside = keep[src] & keep[dst]
        src, dst = src[inside], dst[inside]
    both_src, both_dst = torch.cat([src, dst]), torch.cat([dst, src])
    order = torch.argsort(both_dst * num_nodes + both_src)
    indptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(both_dst, minlength=num_nodes), 0)
    return CSRGraph(indptr, both_src[order])


def shard_edges(folder):
    edges = pq.read_table(folder / "edges.parquet")
    return torch.from_numpy(edges["src"].to_numpy()), torch.from_numpy(edges["dst"].to_numpy())


def graph_folder(shards_folder, cache):
    data = load_train_data(shards_folder, "train", cache)
    return data.cache.parent / "graph-train"


def assert_same_graph(a, b):
    assert torch.equal(a.indptr, b.indptr) and torch.equal(a.indices.long(), b.indices.long())


@pytest.mark.parametrize("masked", [False, True])
def test_the_streamed_csr_is_the_sort_built_one_in_any_chunking(masked):
    gen = torch.Generator().manual_seed(0)
    n = 500
    src = torch.randint(0, n, (4000,), generator=gen)  # any order, either direction, repeats
    dst = torch.randint(0, n, (4000,), generator=gen)
    keep = torch.rand(n, generator=gen) < 0.7 if masked else None
    expected = sort_built_csr(src, dst, n, keep)
    built = build_csr(src, dst, n, keep=keep)
    assert built.indptr.dtype == torch.long and built.indices.dtype == torch.int32
    assert_same_graph(built, expected)
    chunks = [(s.numpy(), d.numpy()) for s, d in zip(src.split(333), dst.split(333), strict=True)]
    mask = None if keep is None else keep.numpy()
    indptr, indices = csr_arrays(lambda: chunks, n, keep=mask)
    assert_same_graph(CSRGraph(torch.from_numpy(indptr), torch.from_numpy(indices)), expected)


def test_edges_outside_the_graph_or_changed_between_passes_are_errors():
    src, dst = np.array([0, 1]), np.array([1, 5])
    with pytest.raises(ValueError, match=r"outside 0\.\.4"):
        csr_arrays(lambda: [(src, dst)], 5)
    passes = iter([[(src, np.array([1, 2]))], [(src, np.array([1, 1]))]])
    with pytest.raises(ValueError, match="changed between"):
        csr_arrays(lambda: next(passes), 5)


@pytest.fixture(params=["numba", "torch"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request, monkeypatch):
    """The CPU's numba kernels, and the GPU path's torch ops (forced on the CPU without a GPU)."""
    monkeypatch.setattr(sampler, "NUMBA_ON_CPU", request.param == "numba")
    return "cuda" if request.param == "cuda" else "cpu"


@pytest.mark.parametrize("edges", ["induced", "sampled"])
def test_the_mapped_graph_plans_the_batches_of_the_in_memory_one(tmp_path, device, edges):
    folder = write_colour_shards(tmp_path / "shards", replace={1: None})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's warning about the read-only map is handled
        data = load_train_data(folder, "train", tmp_path / "cache")
    splits = pq.read_table(folder / "nodes-00000.parquet")["split"].to_pylist()
    keep = torch.tensor([s == "train" for s in splits] + [i % 4 > 0 for i in range(64, 192)])
    keep[1] = False  # no image
    src, dst = shard_edges(folder)
    before = sort_built_csr(src, dst, 192, keep)
    assert data.graph.indices.dtype == torch.int32
    assert_same_graph(data.graph, before)
    assert torch.equal(data.split_nodes, torch.nonzero(keep).squeeze(1))
    mapped = [line.split() for line in Path("/proc/self/maps").read_text().splitlines()]
    pointer = data.graph.indices.data_ptr()
    assert any(  # the tensor reads the file's pages, not a copy
        len(m) == 6 and m[5].endswith("graph-train/indices.npy")
        and int(m[0].split("-")[0], 16) <= pointer < int(m[0].split("-")[1], 16)
        for m in mapped
    )  # fmt: skip
    planned = [
        list(BatchPlanner(graph.to(device), data.split_nodes, batch_size=24, fanouts=[3, 2],
                          mode="slip", edges=edges, seed=5).epoch(1))
        for graph in (before, data.graph)
    ]  # fmt: skip
    for old, new in zip(*planned, strict=True):
        assert torch.equal(old.nodes, new.nodes) and torch.equal(old.edge_index, new.edge_index)


CHILD = """
import json, sys
from slip_train import graph_cache
from slip_train.data import load_train_data

locked, build = graph_cache._locked, graph_cache._build

def waiting(folder):
    print("waiting", flush=True)  # found no graph: about to wait for the lock
    return locked(folder)

def counted(*args, **kwargs):
    print("built", flush=True)
    return build(*args, **kwargs)

graph_cache._locked, graph_cache._build = waiting, counted
data = load_train_data(sys.argv[1], "train", sys.argv[2])
print(json.dumps([data.graph.indptr.tolist(), data.graph.indices.tolist()]))
"""


def test_two_processes_share_one_build(tmp_path):
    folder = write_colour_shards(tmp_path / "shards", n=64)
    cache = tmp_path / "cache"
    target = graph_folder(folder, cache)
    shutil.rmtree(target)  # the node cache stays: the children share the graph's build
    with graph_cache._locked(target):  # both children find no graph and wait for this lock
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(folder), str(cache)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for child in children:
            assert child.stdout.readline() == "waiting\n"
    outputs = [child.communicate()[0].splitlines() for child in children]
    assert all(child.returncode == 0 for child in children)
    assert sorted(lines[:-1] for lines in outputs) == [[], ["built"]]  # one built, one mapped
    src, dst = shard_edges(folder)
    keep = torch.arange(64) % 4 > 0
    expected = sort_built_csr(src, dst, 64, keep)
    for lines in outputs:
        indptr, indices = json.loads(lines[-1])
        assert indptr == expected.indptr.tolist() and indices == expected.indices.tolist()


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-8])


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [(_truncate, "indices.npy is not a readable .npy file"),
     (_flip_last_byte, "indices.npy does not match the sha256 in graph.json")],
)  # fmt: skip
def test_a_damaged_graph_is_rebuilt_not_trusted(tmp_path, capfd, monkeypatch, damage, problem):
    folder = write_colour_shards(tmp_path / "shards", n=64)
    target = graph_folder(folder, tmp_path / "cache")
    damage(target / "indices.npy")
    capfd.readouterr()
    builds = []
    build = graph_cache._build
    monkeypatch.setattr(graph_cache, "_build", lambda *a, **k: builds.append(1) or build(*a, **k))
    data = load_train_data(folder, "train", tmp_path / "cache")
    assert builds == [1]
    said = capfd.readouterr().err
    assert said.startswith(f"slip-train: graph {target}: {problem}")
    assert said.endswith("; rebuilding it\n") and said.count("\n") == 1
    src, dst = shard_edges(folder)
    assert_same_graph(data.graph, sort_built_csr(src, dst, 64, torch.arange(64) % 4 > 0))
    load_train_data(folder, "train", tmp_path / "cache")
    assert builds == [1]  # sound now: mapped, not built again


def test_a_killed_build_leaves_nothing_trusted(tmp_path, monkeypatch):
    folder = write_colour_shards(tmp_path / "shards", n=64)
    target = graph_folder(folder, tmp_path / "cache")
    (target / "graph.json").unlink()  # what a build killed before its marker leaves
    stale = target / ".indices.npy.999999999.abc.tmp"  # a temp file of a writer that is gone
    stale.write_bytes(b"half")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(graph_cache, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        load_train_data(folder, "train", tmp_path / "cache")
    assert not (target / "graph.json").exists() and not stale.exists()
    monkeypatch.undo()
    data = load_train_data(folder, "train", tmp_path / "cache")
    src, dst = shard_edges(folder)
    assert_same_graph(data.graph, sort_built_csr(src, dst, 64, torch.arange(64) % 4 > 0))
