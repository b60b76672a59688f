"""The training graph, built once per shards and split and memory-mapped by every process.

Each rank of a run (and each run on the same shards) would otherwise read all of edges.parquet
and build its own CSR, several copies of the edge list at its peak and one CSR per rank after
(docs/scale.md). Instead the first process that needs the graph builds it under a lock, streaming
the edges (slip_train.sampler.csr_arrays), and saves three arrays as .npy files: `indptr` (int64),
`indices` (int32) and `nodes` (the split's node ids with an image, int64). A marker written last
(graph.json) holds each array's dtype, shape and sha256 and what the graph was built from.

Every process maps the files read-only and checks them against the marker first, so a file a
killed build or a damaged disk left is rebuilt, never trained on; the pages are the page cache's,
one copy for all the processes of a machine.
"""

import fcntl
import hashlib
import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import Tensor

from slip_train.atomic import atomic_path, remove_stale_temps, write_json
from slip_train.sampler import CSRGraph, csr_arrays
from slip_train.shards import ShardError, Shards

MARKER = "graph.json"
BUILD_LOCK = ".build.lock"
ARRAYS = ("indptr", "indices", "nodes")
EDGE_BATCH = 1 << 17  # edges per chunk of the streaming build


def load_graph(shards: Shards, split: str, folder: Path) -> tuple[CSRGraph, Tensor]:
    """The graph between the nodes of `split` that have an image, and those nodes' ids, from
    `folder`; built there first if it holds no sound copy. Processes that find none at once wait
    for the one that builds it."""
    built_from = {
        "stamp": [entry["sha256"] for entry in shards.manifest["files"]],
        "split": split,
        "num_nodes": shards.num_nodes,
    }
    arrays, _ = _open(folder, built_from)
    if arrays is None:
        with _locked(folder):
            arrays, problem = _open(folder, built_from)  # built by another process meanwhile?
            if arrays is None:
                if problem:
                    print(f"slip-train: graph {folder}: {problem}; rebuilding it", file=sys.stderr)
                _build(shards, split, folder, built_from)
                arrays, problem = _open(folder, built_from)
                if arrays is None:
                    raise ShardError(f"graph {folder}: {problem} right after it was built")
    indptr, indices, nodes = (_tensor(arrays[name]) for name in ARRAYS)
    return CSRGraph(indptr, indices), nodes


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """This process alone in `folder` for the block, waiting for the holder first; the kernel
    drops the lock of a holder that dies, so a killed build does not block the next."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / BUILD_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _open(folder: Path, built_from: dict) -> tuple[dict[str, np.ndarray] | None, str]:
    """The arrays mapped read-only, each matching the marker's dtype, shape and sha256 (the
    mapped bytes are hashed, so what is checked is what is used); else None and why ("" when no
    graph was built here)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError) as exc:
        return None, f"unreadable {MARKER} ({exc})"
    if not isinstance(marker, dict):
        return None, f"{MARKER} is not an object"
    for key, value in built_from.items():
        if marker.get(key) != value:
            return None, f"built for another {key}"
    arrays = {}
    for name in ARRAYS:
        path = folder / f"{name}.npy"
        try:
            expected = marker["arrays"][name]
            array = np.load(path, mmap_mode="r")
        except (KeyError, TypeError) as exc:
            return None, f"{MARKER} does not describe {name} ({exc!r})"
        except (OSError, ValueError) as exc:
            return None, f"{path.name} is not a readable .npy file ({exc})"
        found = {"dtype": array.dtype.str, "shape": list(array.shape)}
        if found != {key: expected.get(key) for key in found}:
            return None, f"{path.name} holds {found}, not the marker's"
        if hashlib.sha256(array).hexdigest() != expected.get("sha256"):
            return None, f"{path.name} does not match the sha256 in {MARKER}"
        arrays[name] = array
    return arrays, ""


def _tensor(array: np.ndarray) -> Tensor:
    """A tensor over the read-only map. torch warns that its tensors cannot be read-only; nothing
    writes the graph, and a write would fault rather than change the file others map."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        return torch.from_numpy(array)


def _build(shards: Shards, split: str, folder: Path, built_from: dict) -> None:
    """Build the arrays and write each atomically, the marker last (after removing the old one
    and the temp files of killed builds): a build stopped at any point leaves no marker that
    vouches for what it wrote."""
    (folder / MARKER).unlink(missing_ok=True)
    remove_stale_temps(folder, recursive=False)
    keep = _split_mask(shards, split)
    edge_file = shards.edge_file()

    def edges() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        batches = pq.ParquetFile(edge_file).iter_batches(EDGE_BATCH, columns=["src", "dst"])
        for batch in batches:
            yield batch["src"].to_numpy(), batch["dst"].to_numpy()

    try:
        indptr, indices = csr_arrays(edges, shards.num_nodes, keep=keep)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ShardError(f"{edge_file}: {exc}") from None
    described = {}
    for name, array in zip(ARRAYS, (indptr, indices, np.flatnonzero(keep)), strict=True):
        with atomic_path(folder / f"{name}.npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, array)
        described[name] = {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "sha256": hashlib.sha256(array).hexdigest(),
        }
    write_json(folder / MARKER, {**built_from, "arrays": described})


def _split_mask(shards: Shards, split: str) -> np.ndarray:
    """Which nodes are in `split` and have an image (products kept without one are not trained
    on), read from the node files batch by batch."""
    keep = np.zeros(shards.num_nodes, np.bool_)
    at = in_split = 0
    for path in shards.node_files:
        for batch in pq.ParquetFile(path).iter_batches(columns=["split", "image_sha256"]):
            if at + batch.num_rows > keep.size:
                raise ShardError(f"{shards.folder}: more node rows than the manifest's {keep.size}")
            mine = pc.fill_null(pc.equal(batch["split"], split), False)
            in_split += pc.sum(mine).as_py() or 0
            usable = pc.and_(mine, pc.is_valid(batch["image_sha256"]))
            keep[at : at + batch.num_rows] = usable.to_numpy(zero_copy_only=False)
            at += batch.num_rows
    if at != keep.size:
        raise ShardError(f"{shards.folder}: {at} node rows, not the manifest's {keep.size}")
    if not in_split:
        raise ValueError(f"{shards.folder}: the {split!r} split has no nodes")
    return keep
