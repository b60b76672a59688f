"""One writer per build folder: a second command is one line naming the holder's PID, a killed
holder's folder is taken over, and `--shard-index` units share the folder."""

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from slip_data import pipeline
from slip_data.cli import main
from slip_data.crawl import CrawlOptions
from slip_data.distribute import UnitOptions
from slip_data.graph.build import GraphOptions
from slip_data.lock import FolderInUse, hold
from slip_data.sources.demo import DemoSpec

SOURCE = pipeline.SourceConfig(
    "demo", ("Books",), demo=DemoSpec(products=300, categories=("Books",))
)
HOLD = """
import sys, time
from slip_data.lock import hold
with hold(sys.argv[1], shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    time.sleep(600)
"""
FORK_AND_HOLD = """
import multiprocessing, sys, time
from slip_data.lock import hold
def rest(ready):
    ready.set()  # the fork hooks ran before this: its copy of the lock is closed if ever
    time.sleep(60)
with hold(sys.argv[1]):
    fork = multiprocessing.get_context("fork")
    ready = fork.Event()
    child = fork.Process(target=rest, args=(ready,))
    child.start()
    ready.wait(60)
    print(child.pid, flush=True)
    time.sleep(600)
"""


@contextmanager
def held_elsewhere(folder: Path, *, shared: bool = False) -> Iterator[int]:
    """Another process holds `folder` (as a running command would) until the block ends, when it
    is killed; yields its PID."""
    mode = "shared" if shared else "alone"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def slip_data(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """`slip-data ARGS` through its entry point, in this process."""
    monkeypatch.setattr("sys.argv", ["slip-data", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def graphed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("graphed")
    pipeline.fetch(pipeline.Layout(root), SOURCE, quiet=True)
    pipeline.graph(pipeline.Layout(root), GraphOptions(), quiet=True)
    return root


def test_a_taken_folder_is_one_line_naming_the_holder_then_taken_over(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "build"
    demo = ["--source", "demo", "--categories", "Books", "--demo-products", "300"]
    with held_elsewhere(out) as pid:
        for args in (["graph", "--out", str(out)], ["build", *demo, "--out", str(out)]):
            code, err = slip_data(args, monkeypatch, capsys)
            assert code == 2, err
            assert err == f"error: {out} is in use by another slip-data process (PID {pid})\n"
        assert not (out / "source.json").exists()
    # the holder was killed: its PID stays in the lock file, its lock is gone with it
    assert (out / ".lock").read_text() == f"{pid}\n"
    pipeline.fetch(pipeline.Layout(out), SOURCE, quiet=True)
    assert (out / ".lock").read_text() == f"{os.getpid()}\n"
    assert pipeline.graph(pipeline.Layout(out), GraphOptions(), quiet=True)["counts"]["nodes"]


def test_shard_index_units_share_the_folder_a_whole_folder_command_does_not(
    graphed, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "build"
    shutil.copytree(graphed, out)
    layout, crawl = pipeline.Layout(out), CrawlOptions(workers=1)
    with held_elsewhere(out, shared=True) as pid:  # unit 1 of 2, running
        counts = pipeline.crawl_images(layout, crawl, UnitOptions(num_shards=2, shard_index=0))
        assert counts["ok"] > 0
        for args in (["crawl", "--out", str(out)], ["shard", "--out", str(out)]):
            code, err = slip_data(args, monkeypatch, capsys)
            assert code == 2 and err.endswith(f"in use by another slip-data process (PID {pid})\n")


def test_the_lock_itself(tmp_path):
    (tmp_path / ".lock").write_text("999999999\n")  # a holder long gone
    with hold(tmp_path), hold(tmp_path):  # taken over; held again inside: one hold
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
    with held_elsewhere(tmp_path, shared=True) as pid:
        with hold(tmp_path, shared=True):
            pass
        taken = rf"{tmp_path} is in use by another slip-data process \(PID {pid}\)"
        with pytest.raises(FolderInUse, match=taken), hold(tmp_path):
            pass


def test_the_forked_children_of_a_killed_holder_do_not_keep_its_folder(tmp_path):
    """A decoder pool's or a DataLoader's workers outlive a kill -9 of their parent a while."""
    holder = subprocess.Popen(
        [sys.executable, "-c", FORK_AND_HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    child = int(holder.stdout.readline())
    holder.kill()
    holder.wait()
    holder.stdout.close()
    try:
        os.kill(child, 0)  # alive, forked while its parent held the folder
        with hold(tmp_path):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
