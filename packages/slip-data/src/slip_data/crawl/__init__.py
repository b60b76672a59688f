"""Image crawl stage: fault-tolerant, SSRF-guarded main-image downloader (img2dataset-like)."""

from slip_data.crawl.options import RETRYABLE, CrawlOptions
from slip_data.crawl.results import load_results
from slip_data.crawl.stage import crawl

__all__ = ["RETRYABLE", "CrawlOptions", "crawl", "load_results"]
