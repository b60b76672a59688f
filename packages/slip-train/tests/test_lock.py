"""One run per out_dir: a second `slip-train run` is one line naming the holder's PID, and the
out_dir of a killed run is taken over."""

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from train_shards import write_colour_shards

from slip_train import train as train_module
from slip_train.cli import main
from slip_train.config import Config
from slip_train.lock import FolderInUse

HOLD = """
import sys, time
from slip_train.lock import hold
with hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@contextmanager
def held_elsewhere(folder: Path) -> Iterator[int]:
    """Another process holds `folder` until the block ends, when it is killed; yields its PID."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def slip_train_run(config: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """`slip-train run CONFIG` through its entry point, in this process."""
    monkeypatch.setattr("sys.argv", ["slip-train", "run", str(config), "--quiet"])
    with pytest.raises(SystemExit) as exit_:
        main()
    said = capsys.readouterr()
    return exit_.value.code, said.out, said.err


def test_a_taken_out_dir_is_one_line_naming_the_holder_then_taken_over(
    tmp_path, monkeypatch, capsys
):
    shards = write_colour_shards(tmp_path / "shards")
    out = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text(
        f"[data]\nshards = {json.dumps(str(shards))}\n"
        f"cache_dir = {json.dumps(str(tmp_path / 'cache'))}\nnum_workers = 0\n"
        f'[sampler]\nbatch_size = 32\n[train]\nsteps = 1\ndevice = "cpu"\n'
        f"out_dir = {json.dumps(str(out))}\n"
    )
    with held_elsewhere(out) as pid:
        code, _, err = slip_train_run(config, monkeypatch, capsys)
        assert code == 2
        assert err == f"error: {out} is in use by another slip-train process (PID {pid})\n"
    assert (out / ".lock").read_text() == f"{pid}\n"  # the killed holder's: taken over
    code, said, err = slip_train_run(config, monkeypatch, capsys)
    assert code == 0 and "step 1: loss" in said, err
    assert (out / "checkpoints" / "step-00000001.pt").is_file()


def test_only_rank_0_holds_the_out_dir(tmp_path, monkeypatch):
    """Under torchrun only rank 0 writes to out_dir: the other ranks do not wait on its hold."""
    monkeypatch.setattr(train_module, "_train", lambda *args: "trained")
    config = Config()
    config.train.out_dir = str(tmp_path / "run")
    with held_elsewhere(tmp_path / "run"):
        monkeypatch.setenv("RANK", "1")
        assert train_module.train(config) == "trained"
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(FolderInUse):
            train_module.train(config)
