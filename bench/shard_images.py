"""Benchmark: the shard stage's image lookup per node file, with the crawl's part index against
reading every crawl part (the anchor, what each lookup did before).

    uv run python bench/shard_images.py           # 100,000 demo products: ~8 min on 2 cores
    uv run python bench/shard_images.py --products 20000

One demo catalogue is fetched, graphed and crawled once (kept under bench/_work/shard_images);
then, for every node file of the shard plan, its images are looked up both ways, timed, and
checked equal. The crawl writes URLs in node order, so a node file's images sit in a few parts:
the index turns a lookup's reads from the whole crawl into those parts.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work" / "shard_images"


def image_parts(crawl_root: Path):
    """(sha256, part) for every row with an image sha256: each image's bytes are stored in one
    of the parts that name its sha256. Read from the small columns only. The crawl-wide index
    this bench looks images up with (the shard stage keeps these pairs in its plan instead)."""
    import polars as pl

    from slip_data.crawl.results import read_parts

    keep = pl.col("sha256").is_not_null()
    return read_parts(crawl_root, ["sha256"], keep, with_part=True).unique()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    args = parser.parse_args()

    from slip_data.crawl.results import part_files, result_dirs, stored_images
    from slip_data.pipeline import Layout, _shard_plan
    from slip_data.shard.writer import ShardOptions

    root = WORK / f"demo-{args.products}"
    demo = ["--source", "demo", "--categories", "all", "--demo-products", str(args.products)]
    for stage, extra in (("fetch", demo), ("graph", []), ("crawl", [])):  # each skips what is done
        command = [sys.executable, "-m", "slip_data", stage, "--out", str(root), *extra, "--quiet"]
        subprocess.run(command, check=True)
    layout = Layout(root)
    plan = _shard_plan(layout, ShardOptions())
    parts = sum(len(part_files(folder)) for folder in result_dirs(layout.crawl))
    start = time.perf_counter()
    index = image_parts(layout.crawl)
    index_s = time.perf_counter() - start
    everywhere, indexed = stored_images(layout.crawl), stored_images(layout.crawl, index)
    anchor, ours, opened = [], [], []
    for file in range(plan.num_files):
        shas = plan.rows(file)["image_sha256"].drop_nulls().unique()
        start = time.perf_counter()
        expected = everywhere(shas)
        anchor.append(time.perf_counter() - start)
        start = time.perf_counter()
        found = indexed(shas)
        ours.append(time.perf_counter() - start)
        if not found.sort("sha256").equals(expected.sort("sha256")):
            raise SystemExit(f"bench/shard_images: node file {file}: the lookups differ")
        opened.append(index.filter(index["sha256"].is_in(shas.implode()))["part"].n_unique())
    total_anchor, total_ours = sum(anchor), sum(ours) + index_s
    print(f"demo {args.products} products: {plan.num_files} node files, {parts} crawl parts")
    print(f"index  (sha256, part) of the crawl: {index_s:.2f} s, {index.height} rows")
    print(f"lookup every part (anchor): {statistics.median(anchor):.2f} s per node file, "
          f"{total_anchor:.1f} s in all")  # fmt: skip
    print(f"lookup with the index: {statistics.median(ours):.2f} s per node file, opening "
          f"{statistics.median(opened):.0f} of {parts} parts; {total_ours:.1f} s in all with the "
          f"index: ratio {total_anchor / total_ours:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
