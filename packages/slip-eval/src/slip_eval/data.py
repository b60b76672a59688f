"""One split of slip-data shards, read by docs/shard-format.md alone, and its embeddings.

Embeddings are cached per (model weights, shard files, split) under the cache folder: a key made
of the checkpoint's digest and the manifest's file hashes, so new weights or new shards never
read a stale cache. The cache holds the encoders' unnormalised output, which the graph heads of
structure-aware inference take as input; an entry that is not what was written (unreadable, of
another shape or key, not finite) is recomputed.

Readers verify what the manifest promises: a node file read for its images, and edges.parquet, is
checked against its sha256, and each image against its image_sha256, so a byte changed on disk is
a one-line error, not a silently different result.
"""

import hashlib
import io
import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch
from PIL import Image
from rich.progress import Progress
from torch import Tensor

from slip_eval.atomic import atomic_path
from slip_eval.models import LoadedModel
from slip_eval.shard_contract import node_paths, read_manifest, read_verified

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """Shards or a split that cannot be evaluated; one line."""


@dataclass
class Split:
    folder: Path
    manifest: dict
    name: str
    node_ids: np.ndarray  # the split's products with an image, in node_id order
    titles: list[str]
    label_ids: np.ndarray
    label_names: list[str]
    edge_index: Tensor  # (2, E) edges between two nodes of the split, in split-local indices

    @property
    def node_files(self) -> list[Path]:
        return node_paths(self.folder, self.manifest)

    def rows(self, columns: list[str]) -> pa.Table:
        """More node columns of the split's products, in node_id order: read only when asked, as
        the evaluations need none of them (`slip-eval embed` keys its rows by `parent_asin`)."""
        return _split_rows(self.folder, self.manifest, self.name, columns)

    def images(self, batch_size: int) -> Iterator[list[bytes]]:
        """The split's image bytes in node_id order, a batch at a time (one node file in memory):
        shard files in name order, each checked against its sha256, row groups in order, each
        image against its image_sha256."""
        columns = ["node_id", "split", "image_sha256", "image"]
        for path in self.node_files:
            data = read_verified(self.folder, self.manifest, path, error=DataError)
            shard = pq.ParquetFile(pa.BufferReader(data))
            for batch in shard.iter_batches(batch_size, columns=columns):
                wanted = pc.and_(
                    pc.equal(batch.column("split"), self.name),
                    batch.column("image_sha256").is_valid(),
                )
                rows = batch.filter(wanted)
                images = rows.column("image").to_pylist()
                for node, data, expected in zip(
                    rows.column("node_id").to_pylist(),
                    images,
                    rows.column("image_sha256").to_pylist(),
                    strict=True,
                ):
                    actual = hashlib.sha256(data or b"").hexdigest()
                    if actual != expected:
                        raise DataError(
                            f"{path}: node {node}: image sha256 {actual} is not its "
                            f"image_sha256 {expected}"
                        )
                if images:
                    yield images


def _split_rows(folder: Path, manifest: dict, split: str, columns: list[str]) -> pa.Table:
    """`columns` of the split's products that have an image, in node_id order."""
    return ds.dataset(node_paths(folder, manifest), format="parquet").to_table(
        columns=columns,
        filter=(pc.field("split") == split) & pc.field("image_sha256").is_valid(),
    )


def open_split(path: str | Path, split: str) -> Split:
    """The split's products that have an image, their titles, labels and in-split edges."""
    folder, manifest = read_manifest(path, error=DataError)
    if split not in SPLITS:
        raise DataError(f"--split: {split!r} is not one of {', '.join(SPLITS)}")
    table = _split_rows(folder, manifest, split, ["node_id", "title", "label_id"])
    if table.num_rows == 0:
        raise DataError(f"{folder}: the {split!r} split has no product with an image")
    node_ids = table["node_id"].to_numpy()
    return Split(
        folder=folder,
        manifest=manifest,
        name=split,
        node_ids=node_ids,
        titles=table["title"].to_pylist(),
        label_ids=np.array(table["label_id"].to_numpy(zero_copy_only=False)),  # writable copy
        label_names=list(manifest.get("label_names", [])),
        edge_index=edges_among(folder, manifest, node_ids),
    )


def edges_among(folder: Path, manifest: dict, node_ids: np.ndarray) -> Tensor:
    """The (2, E) co-purchase edges (stored once per pair) whose two ends are both among
    `node_ids`, numbered by their position there; `edges.parquet` checked against its manifest
    hash."""
    edges = pq.read_table(
        read_verified(folder, manifest, folder / "edges.parquet", error=DataError),
        columns=["src", "dst"],
    )
    local = np.full(manifest["counts"]["nodes"], -1, dtype=np.int64)
    local[node_ids] = np.arange(node_ids.size)
    src, dst = local[edges["src"].to_numpy()], local[edges["dst"].to_numpy()]
    inside = (src >= 0) & (dst >= 0)
    return torch.from_numpy(np.stack([src[inside], dst[inside]]))


def _decode(data: bytes, transform) -> Tensor:
    return transform(Image.open(io.BytesIO(data)).convert("RGB"))


@torch.no_grad()
def encode_texts(model: LoadedModel, texts: list[str], batch_size: int = 256) -> Tensor:
    """Unnormalised text embeddings."""
    parts = [
        model.clip.encode_text(model.tokenizer(texts[i : i + batch_size]))
        for i in range(0, len(texts), batch_size)
    ]
    return torch.cat(parts).float()


def _cache_key(model: LoadedModel, split: Split) -> str:
    files = [f["sha256"] for f in split.manifest["files"]]
    key = json.dumps([model.fingerprint, files, split.name, "v1"])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _entry_problem(entry: object, key: str, rows: int) -> str | None:
    """Why a loaded cache entry is not one `embed_split` wrote for `key` and a split of `rows`
    products, or None."""
    if not isinstance(entry, dict) or set(entry) != {"image", "text", "key"}:
        return "not a dict of image, text and key"
    if not (isinstance(entry["key"], str) and entry["key"] == key):
        return "written for another key"
    for name in ("image", "text"):
        value = entry[name]
        if not isinstance(value, Tensor) or value.dtype != torch.float32 or value.dim() != 2:
            return f"{name} is not a 2-D float32 tensor"
        if value.shape[0] != rows:
            return f"{name} has {value.shape[0]} rows, not the split's {rows}"
        if not bool(torch.isfinite(value).all()):
            return f"{name} holds values that are not finite"
    if entry["image"].shape[1] != entry["text"].shape[1]:
        return f"image width {entry['image'].shape[1]} is not text width {entry['text'].shape[1]}"
    return None


def _load_cached(target: Path, key: str, rows: int) -> dict[str, Tensor] | None:
    """The cached embeddings, or None when there are none or they are not what was written (a
    one-line warning then says why)."""
    if not target.is_file():
        return None
    try:
        entry = torch.load(target, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        problem = f"not readable ({(str(exc).splitlines() or [type(exc).__name__])[0][:200]})"
    else:
        problem = _entry_problem(entry, key, rows)
        if problem is None:
            return {"image": entry["image"], "text": entry["text"]}
    print(f"slip-eval: embedding cache {target}: {problem}; recomputing it", file=sys.stderr)
    return None


@torch.no_grad()
def embed_split(
    model: LoadedModel,
    split: Split,
    *,
    cache_dir: Path | None,
    batch_size: int = 128,
    quiet: bool = False,
) -> dict[str, Tensor]:
    """`image` and `text`: the encoders' unnormalised (n, d) outputs for the split, cached."""
    key = _cache_key(model, split)
    target = cache_dir / f"{key}.pt" if cache_dir else None
    if target is not None:
        cached = _load_cached(target, key, split.node_ids.size)
        if cached is not None:
            return cached
    images = []
    with (
        ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool,
        Progress(disable=quiet, transient=True) as progress,
    ):
        task = progress.add_task(f"embedding {split.name}", total=split.node_ids.size)
        for chunk in split.images(batch_size):
            pixels = torch.stack(list(pool.map(lambda d: _decode(d, model.transform), chunk)))
            images.append(model.clip.encode_image(pixels).float())
            progress.advance(task, len(chunk))
    embeddings = {"image": torch.cat(images), "text": encode_texts(model, split.titles)}
    if target is not None:
        with atomic_path(target) as tmp:
            torch.save(embeddings | {"key": key}, tmp)
    return embeddings
