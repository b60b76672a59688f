"""Results on a disk that fills up, checkpoints that miss a key, OS errors and the temp files of
killed runs: each a one-line error naming the file, or swept at the next run."""

import json
import re
import shutil
import subprocess
import sys

import open_clip
import pytest
import torch

from slip_eval.atomic import DiskFullError
from slip_eval.graph_head import GraphHead
from slip_eval.models import ModelError, load_model
from slip_eval.results import bar_chart, read_result, write_result

CLI = [sys.executable, "-c", "from slip_eval.cli import main; main()"]
RESULT = {"model": "m", "task": "zeroshot_retrieval", "metrics": {"image_retrieval_recall@1": 0.5}}
MODEL_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "head_width": 8, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
GRAPH_HEAD = {"dim": 16, "layers": 1, "heads": 2, "fusion": "gated_residual"}


def test_a_result_or_chart_on_a_full_disk_names_the_file_and_keeps_the_old_one(small_disk):
    path = small_disk / "result.json"
    write_result(RESULT, path)
    # the DiskFullError itself is atomic.py's, tested in slip-data's test_atomic.py (one copy)
    with pytest.raises(DiskFullError, match=f"^{re.escape(str(path))}: no space left on device"):
        write_result(RESULT | {"notes": ["x" * 1000] * 1000}, path)
    assert read_result(path) == RESULT
    (small_disk / "filler").write_bytes(b"\0" * shutil.disk_usage(small_disk).free)
    chart = small_disk / "chart.png"
    with pytest.raises(DiskFullError, match=f"^{re.escape(str(chart))}: no space left on device"):
        bar_chart([RESULT], ["m"], chart)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "result.json"]  # no temp


def checkpoint_state(**changes) -> dict:
    """A slip checkpoint of a tiny model: every key docs/checkpoint-format.md promises."""
    clip = open_clip.CLIP(**MODEL_CFG)
    head = GraphHead(**GRAPH_HEAD)
    state = {
        "format": "slip-checkpoint", "format_version": 1, "slip_train_version": "0.1.0",
        "step": 1, "epoch": 0, "batch_index": 1, "mode": "slip", "config": {},
        "model_name": "tiny", "model_cfg": MODEL_CFG,
        "preprocess_cfg": {"size": 16, "mean": [0.5] * 3, "std": [0.5] * 3},
        "clip_state_dict": clip.state_dict(), "graph_head": GRAPH_HEAD,
        "graph_state_dict": {"image_graph": head.state_dict(), "text_graph": head.state_dict()},
        "optimizer": {}, "scheduler": {}, "rng": {}, "world_size": 1,
    }  # fmt: skip
    return state | changes


def test_checkpoint_errors_name_the_file_and_what_is_missing(tmp_path):
    good = checkpoint_state()
    torch.save(good, tmp_path / "good.pt")
    assert load_model(str(tmp_path / "good.pt"), None, None).graph_heads is not None
    head = {k: v for k, v in good["graph_state_dict"]["text_graph"].items() if k != "gates"}
    clip = {k: v for k, v in good["clip_state_dict"].items() if k != "logit_scale"}
    broken = {
        "no-clip": ({k: v for k, v in good.items() if k != "clip_state_dict"},
                    "missing key 'clip_state_dict' (docs/checkpoint-format.md)"),
        "no-head": ({k: v for k, v in good.items() if k != "graph_head"},
                    "missing key 'graph_head' (docs/checkpoint-format.md)"),
        "no-text-head": (good | {"graph_state_dict": {"image_graph": head}},
                         "missing key 'graph_state_dict.text_graph' (docs/checkpoint-format.md)"),
        "no-fusion": (good | {"graph_head": {"dim": 16, "layers": 1, "heads": 2}},
                      "missing key 'graph_head.fusion' (docs/checkpoint-format.md)"),
        "no-gates": (good | {"graph_state_dict": {"image_graph": head, "text_graph": head}},
                     'graph head weights do not fit graph_head: Missing key(s) in state_dict: '
                     '"gates".'),
        "no-scale": (good | {"clip_state_dict": clip},
                     'clip_state_dict does not fit model_cfg: Missing key(s) in state_dict: '
                     '"logit_scale".'),
    }  # fmt: skip
    for name, (state, message) in broken.items():
        path = tmp_path / f"{name}.pt"
        torch.save(state, path)
        with pytest.raises(ModelError) as error:
            load_model(str(path), None, None)
        assert str(error.value).startswith(f"{path}: {message}"), str(error.value)
        assert "\n" not in str(error.value)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "good.pt").read_bytes()[:1000])
    with pytest.raises(ModelError, match=f"^{truncated}: not a readable checkpoint"):
        load_model(str(truncated), None, None)


def test_the_cli_sweeps_killed_temps_and_says_which_key_a_checkpoint_misses(tmp_path):
    no_clip = tmp_path / "no-clip.pt"
    torch.save({k: v for k, v in checkpoint_state().items() if k != "clip_state_dict"}, no_clip)
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    cache, out = tmp_path / "cache", tmp_path / "results"
    kept = [cache / f".abc.pt.{live.pid}.a1.tmp", out / f".r.json.{live.pid}.a2.tmp",
            out / ".not-ours.tmp"]  # fmt: skip
    stale = [cache / f".abc.pt.{dead.pid}.b1.tmp", cache / "sub" / ".def.pt.b2.tmp",
             out / f".r.json.{dead.pid}.b3.tmp"]  # fmt: skip
    for path in kept + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    try:
        ran = subprocess.run(
            [*CLI, "retrieval", "--ckpt", str(no_clip), "--cache-dir", str(cache),
             "--out", str(out / "r.json")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)
    finally:
        live.kill()
        live.wait()
    assert ran.returncode == 2 and ran.stderr.strip().splitlines() == [
        f"error: {no_clip}: missing key 'clip_state_dict' (docs/checkpoint-format.md)"
    ]


def test_an_os_error_names_the_command_and_the_file(tmp_path):
    write_result(RESULT, tmp_path / "r.json")
    (tmp_path / "a-file").write_text("not a folder")
    ran = subprocess.run(
        [*CLI, "compare", str(tmp_path / "r.json"), "--chart", str(tmp_path / "a-file" / "c.png")],
        capture_output=True,
        text=True,
    )
    line = f"error: compare: {tmp_path / 'a-file'}: File exists"
    assert ran.returncode == 2 and ran.stderr.strip().splitlines() == [line]
    assert json.loads((tmp_path / "r.json").read_text()) == RESULT
