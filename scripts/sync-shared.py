"""Copy the copy of a shared module you edited over its other copies:
`uv run scripts/sync-shared.py packages/slip-eval/src/slip_eval/atomic.py`.

tests/test_shared_modules.py lists the shared modules (SHARED) and fails, naming the file, while
their copies differ.
"""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_shared_modules import SHARED, copies


def sync(edited: Path) -> list[Path]:
    """Write `edited` over every other copy of its module; the copies written."""
    edited = edited.resolve()
    others = [path.resolve() for path in copies(edited.name)] if edited.name in SHARED else []
    if edited not in others:
        raise SystemExit(f"error: {edited} is no copy of a shared module ({', '.join(SHARED)})")
    others.remove(edited)
    for other in others:
        shutil.copyfile(edited, other)
    return others


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: uv run scripts/sync-shared.py EDITED_COPY")
    for written in sync(Path(sys.argv[1])):
        print(f"sync-shared: {written}")
