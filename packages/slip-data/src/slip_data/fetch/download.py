"""Resumable HTTP download of the raw `.jsonl.gz` files.

Bytes stream into `<name>.part`; after an interruption (a dropped connection or kill -9) the next
try asks for the rest with an HTTP Range request. The file gets its final name only when its
length matches what the server announced and its gzip stream is whole.
"""

import asyncio
import random
import re
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from rich.progress import Progress, TaskID

from slip_data.gzipstream import gzip_is_whole

CHUNK_BYTES = 1 << 20
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(RuntimeError):
    """A file that could not be fetched after all attempts; the message is one line."""


@dataclass(frozen=True)
class DownloadOptions:
    attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    connect_timeout: float = 30.0
    read_timeout: float = 120.0  # longest silence while streaming a body
    user_agent: str = "slip-data/0.1 (+https://github.com/slip-toolkit/slip)"


def _expected_total(response: aiohttp.ClientResponse, offset: int) -> int | None:
    if response.status == 206:
        match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            return None
        return None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


async def _try_once(
    session: aiohttp.ClientSession,
    url: str,
    part: Path,
    *,
    progress: Progress,
    task: TaskID,
) -> None:
    """One request: append to `part` from where it stops; raises on anything short of the end."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    async with session.get(url, headers=headers) as response:
        if response.status == 416 and offset:
            match = re.fullmatch(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == offset:
                return  # the part already holds the whole file
            part.unlink()
            raise DownloadError(f"{url}: server rejected the resume range, starting over")
        if response.status == 404:
            raise FileNotFoundError(f"{url}: not found (HTTP 404)")
        if response.status not in (200, 206):
            raise DownloadError(f"{url}: HTTP {response.status}")
        if response.status == 200:
            offset = 0  # the server ignored Range: start over
        total = _expected_total(response, offset)
        if response.status == 206 and total is None:
            part.unlink()
            raise DownloadError(f"{url}: unusable Content-Range, starting over")
        progress.update(task, completed=offset, total=total)
        with open(part, "ab" if offset else "wb") as sink:
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                sink.write(chunk)
                progress.advance(task, len(chunk))
        size = part.stat().st_size
        if total is not None and size != total:
            raise DownloadError(f"{url}: got {size} of {total} bytes")


async def download(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    options: DownloadOptions,
    progress: Progress,
) -> None:
    """Fetch `url` to `dest`, resuming a `.part` an earlier run left, or raise a one-line error."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(dest.name, total=None)
    last_error = ""
    for attempt in range(options.attempts):
        try:
            await _try_once(session, url, part, progress=progress, task=task)
            if await asyncio.to_thread(gzip_is_whole, part):
                part.replace(dest)
                progress.update(task, visible=False)
                return
            part.unlink()
            last_error = f"{url}: downloaded file is not a whole gzip stream"
        except FileNotFoundError:
            raise
        except (aiohttp.ClientError, TimeoutError, DownloadError, OSError) as exc:
            last_error = str(exc) or type(exc).__name__
        delay = min(options.backoff_max, options.backoff_base * 2**attempt)
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
    raise DownloadError(f"{last_error} (gave up after {options.attempts} attempts)")


def make_session(options: DownloadOptions) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=options.connect_timeout, sock_read=options.read_timeout
    )
    return aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": options.user_agent})
