"""The evaluations: embeddings in, CLIP_benchmark-shaped result dicts out.

A result is `{"dataset", "model", "pretrained", "task", "metrics"}` as CLIP_benchmark writes it,
plus what only this data has: `split`, `n`, and with structure-aware inference `graph_metrics`,
the same metrics after each embedding is refined by its graph neighbours.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from slip_eval.data import (
    SPLITS,
    DataError,
    Split,
    edges_among,
    embed_split,
    encode_texts,
    open_split,
)
from slip_eval.graph import refine
from slip_eval.linkpred import (
    EDGE_SETS,
    hard_negatives,
    hold_out,
    link_metrics,
    neighbour_sets,
    pair_scores,
    random_negatives,
    touching_edges,
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


def _every_product(shards: str | Path, split: Split) -> tuple[list[Split], Tensor]:
    """The products with an image of every split, `split` among them, and every co-purchase edge
    between two of them, indexed over the splits' products one after another in SPLITS order."""
    splits = []
    for name in SPLITS:
        try:
            splits.append(split if name == split.name else open_split(shards, name))
        except DataError:  # the shards read already for `split`: this split has no product
            continue
    ids = np.concatenate([part.node_ids for part in splits])
    return splits, edges_among(split.folder, split.manifest, ids)


def linkpred(
    model: LoadedModel,
    shards: str | Path,
    split_name: str,
    *,
    cache_dir: Path | None,
    edges: str = "within",
    negatives: str = "random",
    per_positive: int = 100,
    holdout: float = 0.5,
    seed: int = 0,
    predictors: Sequence[str] = (),
    structure: bool = False,
    quiet: bool = False,
) -> dict:
    """Link prediction of co-purchases that training never saw (slip-train's graph holds edges
    between two train products only). `edges` picks the candidates: "within", the edges between
    two products of the split, ranked over the split's products; "touching", every edge with an
    end in the split, whatever split the other end is in, ranked over every split's products (a
    small split has few edges within it and many more touching it). A seeded `holdout` share of
    the candidates are the true edges, each ranked from its end in the split against
    `per_positive` negatives, products that no edge links to that end. Every other edge is the
    observed graph (with "touching", also the edges that do not touch the split, train ones
    included: the co-purchases a user already knows), which only structure-aware refinement and
    the predictors use, so the held-out edges never inform the embeddings that rank them. Scored
    by cosine, image with image, text with text, and fused (the mean of the two unit embeddings);
    and by each of `predictors` ("sage", "gcn"), a GNN link predictor trained on the observed
    edges over the image and text embeddings side by side."""
    if edges not in EDGE_SETS:
        raise DataError(f"--edges: {edges!r} is not one of {', '.join(EDGE_SETS)}")
    split = open_split(shards, split_name)
    if edges == "within":
        splits, known = [split], split.edge_index
        candidates, background = known, known[:, :0]
    else:
        splits, known = _every_product(shards, split)
        inside = torch.cat([torch.full((part.node_ids.size,), part is split) for part in splits])
        candidates, background = touching_edges(known, inside)
    if candidates.shape[1] == 0:
        raise DataError(
            f"{split.folder}: the {split.name!r} split has no co-purchase edge"
            if edges == "within"
            else f"{split.folder}: no co-purchase edge touches the {split.name!r} split"
        )
    generator = torch.Generator().manual_seed(seed)
    positive, observed = hold_out(candidates, background, holdout=holdout, generator=generator)
    for asked, flag in ((structure, "--structure"), (predictors, "--predictors")):
        if asked and observed.shape[1] == 0:
            raise DataError(
                f"{flag}: every edge of the {split.name!r} split is held out; lower --holdout"
            )
    # not graph_ready, which asks for edges within the split: the heads refine over `observed`
    if structure and model.graph_heads is None:
        raise DataError("--structure: the model has no graph head (a slip-mode checkpoint has)")
    num_nodes = sum(part.node_ids.size for part in splits)
    neighbours = neighbour_sets(num_nodes, known)
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
    parts = [embed_split(model, part, cache_dir=cache_dir, quiet=quiet) for part in splits]
    raw = {name: torch.cat([part[name] for part in parts]) for name in ("image", "text")}
    features = {"metrics": (raw["image"], raw["text"])}
    if structure:
        image_head, text_head = model.graph_heads
        features["graph_metrics"] = (
            refine(image_head, raw["image"], observed),
            refine(text_head, raw["text"], observed),
        )
    result = result_header(model, split, "linkpred")
    result.update(
        edges=edges,
        nodes=int(num_nodes),
        negatives=negatives,
        per_positive=per_positive,
        seed=seed,
        held_out_edges=int(positive.shape[1]),
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
