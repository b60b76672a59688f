"""The crawl stage: fetch, decode in a process pool, and append results to part files."""

import asyncio
import fcntl
import hashlib
import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from slip_data.atomic import remove_stale_temps
from slip_data.crawl.decode import DecodedImage, decode_image, exit_with_parent
from slip_data.crawl.fetch import Fetcher, FetchResult, open_session, retry_delay
from slip_data.crawl.options import RETRYABLE, CrawlOptions
from slip_data.crawl.results import (
    UnitSpan,
    next_seq,
    parts_dir,
    read_latest,
    record_span,
    span_parts,
    write_part,
)
from slip_data.progress import item_progress

log = logging.getLogger(__name__)


class Decoder:
    """Runs `decode_image` on every core: in threads (Pillow releases the GIL), or in processes
    (a crash in a decoder costs one pool, replaced, not the crawl; each body is pickled through a
    pipe, the cost docs/benchmarks.md measures)."""

    def __init__(self, options: CrawlOptions) -> None:
        self._options = options
        self._size = options.workers or os.cpu_count() or 1
        self._pool = self._new_pool()

    def _new_pool(self) -> Executor:
        if self._options.decoder == "threads":
            return ThreadPoolExecutor(self._size, thread_name_prefix="decode")
        return self._new_process_pool()

    def _new_process_pool(self) -> ProcessPoolExecutor:
        """Forked workers: instant start and no `if __name__ == "__main__"` demand on callers.

        A fork pool starts all its workers on the first job, so the first pool is started here,
        before the event loop and its threads exist.
        """
        pool = ProcessPoolExecutor(
            max_workers=self._size,
            mp_context=multiprocessing.get_context("fork"),
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        )
        pool.submit(int).result()
        return pool

    async def decode(self, data: bytes) -> DecodedImage:
        options = self._options
        job = partial(
            decode_image,
            data,
            max_side=options.max_side,
            quality=options.jpeg_quality,
            max_pixels=options.max_pixels,
            resample=options.resample,
        )
        loop = asyncio.get_running_loop()
        for _ in range(2):
            pool = self._pool
            try:
                return await loop.run_in_executor(pool, job)
            except BrokenProcessPool:
                # A worker died (hostile image, OOM kill) and took every job in its pool down:
                # give each job one more go in a fresh pool before calling it a decode error.
                if pool is self._pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
        return DecodedImage("decode_error", "decoder process died")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _exclusive(crawl_dir: Path) -> Iterator[None]:
    """One crawl per folder: a second one would interleave part numbers and delete temp files."""
    crawl_dir.mkdir(parents=True, exist_ok=True)
    with open(crawl_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another crawl is running in {crawl_dir}") from None
        yield


def _pending(urls: Sequence[str], previous: pl.DataFrame) -> tuple[list[str], dict[str, int]]:
    """Distinct URLs not settled yet, and the tries already spent on those seen before."""
    wanted = pl.DataFrame({"url": pl.Series(list(urls), dtype=pl.String)}).unique(
        maintain_order=True
    )
    joined = wanted.join(previous, on="url", how="left", maintain_order="left")
    todo = joined.filter(pl.col("status").is_null() | pl.col("status").is_in(list(RETRYABLE)))
    seen = todo.filter(pl.col("attempts").is_not_null())
    return todo["url"].to_list(), dict(zip(seen["url"], seen["attempts"], strict=True))


PREVIOUS_COLUMNS = ("url", "status", "attempts", "source_sha256", "sha256", "width", "height")


def _known_images(previous: pl.DataFrame) -> dict[str, DecodedImage]:
    """Fetched-bytes sha256 -> the stored image (without its bytes) of earlier runs."""
    stored = previous.filter((pl.col("status") == "ok") & pl.col("source_sha256").is_not_null())
    return {
        source: DecodedImage("ok", sha256=sha, width=width, height=height)
        for source, sha, width, height in stored.select(
            "source_sha256", "sha256", "width", "height"
        ).iter_rows()
    }


class _Run:
    """State of one crawl run: status counts, tries from earlier runs and the part buffer."""

    def __init__(
        self,
        crawl_dir: Path,
        options: CrawlOptions,
        *,
        prior_attempts: dict[str, int],
        known: dict[str, DecodedImage],
        decoder: Decoder,
    ) -> None:
        self.crawl_dir = crawl_dir
        self.options = options
        self.prior_attempts = prior_attempts
        self.decoder = decoder
        self.counts: Counter[str] = Counter()
        # fetched-bytes sha256 -> decoded result (without bytes) or the decode in flight
        self.known: dict[str, DecodedImage | asyncio.Future[DecodedImage]] = dict(known)
        self.buffer: list[dict[str, Any]] = []
        self.seq = next_seq(crawl_dir)

    def _take_part(self) -> tuple[int, list[dict[str, Any]]]:
        seq, rows = self.seq, self.buffer
        self.seq, self.buffer = seq + 1, []
        return seq, rows

    async def record(self, row: dict[str, Any]) -> None:
        self.counts[row["status"]] += 1
        self.buffer.append(row)
        if len(self.buffer) >= self.options.part_size:
            seq, rows = self._take_part()
            await asyncio.to_thread(write_part, self.crawl_dir, seq, rows)

    def flush(self) -> None:
        """Write what is buffered; also runs on Ctrl-C so finished work is kept."""
        if self.buffer:
            write_part(self.crawl_dir, *self._take_part())

    async def fetch_with_retries(self, fetcher: Fetcher, url: str) -> tuple[FetchResult, int]:
        tries = 0
        while True:
            tries += 1
            result = await fetcher.fetch(url)
            if result.status not in RETRYABLE or tries >= self.options.attempts:
                return result, tries
            await asyncio.sleep(retry_delay(tries, result.retry_after, self.options))

    async def decode_once(self, body: bytes) -> tuple[str, DecodedImage]:
        """Decode each distinct image once: a duplicate gets the result without the bytes, so
        identical images are stored once however many URLs serve them."""
        source = hashlib.sha256(body).hexdigest()
        seen = self.known.get(source)
        if isinstance(seen, DecodedImage):
            return source, seen
        if seen is not None:  # the same bytes are being decoded for another URL right now
            return source, replace(await seen, data=None)
        future = asyncio.get_running_loop().create_future()
        self.known[source] = future
        try:
            decoded = await self.decoder.decode(body)
        except BaseException as exc:
            del self.known[source]
            future.set_exception(exc)
            future.exception()  # retrieved: waiting duplicates see it, nobody else must
            raise
        self.known[source] = replace(decoded, data=None)
        future.set_result(decoded)
        return source, decoded

    async def process(self, fetcher: Fetcher, url: str) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(
            ("error", "source_sha256", "sha256", "width", "height", "image")
        )
        tries = 1
        try:
            result, tries = await self.fetch_with_retries(fetcher, url)
            row.update(status=result.status, error=result.error)
            if result.body is not None:
                source, decoded = await self.decode_once(result.body)
                row.update(
                    source_sha256=source,
                    status=decoded.status,
                    error=decoded.error,
                    sha256=decoded.sha256,
                    width=decoded.width,
                    height=decoded.height,
                    image=decoded.data,
                )
        except Exception as exc:  # a bug on one URL must not stop a million-URL crawl
            log.exception("unexpected failure on %s", url)
            row.update(status="connection_error", error=f"internal {type(exc).__name__}: {exc}")
        row.update(url=url, attempts=self.prior_attempts.get(url, 0) + tries)
        return row

    async def run(
        self, todo: list[str], host_map: Mapping[str, tuple[str, int]] | None, quiet: bool
    ) -> None:
        urls = iter(todo)  # shared by the workers: a fixed number of tasks, whatever len(todo)
        with item_progress(quiet) as progress:
            task = progress.add_task("crawl images", total=len(todo))
            async with open_session(self.options, host_map) as session:
                fetcher = Fetcher(session, self.options)

                async def worker() -> None:
                    for url in urls:
                        await self.record(await self.process(fetcher, url))
                        progress.advance(task)

                # Twice the request slots, so backoff sleeps and decoding don't idle the network.
                workers = min(len(todo), 2 * self.options.concurrency)
                async with asyncio.TaskGroup() as group:
                    for _ in range(workers):
                        group.create_task(worker())


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first error in `group` and its subgroups: the one that stopped the crawl."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def crawl(
    urls: Sequence[str],
    crawl_dir: Path,
    options: CrawlOptions = CrawlOptions(),  # noqa: B008 - frozen, so sharing it is safe
    *,
    host_map: Mapping[str, tuple[str, int]] | None = None,
    quiet: bool = False,
    span: UnitSpan | None = None,
) -> dict[str, int]:
    """Fetch every distinct URL not settled in `crawl_dir` (or, for a work unit, under
    `span.root`) into `crawl_dir`; returns this run's status counts. A work unit crawls its
    `span` into its own folder under the root and reads what earlier runs of any unit settled
    for its URLs, from the parts that can hold them only (so its memory and reads follow its
    own URLs; identical images are found again only among those)."""
    crawl_dir = Path(crawl_dir)
    with _exclusive(crawl_dir):
        remove_stale_temps(parts_dir(crawl_dir))
        if span is None:
            previous = read_latest(crawl_dir, PREVIOUS_COLUMNS)
        else:
            record_span(crawl_dir, span)
            previous = read_latest(span.root, PREVIOUS_COLUMNS, urls=urls, paths=span_parts(span))
        todo, prior_attempts = _pending(urls, previous)
        if not todo:
            return {}
        decoder = Decoder(options)
        state = _Run(
            crawl_dir,
            options,
            prior_attempts=prior_attempts,
            known=_known_images(previous),
            decoder=decoder,
        )
        try:
            asyncio.run(state.run(todo, host_map, quiet))
        except ExceptionGroup as group:  # a worker's error (a full disk): say what, not "group"
            raise _first_error(group) from None
        finally:
            state.flush()
            decoder.close()
        return dict(state.counts)
