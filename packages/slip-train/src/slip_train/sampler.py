"""Neighbour sampling with the semantics of DGL's NeighborSampler, on the CPU or the GPU.

DGL cannot be installed beside current torch and PyG's NeighborLoader needs compiled extras
(docs/method.md), so this is the sampler: a CSR of the training graph only, per-hop fanouts,
neighbours drawn uniformly without replacement, on the CPU or on the GPU. The CSR is built from
edges streamed in chunks (csr_arrays); slip_train.graph_cache keeps it in files that every
process memory-maps.

A batch is the seeds plus the neighbours sampled for them. Hop 1 samples neighbours of the seeds;
hop l samples neighbours of the nodes that hop l-1 added (a node already in the batch is not
sampled again, so no edge is drawn twice). The batch's edges are the sampled ones, as local
indices into `nodes`, pointing from neighbour (src) to the node it was sampled for (dst), the
in-edges DGL's sampler returns.

Two implementations with these semantics: on the CPU, numba kernels that do a whole batch in one
call (per-node draws and the dedup in parallel loops, no per-hop tensor ops); on the GPU, torch
tensor ops. The numba path draws from a counter-based hash (splitmix64 of a per-batch key from the
torch generator, the hop, the node and the draw), so a batch depends on the generator's state
only, not on the thread count. The two paths give different (equally uniform) draws.
"""

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

# New nodes by a bitmap over every node once they are at least 1/BITMAP_RATIO of the graph, else by
# a sort: a bitmap costs the graph's size, a sort the batch's (docs/benchmarks.md, the sampler).
BITMAP_RATIO = 16
NUMBA_ON_CPU = True  # False: the torch path on the CPU too (tests, the benchmark's comparison)


@dataclass(frozen=True)
class CSRGraph:
    """Undirected graph as neighbour lists: those of v are indices[indptr[v] : indptr[v + 1]];
    `indptr` int64, `indices` int32 (csr_arrays) or int64."""

    indptr: Tensor
    indices: Tensor

    @property
    def num_nodes(self) -> int:
        return self.indptr.numel() - 1

    def to(self, device: torch.device | str) -> "CSRGraph":
        return CSRGraph(self.indptr.to(device), self.indices.to(device))


@dataclass(frozen=True)
class SampledBatch:
    nodes: Tensor  # global node ids; the seeds first, in the order given
    num_seeds: int
    edge_index: Tensor  # (2, E) local indices into nodes: row 0 neighbour, row 1 the node it serves


# ------------------------------------------------------------------------ torch path (any device)


def _sample_offsets(degree: Tensor, fanout: int, generator: torch.Generator) -> Tensor:
    """(n, fanout) distinct offsets in [0, degree) per row, uniform (Floyd's algorithm, by rows).

    Each row needs degree > fanout. The work is n * fanout^2, independent of the degrees; all
    random draws are made at once, so each step is three tensor ops.
    """
    n = degree.numel()
    device = degree.device
    tops = degree[:, None] - fanout + torch.arange(fanout, device=device)  # step i: [0, top_i]
    draws = (torch.rand(n, fanout, generator=generator, device=device) * (tops + 1)).long()
    draws = torch.minimum(draws, tops)
    chosen = torch.empty(n, fanout, dtype=torch.long, device=device)
    for step in range(fanout):
        draw = draws[:, step]
        taken = (chosen[:, :step] == draw[:, None]).any(1)
        chosen[:, step] = torch.where(taken, tops[:, step], draw)
    return chosen


def _sample_neighbors_torch(
    graph: CSRGraph, frontier: Tensor, fanout: int, *, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(neighbour, node) pairs: for each frontier node all its neighbours when it has at most
    `fanout`, else `fanout` of them drawn uniformly without replacement; in tensor ops, for any
    device. The nodes with few neighbours come first.

    Gathers use index_select: on the CPU it is several times faster than `tensor[index]`.
    """
    device = frontier.device
    start = graph.indptr.index_select(0, frontier)
    degree = graph.indptr.index_select(0, frontier + 1) - start
    few = torch.nonzero(degree <= fanout).squeeze(1)
    many = torch.nonzero(degree > fanout).squeeze(1)
    # nodes with few neighbours: take every one
    few_degree = degree.index_select(0, few)
    owner = torch.repeat_interleave(few, few_degree)
    first = torch.repeat_interleave(torch.cumsum(few_degree, 0) - few_degree, few_degree)
    slot = start.index_select(0, owner) + torch.arange(owner.numel(), device=device) - first
    sources = [graph.indices.index_select(0, slot).long()]
    owners = [owner]
    # nodes with many: draw
    if many.numel():
        offsets = _sample_offsets(degree.index_select(0, many), fanout, generator)
        slots = (start.index_select(0, many)[:, None] + offsets).reshape(-1)
        sources.append(graph.indices.index_select(0, slots).long())
        owners.append(many.repeat_interleave(fanout))
    return torch.cat(sources), frontier.index_select(0, torch.cat(owners))


def _distinct(values: Tensor, num_nodes: int) -> Tensor:
    """Sorted distinct node ids: by a bitmap over the nodes where that is cheaper than a sort
    (a batch touching a good share of the graph), else by torch.unique."""
    if num_nodes > BITMAP_RATIO * values.numel():
        return torch.unique(values)
    seen = torch.zeros(num_nodes, dtype=torch.bool, device=values.device)
    seen[values] = True
    return torch.nonzero(seen).squeeze(1)


def _sample_batch_torch(
    graph: CSRGraph,
    seeds: Tensor,
    fanouts: Sequence[int],
    *,
    generator: torch.Generator,
    local: Tensor,
) -> SampledBatch:
    """sample_batch in tensor ops, for any device."""
    device = seeds.device
    local[seeds] = torch.arange(seeds.numel(), device=device)
    nodes = [seeds]
    count = seeds.numel()
    frontier = seeds
    edge_src, edge_dst = [], []
    for fanout in fanouts:
        if frontier.numel() == 0:
            break
        src, dst = _sample_neighbors_torch(graph, frontier, fanout, generator=generator)
        new = _distinct(src[local.index_select(0, src) < 0], graph.num_nodes)
        local[new] = torch.arange(count, count + new.numel(), device=device)
        count += new.numel()
        nodes.append(new)
        edge_src.append(local.index_select(0, src))
        edge_dst.append(local.index_select(0, dst))
        frontier = new
    edge_index = (
        torch.stack([torch.cat(edge_src), torch.cat(edge_dst)])
        if edge_src
        else torch.empty(2, 0, dtype=torch.long, device=device)
    )
    batch_nodes = torch.cat(nodes)
    local[batch_nodes] = -1
    return SampledBatch(batch_nodes, seeds.numel(), edge_index)


# ------------------------------------------------------------------------ numba path (the CPU)

# New nodes by a scan of every node's mark up to this many nodes per sampled edge, else by a sort:
# a scan costs the graph's size, a sort the batch's (docs/benchmarks.md, the sampler).
SCAN_RATIO = 64
_SCAN_CHUNK = 4096  # nodes per chunk of that scan, the unit of its parallel loop
_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment


def _jit(parallel: bool = True) -> Callable[[Callable], Callable]:
    """numba's njit, cached on disk so a process loads the kernels instead of compiling them
    (seconds); where numba finds no writable cache directory, compiled per process, with a
    warning rather than an error."""

    def compile_(function: Callable) -> Callable:
        try:
            return numba.njit(parallel=parallel, cache=True)(function)
        except RuntimeError as error:  # "cannot cache function ...: no locator available"
            warnings.warn(f"numba kernels compiled per process: {error}", stacklevel=2)
            return numba.njit(parallel=parallel)(function)

    return compile_


@_jit(parallel=False)
def _mix(z: np.uint64) -> np.uint64:
    """splitmix64's finaliser: a bijection whose outputs for distinct inputs pass as independent
    uniform 64-bit draws, so a draw can be a function of (key, node, step) on any thread."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@_jit(parallel=False)
def _below(bits: np.uint64, bound: int) -> int:
    """An int uniform in [0, bound) from 53 of the random bits (bias at most bound / 2^53)."""
    scaled = np.float64(bits >> np.uint64(11)) * (bound / 9007199254740992.0)
    return min(np.int64(scaled), bound - 1)


@_jit()
def _draw(
    indptr: np.ndarray, indices: np.ndarray, frontier: np.ndarray, fanout: int, key: np.uint64
) -> tuple[np.ndarray, np.ndarray]:
    """(neighbour, frontier position) pairs, by frontier node in frontier order: all neighbours
    of a node with at most `fanout`, else `fanout` drawn by Floyd's algorithm (nodes in
    parallel; the drawn offsets sit in the output until they are looked up)."""
    n = frontier.size
    ends = np.empty(n, np.int64)
    for i in prange(n):
        v = frontier[i]
        ends[i] = min(indptr[v + 1] - indptr[v], fanout)
    ends = np.cumsum(ends)
    total = ends[n - 1] if n else 0
    src = np.empty(total, np.int64)
    owner = np.empty(total, np.int64)
    for i in prange(n):
        v = frontier[i]
        start = indptr[v]
        degree = indptr[v + 1] - start
        taken = min(degree, fanout)
        first = ends[i] - taken
        if degree <= fanout:
            for j in range(degree):
                src[first + j] = indices[start + j]
        else:
            stream = _mix(key ^ np.uint64(v))
            for step in range(fanout):
                top = degree - fanout + step  # draw in [0, top]; top itself if drawn before
                draw = _below(_mix(stream + np.uint64(step + 1) * _GAMMA), top + 1)
                for k in range(first, first + step):
                    if src[k] == draw:
                        draw = top
                        break
                src[first + step] = draw
            for j in range(first, first + fanout):
                src[j] = indices[start + src[j]]
        owner[first : first + taken] = i
    return src, owner


@_jit()
def _add_new(
    src: np.ndarray, local: np.ndarray, count: int, scan_ratio: int
) -> tuple[np.ndarray, np.ndarray]:
    """The nodes of `src` not yet in the batch, in node-id order, given local ids from `count`
    on; and `src` in local ids. New nodes are marked (-2) in parallel, then found by a scan of
    every node's mark in parallel chunks when they are dense enough, else by a sort."""
    for e in prange(src.size):
        if local[src[e]] < 0:
            local[src[e]] = -2
    if local.size <= scan_ratio * src.size:
        chunks = -(-local.size // _SCAN_CHUNK)
        found = np.zeros(chunks, np.int64)
        for c in prange(chunks):
            marked = 0
            for v in range(c * _SCAN_CHUNK, min((c + 1) * _SCAN_CHUNK, local.size)):
                marked += local[v] == -2
            found[c] = marked
        ends = np.cumsum(found)
        new = np.empty(ends[-1], np.int64)
        for c in prange(chunks):
            at = ends[c] - found[c]
            for v in range(c * _SCAN_CHUNK, min((c + 1) * _SCAN_CHUNK, local.size)):
                if local[v] == -2:
                    new[at] = v
                    local[v] = count + at
                    at += 1
    else:
        new = np.empty(src.size, np.int64)
        k = 0
        for s in src:
            if local[s] == -2:
                local[s] = -3
                new[k] = s
                k += 1
        new = np.sort(new[:k])
        for j in prange(k):
            local[new[j]] = count + j
    src_local = np.empty_like(src)
    for e in prange(src.size):
        src_local[e] = local[src[e]]
    return new, src_local


@_jit()
def _batch(
    indptr: np.ndarray,
    indices: np.ndarray,
    seeds: np.ndarray,
    fanouts: np.ndarray,
    key: np.uint64,
    local: np.ndarray,
    scan_ratio: int,
) -> tuple[np.ndarray, np.ndarray]:
    """sample_batch on arrays, one call per batch: (nodes, edge_index)."""
    for i in prange(seeds.size):
        local[seeds[i]] = i
    nodes = [seeds]
    sources = [np.empty(0, np.int64)]  # typed by a first (empty) part: numba infers list types
    targets = [np.empty(0, np.int64)]
    count = seeds.size
    base = 0  # local id of the frontier's first node
    frontier = seeds
    for hop in range(fanouts.size):
        if frontier.size == 0:
            break
        hop_key = _mix(key + np.uint64(hop + 1) * _GAMMA)
        src, owner = _draw(indptr, indices, frontier, fanouts[hop], hop_key)
        new, src_local = _add_new(src, local, count, scan_ratio)
        sources.append(src_local)
        targets.append(owner + base)
        nodes.append(new)
        base = count
        count += new.size
        frontier = new
    batch_nodes = np.empty(count, np.int64)
    at = 0
    for part in nodes:
        batch_nodes[at : at + part.size] = part
        at += part.size
    edges = 0
    for part in sources:
        edges += part.size
    edge_index = np.empty((2, edges), np.int64)
    at = 0
    for h in range(len(sources)):
        edge_index[0, at : at + sources[h].size] = sources[h]
        edge_index[1, at : at + targets[h].size] = targets[h]
        at += sources[h].size
    for i in prange(count):
        local[batch_nodes[i]] = -1
    return batch_nodes, edge_index


def _on_numba(tensor: Tensor) -> bool:
    return NUMBA_ON_CPU and tensor.device.type == "cpu"


def _numba_key(generator: torch.Generator) -> np.uint64:
    """The call's RNG key: one draw from the torch generator, so its state decides the batch."""
    return np.uint64(int(torch.randint(0, 2**63 - 1, (), generator=generator)))


def _numba_threads() -> None:
    """numba's thread count to torch's (read per call: it can change), so that sampling uses the
    cores torch is told to use (numba's own default is every core). numba's first call starts
    its OpenMP pool, which sets the process's OpenMP thread count, torch's too, to numba's
    default: torch's is put back."""
    threads = torch.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _array(tensor: Tensor) -> np.ndarray:
    """A contiguous int64 numpy view (a copy only when it must)."""
    return tensor.to(torch.long).contiguous().numpy()


# ------------------------------------------------------------------------ building the CSR

MAX_NODES = 2**31  # node ids are int32 in `indices`


@_jit(parallel=False)
def _count(src: np.ndarray, dst: np.ndarray, keep: np.ndarray, degree: np.ndarray) -> bool:
    """Add the kept edges' two ends to `degree`; False at an id outside the graph."""
    n = degree.size
    for e in range(src.size):
        a, b = src[e], dst[e]
        if a < 0 or a >= n or b < 0 or b >= n:
            return False
        if keep[a] and keep[b]:
            degree[a] += 1
            degree[b] += 1
    return True


@_jit(parallel=False)
def _fill(
    src: np.ndarray,
    dst: np.ndarray,
    keep: np.ndarray,
    indptr: np.ndarray,
    cursor: np.ndarray,
    indices: np.ndarray,
) -> bool:
    """Write each kept edge into both ends' rows at their cursors; False where an id or a row's
    size is not what the counting pass saw (the edges changed between the passes)."""
    n = cursor.size
    for e in range(src.size):
        a, b = src[e], dst[e]
        if a < 0 or a >= n or b < 0 or b >= n:
            return False
        if keep[a] and keep[b]:
            if cursor[b] >= indptr[b + 1]:
                return False
            indices[cursor[b]] = a
            cursor[b] += 1
            if cursor[a] >= indptr[a + 1]:
                return False
            indices[cursor[a]] = b
            cursor[a] += 1
    return True


@_jit()
def _sort_rows(indptr: np.ndarray, indices: np.ndarray) -> None:
    """Each row in ascending order, rows in parallel; a sorted row (every row, for edges sorted
    by (src, dst) with src < dst as shards store them) is only scanned."""
    for v in prange(indptr.size - 1):
        row = indices[indptr[v] : indptr[v + 1]]
        for j in range(1, row.size):
            if row[j] < row[j - 1]:
                row.sort()
                break


@_jit()
def neighbour_sums(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per node, the sum of `values` over its neighbours, rows in parallel: one pass over the
    stored edges, in order (for a graph stored both ways, what a scatter of each node's value to
    its neighbours gives, without the scatter's random writes)."""
    sums = np.zeros(indptr.size - 1)
    for v in prange(indptr.size - 1):
        total = 0.0
        for e in range(indptr[v], indptr[v + 1]):
            total += values[indices[e]]
        sums[v] = total
    return sums


def csr_arrays(
    edges: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    num_nodes: int,
    *,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64, indices int32) over both directions of edges stored once; with `keep` (a
    node mask) only the edges whose two ends are kept: the training graph holds no edge to a
    validation or test node. Each row is in ascending order.

    `edges()` yields (src, dst) chunks and is called twice, to count the degrees and then to
    fill the rows, so no more than one chunk of the edge list is in memory beside the CSR.
    """
    if num_nodes > MAX_NODES:
        raise ValueError(f"{num_nodes:,} nodes: node ids must fit int32 (below 2^31)")
    keep = np.ones(num_nodes, np.bool_) if keep is None else keep
    degree = np.zeros(num_nodes, np.int64)
    for src, dst in edges():
        if not _count(src, dst, keep, degree):
            raise ValueError(f"an edge names a node outside 0..{num_nodes - 1}")
    indptr = np.zeros(num_nodes + 1, np.int64)
    np.cumsum(degree, out=indptr[1:])
    cursor = degree  # each row's next free slot, from its start
    cursor[:] = indptr[:-1]
    indices = np.empty(indptr[-1], np.int32)
    for src, dst in edges():
        if not _fill(src, dst, keep, indptr, cursor, indices):
            raise ValueError("the edges changed between the counting and the filling pass")
    if not np.array_equal(cursor, indptr[1:]):
        raise ValueError("the edges changed between the counting and the filling pass")
    _numba_threads()
    _sort_rows(indptr, indices)
    return indptr, indices


def build_csr(src: Tensor, dst: Tensor, num_nodes: int, *, keep: Tensor | None = None) -> CSRGraph:
    """csr_arrays of edges at hand, on their device."""
    indptr, indices = csr_arrays(
        lambda: [(src.cpu().numpy(), dst.cpu().numpy())],
        num_nodes,
        keep=None if keep is None else keep.cpu().numpy(),
    )
    return CSRGraph(torch.from_numpy(indptr), torch.from_numpy(indices)).to(src.device)


# ------------------------------------------------------------------------ public


def sample_batch(
    graph: CSRGraph,
    seeds: Tensor,
    fanouts: Sequence[int],
    *,
    generator: torch.Generator,
    local: Tensor | None = None,
) -> SampledBatch:
    """Seeds plus `fanouts[l]` neighbours per node at hop l, and the sampled edges (by hop; on
    the CPU by the node they serve, in batch order).

    `local` is scratch space (num_nodes entries, all -1), left as it was found; a sampler keeps
    one so that a batch costs what it samples, not the size of the graph.
    """
    if local is None:
        local = torch.full((graph.num_nodes,), -1, dtype=torch.long, device=seeds.device)
    if not _on_numba(seeds):
        return _sample_batch_torch(graph, seeds, fanouts, generator=generator, local=local)
    _numba_threads()
    nodes, edge_index = _batch(
        _array(graph.indptr),
        graph.indices.contiguous().numpy(),  # int32 or int64: never copied to int64
        _array(seeds),
        np.asarray(fanouts, dtype=np.int64),
        _numba_key(generator),
        local.numpy(),
        SCAN_RATIO,
    )
    return SampledBatch(torch.from_numpy(nodes), seeds.numel(), torch.from_numpy(edge_index))
