"""Cross-package fixtures: each package is run through its command only, as a user would. What
takes minutes on the CPU (the demo build, its tiny runs, their export) is made once a test run,
whichever pytest-xdist worker asks first."""

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).parent))

from commands import SLIP_DATA, SLIP_TRAIN, DemoRuns, run, train_run

# SLIP long enough for its loss to fall clearly (test_train_on_demo.py); CLIP only needs to be a
# trained checkpoint for the evaluations, the report and the fine-tuning start
DEMO_STEPS = {"slip": 40, "clip": 6}


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """`make(folder)` run once a test run: under xdist in the temp folder the workers share, by
    the first worker to ask while the others wait on its lock (pytest-xdist's recipe for session
    fixtures), else in this run's own. A failed make is tried again by the next to ask."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's temp folder is in the run's
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    with FileLock(root / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory) -> Path:
    """600 demo products over every category, built by `slip-data build`."""

    def build(folder: Path) -> None:
        built = run(
            [*SLIP_DATA, "build", "--source", "demo", "--categories", "all", "--demo-products",
             "600", "--out", str(folder / "build"), "--quiet"]
        )  # fmt: skip
        assert built.returncode == 0, built.stderr

    return made_once(tmp_path_factory, "demo", build) / "build"


@pytest.fixture(scope="session")
def demo_runs(demo_build, tmp_path_factory) -> DemoRuns:
    """A SLIP and a CLIP run of configs/demo-cpu.toml on the demo build, by `slip-train run`; the
    tests only read them."""

    def train(folder: Path) -> None:
        for mode, steps in DEMO_STEPS.items():
            trained = train_run(demo_build, folder, mode, steps)
            assert trained.returncode == 0, trained.stderr

    return DemoRuns(made_once(tmp_path_factory, "demo-runs", train), DEMO_STEPS)


@pytest.fixture(scope="session")
def demo_export(demo_runs, tmp_path_factory) -> Path:
    """The CLIP run's last checkpoint as open_clip files, by `slip-train export`."""

    def export(folder: Path) -> None:
        checkpoint = str(demo_runs.checkpoint("clip"))
        exported = run([*SLIP_TRAIN, "export", checkpoint, "--out", str(folder / "export")])
        assert exported.returncode == 0, exported.stderr

    return made_once(tmp_path_factory, "demo-export", export) / "export"
