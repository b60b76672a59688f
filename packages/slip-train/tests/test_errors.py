"""Checkpoints on a disk that fills up, checkpoints that miss a key, OS errors and the temp files
of killed runs: each a one-line error naming the file, or swept at the next run."""

import errno
import json
import os
import subprocess
import sys

import pytest
import torch
from train_shards import write_colour_shards

from slip_train.atomic import DiskFullError
from slip_train.checkpoint import (
    CheckpointError,
    export_open_clip,
    load_checkpoint,
    save_checkpoint,
)
from slip_train.config import load_config
from slip_train.train import train

CLI = [sys.executable, "-c", "from slip_train.cli import main; main()"]


def checkpoint_state(**changes) -> dict:
    """Every key docs/checkpoint-format.md promises, with small values."""
    state = {
        "format": "slip-checkpoint", "format_version": 1, "slip_train_version": "0.1.0",
        "step": 1, "epoch": 0, "batch_index": 1, "mode": "clip", "config": {},
        "model_name": "tiny", "model_cfg": {"embed_dim": 4}, "preprocess_cfg": {"size": 8},
        "clip_state_dict": {"w": torch.zeros(4)}, "graph_head": {}, "graph_state_dict": {},
        "optimizer": {}, "scheduler": {}, "rng": {}, "world_size": 1,
    }  # fmt: skip
    return state | changes


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True)


def test_a_checkpoint_on_a_full_disk_names_the_file_and_keeps_the_last_one(small_disk):
    """torch used to say only `[enforce fail at inline_container.cc] unexpected pos`."""
    folder = small_disk / "checkpoints"
    save_checkpoint(checkpoint_state(), folder, keep=3)
    big = checkpoint_state(step=2, clip_state_dict={"w": torch.zeros(200_000)})
    with pytest.raises(DiskFullError) as error:
        save_checkpoint(big, folder, keep=3)
    message = str(error.value)
    assert error.value.errno == errno.ENOSPC and "\n" not in message
    assert message.startswith(f"{folder / 'step-00000002.pt'}: no space left on device (")
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000001.pt"]  # no temp left
    assert load_checkpoint(folder / "step-00000001.pt")["step"] == 1


def test_checkpoints_and_exports_get_normal_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = save_checkpoint(checkpoint_state(), tmp_path / "checkpoints", keep=3)
    export_open_clip(checkpoint_state(), tmp_path / "export")
    for written in [path, *(tmp_path / "export").iterdir()]:
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask, written


def test_a_checkpoint_missing_a_key_or_truncated_is_one_line_naming_the_file(tmp_path):
    no_clip = tmp_path / "no-clip.pt"
    torch.save({k: v for k, v in checkpoint_state().items() if k != "clip_state_dict"}, no_clip)
    no_head = tmp_path / "no-head.pt"
    torch.save(checkpoint_state(mode="slip", graph_state_dict={"image_graph": {}}), no_head)
    no_rng = tmp_path / "no-rng.pt"
    torch.save({k: v for k, v in checkpoint_state().items() if k != "rng"}, no_rng)
    for path, key in ((no_clip, "clip_state_dict"), (no_head, "graph_state_dict.text_graph"),
                      (no_rng, "rng")):  # fmt: skip
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(path)
        assert str(error.value) == f"{path}: missing key '{key}' (docs/checkpoint-format.md)"
    ran = cli("export", str(no_clip), "--out", str(tmp_path / "export"))
    assert ran.returncode == 2 and ran.stderr.strip().splitlines() == [
        f"error: {no_clip}: missing key 'clip_state_dict' (docs/checkpoint-format.md)"
    ]
    truncated = tmp_path / "truncated.pt"
    torch.save(checkpoint_state(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    ran = cli("export", str(truncated), "--out", str(tmp_path / "export"))
    (line,) = ran.stderr.strip().splitlines()
    assert ran.returncode == 2 and line.startswith(f"error: {truncated}: not a readable checkpoint")


def test_an_os_error_names_the_command_and_the_file(tmp_path):
    checkpoint = save_checkpoint(checkpoint_state(), tmp_path / "checkpoints", keep=3)
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "export"
    ran = cli("export", str(checkpoint), "--out", str(out))
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [f"error: export: {out}: Not a directory"]


def test_a_run_removes_the_temps_of_killed_writers_and_keeps_those_of_live_ones(tmp_path):
    shards = write_colour_shards(tmp_path / "shards", n=64)
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    run, cache = tmp_path / "run", tmp_path / "cache"
    kept = [
        run / "checkpoints" / f".step-00000001.pt.{live.pid}.a1.tmp",
        cache / "0123456789abcdef" / f".nodes.arrow.{live.pid}.a2.tmp",
    ]
    stale = [
        run / "checkpoints" / f".step-00000004.pt.{dead.pid}.b1.tmp",
        run / f".log.jsonl.{dead.pid}.b2.tmp",
        cache / "0123456789abcdef" / f".nodes.arrow.{dead.pid}.b3.tmp",
        cache / "0123456789abcdef" / ".nodes.arrow.b4.tmp",  # no writer named: not ours to keep
    ]
    for path in kept + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    config = load_config(
        None,
        [
            f"data.shards={json.dumps(str(shards))}", f"data.cache_dir={json.dumps(str(cache))}",
            f"train.out_dir={json.dumps(str(run))}", "data.num_workers=0", "train.steps=1",
            "sampler.batch_size=16", "sampler.fanouts=[2]", 'train.device="cpu"',
        ],
    )  # fmt: skip
    try:
        result = train(config, show_progress=False)
        assert result.step == 1
        assert [p for p in stale if p.exists()] == []
        assert [p for p in kept if not p.exists()] == []
    finally:
        live.kill()
        live.wait()
