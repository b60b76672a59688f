"""Modules each package carries a copy of (no package imports another): the copies stay equal,
so the behaviour they give is one behaviour. To change one, edit any copy, then copy it over the
others with `scripts/sync-shared.py EDITED_COPY`."""

from pathlib import Path

import pytest

PACKAGES = Path(__file__).parents[1] / "packages"
DATA, TRAIN, EVAL = (
    "slip-data/src/slip_data",
    "slip-train/src/slip_train",
    "slip-eval/src/slip_eval",
)
SHARED = {
    "atomic.py": (DATA, TRAIN, EVAL),
    "entry.py": (DATA, TRAIN, EVAL),
    "shard_contract.py": (DATA, TRAIN, EVAL),
    "bounds.py": (DATA, EVAL),
    "lock.py": (DATA, TRAIN),
    "checkpoint_contract.py": (TRAIN, EVAL),
    "graph_head.py": (TRAIN, EVAL),
}


def copies(name: str) -> list[Path]:
    """Every copy of the shared module `name`."""
    return [PACKAGES / folder / name for folder in SHARED[name]]


@pytest.mark.parametrize("name", sorted(SHARED))
def test_copies_are_equal(name):
    first, *others = copies(name)
    for other in others:
        assert other.read_bytes() == first.read_bytes(), (
            f"{other} differs from {first}: copy the edited one over the others "
            "(scripts/sync-shared.py)"
        )
