"""Benchmark: how often each training product is seen under SLIP's neighbour-sampled batches,
against CLIP's uniform batches (the anchor) at the same steps and batch size.

    uv run python bench/batch_coverage.py --shards DIR       # 500 steps of 128, as the experiment
    uv run python bench/batch_coverage.py --shards DIR --steps 2000 --fanouts 3

Both planners are slip-train's own (`BatchPlanner`, over the training graph `slip-train run`
loads), drawn for `--steps` batches; each training product's appearances are divided by their
mean. CLIP's shuffled epochs see every product about equally often; SLIP's batches are a quarter
seeds (each product once an epoch) and three quarters sampled neighbours, so a product is seen
about in proportion to one plus its degree; a third planner, SLIP's with `sampler.seeds =
"balanced"`, draws its seeds weighted so that every product's expected appearances are equal; a
fourth row counts SLIP's own batches with each appearance weighted as CLIP's loss weighs it under
`loss.anchor_weights = "inverse_appearances"`. Also per class (the label), the share of the
appearances each class gets against its share of the products, and the in-batch edges per batch
(all, and those within a class), which the mask of `loss.neighbours_as_negatives = false` acts on.
Prints quantiles, the coefficient of variation and the share of products seen less than half as
often as the mean, per mode.

With `--edge-gate WEIGHTS` (a pretrained open_clip weights file, the experiment's start) a fifth
row draws SLIP's batches over the graph `sampler.edge_gate = "similarity"` keeps, and the gate's
own figures: the share of edges kept, the share of them within a class against all edges', and
its start-up seconds against the ungated planner's (the anchor).

    uv run python bench/batch_coverage.py --shards DIR --edge-gate .../open_clip_pytorch_model.bin
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from slip_train.batches import BatchPlanner
from slip_train.config import ModelConfig
from slip_train.edge_gate import gate_edges, node_embeddings
from slip_train.factory import build_model
from slip_train.graph_cache import load_graph
from slip_train.sampler import CSRGraph
from slip_train.shards import build_node_cache, open_shards


def appearances(
    planner: BatchPlanner, steps: int, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per node, its appearances over `steps` batches and the same weighted by its anchor weight
    (CLIP's loss's, `loss.anchor_weights`; 1 without them); in-batch edges and same-label ones,
    per batch."""
    counts = np.zeros(labels.size, np.int64)
    weighted = np.zeros(labels.size)
    edges = same = 0
    epoch, done = 0, 0
    while done < steps:
        for batch in planner.epoch(epoch):
            nodes = batch.nodes.numpy()
            np.add.at(counts, nodes, 1)
            weights = 1 if batch.anchor_weights is None else batch.anchor_weights.numpy()
            np.add.at(weighted, nodes, weights)
            src, dst = nodes[batch.edge_index.numpy()]
            edges += src.size
            same += int((labels[src] == labels[dst]).sum())
            done += 1
            if done == steps:
                break
        epoch += 1
    return counts, weighted, edges / steps, same / steps


def within_class(graph: CSRGraph, labels: np.ndarray) -> float:
    """The share of the graph's stored edges whose two ends share the label."""
    indptr = graph.indptr.numpy()
    sources = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    return float((labels[sources] == labels[graph.indices.numpy()]).mean())


def training_step_seconds(clip: torch.nn.Module, tokenizer, batch: int = 128) -> float:
    """The median of 3 forward and backward passes of CLIP's loss over a batch of `batch` (random
    pixels, one title repeated): what the gate's start-up is counted in."""
    size = clip.visual.preprocess_cfg["size"]
    size = size if isinstance(size, int) else size[0]
    images = torch.randn(batch, 3, size, size)
    tokens = tokenizer(["a product title"] * batch)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        image, text = clip.encode_image(images), clip.encode_text(tokens)
        logits = (
            torch.nn.functional.normalize(image, dim=-1)
            @ torch.nn.functional.normalize(text, dim=-1).T
        )
        torch.nn.functional.cross_entropy(logits, torch.arange(batch)).backward()
        times.append(time.perf_counter() - started)
    clip.zero_grad(set_to_none=True)
    return sorted(times)[1]


def gated_graph(shards, graph: CSRGraph, train: torch.Tensor, weights: Path, labels) -> CSRGraph:
    """The graph `sampler.edge_gate = "similarity"` keeps at the default quantile, starting from
    `weights`, with its figures printed."""
    built = build_model(ModelConfig(pretrained=str(weights)), with_graph=False)
    anchor = training_step_seconds(built.model.clip, built.tokenizer)
    with tempfile.TemporaryDirectory() as folder:
        cache = build_node_cache(shards, Path(folder))
        started = time.perf_counter()
        embeddings, _ = node_embeddings(
            built.model.clip,
            cache,
            train,
            transform=built.eval_transform,
            tokenizer=built.tokenizer,
            device=torch.device("cpu"),
        )
        gated = gate_edges(graph, train, embeddings, quantile=0.95, seed=0)
        seconds = time.perf_counter() - started
    print(
        f"edge gate (quantile 0.95, threshold {gated.threshold:.3f}): kept "
        f"{gated.edges_kept / gated.edges_before:.1%} of {gated.edges_before:,} stored edges; "
        f"within a class {within_class(gated.graph, labels):.1%} of the kept, "
        f"{within_class(graph, labels):.1%} of all; {seconds:.1f} s at start-up for "
        f"{train.numel():,} products, the time of {seconds / anchor:.0f} training steps of 128 "
        f"({anchor:.2f} s each, the anchor)",
        flush=True,
    )
    return gated.graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, required=True, help="a slip-data shards folder")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--fanouts", default="3", help="sampler.fanouts, comma-separated")
    parser.add_argument("--edge-gate", type=Path, help="pretrained weights: add the gated row")
    args = parser.parse_args()
    shards = open_shards(args.shards)
    with tempfile.TemporaryDirectory() as folder:
        graph, train = load_graph(shards, "train", Path(folder))
    labels = (
        pl.concat(
            pl.read_parquet(path, columns=["node_id", "label_id"])
            for path in sorted(args.shards.glob("nodes-*.parquet"))
        )
        .sort("node_id")["label_id"]
        .to_numpy()
    )
    fanouts = [int(f) for f in args.fanouts.split(",")]
    plans = [
        ("clip", "clip", "epoch", "equal", graph),
        ("slip", "slip", "epoch", "equal", graph),
        ("slip, balanced", "slip", "balanced", "equal", graph),
        # the same batches as slip's; each appearance counted by its weight in CLIP's loss
        ("slip, anchor weights", "slip", "epoch", "inverse_appearances", graph),
    ]
    if args.edge_gate:
        kept = gated_graph(shards, graph, train, args.edge_gate, labels)
        plans.append(("slip, edge gate", "slip", "epoch", "equal", kept))
    rows = {}
    for name, mode, seeds, anchor_weights, planned_graph in plans:
        planner = BatchPlanner(
            planned_graph,
            train,
            batch_size=args.batch_size,
            fanouts=fanouts,
            mode=mode,
            seeds=seeds,
            anchor_weights=anchor_weights,
            seed=0,
        )
        _, weighted, edges, same = appearances(planner, args.steps, labels)
        counts = weighted[train.numpy()]
        seen = counts / counts.mean()
        per_class = np.bincount(labels[train.numpy()], weights=counts) / counts.sum()
        products = np.bincount(labels[train.numpy()]) / train.numel()
        share = per_class[products > 0] / products[products > 0]
        rows[name] = seen
        quantiles = np.quantile(seen, [0, 0.1, 0.5, 0.9, 1])
        print(
            f"{name}: {args.steps} batches of {args.batch_size} over {train.numel():,} training "
            f"products; seen / mean at 0, 10, 50, 90, 100%: "
            + ", ".join(f"{q:.2f}" for q in quantiles)
            + f"; coefficient of variation {seen.std():.2f}; seen under half the mean "
            f"{(seen < 0.5).mean():.1%}; class share / product share from {share.min():.2f} "
            f"to {share.max():.2f}; in-batch edges a batch {edges:.1f}, "
            f"{same:.1f} of them within a class",
            flush=True,
        )
    for name in [name for name in rows if name != "clip"]:
        print(
            f"{name} over clip (the anchor): coefficient of variation "
            f"{rows[name].std() / max(rows['clip'].std(), 1e-12):.1f}x; products seen under half "
            f"the mean {(rows[name] < 0.5).mean():.1%} against {(rows['clip'] < 0.5).mean():.1%}"
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
