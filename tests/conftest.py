"""Cross-package fixtures: each package is run through its command only, as a user would. What
takes minutes on the CPU (the demo build, its tiny runs, their export) is made once a test run."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from commands import SLIP_DATA, SLIP_TRAIN, DemoRuns, run, train_run

# SLIP long enough for its loss to fall clearly (test_train_on_demo.py); CLIP only needs to be a
# trained checkpoint for the evaluations, the report and the fine-tuning start
DEMO_STEPS = {"slip": 40, "clip": 6}


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory) -> Path:
    """600 demo products over every category, built by `slip-data build`."""
    out = tmp_path_factory.mktemp("demo") / "build"
    built = run(
        [*SLIP_DATA, "build", "--source", "demo", "--categories", "all", "--demo-products",
         "600", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="session")
def demo_runs(demo_build, tmp_path_factory) -> DemoRuns:
    """A SLIP and a CLIP run of configs/demo-cpu.toml on the demo build, by `slip-train run`; the
    tests only read them."""
    runs = DemoRuns(tmp_path_factory.mktemp("demo-runs"), DEMO_STEPS)
    for mode, steps in DEMO_STEPS.items():
        trained = train_run(demo_build, runs.root, mode, steps)
        assert trained.returncode == 0, trained.stderr
    return runs


@pytest.fixture(scope="session")
def demo_export(demo_runs, tmp_path_factory) -> Path:
    """The CLIP run's last checkpoint as open_clip files, by `slip-train export`."""
    export = tmp_path_factory.mktemp("demo-export") / "export"
    exported = run([*SLIP_TRAIN, "export", str(demo_runs.checkpoint("clip")), "--out", str(export)])
    assert exported.returncode == 0, exported.stderr
    return export
