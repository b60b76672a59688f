"""Benchmark: the balanced planner's seed draws per batch (`sampler.seeds = "balanced"`) against
the anchor, `torch.multinomial` without replacement over the same weights, which reads every
weight for every batch; and the planner's start-up (the weights' fit, 200 iterations) against
the fit as first written (numpy's scatter, `np.bincount`, its body below), with the same weights.

    uv run python bench/seed_draws.py --nodes 1000000 4000000

A random graph of N nodes with `--degree` random edges per node, every node in training, fanout 3
(the demo's), batch 128 (32 seeds). One thread, as the planner runs.
"""

import argparse
import time
from functools import partial

import numpy as np
import torch

from slip_train.batches import BatchPlanner
from slip_train.sampler import build_csr


def per_batch_ms(draw, batches: int) -> float:
    started = time.perf_counter()
    for index in range(batches):
        draw(index)
    return (time.perf_counter() - started) / batches * 1e3


def multinomial(weights: torch.Tensor, wanted: int, index: int) -> None:
    draw = torch.Generator().manual_seed(index)
    torch.multinomial(weights, wanted, replacement=False, generator=draw)


def scatter_fit(graph, fanout: int, iterations: int = 200) -> np.ndarray:
    """The weights' fit as first written, every node in training: scatters by np.bincount."""
    indptr, indices = graph.indptr.numpy(), graph.indices.numpy()
    degree = np.diff(indptr)
    keep = np.minimum(fanout, degree) / np.maximum(degree, 1)
    owner = np.repeat(np.arange(graph.num_nodes), degree)

    def forward(weights: np.ndarray) -> np.ndarray:
        return weights + np.bincount(indices, (weights * keep)[owner], minlength=graph.num_nodes)

    def backward(seen: np.ndarray) -> np.ndarray:
        return seen + keep * np.bincount(owner, seen[indices], minlength=graph.num_nodes)

    target = backward(np.ones(graph.num_nodes))
    weights = np.ones(graph.num_nodes)
    for _ in range(iterations):
        weights = weights * target / np.maximum(backward(forward(weights)), 1e-12)
        weights = np.maximum(weights, 1e-3 * weights.mean())
    return weights / weights.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--degree", type=int, default=4, help="random edges per node")
    parser.add_argument("--batches", type=int, default=50, help="batches timed per way")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| nodes | fit, anchor: np.bincount | fit, ours | anchor / ours | draws, anchor: "
        "torch.multinomial | draws, ours | anchor / ours |"
    )
    print("|---|---|---|---|---|---|---|")
    for nodes in args.nodes:
        generator = torch.Generator().manual_seed(0)
        src = torch.randint(0, nodes, (nodes * args.degree,), generator=generator)
        dst = torch.randint(0, nodes, (nodes * args.degree,), generator=generator)
        graph = build_csr(src, dst, nodes)
        started = time.perf_counter()
        planner = BatchPlanner(
            graph,
            torch.arange(nodes),
            batch_size=128,
            fanouts=[3],
            mode="slip",
            seeds="balanced",
        )
        start_up = time.perf_counter() - started
        started = time.perf_counter()
        first = scatter_fit(graph, fanout=3)
        anchor_fit = time.perf_counter() - started
        weights = torch.diff(planner.seed_cdf, prepend=torch.zeros(1))  # to about 1e-16 each
        assert np.allclose(first, weights.numpy(), rtol=1e-5, atol=0), "not the same weights"
        anchor = partial(multinomial, weights, planner.seeds_per_batch)
        anchor_ms = per_batch_ms(anchor, args.batches)
        ours_ms = per_batch_ms(partial(planner._balanced_seeds, 0), args.batches)
        print(
            f"| {nodes:,} | {anchor_fit:.1f} s | {start_up:.1f} s | {anchor_fit / start_up:.1f}x | "
            f"{anchor_ms:.2f} ms | {ours_ms:.3f} ms | {anchor_ms / ours_ms:.0f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
