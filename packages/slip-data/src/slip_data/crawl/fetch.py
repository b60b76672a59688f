"""One guarded HTTP fetch: manual redirects, a total deadline and a byte cap per try."""

import asyncio
import random
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from yarl import URL

from slip_data.crawl.decode import sniff_image
from slip_data.crawl.options import CrawlOptions
from slip_data.crawl.safety import BlockedDestination, GuardedResolver, check_url

REDIRECTS = frozenset({301, 302, 303, 307, 308})
OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai", "noindex", "noimageindex"})
# Robots directives that carry a value after a colon, so "name:" is not a user-agent prefix.
_VALUED_DIRECTIVES = frozenset(
    {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}
)
_AGENT_PREFIX = re.compile(r"\s*([\w.*-]+)\s*:(.*)", re.DOTALL)
_SNIFF_BYTES = 12
PACE_TABLE_MAX = 10_000
_ACCEPT = "image/jpeg,image/png,image/webp,image/gif;q=0.9,*/*;q=0.5"


@dataclass(frozen=True)
class FetchResult:
    status: str
    error: str | None = None
    body: bytes | None = None
    retry_after: float | None = None


def is_opted_out(values: Iterable[str], agent: str) -> bool:
    """X-Robots-Tag opt-out aimed at everyone, at `*` or at our own user-agent token."""
    for value in values:
        directives = value
        prefixed = _AGENT_PREFIX.match(value)
        if prefixed and prefixed.group(1).lower() not in _VALUED_DIRECTIVES:
            if prefixed.group(1).lower() not in ("*", agent):
                continue
            directives = prefixed.group(2)
        if OPT_OUT_DIRECTIVES.intersection(re.split(r"[\s,]+", directives.lower())):
            return True
    return False


def parse_retry_after(value: str | None) -> float | None:
    """Seconds form only; the HTTP-date form falls back to exponential backoff."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def retry_delay(attempt: int, retry_after: float | None, options: CrawlOptions) -> float:
    """Server's Retry-After (capped) or exponential backoff with jitter, so retries spread out."""
    if retry_after is not None:
        return min(retry_after, options.backoff_max)
    ceiling = min(options.backoff_max, options.backoff_base * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def open_session(
    options: CrawlOptions, host_map: Mapping[str, tuple[str, int]] | None
) -> aiohttp.ClientSession:
    """A session whose every connection goes through the SSRF-guarding resolver."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(host_map, options.allow_private_network),
        limit=options.concurrency,
        limit_per_host=options.per_host,
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": options.user_agent, "Accept": _ACCEPT},
        timeout=aiohttp.ClientTimeout(total=options.timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


@dataclass
class _Host:
    """A host's connection slots and how many requests hold or wait for one."""

    slots: asyncio.Semaphore
    users: int = 0


class Fetcher:
    """Fetches one URL per call; bounded in flight overall and per host."""

    def __init__(self, session: aiohttp.ClientSession, options: CrawlOptions) -> None:
        self._session = session
        self._options = options
        self._slots = asyncio.Semaphore(options.concurrency)
        self._hosts: dict[str, _Host] = {}
        self._next_start: dict[str, float] = {}  # per-host rate: when the next request may go
        self._agent = options.user_agent.split("/", 1)[0].strip().lower()

    @asynccontextmanager
    async def _host_slot(self, host: str) -> AsyncIterator[None]:
        """Wait for a host slot and its rate before the deadline starts: queueing is no timeout."""
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(asyncio.Semaphore(self._options.per_host))
        state.users += 1
        try:
            async with state.slots:
                await self._pace(host)
                yield
        finally:
            state.users -= 1
            if not state.users:
                del self._hosts[host]  # keeps the table small across a million hosts

    async def _pace(self, host: str) -> None:
        """Space request starts to `per_host_rate` per second for each host."""
        rate = self._options.per_host_rate
        if rate <= 0:
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self._next_start.get(host, now))
        self._next_start[host] = start + 1.0 / rate
        if len(self._next_start) > PACE_TABLE_MAX:  # forget hosts whose turn is long past
            self._next_start = {h: t for h, t in self._next_start.items() if t > now}
        await asyncio.sleep(start - now)

    async def fetch(self, url: str) -> FetchResult:
        """One try: never raises for network or content trouble, returns a status instead."""
        try:
            start = URL(url)
        except (ValueError, TypeError) as exc:
            return FetchResult("blocked", f"invalid URL: {exc}")
        refusal = check_url(start, self._options.allow_private_network)
        if refusal:
            return FetchResult("blocked", refusal)
        async with self._slots, self._host_slot(start.host or ""):
            try:
                async with asyncio.timeout(self._options.timeout):
                    return await self._follow(start)
            except TimeoutError:
                return FetchResult("timeout", f"no complete response in {self._options.timeout}s")
            except aiohttp.ClientConnectorDNSError as exc:
                if isinstance(exc.os_error, BlockedDestination):
                    return FetchResult("blocked", str(exc.os_error))
                return FetchResult("dns_error", str(exc))
            except aiohttp.InvalidURL as exc:
                return FetchResult("blocked", f"invalid URL: {exc}")
            except (aiohttp.ClientError, OSError) as exc:
                return FetchResult("connection_error", f"{type(exc).__name__}: {exc}")

    async def _follow(self, url: URL) -> FetchResult:
        for _ in range(self._options.max_redirects + 1):
            refusal = check_url(url, self._options.allow_private_network)
            if refusal:
                return FetchResult("blocked", refusal)
            async with self._session.get(url, allow_redirects=False) as response:
                location = response.headers.get("Location")
                if response.status in REDIRECTS and location:
                    try:
                        url = url.join(URL(location))
                    except ValueError:
                        return FetchResult("blocked", f"invalid redirect Location {location!r}")
                    continue
                return await self._read(response)
        return FetchResult("too_many_redirects", f"more than {self._options.max_redirects}")

    async def _read(self, response: aiohttp.ClientResponse) -> FetchResult:
        options = self._options
        if not 200 <= response.status < 300:
            retry_after = None
            if response.status in (429, 503):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return FetchResult(f"http_{response.status}", response.reason, retry_after=retry_after)
        if options.respect_robots and is_opted_out(
            response.headers.getall("X-Robots-Tag", ()), self._agent
        ):
            return FetchResult("opted_out", "X-Robots-Tag forbids AI use")
        if response.content_length is not None and response.content_length > options.max_bytes:
            return FetchResult("too_large", f"Content-Length {response.content_length}")
        body = bytearray()
        sniffed = False
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > options.max_bytes:
                return FetchResult("too_large", f"more than {options.max_bytes} bytes")
            if not sniffed and len(body) >= _SNIFF_BYTES:
                if not sniff_image(body):
                    return FetchResult("not_image", _describe(response, body))
                sniffed = True
        if not sniff_image(body):
            return FetchResult("not_image", _describe(response, body))
        return FetchResult("ok", body=bytes(body))


def _describe(response: aiohttp.ClientResponse, body: bytearray) -> str:
    return f"Content-Type {response.content_type!r}, starts {bytes(body[:_SNIFF_BYTES])!r}"
