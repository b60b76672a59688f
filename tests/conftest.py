"""Cross-package fixtures: each package is run through its command only, as a user would."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from commands import SLIP_DATA, run


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
