"""Benchmark: the crawl driver's URL list, streamed from nodes.parquet into the crawl folder for
each work unit to read its range from, against the Python list the driver built and sliced before
(the anchor) and the polars column it held before it streamed.

    uv run python bench/crawl_urls.py                         # 200,000 demo products, 16 units
    uv run python bench/crawl_urls.py --products 1000000 --runs 1
    uv run python bench/crawl_urls.py --synthetic 8000000 --runs 1   # the list alone, per URL

One demo catalogue is fetched and graphed once (kept under bench/_work/crawl-urls/). Each run is
a child process of its own (graph_build's _measure: wall time and peak RSS from wait4) that calls
the crawl driver with the engine replaced by a stub: it pickles each unit's arguments, as the
local engine's spawned processes and Ray receive them, and crawls nothing. The anchor is the
driver before the list was kept on disk (its body below, measured in the same run): every
distinct URL as a Python string, hashed as a list, and each unit's slice of it in the unit's
arguments. "polars" is `pipeline.crawl_images` with the URL list made as before it streamed
(below): the graph_id and image_url columns read whole, sorted and made distinct in
polars, then written. Ours runs `pipeline.crawl_images` twice: with no crawl folder (the list
file is written), then again (it is kept). Each row prints the child's peak RSS, the part of it
above the RSS the child started the driver from (imports) and that part per distinct URL, the
driver's time, and the bytes pickled for the units; the last lines the anchor's and polars'
figures over ours (medians of the runs). All must name the same list (its sha256).
"""

import argparse
import json
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from graph_build import _measure as measure  # bench/ is on the path

WORK = Path(__file__).resolve().parent / "_work" / "crawl-urls"


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def anchor_crawl_images(layout, options, units, *, quiet: bool = False) -> dict[str, int]:
    """`pipeline.crawl_images` before the list was kept on disk, but for the names it imports."""
    import polars as pl

    from slip_data.crawl.results import HASHED_URLS, UnitSpan, unit_dir
    from slip_data.distribute import unit_slice
    from slip_data.lock import hold
    from slip_data.pipeline import _check_graph, crawl_unit, run_units, serving

    def url_list_sha256(urls):
        import hashlib

        digest = hashlib.sha256()
        for start in range(0, len(urls), HASHED_URLS):
            digest.update(json.dumps(list(urls[start : start + HASHED_URLS])).encode())
        return digest.hexdigest()

    with hold(layout.root, shared=units.shard_index is not None):
        _check_graph(layout)
        urls = (
            pl.read_parquet(layout.graph / "nodes.parquet", columns=["graph_id", "image_url"])
            .sort("graph_id")["image_url"]
            .unique(maintain_order=True)
            .to_list()
        )
        count = units.num_shards
        unit_quiet = quiet or len(units.selected()) > 1
        named = url_list_sha256(urls) if count > 1 else None
        args = []
        for index in range(count):
            cut = unit_slice(len(urls), index, count)
            span = None
            if named is not None:
                span = UnitSpan(
                    root=layout.crawl, urls_sha256=named, start=cut.start, stop=cut.stop
                )
            args.append((urls[cut], unit_dir(layout.crawl, index, count), span))
        with serving(layout, layout.read_source()) as (_, host_map):
            shared = {"options": options, "host_map": host_map, "quiet": unit_quiet}
            results = run_units(crawl_unit, args, units, name="crawl", quiet=quiet, kwargs=shared)
        return dict(sum((Counter(counts) for counts in results.values()), Counter()))


def polars_url_list(layout) -> tuple[int, str]:
    """`pipeline._url_list` before it streamed: the column held whole in polars."""
    import polars as pl

    from slip_data.atomic import atomic_path
    from slip_data.crawl.results import (
        HASHED_URLS,
        URL_LIST,
        URLS_SHA256,
        _list_sha256,
        _recorded_sha256,
    )

    urls = (
        pl.read_parquet(layout.graph / "nodes.parquet", columns=["graph_id", "image_url"])
        .sort("graph_id")["image_url"]
        .unique(maintain_order=True)
    )
    _, named = _list_sha256([urls])
    path = layout.crawl / URL_LIST
    if _recorded_sha256(path) != named:
        with atomic_path(path) as tmp:
            urls.to_frame("url").write_parquet(
                tmp, row_group_size=HASHED_URLS, metadata={URLS_SHA256: named}
            )
    return len(urls), named


def child(kind: str, root: str, units: str) -> dict:
    """One run of the driver (`kind`: anchor, polars or ours) over the build folder `root`."""
    from slip_data import pipeline
    from slip_data.crawl import CrawlOptions
    from slip_data.distribute import UnitOptions

    sent = {"bytes": 0, "names": set()}

    def stub(func, args, options, *, kwargs, **_):
        """The engine, but for running the units: what it sends each, one at a time."""
        for index in options.selected():
            sent["bytes"] += len(pickle.dumps((func, args[index], kwargs)))
            span = args[index][-1]
            sent["names"].add(span.urls_sha256 if span else None)
        return {}

    if kind == "make-synthetic":  # here, not in the parent: a child's peak RSS counts from the
        make_synthetic(Path(root), int(units))  # parent's RSS at the fork
        return {}
    if kind.startswith("list-"):  # the URL list alone, on a synthetic graph (--synthetic)
        from slip_data.crawl.results import write_node_urls

        layout = pipeline.Layout(Path(root))
        start_mb, started = _rss_mb(), time.perf_counter()
        if kind == "list-polars":
            _, named = polars_url_list(layout)
        else:
            _, named = write_node_urls(layout.crawl, layout.graph / "nodes.parquet")
        seconds = time.perf_counter() - started
        return {"start_mb": start_mb, "driver_seconds": seconds, "sent_bytes": 0,
                "urls_sha256": named}  # fmt: skip
    pipeline.run_units = stub
    if kind == "polars":
        pipeline._url_list = polars_url_list
    driver = anchor_crawl_images if kind == "anchor" else pipeline.crawl_images
    start_mb, started = _rss_mb(), time.perf_counter()
    driver(
        pipeline.Layout(Path(root)), CrawlOptions(), UnitOptions(num_shards=int(units)), quiet=True
    )
    (named,) = sent["names"]
    return {
        "start_mb": start_mb,
        "driver_seconds": time.perf_counter() - started,
        "sent_bytes": sent["bytes"],
        "urls_sha256": named,
    }


def prepared(products: int) -> Path:
    """The demo build folder after fetch and graph, made once."""
    root = WORK / f"demo-{products}"
    if not (root / "graph" / "graph.json").is_file():
        demo = ["--source", "demo", "--categories", "all", "--demo-products", str(products)]
        for stage, extra in (("fetch", demo), ("graph", [])):
            command = [sys.executable, "-m", "slip_data", stage, "--out", str(root), *extra, "-q"]
            subprocess.run(command, check=True)
    return root


def synthetic(urls: int) -> Path:
    """A graph folder whose nodes.parquet holds `urls` nodes with distinct 64-character image
    URLs, in graph_id order and the graph stage's row groups, made once (in a child): the list's
    cost per URL, without a demo build."""
    root = WORK / f"synthetic-{urls}"
    if not (root / "graph" / "nodes.parquet").is_file():
        command = [sys.executable, __file__, "--child", "make-synthetic", str(root), str(urls)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return root


def make_synthetic(root: Path, urls: int) -> None:
    import polars as pl

    from slip_data.graph.build import NODE_GROUP_ROWS

    nodes = root / "graph" / "nodes.parquet"
    nodes.parent.mkdir(parents=True, exist_ok=True)
    ids = pl.int_range(urls, dtype=pl.Int64, eager=True)
    url = "https://m.media-amazon.com/images/I/" + ids.cast(pl.String).str.zfill(20) + ".jpg"
    frame = pl.DataFrame({"graph_id": ids, "image_url": url})
    frame.write_parquet(nodes, row_group_size=NODE_GROUP_ROWS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3, help="runs of each way")
    parser.add_argument(
        "--synthetic",
        type=int,
        help="instead, the URL list alone (ours against polars) over this many synthetic URLs",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # kind, build folder, units
        print(json.dumps(child(*args.child)))
        return
    if args.synthetic:
        list_alone(synthetic(args.synthetic), args.synthetic, args.runs)
        return

    import polars as pl

    root = prepared(args.products)
    column = pl.scan_parquet(root / "graph" / "nodes.parquet").select("image_url")
    nodes, urls = column.select(pl.len(), pl.col("image_url").n_unique()).collect().row(0)
    print(f"demo {args.products:,} products: {nodes:,} nodes, {urls:,} distinct URLs, "
          f"{args.units} units")  # fmt: skip
    seen: dict[str, list[dict]] = {}
    for run in range(args.runs):
        for kind in ("anchor", "polars", "ours", "ours-rerun"):
            if kind != "ours-rerun":
                shutil.rmtree(root / "crawl", ignore_errors=True)
            result = measure(["--child", kind.split("-")[0], str(root), str(args.units)],
                             script=__file__)  # fmt: skip
            if result["urls_sha256"] != seen.get("anchor", [result])[0]["urls_sha256"]:
                raise SystemExit(f"bench/crawl_urls: {kind} names another URL list")
            result["above_mb"] = result["peak_rss_mb"] - result["start_mb"]
            print(f"run {run + 1} {kind:10}: peak RSS {result['peak_rss_mb']:6,.0f} MB, "
                  f"{result['above_mb']:6,.0f} MB above the {result['start_mb']:,.0f} MB it "
                  f"started from ({result['above_mb'] * 2**20 / urls:,.0f} B a URL), driver "
                  f"{result['driver_seconds']:5.1f} s of {result['wall_seconds']:5.1f} s; "
                  f"sent to the units {result['sent_bytes']:,} B")  # fmt: skip
            seen.setdefault(kind, []).append(result)

    def ratio(key: str, than: str) -> float:
        them, ours = ([result[key] for result in seen[kind]] for kind in (than, "ours"))
        return statistics.median(them) / statistics.median(ours)

    for than in ("anchor", "polars"):
        print(f"{than} over ours (medians of {args.runs} runs): peak RSS "
              f"{ratio('peak_rss_mb', than):.2f}x, above the start {ratio('above_mb', than):.2f}x, "
              f"driver time {ratio('driver_seconds', than):.2f}x, sent to the units "
              f"{ratio('sent_bytes', than):,.0f}x")  # fmt: skip


def list_alone(root: Path, urls: int, runs: int) -> None:
    """The URL list's peak above imports and time, ours against the polars column (the anchor)."""
    seen: dict[str, list[dict]] = {}
    for run in range(runs):
        for kind in ("list-polars", "list-ours"):
            shutil.rmtree(root / "crawl", ignore_errors=True)
            result = measure(["--child", kind, str(root), "1"], script=__file__)
            above = result["peak_rss_mb"] - result["start_mb"]
            seconds = result["driver_seconds"]
            print(f"run {run + 1} {kind:11}: {above:6,.0f} MB above imports "
                  f"({above * 2**20 / urls:,.0f} B a URL), {seconds:5.1f} s")  # fmt: skip
            seen.setdefault(kind, []).append(result | {"above_mb": above})
    if len({result["urls_sha256"] for results in seen.values() for result in results}) != 1:
        raise SystemExit("bench/crawl_urls: the two ways name different lists")
    medians = {
        kind: {
            key: statistics.median(r[key] for r in results)
            for key in ("above_mb", "driver_seconds")
        }
        for kind, results in seen.items()
    }
    polars, ours = medians["list-polars"], medians["list-ours"]
    print(f"{urls:,} synthetic URLs, polars over ours (medians of {runs} runs): above imports "
          f"{polars['above_mb'] / ours['above_mb']:.2f}x, time "
          f"{polars['driver_seconds'] / ours['driver_seconds']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
