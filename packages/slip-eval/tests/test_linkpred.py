import hashlib
import json
import math
from itertools import combinations

import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F
from cli_runner import slip_eval
from tiny_shards import jpeg, write_shard_folder
from torch import nn
from torch_geometric.metrics import LinkPredHitRatio, LinkPredMRR
from torchvision.transforms.functional import pil_to_tensor

from slip_eval import tasks
from slip_eval.data import SPLITS, DataError, embed_split, open_split
from slip_eval.graph_head import GraphHead
from slip_eval.linkpred import (
    LinkPredError,
    hard_negatives,
    hold_out,
    link_metrics,
    neighbour_sets,
    pair_scores,
    random_negatives,
    touching_edges,
    trained_node_embeddings,
)
from slip_eval.models import LoadedModel


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


def test_a_collapsed_embedding_scores_its_true_edges_and_negatives_as_exact_ties():
    # every node the same vector, whose dot product with itself rounds differently in a matmul
    # than in a plain sum: the true edge must tie its negatives to the last bit, or OGB's rank
    # turns the collapse into MRR 1 or 1/(K + 1) at random
    embeddings = torch.full((50, 256), 0.1) + torch.linspace(0, 1e-3, 256)
    sources, targets = torch.arange(40), torch.arange(1, 41)
    negative = torch.randint(50, (40, 20), generator=torch.Generator().manual_seed(0))
    positive_scores = pair_scores(embeddings, sources, targets)
    negative_scores = pair_scores(embeddings, sources, negative, chunk=7)
    assert torch.equal(negative_scores, positive_scores[:, None].expand(-1, 20))
    assert link_metrics(positive_scores, negative_scores)["mrr"] == pytest.approx(1 / 11)


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


def test_touching_edges_start_in_the_split_and_the_others_are_kept_apart():
    edges = torch.tensor([[0, 1, 2, 3], [1, 2, 4, 4]])  # 0-1, 1-2, 2-4, 3-4
    inside = torch.tensor([False, False, True, False, True])  # the split: nodes 2 and 4
    candidates, others = touching_edges(edges, inside)
    assert candidates.tolist() == [[2, 2, 4], [1, 4, 3]]  # 1-2 and 3-4 turned to start inside
    assert others.tolist() == [[0], [1]]


def test_hold_out_observes_every_other_edge_and_holds_at_least_one():
    candidates, background = (
        torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),
        torch.tensor([[0], [9]]),
    )
    held, observed = hold_out(
        candidates, background, holdout=0.4, generator=torch.Generator().manual_seed(0)
    )
    pairs = {tuple(e) for e in held.t().tolist()}
    assert len(pairs) == 2 and pairs <= {tuple(e) for e in candidates.t().tolist()}
    assert observed[:, -1].tolist() == [0, 9] and observed.shape[1] == 4  # 3 candidates, 1 other
    assert not pairs & {tuple(e) for e in observed.t().tolist()}
    one, _ = hold_out(candidates, background, holdout=0.01, generator=torch.Generator())
    assert one.shape == (2, 1)


# Tiny shards of four cliques of six products: product i is in clique i // 6 and SPLITS[i % 3],
# each clique a colour and its title "clique c", every pair of a clique an edge. Two products of a
# clique are in test: one edge within the test split per clique, nine touching it.
N, CLIQUE = 24, 6
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
EDGES = [(a, b) for a, b in combinations(range(N), 2) if a // CLIQUE == b // CLIQUE]
TOUCHING = {frozenset(e) for e in EDGES if "test" in (SPLITS[e[0] % 3], SPLITS[e[1] % 3])}


def write_clique_shards(folder, *, edges=EDGES, imageless=()):
    """The shards; the products of `imageless` have no image (slip-eval embeds none of them)."""
    images = [None if SPLITS[i % 3] in imageless else jpeg(COLOURS[i // CLIQUE]) for i in range(N)]
    table = {
        "node_id": pa.array(range(N), pa.int64()),
        "label_id": pa.array([i // CLIQUE for i in range(N)], pa.int32()),
        "title": [f"clique {i // CLIQUE}" for i in range(N)],
        "image": pa.array(images, pa.binary()),
        "image_sha256": [data and hashlib.sha256(data).hexdigest() for data in images],
        "split": [SPLITS[i % 3] for i in range(N)],
    }
    manifest = {"format": "slip-shards", "format_version": 1, "counts": {"nodes": N},
                "label_names": ["c0", "c1", "c2", "c3"]}  # fmt: skip
    return write_shard_folder(folder, [table], edges, manifest)


class CliqueClip(nn.Module):
    """The image's mean colour (and a zero, to the text's width) and the title's one-hot clique:
    embeddings that copy the graph."""

    def encode_image(self, pixels):
        return F.pad(pixels.float().mean(dim=(2, 3)), (0, 1))

    def encode_text(self, tokens):
        return tokens.float()


def clique_model(*, heads: bool = True) -> LoadedModel:
    """The model, with fresh graph heads (which return their input) or none."""
    graph = tuple(GraphHead(4, layers=1, heads=1, fusion="gated_residual") for _ in range(2))
    return LoadedModel(
        clip=CliqueClip(),
        transform=pil_to_tensor,
        tokenizer=lambda titles: F.one_hot(torch.tensor([int(t[-1]) for t in titles]), 4),
        name="clique",
        pretrained="clique",
        fingerprint="c" * 64,
        graph_heads=graph if heads else None,
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_clique_shards(tmp_path_factory.mktemp("linkpred") / "shards")


def recorded(monkeypatch) -> dict[str, list]:
    """What linkpred ranks and observes: the first (sources, targets) and (sources, negatives)
    it scores, and every edge set it refines over or trains a predictor on."""
    seen = {"positive": [], "negative": [], "observed": []}
    scores, refine, train = tasks.pair_scores, tasks.refine, tasks.trained_node_embeddings

    def scoring(embeddings, sources, targets):
        seen["positive" if targets.ndim == 1 else "negative"].append((sources, targets))
        return scores(embeddings, sources, targets)

    def refining(head, raw, edge_index):
        seen["observed"].append(edge_index)
        return refine(head, raw, edge_index)

    def training(kind, features, observed, **options):
        seen["observed"].append(observed)
        return train(kind, features, observed, **options)

    monkeypatch.setattr(tasks, "pair_scores", scoring)
    monkeypatch.setattr(tasks, "refine", refining)
    monkeypatch.setattr(tasks, "trained_node_embeddings", training)
    return seen


def test_touching_ranks_cross_split_edges_never_observed_nor_negatives(shards, monkeypatch):
    seen = recorded(monkeypatch)
    options = dict(edges="touching", per_positive=10, structure=True, predictors=("sage",))
    result = tasks.linkpred(clique_model(), shards, "test", cache_dir=None, quiet=True, **options)
    node = [i for name in SPLITS for i in range(N) if SPLITS[i % 3] == name]  # index: node_id
    sources, targets = seen["positive"][0]
    held = [(node[u], node[v]) for u, v in zip(sources.tolist(), targets.tolist(), strict=True)]
    assert len(held) == round(len(TOUCHING) / 2) == result["held_out_edges"]
    assert {frozenset(e) for e in held} <= TOUCHING
    assert all(SPLITS[u % 3] == "test" for u, _ in held)  # ranked from the end in the split
    assert any(SPLITS[v % 3] != "test" for _, v in held)  # edges to other splits among them
    everything_else = {frozenset(e) for e in EDGES} - {frozenset(e) for e in held}
    assert len(seen["observed"]) == 4  # two graph heads, a predictor on plain and refined
    for observed in seen["observed"]:
        assert {frozenset((node[a], node[b])) for a, b in observed.t().tolist()} == everything_else
    assert result["observed_edges"] == len(everything_else) == len(EDGES) - len(held)
    _, negatives = seen["negative"][0]
    for u, row in zip(sources.tolist(), negatives.tolist(), strict=True):
        assert all(node[w] // CLIQUE != node[u] // CLIQUE for w in row)  # no neighbour, not u
    assert result["edges"] == "touching" and result["nodes"] == N and result["n"] == N // 3
    for metrics in (result["metrics"], result["graph_metrics"]):  # embeddings that copy the graph
        assert all(metrics[f"{name}_mrr"] == 1 for name in ("image", "text", "fused", "sage"))


def test_within_ranks_the_same_edges_against_the_same_negatives_as_before(shards, monkeypatch):
    """`within` is the protocol before `--edges`: the split's own edges and products, the draw
    and the observed graph (in its order) of the same seed."""
    seen = recorded(monkeypatch)
    model = clique_model()
    result = tasks.linkpred(
        model, shards, "test", cache_dir=None, per_positive=6, seed=2, structure=True, quiet=True
    )
    split = open_split(shards, "test")
    edges = split.edge_index
    generator = torch.Generator().manual_seed(2)
    order = torch.randperm(edges.shape[1], generator=generator)
    held = max(1, round(0.5 * edges.shape[1]))
    positive, observed = edges[:, order[:held]], edges[:, order[held:]]
    negative = random_negatives(
        positive[0], neighbour_sets(split.node_ids.size, edges), per_positive=6, generator=generator
    )
    assert all(torch.equal(a, b) for a, b in zip(seen["positive"][0], positive, strict=True))
    assert torch.equal(seen["negative"][0][1], negative)
    assert all(torch.equal(edge_index, observed) for edge_index in seen["observed"])
    image = F.normalize(embed_split(model, split, cache_dir=None, quiet=True)["image"], dim=-1)
    expected = link_metrics(
        pair_scores(image, *positive), pair_scores(image, positive[0], negative)
    )
    got = {name: result["metrics"][f"image_{name}"] for name in expected}
    assert json.dumps(got) == json.dumps(expected)  # hits@10 is nan with 6 negatives
    assert result["edges"] == "within" and result["nodes"] == N // 3
    assert result["held_out_edges"] == held == 2 and result["observed_edges"] == 2


def test_touching_leaves_out_a_split_without_products_and_their_edges(tmp_path):
    shards = write_clique_shards(tmp_path / "shards", imageless=("val",))
    result = tasks.linkpred(
        clique_model(),
        shards,
        "test",
        cache_dir=None,
        edges="touching",
        per_positive=10,
        quiet=True,
    )
    # a clique: two train and two test products, six edges of which five touch test
    assert result["nodes"] == 16 and result["held_out_edges"] == 10
    assert result["observed_edges"] == 10 + 4
    assert result["metrics"]["fused_mrr"] == 1


LONELY = [(0, 1), (0, 3), (1, 4)]  # edges between train and val products only
TOUCHING_ONLY = [(2, 3), (2, 4), (5, 6)]  # each edge with an end in test


@pytest.mark.parametrize(
    ("edges", "graph", "heads", "holdout", "message"),
    [
        ("across", EDGES, True, 0.5, "--edges: 'across' is not one of within, touching"),
        ("touching", EDGES, False, 0.5, "--structure: the model has no graph head"),
        ("touching", LONELY, True, 0.5, "no co-purchase edge touches the 'test' split"),
        ("within", LONELY, True, 0.5, "the 'test' split has no co-purchase edge"),
        ("touching", TOUCHING_ONLY, True, 1, "--structure: every edge of the 'test' split is held"),
    ],
)
def test_bad_input_is_one_line(tmp_path, edges, graph, heads, holdout, message):
    shards = write_clique_shards(tmp_path / "shards", edges=graph)
    with pytest.raises(DataError) as error:
        tasks.linkpred(
            clique_model(heads=heads),
            shards,
            "test",
            cache_dir=None,
            edges=edges,
            holdout=holdout,
            structure=True,
        )
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_cli_passes_edges_on_and_its_errors_are_one_line(shards, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("slip_eval.models.load_model", lambda *args, **kwargs: clique_model())
    out = tmp_path / "touching.json"
    base = ["linkpred", "--cache-dir", tmp_path / "cache", "--per-positive", "10", "--quiet"]
    assert slip_eval(*base, "--shards", shards, "--edges", "touching", "--out", out) == 0
    assert json.loads(out.read_text())["edges"] == "touching"
    lonely = write_clique_shards(tmp_path / "lonely", edges=LONELY)
    for args, message in [
        (["--edges", "touching"], f"{lonely}: no co-purchase edge touches the 'test' split"),
        (["--edges", "across"], "'across' is not one of 'within', 'touching'"),
    ]:
        capsys.readouterr()
        assert slip_eval(*base, "--shards", lonely, *args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
