"""From shards to training batches: the training graph, and a DataLoader whose workers read,
decode, augment and tokenize each planned batch (with `data.decode = "cpu"` or `"cuda"` they hand
over the JPEGs and their crops instead, which `BatchDataset.decode` decodes in the main process).

The planner (slip_train.batches) runs in the main process and hands each worker a whole
PlannedBatch through the DataLoader's `batch_sampler`; the worker's `__getitems__` returns the
batch's tensors, its graph already in the form the graph heads and the structural loss take
(graph_head.neighbour_edges), so that the training step runs no data-dependent op on the device.
A worker opens the memory-mapped node cache itself, so nothing large is pickled, and seeds its
augmentation from the batch, so the pixels do not depend on which worker ran it.

Each image is checked against its image_sha256 before it is decoded: a damaged image (or one that
does not decode) is dropped from its batch with a one-line warning and counted, rather than
trained on or stopping the run.
"""

import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import pil_to_tensor

from slip_train.batches import BatchPlanner, PlannedBatch
from slip_train.device_decode import crop_step, decode_jpegs, draw_crop, resized_crops
from slip_train.graph_cache import load_graph
from slip_train.graph_head import neighbour_edges
from slip_train.sampler import CSRGraph
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
    graph: CSRGraph  # edges between two nodes of the split only; memory-mapped, read-only
    split_nodes: Tensor  # node ids of the split batches are drawn from
    cache: Path  # the node cache (image, title) of docs/method.md


def load_train_data(shards_path: str | Path, split: str, cache_dir: str | Path) -> TrainData:
    """Open and check the shards; the split's graph and the node cache, each built once per
    shards (in a folder keyed by the manifest's sha256 list) and memory-mapped after."""
    shards = open_shards(shards_path)
    stamp = json.dumps([f["sha256"] for f in shards.manifest["files"]]).encode()
    cache_folder = Path(cache_dir) / hashlib.sha256(stamp).hexdigest()[:16]
    graph, split_nodes = load_graph(shards, split, cache_folder / f"graph-{split}")
    cache = build_node_cache(shards, cache_folder)
    return TrainData(shards, graph, split_nodes, cache)


def to_model_images(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """The workers' uint8 (n, 3, h, w) pixels as the model takes them, on their device: ToTensor's
    scaling and open_clip's Normalize, the same float operations in the same order. `mean` and
    `std` are (3, 1, 1) on that device."""
    return images.float().div_(255).sub_(mean).div_(std)


class BatchDataset(Dataset):
    """Turns a PlannedBatch into tensors: images checked, decoded and augmented (uint8, normalised
    later on the device by to_model_images), titles tokenized. With `decode_in_workers` False the
    images are only checked and their crops drawn; `decode` makes the pixels."""

    def __init__(
        self,
        cache: Path,
        *,
        transform: Callable,
        tokenizer: Callable,
        image_size: int,
        decode_in_workers: bool = True,
    ) -> None:
        self.cache = cache
        self.image_size = image_size
        self.transform = transform
        self.crop = None if decode_in_workers else crop_step(transform)
        self.tokenizer = tokenizer
        self._table: pa.Table | None = None  # opened lazily, in the worker that reads it
        self._warned: set[int] = set()  # nodes this process has warned about
        # under torchrun each rank holds an equal share of the batch (slip_train.distributed
        # gathers equal-sized rows) and the batch's edges: a rank cannot drop a node alone
        self._can_drop = int(os.environ.get("WORLD_SIZE", "1")) == 1

    def __len__(self) -> int:
        return 0  # batches come from the planner, never from indices

    def __getitems__(self, batch: PlannedBatch) -> dict[str, Tensor | int | float]:
        started = time.perf_counter()
        if self._table is None:
            self._table = read_node_cache(self.cache)
        rows = self._table.take(pa.array(batch.nodes.cpu().numpy()))
        first = batch.seed + batch.offset  # image i's seed is the batch's seed + i
        with torch.random.fork_rng(devices=[]):
            made = [
                self._image(node, data, sha256=sha256, seed=first + i)
                for i, (node, data, sha256) in enumerate(
                    zip(
                        batch.nodes.tolist(),
                        rows["image"].to_pylist(),
                        rows["image_sha256"].to_pylist(),
                        strict=True,
                    )
                )
            ]
        whole = {
            "tokens": self.tokenizer(rows["title"].to_pylist()),
            "nodes": batch.nodes,
            "edge_index": neighbour_edges(batch.edge_index),
            "anchor_weights": batch.anchor_weights,
            "epoch": batch.epoch,
            "index": batch.index,
            "skipped_images": 0,
        }
        out = _keep(whole, torch.tensor([image is not None for image in made]))
        kept = [image for image in made if image is not None]
        if self.crop is None:
            out["images"] = torch.stack(kept)
        else:  # the bytes in one tensor: one piece of shared memory per batch, not one per image
            out["jpegs"] = torch.frombuffer(
                bytearray(b"".join(d for d, _ in kept)), dtype=torch.uint8
            )
            out["jpeg_sizes"] = torch.tensor([len(data) for data, _ in kept])
            out["crops"] = torch.tensor([crop for _, crop in kept])
        out["load_s"] = time.perf_counter() - started  # this process's time: the loader's cost
        return out

    def decode(self, batch: dict, *, device: torch.device) -> dict:
        """A batch of JPEGs and crops as the workers' path hands it over: the images decoded on
        `device`, cropped and resized there; one that does not decode dropped, as a damaged one."""
        jpegs = batch["jpegs"].split(batch["jpeg_sizes"].tolist())
        decoded = decode_jpegs(list(jpegs), device)
        for node, image in zip(batch["nodes"].tolist(), decoded, strict=True):
            if isinstance(image, str):
                self._skip(node, f"its image does not decode ({image})")
        keep = torch.tensor([not isinstance(image, str) for image in decoded])
        rest = {k: v for k, v in batch.items() if k not in ("jpegs", "jpeg_sizes", "crops")}
        out = _keep(rest, keep)
        images = [image for image in decoded if not isinstance(image, str)]
        return out | {"images": resized_crops(images, batch["crops"][keep], self.crop)}

    def _image(
        self, node: int, data: bytes | None, *, sha256: str | None, seed: int
    ) -> Tensor | tuple[bytes, list[int]] | None:
        """One image, augmented from its own seed: the same pixels whichever process loads it
        (without `decode_in_workers`: its bytes and its crop); None (after a one-line warning)
        when it does not match its image_sha256 or does not decode.

        Only the CPU generator is seeded, the one the transforms draw from: torch.manual_seed
        also queues a CUDA seeding with a stack trace, a good share of a loader worker's time per
        image (docs/benchmarks.md)."""
        actual = hashlib.sha256(data or b"").hexdigest()
        if actual != sha256:
            return self._skip(node, f"image sha256 {actual} is not its image_sha256 {sha256}")
        torch.default_generator.manual_seed(seed)
        try:
            image = Image.open(io.BytesIO(data))
            if self.crop is not None:  # decoded later, with the batch (device_decode.py)
                return data, draw_crop(image, self.crop, self.image_size)
            image.draft("RGB", (self.image_size, self.image_size))  # JPEG: decode no larger
            return pil_to_tensor(self.transform(image.convert("RGB")))
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "not an image"
            return self._skip(node, f"its image does not decode ({exc})")

    def _skip(self, node: int, problem: str) -> None:
        """Warn once per node and process; under torchrun, stop with the problem instead."""
        if not self._can_drop:
            raise ShardError(f"node {node}: {problem} (under torchrun a bad image stops the run)")
        if node not in self._warned:
            self._warned.add(node)
            print(f"slip-train: skipped node {node}: {problem}", file=sys.stderr, flush=True)


def drop_nodes(nodes: Tensor, edge_index: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """The batch without the nodes where `keep` is False: their edges dropped, the others'
    batch-local indices renumbered to the rows that remain (in the same order, so edges as
    neighbour_edges made them stay so)."""
    renumber = torch.cumsum(keep, 0) - 1
    inside = keep[edge_index[0]] & keep[edge_index[1]]
    return nodes[keep], renumber[edge_index[:, inside]]


def _keep(batch: dict, keep: Tensor) -> dict:
    """The batch without its rows where `keep` is False (nodes, tokens, edges renumbered), which
    `skipped_images` counts; a batch with no row left stops the run."""
    if not bool(keep.any()):
        raise ShardError(f"batch {batch['index']}: none of its {keep.numel()} images is usable")
    if bool(keep.all()):
        return dict(batch)
    nodes, edge_index = drop_nodes(
        batch["nodes"], batch["edge_index"], keep.to(batch["nodes"].device)
    )
    weights = batch["anchor_weights"]
    return batch | {
        "nodes": nodes,
        "edge_index": edge_index,
        "anchor_weights": None if weights is None else weights[keep.to(weights.device)],
        "tokens": batch["tokens"][keep],
        "skipped_images": batch["skipped_images"] + int((~keep).sum()),
    }


class _PlannedBatches:
    """The DataLoader's batch_sampler: planned batches from (epoch, start) on, across epochs,
    without end, so the loader's workers start once per run, not once per epoch; under torchrun
    each rank's share of them."""

    def __init__(
        self, planner: BatchPlanner, *, epoch: int, start: int, rank: int, world: int
    ) -> None:
        self.planner, self.epoch, self.start = planner, epoch, start
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[PlannedBatch]:
        epoch, start = self.epoch, self.start
        while True:
            for batch in self.planner.epoch(epoch, start):
                yield batch.share(self.rank, self.world) if self.world > 1 else batch
            epoch, start = epoch + 1, 0


def _single(batch: dict) -> dict:
    return batch


def batch_loader(
    dataset: BatchDataset,
    planner: BatchPlanner,
    *,
    epoch: int,
    start: int,
    workers: int,
    pin: bool,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """Batches from (epoch, start) on, without end, prepared by `workers` processes ahead of the
    step; with `world` > 1, rank `rank`'s share of each."""
    return DataLoader(
        dataset,
        batch_sampler=_PlannedBatches(planner, epoch=epoch, start=start, rank=rank, world=world),
        collate_fn=_single,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(0),  # leaves the global RNG to the model
    )
