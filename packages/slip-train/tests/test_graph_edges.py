"""A batch's graph as the loader prepares it (graph_head.neighbour_edges) is what the graph heads
made of the raw edges on the device before (tests/unprepared.py): the same edges, in the same
order; a head built before (GATConv adding its own self loops) loads into one built now and
refines as it did."""

import pytest
import torch
import unprepared
from torch import nn

from slip_train.graph_head import GraphHead, neighbour_edges


def raw_graphs() -> list[tuple[int, torch.Tensor]]:
    """(nodes, edges) as a planner may hand them over: pairs once and both ways, repeated pairs,
    self loops, nodes without an edge, no edge at all."""
    generator = torch.Generator().manual_seed(0)
    return [
        (6, torch.tensor([[0, 0, 0, 3, 4, 2], [1, 2, 4, 4, 0, 2]])),
        (5, torch.empty(2, 0, dtype=torch.long)),
        (12, torch.randint(10, (2, 30), generator=generator)),
        (40, torch.randint(40, (2, 200), generator=generator)),
    ]


@pytest.mark.parametrize(("num_nodes", "raw"), raw_graphs())
def test_the_prepared_edges_are_what_gatconv_made_of_the_raw_ones(num_nodes, raw):
    """A head appends each node's self loop to the prepared edges: the edge_index GATConv's
    `add_self_loops` made from the undirected raw edges, in the same order."""
    before = unprepared.gat_edges(raw, num_nodes)
    prepared = neighbour_edges(raw)
    now = torch.cat([prepared, torch.arange(num_nodes).repeat(2, 1)], dim=1)
    assert torch.equal(now, before)
    pairs = raw.T.tolist()
    for node in range(num_nodes):  # each node hears every neighbour either way, once
        heard = prepared[0][prepared[1] == node].tolist()
        expected = {a for a, b in pairs if b == node} | {b for a, b in pairs if a == node}
        assert sorted(heard) == sorted(expected - {node})


@pytest.mark.parametrize("fusion", ["gated_residual", "replace"])
def test_a_head_built_before_loads_and_refines_as_it_did(fusion):
    """Its state dict (GATConv's parameters do not depend on `add_self_loops`) loads strictly,
    and it gives the same embeddings in eval and, from the same seed, in train mode (dropout)."""
    torch.manual_seed(0)
    before = unprepared.graph_head(16, layers=2, heads=4, fusion=fusion, dropout=0.1)
    for param in before.parameters():
        nn.init.normal_(param)  # gates away from 0, where a head returns its input
    now = GraphHead(16, layers=2, heads=4, fusion=fusion, dropout=0.1)
    now.load_state_dict(before.state_dict())
    x = torch.randn(12, 16)
    raw = torch.tensor([[0, 1, 1, 3, 5, 5, 7, 9], [1, 2, 2, 4, 5, 8, 9, 7]])
    for train in (False, True):
        before.train(train), now.train(train)
        torch.manual_seed(1)
        # the head appends loops to what it gets; GATConv removed and added them again
        made_before = before(x, unprepared.undirected(raw, 12))
        torch.manual_seed(1)
        torch.testing.assert_close(now(x, neighbour_edges(raw)), made_before, rtol=0, atol=0)
