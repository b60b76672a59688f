"""One writer per output folder: an flock on FOLDER/.lock for as long as a command writes there.

The kernel drops an flock when its holder dies, so the folder of a killed run is free again at
once, whatever PIDs its lock file still lists. Work units that write apart inside one folder hold
it shared; a whole-folder command holds it alone. Holders list their PIDs in the file, for the
message of whoever finds the folder taken.

The same file is in slip_data and slip_train (one behaviour, no import between the packages;
tests/test_shared_modules.py keeps the copies equal).
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .atomic import process_running

LOCK_FILE = ".lock"
PROGRAM = __name__.split(".")[0].replace("_", "-")  # slip-data or slip-train, by the copy

_held: dict[Path, int] = {}  # folder -> lock descriptor, of this process (a stage in `build`)


def _forget_in_child() -> None:
    """A forked child (a decoder pool, a DataLoader worker) holds nothing: its copy of the
    descriptor would keep the folder locked after its parent is killed."""
    for fd in _held.values():
        os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class FolderInUse(RuntimeError):
    """Another process writes to the folder; the message names the folder and its PID."""


def _holder(fd: int) -> str:
    """The PID to name: the last listed that runs here, else the last listed (a holder on another
    machine of a shared filesystem); empty before a holder has written its PID."""
    words = os.pread(fd, 1 << 16, 0).split()
    listed = [int(word) for word in words if word.isdigit() and int(word) != os.getpid()]
    running = [pid for pid in listed if process_running(pid)]
    return str((running or listed)[-1]) if listed else ""


@contextmanager
def hold(folder: str | Path, *, shared: bool = False) -> Iterator[None]:
    """Hold `folder` (created if missing) for the block: alone, or `shared` with other shared
    holders; FolderInUse at once if that cannot be. Held already by this process: a no-op."""
    key = Path(folder).resolve()
    if key in _held:
        yield
        return
    key.mkdir(parents=True, exist_ok=True)
    fd = _held[key] = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            whose = f" (PID {pid})" if pid else ""
            raise FolderInUse(f"{folder} is in use by another {PROGRAM} process{whose}") from None
        if not shared:
            os.ftruncate(fd, 0)  # the PIDs of earlier holders, all gone now
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        if _held.pop(key, None) == fd:  # not in a forked child: it closed its copy at the fork
            os.close(fd)  # the lock goes with the last descriptor, this one
