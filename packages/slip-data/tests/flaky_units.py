"""Work-unit functions that fail on their first try, importable by spawned and Ray workers."""

import os
from pathlib import Path


def die_once(marker: str, value: int) -> int:
    """The first call kills its process outright, as an OOM kill or a lost node would."""
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return 2 * value
