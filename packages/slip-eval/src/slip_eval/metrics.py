"""Retrieval and classification metrics, as pure functions on embeddings and logits.

Definitions and names follow LAION's CLIP_benchmark (`clip_benchmark.metrics`), so numbers can be
compared with published tables; the tests check parity against its own functions.

Ranks and ties: the rank of the correct item is 1 + the number of candidates scoring higher + the
number scoring the same with a lower index: ties go to the lower index, as `argmax` decides and as
`torch.topk` orders them on the CPU, which CLIP_benchmark uses (its order among equal scores is not
promised, so the tests check this on ties too). Ties come from duplicate embeddings (identical
titles, the same photo twice) and from a collapsed model; counting a tie as a hit would give a
collapsed model, which scores every pair alike, a perfect recall, and a tie as a miss would punish
a duplicate twice. With no tie at the correct item's score every rule agrees.
Recall@k, top-k accuracy and the like are nan when k exceeds the number of candidates, as
CLIP_benchmark reports acc5 for fewer than five classes.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

# float32 counts of 0/1 values are exact up to 2**24; past that the counts are summed in float64
_EXACT_FLOAT32_COUNT = 2**24

# L2 penalties tried by the linear probe, as CLIP_benchmark's first sweep (logspace(-6, 2))
WEIGHT_DECAYS: tuple[float, ...] = tuple(10.0**e for e in range(-6, 3))


# ------------------------------------------------------------------------------------ retrieval


def retrieval_metrics(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    texts_image_index: torch.Tensor | Sequence[int] | None = None,
    *,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Image-text retrieval metrics in both directions, without the full similarity matrix.

    `image_emb` (n_images, d) and `text_emb` (n_texts, d) are L2-normalised. `texts_image_index`
    gives each text's image (CLIP_benchmark's form, several captions per image); None means text i
    belongs to image i. As in CLIP_benchmark, `image_retrieval_*` ranks images for each text query
    and `text_retrieval_*` ranks texts for each image query, where a hit is any of the image's
    texts. Keys: `{image,text}_retrieval_recall@k`, `_mrr` and `_median_rank` (the median of the
    1-based ranks, halfway between the two middle ones for an even count).

    Similarities are computed `chunk_size` query rows at a time into one reused buffer, so memory
    is O(chunk_size * n) rather than O(n^2); the result does not depend on `chunk_size`.
    """
    _check_matrix("image_emb", image_emb)
    _check_matrix("text_emb", text_emb)
    if image_emb.shape[1] != text_emb.shape[1] or image_emb.dtype != text_emb.dtype:
        raise ValueError(
            f"image_emb {tuple(image_emb.shape)} {image_emb.dtype} and text_emb "
            f"{tuple(text_emb.shape)} {text_emb.dtype} need the same width and dtype"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    n_images, n_texts = len(image_emb), len(text_emb)
    if n_images == 0 or n_texts == 0:
        raise ValueError(f"nothing to rank: {n_images} images, {n_texts} texts")
    if texts_image_index is None:
        if n_texts != n_images:
            raise ValueError(
                f"{n_texts} texts for {n_images} images: pass texts_image_index to pair them"
            )
        index = torch.arange(n_images)
    else:
        index = torch.as_tensor(texts_image_index, dtype=torch.long).cpu()
        if index.shape != (n_texts,):
            raise ValueError(f"texts_image_index has shape {tuple(index.shape)}, not ({n_texts},)")
        if index.min() < 0 or index.max() >= n_images:
            raise ValueError(f"texts_image_index must lie in [0, {n_images})")
    image_positives = _texts_of_images(index, n_images).to(image_emb.device)
    text_positives = index[:, None].to(image_emb.device)
    return {
        **_rank_summary(
            "image_retrieval",
            _ranks(text_emb, image_emb, text_positives, chunk_size=chunk_size),
            ks=ks,
            n_candidates=n_images,
        ),
        **_rank_summary(
            "text_retrieval",
            _ranks(image_emb, text_emb, image_positives, chunk_size=chunk_size),
            ks=ks,
            n_candidates=n_texts,
        ),
    }


def _texts_of_images(index: torch.Tensor, n_images: int) -> torch.Tensor:
    """(n_images, max texts per image) text ids of each image, padded with -1."""
    counts = torch.bincount(index, minlength=n_images)
    if bool((counts == 0).any()):
        missing = (counts == 0).nonzero().flatten()[:5].tolist()
        raise ValueError(f"every image needs at least one text; images {missing}... have none")
    order = torch.argsort(index, stable=True)
    owners = index[order]
    slots = torch.arange(len(index)) - (torch.cumsum(counts, 0) - counts)[owners]
    padded = torch.full((n_images, int(counts.max())), -1, dtype=torch.long)
    padded[owners, slots] = order
    return padded


def _ranks(
    queries: torch.Tensor, keys: torch.Tensor, positives: torch.Tensor, *, chunk_size: int
) -> torch.Tensor:
    """1-based rank of each query's best-scoring positive key, as float64 on the CPU.

    `positives` (n_queries, p) holds key ids padded with -1. The positive's score is read from the
    same product as the others, so equal embeddings compare equal however rows are chunked.
    Counting is done in place on the score buffer, with no per-pair mask: the signs of
    score - best give the higher and the tied counts from two sums; the rare rows where another
    candidate ties with the best positive are redone alone to apply the lower-index rule.
    """
    n_queries, n_keys = len(queries), len(keys)
    count_dtype = torch.float32 if n_keys <= _EXACT_FLOAT32_COUNT else torch.float64
    ranks = torch.empty(n_queries, dtype=torch.float64, device=queries.device)
    # one buffer for all chunks: no fresh allocation (and page faults) per chunk
    buffer = torch.empty(
        min(chunk_size, n_queries), n_keys, dtype=queries.dtype, device=queries.device
    )
    for start in range(0, n_queries, chunk_size):
        stop = min(start + chunk_size, n_queries)
        scores = torch.mm(queries[start:stop], keys.T, out=buffer[: stop - start])
        ids = positives[start:stop]
        positive_scores = scores.gather(1, ids.clamp(min=0)).masked_fill_(ids < 0, -math.inf)
        best = positive_scores.amax(1, keepdim=True)
        best_positives = ((positive_scores == best) & (ids >= 0)).sum(1)
        signs = scores.sub_(best).sign_()  # 1 above the best positive, 0 tied, -1 below
        balance = signs.sum(1, dtype=count_dtype)  # higher - lower
        tied = n_keys - signs.abs_().sum(1, dtype=count_dtype)  # the best positives included
        higher = (balance + n_keys - tied) / 2
        ranks[start:stop] = higher + 1
        for row in (tied > best_positives).nonzero().flatten().tolist():
            row_scores = keys @ queries[start + row]  # all of this row's scores from one product
            row_ids = ids[row][ids[row] >= 0]
            row_best = row_scores[row_ids].max()
            first = int(row_ids[row_scores[row_ids] == row_best].min())
            above = (row_scores > row_best).sum() + (row_scores[:first] == row_best).sum()
            ranks[start + row] = above.item() + 1
    return ranks.cpu()


def _rank_summary(
    prefix: str, ranks: torch.Tensor, *, ks: Sequence[int], n_candidates: int
) -> dict[str, float]:
    """Recall@k, mean reciprocal rank and median rank of 1-based ranks among `n_candidates`."""
    metrics = {f"{prefix}_recall@{k}": _fraction_within(ranks, k, n_candidates) for k in ks}
    metrics[f"{prefix}_mrr"] = ranks.reciprocal().mean().item()
    metrics[f"{prefix}_median_rank"] = _median(ranks)
    return metrics


def _fraction_within(ranks: torch.Tensor, k: int, n_candidates: int) -> float:
    if k > n_candidates:
        return math.nan
    return (ranks <= k).double().mean().item()


def _median(values: torch.Tensor) -> float:
    ordered = values.sort().values
    middle = (len(ordered) - 1) / 2
    return (ordered[math.floor(middle)].item() + ordered[math.ceil(middle)].item()) / 2


# ------------------------------------------------------------------------------- classification


def classification_metrics(
    logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Top-k accuracies (`acc1`, `acc5`) and `mean_per_class_recall` of single-label scores.

    `logits` (n, n_classes) are any scores, higher meaning more likely; `targets` (n,) class ids.
    The mean per-class recall averages top-1 recall over the classes present in `targets`, as
    sklearn's balanced_accuracy_score (CLIP_benchmark's) does; ties go to the lower class id, as
    argmax decides.
    """
    _check_matrix("logits", logits)
    n, n_classes = logits.shape
    targets = torch.as_tensor(targets, device=logits.device).long()
    if targets.shape != (n,):
        raise ValueError(f"targets has shape {tuple(targets.shape)}, not ({n},)")
    if n == 0:
        raise ValueError("no examples to score")
    if targets.min() < 0 or targets.max() >= n_classes:
        raise ValueError(f"targets must lie in [0, {n_classes})")
    correct = logits.gather(1, targets[:, None])
    tied_before = (logits == correct) & (
        torch.arange(n_classes, device=logits.device) < targets[:, None]
    )
    ranks = (logits > correct).sum(1) + tied_before.sum(1) + 1
    metrics = {f"acc{k}": _fraction_within(ranks, k, n_classes) for k in ks}
    counts = torch.bincount(targets, minlength=n_classes)
    hits = torch.bincount(targets, weights=(ranks == 1).double(), minlength=n_classes)
    present = counts > 0
    metrics["mean_per_class_recall"] = (hits[present] / counts[present]).mean().item()
    return metrics


def zero_shot_weights(class_text_emb: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Zero-shot classifier (d, n_classes) from each class's prompt embeddings (n_prompts, d).

    As CLIP_benchmark's zero_shot_classifier: normalise each prompt, average, renormalise, so every
    prompt weighs the same whatever its norm. Classes may have different numbers of prompts (a
    list of tensors); `features @ weights` gives the logits.
    """
    columns = []
    for c, prompts in enumerate(class_text_emb):
        _check_matrix(f"prompt embeddings of class {c}", prompts)
        if len(prompts) == 0:
            raise ValueError(f"class {c} has no prompt embeddings")
        columns.append(F.normalize(prompts, dim=-1).mean(0))
    if not columns:
        raise ValueError("no classes")
    return F.normalize(torch.stack(columns, dim=1), dim=0)


# ------------------------------------------------------------------------------------- few-shot


@dataclass(frozen=True)
class FewShotSample:
    """Indices of a k-shot training set and the classes that had fewer than k examples.

    `short_classes` maps such a class to its number of examples, all of which were taken, 0 for a
    class of `num_classes` with none (CLIP_benchmark gives up on the whole evaluation instead).
    """

    indices: torch.Tensor
    short_classes: dict[int, int]


def few_shot_indices(
    labels: torch.Tensor, k: int, seed: int, *, num_classes: int | None = None
) -> FewShotSample:
    """Draw k examples of every class in `labels`, uniformly without replacement, from `seed`.

    As CLIP_benchmark: a seeded permutation, then the first k of each class in that order.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    labels = torch.as_tensor(labels).cpu().long()
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-d, got shape {tuple(labels.shape)}")
    permutation = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[permutation]
    order = torch.argsort(shuffled, stable=True)  # by class, in permutation order within a class
    classes, counts = torch.unique_consecutive(shuffled[order], return_counts=True)
    class_start = (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
    first_k = torch.arange(len(labels)) - class_start < k
    short = counts < k
    short_classes = dict(zip(classes[short].tolist(), counts[short].tolist(), strict=True))
    if num_classes is not None:
        present = torch.bincount(labels, minlength=num_classes)[:num_classes] > 0
        short_classes |= dict.fromkeys((~present).nonzero().flatten().tolist(), 0)
    return FewShotSample(permutation[order[first_k]], dict(sorted(short_classes.items())))


def class_prototypes(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Nearest-class-mean classifier (d, num_classes): the renormalised mean normalised feature,
    a zero column for a class without examples.

    The same construction as `zero_shot_weights`, with labelled images in place of prompts.
    """
    _check_matrix("features", features)
    labels = torch.as_tensor(labels, device=features.device).long()
    if len(labels) and int(labels.max()) >= num_classes:
        raise ValueError(f"labels must be in 0..{num_classes - 1}, got {int(labels.max())}")
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, F.normalize(features, dim=-1))
    return F.normalize(sums, dim=-1).T


@dataclass(frozen=True)
class LinearProbe:
    """A logistic regression on normalised frozen features, with the L2 penalty it was fit with."""

    weight: torch.Tensor
    bias: torch.Tensor
    weight_decay: float
    val_acc1: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features.to(self.weight.dtype), dim=-1) @ self.weight + self.bias


def fit_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    max_iter: int = 200,
) -> LinearProbe:
    """Fit a linear probe for each L2 penalty and keep the best on the validation split.

    CLIP_benchmark's linear_probe sweeps AdamW's weight decay and asserts CUDA; here each fit is a
    full-batch L-BFGS on the convex objective mean cross-entropy + wd/2 * |W|^2 (bias not
    penalised), from zeros, so it is deterministic and runs on the features' device, CPU included.
    Ties on validation top-1 go to the earlier penalty of `weight_decays`, as in CLIP_benchmark.
    """
    _check_matrix("train_features", train_features)
    x = F.normalize(train_features.float(), dim=-1)
    y = torch.as_tensor(train_labels, device=x.device).long()
    x_val = F.normalize(val_features.float().to(x.device), dim=-1)
    best: LinearProbe | None = None
    for weight_decay in weight_decays:
        weight, bias = _fit_logistic(
            x, y, num_classes, weight_decay=weight_decay, max_iter=max_iter
        )
        acc1 = classification_metrics(x_val @ weight + bias, val_labels, ks=(1,))["acc1"]
        if best is None or acc1 > best.val_acc1:
            best = LinearProbe(weight, bias, weight_decay, acc1)
    if best is None:
        raise ValueError("weight_decays is empty")
    return best


def _fit_logistic(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, *, weight_decay: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.zeros(x.shape[1], num_classes, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * weight_decay * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


@dataclass(frozen=True)
class FewShotResult:
    """Few-shot metrics over seeds: `metrics` has `<name>_mean` and `<name>_std` (sample std, nan
    for one seed); `per_seed` the metrics of each seed; `weight_decays` the probe's choice per seed
    (empty for prototypes); `short_classes` the classes with fewer than k training examples."""

    metrics: dict[str, float]
    per_seed: list[dict[str, float]]
    short_classes: dict[int, int]
    weight_decays: list[float] = field(default_factory=list)


def few_shot_evaluate(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int,
    method: Literal["prototype", "linear_probe"],
    seeds: Sequence[int] = (0, 1, 2),
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    num_classes: int | None = None,
) -> FewShotResult:
    """k-shot classification, a fresh k-per-class draw from the training pool for every seed.

    The linear probe picks its penalty on (`val_features`, `val_labels`) when given, else on a
    second k-per-class draw from what is left of the pool, so no more labels are used than a
    2k-shot budget. Metrics are `classification_metrics` of the test set. A class of
    `num_classes` (default: the largest label + 1) without training examples is never predicted:
    its logits are the lowest float, and its test examples count as errors.
    """
    if method not in ("prototype", "linear_probe"):
        raise ValueError(f"unknown method {method!r}")
    if not seeds:
        raise ValueError("no seeds")
    train_labels = torch.as_tensor(train_labels).long()
    test_labels = torch.as_tensor(test_labels).long()
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    unseen = torch.bincount(train_labels, minlength=num_classes)[:num_classes] == 0
    per_seed, chosen = [], []
    short_classes: dict[int, int] = {}
    for seed in seeds:
        sample = few_shot_indices(train_labels, k, seed, num_classes=num_classes)
        short_classes = sample.short_classes
        x, y = train_features[sample.indices], train_labels[sample.indices]
        if method == "prototype":
            logits = F.normalize(test_features, dim=-1) @ class_prototypes(x, y, num_classes)
        else:
            x_val, y_val = val_features, val_labels
            if x_val is None or y_val is None:
                rest = torch.ones(len(train_labels), dtype=torch.bool)
                rest[sample.indices] = False
                rest_ids = rest.nonzero().flatten()
                if len(rest_ids) == 0:
                    raise ValueError("no examples left for validation: pass val_features")
                val_ids = rest_ids[few_shot_indices(train_labels[rest_ids], k, seed).indices]
                x_val, y_val = train_features[val_ids], train_labels[val_ids]
            probe = fit_linear_probe(
                x,
                y,
                val_features=x_val,
                val_labels=y_val,
                num_classes=num_classes,
                weight_decays=weight_decays,
            )
            chosen.append(probe.weight_decay)
            logits = probe.logits(test_features)
        logits = logits.masked_fill(unseen.to(logits.device), torch.finfo(logits.dtype).min)
        per_seed.append(classification_metrics(logits, test_labels))
    return FewShotResult(mean_and_std(per_seed), per_seed, short_classes, chosen)


def mean_and_std(per_seed: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each metric of the seeds' results as `NAME_mean` and `NAME_std` (sample std; nan for one
    seed)."""
    summary = {}
    for name in per_seed[0]:
        values = [m[name] for m in per_seed]
        mean = math.fsum(values) / len(values)
        summary[f"{name}_mean"] = mean
        summary[f"{name}_std"] = (
            math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1
            else math.nan
        )
    return summary


# --------------------------------------------------------------------------------------- checks


def _check_matrix(name: str, x: torch.Tensor) -> None:
    """Reject what would rank silently wrong: a non-finite score compares false with everything."""
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d tensor")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} has non-finite values")
