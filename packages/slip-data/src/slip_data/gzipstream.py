"""Streaming gunzip shared by the fetch check and the reader: multi-member, truncation detected."""

import zlib
from collections.abc import Iterator
from pathlib import Path

READ_BYTES = 1 << 20


class TruncatedGzipError(EOFError):
    """The file ends inside a gzip member: a download cut short."""


def inflate(path: Path) -> Iterator[bytes]:
    """Yield decompressed chunks; raise zlib.error on corrupt data, TruncatedGzipError at a cut end.

    Everything before the fault has been yielded by then, so a reader can keep it.
    """
    inflater = zlib.decompressobj(wbits=31)
    member_open = False
    with open(path, "rb") as raw:
        while chunk := raw.read(READ_BYTES):
            while chunk:
                member_open = True
                if out := inflater.decompress(chunk):
                    yield out
                if not inflater.eof:
                    break
                chunk = inflater.unused_data
                inflater = zlib.decompressobj(wbits=31)
                member_open = False
    if member_open:
        raise TruncatedGzipError(f"{path}: gzip stream ends early")


def gzip_is_whole(path: Path) -> bool:
    """True when the file is non-empty gzip whose every member decompresses and checks out."""
    try:
        for _ in inflate(path):
            pass
    except (zlib.error, TruncatedGzipError):
        return False
    return path.stat().st_size > 0
