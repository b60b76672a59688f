"""Checkpoints (docs/checkpoint-format.md, the contract slip-eval reads): what a run writes and how
it reads it back (`Checkpointer`), and the open_clip export.

Every file is written through atomic.py (a temp file in its folder, flushed, renamed), so a reader
never sees half of one and a killed run keeps its last whole checkpoint. Reading is
`torch.load(weights_only=True)` only.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from slip_train import __version__
from slip_train.atomic import atomic_path, remove_stale_temps, write_bytes
from slip_train.checkpoint_contract import FORMAT, FORMAT_VERSION, GRAPH_HEADS, read_checkpoint
from slip_train.config import Config, ConfigError, to_dict
from slip_train.distributed import Ranks

if TYPE_CHECKING:  # the model pulls in PyG, which reading a checkpoint does not need
    from slip_train.model import SlipModel

CHECKPOINT_NAME = re.compile(r"step-(\d{8})\.pt")
EXPORT_WEIGHTS = "open_clip_pytorch_model.bin"
EXPORT_CONFIG = "open_clip_config.json"
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
    return read_checkpoint(Path(path), needs=REQUIRED_KEYS, error=CheckpointError)


@dataclass(frozen=True)
class Position:
    """Where a run is: the optimizer steps done, and the next batch of the plan (its epoch and
    its index in that epoch)."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0


@dataclass(kw_only=True)
class Checkpointer:
    """A run's checkpoints, as torchtitan keeps them: what one holds (`state`) and how a run takes
    it back (`restore`) side by side, so that the two read the same keys. Every rank restores; rank
    0 alone writes, since all ranks hold the same weights and optimizer state."""

    config: Config
    model: "SlipModel"
    model_cfg: dict  # the open_clip architecture config, for exports
    preprocess_cfg: dict
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ranks: Ranks
    last: Path | None = None  # the last whole checkpoint: the one resumed, then each one written

    @property
    def folder(self) -> Path:
        return Path(self.config.train.out_dir) / "checkpoints"

    def save(self, position: Position) -> Path:
        """Rank 0 writes the checkpoint of `position`, keeping the last `train.keep_checkpoints`."""
        self.last = checkpoint_path(self.folder, position.step)
        if self.ranks.main:
            save_checkpoint(self.state(position), self.folder, self.config.train.keep_checkpoints)
        return self.last

    def state(self, position: Position) -> dict:
        """Everything docs/checkpoint-format.md promises, but the format stamp."""
        model = self.config.model
        return {
            "slip_train_version": __version__,
            "step": position.step,
            "epoch": position.epoch,
            "batch_index": position.batch_index,
            "mode": self.config.loss.mode,
            "config": to_dict(self.config),
            "model_name": model.name,
            "model_cfg": self.model_cfg,
            "preprocess_cfg": self.preprocess_cfg,
            "clip_state_dict": self.model.clip.state_dict(),
            "graph_head": {
                "dim": self.model_cfg["embed_dim"],
                "layers": model.gat_layers,
                "heads": model.gat_heads,
                "fusion": model.fusion,
            },
            "graph_state_dict": {name: head.state_dict() for name, head in self._heads()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "world_size": self.ranks.world,
        }

    def restore(self, resume: str | None) -> Position:
        """Where the run starts: step 0 in an out_dir without checkpoints, or the checkpoint
        `resume` names (a path, or `latest`) read back into the model, the optimizer, the schedule
        and the RNG, at the same world size only (the batches' shares would differ)."""
        if not resume:
            if list_checkpoints(self.folder):
                raise ConfigError(
                    f"train.out_dir: {self.folder.parent} already holds checkpoints; continue "
                    "with --resume latest or train into another out_dir"
                )
            return Position()
        path = resolve_resume(resume, self.folder)
        state = load_checkpoint(path)
        if state.get("world_size", 1) != self.ranks.world:
            raise ConfigError(
                f"--resume: {path} was written by {state.get('world_size', 1)} process(es); "
                f"resume it with as many (this run has {self.ranks.world})"
            )
        self.model.clip.load_state_dict(state["clip_state_dict"])
        for name, head in self._heads():
            head.load_state_dict(state["graph_state_dict"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        self.last = path
        return Position(state["step"], state["epoch"], state["batch_index"])

    def _heads(self) -> list[tuple[str, torch.nn.Module]]:
        """The graph heads present, by their key in `graph_state_dict` (none in `clip` mode)."""
        heads = ((name, getattr(self.model, name)) for name in GRAPH_HEADS)
        return [(name, head) for name, head in heads if head is not None]


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
