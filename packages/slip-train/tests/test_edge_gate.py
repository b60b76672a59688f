"""`sampler.edge_gate = "similarity"`: the training graph kept to the edges whose products the
starting model finds more alike than random pairs, and the embeddings it judges by (a run on the
gated graph: test_train.py)."""

import pytest
import torch
import torch.nn.functional as F
from train_shards import write_colour_shards

from slip_train.config import ModelConfig
from slip_train.data import load_train_data
from slip_train.edge_gate import (
    GatedGraph,
    gate_edges,
    induced_sample,
    judge_graph,
    node_embeddings,
)
from slip_train.factory import build_model
from slip_train.sampler import CSRGraph


def csr(num_nodes: int, edges: list[tuple[int, int]]) -> CSRGraph:
    """Both directions of each edge, as the training graph stores them."""
    lists = [[] for _ in range(num_nodes)]
    for a, b in edges:
        lists[a].append(b)
        lists[b].append(a)
    indptr = torch.tensor([0] + [len(x) for x in lists]).cumsum(0)
    return CSRGraph(indptr, torch.tensor([v for x in lists for v in sorted(x)], dtype=torch.int32))


def edge_set(graph: CSRGraph) -> set[tuple[int, int]]:
    return {
        (u, int(v))
        for u in range(graph.num_nodes)
        for v in graph.indices[graph.indptr[u] : graph.indptr[u + 1]]
    }


def test_the_gate_keeps_the_edges_more_alike_than_random_pairs():
    """400 random unit vectors in 64 dimensions (a random pair's cosine is about 0 ± 0.125) and 40
    planted pairs of near copies: at the 0.95 quantile every planted edge is kept, about 5% of
    300 random edges are, and the kept graph is undirected and well formed."""
    generator = torch.Generator().manual_seed(0)
    n = 400
    embeddings = F.normalize(torch.randn(n, 64, generator=generator), dim=1)
    planted = [(2 * i, 2 * i + 1) for i in range(40)]
    for a, b in planted:
        embeddings[b] = F.normalize(
            embeddings[a] + 0.2 * torch.randn(64, generator=generator), dim=0
        )
    random_edges = set()
    while len(random_edges) < 300:
        a, b = (int(x) for x in torch.randint(80, n, (2,), generator=generator))
        if a != b:
            random_edges.add((min(a, b), max(a, b)))
    graph = csr(n, planted + sorted(random_edges))
    gated = gate_edges(graph, torch.arange(n), embeddings, quantile=0.95, seed=0)
    kept = edge_set(gated.graph)
    assert 0.15 < gated.threshold < 0.25  # the 95th percentile of 0 ± 0.125
    assert all((a, b) in kept and (b, a) in kept for a, b in planted)
    random_kept = sum((a, b) in kept for a, b in random_edges)
    assert 3 <= random_kept <= 30
    assert all((b, a) in kept for a, b in kept)
    assert gated.edges_kept == len(kept) == 2 * (40 + random_kept)
    assert gated.edges_before == 2 * (40 + 300)
    assert gated.graph.indptr[-1] == gated.graph.indices.numel() == gated.edges_kept
    assert gated.graph.indices.dtype == torch.int32
    similar = {
        (u, v) for u, v in edge_set(graph) if embeddings[u] @ embeddings[v] > gated.threshold
    }
    assert kept == similar
    again = gate_edges(graph, torch.arange(n), embeddings, quantile=0.95, seed=0)
    assert again.threshold == gated.threshold  # every rank and every resume keeps the same edges


def test_node_embeddings_join_both_modalities_and_judge_a_bad_image_by_its_text(tmp_path):
    """Each row is the two normalised embeddings joined at unit norm, whatever the chunk size; a
    node whose image does not decode keeps only its text half, and is counted."""
    shards = write_colour_shards(tmp_path / "shards", n=32, replace={5: b"not a jpeg"})
    data = load_train_data(shards, "train", tmp_path / "cache")
    built = build_model(ModelConfig(), with_graph=False)
    torch.manual_seed(0)
    kwargs = dict(
        transform=built.eval_transform, tokenizer=built.tokenizer, device=torch.device("cpu")
    )
    embeddings, unusable = node_embeddings(built.model.clip, data.cache, data.split_nodes, **kwargs)
    chunked, _ = node_embeddings(built.model.clip, data.cache, data.split_nodes, rows=7, **kwargs)
    assert unusable == 1
    assert built.model.clip.training  # left as it was found
    torch.testing.assert_close(chunked, embeddings, atol=1e-5, rtol=0)
    norms = embeddings.norm(dim=1)
    bad = (data.split_nodes == 5).nonzero().item()
    assert norms[bad] == pytest.approx(0.5**0.5, abs=1e-5)
    assert torch.all(embeddings[bad, : embeddings.shape[1] // 2] == 0)
    others = torch.cat([norms[:bad], norms[bad + 1 :]])
    torch.testing.assert_close(others, torch.ones_like(others))


def test_a_graph_counts_when_twice_as_many_edges_are_alike_as_random_pairs_give():
    graph = CSRGraph(torch.zeros(2, dtype=torch.long), torch.zeros(0, dtype=torch.int32))
    judged = {
        kept: judge_graph(
            GatedGraph(graph, threshold=0.5, edges_kept=kept, edges_before=100), quantile=0.95
        )
        for kept in (0, 9, 10, 60)
    }
    assert judged == {0: False, 9: False, 10: True, 60: True}
    empty = GatedGraph(graph, threshold=None, edges_kept=0, edges_before=0)
    assert not judge_graph(empty, quantile=0.95)


def test_the_graph_is_judged_between_a_uniform_sample_of_its_nodes():
    """`graph` mode's sample: the sampled nodes, sorted and distinct, and exactly the edges between
    two of them, in both directions; the whole graph when the sample would hold every node."""
    generator = torch.Generator().manual_seed(1)
    edges = set()
    while len(edges) < 3000:
        a, b = (int(x) for x in torch.randint(0, 1000, (2,), generator=generator))
        if a != b:
            edges.add((min(a, b), max(a, b)))
    graph = csr(1200, sorted(edges))  # ids 1000 to 1199 are not in the split
    nodes = torch.arange(1000)
    sampled, sample = induced_sample(graph, nodes, size=300, seed=0)
    assert sample.numel() == 300 == sample.unique().numel()
    assert torch.equal(sample, sample.sort().values) and int(sample.max()) < 1000
    chosen = set(sample.tolist())
    expected = {(u, v) for u, v in edge_set(graph) if u in chosen and v in chosen}
    assert edge_set(sampled) == expected and len(expected) > 100
    assert sampled.indptr[-1] == sampled.indices.numel() == len(expected)
    assert sampled.indices.dtype == graph.indices.dtype
    whole, every = induced_sample(graph, nodes, size=1000, seed=0)
    assert whole is graph and every is nodes
