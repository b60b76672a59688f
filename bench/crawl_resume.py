"""Benchmark: how long a resumed crawl unit takes to read what its earlier runs settled.

    uv run python bench/crawl_resume.py                    # 1,000,000 URLs, 500 parts settled
    git archive OLD packages/slip-data/src | tar -x -C /tmp/old   # the code before, as anchor
    uv run python bench/crawl_resume.py --anchor-src /tmp/old/packages/slip-data/src

A unit of --urls distinct URLs of about 64 characters, of which the first --parts x --rows are
settled in --parts crawl part files of --rows rows each (written once under bench/_work/, no
image bytes), as a killed unit leaves them. Each child runs the read the crawl stage starts a
unit's run with (`read_latest` of the unit's URLs over its parts; graph_build's _measure: wall
time and peak RSS from wait4), the anchor's first; both must find the same rows.
"""

import argparse
import hashlib
import json
from pathlib import Path

from graph_build import _measure as measure  # bench/ is on the path
from shard_plan import anchored

WORK = Path(__file__).resolve().parent / "_work" / "crawl-resume"
COLUMNS = ("url", "status", "attempts", "source_sha256", "sha256", "width", "height")


def _urls(count: int) -> list[str]:
    return [f"https://m.media-amazon.com/images/I/{n:024d}._AC_SL1500_.jpg" for n in range(count)]


def write_parts(root: Path, *, urls: int, parts: int, rows: int) -> None:
    from slip_data.crawl.results import part_files, write_part

    if len(part_files(root)) == parts:
        return
    settled = _urls(min(urls, parts * rows))
    for seq in range(parts):
        mine = settled[seq * rows : (seq + 1) * rows]
        sha = [hashlib.sha256(url.encode()).hexdigest() for url in mine]
        write_part(
            root,
            seq,
            [
                {"url": url, "status": "ok", "attempts": 1, "source_sha256": digest}
                | {"sha256": digest, "width": 256, "height": 256, "image": None}
                for url, digest in zip(mine, sha, strict=True)
            ],
        )


def child(root: Path, urls: int) -> dict:
    import time

    from slip_data.crawl.results import all_part_paths, read_latest

    mine = _urls(urls)
    start = time.perf_counter()
    latest = read_latest(root, COLUMNS, urls=mine, paths=all_part_paths(root))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": latest.height, "digest": latest.hash_rows().sum()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=500)
    parser.add_argument("--rows", type=int, default=1_000, help="rows a part (the crawl's 1,000)")
    args = anchored(parser)
    if args.child:
        print(json.dumps(child(Path(args.child[0]), int(args.child[1]))))
        return

    root = WORK / f"p{args.parts}-r{args.rows}"
    write_parts(root, urls=args.urls, parts=args.parts, rows=args.rows)
    sources = {"anchor": args.anchor_src} if args.anchor_src else {}
    found = {}
    for name, src in {**sources, "ours": None}.items():
        result = measure(["--child", str(root), str(args.urls)], script=__file__, src=src)
        found[name] = result
        print(
            f"{name:6} {args.urls:,} URLs over {args.parts:,} parts of {args.rows:,} rows: "
            f"read_latest {result['seconds']:.2f} s ({result['rows']:,} rows), "
            f"peak RSS {result['peak_rss_mb']:,.0f} MB"
        )
    if "anchor" in found:
        anchor, ours = found["anchor"], found["ours"]
        if (anchor["rows"], anchor["digest"]) != (ours["rows"], ours["digest"]):
            raise SystemExit("bench/crawl_resume: the anchor and ours read different rows")
        print(f"ratio anchor / ours: {anchor['seconds'] / ours['seconds']:.1f}x")


if __name__ == "__main__":
    main()
