"""Atomic writes (atomic.py) on a disk that fills up, the sweep of killed writers' temp files,
and OS errors as one line that names the stage and the file."""

import errno
import io
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image
from servers import ThreadedServer

from slip_data.atomic import DiskFullError, atomic_path, remove_stale_temps, write_bytes
from slip_data.crawl import CrawlOptions, crawl
from slip_data.distribute import UnitFailed, UnitOptions, run_units

CLI = [sys.executable, "-c", "from slip_data.cli import main; main()"]


def fill(disk: Path, leave: int) -> None:
    """Take all but about `leave` bytes of `disk`."""
    (disk / "filler").write_bytes(b"\0" * max(0, shutil.disk_usage(disk).free - leave))


def assert_disk_full(exc: BaseException, path: Path) -> None:
    message = str(exc)
    assert isinstance(exc, DiskFullError) and exc.errno == errno.ENOSPC, repr(exc)
    assert message.startswith(f"{path}: no space left on device (") and "\n" not in message


def test_a_write_to_a_full_disk_names_the_file_and_keeps_the_old_one(small_disk):
    target = small_disk / "data.bin"
    write_bytes(target, b"old")
    with pytest.raises(DiskFullError) as error:
        write_bytes(target, b"x" * 1_000_000)
    assert_disk_full(error.value, target)
    assert "bytes free in" in str(error.value) and "the write stopped after" in str(error.value)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in small_disk.iterdir()) == ["data.bin"]  # no temp left


def test_remove_stale_temps_keeps_the_temps_of_live_writers(tmp_path):
    live = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        (tmp_path / "sub").mkdir()
        kept = [f".a.json.{live.pid}.k1.tmp", f"sub/.b.json.{live.pid}.k2.tmp", "c.json", ".d"]
        stale = [f".e.json.{dead.pid}.s1.tmp", ".f.json.s2.tmp", f"sub/.g.pt.{dead.pid}.s3.tmp"]
        for name in kept + stale:
            (tmp_path / name).write_bytes(b"")
        assert remove_stale_temps(tmp_path, recursive=False, of="f.json") == 1
        assert remove_stale_temps(tmp_path, recursive=False) == 1
        assert (tmp_path / stale[2]).exists()
        assert remove_stale_temps(tmp_path) == 1
        left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
        assert left == sorted(kept)
        # a folder built whole and renamed into place (a report) is swept the same way
        for pid in (live.pid, dead.pid):
            (tmp_path / f".report.{pid}.r.tmp").mkdir()
            (tmp_path / f".report.{pid}.r.tmp" / "index.html").write_text("half")
        assert remove_stale_temps(tmp_path, recursive=False, of="report") == 1
        assert [p.name for p in tmp_path.glob(".report.*")] == [f".report.{live.pid}.r.tmp"]
    finally:
        live.kill()
        live.wait()


def noise_jpeg(side: int) -> bytes:
    """Random pixels: a JPEG that compresses badly, so one image is tens of KB."""
    out = io.BytesIO()
    pixels = random.Random(1).randbytes(side * side * 3)
    Image.frombytes("RGB", (side, side), pixels).save(out, "JPEG", quality=95)
    return out.getvalue()


def test_a_crawl_on_a_full_disk_stops_with_one_line_naming_the_part(small_disk):
    """A part written by a crawl worker used to stop the crawl with `ExceptionGroup: unhandled
    errors in a TaskGroup`."""
    image = noise_jpeg(200)

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=image, content_type="image/jpeg")

    def app() -> web.Application:
        served = web.Application()
        served.router.add_get("/{name}", serve)
        return served

    fill(small_disk, leave=8192)
    options = CrawlOptions(part_size=1, workers=1, concurrency=1, attempts=1, timeout=5)
    with ThreadedServer(app) as server:
        host_map = {"images.invalid": ("127.0.0.1", server.port)}
        args = (["http://images.invalid/a.jpg"], small_disk / "crawl", options)
        kwargs = {"host_map": host_map, "quiet": True}
        with pytest.raises(DiskFullError) as error:
            crawl(*args, **kwargs)
        assert_disk_full(error.value, small_disk / "crawl" / "parts" / "part-000000.parquet")
        # as the CLI reports it: the stage, the file, the space; a full disk is not retried
        with pytest.raises(UnitFailed) as failed:
            run_units(
                crawl, [args], UnitOptions(unit_retries=2), name="crawl", quiet=True, kwargs=kwargs
            )
    line = str(failed.value)
    assert line.startswith("crawl unit 0 failed 1 times, last: DiskFullError: ")
    assert "part-000000.parquet: no space left on device" in line and "Group" not in line
    assert not list((small_disk / "crawl" / "parts").iterdir())


def test_an_os_error_names_the_stage_and_the_file(tmp_path):
    out = tmp_path / "build"
    fetched = subprocess.run(
        [*CLI, "fetch", "--source", "demo", "--demo-products", "300", "--out", str(out), "-q"],
        capture_output=True,
        text=True,
    )
    assert fetched.returncode == 0, fetched.stderr
    (out / "graph").write_text("a file where the graph folder goes")
    ran = subprocess.run([*CLI, "graph", "--out", str(out), "-q"], capture_output=True, text=True)
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [f"error: graph: {out / 'graph'}: File exists"]


def test_a_callers_own_error_on_a_full_disk_stays_itself(small_disk):
    """Only a failed write is put down to the disk: a reader's ValueError raised inside the block
    on a nearly full disk passes through unchanged."""
    fill(small_disk, leave=4096)
    with pytest.raises(ValueError, match="bad record"), atomic_path(small_disk / "x.bin"):
        raise ValueError("bad record")
    assert not list(small_disk.glob(".*.tmp"))
