"""Benchmark: the balanced planner's seed draws per batch (`sampler.seeds = "balanced"`) against
the anchor, `torch.multinomial` without replacement over the same weights, which reads every
weight for every batch; and the planner's start-up (the weights' fit) at the same size.

    uv run python bench/seed_draws.py --nodes 1000000 4000000

A random graph of N nodes with `--degree` random edges per node, every node in training, fanout 3
(the demo's), batch 128 (32 seeds). One thread, as the planner runs.
"""

import argparse
import time
from functools import partial

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--degree", type=int, default=4, help="random edges per node")
    parser.add_argument("--batches", type=int, default=50, help="batches timed per way")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| nodes | start-up (weights fit) | anchor: torch.multinomial | ours | anchor / ours |")
    print("|---|---|---|---|---|")
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
        weights = torch.diff(planner.seed_cdf, prepend=torch.zeros(1))
        anchor = partial(multinomial, weights, planner.seeds_per_batch)
        anchor_ms = per_batch_ms(anchor, args.batches)
        ours_ms = per_batch_ms(partial(planner._balanced_seeds, 0), args.batches)
        print(
            f"| {nodes:,} | {start_up:.1f} s | {anchor_ms:.2f} ms | {ours_ms:.3f} ms | "
            f"{anchor_ms / ours_ms:.0f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
