"""Benchmark: `slip-eval nodeclass`'s epoch with the graph as a sparse adjacency (what it uses for
GCN and GraphSAGE) against the same epoch with PyG's `edge_index` (the anchor).

    uv run python bench/nodeclass_graph.py                       # the experiment's cell size
    uv run python bench/nodeclass_graph.py --nodes 100000 --threads 2

A random graph of `--nodes` products and `--degree` mean degree (both directions, no self-loops,
as the shards hold it), `--dim` features and 33 classes (the demo's main categories). One epoch is
what `fit` does per epoch: a training step on 80% of the nodes, then a prediction of every node.
The two forms run the same model from the same weights, interleaved, median of `--epochs` after a
warm-up; their outputs are checked equal first.
"""

import argparse
import statistics
import time

import torch

from slip_eval.nodeclass import NodeClassifier, adjacency, predict, train_epoch


def epoch_seconds(kind: str, data, graph, train, *, epochs: int) -> list[float]:
    torch.manual_seed(0)
    model = NodeClassifier(kind, data.x.shape[1], int(data.y.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    times = []
    for _ in range(epochs + 1):  # the first is the warm-up
        started = time.perf_counter()
        train_epoch(model, optimizer, data, graph, train)
        predict(model, data, graph)
        times.append(time.perf_counter() - started)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=11000)
    parser.add_argument("--degree", type=float, default=8.0)
    parser.add_argument(
        "--dim", type=int, default=128, help="slip-tiny's image and text, side by side"
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from torch_geometric.data import Data  # after slip_eval, which silences PyG's import warning
    from torch_geometric.utils import coalesce

    generator = torch.Generator().manual_seed(0)
    pairs = torch.randint(args.nodes, (2, round(args.nodes * args.degree / 2)), generator=generator)
    pairs = pairs[:, pairs[0] != pairs[1]]
    edge_index = coalesce(torch.cat([pairs, pairs.flip(0)], 1), num_nodes=args.nodes)
    data = Data(
        x=torch.randn(args.nodes, args.dim, generator=generator),
        edge_index=edge_index,
        y=torch.randint(33, (args.nodes,), generator=generator),
    )
    train = torch.arange(round(0.8 * args.nodes))
    sparse = adjacency(edge_index, args.nodes)
    print(f"{args.nodes} nodes, {edge_index.shape[1] // 2} edges, {args.dim} features, "
          f"{args.threads} thread(s); median ms per epoch")  # fmt: skip
    print(f"{'model':<6} {'edge_index':>11} {'sparse':>8} {'speed-up':>9}")
    for kind in ("gcn", "sage"):
        torch.manual_seed(0)
        model = NodeClassifier(kind, args.dim, 33).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(data.x, sparse), model(data.x, edge_index))
        anchor, fast = [], []
        for _ in range(2):  # interleaved: a slow spell of the machine hits both
            anchor += epoch_seconds(kind, data, edge_index, train, epochs=args.epochs // 2)
            fast += epoch_seconds(kind, data, sparse, train, epochs=args.epochs // 2)
        a, f = statistics.median(anchor) * 1000, statistics.median(fast) * 1000
        print(f"{kind:<6} {a:>11.1f} {f:>8.1f} {a / f:>8.2f}×")


if __name__ == "__main__":
    main()
