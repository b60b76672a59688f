import math
from collections import Counter

import numpy as np
import pytest
import torch

from slip_train import sampler
from slip_train.batches import BatchPlanner, induced_edges
from slip_train.sampler import build_csr, neighbour_sums


def random_graph(num_nodes=300, num_edges=1500, seed=0):
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(num_nodes, (num_edges,), generator=generator)
    dst = torch.randint(num_nodes, (num_edges,), generator=generator)
    keep = src < dst
    return src[keep], dst[keep]


# the graph on each device there is: on a GPU the planner samples with torch ops on a stream of
# its own and hands the batch back on the CPU
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def graph_and_train(request):
    src, dst = random_graph()
    train = torch.arange(300) % 5 != 0
    graph = build_csr(src, dst, 300, keep=train).to(request.param)
    return graph, torch.nonzero(train).squeeze(1).to(request.param), (src, dst)


@pytest.mark.parametrize("mode", ["slip", "clip"])
def test_every_batch_has_batch_size_distinct_train_nodes(graph_and_train, mode):
    graph, train, _ = graph_and_train
    planner = BatchPlanner(graph, train, batch_size=40, fanouts=[3, 2], mode=mode)
    assert planner.seeds_per_batch == (40 // (1 + 3 + 6) if mode == "slip" else 40)
    batches = list(planner.epoch(0))
    assert len(batches) == len(planner) == train.numel() // planner.seeds_per_batch
    allowed = set(train.tolist())
    for batch in batches:
        assert batch.nodes.device.type == batch.edge_index.device.type == "cpu"
        assert batch.nodes.numel() == 40 == batch.nodes.unique().numel()
        assert set(batch.nodes.tolist()) <= allowed  # no val or test node reaches training
    seeds = torch.cat([b.nodes[: planner.seeds_per_batch] for b in batches])
    assert seeds.unique().numel() == seeds.numel()  # every seed once per epoch
    if mode == "clip":
        assert all(b.edge_index.numel() == 0 for b in batches)


def test_induced_edges_are_every_train_edge_inside_the_batch(graph_and_train):
    graph, train, (src, dst) = graph_and_train
    planner = BatchPlanner(graph, train, batch_size=60, fanouts=[4], mode="slip")
    batch = next(planner.epoch(0))
    nodes = batch.nodes.tolist()
    found = {(nodes[a], nodes[b]) for a, b in batch.edge_index.T.tolist()}
    train_set, node_set = set(train.tolist()), set(nodes)
    expected = set()
    for a, b in zip(src.tolist(), dst.tolist(), strict=True):
        if a in node_set and b in node_set and a in train_set and b in train_set:
            expected |= {(a, b), (b, a)}
    assert found == expected and len(expected) > 0


def test_sampled_edges_are_a_subset_of_the_induced_ones(graph_and_train):
    graph, train, _ = graph_and_train
    sampled = BatchPlanner(
        graph, train, batch_size=60, fanouts=[4], mode="slip", edges="sampled", seed=1
    )
    induced = BatchPlanner(
        graph, train, batch_size=60, fanouts=[4], mode="slip", edges="induced", seed=1
    )
    a, b = next(sampled.epoch(2)), next(induced.epoch(2))
    assert torch.equal(a.nodes, b.nodes)
    assert set(map(tuple, a.edge_index.T.tolist())) < set(map(tuple, b.edge_index.T.tolist()))


def test_batches_are_deterministic_and_any_one_can_be_made_alone(graph_and_train):
    graph, train, _ = graph_and_train
    planner = BatchPlanner(graph, train, batch_size=32, fanouts=[3], mode="slip", seed=7)
    first = list(planner.epoch(1))
    again = list(
        BatchPlanner(graph, train, batch_size=32, fanouts=[3], mode="slip", seed=7).epoch(
            1, start=5
        )
    )
    assert len(again) == len(first) - 5
    for a, b in zip(first[5:], again, strict=True):
        assert torch.equal(a.nodes, b.nodes) and torch.equal(a.edge_index, b.edge_index)
        assert a.seed == b.seed
    other_epoch = next(planner.epoch(2))
    assert not torch.equal(other_epoch.nodes, first[0].nodes)


def test_induced_edges_leave_the_scratch_as_found(graph_and_train):
    graph, _, _ = graph_and_train
    device = graph.indptr.device
    local = torch.full((graph.num_nodes,), -1, dtype=torch.long, device=device)
    induced_edges(graph, torch.tensor([4, 9, 11], device=device), local)
    assert (local == -1).all()


def test_too_small_a_split_is_an_error(graph_and_train):
    graph, _, _ = graph_and_train
    with pytest.raises(ValueError, match="fewer than 2 nodes"):
        BatchPlanner(graph, torch.tensor([3]), batch_size=8, fanouts=[2], mode="slip")


@pytest.mark.parametrize("numba_on_cpu", [True, False])
def test_planning_on_one_thread_gives_the_same_batches_and_puts_torch_threads_back(
    graph_and_train, monkeypatch, numba_on_cpu
):
    """One thread is the default (docs/benchmarks.md: a parallel planner next to busy loader
    workers waits for cores); the batches must not depend on it, and the training process's
    thread count must survive it."""
    monkeypatch.setattr(sampler, "NUMBA_ON_CPU", numba_on_cpu)
    graph, train, _ = graph_and_train
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = BatchPlanner(graph, train, batch_size=60, fanouts=[4, 2], mode="slip", seed=3)
        every = BatchPlanner(
            graph, train, batch_size=60, fanouts=[4, 2], mode="slip", seed=3, threads=None
        )
        assert one.threads == 1
        for a, b in zip(one.epoch(1), every.epoch(1), strict=True):
            assert torch.equal(a.nodes, b.nodes) and torch.equal(a.edge_index, b.edge_index)
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def hubs_and_a_path(hubs=3, leaves=15, path=60):
    """Hubs whose leaves each have a partner of their own, then a path: every leaf samples its
    hub, so epoch seeds see a hub about `leaves` times as often as the rest, and weights that
    draw the leaves seldom and their partners often can even that out."""
    src, dst, node = [], [], 0
    for _ in range(hubs):
        hub, node = node, node + 1
        for _ in range(leaves):
            src += [hub, node]
            dst += [node, node + 1]
            node += 2
    src += list(range(node, node + path - 1))
    dst += list(range(node + 1, node + path))
    num_nodes = node + path
    graph = build_csr(torch.tensor(src), torch.tensor(dst), num_nodes)
    return graph, torch.arange(num_nodes)


def appearances_cv(planner, steps):
    counts = torch.zeros(planner.graph.num_nodes)
    batches = (batch for epoch in range(steps) for batch in planner.epoch(epoch))
    for _, batch in zip(range(steps), batches, strict=False):
        counts[batch.nodes] += 1
    return (counts.std() / counts.mean()).item()


def test_balanced_seeds_even_out_how_often_each_node_is_seen():
    graph, train = hubs_and_a_path()
    made = {
        seeds: BatchPlanner(graph, train, batch_size=16, fanouts=[3], mode="slip", seeds=seeds)
        for seeds in ("epoch", "balanced")
    }
    epoch, balanced = (appearances_cv(planner, 3000) for planner in made.values())
    assert balanced < epoch / 2, (balanced, epoch)


def test_neighbour_sums_are_the_scatter_of_each_value_to_its_neighbours():
    generator = torch.Generator().manual_seed(2)
    src, dst = torch.randint(0, 50, (2, 200), generator=generator)
    graph = build_csr(src, dst, 60)  # ten nodes without neighbours
    indptr, indices = graph.indptr.numpy(), graph.indices.numpy()
    owner = np.repeat(np.arange(60), np.diff(indptr))
    values = np.random.default_rng(2).random(60)
    sums = neighbour_sums(indptr, indices, values)
    np.testing.assert_allclose(sums, np.bincount(owner, values[indices], minlength=60))
    np.testing.assert_allclose(sums, np.bincount(indices, values[owner], minlength=60))
    assert (sums[50:] == 0).all() and (sums[:50] > 0).any()


def test_balanced_seeds_are_drawn_without_replacement_by_their_weights():
    graph, train = hubs_and_a_path()
    planner = BatchPlanner(graph, train, batch_size=8, fanouts=[3], mode="slip", seeds="balanced")
    assert planner.seeds_per_batch == 2
    weights = torch.diff(planner.seed_cdf, prepend=torch.zeros(1)).double()
    weights /= weights.sum()
    draws = 20_000
    seen = Counter()
    for index in range(draws):
        first, second = planner._balanced_seeds(0, index).tolist()
        assert first != second
        seen[first, second] += 1
    # sequential weighted draws without replacement: P(i then j) = w_i w_j / (1 - w_i)
    assert torch.equal(train, torch.arange(train.numel()))  # a node is its weight's position
    for i in range(train.numel()):
        for j in range(train.numel()):
            chance = 0.0 if i == j else (weights[i] * weights[j] / (1 - weights[i])).item()
            spread = math.sqrt(draws * chance * (1 - chance))
            assert abs(seen[i, j] - draws * chance) <= 5 * spread + 2, (i, j, seen[i, j], chance)


@pytest.mark.parametrize("seeds", ["epoch", "balanced"])
def test_expected_appearances_are_what_the_batches_show_and_their_inverse_evens_them_out(seeds):
    """Counted over 4,000 batches of 16 on a graph of hubs and leaves: each node's appearances
    track expected_appearances (the planner's anchor weights are one over them), and weighting
    every appearance by its anchor weight leaves the nodes about equally counted (balanced seeds
    already see them about equally often)."""
    graph, train = hubs_and_a_path()
    planner = BatchPlanner(
        graph,
        train,
        batch_size=16,
        fanouts=[3],
        mode="slip",
        seeds=seeds,
        anchor_weights="inverse_appearances",
    )
    steps = 4000
    counts, weighted = torch.zeros(graph.num_nodes), torch.zeros(graph.num_nodes)
    batches = (batch for epoch in range(steps) for batch in planner.epoch(epoch))
    for _, batch in zip(range(steps), batches, strict=False):
        assert batch.anchor_weights.shape == batch.nodes.shape
        assert torch.equal(batch.anchor_weights, planner.anchor_weights[batch.nodes])
        counts[batch.nodes] += 1
        weighted[batch.nodes] += batch.anchor_weights
    expected = steps / planner.anchor_weights[train]
    assert expected.sum().item() == pytest.approx(16 * steps, rel=0.02)  # full batches
    error = (counts[train] - expected).abs() / expected
    assert error.median() < 0.05 and error.max() < 0.25, (error.median(), error.max())
    spread = (counts.std() / counts.mean()).item()
    evened = (weighted.std() / weighted.mean()).item()
    assert evened < 0.1 and (seeds == "balanced" or evened < spread / 3), (evened, spread)


@pytest.mark.parametrize("mode", ["slip", "clip"])
def test_anchor_weights_are_only_made_when_asked_and_in_slip_mode(graph_and_train, mode):
    graph, train, _ = graph_and_train
    kwargs = dict(batch_size=40, fanouts=[3], mode=mode)
    asked = next(
        BatchPlanner(graph, train, anchor_weights="inverse_appearances", **kwargs).epoch(0)
    )
    plain = next(BatchPlanner(graph, train, **kwargs).epoch(0))
    assert plain.anchor_weights is None and torch.equal(asked.nodes, plain.nodes)
    assert (asked.anchor_weights is None) == (mode == "clip")
    if mode == "slip":  # positive everywhere, and lower for the nodes seen more often
        assert (asked.anchor_weights > 0).all()
        degree = (graph.indptr[1:] - graph.indptr[:-1]).cpu()[asked.nodes]
        assert asked.anchor_weights[degree.argmax()] < asked.anchor_weights[degree.argmin()]
    shared = asked.share(1, 2)
    assert shared.anchor_weights is asked.anchor_weights  # the whole batch's, as its edges


@pytest.mark.parametrize("mode", ["slip", "clip"])
def test_balanced_seeds_keep_batch_size_length_and_resume(graph_and_train, mode):
    graph, train, _ = graph_and_train
    kwargs = dict(batch_size=40, fanouts=[3, 2], mode=mode, seed=5)
    balanced = BatchPlanner(graph, train, seeds="balanced", **kwargs)
    epoch = BatchPlanner(graph, train, **kwargs)
    assert len(balanced) == len(epoch) and balanced.seeds_per_batch == epoch.seeds_per_batch
    first = list(balanced.epoch(1))
    assert all(b.nodes.numel() == 40 == b.nodes.unique().numel() for b in first)
    again = BatchPlanner(graph, train, seeds="balanced", **kwargs)
    next(again.epoch(3))  # other batches first change nothing
    for a, b in zip(first[4:], again.epoch(1, start=4), strict=True):
        assert torch.equal(a.nodes, b.nodes) and torch.equal(a.edge_index, b.edge_index)
    same = [torch.equal(a.nodes, b.nodes) for a, b in zip(first, epoch.epoch(1), strict=True)]
    assert all(same) == (mode == "clip")  # clip mode ignores the option, as it does fanouts
