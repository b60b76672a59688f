"""An in-process HTTP server for the demo catalogue: raw files and rendered product images.

It runs its own event loop in a background thread, so synchronous callers (and code that runs its
own `asyncio.run`) can use it as a context manager and point the fetcher and crawler at it.
"""

import asyncio
import functools
import socket
import threading
from pathlib import Path
from types import TracebackType

from aiohttp import web

from slip_data.sources.demo import DEMO_IMAGE_HOST, render_demo_image

_IMAGE_CACHE = 4096  # rendered JPEGs kept; a crawl asks for each URL once, retries hit the cache
_START_TIMEOUT_S = 30.0


class DemoServer:
    """Serves `root` under /raw/ (with HTTP Range) and demo images under /images/."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.base_url = ""
        self.image_host_map: dict[str, tuple[str, int]] = {}
        self._render = functools.lru_cache(maxsize=_IMAGE_CACHE)(render_demo_image)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/raw/{path:.*}", self._raw)
        app.router.add_get("/images/{path:.*}", self._image)
        return app

    async def _raw(self, request: web.Request) -> web.StreamResponse:
        target = (self.root / request.match_info["path"]).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(target)

    async def _image(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, self._render, request.path)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="image/jpeg")

    def _serve(self, sock: socket.socket, ready: threading.Event, failure: list) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            runner = web.AppRunner(self._app(), handle_signals=False)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, sock).start())
            self._loop, self._runner = loop, runner
        except BaseException as exc:  # reported to __enter__, which re-raises it
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def __enter__(self) -> "DemoServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        ready, failure = threading.Event(), []
        self._thread = threading.Thread(
            target=self._serve, args=(sock, ready, failure), name="slip-demo-server", daemon=True
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_S) or failure:
            sock.close()
            raise RuntimeError("demo server did not start") from (failure[0] if failure else None)
        self.base_url = f"http://127.0.0.1:{port}/raw/"
        self.image_host_map = {DEMO_IMAGE_HOST: ("127.0.0.1", port)}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(
                _START_TIMEOUT_S
            )
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT_S)
        self._loop = self._runner = self._thread = None
