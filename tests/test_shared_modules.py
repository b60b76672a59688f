"""Modules each package carries a copy of (no package imports another): the copies stay equal,
so the behaviour they give is one behaviour."""

from pathlib import Path

import pytest

PACKAGES = Path(__file__).parents[1] / "packages"
SHARED = {
    "atomic.py": (
        "slip-data/src/slip_data",
        "slip-train/src/slip_train",
        "slip-eval/src/slip_eval",
    ),
    "entry.py": (
        "slip-data/src/slip_data",
        "slip-train/src/slip_train",
        "slip-eval/src/slip_eval",
    ),
    "bounds.py": ("slip-data/src/slip_data", "slip-eval/src/slip_eval"),
    "lock.py": ("slip-data/src/slip_data", "slip-train/src/slip_train"),
}


@pytest.mark.parametrize("name", sorted(SHARED))
def test_copies_are_equal(name):
    first, *others = (PACKAGES / folder / name for folder in SHARED[name])
    for other in others:
        assert other.read_bytes() == first.read_bytes(), f"{other} differs from {first}"
