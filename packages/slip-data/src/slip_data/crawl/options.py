"""Crawl settings and the status vocabulary shared by the crawl modules."""

from dataclasses import dataclass

RETRYABLE: frozenset[str] = frozenset(
    {"timeout", "connection_error", "dns_error", "http_429"}
    | {f"http_{code}" for code in range(500, 600)}
)
"""Statuses that may heal by themselves; every other status settles a URL for good."""


DECODERS = ("threads", "processes")
RESAMPLE = ("bilinear", "bicubic", "lanczos")


LEAST = {
    "max_side": 1,
    "concurrency": 1,
    "per_host": 1,
    "attempts": 1,
    "max_bytes": 1,
    "max_pixels": 1,
    "jpeg_quality": 1,
    "max_redirects": 0,
    "workers": 0,
    "per_host_rate": 0,
}
"""The least value of each number setting: below it a crawl fetches nothing, or fails."""


@dataclass(frozen=True)
class CrawlOptions:
    max_side: int = 256  # longer side at most this after resizing (never upscaled)
    jpeg_quality: int = 90
    concurrency: int = 64  # requests in flight
    per_host: int = 16  # connections per host
    per_host_rate: float = 0.0  # request starts per second per host; 0 = no limit
    attempts: int = 3  # tries per item within one run
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    timeout: float = 20.0  # total seconds per try: connect, redirects and the whole body
    max_bytes: int = 20_000_000
    max_pixels: int = 40_000_000
    max_redirects: int = 5
    user_agent: str = (
        "slip-data/0.1 (+https://github.com/slip-toolkit/slip; image crawler for research)"
    )
    allow_private_network: bool = False
    workers: int = 0  # decoding threads or processes; 0 = os.cpu_count()
    decoder: str = "threads"  # or "processes": isolation from a decoder crash, 0.8 ms/image more
    resample: str = "bilinear"  # resize filter: bilinear, bicubic or lanczos (docs/data.md)

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"crawl decoder {self.decoder!r}; valid: {', '.join(DECODERS)}")
        if self.resample not in RESAMPLE:
            raise ValueError(f"crawl resample {self.resample!r}; valid: {', '.join(RESAMPLE)}")
        for name, least in LEAST.items():
            if not getattr(self, name) >= least:
                raise ValueError(
                    f"crawl {name} must be at least {least}, got {getattr(self, name)}"
                )
        if not self.timeout > 0 or self.jpeg_quality > 100:
            raise ValueError("crawl timeout must be above 0, jpeg_quality at most 100")

    part_size: int = 1000  # results per part file
    respect_robots: bool = True  # honour X-Robots-Tag noai/noimageai/noindex/noimageindex


def is_settled(status: str | None) -> bool:
    """A URL whose latest status is final is not fetched again by a rerun."""
    return status is not None and status not in RETRYABLE
