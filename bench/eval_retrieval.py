"""Benchmark: slip-eval's chunked retrieval metrics against the full similarity matrix.

    uv run python bench/eval_retrieval.py           # 30k side by side, then 100k chunked (~1.5 min)
    uv run python bench/eval_retrieval.py --naive   # also the first-draft version at 30k (+35 s)
    uv run python bench/eval_retrieval.py --items 10000 --large 0  # quicker look

Random pairs stand in for a model's embeddings: image i is a random unit vector (d = 512, float32,
torch seed) and text i is image i plus Gaussian noise of about `--noise` times its norm,
renormalised, so recalls sit between 0 and 1.

Cases, each on the same pairs: `chunked` is `slip_eval.metrics.retrieval_metrics` with
`--chunk-size` query rows at a time; `full` is the same call with one chunk of all n rows, so the
n x n score matrix exists at once (4 n^2 bytes: 37 GiB at 100k, so it runs at `--items` only);
`naive` is the code one writes first, one matrix for both directions and boolean masks summed by
torch, which casts them to int64 (13 n^2 bytes at its peak). Every case must give the same
metrics.

Each case runs once in its own child process: wall time of the metric computation alone, peak RSS
of the child from wait4, and the child's RSS once its inputs exist, so "extra" is the memory the
metric itself needed.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

KS = (1, 5, 10)


def _inputs(n: int, dim: int, noise: float, seed: int):
    """Embedding pairs made in place, so no temporary raises the child's peak RSS."""
    import torch

    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, dim, generator=g)
    images.div_(images.norm(dim=1, keepdim=True))
    texts = torch.randn(n, dim, generator=g).mul_(noise / math.sqrt(dim)).add_(images)
    texts.div_(texts.norm(dim=1, keepdim=True))
    return images, texts


def _naive(images, texts) -> dict[str, float]:
    """Both directions from one n x n matrix, by the same rule (strictly higher scores count)."""
    scores = texts @ images.T
    positive = scores.diagonal().clone()
    text_to_image = (scores > positive[:, None]).sum(1) + 1
    image_to_text = (scores > positive[None, :]).sum(0) + 1
    del scores
    return {
        **_summary("image_retrieval", text_to_image),
        **_summary("text_retrieval", image_to_text),
    }


def _summary(prefix: str, ranks) -> dict[str, float]:
    ranks = ranks.double()
    metrics = {f"{prefix}_recall@{k}": (ranks <= k).double().mean().item() for k in KS}
    metrics[f"{prefix}_mrr"] = ranks.reciprocal().mean().item()
    metrics[f"{prefix}_median_rank"] = ranks.quantile(0.5).item()
    return metrics


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def _child(args: argparse.Namespace) -> None:
    import torch

    from slip_eval.metrics import retrieval_metrics

    images, texts = _inputs(args.child_items, args.dim, args.noise, args.seed)
    rss_inputs = _rss_bytes()
    start = time.perf_counter()
    if args.child == "naive":
        metrics = _naive(images, texts)
    else:
        chunk_size = args.child_items if args.child == "full" else args.chunk_size
        metrics = retrieval_metrics(images, texts, ks=KS, chunk_size=chunk_size)
    seconds = time.perf_counter() - start
    report = {
        "seconds": seconds,
        "rss_inputs": rss_inputs,
        "metrics": metrics,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report))


def _run(case: str, items: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", case, "--child-items", str(items)]
    for name in ("dim", "noise", "seed", "chunk_size"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{case} at {items} items failed (status {status})")
    report = json.loads(out.strip().splitlines()[-1])
    report["peak_rss"] = usage.ru_maxrss * 1024
    report["extra"] = report["peak_rss"] - report["rss_inputs"]
    report["case"], report["items"] = case, items
    print(f"  {case:8} {items:>7,} items: {report['seconds']:6.1f} s", flush=True)
    return report


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=30_000, help="side-by-side size")
    parser.add_argument("--large", type=int, default=100_000, help="chunked-only size; 0: skip")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--noise", type=float, default=6.0, help="noise norm over signal norm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--naive", action="store_true", help="also run the first-draft version")
    parser.add_argument("--child", choices=("naive", "full", "chunked"), help=argparse.SUPPRESS)
    parser.add_argument("--child-items", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    print(f"retrieval metrics, d={args.dim} float32, chunk {args.chunk_size} rows")
    cases = ["naive", "full", "chunked"] if args.naive else ["full", "chunked"]
    runs = [_run(case, args.items, args) for case in cases]
    if args.large:
        runs.append(_run("chunked", args.large, args))
    chunked = runs[len(cases) - 1]
    for run in runs[: len(cases) - 1]:
        worst = max(abs(run["metrics"][k] - v) for k, v in chunked["metrics"].items())
        print(f"\nlargest metric difference, {run['case']} against chunked: {worst:.2g}")
        if worst > 1 / args.items:
            raise SystemExit("the cases disagree by more than one rank flip in a metric")

    print(f"\ntorch threads: {chunked['threads']}\n")
    print("| case | items | time | peak RSS | extra over inputs | R@1 t→i | R@1 i→t | MRR t→i |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        m = run["metrics"]
        print(
            f"| {run['case']} | {run['items']:,} | {run['seconds']:.1f} s | "
            f"{_gib(run['peak_rss'])} | {_gib(run['extra'])} | "
            f"{m['image_retrieval_recall@1']:.4f} | {m['text_retrieval_recall@1']:.4f} | "
            f"{m['image_retrieval_mrr']:.4f} |"
        )
    print()
    for run in runs[: len(cases) - 1]:
        print(
            f"{run['case']} / chunked at {args.items:,}: "
            f"time {run['seconds'] / chunked['seconds']:.2f}x, "
            f"peak RSS {run['peak_rss'] / chunked['peak_rss']:.1f}x, "
            f"extra {run['extra'] / chunked['extra']:.1f}x"
        )
    if args.large:
        print(f"full at {args.large:,} would need {_gib(4 * args.large**2)} for the matrix alone")


if __name__ == "__main__":
    main()
