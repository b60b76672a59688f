"""Helpers that write small raw files in the Amazon Reviews 2023 format for the tests."""

import gzip
import json
from pathlib import Path


def image(url: str, variant: str = "MAIN", hi_res: bool = True) -> dict:
    return {
        "thumb": f"{url}._SS40_.jpg",
        "large": f"{url}.jpg",
        "variant": variant,
        "hi_res": f"{url}._SL1500_.jpg" if hi_res else None,
    }


def product(asin: str, sub: str = "Sub", **fields) -> dict:
    record = {
        "main_category": "All Beauty",
        "title": f"Product {asin}",
        "features": ["feature"],
        "description": ["description"],
        "images": [image(f"http://img.test/{asin}")],
        "store": "Store",
        "categories": ["Root", sub, "Leaf"],
        "parent_asin": asin,
    }
    return record | fields


def review(user: str, asin: str, timestamp: int = 0, **fields) -> dict:
    record = {
        "rating": 5.0,
        "title": "Fine",
        "text": "Works.",
        "images": [],
        "asin": asin,
        "parent_asin": asin,
        "user_id": user,
        "timestamp": timestamp,
        "helpful_vote": 0,
        "verified_purchase": True,
    }
    return record | fields


def write_jsonl_gz(path: Path, records: list, raw_lines: tuple[str, ...] = ()) -> Path:
    """Records as JSON lines, then any raw (possibly broken) lines, gzip-compressed."""
    lines = [json.dumps(r) if not isinstance(r, str) else r for r in records] + list(raw_lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    return path


def write_lines_gz(path: Path, lines: list[bytes], final_newline: bool = True) -> Path:
    """Raw lines, bytes as given (invalid UTF-8 and all), gzip-compressed."""
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0))
    return path
