"""A tiny aiohttp server in a background thread, for tests that need real HTTP on 127.0.0.1."""

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web


class ThreadedServer:
    """Runs `make_app()` on 127.0.0.1 (ephemeral port) until the `with` block ends."""

    def __init__(self, make_app: Callable[[], web.Application]):
        self._make_app = make_app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    def __enter__(self) -> "ThreadedServer":
        self._thread.start()
        self._runner = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> web.AppRunner:
        runner = web.AppRunner(self._make_app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return runner

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
