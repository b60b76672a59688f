"""Loopback HTTP servers for bench/crawl_bench.py, each meant to run in its own process.

    python bench/crawl_server.py static IMAGE_DIR      # /img/<name>: the JPEGs, from memory
    python bench/crawl_server.py fault IMAGE_DIR       # /<kind>/<n>: good images and trouble

Binds 127.0.0.1 on an ephemeral port, prints {"port": N} on one line, then serves until its
standard input closes (so it never outlives the benchmark) or it gets SIGTERM.
"""

import asyncio
import io
import json
import signal
import struct
import sys
import threading
import zlib
from collections import Counter
from pathlib import Path

from aiohttp import web
from PIL import Image

# Fault catalogue: kind -> (weight, status slip-data should report). Weights are per 1,000 URLs.
FAULTS: dict[str, tuple[int, str]] = {
    "good": (520, "ok"),
    "dup": (60, "ok"),  # one of 10 images, each under many URLs
    "mislabelled": (30, "ok"),  # a real JPEG sent as text/html
    "flaky": (30, "ok"),  # 503 + Retry-After: 1 on the first hit, then the image
    "e500": (25, "http_500"),
    "e503": (20, "http_503"),  # always 503, Retry-After: 1
    "r429": (25, "http_429"),  # always 429, Retry-After: 1
    "e404": (20, "http_404"),
    "drip": (25, "timeout"),  # a byte every 0.5 s
    "endless": (15, "too_large"),  # 64 KiB chunks without end
    "oversized": (15, "too_large"),  # Content-Length over max_bytes
    "html": (30, "not_image"),  # an HTML page sent as image/jpeg
    "truncated": (30, "decode_error"),  # first half of a JPEG
    "bomb": (15, "bomb"),  # PNG header claims 100000 x 100000
    "loop": (25, "too_many_redirects"),
    "to_file": (20, "blocked"),  # redirect to file:///etc/passwd
    "to_private": (25, "blocked"),  # redirect to 127.0.0.1 / 169.254.169.254 / 10.0.0.1
    "noai": (30, "opted_out"),  # X-Robots-Tag: noai
}
DUP_POOL = 10
OVERSIZED_BYTES = 50_000_000  # declared length; the crawler must refuse before reading


def load_images(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.jpg"))}


def png_bomb(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header claims huge dimensions: tiny file, enormous decode."""
    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, "PNG")
    data = bytearray(out.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def static_app(images: dict[str, bytes]) -> web.Application:
    async def serve(request: web.Request) -> web.Response:
        body = images.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/img/{name}", serve)
    return app


def fault_app(images: dict[str, bytes], port: list[int]) -> web.Application:
    pictures = list(images.values())
    bomb = png_bomb(100_000, 100_000)
    hits: Counter[str] = Counter()

    def picture(n: int) -> bytes:
        return pictures[n % len(pictures)]

    def jpeg(body: bytes, kind: str = "image/jpeg", **headers: str) -> web.Response:
        return web.Response(body=body, content_type=kind, headers=headers)

    def redirect(target: str) -> web.Response:
        return web.Response(status=302, headers={"Location": target})

    async def stream(
        request: web.Request, chunk: bytes, pause: float, count: int
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        await response.prepare(request)
        try:
            await response.write(b"\xff\xd8\xff\xe0" + b"\0" * 8)
            for _ in range(count):
                await response.write(chunk)
                await asyncio.sleep(pause)
        except (ConnectionError, RuntimeError):
            pass  # the crawler hung up, as it should
        return response

    async def oversized(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = OVERSIZED_BYTES
        await response.prepare(request)
        try:
            await response.write(b"\xff\xd8\xff\xe0" + b"\0" * 65536)
            await asyncio.sleep(5)  # the crawler hangs up on the header alone
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def handle(request: web.Request) -> web.StreamResponse:
        kind, n = request.match_info["kind"], int(request.match_info["n"])
        hits[request.path] += 1
        private = ("http://127.0.0.1:{}/good/1", "http://169.254.169.254/", "http://10.0.0.1/a.jpg")
        if kind == "good":
            return jpeg(picture(n))
        if kind == "dup":
            return jpeg(pictures[n % DUP_POOL])
        if kind == "mislabelled":
            return jpeg(picture(n), "text/html")
        if kind == "flaky":
            if hits[request.path] == 1:
                return web.Response(status=503, headers={"Retry-After": "1"})
            return jpeg(picture(n))
        if kind == "e500":
            return web.Response(status=500)
        if kind == "e503":
            return web.Response(status=503, headers={"Retry-After": "1"})
        if kind == "r429":
            return web.Response(status=429, headers={"Retry-After": "1"})
        if kind == "e404":
            return web.Response(status=404)
        if kind == "drip":
            return await stream(request, b"\0", 0.5, 120)
        if kind == "endless":
            return await stream(request, b"\0" * 65536, 0, 1_000_000)
        if kind == "oversized":
            return await oversized(request)
        if kind == "html":
            return jpeg(b"<!doctype html><html><body>not an image</body></html>")
        if kind == "truncated":
            body = picture(n)
            return jpeg(body[: len(body) // 2])
        if kind == "bomb":
            return jpeg(bomb, "image/png")
        if kind == "loop":
            return redirect(f"/loop/{n}")
        if kind == "to_file":
            return redirect("file:///etc/passwd")
        if kind == "to_private":
            return redirect(private[n % len(private)].format(port[0]))
        if kind == "noai":
            return jpeg(picture(n), **{"X-Robots-Tag": "noai, noimageai"})
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/{kind}/{n:\\d+}", handle)
    return app


async def serve(mode: str, folder: Path) -> None:
    images = load_images(folder)
    port: list[int] = [0]
    app = static_app(images) if mode == "static" else fault_app(images, port)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port[0] = runner.addresses[0][1]
    print(json.dumps({"port": port[0], "images": len(images)}), flush=True)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    # Standard input closing means the benchmark is gone: stop with it.
    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, name="watch-stdin", daemon=True).start()
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    mode, folder = sys.argv[1], Path(sys.argv[2])
    if mode not in ("static", "fault"):
        raise SystemExit(f"unknown mode {mode!r}: static or fault")
    asyncio.run(serve(mode, folder))


if __name__ == "__main__":
    main()
