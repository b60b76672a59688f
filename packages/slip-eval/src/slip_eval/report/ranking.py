"""What the gallery and the neighbourhood figure show: each model's ranking of title queries
against the split's images, and one product's co-purchase neighbourhood."""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from slip_eval.data import Split, embed_split
from slip_eval.models import LoadedModel, load_model
from slip_eval.report.entries import Entry, ReportError

TOP = 5  # images shown per model and query


@dataclass
class Ranking:
    """One model's answer to one title query: its top images and where the right one ranked."""

    label: str
    top: list[int]  # split-local indices, best first
    rank: int  # of the query's own image, 1-based, ties after lower indices (docs/eval.md)


def _load(result: dict, path: Path) -> LoadedModel:
    """The model a result measured: its checkpoint or export path, else an open_clip name and
    tag."""
    source = str(result.get("pretrained") or "")
    if source.endswith(".pt") or os.sep in source:
        if not Path(source).exists():
            raise ReportError(f"{path}: its model {source} is missing; the gallery needs it")
        return load_model(source, None, None)
    return load_model(None, result["model"], source)


def rank_queries(
    image: torch.Tensor, text: torch.Tensor, queries: list[int]
) -> list[tuple[list[int], int]]:
    """(top indices, rank of the query's own image) per title query, on normalised embeddings."""
    scores = text[queries] @ image.T
    answers = []
    for row, q in zip(scores, queries, strict=True):
        own = row[q]
        rank = int((row > own).sum() + (row[:q] == own).sum()) + 1
        answers.append((row.topk(min(TOP, row.numel())).indices.tolist(), rank))
    return answers


def gallery_rankings(
    entries: list[Entry],
    split: Split,
    queries: list[int],
    *,
    cache_dir: Path | None,
    quiet: bool,
) -> list[list[Ranking]]:
    """Per query, each retrieval result's model's ranking (embeddings from the cache when there)."""
    per_query: list[list[Ranking]] = [[] for _ in queries]
    for entry in entries:
        if entry.result.get("n") != split.node_ids.size:
            raise ReportError(
                f"{entry.path}: made on {entry.result.get('n')} products, the {split.name!r} "
                f"split of these shards has {split.node_ids.size}: other shards?"
            )
        raw = embed_split(_load(entry.result, entry.path), split, cache_dir=cache_dir, quiet=quiet)
        image, text = F.normalize(raw["image"], dim=-1), F.normalize(raw["text"], dim=-1)
        for answers, (top, rank) in zip(per_query, rank_queries(image, text, queries), strict=True):
            answers.append(Ranking(entry.label, top, rank))
    return per_query


def neighbourhood(
    edge_index: torch.Tensor,
    n: int,
    rng: np.random.Generator,
    *,
    first: int = 8,
    second: int = 8,
) -> tuple[int, list[int], list[int], list[tuple[int, int]]] | None:
    """A product with several in-split neighbours, its neighbours (at most `first`), some of
    theirs (at most `second`, spread over the neighbours so each sits outside its own), and the
    edges among them; None without edges."""
    adjacency: list[set[int]] = [set() for _ in range(n)]
    for a, b in edge_index.T.tolist():
        if a != b:
            adjacency[a].add(b)
            adjacency[b].add(a)
    degrees = np.array([len(s) for s in adjacency])
    if degrees.max(initial=0) == 0:
        return None
    fitting = np.flatnonzero((degrees >= 3) & (degrees <= first))
    if fitting.size:  # the best-connected of those that fit, drawn at random among equals
        fitting = fitting[degrees[fitting] == degrees[fitting].max()]
    centre = int(rng.choice(fitting)) if fitting.size else int(degrees.argmax())
    hop1 = sorted(adjacency[centre])[:first]
    taken = {centre, *hop1}
    hop2, per = [], max(1, second // len(hop1))
    for node in hop1:
        for other in sorted(adjacency[node] - taken)[:per]:
            if len(hop2) < second:
                hop2.append(other)
                taken.add(other)
    edges = [(a, b) for a in taken for b in adjacency[a] if b in taken and a < b]
    return centre, hop1, hop2, edges
