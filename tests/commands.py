"""The three packages' commands, run as a user would, for the cross-package tests."""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLIP_DATA = [sys.executable, "-m", "slip_data"]
SLIP_TRAIN = [sys.executable, "-c", "from slip_train.cli import main; main()"]
SLIP_EVAL = [sys.executable, "-c", "from slip_eval.cli import main; main()"]


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, **kwargs)


def slip_eval_in_process(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """`slip-eval ARGS` through its entry point, in this process (torch is imported once per
    test process, not once per call): for bad input, whose checks come before any work."""
    from slip_eval.cli import main

    monkeypatch.setattr("sys.argv", ["slip-eval", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def train_run(demo_build: Path, out: Path, mode: str, steps: int) -> subprocess.CompletedProcess:
    """A short `slip-train run` of configs/demo-cpu.toml on the demo build."""
    return run(
        [*SLIP_TRAIN, "run", "configs/demo-cpu.toml", "--quiet",
         "--set", f'data.shards="{demo_build}"', "--set", f'data.cache_dir="{out / "cache"}"',
         "--set", f'train.out_dir="{out / mode}"', "--set", f"train.steps={steps}",
         "--set", f'loss.mode="{mode}"', "--set", "sampler.batch_size=64",
         "--set", "optim.warmup_steps=5", "--set", "optim.lr=1e-3"]
    )  # fmt: skip


@dataclass(frozen=True)
class DemoRuns:
    """The tiny runs that `train_run` wrote under `root`, one per mode, with their steps."""

    root: Path
    steps: dict[str, int]

    def folder(self, mode: str) -> Path:
        return self.root / mode

    def checkpoint(self, mode: str) -> Path:
        """The run's last checkpoint."""
        return self.folder(mode) / "checkpoints" / f"step-{self.steps[mode]:08d}.pt"

    @property
    def cache(self) -> Path:
        """The node cache both runs built once and read: other runs on the demo build reuse it."""
        return self.root / "cache"
