"""Benchmark: the training graph built once by streaming and memory-mapped, against the in-memory
build every process ran before, in peak RSS and time.

    uv run python bench/train_csr.py                      # 200,000 demo products, mean degree 100
    uv run python bench/train_csr.py --products 20000     # a quicker look

Demo shards are built by slip-data under bench/_work/train-csr/ (git-ignored) and reused. Each
measurement runs in its own child process, so its time and peak RSS (wait4's ru_maxrss) are its
own; every child imports the same modules and loads the build's numba kernels first (a fixed
cost of tens of MB), and "imports" is a child that stops there:

- anchor: what load_train_data did in every process before: the split and image columns and all
  of edges.parquet read, both directions sorted into a CSR of int64 (that code, kept here);
- first process: slip_train.graph_cache.load_graph on an empty folder: the node mask and the
  edges read by batches, counted, filled into an int32 CSR, saved, then mapped and checked;
- each later process: load_graph on the saved files: mapped and checked against their sha256;
  its resident memory above the imports' is split into anonymous (its own) and file-backed (the
  page cache's, one copy for every process of the machine that maps the files).

The anchor's CSR and the mapped one must be the same graph (their arrays' sha256 as int64).
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work" / "train-csr"
SPLIT = "train"


def demo_shards(products: int, degree: int) -> Path:
    out = WORK / f"demo-{products}-d{degree}"
    if not (out / "shards" / "manifest.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "slip_data", "build", "--source", "demo", "--categories", "all",
             "--demo-products", str(products), "--demo-mean-degree", str(degree),
             "--out", str(out), "--quiet"],
            check=True,
        )  # fmt: skip
    return out / "shards"


def _digest(indptr, indices) -> str:
    """One sha256 over both arrays as int64, whatever their stored dtype."""
    digest = hashlib.sha256(indptr.long().numpy())
    digest.update(indices.long().numpy())
    return digest.hexdigest()


def _resident() -> dict:
    """This process's resident memory now, anonymous and file-backed, in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile")}


def child(kind: str, shards_dir: Path, folder: Path) -> dict:
    import numpy as np
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    import torch

    from slip_train.graph_cache import load_graph
    from slip_train.sampler import csr_arrays
    from slip_train.shards import open_shards

    edge = np.zeros(1, np.int64)
    edge.flags.writeable = False  # as Arrow's batches are: numba compiles for read-only arrays
    csr_arrays(lambda: [(edge, edge)], 1)  # numba's kernels loaded: a fixed cost, not the graph's
    shards = open_shards(shards_dir)
    start = time.perf_counter()
    if kind == "imports":
        return {"seconds": 0.0, **_resident()}
    if kind == "anchor":
        nodes = ds.dataset(shards.node_files, format="parquet")
        columns = nodes.to_table(columns=["split", "image_sha256"])
        keep = torch.from_numpy(columns["split"].to_numpy(zero_copy_only=False) == SPLIT)
        keep &= torch.from_numpy(columns["image_sha256"].is_valid().to_numpy(zero_copy_only=False))
        edges = pq.read_table(shards.verified(shards.folder / "edges.parquet"))
        src = torch.tensor(edges["src"].to_numpy())
        dst = torch.tensor(edges["dst"].to_numpy())
        inside = keep[src] & keep[dst]
        src, dst = src[inside], dst[inside]
        both_src, both_dst = torch.cat([src, dst]), torch.cat([dst, src])
        order = torch.argsort(both_dst * shards.num_nodes + both_src)
        indptr = torch.zeros(shards.num_nodes + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(torch.bincount(both_dst, minlength=shards.num_nodes), 0)
        indices = both_src[order]
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "entries": indices.numel(), "graph": _digest(indptr, indices)}
    graph, _ = load_graph(shards, SPLIT, folder)
    seconds = time.perf_counter() - start
    resident = _resident()
    return {"seconds": seconds, "graph": _digest(graph.indptr, graph.indices), **resident}


def _measure(args: list[str]) -> dict:
    """This script as a child: its JSON result plus wall time and peak RSS."""
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"child {args} failed with status {status}")
    return json.loads(out) | {"peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--mean-degree", type=int, default=100)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, shards_dir, folder = args.child
        print(json.dumps(child(kind, Path(shards_dir), Path(folder))))
        return

    shards = demo_shards(args.products, args.mean_degree)
    folder = WORK / "graph"
    shutil.rmtree(folder, ignore_errors=True)
    runs = {}
    for kind in ("imports", "anchor", "first", "later"):
        runs[kind] = _measure(["--child", kind, str(shards), str(folder)])
    if not runs["anchor"]["graph"] == runs["first"]["graph"] == runs["later"]["graph"]:
        raise SystemExit("the mapped graph is not the anchor's")
    base = runs["imports"]["peak_rss_mb"]
    manifest = json.loads((shards / "manifest.json").read_text())
    files = sum(path.stat().st_size for path in folder.glob("*.npy")) / 2**20
    print(
        f"training graph of {manifest['counts']['nodes']:,} demo products, "
        f"{manifest['counts']['edges']:,} stored edges, {runs['anchor']['entries']:,} CSR entries "
        f"(both directions, split {SPLIT!r}); saved arrays {files:,.0f} MB; "
        f"imports alone: peak RSS {base:,.0f} MB"
    )
    names = {"anchor": "anchor: in memory", "first": "first process: build + map",
             "later": "each later process: map"}  # fmt: skip
    for kind, name in names.items():
        run = runs[kind]
        line = (
            f"  {name:<28} {run['seconds']:6.2f} s, peak RSS {run['peak_rss_mb']:7,.0f} MB "
            f"({run['peak_rss_mb'] - base:7,.0f} MB above imports)"
        )
        if kind == "later":
            anon, file = (run[key] - runs["imports"][key] for key in ("RssAnon", "RssFile"))
            line += f"; resident above imports: {round(anon):,} MB own, {round(file):,} MB"
            line += " file-backed"
        print(line)
    above = {kind: runs[kind]["peak_rss_mb"] - base for kind in names}
    print(
        f"  ratios to the anchor: peak above imports {above['anchor'] / above['first']:.1f}x "
        f"(first), {above['anchor'] / above['later']:.1f}x (later); "
        f"time {runs['anchor']['seconds'] / runs['first']['seconds']:.1f}x (first), "
        f"{runs['anchor']['seconds'] / runs['later']['seconds']:.1f}x (later)"
    )


if __name__ == "__main__":
    main()
