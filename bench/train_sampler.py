"""Benchmark: slip-train's neighbour sampler against DGL 2.1's, seeds per second on the CPU.

    uv run python bench/train_sampler.py                 # 100k nodes, 2M edges, fanout [10, 10]
    uv run python bench/train_sampler.py --skip-dgl      # ours only
    uv run python bench/train_sampler.py --skip-torch-path  # not our torch path (the GPU's) too
    uv run python bench/train_sampler.py --rebuild-venv  # make the DGL venv again from scratch
    uv run python bench/train_sampler.py --skip-dgl --gpu  # ours on the GPU too, against the CPU

A random graph (numpy seed; no self loops, no repeated edge, each undirected edge stored once) is
cached as .npy under bench/_work/sampler/ (git-ignored). DGL cannot live beside the workspace's
torch, so the script makes a throwaway venv there, bench/_work/sampler/venv-dgl, with DGL 2.1 on
torch 2.2 from PyPI (about 5 GB: PyPI's torch 2.2 is the CUDA build, which runs on the CPU too),
and reuses it on later runs.

Each side runs in its own child process, on the same graph (both directions), all nodes as seeds,
batch 1024, drop_last off, the same torch thread count: one warm-up epoch, then the median of
`--epochs` timed ones; seeds/s = nodes / epoch time. Per-batch sizes come from the warm-up epoch.
Ours runs twice: on its CPU path (numba kernels, what the ratio is of; the warm-up epoch includes
loading or compiling them) and on its torch path (the GPU's, forced onto the CPU) for comparison.
The JSON report goes to bench/_work/sampler/report.json.

The two sizes are not the same thing: DGL's NeighborSampler samples hop 2 for every source node
of hop 1's block, the seeds included (a second, independent draw for them), and counts a block's
edges per hop; ours samples hop 2 only for the nodes hop 1 added (each node is sampled once).

Only the standard library is imported at the top: the DGL child runs this file in the DGL venv.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "_work" / "sampler"
VENV = WORK / "venv-dgl"
# What `import dgl` needed here (DGL 2.1 imports graphbolt, and with it all of these, at import):
# torch 2.2.1, not 2.2.2: the wheel ships graphbolt and dgl_sparse libraries for 2.2.0 and 2.2.1
# only; torch 2.2 was built against numpy 1; torchdata 0.7 still has the datapipes graphbolt uses.
DGL_PINS = (
    "torch==2.2.1",
    "dgl==2.1.0",
    "numpy<2",
    "torchdata==0.7.1",
    "pandas",
    "pyyaml",
    "pydantic>=2",
)
TARGET = 2.0  # slip-train's seeds/s over DGL's
NOISY = 1.3  # slowest over fastest timed epoch past which a side's figure is flagged as noisy


# ---------------------------------------------------------------------------- graph


def graph_dir(nodes: int, edges: int, seed: int) -> Path:
    return WORK / f"graph-{nodes}-{edges}-s{seed}"


def make_graph(nodes: int, edges: int, seed: int) -> Path:
    """`edges` distinct undirected edges (u < v) drawn uniformly, saved as src.npy, dst.npy."""
    import numpy as np

    where = graph_dir(nodes, edges, seed)
    if (where / "src.npy").exists() and (where / "dst.npy").exists():
        return where
    if edges > nodes * (nodes - 1) // 2:
        raise SystemExit(f"{edges:,} edges do not fit on {nodes:,} nodes")
    rng = np.random.default_rng(seed)
    keys = np.empty(0, dtype=np.int64)
    while keys.size < edges:
        draw = int((edges - keys.size) * 1.05) + 1000
        a = rng.integers(0, nodes, draw, dtype=np.int64)
        b = rng.integers(0, nodes, draw, dtype=np.int64)
        ok = a != b
        pair = np.minimum(a, b)[ok] * nodes + np.maximum(a, b)[ok]
        keys = np.unique(np.concatenate([keys, pair]))
    keys = rng.permutation(keys)[:edges]
    where.mkdir(parents=True, exist_ok=True)
    np.save(where / "src.npy", keys // nodes)
    np.save(where / "dst.npy", keys % nodes)
    return where


# ---------------------------------------------------------------------------- children


def _load(where: Path):
    import numpy as np
    import torch

    src = torch.from_numpy(np.load(where / "src.npy"))
    dst = torch.from_numpy(np.load(where / "dst.npy"))
    return src, dst


def _summary(times: list[float], warmup: float, nodes: int, sizes: list[tuple]) -> dict:
    """Epoch times and seeds/s; per-batch means of (nodes, edges, edges per hop, hop-2 frontier)."""
    median = statistics.median(times)
    per = list(zip(*sizes, strict=True))
    hops = len(per[2][0])
    return {
        "batches": len(sizes),
        "warmup_epoch_s": warmup,
        "epoch_s": times,
        "median_epoch_s": median,
        "seeds_per_s": nodes / median,
        "best_seeds_per_s": nodes / min(times),
        "noisy": max(times) > NOISY * min(times),
        "mean_nodes_per_batch": statistics.fmean(per[0]),
        "mean_edges_per_batch": statistics.fmean(per[1]),
        "mean_edges_per_hop": [statistics.fmean(h[i] for h in per[2]) for i in range(hops)],
        "mean_hop2_frontier": statistics.fmean(per[3]),
    }


def child_ours(
    where: Path,
    nodes: int,
    fanouts: list[int],
    batch_size: int,
    epochs: int,
    numba_path: bool,
    device: str = "cpu",
) -> dict:
    import numba
    import torch

    from slip_train import sampler as ours
    from slip_train.sampler import build_csr, sample_batch

    ours.NUMBA_ON_CPU = numba_path
    src, dst = _load(where)
    start = time.perf_counter()
    graph = build_csr(src.to(device), dst.to(device), nodes)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    build = time.perf_counter() - start
    seed_nodes = torch.arange(nodes, device=device)
    local = torch.full((nodes,), -1, dtype=torch.long, device=device)  # sample_batch's scratch

    def batches(number: int):
        """Epoch `number`: every node a seed once, shuffled by the epoch, `batch_size` seeds a
        batch and the last partial batch kept (DGL's drop_last off)."""
        generator = torch.Generator(device=device).manual_seed(number)
        order = seed_nodes[torch.randperm(nodes, generator=generator, device=device)]
        for first in range(0, nodes, batch_size):
            seeds = order[first : first + batch_size]
            yield sample_batch(graph, seeds, fanouts, generator=generator, local=local)

    def epoch(number: int, sizes: list | None) -> float:
        start = time.perf_counter()
        for batch in batches(number):
            if sizes is not None:
                _, dst_local = batch.edge_index
                hop1 = dst_local < batch.num_seeds
                first = batch.edge_index[0][hop1]
                added = torch.unique(first[first >= batch.num_seeds]).numel()
                edges = batch.edge_index.shape[1]
                hops = [int(hop1.sum()), edges - int(hop1.sum())]
                sizes.append((batch.nodes.numel(), edges, hops, added))
        sync()
        return time.perf_counter() - start

    sizes: list = []
    warmup = epoch(0, sizes)
    times = [epoch(number, None) for number in range(1, epochs + 1)]
    return {
        "torch": torch.__version__,
        "path": "numba" if numba_path else "torch",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "threads": torch.get_num_threads(),
        "build_s": build,
        **_summary(times, warmup, nodes, sizes),
    }


def child_dgl(where: Path, nodes: int, fanouts: list[int], batch_size: int, epochs: int) -> dict:
    import warnings

    import dgl
    import torch

    # num_workers=0: there are no worker processes to pin
    warnings.filterwarnings("ignore", message="Dataloader CPU affinity opt is not enabled")

    dgl.seed(0)
    torch.manual_seed(0)
    src, dst = _load(where)
    start = time.perf_counter()
    g = dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=nodes)
    g.create_formats_()
    build = time.perf_counter() - start
    sampler = dgl.dataloading.NeighborSampler(fanouts)
    loader = dgl.dataloading.DataLoader(
        g,
        torch.arange(nodes),
        sampler,
        batch_size=batch_size,
        shuffle=True,
        drop_last=False,
        num_workers=0,
    )

    def epoch(sizes: list | None) -> float:
        start = time.perf_counter()
        for input_nodes, _output_nodes, blocks in loader:
            if sizes is not None:
                hops = [block.num_edges() for block in reversed(blocks)]  # hop 1 first
                sizes.append((input_nodes.numel(), sum(hops), hops, blocks[0].num_dst_nodes()))
        return time.perf_counter() - start

    sizes: list = []
    warmup = epoch(sizes)
    times = [epoch(None) for _ in range(epochs)]
    return {
        "torch": torch.__version__,
        "dgl": dgl.__version__,
        "threads": torch.get_num_threads(),
        "build_s": build,
        **_summary(times, warmup, nodes, sizes),
    }


def run_child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    where, fanouts = Path(args.graph), [int(f) for f in args.fanouts.split(",")]
    setup = (where, args.nodes, fanouts, args.batch_size, args.epochs)
    if args.child == "dgl":
        result = child_dgl(*setup)
    else:
        device = "cuda" if args.child == "ours-cuda" else "cpu"
        result = child_ours(*setup, numba_path=args.child == "ours", device=device)
    Path(args.out).write_text(json.dumps(result))


# ---------------------------------------------------------------------------- DGL venv


def _probe(python: Path) -> tuple[bool, str]:
    """Whether `import dgl` works in the venv: (True, versions) or (False, the error's line)."""
    code = "import dgl, torch; print(f'dgl {dgl.__version__}, torch {torch.__version__}')"
    try:
        done = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, str(error)
    if done.returncode == 0:
        return True, done.stdout.strip().splitlines()[-1]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return False, lines[-1] if lines else f"exit status {done.returncode}"


def _base_python() -> str:
    """A python3 outside any venv (a venv made from a venv's python can lack pip)."""
    for candidate in (Path(sys.base_prefix) / "bin" / "python3", Path(sys.base_prefix) / "python"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("python3") or sys.executable


def ensure_dgl_venv(rebuild: bool) -> tuple[Path | None, str]:
    """The venv's python and its versions, or None and why `import dgl` cannot work here."""
    python = VENV / "bin" / "python"
    if rebuild:
        shutil.rmtree(VENV, ignore_errors=True)
    if python.exists():
        ok, said = _probe(python)
        if ok:
            return python, said
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / "pip-dgl.log"
    print(f"making {VENV.relative_to(ROOT)} (pip log: {log.name}) ...", flush=True)
    with log.open("w") as out:
        if not python.exists():
            made = subprocess.run(
                [_base_python(), "-m", "venv", str(VENV)], stdout=out, stderr=subprocess.STDOUT
            )
            if made.returncode != 0:
                return None, f"python3 -m venv failed (exit {made.returncode}; see {log})"
        installed = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", *DGL_PINS],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if installed.returncode != 0:
        errors = [line for line in log.read_text().splitlines() if line.startswith("ERROR")]
        why = errors[0] if errors else f"exit status {installed.returncode}"
        return None, f"pip install {' '.join(DGL_PINS)} failed: {why} (see {log})"
    ok, said = _probe(python)
    return (python, said) if ok else (None, f"import dgl failed: {said}")


# ---------------------------------------------------------------------------- parent


def _measure(python: Path | str, args: argparse.Namespace, kind: str, where: Path) -> dict:
    out = WORK / f"result-{kind}.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    command = [
        str(python),
        __file__,
        "--child",
        kind,
        "--graph",
        str(where),
        "--out",
        str(out),
        "--nodes",
        str(args.nodes),
        "--fanouts",
        args.fanouts,
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(command, env=env)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"the {kind} child failed with exit status {done.returncode}")
    return json.loads(out.read_text())


def _line(name: str, result: dict) -> str:
    hops = " + ".join(f"{e:,.0f}" for e in result["mean_edges_per_hop"])
    return (
        f"  {name:<26} {result['seeds_per_s']:>10,.0f} seeds/s   epoch median "
        f"{result['median_epoch_s']:.3f} s (each: "
        + ", ".join(f"{t:.3f}" for t in result["epoch_s"])
        + f"; warm-up {result['warmup_epoch_s']:.3f})\n"
        f"  {'':<26} per batch: {result['mean_nodes_per_batch']:,.0f} nodes, "
        f"{result['mean_edges_per_batch']:,.0f} edges ({hops} by hop), "
        f"hop-2 frontier {result['mean_hop2_frontier']:,.0f} nodes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=2_000_000)
    parser.add_argument("--graph-seed", type=int, default=0)
    parser.add_argument("--fanouts", default="10,10", help="comma-separated, hop 1 first")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up")
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch.set_num_threads (and OMP_NUM_THREADS) on both sides",
    )
    parser.add_argument("--skip-dgl", action="store_true", help="time ours only")
    parser.add_argument(
        "--skip-torch-path", action="store_true", help="do not time our torch path on the CPU"
    )
    parser.add_argument("--rebuild-venv", action="store_true", help="make venv-dgl anew")
    parser.add_argument(
        "--gpu", action="store_true", help="also time ours with the graph on the GPU (CUDA)"
    )
    parser.add_argument(
        "--child", choices=["ours", "ours-torch", "ours-cuda", "dgl"], help=argparse.SUPPRESS
    )
    parser.add_argument("--graph", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    WORK.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    where = make_graph(args.nodes, args.edges, args.graph_seed)
    print(
        f"graph: {args.nodes:,} nodes, {args.edges:,} undirected edges stored once "
        f"({2 * args.edges:,} directed), seed {args.graph_seed}, in {where.name} "
        f"({time.perf_counter() - start:.1f} s); fanouts [{args.fanouts}], "
        f"batch {args.batch_size}, {args.threads} threads, warm-up + median of {args.epochs}",
        flush=True,
    )

    report: dict = {
        "graph": {"nodes": args.nodes, "edges": args.edges, "seed": args.graph_seed},
        "fanouts": [int(f) for f in args.fanouts.split(",")],
        "batch_size": args.batch_size,
        "threads": args.threads,
        "timed_epochs": args.epochs,
        "dgl_pins": list(DGL_PINS),
    }
    dgl_result, skip = None, "--skip-dgl given"
    if not args.skip_dgl:
        python, said = ensure_dgl_venv(args.rebuild_venv)
        if python is None:
            skip = said
        else:
            print(f"DGL venv: {said}", flush=True)
            try:
                dgl_result = _measure(python, args, "dgl", where)
            except RuntimeError as error:
                skip = str(error)
    ours = _measure(sys.executable, args, "ours", where)
    torch_path = None
    if not args.skip_torch_path:
        torch_path = _measure(sys.executable, args, "ours-torch", where)

    gpu = _measure(sys.executable, args, "ours-cuda", where) if args.gpu else None

    print(_line(f"slip-train (numba {ours['numba']})", ours))
    if torch_path is not None:
        print(_line("slip-train, torch path", torch_path))
    report["slip_train"] = ours
    report["slip_train_torch_path"] = torch_path
    if gpu is not None:
        print(_line(f"slip-train on {gpu['device']}", gpu))
        report["slip_train_cuda"] = gpu
        report["ratio_cuda_to_numba"] = gpu["seeds_per_s"] / ours["seeds_per_s"]
        print(f"  ratio slip-train on the GPU / on the CPU: {report['ratio_cuda_to_numba']:.2f}x")
    if dgl_result is None:
        print(f"  DGL: skipped: {skip}")
        report["dgl"] = {"skipped": skip}
    else:
        ratio = ours["seeds_per_s"] / dgl_result["seeds_per_s"]
        label = f"DGL {dgl_result['dgl']} (torch {dgl_result['torch']})"
        print(_line(label, dgl_result))
        verdict = "meets" if ratio >= TARGET else "misses"
        best = ours["best_seeds_per_s"] / dgl_result["best_seeds_per_s"]
        print(
            f"  ratio slip-train / DGL: {ratio:.2f}x ({verdict} the {TARGET:g}x target); "
            f"{best:.2f}x on each side's fastest epoch"
        )
        if torch_path is not None:
            report["ratio_torch_path"] = torch_path["seeds_per_s"] / dgl_result["seeds_per_s"]
            print(f"  ratio slip-train's torch path / DGL: {report['ratio_torch_path']:.2f}x")
        report["dgl"] = dgl_result
        report["ratio"] = ratio
        report["ratio_best_epochs"] = best
        report["meets_target"] = ratio >= TARGET
    print(
        "  note: DGL samples hop 2 for every source node of hop 1's block, the seeds again "
        "included,\n  and counts edges per block (hop); slip-train samples hop 2 only for the "
        "nodes hop 1 added,\n  each node once, so its hop-2 frontier and edge count are smaller."
    )
    sides = (
        ("slip-train", ours), ("slip-train's torch path", torch_path),
        ("slip-train on the GPU", gpu), ("DGL", dgl_result),
    )  # fmt: skip
    noisy = [name for name, side in sides if side and side["noisy"]]
    if noisy:
        print(
            f"  NOISY: {' and '.join(noisy)} epoch times vary by more than {NOISY:g}x "
            "(something else is using the cores?): run again"
        )
    report["noisy"] = bool(noisy)
    report["target"] = TARGET
    (WORK / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {(WORK / 'report.json').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
