"""End-to-end crawl tests against a local aiohttp server on 127.0.0.1 (no other traffic)."""

import asyncio
import contextlib
import io
import logging
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
import pytest
from aiohttp import web
from PIL import Image
from servers import ThreadedServer
from url_names import listed_sha256

from slip_data.crawl import RETRYABLE, CrawlOptions, crawl, load_results, results
from slip_data.crawl.decode import decode_image
from slip_data.crawl.results import (
    MADE_FOR,
    UnitSpan,
    read_latest,
    read_parts,
    span_parts,
    unit_dir,
    write_part,
)
from slip_data.crawl.results import stored_images as image_loader
from slip_data.distribute import unit_slice

HOST = "images.slip-demo.invalid"
FAST = CrawlOptions(
    timeout=1.5,
    attempts=2,
    backoff_base=0.01,
    backoff_max=2.0,
    max_bytes=1_000_000,
    workers=2,
    part_size=4,
)


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    img = Image.new("RGB", (width, height))
    img.putdata(
        [
            ((x * 7 + seed) % 256, (y * 3) % 256, (x + y + seed) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return out.getvalue()


def png_rgba(width: int, height: int) -> bytes:
    img = Image.new("RGBA", (width, height), (200, 30, 30, 255))
    img.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header claims huge dimensions: tiny file, enormous decode."""
    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, "PNG")
    data = bytearray(out.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


GOOD = jpeg(600, 400, seed=1)
DUP = jpeg(300, 500, seed=2)
SMALL = jpeg(100, 80, seed=3)
PNG = png_rgba(500, 300)


def noise_jpeg(side: int) -> bytes:
    """Random pixels: a JPEG that compresses badly, so each fetch moves many bytes."""
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), random.Random(4).randbytes(side * side * 3)).save(
        out, "JPEG", quality=95
    )
    return out.getvalue()


NOISE = noise_jpeg(160)


@dataclass
class Server:
    """Serves the test catalogue and counts hits per path."""

    port: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def url(self, path: str) -> str:
        """Through host_map: the port in the URL is ignored, the mapped one is used."""
        return f"http://{HOST}{path}"

    def local(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def host_map(self) -> dict[str, tuple[str, int]]:
        return {HOST: ("127.0.0.1", self.port)}

    def app(self) -> web.Application:
        @web.middleware
        async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
            self.hits[request.path] += 1
            self.times[request.path].append(time.monotonic())
            return await handler(request)

        def image(body: bytes, kind: str = "image/jpeg", **headers: str) -> web.Response:
            return web.Response(body=body, content_type=kind, headers=headers)

        async def stream(request: web.Request, chunk: bytes, pause: float) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
            await response.prepare(request)
            try:
                await response.write(b"\xff\xd8\xff\xe0" + b"\0" * 8)
                for _ in range(600):
                    await response.write(chunk)
                    await asyncio.sleep(pause)
            except ConnectionError:
                pass  # the crawler hung up, as it should
            return response

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(0.1)
            return image(SMALL)

        async def flaky(request: web.Request) -> web.Response:
            if self.hits[request.path] == 1:
                return web.Response(status=503, headers={"Retry-After": "1"})
            return image(GOOD)

        def redirect(target: str) -> web.Response:
            return web.Response(status=302, headers={"Location": target})

        routes = {
            "/good.jpg": lambda r: image(GOOD),
            # distinct bytes per query (trailing bytes after the JPEG end), one decoded image
            "/noise.jpg": lambda r: image(NOISE + r.query_string.encode()),
            "/good.png": lambda r: image(PNG, "image/png"),
            "/small.jpg": lambda r: image(SMALL),
            "/dup-a.jpg": lambda r: image(DUP),
            "/dup-b.jpg": lambda r: image(DUP, "application/octet-stream"),
            "/error500": lambda r: web.Response(status=500),
            "/missing": lambda r: web.Response(status=404),
            "/flaky503": flaky,
            "/busy429": lambda r: web.Response(status=429),
            "/drip": lambda r: stream(r, b"\0", 1.0),
            "/endless": lambda r: stream(r, b"\0" * 65536, 0),
            "/oversized": lambda r: image(GOOD + b"\0" * 1_200_000),
            "/lie.jpg": lambda r: image(b"<!doctype html><html>not an image</html>"),
            "/truncated.jpg": lambda r: image(GOOD[: len(GOOD) // 2]),
            "/bomb.png": lambda r: image(png_bomb(100_000, 100_000), "image/png"),
            "/loop": lambda r: redirect("/loop"),
            "/to-file": lambda r: redirect("file:///etc/passwd"),
            "/to-metadata": lambda r: redirect("http://169.254.169.254/latest/meta-data/"),
            "/to-localhost": lambda r: redirect(f"http://localhost:{self.port}/good.jpg"),
            "/hop": lambda r: redirect("/small.jpg"),
            "/slow.jpg": slow,
            "/noai.jpg": lambda r: image(GOOD, **{"X-Robots-Tag": "noai, noimageai"}),
            "/other-bot.jpg": lambda r: image(GOOD, **{"X-Robots-Tag": "otherbot: noindex"}),
        }

        async def dispatch(request: web.Request) -> web.StreamResponse:
            handler = routes.get(request.path)
            if handler is None:
                raise web.HTTPNotFound()
            result = handler(request)
            return await result if asyncio.iscoroutine(result) else result

        app = web.Application(middlewares=[count])
        app.router.add_get("/{tail:.*}", dispatch)
        return app


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    state = Server()
    with ThreadedServer(state.app) as running:
        state.port = running.port
        yield state


EXPECTED = {
    "/good.jpg": "ok",
    "/good.png": "ok",
    "/small.jpg": "ok",
    "/dup-a.jpg": "ok",
    "/dup-b.jpg": "ok",
    "/error500": "http_500",
    "/missing": "http_404",
    "/flaky503": "ok",
    "/busy429": "http_429",
    "/drip": "timeout",
    "/endless": "too_large",
    "/oversized": "too_large",
    "/lie.jpg": "not_image",
    "/truncated.jpg": "decode_error",
    "/bomb.png": "bomb",
    "/loop": "too_many_redirects",
    "/to-file": "blocked",
    "/to-metadata": "blocked",
    "/to-localhost": "blocked",
    "/hop": "ok",
    "/noai.jpg": "opted_out",
    "/other-bot.jpg": "ok",
}


def statuses(frame: pl.DataFrame) -> dict[str, str]:
    return dict(zip(frame["url"], frame["status"], strict=True))


def test_crawl_statuses_sizes_and_rerun(server: Server, tmp_path: Path) -> None:
    urls = [server.url(path) for path in EXPECTED]
    urls += [server.url("/good.jpg"), "ftp://example.com/a.jpg"]  # a repeat, a bad scheme
    start = time.monotonic()
    counts = crawl(urls, tmp_path, FAST, host_map=server.host_map, quiet=True)
    elapsed = time.monotonic() - start

    results = load_results(tmp_path)
    got = statuses(results)
    assert got == {server.url(p): s for p, s in EXPECTED.items()} | {
        "ftp://example.com/a.jpg": "blocked"
    }
    assert sum(counts.values()) == len(EXPECTED) + 1
    assert counts["ok"] == list(EXPECTED.values()).count("ok")
    assert elapsed < 15  # drip is abandoned at the deadline, not after 600 s

    ok = results.filter(pl.col("status") == "ok")
    for row in ok.iter_rows(named=True):
        img = Image.open(io.BytesIO(row["image"]))
        assert img.format == "JPEG" and img.mode == "RGB"
        assert (img.width, img.height) == (row["width"], row["height"])
        assert max(img.size) <= FAST.max_side
    sizes = {u: (w, h) for u, w, h in ok.select("url", "width", "height").iter_rows()}
    assert sizes[server.url("/good.jpg")] == (256, 171)  # ratio kept
    assert sizes[server.url("/small.jpg")] == (100, 80)  # never upscaled
    shas = dict(zip(ok["url"], ok["sha256"], strict=True))
    assert shas[server.url("/dup-a.jpg")] == shas[server.url("/dup-b.jpg")]
    assert results.filter(pl.col("status") != "ok")["image"].null_count() == len(results) - len(ok)

    # Retry-After: 1 was honoured, and the 500 and 429 used all their tries.
    first, second = server.times["/flaky503"][:2]
    assert second - first >= 0.9
    attempts = dict(zip(results["url"], results["attempts"], strict=True))
    assert attempts[server.url("/error500")] == FAST.attempts
    assert attempts[server.url("/flaky503")] == 2
    assert attempts[server.url("/missing")] == 1

    # A rerun fetches nothing already settled and retries only the retryable failures.
    before = Counter(server.hits)
    counts = crawl(urls, tmp_path, FAST, host_map=server.host_map, quiet=True)
    fetched = {path for path in EXPECTED if server.hits[path] > before[path]}
    retryable = {path for path, status in EXPECTED.items() if status in RETRYABLE}
    assert fetched == retryable == {"/error500", "/busy429", "/drip"}
    assert sum(counts.values()) == len(retryable)
    again = load_results(tmp_path)
    assert len(again) == len(results)
    assert (
        dict(zip(again["url"], again["attempts"], strict=True))[server.url("/error500")]
        == 2 * FAST.attempts
    )


def test_same_image_same_bytes(server: Server, tmp_path: Path) -> None:
    url = server.url("/good.jpg")
    for name in ("a", "b"):
        crawl([url], tmp_path / name, FAST, host_map=server.host_map, quiet=True)
    a, b = (load_results(tmp_path / name)["image"][0] for name in ("a", "b"))
    direct = decode_image(
        GOOD, max_side=FAST.max_side, quality=FAST.jpeg_quality, max_pixels=FAST.max_pixels
    )
    assert a == b == direct.data


def stored_images(crawl_dir: Path) -> int:
    """Image payloads in the part files, however many URLs refer to them."""
    parts = sorted((crawl_dir / "parts").glob("part-*.parquet"))
    return sum(pl.read_parquet(p, columns=["image"])["image"].is_not_null().sum() for p in parts)


def test_identical_images_are_stored_once(server: Server, tmp_path: Path) -> None:
    urls = [server.url("/dup-a.jpg"), server.url("/dup-b.jpg"), server.url("/good.jpg")]
    crawl(urls, tmp_path, FAST, host_map=server.host_map, quiet=True)
    assert stored_images(tmp_path) == 2
    results = load_results(tmp_path)
    by_url = {row["url"]: row for row in results.iter_rows(named=True)}
    a, b = by_url[urls[0]], by_url[urls[1]]
    assert a["status"] == b["status"] == "ok"
    assert a["source_sha256"] == b["source_sha256"] and a["sha256"] == b["sha256"]
    assert a["image"] == b["image"] is not None  # every URL still gets its bytes


def test_a_duplicate_found_in_a_later_run_is_not_stored_again(
    server: Server, tmp_path: Path
) -> None:
    crawl([server.url("/dup-a.jpg")], tmp_path, FAST, host_map=server.host_map, quiet=True)
    crawl([server.url("/dup-b.jpg")], tmp_path, FAST, host_map=server.host_map, quiet=True)
    assert stored_images(tmp_path) == 1
    images = load_results(tmp_path)["image"].to_list()
    assert len(images) == 2 and images[0] == images[1] is not None


def test_an_image_lookup_opens_only_the_parts_that_name_its_images(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shard stage looks up each node file's images with the (sha256, part) pairs its plan
    keeps for them: it reads the parts that can hold them, not the whole crawl (docs/scale.md)."""
    for name in ("dup-a", "good", "dup-b"):  # one run, so one part, each; dup-b's bytes are dup-a's
        crawl([server.url(f"/{name}.jpg")], tmp_path, FAST, host_map=server.host_map, quiet=True)
    by_url = {row["url"]: row for row in load_results(tmp_path).iter_rows(named=True)}
    first, duplicate = by_url[server.url("/dup-a.jpg")], by_url[server.url("/dup-b.jpg")]
    named = pl.col("sha256").is_not_null()
    where = read_parts(tmp_path, ["sha256"], named, with_part=True)  # what the plan pairs
    opened = []
    read_parquet = pl.read_parquet
    monkeypatch.setattr(
        pl,
        "read_parquet",
        lambda path, **kw: opened.append(Path(path).name) or read_parquet(path, **kw),
    )
    found = image_loader(tmp_path, where)(pl.Series([duplicate["sha256"]]))
    assert found["image"].to_list() == [first["image"]] and first["image"] is not None
    assert sorted(opened) == ["part-000000.parquet", "part-000002.parquet"]  # not good.jpg's


def test_a_unit_opens_only_the_parts_that_can_hold_its_urls(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unit folder records the range of the URL list it was crawled for, so a later unit reads
    the earlier results of its own URLs from the folders whose range meets its own (and from the
    root and any folder without a record), not from every part of the crawl."""
    urls = [server.url(f"/small.jpg?n={n}") for n in range(12)]

    def span(index: int, count: int, listed: list[str] = urls) -> UnitSpan:
        cut = unit_slice(len(listed), index, count)
        named = listed_sha256(listed)
        return UnitSpan(root=tmp_path, urls_sha256=named, start=cut.start, stop=cut.stop)

    def run(index: int, count: int) -> dict[str, int]:
        unit = span(index, count)
        folder = unit_dir(tmp_path, index, count)
        mine = urls[unit.start : unit.stop]
        return crawl(mine, folder, FAST, host_map=server.host_map, quiet=True, span=unit)

    for index in range(2):
        run(index, 2)
    opened: list[str] = []
    read_parquet = pl.read_parquet
    monkeypatch.setattr(
        pl,
        "read_parquet",
        lambda path, **kw: opened.append(Path(path).parent.parent.name) or read_parquet(path, **kw),
    )
    fetched = server.hits.total()
    seen = {}
    for index in range(3):  # --num-shards 3 after 2: ranges [0, 4), [4, 8), [8, 12) after halves
        opened.clear()
        assert run(index, 3) == {}  # all settled before
        seen[index] = set(opened)
    assert server.hits.total() == fetched
    halves = ("00000-of-00002", "00001-of-00002")
    assert seen == {0: {halves[0]}, 1: set(halves), 2: {halves[1]}}

    other = [*urls, server.url("/small.jpg?n=12")]  # another list: its ranges say nothing here
    crawl(other[-1:], tmp_path, FAST, host_map=server.host_map, quiet=True)  # into the root

    def folders(unit: UnitSpan) -> set[str]:
        return {Path(path).parent.parent.name for path in span_parts(unit)}

    # the root's parts were written for any URL; a range of another list may meet any folder
    assert folders(span(0, 2)) == {tmp_path.name, halves[0]}
    assert folders(span(0, 2, other)) == {tmp_path.name, *halves}
    (unit_dir(tmp_path, 1, 2) / MADE_FOR).unlink()  # as a version before the records left it
    assert folders(span(0, 2)) == {tmp_path.name, *halves}
    run(1, 2)  # its record now starts with the parts it cannot vouch for
    assert folders(span(0, 2)) == {tmp_path.name, *halves}
    unit = span(2, 3)
    mine = urls[unit.start : unit.stop]
    assert read_latest(tmp_path, urls=mine, paths=span_parts(unit)).equals(
        read_latest(tmp_path, urls=mine)
    )


@pytest.mark.parametrize(
    "hashes",
    [None, lambda urls: pl.zeros(len(urls), pl.UInt64, eager=True).to_numpy()],
    ids=["hashes", "all-collide"],
)
def test_a_units_rows_are_the_latest_of_its_own_urls_whatever_their_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashes
) -> None:
    if hashes:  # every URL passes the hash filter: the strings must tell them apart
        monkeypatch.setattr(results, "_url_hashes", hashes)
    urls = [f"https://{HOST}/{n:02d}.jpg" for n in range(30)]
    for seq in range(3):  # overlapping parts, each a run later: more attempts
        rows = [{"url": url, "status": "ok", "attempts": seq + 1} for url in urls[seq * 5 :][:20]]
        write_part(tmp_path, seq, rows)
    mine = [*urls[2:28], "https://elsewhere.invalid/never-crawled.jpg"]
    latest = read_latest(tmp_path, ["url", "attempts"], urls=mine)
    everything = read_latest(tmp_path, ["url", "attempts"])
    assert latest.equals(everything.filter(pl.col("url").is_in(mine)))
    runs = {url: 1 if n < 5 else 2 if n < 10 else 3 for n, url in enumerate(urls)}
    assert dict(latest.iter_rows()) == {url: runs[url] for url in urls[2:28]}
    assert read_latest(tmp_path, ["url"], urls=[]).is_empty()


def test_per_host_rate_spaces_request_starts(server: Server, tmp_path: Path) -> None:
    options = replace(FAST, per_host_rate=20.0)
    urls = [server.url(f"/small.jpg?n={n}") for n in range(8)]
    before = len(server.times["/small.jpg"])
    crawl(urls, tmp_path, options, host_map=server.host_map, quiet=True)
    starts = sorted(server.times["/small.jpg"][before:])
    assert len(starts) == 8
    # 20 per second: 8 starts span at least 7 x 50 ms; unpaced, they all land within a few ms
    assert starts[-1] - starts[0] >= 0.3


def test_memory_stays_bounded_while_bytes_flow_through(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/noise.jpg?n={n}") for n in range(1200)]
    options = replace(FAST, part_size=50, concurrency=16)
    tracemalloc.start()
    try:
        counts = crawl(urls, tmp_path, options, host_map=server.host_map, quiet=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts == {"ok": 1200}
    fetched = len(urls) * len(NOISE)
    assert fetched > 30_000_000
    assert peak < fetched / 5, (peak, fetched)  # results go to disk part by part


def test_process_decoder_and_filters(server: Server, tmp_path: Path) -> None:
    urls = [server.url("/good.jpg"), server.url("/good.png"), server.url("/truncated.jpg")]
    results = {}
    for decoder, resample in (("threads", "bilinear"), ("processes", "bilinear"),
                              ("threads", "lanczos")):  # fmt: skip
        options = replace(FAST, decoder=decoder, resample=resample)
        crawl(
            urls, tmp_path / f"{decoder}-{resample}", options, host_map=server.host_map, quiet=True
        )
        frame = load_results(tmp_path / f"{decoder}-{resample}").sort("url")
        results[decoder, resample] = frame.select("url", "status", "image").rows()
    assert results["threads", "bilinear"] == results["processes", "bilinear"]
    assert [r[1] for r in results["threads", "lanczos"]] == ["ok", "ok", "decode_error"]
    assert results["threads", "lanczos"] != results["threads", "bilinear"]
    with pytest.raises(ValueError, match="resample: 'nearest' is not one of bilinear"):
        replace(FAST, resample="nearest")


def test_robots_can_be_ignored(server: Server, tmp_path: Path) -> None:
    options = replace(FAST, respect_robots=False)
    crawl([server.url("/noai.jpg")], tmp_path, options, host_map=server.host_map, quiet=True)
    assert load_results(tmp_path)["status"].to_list() == ["ok"]


def test_private_destinations_blocked_without_traffic(server: Server, tmp_path: Path) -> None:
    before = sum(server.hits.values())
    urls = [
        server.local("/good.jpg"),
        f"http://localhost:{server.port}/good.jpg",  # a name: refused by the resolver
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.jpg",
        "http://[::1]/a.jpg",
        "http://[::ffff:10.0.0.1]/a.jpg",
        "http://2130706433/a.jpg",  # 127.0.0.1 in legacy decimal form
        "file:///etc/passwd",
        "not a url",
    ]
    start = time.monotonic()
    counts = crawl(urls, tmp_path, FAST, quiet=True)
    assert time.monotonic() - start < 5  # nothing waited on a connection
    assert counts == {"blocked": len(urls)}
    assert sum(server.hits.values()) == before
    errors = load_results(tmp_path)["error"].to_list()
    assert all(errors), errors

    counts = crawl(
        [server.local("/small.jpg")],
        tmp_path / "lan",
        replace(FAST, allow_private_network=True),
        quiet=True,
    )
    assert counts == {"ok": 1}


def test_short_timeouts_end_in_bounded_time(server: Server, tmp_path: Path) -> None:
    options = replace(FAST, timeout=0.5)
    urls = [server.url(f"/drip?n={n}") for n in range(8)] + [server.url("/endless")]
    start = time.monotonic()
    counts = crawl(urls, tmp_path, options, host_map=server.host_map, quiet=True)
    # 8 drips on 16 host slots: two 0.5 s tries each, concurrently.
    assert time.monotonic() - start < 4
    assert counts == {"timeout": 8, "too_large": 1}


def test_parts_atomic_and_corruption_tolerated(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    urls = [server.url(f"/small.jpg?n={n}") for n in range(10)]
    crawl(urls, tmp_path, FAST, host_map=server.host_map, quiet=True)
    parts = tmp_path / "parts"
    names = sorted(p.name for p in parts.iterdir())
    assert names == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    assert [len(pl.read_parquet(parts / n)) for n in names] == [4, 4, 2]

    # A killed run's temp file is removed; a damaged part is reported and skipped.
    stale = parts / ".part-000003.parquet.abc123.tmp"
    stale.write_bytes(b"half a parquet")
    (parts / "part-000001.parquet").write_bytes(b"PAR1 garbage")
    with caplog.at_level(logging.WARNING):
        counts = crawl(urls, tmp_path, FAST, host_map=server.host_map, quiet=True)
    assert counts == {"ok": 4}  # only the damaged part's URLs came again
    assert not stale.exists()
    reports = [r.getMessage() for r in caplog.records if "part-000001" in r.getMessage()]
    assert len(reports) == 1 and "\n" not in reports[0]
    assert (parts / "part-000003.parquet").exists()
    assert set(load_results(tmp_path)["url"]) == set(urls)


def children_of(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_loses_only_unwritten_results(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/slow.jpg?k={n}") for n in range(40)]
    options = replace(FAST, concurrency=2, decoder="processes")  # its workers must die too
    script = textwrap.dedent(f"""
        from pathlib import Path
        from slip_data.crawl import CrawlOptions, crawl
        crawl({urls!r}, Path({str(tmp_path)!r}), CrawlOptions(**{options.__dict__!r}),
              host_map={server.host_map!r}, quiet=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not list((tmp_path / "parts").glob("part-*.parquet")):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.02)
        decoders = children_of(child.pid)
        assert len(decoders) == options.workers
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + 5  # the decoders notice and exit too
        while any(alive(pid) for pid in decoders):
            assert time.monotonic() < deadline, "orphaned decoder processes"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # leaves nothing behind if the test failed
        child.wait()
    kept = load_results(tmp_path)
    assert 0 < len(kept) < len(urls)
    before = Counter(server.hits)
    crawl(urls, tmp_path, options, host_map=server.host_map, quiet=True)
    final = load_results(tmp_path)
    assert set(final["url"]) == set(urls)
    assert sum(server.hits.values()) - sum(before.values()) == len(urls) - len(kept)
