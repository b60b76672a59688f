"""Fixtures every package's tests use."""

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 256 KiB tmpfs, a disk that fills up: mounted here (root), else in a user and mount
    namespace of its own (`unshare -rm`), reached through /proc/PID/root."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode == 0:
        yield folder
        subprocess.run(["umount", "--lazy", str(folder)], check=True)
        return
    script = f"{shlex.join(mount)} && echo ready && exec sleep 600"
    try:
        holder = subprocess.Popen(
            ["unshare", "-rm", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        pytest.fail(f"no small tmpfs: mount: {mounted.stderr.strip()}; unshare: {exc}")
    if holder.stdout.readline().strip() != b"ready":
        holder.kill()
        pytest.fail(
            f"no small tmpfs for the disk-full tests: mount: {mounted.stderr.strip()}; "
            f"unshare -rm: {holder.stderr.read().decode().strip()} (run as root, or allow "
            "unprivileged user namespaces)"
        )
    try:
        yield Path(f"/proc/{holder.pid}/root") / folder.relative_to("/")
    finally:
        holder.kill()
        holder.wait()
