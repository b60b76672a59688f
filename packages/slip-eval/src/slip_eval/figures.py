"""Matplotlib for the report's figures, in one place so every figure is drawn and saved alike:
headless (no display on a server), imported only when a figure is drawn (it is slow to load)."""

from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
