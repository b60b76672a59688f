import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.utils import homophily as pyg_homophily

from slip_data import inspect
from slip_data.homophily import label_homophily


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


def random_graph(rng, n, m, num_classes, reach=0.8):
    """Labels 0..C-1 and distinct undirected edges stored once (src < dst), no self-loops; the
    last nodes get no edge, so some nodes are isolated."""
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    ends = rng.integers(0, int(n * reach), (m, 2))
    ends = np.unique(np.sort(ends[ends[:, 0] != ends[:, 1]], axis=1), axis=0)
    return labels, ends[:, 0], ends[:, 1]


def both_directions(src, dst):
    return torch.from_numpy(np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]))


@pytest.mark.parametrize(("num_classes", "seed"), [(2, 0), (3, 1), (5, 2), (12, 3), (40, 4)])
def test_edge_and_class_insensitive_homophily_equal_pyg(num_classes, seed):
    rng = np.random.default_rng(seed)
    labels, src, dst = random_graph(rng, n=600, m=1500, num_classes=num_classes)
    ours = label_homophily(labels, src, dst)
    y = torch.from_numpy(labels.astype(np.int64))
    edge_index = both_directions(src, dst)  # PyG reads an undirected graph as both directions
    assert ours["edge"] == pytest.approx(pyg_homophily(edge_index, y, method="edge"), abs=1e-6)
    expected = pyg_homophily(edge_index, y, method="edge_insensitive")
    assert ours["class_insensitive"] == pytest.approx(expected, abs=1e-6)
    assert 0 <= ours["class_insensitive"] <= 1


def test_pyg_on_edges_listed_once_counts_only_the_target_end():
    """Why PyG gets both directions: edge homophily is the same either way, but the
    class-insensitive measure groups edges by their target's class, so one direction per edge
    measures something else."""
    labels, src, dst = random_graph(np.random.default_rng(5), n=400, m=1200, num_classes=4)
    y = torch.from_numpy(labels.astype(np.int64))
    once = torch.from_numpy(np.stack([src, dst]))
    ours = label_homophily(labels, src, dst)
    assert pyg_homophily(once, y, method="edge") == pytest.approx(ours["edge"], abs=1e-6)
    assert pyg_homophily(once, y, method="edge_insensitive") != pytest.approx(
        ours["class_insensitive"], abs=1e-3
    )


def test_adjusted_homophily_on_graphs_with_known_answers():
    # two triangles, one per label: every edge joins equal labels
    same = label_homophily(
        np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 3, 3, 4]), np.array([1, 2, 2, 4, 5, 5])
    )
    assert same["edge"] == 1 and same["chance"] == 0.5 and same["adjusted"] == 1
    # two-class bipartite (a star and a path across): each edge has one end per class, so both
    # classes hold half the degree, chance is 1/2 and adjusted homophily -1
    labels = np.array([0, 1, 1, 1, 0, 1])
    cross = label_homophily(labels, np.array([0, 0, 0, 3, 4]), np.array([1, 2, 3, 4, 5]))
    assert cross["edge"] == 0 and cross["chance"] == 0.5 and cross["adjusted"] == -1
    # DGL's documented example: a triangle of class 0 and one edge 3-4 across (y = 0,0,0,0,1):
    # h_edge = 3/4, degree sums 7 and 1 of 8, chance = 50/64, adjusted = (3/4 - 50/64) / (14/64)
    mixed = label_homophily(
        np.array([0, 0, 0, 0, 1]), np.array([0, 1, 0, 3]), np.array([1, 2, 2, 4])
    )
    assert mixed["edge"] == 0.75 and mixed["chance"] == 50 / 64
    assert mixed["adjusted"] == pytest.approx(-1 / 7)
    assert mixed["node_share_chance"] == pytest.approx(17 / 25)


def test_chance_is_edge_homophily_of_the_configuration_model():
    """Edges rewired at random with every degree kept (the stubs shuffled and paired) share the
    label Σ_k p̄_k² of the time, up to O(1/|E|); degree-weighted, not node shares."""
    rng = np.random.default_rng(6)
    n = 800
    labels = rng.integers(0, 3, n).astype(np.int32)
    weight = np.where(labels == 0, 6.0, 1.0)  # class 0 nodes gather most of the degree
    ends = rng.choice(n, size=(3000, 2), p=weight / weight.sum())
    ends = np.unique(np.sort(ends[ends[:, 0] != ends[:, 1]], axis=1), axis=0)
    src, dst = ends[:, 0], ends[:, 1]
    stats = label_homophily(labels, src, dst)
    stubs = np.tile(labels[np.concatenate([src, dst])], (400, 1))
    paired = rng.permuted(stubs, axis=1).reshape(400, -1, 2)
    shares = (paired[..., 0] == paired[..., 1]).mean(axis=1)
    tolerance = 4 * shares.std() / np.sqrt(shares.size) + 1 / (2 * src.size - 1)
    assert abs(shares.mean() - stats["chance"]) < tolerance
    assert stats["chance"] - stats["node_share_chance"] > 0.1


def test_undefined_measures_are_none():
    empty = label_homophily(np.array([0, 1, 1]), np.array([], int), np.array([], int))
    assert empty == {
        "edge": None,
        "class_insensitive": None,
        "adjusted": None,
        "chance": None,
        "node_share_chance": pytest.approx(5 / 9),
    }
    one_class = label_homophily(np.array([0, 0, 0]), np.array([0, 1]), np.array([1, 2]))
    assert one_class["edge"] == 1 and one_class["chance"] == 1
    assert one_class["class_insensitive"] is None and one_class["adjusted"] is None
