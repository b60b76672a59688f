"""Benchmark: how often each training product is seen under SLIP's neighbour-sampled batches,
against CLIP's uniform batches (the anchor) at the same steps and batch size.

    uv run python bench/batch_coverage.py --shards DIR       # 500 steps of 128, as the experiment
    uv run python bench/batch_coverage.py --shards DIR --steps 2000 --fanouts 3

Both planners are slip-train's own (`BatchPlanner`, over the training graph `slip-train run`
loads), drawn for `--steps` batches; each training product's appearances are divided by their
mean. CLIP's shuffled epochs see every product about equally often; SLIP's batches are a quarter
seeds (each product once an epoch) and three quarters sampled neighbours, so a product is seen
about in proportion to one plus its degree; a third planner, SLIP's with `sampler.seeds =
"balanced"`, draws its seeds weighted so that every product's expected appearances are equal.
Also per class (the label), the share of the
appearances each class gets against its share of the products. Prints quantiles, the coefficient
of variation and the share of products seen less than half as often as the mean, per mode.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import torch

from slip_train.batches import BatchPlanner
from slip_train.graph_cache import load_graph
from slip_train.shards import open_shards


def appearances(planner: BatchPlanner, steps: int, num_nodes: int) -> np.ndarray:
    counts = np.zeros(num_nodes, np.int64)
    epoch, done = 0, 0
    while done < steps:
        for batch in planner.epoch(epoch):
            np.add.at(counts, batch.nodes.numpy(), 1)
            done += 1
            if done == steps:
                break
        epoch += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, required=True, help="a slip-data shards folder")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--fanouts", default="3", help="sampler.fanouts, comma-separated")
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
    rows = {}
    for name, mode, seeds in (
        ("clip", "clip", "epoch"),
        ("slip", "slip", "epoch"),
        ("slip, balanced", "slip", "balanced"),
    ):
        planner = BatchPlanner(
            graph,
            train,
            batch_size=args.batch_size,
            fanouts=fanouts,
            mode=mode,
            seeds=seeds,
            seed=0,
        )
        counts = appearances(planner, args.steps, graph.num_nodes)[train.numpy()]
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
            f"to {share.max():.2f}",
            flush=True,
        )
    for name in ("slip", "slip, balanced"):
        print(
            f"{name} over clip (the anchor): coefficient of variation "
            f"{rows[name].std() / max(rows['clip'].std(), 1e-12):.1f}x; products seen under half "
            f"the mean {(rows[name] < 0.5).mean():.1%} against {(rows['clip'] < 0.5).mean():.1%}"
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
