"""One split of slip-data shards, read by docs/shard-format.md alone, and its embeddings.

Embeddings are cached per (model weights, shard files, split) under the cache folder: a key made
of the checkpoint's digest and the manifest's file hashes, so new weights or new shards never
read a stale cache. The cache holds the encoders' unnormalised output, which the graph heads of
structure-aware inference take as input.
"""

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch
from PIL import Image
from rich.progress import Progress
from torch import Tensor

from slip_eval.models import LoadedModel

SHARD_VERSION = 1
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
        return [self.folder / f["path"] for f in self.manifest["files"] if f["kind"] == "nodes"]

    def images(self, batch_size: int) -> Iterator[list[bytes]]:
        """The split's image bytes in node_id order, a batch at a time (bounded memory): shard
        files in name order, row groups in order."""
        for path in self.node_files:
            shard = pq.ParquetFile(path)
            for batch in shard.iter_batches(batch_size, columns=["split", "image_sha256", "image"]):
                wanted = pc.and_(
                    pc.equal(batch.column("split"), self.name),
                    batch.column("image_sha256").is_valid(),
                )
                images = batch.column("image").filter(wanted).to_pylist()
                if images:
                    yield images


def open_split(path: str | Path, split: str) -> Split:
    """The split's products that have an image, their titles, labels and in-split edges."""
    path = Path(path)
    folder = next((f for f in (path, path / "shards") if (f / "manifest.json").is_file()), None)
    if folder is None:
        raise DataError(f"no manifest.json in {path} or {path / 'shards'}: not slip-data shards")
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder / 'manifest.json'}: unreadable ({exc})") from None
    if manifest.get("format_version") != SHARD_VERSION:
        raise DataError(
            f"{folder}: shard format version {manifest.get('format_version')!r}; "
            f"this slip-eval reads {SHARD_VERSION}"
        )
    if split not in SPLITS:
        raise DataError(f"--split: {split!r} is not one of {', '.join(SPLITS)}")
    node_files = [folder / f["path"] for f in manifest["files"] if f["kind"] == "nodes"]
    missing = [str(p) for p in node_files if not p.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: listed in the manifest but missing")
    table = ds.dataset(node_files, format="parquet").to_table(
        columns=["node_id", "title", "label_id"],
        filter=(pc.field("split") == split) & pc.field("image_sha256").is_valid(),
    )
    if table.num_rows == 0:
        raise DataError(f"{folder}: the {split!r} split has no product with an image")
    node_ids = table["node_id"].to_numpy()
    edges = pq.read_table(folder / "edges.parquet", columns=["src", "dst"])
    local = np.full(manifest["counts"]["nodes"], -1, dtype=np.int64)
    local[node_ids] = np.arange(node_ids.size)
    src, dst = local[edges["src"].to_numpy()], local[edges["dst"].to_numpy()]
    inside = (src >= 0) & (dst >= 0)
    return Split(
        folder=folder,
        manifest=manifest,
        name=split,
        node_ids=node_ids,
        titles=table["title"].to_pylist(),
        label_ids=np.array(table["label_id"].to_numpy(zero_copy_only=False)),  # writable copy
        label_names=list(manifest.get("label_names", [])),
        edge_index=torch.from_numpy(np.stack([src[inside], dst[inside]])),
    )


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


@torch.no_grad()
def embed_split(
    model: LoadedModel, split: Split, cache_dir: Path | None, batch_size: int = 128,
    quiet: bool = False,
) -> dict[str, Tensor]:  # fmt: skip
    """`image` and `text`: the encoders' unnormalised (n, d) outputs for the split, cached."""
    target = cache_dir / f"{_cache_key(model, split)}.pt" if cache_dir else None
    if target is not None and target.is_file():
        return torch.load(target, map_location="cpu", weights_only=True)
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
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        try:
            torch.save(embeddings, tmp)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return embeddings
