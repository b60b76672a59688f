import networkx as nx
import numpy as np

from slip_data import inspect


def reference_sizes(n, src, dst):
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(src.tolist(), dst.tolist(), strict=True))
    return sorted((len(c) for c in nx.connected_components(graph)), reverse=True)


def test_label_propagation_matches_networkx(monkeypatch):
    rng = np.random.default_rng(0)
    n = 3000
    src = rng.integers(0, n, 2500)
    dst = rng.integers(0, n, 2500)
    keep = src != dst
    src, dst = np.minimum(src, dst)[keep], np.maximum(src, dst)[keep]
    expected = reference_sizes(n, src, dst)
    assert inspect.component_sizes(n, src, dst) == expected  # networkx path
    monkeypatch.setattr(inspect, "NETWORKX_MAX_EDGES", 0)
    assert inspect.component_sizes(n, src, dst) == expected  # numpy path
    assert len(expected) > 100 and expected[0] > 10  # a mix of sizes, isolated nodes included


def test_long_path_and_no_edges_converge(monkeypatch):
    monkeypatch.setattr(inspect, "NETWORKX_MAX_EDGES", 0)
    n = 5000
    order = np.random.default_rng(1).permutation(n)
    assert inspect.component_sizes(n, order[:-1], order[1:]) == [n]
    assert inspect.component_sizes(3, np.array([], int), np.array([], int)) == [1, 1, 1]
