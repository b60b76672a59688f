import math
from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from clip_benchmark.metrics import zeroshot_classification as cb_cls
from clip_benchmark.metrics import zeroshot_retrieval as cb_ret
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from slip_eval.metrics import (
    WEIGHT_DECAYS,
    class_prototypes,
    classification_metrics,
    few_shot_evaluate,
    few_shot_indices,
    fit_linear_probe,
    retrieval_metrics,
    zero_shot_weights,
)

E = torch.eye(4)  # exact one-hot embeddings: every score below is exact, so ties are real ties
R = 2**-0.5


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def assert_same_metrics(got: dict[str, float], expected: dict[str, float]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, nan_ok=True), key


# ----------------------------------------------------------------------------- retrieval, by hand


def test_perfect_ranking():
    m = retrieval_metrics(E, E.clone(), ks=(1, 4))
    assert_same_metrics(
        m,
        {
            "image_retrieval_recall@1": 1.0,
            "image_retrieval_recall@4": 1.0,
            "image_retrieval_mrr": 1.0,
            "image_retrieval_median_rank": 1.0,
            "text_retrieval_recall@1": 1.0,
            "text_retrieval_recall@4": 1.0,
            "text_retrieval_mrr": 1.0,
            "text_retrieval_median_rank": 1.0,
        },
    )


def test_reversed_ranking_puts_every_pair_last():
    # each pair scores -1, every other pair 0
    m = retrieval_metrics(E, -E, ks=(1, 3, 4, 5))
    for side in ("image", "text"):
        assert m[f"{side}_retrieval_recall@1"] == 0.0
        assert m[f"{side}_retrieval_recall@3"] == 0.0
        assert m[f"{side}_retrieval_recall@4"] == 1.0
        assert math.isnan(m[f"{side}_retrieval_recall@5"])  # more than the 4 candidates
        assert m[f"{side}_retrieval_mrr"] == pytest.approx(0.25)
        assert m[f"{side}_retrieval_median_rank"] == 4.0


def test_hand_ranks_with_a_tie_going_to_the_lower_index():
    images = E[:3]
    # text 0: its image alone on top; text 1: tied with image 0, which goes first; text 2: last
    texts = torch.stack([E[0], R * (E[0] + E[1]), -E[2]])
    m = retrieval_metrics(images, texts, ks=(1, 2))
    # text → image ranks [1, 2, 3]; image → text: image 0 ranks [1 (text 0)], image 1 sees
    # text 1 (R) alone above 0 → 1, image 2 sees its text at -1 below two zeros → 3
    assert m["image_retrieval_recall@1"] == pytest.approx(1 / 3)
    assert m["image_retrieval_recall@2"] == pytest.approx(2 / 3)
    assert m["image_retrieval_mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert m["image_retrieval_median_rank"] == 2.0
    assert m["text_retrieval_recall@1"] == pytest.approx(2 / 3)
    assert m["text_retrieval_mrr"] == pytest.approx((1 + 1 + 1 / 3) / 3)
    assert m["text_retrieval_median_rank"] == 1.0


def test_several_texts_per_image_rank_the_best_one():
    images = E[:2]
    texts = torch.stack([-E[0], E[0], -R * (E[1] + E[2]), -E[1]])
    m = retrieval_metrics(images, texts, texts_image_index=[0, 0, 1, 1], ks=(1, 2, 5))
    # text queries: scores [-1, 0], [1, 0], [0, -R], [0, -1] → ranks 2, 1, 2, 2
    assert m["image_retrieval_recall@1"] == 0.25
    assert m["image_retrieval_recall@2"] == 1.0
    assert math.isnan(m["image_retrieval_recall@5"])
    assert m["image_retrieval_mrr"] == pytest.approx(0.625)
    assert m["image_retrieval_median_rank"] == 2.0
    # image 0: best own text scores 1 → rank 1; image 1: best own text -R, texts 0 and 1 at 0 → 3
    assert m["text_retrieval_recall@1"] == 0.5
    assert m["text_retrieval_recall@2"] == 0.5
    assert m["text_retrieval_mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["text_retrieval_median_rank"] == 2.0


def test_single_item():
    m = retrieval_metrics(E[:1], E[1:2], ks=(1, 5))
    assert m["image_retrieval_recall@1"] == 1.0
    assert math.isnan(m["image_retrieval_recall@5"])
    assert m["text_retrieval_mrr"] == 1.0
    assert m["text_retrieval_median_rank"] == 1.0


def test_median_rank_of_an_even_count_is_halfway():
    # pairs score -1 for items 0 and 1 (rank 4), +1 for items 2 and 3 (rank 1)
    texts = torch.stack([-E[0], -E[1], E[2], E[3]])
    m = retrieval_metrics(E, texts)
    assert m["image_retrieval_median_rank"] == 2.5
    assert m["text_retrieval_median_rank"] == 2.5


@pytest.mark.parametrize("texts_image_index", [None, [i // 3 for i in range(60)] + [19, 0]])
def test_chunk_size_does_not_change_results(texts_image_index):
    images = unit(20, 16, seed=1)
    n_texts = 20 if texts_image_index is None else len(texts_image_index)
    texts = unit(n_texts, 16, seed=2)
    ref = retrieval_metrics(images, texts, texts_image_index, chunk_size=1)
    assert 0 < ref["image_retrieval_mrr"] < 1
    for chunk_size in (7, 20, 1000):
        assert retrieval_metrics(images, texts, texts_image_index, chunk_size=chunk_size) == ref


def test_duplicate_embeddings_tie_as_topk_orders_them():
    # texts 0 and 1 are the same title; images 0 and 1 score them alike
    images = E[:3]
    texts = torch.stack([R * (E[0] + E[1]), R * (E[0] + E[1]), E[2]])
    m = retrieval_metrics(images, texts, ks=(1, 2))
    assert m["image_retrieval_recall@1"] == pytest.approx(2 / 3)  # text 1 loses its tie
    assert m["text_retrieval_recall@1"] == pytest.approx(2 / 3)  # image 1 loses its tie
    scores = texts @ images.T
    positives = torch.eye(3, dtype=torch.bool)
    theirs_images = (cb_ret.recall_at_k(scores, positives, k=1) > 0).float().mean().item()
    theirs_texts = (cb_ret.recall_at_k(scores.T, positives.T, k=1) > 0).float().mean().item()
    assert m["image_retrieval_recall@1"] == pytest.approx(theirs_images)
    assert m["text_retrieval_recall@1"] == pytest.approx(theirs_texts)
    assert m["image_retrieval_recall@2"] == 1.0


def test_a_collapsed_model_scores_as_chance_would_order_it():
    # every pair tied: the correct item of query i is preceded by the i lower-numbered ones
    same = F.normalize(torch.ones(5, 4), dim=-1)
    m = retrieval_metrics(same, same.clone())
    assert m["image_retrieval_recall@1"] == pytest.approx(1 / 5)
    assert m["text_retrieval_median_rank"] == 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_emb": E, "text_emb": E[:3]}, "pass texts_image_index"),
        ({"image_emb": E, "text_emb": E, "texts_image_index": [0, 1, 2, 4]}, "must lie in"),
        ({"image_emb": E, "text_emb": E, "texts_image_index": [0, 1, 2, 2]}, "at least one text"),
        ({"image_emb": E, "text_emb": E, "texts_image_index": [0, 1]}, "shape"),
        ({"image_emb": E, "text_emb": E[:, :3]}, "same width"),
        ({"image_emb": E, "text_emb": E.double()}, "same width and dtype"),
        ({"image_emb": E, "text_emb": E * math.nan}, "non-finite"),
        ({"image_emb": E, "text_emb": E, "chunk_size": 0}, "chunk_size"),
        ({"image_emb": E[:0], "text_emb": E[:0]}, "nothing to rank"),
    ],
)
def test_retrieval_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(**kwargs)


# -------------------------------------------------------------- retrieval, against CLIP_benchmark


class TableModel:
    """A stand-in CLIP: an image is passed as its embedding, a text as an id into a table."""

    def __init__(self, text_table: torch.Tensor):
        self.text_table = text_table

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_table[ids]


def id_tokenizer(texts: list[str]) -> torch.Tensor:
    return torch.tensor([int(t) for t in texts])


@pytest.mark.parametrize("captions_per_image", [None, (1, 3, 2, 5)])
def test_retrieval_matches_clip_benchmark_evaluate(captions_per_image):
    n_images, d = 64, 32
    images = unit(n_images, d, seed=3)
    if captions_per_image is None:
        index = list(range(n_images))
    else:
        index = [i for i in range(n_images) for _ in range(captions_per_image[i % 4])]
    owner = torch.tensor(index)
    # captions near their image, so recalls are neither 0 nor 1
    texts = F.normalize(images[owner] + 2.5 * unit(len(index), d, seed=4), dim=-1)
    captions = [[str(t) for t in range(len(index)) if index[t] == i] for i in range(n_images)]
    loader = [(images[s : s + 16], captions[s : s + 16]) for s in range(0, n_images, 16)]
    theirs = cb_ret.evaluate(
        TableModel(texts), loader, id_tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10]
    )
    ours = retrieval_metrics(
        images, texts, None if captions_per_image is None else index, chunk_size=5
    )
    assert 0 < ours["image_retrieval_recall@1"] < ours["image_retrieval_recall@10"] < 1
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


def test_retrieval_recall_matches_clip_benchmark_recall_at_k():
    images, texts = unit(300, 24, seed=5), unit(300, 24, seed=6)
    texts = F.normalize(images + 1.2 * texts, dim=-1)
    ours = retrieval_metrics(images, texts, ks=(1, 5, 10, 50), chunk_size=64)
    scores = texts @ images.T
    positives = torch.eye(300, dtype=torch.bool)
    for k in (1, 5, 10, 50):
        image_hit = cb_ret.recall_at_k(scores, positives, k) > 0
        text_hit = cb_ret.recall_at_k(scores.T, positives.T, k) > 0
        assert ours[f"image_retrieval_recall@{k}"] == image_hit.double().mean().item()
        assert ours[f"text_retrieval_recall@{k}"] == text_hit.double().mean().item()


# --------------------------------------------------------------------------------- classification


def test_classification_by_hand():
    logits = torch.tensor([[3.0, 1, 2], [0, 5, 5], [1, 1, 1], [2, 0, 1]])
    targets = torch.tensor([0, 2, 1, 1])
    # ranks 1, 2 (tied with class 1, which goes first), 2 (all tied: class 0 first), 3
    m = classification_metrics(logits, targets, ks=(1, 2, 3, 5))
    assert m["acc1"] == 0.25
    assert m["acc2"] == 0.75
    assert m["acc3"] == 1.0
    assert math.isnan(m["acc5"])  # three classes, as CLIP_benchmark's acc5 below five
    assert m["mean_per_class_recall"] == pytest.approx((1 + 0 + 0) / 3)
    assert m["acc1"] == (logits.argmax(1) == targets).float().mean().item()


@pytest.mark.parametrize(
    ("logits", "targets", "message"),
    [
        (torch.zeros(3, 2), torch.tensor([0, 1]), "shape"),
        (torch.zeros(2, 2), torch.tensor([0, 2]), "must lie in"),
        (torch.tensor([[0.0, math.inf]]), torch.tensor([0]), "non-finite"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), "no examples"),
    ],
)
def test_classification_rejects_bad_input(logits, targets, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(logits, targets)


def cb_accuracy(
    output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1,)
) -> list[float]:
    """clip_benchmark 1.6.2's `accuracy` with its last line fixed: it calls float() on a 1-element
    array, which numpy 2 rejects ("only 0-dimensional arrays can be converted")."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    n = len(target)
    return [
        float(correct[:k].reshape(-1).float().sum(0, keepdim=True).cpu().numpy()[0]) / n
        for k in topk
    ]


def test_classification_matches_clip_benchmark_accuracy_and_balanced_accuracy():
    g = torch.Generator().manual_seed(7)
    targets = torch.randint(0, 9, (500,), generator=g)  # class 9 never a target
    logits = torch.randn(500, 10, generator=g)
    logits[torch.arange(500), targets] += 1.0
    ours = classification_metrics(logits, targets)
    acc1, acc5 = cb_accuracy(logits, targets, topk=(1, 5))
    assert 0.2 < ours["acc1"] < ours["acc5"] < 1
    assert ours["acc1"] == pytest.approx(acc1)
    assert ours["acc5"] == pytest.approx(acc5)
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        balanced = balanced_accuracy_score(targets, logits.argmax(1))
    assert ours["mean_per_class_recall"] == pytest.approx(balanced)


class ClassLoader:
    """What CLIP_benchmark's classification evaluate reads of a DataLoader."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]], classes: list[str]):
        self.batches = batches
        self.dataset = SimpleNamespace(classes=classes)

    def __iter__(self):
        return iter(self.batches)


def test_zero_shot_weights_by_hand():
    w = zero_shot_weights([torch.tensor([[2.0, 0], [0, 3]]), torch.tensor([[0.0, -5]])])
    assert torch.allclose(w, torch.tensor([[R, 0], [R, -1]]))
    with pytest.raises(ValueError, match="no prompt embeddings"):
        zero_shot_weights([torch.zeros(0, 2)])


@pytest.mark.parametrize("n_classes", [10, 3])
def test_zero_shot_matches_clip_benchmark_evaluate(n_classes, monkeypatch):
    monkeypatch.setattr(cb_cls, "accuracy", cb_accuracy)
    n_templates, d, n = 4, 32, 200
    class_means = unit(n_classes, d, seed=8)
    # unnormalised prompt embeddings of different norms, near their class
    prompts = class_means[:, None] + 0.8 * unit(n_classes * n_templates, d, seed=9).view(
        n_classes, n_templates, d
    )
    prompts = prompts * torch.linspace(0.5, 3, n_templates)[None, :, None]
    g = torch.Generator().manual_seed(10)
    targets = torch.randint(0, n_classes, (n,), generator=g)
    images = F.normalize(class_means[targets] + 3 * unit(n, d, seed=11), dim=-1)

    def tokenizer(texts: list[str]) -> torch.Tensor:
        return torch.tensor([int(c) * n_templates + int(t) for c, t in map(str.split, texts)])

    classnames = [str(c) for c in range(n_classes)]
    templates = [f"{{c}} {t}" for t in range(n_templates)]
    model = TableModel(prompts.reshape(-1, d))
    batches = [(images[s : s + 64], targets[s : s + 64]) for s in range(0, n, 64)]
    loader = ClassLoader(batches, classnames)

    weights = zero_shot_weights(prompts)
    theirs_weights = cb_cls.zero_shot_classifier(
        model, tokenizer, classnames, templates, "cpu", False
    )
    assert torch.allclose(weights, theirs_weights, atol=1e-6)
    theirs = cb_cls.evaluate(model, loader, tokenizer, classnames, templates, "cpu", amp=False)
    ours = classification_metrics(100 * images @ weights, targets)
    assert 0 < ours["acc1"] < 1
    assert_same_metrics(ours, theirs)


# --------------------------------------------------------------------------------------- few-shot


def test_few_shot_indices_takes_k_per_class_and_reports_short_classes():
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 4 + [7] * 3)
    sample = few_shot_indices(labels, k=3, seed=0)
    assert sample.short_classes == {1: 2}
    assert len(set(sample.indices.tolist())) == len(sample.indices)
    assert torch.bincount(labels[sample.indices]).tolist() == [3, 2, 3, 0, 0, 0, 0, 3]
    # the first k of each class in the seeded permutation, as CLIP_benchmark picks them
    permutation = torch.randperm(14, generator=torch.Generator().manual_seed(0)).tolist()
    expected = [i for c in (0, 1, 2, 7) for i in [i for i in permutation if labels[i] == c][:3]]
    assert sorted(sample.indices.tolist()) == sorted(expected)
    assert torch.equal(few_shot_indices(labels, 3, seed=0).indices, sample.indices)
    draws = {tuple(sorted(few_shot_indices(labels, 3, seed=s).indices.tolist())) for s in range(5)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="at least 1"):
        few_shot_indices(labels, 0, seed=0)


def test_class_prototypes_by_hand():
    features = torch.tensor([[1.0, 0], [3, 0], [0, 2], [0, -1]])
    w = class_prototypes(features, torch.tensor([0, 0, 1, 2]), num_classes=3)
    assert torch.equal(w, torch.tensor([[1.0, 0, 0], [0, 1, -1]]))
    # a class without examples: a zero column (few_shot_evaluate never predicts it)
    w = class_prototypes(features, torch.tensor([0, 0, 2, 2]), num_classes=3)
    assert torch.equal(w[:, 1], torch.zeros(2))
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2, got 3"):
        class_prototypes(features, torch.tensor([0, 0, 2, 3]), num_classes=3)


def clusters(per_class: int, seed: int, n_classes: int = 4, d: int = 8, noise: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    features = 3 * torch.eye(n_classes, d)[labels] + noise * torch.randn(
        len(labels), d, generator=g
    )
    return features, labels


def test_linear_probe_reaches_the_logistic_regression_optimum():
    g = torch.Generator().manual_seed(12)
    x = F.normalize(torch.randn(90, 6, generator=g), dim=-1)
    y = torch.randint(0, 3, (90,), generator=g)
    weight_decay = 0.05
    probe = fit_linear_probe(
        x, y, val_features=x, val_labels=y, num_classes=3, weight_decays=[weight_decay]
    )
    # sklearn's objective C * sum(CE) + |W|^2 / 2 is ours times 1 / (C n) for C = 1 / (wd n)
    reference = LogisticRegression(C=1 / (weight_decay * len(x)), tol=1e-10, max_iter=10_000)
    reference.fit(x.numpy(), y.numpy())
    ours = probe.logits(x).softmax(1)
    assert torch.allclose(
        ours, torch.from_numpy(reference.predict_proba(x.numpy())).float(), atol=1e-4
    )
    assert probe.weight_decay == weight_decay


def test_linear_probe_picks_the_penalty_on_validation():
    x, y = clusters(10, seed=13)
    x_val, y_val = clusters(10, seed=14)
    # so strong a penalty that the probe predicts the majority class; the weak one fits
    x_biased, y_biased = torch.cat([x, x[:15]]), torch.cat([y, y[:15]])
    probe = fit_linear_probe(
        x_biased,
        y_biased,
        val_features=x_val,
        val_labels=y_val,
        num_classes=4,
        weight_decays=(1e4, 1e-3),
    )
    assert probe.weight_decay == 1e-3
    assert probe.val_acc1 == 1.0
    # equal validation scores: the earlier penalty wins, as in CLIP_benchmark
    assert (
        fit_linear_probe(
            x, y, val_features=x_val, val_labels=y_val, num_classes=4, weight_decays=(1e-2, 1e-3)
        ).weight_decay
        == 1e-2
    )
    with pytest.raises(ValueError, match="empty"):
        fit_linear_probe(
            x, y, val_features=x_val, val_labels=y_val, num_classes=4, weight_decays=()
        )


@pytest.mark.parametrize("method", ["prototype", "linear_probe"])
def test_few_shot_evaluate_over_seeds(method):
    train_x, train_y = clusters(12, seed=15)
    keep = (train_y != 3) | (torch.arange(len(train_y)) % 12 < 2)  # class 3: only 2 examples
    train_x, train_y = train_x[keep], train_y[keep]
    test_x, test_y = clusters(10, seed=16)
    result = few_shot_evaluate(
        train_x, train_y, test_features=test_x, test_labels=test_y, k=4, method=method
    )
    assert result.short_classes == {3: 2}
    assert len(result.per_seed) == 3
    assert result.metrics["acc1_mean"] == 1.0
    assert result.metrics["acc1_std"] == 0.0
    assert math.isnan(result.metrics["acc5_mean"])  # four classes
    assert result.metrics["mean_per_class_recall_mean"] == 1.0
    assert len(result.weight_decays) == (3 if method == "linear_probe" else 0)
    assert set(result.weight_decays) <= set(WEIGHT_DECAYS)


def test_few_shot_evaluate_mean_and_std_of_a_hard_task():
    train_x, train_y = clusters(30, seed=17, noise=2.0)
    test_x, test_y = clusters(50, seed=18, noise=2.0)
    evaluate = partial(
        few_shot_evaluate,
        train_x,
        train_y,
        test_features=test_x,
        test_labels=test_y,
        k=2,
        method="prototype",
    )
    result = evaluate(seeds=(0, 1, 2, 3))
    acc = [m["acc1"] for m in result.per_seed]
    assert min(acc) > 0.25 and max(acc) < 1 and len(set(acc)) > 1
    assert result.metrics["acc1_mean"] == pytest.approx(sum(acc) / 4)
    assert result.metrics["acc1_std"] == pytest.approx(torch.tensor(acc).std().item())
    one = evaluate(seeds=(0,))
    assert math.isnan(one.metrics["acc1_std"])


@pytest.mark.parametrize("method", ["prototype", "linear_probe"])
def test_a_class_without_training_examples_is_reported_and_never_predicted(method):
    train_x, train_y = clusters(12, seed=17)
    keep = train_y != 2  # class 2 has no training example at all
    test_x, test_y = clusters(10, seed=18)
    assert few_shot_indices(train_y[keep], 4, seed=0, num_classes=5).short_classes == {2: 0, 4: 0}
    result = few_shot_evaluate(
        train_x[keep],
        train_y[keep],
        test_features=test_x,
        test_labels=test_y,
        k=4,
        method=method,
        num_classes=4,
    )
    assert result.short_classes == {2: 0}
    # the other three classes are right, class 2's ten test images all wrong
    assert result.metrics["acc1_mean"] == 0.75
    assert result.metrics["mean_per_class_recall_mean"] == 0.75
