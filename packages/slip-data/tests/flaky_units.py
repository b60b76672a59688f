"""Work-unit functions that fail on their first try, importable by spawned and Ray workers."""

import os
from pathlib import Path


def die_once(marker: str, value: int) -> int:
    """The first call kills its process outright, as an OOM kill or a lost node would."""
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return 2 * value


def pair_users_dying_once(parts, user_part: int, **kwargs):
    """The graph's pair_users, whose process dies on user partition 1's first try; every try
    leaves a file in `tries/` beside the partitions folder, so a test can count them."""
    from slip_data.graph import partitions

    tries = parts.root.parent / "tries"
    tries.mkdir(exist_ok=True)
    count = len(list(tries.glob(f"u{user_part}.*")))
    (tries / f"u{user_part}.{count}").touch()
    if user_part == 1 and count == 0:
        os._exit(1)
    return partitions.pair_users(parts, user_part, **kwargs)


def parse_dying_once(raw: Path, kind: str, dest: Path) -> dict:
    """The graph stage's parse of one raw file, whose process dies on the first try of the
    Books reviews; every try leaves a file in `tries/` beside the parsed folder."""
    from slip_data.graph import stage

    tries = dest.parent.parent / "tries"
    tries.mkdir(exist_ok=True)
    count = len(list(tries.glob(f"{dest.stem}.*")))
    (tries / f"{dest.stem}.{count}").touch()
    if dest.stem == "review_Books" and count == 0:
        os._exit(1)
    return stage._parsed(raw, kind, dest)


def reserved_memory(value: int) -> tuple[int, float | None]:
    """The memory Ray reserved for this task, as its scheduler assigned it."""
    import ray

    return value, ray.get_runtime_context().get_assigned_resources().get("memory")
