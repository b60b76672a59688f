"""Checkpoints (docs/checkpoint-format.md, the contract slip-eval reads) and the open_clip export.

Every file is written through atomic.py (a temp file in its folder, flushed, renamed), so a reader
never sees half of one and a killed run keeps its last whole checkpoint. Reading is
`torch.load(weights_only=True)` only.
"""

import json
import re
from pathlib import Path

import torch

from slip_train.atomic import atomic_path, remove_stale_temps, write_bytes

FORMAT = "slip-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = re.compile(r"step-(\d{8})\.pt")
EXPORT_WEIGHTS = "open_clip_pytorch_model.bin"
EXPORT_CONFIG = "open_clip_config.json"
GRAPH_HEADS = ("image_graph", "text_graph")  # graph_state_dict's keys in slip mode
# every key docs/checkpoint-format.md promises, but `world_size` (absent in older checkpoints)
REQUIRED_KEYS = (
    "slip_train_version", "step", "epoch", "batch_index", "mode", "config", "model_name",
    "model_cfg", "preprocess_cfg", "clip_state_dict", "graph_head", "graph_state_dict",
    "optimizer", "scheduler", "rng",
)  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or of another format; one line."""


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:08d}.pt"


def list_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints in `folder`, oldest step first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if CHECKPOINT_NAME.fullmatch(p.name))


def save_checkpoint(state: dict, folder: Path, keep: int) -> Path:
    """Write `state` as the checkpoint of its step, then delete all but the last `keep`."""
    path = checkpoint_path(folder, state["step"])
    stamped = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(stamped, tmp)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents, checked; CheckpointError (one line) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a slip-train checkpoint (docs/checkpoint-format.md)")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state.get('format_version')!r}; "
            f"this slip-train reads {FORMAT_VERSION}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if state.get("mode") == "slip":
        heads = state.get("graph_state_dict", {})
        missing += [f"graph_state_dict.{name}" for name in GRAPH_HEADS if name not in heads]
    if missing:
        raise CheckpointError(f"{path}: missing key {missing[0]!r} (docs/checkpoint-format.md)")
    return state


def resolve_resume(resume: str, folder: Path) -> Path:
    """`latest` is the newest checkpoint in `folder`; anything else is a path."""
    if resume != "latest":
        return Path(resume)
    found = list_checkpoints(folder)
    if not found:
        raise CheckpointError(f"--resume latest: no checkpoint in {folder}")
    return found[-1]


def export_open_clip(state: dict, folder: Path) -> Path:
    """The CLIP encoders as open_clip loads them itself.

    `folder` gets `open_clip_pytorch_model.bin` (the state dict), `open_clip_config.json` (model
    and preprocess config, for `create_model("local-dir:FOLDER")`) and `<model name>.json` (the bare
    architecture, for `open_clip.add_model_config(FOLDER)` then
    `create_model(name, pretrained=FOLDER/open_clip_pytorch_model.bin)`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / EXPORT_WEIGHTS
    with atomic_path(weights) as tmp:
        torch.save(state["clip_state_dict"], tmp)
    config = {
        "model_name": state["model_name"],
        "model_cfg": state["model_cfg"],
        "preprocess_cfg": state["preprocess_cfg"],
    }
    for target, content in (
        (folder / EXPORT_CONFIG, config),
        (folder / f"{state['model_name']}.json", state["model_cfg"]),
    ):
        write_bytes(target, json.dumps(content, indent=2).encode())
    return weights


def remove_run_temps(out_dir: Path, cache_dir: Path) -> None:
    """Delete the temp files killed runs left in `out_dir`, its checkpoints and the node cache
    (checkpoints and caches are large, and nothing ever reads a temp); a live writer's stay,
    so runs may share a cache folder."""
    remove_stale_temps(out_dir, recursive=False)
    remove_stale_temps(out_dir / "checkpoints", recursive=False)
    remove_stale_temps(cache_dir)
