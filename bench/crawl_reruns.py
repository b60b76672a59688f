"""Benchmark: what the crawl's work units read of the earlier results when the crawl runs again.

    uv run python bench/crawl_reruns.py                    # 20,000 demo products, 4 then 3 units
    git archive OLD packages/slip-data/src | tar -x -C /tmp/old   # the code before, as anchor
    uv run python bench/crawl_reruns.py --anchor-src /tmp/old/packages/slip-data/src

One demo catalogue is fetched, graphed and crawled in --units work units once (kept under
bench/_work/crawl-reruns/). The crawl then runs again with everything settled, with --units and
with --rerun-units units, each run in its own child process (its units one after another in it;
graph_build's _measure: wall time and peak RSS from wait4). The child counts the crawl part files
its units open. With --anchor-src the same reruns run first on that source; a rerun must fetch
nothing either way.
"""

import argparse
import json
from pathlib import Path

from graph_build import _measure as measure  # bench/ is on the path
from shard_plan import anchored, demo_build

WORK = Path(__file__).resolve().parent / "_work" / "crawl-reruns"


def child(root: Path, units: int) -> dict:
    import polars as pl

    from slip_data import pipeline
    from slip_data.crawl import CrawlOptions
    from slip_data.crawl.results import part_files, result_dirs
    from slip_data.distribute import UnitOptions

    opened = []
    read_parquet = pl.read_parquet

    def counted(path, **kwargs):
        if Path(path).parent.name == "parts":
            opened.append(path)
        return read_parquet(path, **kwargs)

    pl.read_parquet = counted
    layout = pipeline.Layout(root)
    fetched = pipeline.crawl_images(
        layout, CrawlOptions(), UnitOptions(num_shards=units), quiet=True
    )
    parts = sum(len(part_files(folder)) for folder in result_dirs(layout.crawl))
    return {"opened": len(opened), "parts": parts, "fetched": sum(fetched.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--units", type=int, default=4)
    parser.add_argument("--rerun-units", type=int, default=3)
    args = anchored(parser)
    if args.child:
        print(json.dumps(child(Path(args.child[0]), int(args.child[1]))))
        return

    demo, crawl = ["--demo-products", str(args.products)], ["--num-shards", str(args.units)]
    root = demo_build(WORK / f"demo-{args.products}-u{args.units}", demo, crawl)
    sources = {"anchor": args.anchor_src} if args.anchor_src else {}
    for name, src in {**sources, "ours": None}.items():
        for units in (args.units, args.rerun_units):
            result = measure(["--child", str(root), str(units)], script=__file__, src=src)
            if result["fetched"]:
                raise SystemExit(f"bench/crawl_reruns: {name} fetched {result['fetched']} again")
            opened, parts = result["opened"], result["parts"]
            print(
                f"{name:6} rerun in {units} units: opened {opened:,} part files of {parts:,} "
                f"({opened / parts:.2f} per part), {result['wall_seconds']:.1f} s, "
                f"peak RSS {result['peak_rss_mb']:,.0f} MB"
            )


if __name__ == "__main__":
    main()
