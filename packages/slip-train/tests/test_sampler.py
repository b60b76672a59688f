import subprocess
import sys

import numba
import pytest
import torch

from slip_train import sampler
from slip_train.sampler import build_csr, sample_batch


@pytest.fixture(params=["numba", "torch"])
def path(request, monkeypatch):
    """Run a test on the CPU's numba kernels and on the torch path (the GPU's, forced here)."""
    monkeypatch.setattr(sampler, "NUMBA_ON_CPU", request.param == "numba")
    return request.param


def random_graph(n=400, m=3000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (m,), generator=gen)
    dst = torch.randint(0, n, (m,), generator=gen)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    pairs = torch.unique(torch.stack([torch.minimum(src, dst), torch.maximum(src, dst)]), dim=1)
    return pairs[0], pairs[1], n


def sample_neighbors(graph, frontier, fanout, generator):
    """One hop of sample_batch from distinct `frontier` nodes: (neighbour, node) pairs, global."""
    batch = sample_batch(graph, frontier, [fanout], generator=generator)
    return batch.nodes[batch.edge_index[0]], batch.nodes[batch.edge_index[1]]


def neighbours(src, dst, n):
    table = [set() for _ in range(n)]
    for a, b in zip(src.tolist(), dst.tolist(), strict=True):
        table[a].add(b)
        table[b].add(a)
    return table


def test_csr_holds_both_directions_and_only_kept_nodes():
    src, dst, n = random_graph()
    table = neighbours(src, dst, n)
    graph = build_csr(src, dst, n)
    for v in range(n):
        row = graph.indices[graph.indptr[v] : graph.indptr[v + 1]].tolist()
        assert sorted(row) == sorted(table[v])
    keep = torch.arange(n) % 3 != 0  # say every third node is validation or test
    train = build_csr(src, dst, n, keep=keep)
    for v in range(n):
        row = set(train.indices[train.indptr[v] : train.indptr[v + 1]].tolist())
        assert row == ({u for u in table[v] if u % 3 != 0} if v % 3 else set())


def test_fanout_without_replacement_and_all_when_few(path):
    src, dst, n = random_graph()
    table = neighbours(src, dst, n)
    graph = build_csr(src, dst, n)
    frontier = torch.arange(n)
    got_src, got_dst = sample_neighbors(graph, frontier, 5, torch.Generator().manual_seed(1))
    drawn = [[] for _ in range(n)]
    for a, b in zip(got_src.tolist(), got_dst.tolist(), strict=True):
        drawn[b].append(a)
    for v in range(n):
        assert len(drawn[v]) == min(5, len(table[v]))
        assert len(set(drawn[v])) == len(drawn[v])  # without replacement
        assert set(drawn[v]) <= table[v]  # in-edges: src is a neighbour of dst
        if len(table[v]) <= 5:
            assert set(drawn[v]) == table[v]


def test_draws_are_uniform(path):
    # a star: node 0 has 20 neighbours; draw 5 of them many times
    src = torch.zeros(20, dtype=torch.long)
    dst = torch.arange(1, 21)
    graph = build_csr(src, dst, 21)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(21)
    trials = 4000
    for _ in range(trials):
        got, _ = sample_neighbors(graph, torch.tensor([0]), 5, gen)
        counts[got] += 1
    expected = trials * 5 / 20
    assert counts[0] == 0
    assert ((counts[1:] - expected).abs() < 0.1 * expected).all(), counts


def test_batch_holds_seeds_first_and_edges_in_local_ids(path):
    src, dst, n = random_graph()
    table = neighbours(src, dst, n)
    graph = build_csr(src, dst, n)
    seeds = torch.tensor([7, 3, 99, 250])
    batch = sample_batch(graph, seeds, [4, 3], generator=torch.Generator().manual_seed(2))
    assert batch.nodes[:4].tolist() == seeds.tolist() and batch.num_seeds == 4
    assert len(set(batch.nodes.tolist())) == batch.nodes.numel()
    glob_src = batch.nodes[batch.edge_index[0]].tolist()
    glob_dst = batch.nodes[batch.edge_index[1]].tolist()
    for a, b in zip(glob_src, glob_dst, strict=True):
        assert a in table[b]
    # hop 1 serves the seeds, with at most 4 each
    per_seed = torch.bincount(batch.edge_index[1], minlength=batch.nodes.numel())[:4]
    assert all(per_seed[i] == min(4, len(table[s])) for i, s in enumerate(seeds.tolist()))
    # every non-seed node was reached through a sampled edge
    assert set(batch.edge_index[0].tolist()) >= set(range(4, batch.nodes.numel()))


def test_batch_is_deterministic_and_never_leaves_train(path):
    src, dst, n = random_graph()
    keep = torch.arange(n) % 4 != 0
    graph = build_csr(src, dst, n, keep=keep)
    seeds = torch.nonzero(keep).squeeze(1)[:32]
    first = sample_batch(graph, seeds, [5, 5], generator=torch.Generator().manual_seed(3))
    again = sample_batch(graph, seeds, [5, 5], generator=torch.Generator().manual_seed(3))
    assert first.nodes.tolist() == again.nodes.tolist()
    assert torch.equal(first.edge_index, again.edge_index)
    assert first.nodes.numel() > seeds.numel()
    assert all(v % 4 != 0 for v in first.nodes.tolist())  # no validation or test node


def test_distinct_by_bitmap_and_by_sort_agree(monkeypatch):
    values = torch.tensor([9, 3, 3, 7, 0, 9, 1])
    by_bitmap = sampler._distinct(values, 10)
    monkeypatch.setattr(sampler, "BITMAP_RATIO", 0)
    by_sort = sampler._distinct(values, 10)
    assert by_bitmap.tolist() == by_sort.tolist() == [0, 1, 3, 7, 9]


def test_batch_edges_and_new_nodes_in_id_order(path):
    src, dst, n = random_graph()
    graph = build_csr(src, dst, n)
    seeds = torch.tensor([250, 7, 3])
    batch = sample_batch(graph, seeds, [3, 2], generator=torch.Generator().manual_seed(4))
    # hop 1 added the nodes drawn for the seeds, in id order; hop 2 those drawn for hop 1's
    hop1 = batch.edge_index[1] < 3
    first = sorted(set(batch.edge_index[0][hop1].tolist()) - {0, 1, 2})
    assert first == list(range(3, 3 + len(first)))
    added = batch.nodes[3 : 3 + len(first)]
    assert added.tolist() == sorted(added.tolist())
    rest = batch.nodes[3 + len(first) :]
    assert rest.tolist() == sorted(rest.tolist())
    served = batch.edge_index[1][~hop1]  # hop 2 serves only the nodes hop 1 added
    assert ((served >= 3) & (served < 3 + len(first))).all()


def test_paths_agree_when_every_neighbour_is_taken(monkeypatch):
    src, dst, n = random_graph()
    graph = build_csr(src, dst, n)
    seeds = torch.tensor([7, 3, 99, 250])
    batches = []
    for numba_on in (True, False):
        monkeypatch.setattr(sampler, "NUMBA_ON_CPU", numba_on)
        batch = sample_batch(graph, seeds, [1000, 1000], generator=torch.Generator().manual_seed(0))
        edges = set(zip(*batch.nodes[batch.edge_index].tolist(), strict=True))
        batches.append((batch.nodes.tolist(), edges))
    assert batches[0] == batches[1]


def test_scratch_is_left_as_found_and_isolated_seeds_stop_early(path):
    src, dst, n = random_graph()
    graph = build_csr(src, dst, n + 2)  # nodes n and n + 1 have no neighbour
    local = torch.full((n + 2,), -1, dtype=torch.long)
    batch = sample_batch(
        graph, torch.tensor([5, 9]), [4, 4], generator=torch.Generator(), local=local
    )
    assert (local == -1).all()
    lonely = sample_batch(
        graph, torch.tensor([n + 1, n]), [4, 4], generator=torch.Generator(), local=local
    )
    assert lonely.nodes.tolist() == [n + 1, n] and lonely.edge_index.shape == (2, 0)
    assert batch.edge_index.dtype == lonely.edge_index.dtype == torch.long


def test_numba_batch_depends_on_the_generator_only():
    src, dst, n = random_graph(n=3000, m=60000)
    graph = build_csr(src, dst, n)
    seeds = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:200]

    def batch(seed: int) -> tuple[list, list]:
        got = sample_batch(graph, seeds, [5, 5], generator=torch.Generator().manual_seed(seed))
        return got.nodes.tolist(), got.edge_index.tolist()

    assert batch(1) == batch(1)
    assert batch(1) != batch(2)
    threads = torch.get_num_threads()
    try:
        by_threads = []
        for count in (1, 2):
            torch.set_num_threads(count)  # numba's thread count follows torch's
            by_threads.append(batch(1))
            assert numba.get_num_threads() == min(count, numba.config.NUMBA_NUM_THREADS)
    finally:
        torch.set_num_threads(threads)
    assert by_threads[0] == by_threads[1]


def test_new_nodes_by_scan_and_by_sort_agree(monkeypatch):
    src, dst, n = random_graph()
    graph = build_csr(src, dst, n)
    seeds = torch.tensor([7, 3, 99, 250])
    got = []
    for ratio in (10**9, 0):  # scan every node's mark; sort the marked ones
        monkeypatch.setattr(sampler, "SCAN_RATIO", ratio)
        batch = sample_batch(graph, seeds, [4, 3], generator=torch.Generator().manual_seed(2))
        got.append((batch.nodes.tolist(), batch.edge_index.tolist()))
    assert got[0] == got[1]


def test_kernels_compile_without_a_cache_directory(monkeypatch):
    monkeypatch.setattr(numba.core.caching.CacheImpl, "_locator_classes", [])
    with pytest.warns(UserWarning, match="compiled per process"):
        add_one = sampler._jit(parallel=False)(lambda x: x + 1)
    assert add_one(2) == 3


def test_numba_keeps_torch_thread_count():
    # a fresh process: numba starts its OpenMP pool on the first call, which resets OpenMP's count
    code = (
        "import numba, torch\n"
        "from slip_train.sampler import build_csr, sample_batch\n"
        "torch.set_num_threads(1)\n"
        "graph = build_csr(torch.tensor([0, 1]), torch.tensor([1, 2]), 3)\n"
        "sample_batch(graph, torch.tensor([0]), [2], generator=torch.Generator())\n"
        "print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "1"]
