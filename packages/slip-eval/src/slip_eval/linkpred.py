"""Link prediction of held-out co-purchases, as the multimodal graph benchmarks measure it.

MM-GRAPH (arXiv 2406.16321) ranks each true edge (u, v) against a fixed number of negatives
(u, w) and reports MRR and Hits@k, with OGB's evaluator: the rank of the true edge is 1 + the
negatives scoring higher + half of those scoring the same, the mean of the optimistic and the
pessimistic rank, so a collapsed model that scores every pair alike ranks each true edge in the
middle rather than first. Negatives are random (any node not linked to u) or hard (u's 2-hop
neighbourhood, products bought by the same people's other purchases), drawn with a seeded
generator so that two models are ranked against the same negatives. The true edges are a seeded
share of the edges between two products of a split, or of every edge with an end in it
(`touching_edges`); every other edge is observed (`hold_out`), never ranked.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

PREDICTORS = ("sage", "gcn")  # the trained link predictors, EdgeEncoder's layer kinds
EDGE_SETS = ("within", "touching")  # the candidate edges: both ends in the split, or one at least


class LinkPredError(ValueError):
    """A held-out edge set or negatives that cannot be drawn; one line."""


def link_metrics(
    positive: Tensor, negative: Tensor, ks: Sequence[int] = (1, 3, 10)
) -> dict[str, float]:
    """MRR and Hits@k of each true edge's score `positive` (P,) among its negatives' scores
    `negative` (P, K), OGB's rank with ties halved. Hits@k is nan when k exceeds K + 1."""
    if positive.ndim != 1 or negative.ndim != 2 or negative.shape[0] != positive.shape[0]:
        raise ValueError(
            f"positive {tuple(positive.shape)} and negative {tuple(negative.shape)}: "
            "expected (P,) and (P, K)"
        )
    if positive.numel() == 0:
        raise LinkPredError("no held-out edges to rank")
    above = (negative > positive[:, None]).sum(1).double()
    level = (negative == positive[:, None]).sum(1).double()
    ranks = 1 + above + level / 2
    result = {"mrr": (1 / ranks).mean().item()}
    for k in ks:
        hit = (ranks <= k).double().mean().item()
        result[f"hits@{k}"] = hit if k <= negative.shape[1] + 1 else float("nan")
    return result


def neighbour_sets(num_nodes: int, edge_index: Tensor) -> list[set[int]]:
    """Each node's neighbours, both directions, self-loops dropped."""
    sets: list[set[int]] = [set() for _ in range(num_nodes)]
    for a, b in edge_index.t().tolist():
        if a != b:
            sets[a].add(b)
            sets[b].add(a)
    return sets


def touching_edges(edges: Tensor, inside: Tensor) -> tuple[Tensor, Tensor]:
    """The edges with at least one end where the (N,) bool mask `inside` holds, each turned so
    that its source is such an end (the product whose co-purchases are ranked, and whose
    negatives are drawn), and the edges with neither end there."""
    src_in = inside[edges[0]]
    touch = src_in | inside[edges[1]]
    chosen = edges[:, touch]
    return torch.where(src_in[touch], chosen, chosen.flip(0)), edges[:, ~touch]


def hold_out(
    candidates: Tensor, background: Tensor, *, holdout: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """A seeded `holdout` share (at least one) of the `candidates` edges, the true edges to rank;
    and the observed graph: the other candidates, then `background` (known edges that are never
    ranked). The shards store each pair once, so no true edge is ever observed."""
    order = torch.randperm(candidates.shape[1], generator=generator)
    held = max(1, round(holdout * candidates.shape[1]))
    return candidates[:, order[:held]], torch.cat([candidates[:, order[held:]], background], 1)


def _draw(u: int, excluded: set[int], count: int, num_nodes: int, generator) -> list[int]:
    """`count` distinct nodes drawn uniformly outside `excluded` (which holds `u`)."""
    if num_nodes - len(excluded) < count:
        raise LinkPredError(
            f"node {u} has {num_nodes - len(excluded)} possible negatives, fewer than the "
            f"{count} asked per edge"
        )
    row: list[int] = []
    taken = set(excluded)
    while len(row) < count:
        for w in torch.randint(num_nodes, (2 * count,), generator=generator).tolist():
            if w not in taken and len(row) < count:
                row.append(w)
                taken.add(w)
    return row


def random_negatives(
    sources: Tensor,
    neighbours: Sequence[set[int]],
    *,
    per_positive: int,
    generator: torch.Generator,
) -> Tensor:
    """(P, K) distinct negatives for each source node, uniform over the nodes that are neither the
    source nor one of its neighbours in `neighbours` (the whole known graph, held-out edges
    included, so a true edge is never counted as a negative)."""
    rows = [
        _draw(u, neighbours[u] | {u}, per_positive, len(neighbours), generator)
        for u in sources.tolist()
    ]
    return torch.tensor(rows, dtype=torch.long).view(len(rows), per_positive)


def hard_negatives(
    sources: Tensor,
    neighbours: Sequence[set[int]],
    *,
    per_positive: int,
    generator: torch.Generator,
) -> tuple[Tensor, int]:
    """(P, K) negatives from each source's 2-hop neighbourhood (neighbours of its neighbours that
    are not its neighbours), drawn without replacement; where fewer than K exist the row is filled
    with random negatives. Returns the negatives and how many were such fillers."""
    rows, filled = [], 0
    for u in sources.tolist():
        two_hop = sorted({w for v in neighbours[u] for w in neighbours[v]} - neighbours[u] - {u})
        order = torch.randperm(len(two_hop), generator=generator)[:per_positive].tolist()
        row = [two_hop[i] for i in order]
        missing = per_positive - len(row)
        if missing:
            excluded = neighbours[u] | {u} | set(row)
            row += _draw(u, excluded, missing, len(neighbours), generator)
            filled += missing
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long).view(len(rows), per_positive), filled


def pair_scores(
    embeddings: Tensor, sources: Tensor, targets: Tensor, *, chunk: int = 1024
) -> Tensor:
    """The dot product of each (source, target) pair's embeddings (cosine for unit ones);
    `targets` is (P,) or (P, K). Every pair is one product summed over the last dimension, the
    same arithmetic for a true edge as for its negatives, so two equal embeddings tie exactly
    and OGB's rank puts a collapsed model in the middle (a matmul for the negatives rounds
    otherwise, and ties then break at random); `chunk` sources at a time bound the (chunk, K, d)
    products."""
    if targets.ndim == 1:
        return (embeddings[sources] * embeddings[targets]).sum(-1)
    return torch.cat(
        [
            (embeddings[s][:, None] * embeddings[t]).sum(-1)
            for s, t in zip(sources.split(chunk), targets.split(chunk), strict=True)
        ]
    )


class EdgeEncoder(torch.nn.Module):
    """Two PyG layers over frozen node features, ReLU and dropout between them; an edge's score
    is the dot product of its two ends' outputs (the link predictor of PyG's and MM-GRAPH's
    GNN baselines)."""

    def __init__(self, kind: str, dim_in: int, hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv, SAGEConv  # graph_head.py silenced PyG's import

        layer = dict(zip(PREDICTORS, (SAGEConv, GCNConv), strict=True))[kind]
        self.layers = torch.nn.ModuleList([layer(dim_in, hidden), layer(hidden, hidden)])
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = torch.relu(self.layers[0](x, edge_index))
        x = torch.nn.functional.dropout(x, self.dropout, self.training)
        return self.layers[1](x, edge_index)


def trained_node_embeddings(
    kind: str, features: Tensor, observed: Tensor, *, epochs: int = 100, seed: int = 0
) -> Tensor:
    """Node embeddings of an `EdgeEncoder` trained on the observed edges alone (message passing
    over them, both ways; each observed edge a positive against one uniformly random pair, binary
    cross-entropy, Adam at 0.01), so the held-out edges it is ranked on never trained it."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = EdgeEncoder(kind, features.shape[1])
        optimizer = torch.optim.Adam(encoder.parameters(), lr=0.01)
        message = torch.cat([observed, observed.flip(0)], 1)
        num_nodes = features.shape[0]
        for _ in range(epochs):
            encoder.train()
            optimizer.zero_grad()
            z = encoder(features, message)
            negative = torch.randint(num_nodes, observed.shape)
            logits = torch.cat([pair_scores(z, *observed), pair_scores(z, *negative)])
            truth = torch.cat([torch.ones(observed.shape[1]), torch.zeros(observed.shape[1])])
            torch.nn.functional.binary_cross_entropy_with_logits(logits, truth).backward()
            optimizer.step()
        encoder.eval()
        with torch.no_grad():
            return encoder(features, message)
