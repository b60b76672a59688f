"""A report folder is built beside its target and swapped into place, so a report is always
whole, and only an earlier report or an empty folder is ever replaced."""

import os
import shutil
from pathlib import Path

from slip_eval.atomic import temp_folder
from slip_eval.report.entries import ReportError


def check_out(out: Path) -> None:
    """A report replaces only an earlier report or an empty folder, never other files."""
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "index.html").is_file())
    ):
        raise ReportError(f"{out}: exists and is not a report folder; not replacing it")


def publish(built: Path, out: Path) -> None:
    """Swap the finished folder into place: an earlier report is moved aside, then removed."""
    built.chmod(0o755)
    if not out.exists():
        os.replace(built, out)
        return
    old = temp_folder(out)
    os.replace(out, old / "report")
    os.replace(built, out)
    shutil.rmtree(old)
