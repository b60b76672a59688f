"""Benchmark: the graph stage's peak RSS and time against the number of reviews, up to 100M.

    uv run python bench/graph_scale.py                          # 10M, 50M and 100M reviews
    uv run python bench/graph_scale.py --sizes 10,20 --memory-gb 2
    uv run python bench/graph_scale.py --out scale.json --plot docs/img/graph_scale.png

The demo generator made at most 1M products (10M reviews) per catalogue when this was written (it
now draws larger ones in blocks itself; the committed figures are of this concatenation), so a
catalogue of N x 10M reviews is N independent 10M-review catalogues (seeds 0 .. N-1), their raw
files concatenated per category (gzip members): their disjoint union (ids from each seed's own key,
so disjoint but for chance), the same reviews per product, pairs per review and degrees at every
size, which isolates how the stage scales from what the data looks like. Each size's parse + build
runs in its own child (graph_build.py's), whose peak RSS comes from wait4. The anchor is the
smallest size, measured in the same run: each larger size prints its time over the anchor's,
against n and n log n. Generated data is cached under bench/_work/graph/scale/ (git-ignored);
the parsed and built files of a size are removed after it is measured (`--keep` keeps them).
"""

import argparse
import json
import math
import shutil
from pathlib import Path

from graph_build import CAP, REVIEWS_PER_PRODUCT, WORK, _measure

SCALE = WORK / "scale"
GRAPH_BUILD = Path(__file__).resolve().parent / "graph_build.py"
CATALOGUE_REVIEWS = 10_000_000  # the generator's most: 1M products, 10 reviews each


def _seed_catalogue(seed: int) -> Path:
    from slip_data.sources.demo import DemoSpec, write_demo_catalogue

    root = SCALE / f"seed{seed}"
    products = CATALOGUE_REVIEWS // REVIEWS_PER_PRODUCT
    spec = DemoSpec(products=products, reviews_per_product=REVIEWS_PER_PRODUCT, seed=seed)
    write_demo_catalogue(spec, root, quiet=False)
    return root


def _catalogue(parts: int) -> Path:
    """The raw files of `parts` seed catalogues, concatenated per category (made once)."""
    from slip_data.atomic import atomic_path, write_json

    seeds = [_seed_catalogue(seed) for seed in range(parts)]
    if parts == 1:
        return seeds[0]
    root = SCALE / f"demo-{parts * CATALOGUE_REVIEWS}"
    marker = root / "concatenated.json"
    if marker.is_file() and json.loads(marker.read_text()) == {"seeds": parts}:
        return root
    for folder in ("meta_categories", "review_categories"):
        for first in sorted((seeds[0] / folder).glob("*.jsonl.gz")):
            with atomic_path(root / folder / first.name) as tmp, tmp.open("wb") as out:
                for seed_root in seeds:
                    with (seed_root / folder / first.name).open("rb") as part:
                        shutil.copyfileobj(part, out, 1 << 24)
    write_json(marker, {"seeds": parts})
    return root


def _disk_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,100", help="millions of reviews, multiples of 10")
    parser.add_argument("--memory-gb", type=float, default=2.0, help="the stage's --memory-gb")
    parser.add_argument("--keep", action="store_true", help="keep each size's graph folder")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--plot", type=Path, help="also plot peak RSS and time against reviews")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if any(size % 10 or size <= 0 for size in sizes):
        raise SystemExit(f"--sizes {args.sizes!r}: each a positive multiple of 10 (millions)")

    rows = []
    for size in sorted(sizes):
        root = _catalogue(size // 10)
        graph_dir = SCALE / f"graph-{size}M"
        child = ["--child", "ours", str(root), str(graph_dir), "full", str(CAP)]
        result = _measure([*child, str(args.memory_gb)], script=str(GRAPH_BUILD))
        result["graph_dir_mb"] = _disk_mb(graph_dir)
        result["raw_mb"] = _disk_mb(root)
        if not args.keep:
            shutil.rmtree(graph_dir)
        rows.append(result)
        anchor = rows[0]
        n = result["reviews"] / anchor["reviews"]
        n_log_n = n * math.log(result["reviews"]) / math.log(anchor["reviews"])
        print(
            f"{result['reviews']:>12,} reviews -> {result['nodes']:,} nodes, {result['edges']:,} "
            f"edges: {result['seconds']:,.0f} s in stage, "
            f"peak RSS {result['peak_rss_mb']:,.0f} MB, "
            f"graph folder {result['graph_dir_mb']:,.0f} MB; time / anchor's "
            f"{result['seconds'] / anchor['seconds']:.2f}x (n: {n:.2f}x, n log n: {n_log_n:.2f}x)",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps({"memory_gb": args.memory_gb, "rows": rows}, indent=2))
    if args.plot:
        _plot(rows, args.plot, args.memory_gb)


def _plot(rows: list[dict], path: Path, memory_gb: float) -> None:
    """Peak RSS and stage time against reviews, time beside n and n log n through the anchor."""
    from slip_eval.figures import pyplot, save

    plt = pyplot()
    reviews = [row["reviews"] / 1e6 for row in rows]
    figure, (memory, time) = plt.subplots(1, 2, figsize=(9, 3.6))
    memory.plot(reviews, [row["peak_rss_mb"] / 1024 for row in rows], "o-", label="peak RSS")
    memory.axhline(6, color="grey", linestyle="--", label="target, 6 GB")
    memory.set(xlabel="demo reviews (millions)", ylabel="GB", ylim=(0, None))
    memory.set_title(f"graph stage, --memory-gb {memory_gb:g}", fontsize=10)
    memory.legend(fontsize=8)
    anchor = rows[0]
    seconds = [row["seconds"] for row in rows]
    linear = [anchor["seconds"] * row["reviews"] / anchor["reviews"] for row in rows]
    n_log_n = [
        value * math.log(row["reviews"]) / math.log(anchor["reviews"])
        for value, row in zip(linear, rows, strict=True)
    ]
    time.plot(reviews, seconds, "o-", label="measured")
    time.plot(reviews, linear, ":", color="grey", label="n, from the first size")
    time.plot(reviews, n_log_n, "--", color="grey", label="n log n, from the first size")
    time.set(xlabel="demo reviews (millions)", ylabel="seconds, parse + build", ylim=(0, None))
    time.legend(fontsize=8)
    figure.tight_layout()
    save(figure, path)


if __name__ == "__main__":
    main()
