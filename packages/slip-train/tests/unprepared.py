"""The SLIP step as it ran before the loader prepared each batch's graph (issue 18), for the tests
to hold the prepared path to: the graph heads made the raw edges undirected and GATConv added its
own self loops (removing any first), and the losses found the positives with torch.unique. Each of
those is a data-dependent op, a wait for the GPU in every step."""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor, nn

from slip_train import loss as loss_module
from slip_train.graph_head import GraphHead

with warnings.catch_warnings():  # as graph_head.py: PyG scripts a helper at import
    warnings.filterwarnings("ignore", r".*torch\.jit\.script.*deprecated", FutureWarning)
    from torch_geometric.nn import GATConv
    from torch_geometric.utils import add_self_loops, remove_self_loops, to_undirected


def positive_pairs(
    num_nodes: int, edge_index: Tensor, neighbour_mass: float | None
) -> tuple[Tensor, Tensor, Tensor]:
    """loss.positive_pairs on raw edges (a pair once or twice, self loops), as it was."""
    src, dst = edge_index
    apart = (src != dst).repeat(2)
    ends = torch.cat([edge_index, edge_index.flip(0)], dim=1)[:, apart]
    keys = torch.unique(ends[0] * num_nodes + ends[1])
    anchor, other = keys // num_nodes, keys % num_nodes
    degree = torch.bincount(anchor, minlength=num_nodes).double()
    if neighbour_mass is None:
        own_target = 1 / (degree + 1)
        neighbour_target = own_target[anchor]
    else:
        own_target = 1 - neighbour_mass * (degree > 0).double()
        neighbour_target = neighbour_mass / degree[anchor]
    own = torch.arange(num_nodes, device=edge_index.device)
    return (
        torch.cat([own, anchor]),
        torch.cat([own, other]),
        torch.cat([own_target, neighbour_target]),
    )


def structural_loss(
    image: Tensor,
    text: Tensor,
    edge_index: Tensor,
    *,
    temperature: float,
    neighbour_mass: float | None = None,
) -> Tensor:
    """loss.structural_loss on raw edges, as it was."""
    n = image.shape[0]
    anchor, other, target = positive_pairs(n, edge_index, neighbour_mass)
    target = target.to(image.dtype)
    logits = image @ text.T / temperature
    image_anchors = logits[anchor, other] - logits.logsumexp(dim=1)[anchor]
    text_anchors = logits[other, anchor] - logits.logsumexp(dim=0)[anchor]
    return -(target * (image_anchors + text_anchors)).sum() / (2 * n)


def positive_mask(num_nodes: int, edge_index: Tensor) -> Tensor:
    """loss.positive_mask on raw edges, both directions set, as it was."""
    mask = torch.eye(num_nodes, dtype=torch.bool, device=edge_index.device)
    mask[edge_index[0], edge_index[1]] = True
    mask[edge_index[1], edge_index[0]] = True
    return mask


@contextmanager
def unprepared(model, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`model`'s GATConvs adding their own self loops and slip_train.loss's structural loss
    finding its positives itself, as they did: `model` then takes `to_undirected(raw)` (the
    loops a head appends are removed and added again by GATConv, in PyG's order) and the losses
    the raw edges."""
    convs = [conv for head in model.graph_heads() for conv in head.convs]
    with monkeypatch.context() as patched:
        patched.setattr(loss_module, "structural_loss", structural_loss)
        patched.setattr(loss_module, "positive_mask", positive_mask)
        for conv in convs:
            conv.add_self_loops = True
        try:
            yield
        finally:
            for conv in convs:
                conv.add_self_loops = False


def undirected(edge_index: Tensor, num_nodes: int) -> Tensor:
    """What SlipModel.embed handed the heads, as it was."""
    return to_undirected(edge_index, num_nodes=num_nodes)


def gat_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    """The edges GATConv's `add_self_loops` made of what SlipModel.embed handed it."""
    edges, _ = remove_self_loops(undirected(edge_index, num_nodes))
    return add_self_loops(edges, num_nodes=num_nodes)[0]


def graph_head(dim: int, *, layers: int, heads: int, fusion: str, dropout: float) -> GraphHead:
    """A head as graph_head.py built it: GATConv with its default `add_self_loops`."""
    head = GraphHead(dim, layers=layers, heads=heads, fusion=fusion, dropout=dropout)
    head.convs = nn.ModuleList(
        GATConv(dim, dim // heads, heads=heads, dropout=dropout) for _ in range(layers)
    )
    return head
