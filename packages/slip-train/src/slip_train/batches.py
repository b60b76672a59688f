"""Training batches: which nodes each step sees, and the in-batch graph between them.

Both modes fill every batch with exactly `batch_size` nodes, so SLIP and the CLIP baseline spend
the same encoder compute per step. In `slip` mode a batch is `seeds_per_batch` seeds (every
training node once per epoch, shuffled per epoch), their sampled neighbours, then uniformly random
training nodes up to `batch_size`; in `clip` mode it is `batch_size` shuffled training nodes and no
edges. With `seeds="balanced"` (`slip` mode only) each batch instead draws its seeds, distinct
within the batch, from fixed weights that make every training node's expected appearances as seed
or sampled neighbour about equal. With `anchor_weights="inverse_appearances"` (`slip` mode only)
each batch carries, per node, one over its expected appearances in a batch, for CLIP's loss to
weigh its anchors by. Each batch draws its randomness from generators seeded by (seed,
epoch, index) alone, so any batch can be made again without the ones before it: resuming skips to
it for free.

Batches are planned in the training process, one thread at a time: a batch is a few hundred nodes,
little work for one thread, and the loader's workers keep every core busy, so a parallel region
there waits for threads that cannot get a core (docs/benchmarks.md has the planner's times).
"""

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from slip_train.sampler import CSRGraph, neighbour_sums, sample_batch


@dataclass(frozen=True)
class PlannedBatch:
    epoch: int
    index: int
    seed: int  # seeds this batch's augmentation (image i of the batch: seed + i)
    nodes: Tensor  # global node ids, the sampled seeds first
    edge_index: Tensor  # (2, E) batch-local, each undirected pair at least once
    offset: int = 0  # under torchrun: where this rank's share of `nodes` starts in the batch
    # CLIP's loss weights for the whole batch's anchors (loss.anchor_weights); None: all alike
    anchor_weights: Tensor | None = None

    def share(self, rank: int, world: int) -> "PlannedBatch":
        """Rank `rank`'s contiguous share of the nodes; `edge_index` and `anchor_weights` stay the
        whole batch's."""
        size = self.nodes.numel() // world
        return replace(self, nodes=self.nodes[rank * size : (rank + 1) * size], offset=rank * size)


def batch_seed(seed: int, epoch: int, index: int) -> int:
    """One 63-bit seed per batch, stable across runs and platforms."""
    return (seed * 1_000_003 + epoch) * 1_000_033 + index & (2**63 - 1)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch (and so the sampler's numba kernels, which follow torch's count) on `count` threads
    for the duration (None: as they are); the count is put back after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count or threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def induced_edges(graph: CSRGraph, nodes: Tensor, local: Tensor) -> Tensor:
    """Every training edge between two batch nodes (each direction once), batch-local.

    `local` is scratch (num_nodes entries, all -1), left as found. Cost: the batch's degrees."""
    local[nodes] = torch.arange(nodes.numel(), device=nodes.device)
    start = graph.indptr.index_select(0, nodes)
    degree = graph.indptr.index_select(0, nodes + 1) - start
    owner = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), degree)
    first = torch.repeat_interleave(torch.cumsum(degree, 0) - degree, degree)
    slots = start.index_select(0, owner) + torch.arange(owner.numel(), device=nodes.device) - first
    other = local.index_select(0, graph.indices.index_select(0, slots))
    local[nodes] = -1
    inside = other >= 0
    return torch.stack([other[inside], owner[inside]])


def _appearance_operators(
    graph: CSRGraph, train_nodes: Tensor, fanout: int
) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """A and A^T of a(w) = A w, a node's expected appearances as a seed or a first-hop sampled
    neighbour when node u is a seed with weight w_u:
    a(v) = w_v + sum over u with v in N(u) of w_u * min(fanout, deg u) / deg u,
    over arrays of every node, zero off the training nodes; and the training nodes' mask.
    On the CPU."""
    indptr = graph.indptr.cpu().numpy()
    indices = graph.indices.cpu().numpy()
    degree = np.diff(indptr)
    keep = np.minimum(fanout, degree) / np.maximum(degree, 1)  # chance u samples a given neighbour
    train = np.zeros(graph.num_nodes, bool)
    train[train_nodes.cpu().numpy()] = True

    # the graph is stored both ways, so the nodes u with v in N(u) are v's own neighbours
    def forward(weights: np.ndarray) -> np.ndarray:  # A w, on the training nodes
        return (weights + neighbour_sums(indptr, indices, weights * keep)) * train

    def backward(seen: np.ndarray) -> np.ndarray:  # A^T a, on the training nodes
        return (seen + keep * neighbour_sums(indptr, indices, seen)) * train

    return forward, backward, train


def balanced_seed_weights(
    graph: CSRGraph, train_nodes: Tensor, fanout: int, *, iterations: int = 200
) -> Tensor:
    """Per training node, seed weights under which its expected appearances, as a seed or as a
    first-hop sampled neighbour (`_appearance_operators`), are about equal.

    Least squares |A w - 1|^2 over w >= 0 by the multiplicative fixed point
    w <- w * (A^T 1) / (A^T A w), which never raises the error: unlike w <- w * mean(a) / a, it
    lowers the weight of a hub's leaves, whose draws are what make the hub common, not only the
    hub's own. w stays at least 1e-3 of its mean, so that every node can still be a seed.
    On the CPU; normalised, on the graph's device."""
    forward, backward, train = _appearance_operators(graph, train_nodes, fanout)
    target = backward(train.astype(float))
    weights = train.astype(float)
    for _ in range(iterations):
        weights = weights * target / np.maximum(backward(forward(weights)), 1e-12)
        floor = 1e-3 * weights[train].mean()
        weights[train] = np.maximum(weights[train], floor)
    chosen = weights[train_nodes.cpu().numpy()]
    return torch.as_tensor(chosen / chosen.sum(), device=graph.indptr.device)


def expected_appearances(
    graph: CSRGraph,
    train_nodes: Tensor,
    *,
    fanout: int,
    seeds_per_batch: int,
    batch_size: int,
    seed_weights: Tensor | None = None,
) -> Tensor:
    """Per training node (in `train_nodes`' order), how often one batch holds it: as one of
    `seeds_per_batch` seeds drawn by `seed_weights` (None: uniformly, as each epoch's shuffle
    does), as a first-hop neighbour a seed samples, or in the uniform fill up to `batch_size`.
    Repeats within a batch are counted, so a node that two seeds would both sample is a little
    overcounted; later hops are not counted."""
    forward, _, _ = _appearance_operators(graph, train_nodes, fanout)
    chosen = train_nodes.cpu().numpy()
    probability = np.zeros(graph.num_nodes)
    if seed_weights is None:
        probability[chosen] = 1 / chosen.size
    else:
        probability[chosen] = seed_weights.cpu().double().numpy() / float(seed_weights.sum())
    as_seed_or_neighbour = seeds_per_batch * forward(probability)
    fill = max(0.0, batch_size - float(as_seed_or_neighbour.sum()))
    return torch.as_tensor(as_seed_or_neighbour[chosen] + fill / chosen.size)


class BatchPlanner:
    """The batches of each epoch, in `slip` (neighbour-sampled) or `clip` (uniform) mode."""

    def __init__(
        self,
        graph: CSRGraph,
        train_nodes: Tensor,
        *,
        batch_size: int,
        fanouts: Sequence[int],
        mode: str,
        edges: str = "induced",
        seeds: str = "epoch",  # or "balanced" (`slip` mode only): balanced_seed_weights's draws
        # or "inverse_appearances" (`slip` mode only): one over expected_appearances per anchor
        anchor_weights: str = "equal",
        seed: int = 0,
        threads: int | None = 1,  # torch's and numba's threads while planning; None: torch's count
    ) -> None:
        if train_nodes.numel() < 2:
            raise ValueError("the training split has fewer than 2 nodes: nothing to contrast")
        self.graph = graph
        self.train_nodes = train_nodes.to(graph.indptr.device)
        self.batch_size = min(batch_size, self.train_nodes.numel())
        self.fanouts = list(fanouts) if mode == "slip" else []
        self.edges = edges
        self.seed = seed
        self.threads = threads
        per_seed = 1 + sum(math.prod(self.fanouts[: hop + 1]) for hop in range(len(self.fanouts)))
        self.seeds_per_batch = max(1, self.batch_size // per_seed)
        self.seed_cdf = None  # None: every training node a seed once an epoch
        seed_weights = None
        if seeds == "balanced" and self.fanouts:
            seed_weights = balanced_seed_weights(graph, self.train_nodes, self.fanouts[0])
            self.seed_cdf = torch.cumsum(seed_weights.cpu(), 0)  # each batch's draws search it
        self.anchor_weights = None  # per node, on the CPU; None: every anchor counts alike
        if anchor_weights == "inverse_appearances" and self.fanouts:
            seen = expected_appearances(
                graph,
                self.train_nodes,
                fanout=self.fanouts[0],
                seeds_per_batch=self.seeds_per_batch,
                batch_size=self.batch_size,
                seed_weights=seed_weights,
            )
            self.anchor_weights = torch.zeros(graph.num_nodes, dtype=torch.float32)
            self.anchor_weights[self.train_nodes.cpu()] = (1 / seen).float()
        device = graph.indptr.device
        self._local = torch.full((graph.num_nodes,), -1, dtype=torch.long, device=device)
        # a graph on the GPU is sampled on a stream of its own, so that planning a batch does not
        # wait for the training step's kernels queued before it; it starts once the graph and the
        # scratch above are written
        self._stream = None
        if device.type == "cuda":
            self._stream = torch.cuda.Stream(device)
            self._stream.wait_stream(torch.cuda.current_stream(device))

    @contextmanager
    def _planning(self) -> Iterator[None]:
        """Planning's threads and, for a graph on the GPU, its stream."""
        with torch_threads(self.threads), torch.cuda.stream(self._stream):
            yield

    def __len__(self) -> int:
        """Batches per epoch (the last partial one is dropped)."""
        return max(1, self.train_nodes.numel() // self.seeds_per_batch)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[PlannedBatch]:
        """The batches of `epoch` from index `start` on."""
        if self.seed_cdf is not None:
            for index in range(start, len(self)):
                yield self.make(self._balanced_seeds(epoch, index), epoch, index)
            return
        device = self.train_nodes.device
        with self._planning():
            shuffle = torch.Generator(device=device).manual_seed(batch_seed(self.seed, epoch, -1))
            order = self.train_nodes[
                torch.randperm(self.train_nodes.numel(), generator=shuffle, device=device)
            ]
        for index in range(start, len(self)):
            seeds = order[index * self.seeds_per_batch : (index + 1) * self.seeds_per_batch]
            yield self.make(seeds, epoch, index)

    def _balanced_seeds(self, epoch: int, index: int) -> Tensor:
        """Batch `index`'s seeds, distinct, drawn by the balanced weights from a generator of
        their own: seeded by (seed, epoch, index) alone, as the batch's, with the epoch counted
        from -1 down so that its draws are not the batch generator's. Draws with replacement,
        each a binary search of the weights' running sum, with repeats dropped until there are
        enough: weighted sampling without replacement (as `torch.multinomial`'s), in O(k log n)
        where `torch.multinomial` reads all n weights per batch."""
        cdf, wanted = self.seed_cdf, self.seeds_per_batch
        draw = torch.Generator().manual_seed(batch_seed(self.seed, -1 - epoch, index))
        chosen = np.empty(0, dtype=np.int64)
        with self._planning():
            while chosen.size < wanted:
                points = torch.rand(wanted, generator=draw, dtype=cdf.dtype) * cdf[-1]
                picks = torch.searchsorted(cdf, points, right=True).clamp_(max=cdf.numel() - 1)
                drawn = np.concatenate([chosen, picks.numpy()])
                first = np.sort(np.unique(drawn, return_index=True)[1])  # repeats dropped
                chosen = drawn[first][:wanted]
            return self.train_nodes[torch.from_numpy(chosen).to(self.train_nodes.device)]

    def make(self, seeds: Tensor, epoch: int, index: int) -> PlannedBatch:
        """Batch `index` of `epoch` from its seeds; on the CPU, wherever the graph is."""
        seed = batch_seed(self.seed, epoch, index)
        with self._planning():
            generator = torch.Generator(device=seeds.device).manual_seed(seed)
            sampled = sample_batch(
                self.graph, seeds, self.fanouts, generator=generator, local=self._local
            )
            nodes = self._top_up(sampled.nodes, generator)
            if not self.fanouts:
                edge_index = torch.empty(2, 0, dtype=torch.long, device=nodes.device)
            elif self.edges == "induced":
                edge_index = induced_edges(self.graph, nodes, self._local)
            else:
                edge_index = sampled.edge_index
            # on the GPU: copied on the planning stream, which the copy waits for
            nodes = nodes.cpu()
            weights = None if self.anchor_weights is None else self.anchor_weights[nodes]
            return PlannedBatch(epoch, index, seed, nodes, edge_index.cpu(), anchor_weights=weights)

    def _top_up(self, nodes: Tensor, generator: torch.Generator) -> Tensor:
        """`nodes` plus distinct uniformly random training nodes up to `batch_size`."""
        while (need := self.batch_size - nodes.numel()) > 0:
            where = torch.randint(
                self.train_nodes.numel(), (2 * need + 16,), generator=generator, device=nodes.device
            )
            draw = self.train_nodes[where]
            draw = draw[~torch.isin(draw, nodes)]
            keep = torch.unique(draw)
            keep = keep[torch.randperm(keep.numel(), generator=generator, device=nodes.device)]
            nodes = torch.cat([nodes, keep[:need]])
        return nodes
