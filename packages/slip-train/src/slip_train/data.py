"""From shards to training batches: the training graph, and a DataLoader whose workers read,
decode, augment and tokenize each planned batch.

The planner (slip_train.batches) runs in the main process and hands each worker a whole
PlannedBatch through the DataLoader's `batch_sampler`; the worker's `__getitems__` returns the
batch's tensors. A worker opens the memory-mapped node cache itself, so nothing large is pickled,
and seeds its augmentation from the batch, so the pixels do not depend on which worker ran it.
"""

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from slip_train.batches import BatchPlanner, PlannedBatch
from slip_train.sampler import CSRGraph, build_csr
from slip_train.shards import (
    ShardError,
    Shards,
    build_node_cache,
    open_shards,
    read_node_cache,
)


@dataclass
class TrainData:
    shards: Shards
    graph: CSRGraph  # edges between two nodes of the split only
    split_nodes: Tensor  # node ids of the split batches are drawn from
    cache: Path  # the node cache (image, title) of docs/method.md


def load_train_data(shards_path: str | Path, split: str, cache_dir: str | Path) -> TrainData:
    """Open and check the shards, build the split's graph and the node cache (once per shards)."""
    shards = open_shards(shards_path)
    columns = shards.nodes(["split", "image_sha256"])
    in_split = torch.from_numpy(columns["split"].to_numpy(zero_copy_only=False) == split)
    if not bool(in_split.any()):
        raise ValueError(f"{shards.folder}: the {split!r} split has no nodes")
    # products kept without an image (slip-data --keep-missing-images) are not trained on
    has_image = torch.from_numpy(columns["image_sha256"].is_valid().to_numpy(zero_copy_only=False))
    in_split &= has_image
    edges = shards.edges()
    graph = build_csr(
        torch.tensor(edges["src"].to_numpy()),
        torch.tensor(edges["dst"].to_numpy()),
        shards.num_nodes,
        keep=in_split,
    )
    stamp = json.dumps([f["sha256"] for f in shards.manifest["files"]]).encode()
    cache_folder = Path(cache_dir) / hashlib.sha256(stamp).hexdigest()[:16]
    cache = build_node_cache(shards, cache_folder)
    return TrainData(shards, graph, torch.nonzero(in_split).squeeze(1), cache)


class BatchDataset(Dataset):
    """Turns a PlannedBatch into tensors: images decoded and augmented, titles tokenized."""

    def __init__(
        self, cache: Path, transform: Callable, tokenizer: Callable, image_size: int
    ) -> None:
        self.cache = cache
        self.image_size = image_size
        self.transform = transform
        self.tokenizer = tokenizer
        self._table: pa.Table | None = None  # opened lazily, in the worker that reads it

    def __len__(self) -> int:
        return 0  # batches come from the planner, never from indices

    def __getitems__(self, batch: PlannedBatch) -> dict[str, Tensor | int]:
        if self._table is None:
            self._table = read_node_cache(self.cache)
        rows = self._table.take(pa.array(batch.nodes.cpu().numpy()))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(batch.seed)
            images = torch.stack(
                [
                    self._image(node, data)
                    for node, data in zip(
                        batch.nodes.tolist(), rows["image"].to_pylist(), strict=True
                    )
                ]
            )
        return {
            "images": images,
            "tokens": self.tokenizer(rows["title"].to_pylist()),
            "nodes": batch.nodes,
            "edge_index": batch.edge_index,
            "epoch": batch.epoch,
            "index": batch.index,
        }

    def _image(self, node: int, data: bytes) -> Tensor:
        try:
            image = Image.open(io.BytesIO(data))
            image.draft("RGB", (self.image_size, self.image_size))  # JPEG: decode no larger
            return self.transform(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "not an image"
            raise ShardError(f"node {node}: its image does not decode ({exc})") from None


class _EpochBatches:
    """The DataLoader's batch_sampler: one epoch's planned batches from `start` on."""

    def __init__(self, planner: BatchPlanner, epoch: int, start: int) -> None:
        self.planner, self.epoch, self.start = planner, epoch, start

    def __iter__(self) -> Iterator[PlannedBatch]:
        return self.planner.epoch(self.epoch, self.start)

    def __len__(self) -> int:
        return len(self.planner) - self.start


def _single(batch: dict) -> dict:
    return batch


def epoch_loader(
    dataset: BatchDataset, planner: BatchPlanner, epoch: int, start: int, workers: int, pin: bool
) -> DataLoader:
    """Batches of `epoch` from index `start`, prepared by `workers` processes ahead of the step."""
    return DataLoader(
        dataset,
        batch_sampler=_EpochBatches(planner, epoch, start),
        collate_fn=_single,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(0),  # leaves the global RNG to the model
    )
