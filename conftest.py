"""Fixtures every package's tests use, and the tests' torch threads."""

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

# The tests' models and probes are tiny: torch's intra-op threads cost more than they give (on a
# busy 2-core machine two threads took 3 to 5 times the CPU time of one for slip-train's 30-step
# test runs and slip-eval's linear probe). One thread, set before torch is imported and inherited
# by the commands the tests run; the tests of thread handling set their own counts.
os.environ.setdefault("OMP_NUM_THREADS", "1")


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
