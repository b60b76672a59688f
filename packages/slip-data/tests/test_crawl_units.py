"""Unit tests of the crawl's parts: SSRF guard, decoding, fetch helpers. No network traffic."""

import asyncio
import fcntl
import io
import os
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from PIL import Image
from yarl import URL

from slip_data.crawl import RETRYABLE, CrawlOptions, crawl, load_results
from slip_data.crawl.decode import decode_image, sniff_image
from slip_data.crawl.fetch import Fetcher, is_opted_out, parse_retry_after, retry_delay
from slip_data.crawl.safety import BlockedDestination, GuardedResolver, check_url
from slip_data.crawl.stage import Decoder


def encoded(img: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


class FakeDNS(AbstractResolver):
    """Answers every name with fixed addresses (or fails), so no query leaves the machine."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not self.addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


def test_retryable_vocabulary() -> None:
    assert {"timeout", "connection_error", "dns_error", "http_429", "http_503"} <= RETRYABLE
    assert {"http_502", "http_599"} <= RETRYABLE
    assert not {"ok", "blocked", "http_404"} & RETRYABLE  # final: a rerun does not fetch again


@pytest.mark.parametrize(
    ("url", "blocked"),
    [
        ("http://93.184.215.14/a.jpg", False),
        ("https://m.media-amazon.com/images/I/x.jpg", False),  # names are checked after DNS
        ("http://127.0.0.1/", True),
        ("http://10.0.0.1/", True),
        ("http://172.16.5.4/", True),
        ("http://192.168.1.1/", True),
        ("http://169.254.169.254/latest/meta-data/", True),
        ("http://0.0.0.0/", True),
        ("http://224.0.0.1/", True),
        ("http://240.0.0.1/", True),
        ("http://100.64.0.1/", True),
        ("http://[::1]/", True),
        ("http://[fe80::1]/", True),
        ("http://[fd00::1]/", True),
        ("http://[::ffff:169.254.169.254]/", True),
        ("http://[2002:a00:1::]/", True),  # 6to4 wrapping 10.0.0.1
        ("http://[64:ff9b::a00:1]/", True),  # NAT64 wrapping 10.0.0.1
        ("file:///etc/passwd", True),
        ("ftp://example.com/a.jpg", True),
        ("javascript:alert(1)", True),
        ("http:///nohost", True),
    ],
)
def test_check_url(url: str, blocked: bool) -> None:
    assert (check_url(URL(url), allow_private=False) is not None) is blocked


def test_check_url_allow_private_keeps_scheme_rule() -> None:
    assert check_url(URL("http://10.0.0.1/"), allow_private=True) is None
    assert check_url(URL("file:///etc/passwd"), allow_private=True) is not None


def test_resolver_refuses_internal_answers() -> None:
    async def resolve(resolver: GuardedResolver, host: str) -> list[str]:
        return [r["host"] for r in await resolver.resolve(host, 80)]

    async def scenario() -> None:
        public = GuardedResolver(inner=FakeDNS("93.184.215.14"))
        assert await resolve(public, "example.com") == ["93.184.215.14"]
        for internal in ("169.254.169.254", "10.0.0.1", "127.0.0.1", "::1"):
            with pytest.raises(BlockedDestination):
                await resolve(GuardedResolver(inner=FakeDNS(internal)), "evil.example")
        # One internal answer among public ones is a rebinding attempt: refuse the name.
        with pytest.raises(BlockedDestination):
            await resolve(GuardedResolver(inner=FakeDNS("93.184.215.14", "10.0.0.1")), "x.io")
        trusting = GuardedResolver(inner=FakeDNS("10.0.0.1"), allow_private=True)
        assert await resolve(trusting, "lan.example") == ["10.0.0.1"]
        mapped = GuardedResolver({"Images.Demo.invalid": ("127.0.0.1", 4321)}, inner=FakeDNS())
        [answer] = await mapped.resolve("images.demo.invalid.", 80)
        assert (answer["host"], answer["port"]) == ("127.0.0.1", 4321)

    asyncio.run(scenario())


def test_fetch_maps_resolver_outcomes_without_connecting() -> None:
    """The resolver's refusal happens before any socket opens; a DNS failure is dns_error."""

    async def fetch(dns: FakeDNS, url: str) -> str:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(inner=dns))
        async with aiohttp.ClientSession(connector=connector) as session:
            return (await Fetcher(session, CrawlOptions(timeout=5)).fetch(url)).status

    assert asyncio.run(fetch(FakeDNS("169.254.169.254"), "http://metadata.example/")) == "blocked"
    assert asyncio.run(fetch(FakeDNS("10.0.0.1"), "https://intranet.example/a.jpg")) == "blocked"
    assert asyncio.run(fetch(FakeDNS(), "http://nowhere.example/a.jpg")) == "dns_error"


def test_robots_header_parsing() -> None:
    agent = "slip-data"
    assert is_opted_out(["noai"], agent)
    assert is_opted_out(["noindex, nofollow"], agent)
    assert is_opted_out(["NoImageAI"], agent)
    assert is_opted_out(["all", "noimageindex"], agent)
    assert is_opted_out(["slip-data: noai"], agent)
    assert is_opted_out(["*: noindex"], agent)
    assert is_opted_out(["noindex, unavailable_after: 25 Jun 2030 15:00:00 PST"], agent)
    assert not is_opted_out(["googlebot: noindex"], agent)
    assert not is_opted_out(["max-image-preview: large", "nofollow"], agent)
    assert not is_opted_out([], agent)


def test_retry_timing() -> None:
    options = CrawlOptions(backoff_base=0.5, backoff_max=30.0)
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("-1") is None and parse_retry_after(None) is None
    assert retry_delay(1, 3600.0, options) == 30.0  # capped at backoff_max
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (10, 30.0)]:
        delays = {retry_delay(attempt, None, options) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def test_sniff_image() -> None:
    img = Image.new("RGB", (4, 4))
    for fmt in ("JPEG", "PNG", "GIF", "WEBP"):
        assert sniff_image(encoded(img, fmt)), fmt
    assert not sniff_image(b"<!doctype html>")
    assert not sniff_image(encoded(img, "BMP"))
    assert not sniff_image(b"RIFF\0\0\0\0WAVEfmt ")


def test_decode_resizes_flattens_and_is_deterministic() -> None:
    photo = Image.radial_gradient("L").convert("RGB").resize((900, 600))
    first = decode_image(encoded(photo, "JPEG"), max_side=256, quality=90, max_pixels=40_000_000)
    again = decode_image(encoded(photo, "JPEG"), max_side=256, quality=90, max_pixels=40_000_000)
    assert (first.status, first.width, first.height) == ("ok", 256, 171)
    assert first.data == again.data and first.sha256 == again.sha256

    cutout = Image.new("RGBA", (300, 600), (0, 0, 255, 255))
    cutout.paste((0, 0, 0, 0), (0, 0, 300, 300))  # transparent top half
    flat = decode_image(encoded(cutout, "PNG"), max_side=256, quality=90, max_pixels=40_000_000)
    assert (flat.width, flat.height) == (128, 256)
    assert flat.data is not None
    out = Image.open(io.BytesIO(flat.data))
    assert min(out.getpixel((64, 32))) > 240  # white, not black
    assert out.getpixel((64, 200))[2] > 200  # still blue

    palette = Image.new("P", (40, 30))
    tiny = decode_image(
        encoded(palette, "GIF", transparency=0), max_side=256, quality=90, max_pixels=40_000_000
    )
    assert (tiny.status, tiny.width, tiny.height) == ("ok", 40, 30)


def test_decode_exif_rotation_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: stored landscape, shown portrait
    data = encoded(Image.new("RGB", (600, 300), "red"), "JPEG", exif=exif)
    result = decode_image(data, max_side=256, quality=90, max_pixels=40_000_000)
    assert (result.width, result.height) == (128, 256)


def test_decode_rejects_bad_input() -> None:
    photo = encoded(Image.new("RGB", (400, 400), "green"), "JPEG")
    assert (
        decode_image(photo[: len(photo) // 2], max_side=256, quality=90, max_pixels=10**7).status
        == "decode_error"
    )
    assert (
        decode_image(b"GIF89a garbage", max_side=256, quality=90, max_pixels=10**7).status
        == "decode_error"
    )
    assert (
        decode_image(photo, max_side=256, quality=90, max_pixels=400 * 399).status == "bomb"
    )  # our header check
    huge = encoded(Image.new("1", (5000, 5000)), "PNG")  # tiny file, 25 Mpx
    assert (
        decode_image(huge, max_side=256, quality=90, max_pixels=10**6).status == "bomb"
    )  # Pillow's own bomb error


def test_decoder_replaces_a_dead_pool() -> None:
    photo = encoded(Image.new("RGB", (300, 300), "blue"), "JPEG")
    decoder = Decoder(CrawlOptions(workers=1, decoder="processes"))
    try:

        async def decode() -> str:
            return (await decoder.decode(photo)).status

        assert asyncio.run(decode()) == "ok"
        for process in list(decoder._pool._processes.values()):  # simulate an OOM kill
            os.kill(process.pid, signal.SIGKILL)
            process.join()
        assert asyncio.run(decode()) == "ok"
    finally:
        decoder.close()


def test_nothing_to_do_returns_quickly(tmp_path: Path) -> None:
    assert crawl([], tmp_path, quiet=True) == {}
    assert load_results(tmp_path).columns == [
        "url",
        "status",
        "error",
        "attempts",
        "source_sha256",
        "sha256",
        "width",
        "height",
        "image",
    ]


def test_one_crawl_per_folder(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another crawl"):
            crawl(["http://10.0.0.1/a.jpg"], tmp_path, quiet=True)
