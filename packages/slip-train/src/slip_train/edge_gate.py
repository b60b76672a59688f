"""Which co-purchases count (`sampler.edge_gate = "similarity"`): the training graph kept to the
edges whose two products the starting model already finds more alike than a random pair of
training products is, at a chosen quantile of the random pairs' similarity.

Why: where co-purchases ignore what products are, SLIP's batches and its mask act on unrelated
pairs and can only cost; where they follow it, the same batches gather related products. The
gate asks the starting model (the pretrained CLIP that is fine-tuned) which edges look related,
without labels, so that a label-blind graph leaves few edges and batches close to CLIP's, and a
homophilous one keeps most (docs/method.md). Everything downstream (sampling, in-batch edges, the
mask, the graph heads, expected appearances) then sees the gated graph.
"""

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from slip_train.sampler import CSRGraph
from slip_train.shards import read_node_cache

RANDOM_PAIRS = 100_000  # the random pairs the threshold is the quantile of
EDGE_CHUNK = 1 << 20  # edges whose similarity is computed at once
JUDGED_NODES = 200_000  # `graph` mode judges the graph between a uniform sample of this many


@dataclass(frozen=True)
class GatedGraph:
    graph: CSRGraph
    threshold: float | None  # similarity an edge must exceed to be kept; None: no pair to compare
    edges_kept: int  # directed, as stored
    edges_before: int


@torch.no_grad()
def node_embeddings(
    clip: torch.nn.Module,
    cache: Path,
    nodes: Tensor,
    *,
    transform,
    tokenizer,
    device: torch.device,
    rows: int = 256,
) -> tuple[Tensor, int]:
    """Each node's normalised image and text embeddings joined and scaled to unit norm (so that a
    dot product is the mean of the two cosines), in `nodes`' order, as float32 on the CPU; and how
    many images failed their image_sha256 or did not decode (their half is zero)."""
    table = read_node_cache(cache)
    was_training = clip.training
    clip.eval()
    parts, unusable = [], 0
    for start in range(0, nodes.numel(), rows):
        chunk = table.take(pa.array(nodes[start : start + rows].numpy()))
        images, usable = [], []
        for data, sha256 in zip(
            chunk["image"].to_pylist(), chunk["image_sha256"].to_pylist(), strict=True
        ):
            image = _eval_image(data, sha256, transform)
            usable.append(image is not None)
            images.append(image if image is not None else torch.zeros(0))
        unusable += usable.count(False)
        text = F.normalize(
            clip.encode_text(tokenizer(chunk["title"].to_pylist()).to(device)), dim=-1
        )
        image_part = torch.zeros_like(text)
        if any(usable):
            kept = torch.tensor(usable)
            pixels = torch.stack([image for image in images if image.numel()]).to(device)
            image_part[kept.to(device)] = F.normalize(clip.encode_image(pixels), dim=-1)
        parts.append((torch.cat([image_part, text], dim=1) / 2**0.5).float().cpu())
    clip.train(was_training)
    return torch.cat(parts), unusable


def _eval_image(data: bytes | None, sha256: str | None, transform) -> Tensor | None:
    """One image as the eval transform makes it; None when it fails its check or its decode."""
    if hashlib.sha256(data or b"").hexdigest() != sha256:
        return None
    try:
        return transform(Image.open(io.BytesIO(data)).convert("RGB"))
    except (OSError, ValueError, SyntaxError):  # Pillow's ways of saying "not an image"
        return None


def gate_edges(
    graph: CSRGraph, nodes: Tensor, embeddings: Tensor, *, quantile: float, seed: int
) -> GatedGraph:
    """`graph` kept to the edges whose ends' similarity (the dot product of their `embeddings`,
    rows in `nodes`' order) exceeds the `quantile` of the similarities of random pairs of `nodes`
    (drawn by `seed`, so that every rank and every resume keeps the same edges). The similarity
    is symmetric, so the kept graph stays undirected. With fewer than two nodes there is no pair
    to compare, and no edge to gate."""
    if nodes.numel() < 2:
        return GatedGraph(graph, threshold=None, edges_kept=0, edges_before=0)
    row_of = torch.full((graph.num_nodes,), -1, dtype=torch.long)
    row_of[nodes] = torch.arange(nodes.numel())
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(nodes.numel(), (RANDOM_PAIRS,), generator=generator)
    other = (
        first + torch.randint(1, nodes.numel(), (RANDOM_PAIRS,), generator=generator)
    ) % nodes.numel()
    random = (embeddings[first] * embeddings[other]).sum(1)  # two distinct products a pair
    threshold = float(torch.quantile(random, quantile))
    indptr, indices = graph.indptr.cpu(), graph.indices.cpu().long()
    sources = torch.repeat_interleave(torch.arange(graph.num_nodes), indptr[1:] - indptr[:-1])
    keep = torch.empty(indices.numel(), dtype=torch.bool)
    for start in range(0, indices.numel(), EDGE_CHUNK):
        ends = (
            row_of[sources[start : start + EDGE_CHUNK]],
            row_of[indices[start : start + EDGE_CHUNK]],
        )
        keep[start : start + EDGE_CHUNK] = (embeddings[ends[0]] * embeddings[ends[1]]).sum(
            1
        ) > threshold
    kept_indptr = torch.zeros_like(indptr)
    kept_indptr[1:] = torch.cumsum(torch.bincount(sources[keep], minlength=graph.num_nodes), 0)
    return GatedGraph(
        graph=CSRGraph(kept_indptr, graph.indices.cpu()[keep].clone()),
        threshold=threshold,
        edges_kept=int(keep.sum()),
        edges_before=indices.numel(),
    )


def judge_graph(gated: GatedGraph, *, quantile: float) -> bool:
    """Whether the co-purchases join alike products, for `sampler.edge_gate = "graph"`: the gate
    keeps at least twice the share of edges that pairs no more alike than random pairs would
    give (1 - `quantile`). A bound set before any measurement, not fitted to a result."""
    share = gated.edges_kept / gated.edges_before if gated.edges_before else 0.0
    return share > 0 and share >= 2 * (1 - quantile) - 1e-9  # the bound, to float rounding


def induced_sample(
    graph: CSRGraph, nodes: Tensor, *, size: int, seed: int
) -> tuple[CSRGraph, Tensor]:
    """A uniform sample of `size` of `nodes` (all of them when there are fewer), sorted, and the
    graph between them (the same node ids): what `sampler.edge_gate = "graph"` judges by, so that
    its start-up embeds a bounded number of products at any size of the corpus. Only the sampled
    nodes' rows are read."""
    if nodes.numel() <= size:
        return graph, nodes
    generator = torch.Generator().manual_seed(seed)
    sample = nodes[torch.randperm(nodes.numel(), generator=generator)[:size]].sort().values
    inside = torch.zeros(graph.num_nodes, dtype=torch.bool)
    inside[sample] = True
    indptr, indices = graph.indptr.cpu(), graph.indices.cpu()
    lengths = (indptr[1:] - indptr[:-1])[sample]
    firsts = torch.cumsum(lengths, 0) - lengths  # each sampled row's first place in `positions`
    positions = torch.repeat_interleave(indptr[sample] - firsts, lengths) + torch.arange(
        int(lengths.sum())
    )
    ends = indices[positions]
    keep = inside[ends.long()]
    rows = torch.repeat_interleave(sample, lengths)[keep]
    kept_indptr = torch.zeros_like(indptr)
    kept_indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=graph.num_nodes), 0)
    return CSRGraph(kept_indptr, ends[keep].clone()), sample
