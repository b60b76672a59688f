"""Fetch stage driver: where each category's two raw files come from and where they land."""

import asyncio
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from slip_data.categories import raw_relpaths
from slip_data.fetch.download import DownloadError, DownloadOptions, download, make_session
from slip_data.graph.stage import RawCategory
from slip_data.progress import byte_progress

DEFAULT_BASE_URL = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/"
PARALLEL_FILES = 4


class FetchError(RuntimeError):
    """A raw file that is missing or could not be downloaded; the message is one line."""


def is_remote(base: str) -> bool:
    return urlparse(base).scheme in ("http", "https")


def local_raws(categories: Sequence[str], base: Path) -> list[RawCategory]:
    """Raw files read in place from a local copy of the dataset's raw folder."""
    raws = []
    for category in categories:
        meta, reviews = (base / rel for rel in raw_relpaths(category))
        for path in (meta, reviews):
            if not path.is_file():
                raise FetchError(f"missing raw file {path} (category {category})")
        raws.append(RawCategory(category, meta, reviews))
    return raws


async def _download_all(
    jobs: list[tuple[str, Path]], options: DownloadOptions, quiet: bool
) -> None:
    limit = asyncio.Semaphore(PARALLEL_FILES)
    with byte_progress(quiet) as progress:
        async with make_session(options) as session:

            async def one(url: str, dest: Path) -> None:
                async with limit:
                    await download(session, url, dest, options=options, progress=progress)

            await asyncio.gather(*(one(url, dest) for url, dest in jobs))


def run_fetch(
    categories: Sequence[str],
    base: str,
    raw_dir: Path,
    *,
    options: DownloadOptions | None = None,
    quiet: bool = False,
) -> list[RawCategory]:
    """Make every category's raw files available; files already fetched whole are kept."""
    if not is_remote(base):
        return local_raws(categories, Path(base.removeprefix("file://")))
    base = base if base.endswith("/") else base + "/"
    jobs = [
        (base + rel, raw_dir / rel)
        for category in categories
        for rel in raw_relpaths(category)
        if not (raw_dir / rel).exists()
    ]
    try:
        asyncio.run(_download_all(jobs, options or DownloadOptions(), quiet))
    except (FileNotFoundError, DownloadError) as exc:
        raise FetchError(str(exc)) from None
    return local_raws(categories, raw_dir)
