import math

import pytest
import torch
from torch_geometric.metrics import LinkPredHitRatio, LinkPredMRR

from slip_eval.linkpred import (
    LinkPredError,
    hard_negatives,
    link_metrics,
    neighbour_sets,
    pair_scores,
    random_negatives,
    trained_node_embeddings,
)


def test_link_metrics_by_hand_with_a_tie_halved():
    positive = torch.tensor([0.9, 0.5, 0.2])
    negative = torch.tensor([[0.1, 0.2], [0.5, 0.7], [0.3, 0.4]])
    # ranks: 1; 1 + one above + half of one tie = 2.5; 1 + two above = 3
    got = link_metrics(positive, negative)
    assert got["mrr"] == pytest.approx((1 + 1 / 2.5 + 1 / 3) / 3)
    assert got["hits@1"] == pytest.approx(1 / 3) and got["hits@3"] == 1.0
    assert math.isnan(got["hits@10"])  # 3 candidates per edge


def test_a_model_scoring_every_pair_alike_ranks_each_edge_in_the_middle():
    got = link_metrics(torch.zeros(4), torch.zeros(4, 9), ks=(1, 10))
    assert got["mrr"] == pytest.approx(1 / 5.5) and got["hits@1"] == 0.0 and got["hits@10"] == 1


def test_link_metrics_equal_pygs_without_ties():
    generator = torch.Generator().manual_seed(0)
    positive, negative = (
        torch.rand(50, generator=generator),
        torch.rand(50, 20, generator=generator),
    )
    ours = link_metrics(positive, negative, ks=(1, 3, 10))
    ranked = torch.cat([positive[:, None], negative], 1).argsort(1, descending=True)
    truth = (torch.arange(50), torch.zeros(50, dtype=torch.long))  # candidate 0 is the true edge
    mrr = LinkPredMRR(k=21)
    mrr.update(ranked, truth)
    assert ours["mrr"] == pytest.approx(mrr.compute().item(), rel=1e-6)
    for k in (1, 3, 10):
        hits = LinkPredHitRatio(k=k)
        hits.update(ranked[:, :k], truth)
        assert ours[f"hits@{k}"] == pytest.approx(hits.compute().item(), rel=1e-6)


def test_random_negatives_avoid_the_source_and_its_neighbours_and_repeat_by_seed():
    edges = torch.tensor([[0, 0, 1, 4], [1, 2, 3, 5]])
    neighbours = neighbour_sets(8, edges)
    sources = torch.tensor([0, 0, 3, 5])
    drawn = random_negatives(
        sources, neighbours, per_positive=4, generator=torch.Generator().manual_seed(1)
    )
    again = random_negatives(
        sources, neighbours, per_positive=4, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(drawn, again) and drawn.shape == (4, 4)
    for u, row in zip(sources.tolist(), drawn.tolist(), strict=True):
        assert len(set(row)) == 4 and u not in row and not set(row) & neighbours[u]
    with pytest.raises(LinkPredError, match="node 0 has 5 possible negatives, fewer than the 6"):
        random_negatives(torch.tensor([0]), neighbours, per_positive=6, generator=torch.Generator())


def test_hard_negatives_come_from_two_hops_then_random_fillers_counted():
    path = torch.tensor([[0, 1, 2], [1, 2, 3]])  # 0 - 1 - 2 - 3
    neighbours = neighbour_sets(4, path)
    drawn, filled = hard_negatives(
        torch.tensor([0]), neighbours, per_positive=2, generator=torch.Generator().manual_seed(0)
    )
    assert drawn.tolist() == [[2, 3]] and filled == 1  # 2 is 0's only 2-hop node; 3 the filler


def test_embeddings_that_copy_the_graph_score_near_one():
    """Four cliques of five; each node's embedding is its clique: every held-out edge within a
    clique outranks random negatives, which lie in other cliques."""
    clique = torch.arange(20) // 5
    pairs = [(a, b) for a in range(20) for b in range(a + 1, 20) if clique[a] == clique[b]]
    edges = torch.tensor(pairs).t()
    neighbours = neighbour_sets(20, edges)
    embeddings = torch.nn.functional.one_hot(clique).float() + 0.01 * torch.randn(20, 4)
    unit = torch.nn.functional.normalize(embeddings, dim=1)
    sources, targets = edges
    negatives = random_negatives(
        sources, neighbours, per_positive=10, generator=torch.Generator().manual_seed(0)
    )
    got = link_metrics(pair_scores(unit, sources, targets), pair_scores(unit, sources, negatives))
    assert got["mrr"] > 0.99 and got["hits@1"] > 0.99


def test_a_trained_predictor_learns_the_graph_that_noise_features_lack():
    """Four cliques of eight, features pure noise: cosine of the features ranks held-out edges
    near chance, a GraphSAGE or GCN link predictor trained on the other edges ranks them first;
    the same seed trains the same predictor."""
    generator = torch.Generator().manual_seed(0)
    clique = torch.arange(32) // 8
    pairs = [(a, b) for a in range(32) for b in range(a + 1, 32) if clique[a] == clique[b]]
    edges = torch.tensor(pairs).t()[:, torch.randperm(len(pairs), generator=generator)]
    held, observed = edges[:, :24], edges[:, 24:]
    features = torch.randn(32, 16, generator=generator)
    negatives = random_negatives(
        held[0], neighbour_sets(32, edges), per_positive=10, generator=generator
    )

    def mrr(embeddings):
        scores = pair_scores(embeddings, *held), pair_scores(embeddings, held[0], negatives)
        return link_metrics(*scores)["mrr"]

    unit = torch.nn.functional.normalize(features, dim=1)
    assert mrr(unit) < 0.5
    for kind in ("sage", "gcn"):
        trained = trained_node_embeddings(kind, features, observed, seed=1)
        assert mrr(trained) > 0.9, kind
        assert torch.equal(trained, trained_node_embeddings(kind, features, observed, seed=1))
