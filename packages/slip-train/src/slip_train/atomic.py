"""Atomic file writes: a temp file in the target's folder, fsync, then rename.

A reader (or a rerun after kill -9) sees either the old file or the whole new one, never half.
Temp files carry their writer's PID, so a sweep removes only those of processes that are gone.

The same file is in slip_data, slip_train and slip_eval (one behaviour, no import between the
packages; tests/test_shared_modules.py keeps the copies equal).
"""

import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would have given; mkstemp gives 0600
NEARLY_FULL = 1 << 20  # free bytes under which a failed write is put down to a full disk
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(OSError):
    """A write that ran out of space: names the file, the space free and the bytes written."""

    def __str__(self) -> str:
        return self.strerror  # the whole message, without OSError's "[Errno 28]"


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


def _disk_full(exc: BaseException, target: Path, tmp: Path) -> DiskFullError | None:
    """The one-line error for `exc` if it was the disk filling up, else None.

    Libraries report a full disk in their own words: polars and pyarrow quote the OS's message,
    torch says "unexpected pos", so torch's RuntimeError with under NEARLY_FULL bytes free counts
    as one too. The caller's own errors (a reader's ValueError, say) never do."""
    free = _free_bytes(target.parent)
    said = getattr(exc, "errno", None) in DISK_FULL_ERRNOS or os.strerror(errno.ENOSPC) in str(exc)
    if not said and not (isinstance(exc, OSError | RuntimeError) and 0 <= free < NEARLY_FULL):
        return None
    try:
        written = tmp.stat().st_size
    except OSError:
        written = 0
    return DiskFullError(
        errno.ENOSPC,
        f"{target}: no space left on device ({free:,} bytes free in {target.parent}; "
        f"the write stopped after {written:,} bytes, so it needs more than that)",
    )


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`: it replaces `target` on success, vanishes on error."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except Exception as exc:
        full = _disk_full(exc, target, tmp)
        if full is None:
            raise
        raise full from exc
    finally:
        tmp.unlink(missing_ok=True)


def temp_folder(target: Path) -> Path:
    """A new folder beside `target`, named as a temp file is (with this process's PID), for a
    folder built whole and then renamed into place; a sweep removes it once its writer is gone."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(
        tempfile.mkdtemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=target.parent
        )
    )


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json(target: Path, obj: Any) -> None:
    write_bytes(target, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def process_running(pid: int) -> bool:
    """Whether process `pid` runs on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def _writer_alive(temp_name: str) -> bool:
    """Whether the process named in a temp file's name (`.NAME.PID.RANDOM.tmp`) still runs here."""
    parts = temp_name[: -len(TMP_SUFFIX)].rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # not ours, or from a version that did not name the writer
    return process_running(int(parts[1]))


def remove_stale_temps(folder: Path, recursive: bool = True, of: str = "") -> int:
    """Delete the temp files and folders of writers that are gone (killed runs); returns how
    many. With `of`, only those of the file of that name (in a folder the user shares with other
    files)."""
    removed = 0
    if folder.is_dir():
        pattern = f".{glob.escape(of)}.*{TMP_SUFFIX}" if of else f".*{TMP_SUFFIX}"
        for stale in folder.rglob(pattern) if recursive else folder.glob(pattern):
            if not _writer_alive(stale.name):
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
                removed += 1
    return removed
