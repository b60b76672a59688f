"""The evaluations: embeddings in, CLIP_benchmark-shaped result dicts out.

A result is `{"dataset", "model", "pretrained", "task", "metrics"}` as CLIP_benchmark writes it,
plus what only this data has: `split`, `n`, and with structure-aware inference `graph_metrics`,
the same metrics after each embedding is refined by its graph neighbours.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from slip_eval.data import DataError, Split, embed_split, encode_texts, open_split
from slip_eval.graph import refine
from slip_eval.linkpred import (
    hard_negatives,
    link_metrics,
    neighbour_sets,
    pair_scores,
    random_negatives,
    trained_node_embeddings,
)
from slip_eval.metrics import (
    classification_metrics,
    few_shot_evaluate,
    retrieval_metrics,
    zero_shot_weights,
)
from slip_eval.models import LoadedModel

DEFAULT_TEMPLATES = (
    "a photo of a {c}.",
    "a product photo of {c}.",
    "a {c} product.",
    "{c}",
)  # CLIP's prompt ensembling, worded for products
FEW_SHOT_METHODS = ("prototype", "linear_probe")


def result_header(model: LoadedModel, split: Split, task: str) -> dict:
    return {
        "dataset": f"slip/{split.folder.parent.name}",
        "model": model.name,
        "pretrained": model.pretrained,
        "task": task,
        "split": split.name,
        "n": int(split.node_ids.size),
    }


def graph_ready(model: LoadedModel, split: Split, structure: bool) -> bool:
    """Whether structure-aware numbers can be made; asking without a graph head or edges is an
    error rather than a silent copy of the plain numbers."""
    if not structure:
        return False
    if model.graph_heads is None:
        raise DataError("--structure: the model has no graph head (a slip-mode checkpoint has)")
    if split.edge_index.shape[1] == 0:
        raise DataError(f"--structure: the {split.name!r} split has no edge between its products")
    return True


def retrieval(
    model: LoadedModel,
    shards: str | Path,
    split_name: str,
    *,
    cache_dir: Path | None,
    structure: bool = False,
    chunk_size: int = 1024,
    quiet: bool = False,
) -> dict:
    """Image-to-text and text-to-image retrieval over a split: product i's image and its title."""
    split = open_split(shards, split_name)
    graph = graph_ready(model, split, structure)
    raw = embed_split(model, split, cache_dir=cache_dir, quiet=quiet)
    image, text = F.normalize(raw["image"], dim=-1), F.normalize(raw["text"], dim=-1)
    result = result_header(model, split, "zeroshot_retrieval")
    result["metrics"] = retrieval_metrics(image, text, chunk_size=chunk_size)
    if graph:
        image_head, text_head = model.graph_heads
        result["graph_metrics"] = retrieval_metrics(
            refine(image_head, raw["image"], split.edge_index),
            refine(text_head, raw["text"], split.edge_index),
            chunk_size=chunk_size,
        )
        result["edges"] = int(split.edge_index.shape[1])
    return result


def _class_weights(model: LoadedModel, names: Sequence[str], templates: Sequence[str]) -> Tensor:
    prompts = [encode_texts(model, [t.format(c=name) for t in templates]) for name in names]
    return zero_shot_weights(prompts)


def _image_features(model: LoadedModel, split: Split, raw: dict, *, graph: bool) -> dict:
    """Normalised image embeddings under `metrics`, and refined by the image head over the split's
    own graph under `graph_metrics` (each split sees only its own edges)."""
    features = {"metrics": F.normalize(raw["image"], dim=-1)}
    if graph:
        features["graph_metrics"] = refine(model.graph_heads[0], raw["image"], split.edge_index)
    return features


def classification(
    model: LoadedModel,
    shards: str | Path,
    split_name: str,
    *,
    cache_dir: Path | None,
    shots: Sequence[int],
    seeds: int = 3,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    methods: Sequence[str] = FEW_SHOT_METHODS,
    structure: bool = False,
    quiet: bool = False,
) -> dict:
    """Zero-shot (shot 0: prompts over the label names) and k-shot (k examples per class from
    the train split; prototype and linear probe, the probe's weight decay chosen on val) top-1,
    top-5 and mean per-class recall on `split_name`'s images."""
    split = open_split(shards, split_name)
    if not split.label_names:
        raise DataError(f"{split.folder}: the manifest has no label_names: nothing to classify")
    graph = graph_ready(model, split, structure)
    raw = embed_split(model, split, cache_dir=cache_dir, quiet=quiet)
    test = _image_features(model, split, raw, graph=graph)
    targets = torch.from_numpy(split.label_ids).long()
    result = result_header(model, split, "zeroshot_classification")
    result["templates"] = list(templates)
    if 0 in shots:
        weights = _class_weights(model, split.label_names, templates)
        for key, image in test.items():
            result[key] = classification_metrics(image @ weights, targets)
    few = sorted(k for k in shots if k > 0)
    if not few:
        return result
    pools = {}
    for name in ("train", "val"):
        try:
            pool = open_split(shards, name)
        except DataError:
            if name == "train":
                raise
            # no val split: the probe picks its weight decay on a second k-shot draw from train
            result["notes"] = ["no val split: weight decay chosen on a second draw from train"]
            pools[name] = ({}, None, None)
            continue
        raw = embed_split(model, pool, cache_dir=cache_dir, quiet=quiet)
        features = _image_features(model, pool, raw, graph=graph and pool.edge_index.shape[1] > 0)
        pools[name] = (features, torch.from_numpy(pool.label_ids).long(), pool)
    (train, train_targets, _), (val, val_targets, val_split) = pools["train"], pools["val"]
    result["fewshot"], result["short_classes"] = {}, {}
    for key, image in test.items():
        if key not in train or (val_split is not None and key not in val):
            continue  # no edges in train or val: no graph-refined few-shot numbers
        for method in methods:
            for k in few:
                outcome = few_shot_evaluate(
                    train[key],
                    train_targets,
                    test_features=image,
                    test_labels=targets,
                    k=k,
                    method=method,
                    seeds=range(seeds),
                    val_features=val.get(key),
                    val_labels=val_targets,
                    num_classes=len(split.label_names),
                )
                result["fewshot"].setdefault(key, {}).setdefault(method, {})[str(k)] = (
                    outcome.metrics
                )
                if outcome.short_classes:
                    result["short_classes"][str(k)] = {
                        split.label_names[c]: n for c, n in outcome.short_classes.items()
                    }
    return result


def linkpred(
    model: LoadedModel,
    shards: str | Path,
    split_name: str,
    *,
    cache_dir: Path | None,
    negatives: str = "random",
    per_positive: int = 100,
    holdout: float = 0.5,
    seed: int = 0,
    predictors: Sequence[str] = (),
    structure: bool = False,
    quiet: bool = False,
) -> dict:
    """Link prediction of the split's co-purchases, which training never saw (slip-train's graph
    holds train products only): a seeded `holdout` share of the split's edges are the true edges,
    each ranked against `per_positive` negatives of its source; the rest is the observed graph,
    which only structure-aware refinement uses, so the held-out edges never inform the
    embeddings that rank them. Scored by cosine, image with image, text with text, and fused
    (the mean of the two unit embeddings); and by each of `predictors` ("sage", "gcn"), a GNN
    link predictor trained on the observed edges over the image and text embeddings side by
    side."""
    split = open_split(shards, split_name)
    edges = split.edge_index
    if edges.shape[1] == 0:
        raise DataError(f"{split.folder}: the {split.name!r} split has no co-purchase edge")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(edges.shape[1], generator=generator)
    held = max(1, round(holdout * edges.shape[1]))
    positive, observed = edges[:, order[:held]], edges[:, order[held:]]
    for asked, flag in ((structure, "--structure"), (predictors, "--predictors")):
        if asked and observed.shape[1] == 0:
            raise DataError(
                f"{flag}: every edge of the {split.name!r} split is held out; lower --holdout"
            )
    graph = graph_ready(model, split, structure)
    neighbours = neighbour_sets(split.node_ids.size, edges)
    sources, targets = positive
    if negatives == "hard":
        negative, filled = hard_negatives(
            sources, neighbours, per_positive=per_positive, generator=generator
        )
    else:
        negative = random_negatives(
            sources, neighbours, per_positive=per_positive, generator=generator
        )
        filled = 0
    raw = embed_split(model, split, cache_dir=cache_dir, quiet=quiet)
    features = {"metrics": (raw["image"], raw["text"])}
    if graph:
        image_head, text_head = model.graph_heads
        features["graph_metrics"] = (
            refine(image_head, raw["image"], observed),
            refine(text_head, raw["text"], observed),
        )
    result = result_header(model, split, "linkpred")
    result.update(
        negatives=negatives,
        per_positive=per_positive,
        seed=seed,
        held_out_edges=int(held),
        observed_edges=int(observed.shape[1]),
        hard_filled=int(filled),
    )
    for key, (image, text) in features.items():
        image, text = F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)
        scored = {"image": image, "text": text, "fused": F.normalize(image + text, dim=-1)}
        for kind in predictors:
            both = torch.cat([image, text], 1)
            scored[kind] = trained_node_embeddings(kind, both, observed, seed=seed)
        result[key] = {
            f"{name}_{metric}": value
            for name, emb in scored.items()
            for metric, value in link_metrics(
                pair_scores(emb, sources, targets), pair_scores(emb, sources, negative)
            ).items()
        }
    return result
