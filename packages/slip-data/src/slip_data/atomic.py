"""Atomic file writes: a temp file in the target's folder, fsync, then rename.

A reader (or a rerun after kill -9) sees either the old file or the whole new one, never half.
"""

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would have given; mkstemp gives 0600


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`: it replaces `target` on success, vanishes on error."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json(target: Path, obj: Any) -> None:
    write_bytes(target, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def remove_stale_temps(folder: Path, recursive: bool = True) -> int:
    """Delete temp files a killed run left behind; returns how many."""
    removed = 0
    if folder.is_dir():
        pattern = f".*{TMP_SUFFIX}"
        for stale in folder.rglob(pattern) if recursive else folder.glob(pattern):
            stale.unlink(missing_ok=True)
            removed += 1
    return removed
