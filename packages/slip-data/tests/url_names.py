"""The name a crawl URL list had when the driver hashed it as a Python list: the value unit
folders' made-for.json records written before keep, which the streamed list must still give."""

import hashlib
import json

from slip_data.crawl.results import HASHED_URLS


def listed_sha256(urls: list[str], size: int = HASHED_URLS) -> str:
    """The sha256 of the JSON of each slice of `size` URLs in turn."""
    digest = hashlib.sha256()
    for start in range(0, len(urls), size):
        digest.update(json.dumps(urls[start : start + size]).encode())
    return digest.hexdigest()
