"""Node classification's parts on tiny graphs with known answers: macro-F1 by hand and as
sklearn's, the graph carrying the labels where the features do not, early stopping, seeds."""

import math

import pytest
import torch
from sklearn.metrics import f1_score

from slip_eval.data import DataError
from slip_eval.nodeclass import (
    MODELS,
    SPARSE_KINDS,
    NodeClassifier,
    Run,
    adjacency,
    classify_nodes,
    fit,
    macro_f1,
    require_edges,
    summarise,
    train_sets,
)


def cliques(*, n_cliques: int, size: int, classes: int, dim: int, signal: float, seed: int = 0):
    """Cliques of `size` products whose label is the clique's (drawn at random), split by position
    in the clique: half train, a quarter val, a quarter test, so every clique has labelled nodes.
    Features are noise plus `signal` times a one-hot of the label."""
    from torch_geometric.data import Data  # after slip_eval, which silences PyG's import warning

    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n_cliques,), generator=generator)
    y = labels.repeat_interleave(size)
    n = n_cliques * size
    x = torch.randn(n, dim, generator=generator) + signal * torch.eye(dim)[y]
    members = torch.arange(n).view(n_cliques, size)
    pairs = [(a, b) for a in range(size) for b in range(size) if a != b]
    src = torch.cat([members[:, a] for a, _ in pairs])
    dst = torch.cat([members[:, b] for _, b in pairs])
    position = torch.arange(n) % size
    return Data(
        x=x,
        edge_index=torch.stack([src, dst]),
        y=y,
        train_mask=position < size // 2,
        val_mask=(position >= size // 2) & (position < 3 * size // 4),
        test_mask=position >= 3 * size // 4,
    )


def everything(data):
    return data.train_mask.nonzero().flatten()


def test_macro_f1_by_hand_and_as_sklearn():
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 2, 2])
    # class 0: tp 2, fp 0, fn 1 -> 4/5; class 1: tp 1, fp 1, fn 1 -> 1/2; class 2: tp 1, fp 1 -> 2/3
    assert macro_f1(predicted, target) == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert macro_f1(target, target) == 1.0
    # a class only predicted counts with F1 0, as sklearn's union of labels
    assert macro_f1(torch.tensor([3, 0]), torch.tensor([0, 0])) == pytest.approx((2 / 3 + 0) / 2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        target = torch.randint(6, (50,), generator=generator)
        predicted = torch.randint(6, (50,), generator=generator)
        expected = f1_score(target.numpy(), predicted.numpy(), average="macro")
        assert macro_f1(predicted, target) == pytest.approx(expected, abs=1e-12)


def test_macro_f1_refuses_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="expected two"):
        macro_f1(torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="expected two"):
        macro_f1(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))


def test_the_graph_carries_the_answer_when_the_features_are_noise():
    data = cliques(n_cliques=24, size=8, classes=4, dim=16, signal=0.0)
    scores = {
        kind: fit(kind, data, everything(data), num_classes=4, seed=0, max_epochs=100).acc
        for kind in MODELS
    }
    assert scores["gcn"] >= 0.9 and scores["sage"] >= 0.9 and scores["gat"] >= 0.9, scores
    assert scores["mlp"] <= 0.5, scores  # chance is about 1/4


def test_the_mlp_is_accurate_on_features_that_separate_the_classes():
    data = cliques(n_cliques=24, size=8, classes=4, dim=16, signal=6.0)
    data.edge_index = torch.empty(2, 0, dtype=torch.long)  # the MLP needs no graph
    run = fit("mlp", data, everything(data), num_classes=4, seed=0, max_epochs=100)
    assert run.acc >= 0.95 and run.macro_f1 >= 0.95


@pytest.mark.parametrize("kind", SPARSE_KINDS)
def test_the_sparse_adjacency_gives_the_edge_index_outputs(kind):
    # each node's neighbours in both directions, as the shards' graph: the adjacency stands for
    # the edge list only because the graph is its own transpose and holds no self-loop
    data = cliques(n_cliques=6, size=5, classes=3, dim=8, signal=1.0)
    torch.manual_seed(0)
    model = NodeClassifier(kind, 8, 3).eval()
    with torch.no_grad():
        edges = model(data.x, data.edge_index)
        sparse = model(data.x, adjacency(data.edge_index, data.num_nodes))
    torch.testing.assert_close(sparse, edges)


def test_early_stopping_stops_patience_epochs_after_the_best():
    data = cliques(n_cliques=24, size=8, classes=4, dim=16, signal=4.0)
    run = fit("mlp", data, everything(data), num_classes=4, seed=0, max_epochs=200, patience=5)
    assert run.epochs == run.best_epoch + 5 < 200
    capped = fit("mlp", data, everything(data), num_classes=4, seed=0, max_epochs=3, patience=50)
    assert capped.epochs == 3 and capped.best_epoch <= 3


def test_seeds_reproduce_exactly_and_differ_between_them():
    data = cliques(n_cliques=12, size=8, classes=3, dim=8, signal=0.5)
    options = dict(num_classes=3, models=("gcn", "mlp"), shots=(2,), seeds=2, max_epochs=20)
    first = classify_nodes(data, **options)
    assert classify_nodes(data, **options) == first
    one = fit("gcn", data, everything(data), num_classes=3, seed=0, max_epochs=20)
    two = fit("gcn", data, everything(data), num_classes=3, seed=1, max_epochs=20)
    assert one == fit("gcn", data, everything(data), num_classes=3, seed=0, max_epochs=20)
    assert one != two


def test_results_name_each_model_and_regime():
    data = cliques(n_cliques=12, size=8, classes=3, dim=8, signal=2.0)
    metrics, fewshot, short = classify_nodes(
        data, num_classes=3, models=("sage", "mlp"), shots=(1, 4), seeds=2, max_epochs=10
    )
    assert set(metrics) == {
        f"{kind}_{name}{std}"
        for kind in ("sage", "mlp")
        for name in ("acc", "macro_f1")
        for std in ("", "_std")
    }
    assert set(fewshot) == {"sage", "mlp"} and set(fewshot["mlp"]) == {"1", "4"}
    assert set(fewshot["mlp"]["1"]) == {"acc_mean", "acc_std", "macro_f1_mean", "macro_f1_std"}
    assert short == {}
    one_seed, _, _ = classify_nodes(data, num_classes=3, models=("mlp",), seeds=1, max_epochs=5)
    assert math.isnan(one_seed["mlp_acc_std"]) and 0 <= one_seed["mlp_acc"] <= 1


def test_few_shot_draws_k_train_nodes_per_class_and_takes_all_of_a_short_class():
    data = cliques(n_cliques=12, size=8, classes=3, dim=8, signal=0.0)
    data.y[data.train_mask & (data.y == 2)] = 1  # class 2: no train node left
    data.y[torch.nonzero(data.train_mask).flatten()[:2]] = 2  # now two
    sets, short = train_sets(data, k=3, seeds=2, num_classes=4)
    assert short == {2: 2, 3: 0}
    for chosen in sets:
        assert bool(data.train_mask[chosen].all()) and chosen.unique().numel() == chosen.numel()
        assert torch.bincount(data.y[chosen], minlength=4).tolist() == [3, 3, 2, 0]
    assert not torch.equal(sets[0], sets[1])
    every, none = train_sets(data, k=None, seeds=2, num_classes=4)
    assert none == {} and all(torch.equal(s, everything(data)) for s in every)


def test_summary_is_the_mean_and_sample_std():
    runs = [Run(0.5, 0.4, 1, 1), Run(0.7, 0.6, 1, 1)]
    summary = summarise(runs)
    assert summary["acc_mean"] == pytest.approx(0.6)
    assert summary["acc_std"] == pytest.approx(math.sqrt(0.02))
    assert summary["macro_f1_mean"] == pytest.approx(0.5)


def test_a_split_without_edges_is_refused(tmp_path):
    data = cliques(n_cliques=6, size=8, classes=3, dim=8, signal=0.0)
    require_edges(data, tmp_path)
    test = data.test_mask.nonzero().flatten()
    keep = ~(torch.isin(data.edge_index[0], test) | torch.isin(data.edge_index[1], test))
    data.edge_index = data.edge_index[:, keep]
    with pytest.raises(DataError, match="no product of the 'test' split has a co-purchase edge"):
        require_edges(data, tmp_path)
