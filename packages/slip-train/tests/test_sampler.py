import torch

from slip_train.sampler import NeighborSampler, build_csr, sample_batch, sample_neighbors


def random_graph(n=400, m=3000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (m,), generator=gen)
    dst = torch.randint(0, n, (m,), generator=gen)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    pairs = torch.unique(torch.stack([torch.minimum(src, dst), torch.maximum(src, dst)]), dim=1)
    return pairs[0], pairs[1], n


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
    train = build_csr(src, dst, n, keep)
    for v in range(n):
        row = set(train.indices[train.indptr[v] : train.indptr[v + 1]].tolist())
        assert row == ({u for u in table[v] if u % 3 != 0} if v % 3 else set())


def test_fanout_without_replacement_and_all_when_few():
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


def test_draws_are_uniform():
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


def test_batch_holds_seeds_first_and_edges_in_local_ids():
    src, dst, n = random_graph()
    table = neighbours(src, dst, n)
    graph = build_csr(src, dst, n)
    seeds = torch.tensor([7, 3, 99, 250])
    batch = sample_batch(graph, seeds, [4, 3], torch.Generator().manual_seed(2))
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


def test_sampler_is_deterministic_covers_every_seed_and_never_leaves_train():
    src, dst, n = random_graph()
    keep = torch.arange(n) % 4 != 0
    graph = build_csr(src, dst, n, keep)
    train = torch.nonzero(keep).squeeze(1)
    sampler = NeighborSampler(graph, train, [5, 5], batch_size=32, seed=3, drop_last=False)
    first = [b.nodes.tolist() for b in sampler]
    again = [b.nodes.tolist() for b in sampler]
    assert first == again
    seen = [v for batch in sampler for v in batch.nodes[: batch.num_seeds].tolist()]
    assert sorted(seen) == train.tolist()
    assert all(v % 4 != 0 for batch in first for v in batch)  # no validation or test node
    sampler.set_epoch(1)
    assert [b.nodes.tolist() for b in sampler] != first  # reshuffled per epoch
    assert len(NeighborSampler(graph, train, [5], batch_size=32)) == len(train) // 32


def test_distinct_by_bitmap_and_by_sort_agree(monkeypatch):
    from slip_train import sampler

    values = torch.tensor([9, 3, 3, 7, 0, 9, 1])
    by_bitmap = sampler._distinct(values, 10)
    monkeypatch.setattr(sampler, "BITMAP_RATIO", 0)
    by_sort = sampler._distinct(values, 10)
    assert by_bitmap.tolist() == by_sort.tolist() == [0, 1, 3, 7, 9]
