"""Crawl settings and the status vocabulary shared by the crawl modules."""

import math
import typing
from dataclasses import dataclass
from typing import Annotated, Literal

from slip_data.bounds import Bounds
from slip_data.distribute import GB
from slip_data.option_fields import check_fields, option

RETRYABLE: frozenset[str] = frozenset(
    {"timeout", "connection_error", "dns_error", "http_429"}
    | {f"http_{code}" for code in range(500, 600)}
)
"""Statuses that may heal by themselves; every other status settles a URL for good."""


@dataclass(frozen=True)
class CrawlOptions:
    """The crawl's settings; below a bound a crawl fetches nothing, or fails."""

    max_side: Annotated[int, Bounds(at_least=1)] = option(
        256, "Resize images so the longer side is at most this (never upscaled)."
    )
    jpeg_quality: Annotated[int, Bounds(at_least=1, at_most=100)] = option(
        90, "JPEG quality of the stored images."
    )
    concurrency: Annotated[int, Bounds(at_least=1)] = option(64, "Image requests in flight.")
    per_host: Annotated[int, Bounds(at_least=1)] = option(16, "Connections per host.")
    per_host_rate: Annotated[float, Bounds(at_least=0)] = option(
        0.0, "Request starts per second per host (0: no limit)."
    )
    attempts: Annotated[int, Bounds(at_least=1)] = option(3, "Tries per image within one run.")
    backoff_base: Annotated[float, Bounds(at_least=0)] = 0.5
    backoff_max: Annotated[float, Bounds(at_least=0)] = 30.0
    timeout: Annotated[float, Bounds(above=0)] = option(
        20.0, "Total seconds per image request: connect, redirects and the whole body."
    )
    max_bytes: Annotated[int, Bounds(at_least=1)] = option(
        20_000_000, "Largest image response read, in bytes."
    )
    max_pixels: Annotated[int, Bounds(at_least=1)] = option(
        40_000_000, "Largest image (width x height, from its header)."
    )
    max_redirects: Annotated[int, Bounds(at_least=0)] = option(
        5, "Redirects followed per image request."
    )
    user_agent: str = option(
        "slip-data/0.1 (+https://github.com/slip-toolkit/slip; image crawler for research)",
        "User-Agent header of the crawler.",
    )
    allow_private_network: bool = option(
        False, "Allow image URLs on private, loopback and link-local addresses."
    )
    workers: Annotated[int, Bounds(at_least=0)] = option(
        0, "Image decoding threads or processes (0: one per core)."
    )
    decoder: Literal["threads", "processes"] = option(
        "threads",
        "Decode in threads (faster) or processes (a decoder crash stays in one; slower: each "
        "image is pickled through a pipe).",
    )
    resample: Literal["bilinear", "bicubic", "lanczos"] = option(
        "bilinear", "Resize filter (docs/data.md)."
    )
    crawl_memory_gb: Annotated[float, Bounds(above=0)] = option(
        2.0,
        "Memory (GB) one crawl unit may use: without --num-shards the crawl is cut into as many "
        "units as keep each under it; --processes P runs P at once.",
    )
    part_size: Annotated[int, Bounds(at_least=1)] = 1000  # results per part file
    respect_robots: bool = option(
        True,
        "Honour X-Robots-Tag noai, noimageai, noindex, noimageindex (status opted_out).",
        flag="--respect-robots/--ignore-robots",
    )

    def __post_init__(self) -> None:
        check_fields(self)


# Peak bytes per URL of a crawl unit (its URLs pending, the images it met by sha256, the earlier
# results of its URLs), its process's whole peak: 1.08 KiB measured on the 4M-product demo build's
# unit of 1,950,491 URLs resumed with 1.6M results behind it (0.72 KiB from 97,502 to 975,303
# URLs end to end, docs/scale.md), with a margin for real URLs, longer than the demo's.
UNIT_BYTES_PER_URL = 1280


def crawl_unit_count(urls: int, memory_gb: float) -> int:
    """The fewest work units whose URLs' state fits in `memory_gb` each."""
    return max(math.ceil(urls * UNIT_BYTES_PER_URL / (memory_gb * GB)), 1)


RESAMPLE: tuple[str, ...] = typing.get_args(typing.get_type_hints(CrawlOptions)["resample"])
"""The resize filters `--resample` takes (bench/crawl_bench.py compares them)."""
