"""The inputs of a report: result files labelled by the model they measured, and the training
logs of those models' runs."""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from slip_eval.results import read_result


class ReportError(ValueError):
    """A report that cannot be made from its input; one line."""


@dataclass
class Entry:
    """One result file and the label of the model it measured."""

    path: Path
    result: dict
    label: str = ""


def _model_key(result: dict) -> tuple[str, str]:
    return result["model"], str(result.get("pretrained", ""))


def label_entries(entries: list[Entry]) -> None:
    """A label per model, shared by its results: the run folder of a slip-train checkpoint
    (`.../<run>/checkpoints/step-N.pt`), else the weights' name, so SLIP and CLIP runs of one
    architecture tell apart."""
    labels: dict[tuple[str, str], str] = {}
    for entry in entries:
        key = _model_key(entry.result)
        if key not in labels:
            source = Path(key[1])
            run = source.parent.parent.name if source.parent.name == "checkpoints" else source.name
            label = f"{key[0]} · {run}" if run else key[0]
            if label in labels.values():
                label += f" [{len(labels)}]"
            labels[key] = label
        entry.label = labels[key]


def read_entries(paths: Iterable[Path]) -> list[Entry]:
    entries = [Entry(Path(p), read_result(Path(p))) for p in paths]
    if not entries:
        raise ReportError("no result file given")
    label_entries(entries)
    return entries


def colours(entries: list[Entry]) -> dict[str, str]:
    """One colour per model, the same in every plot."""
    labels = list(dict.fromkeys(e.label for e in entries))
    return {label: f"C{i % 10}" for i, label in enumerate(labels)}


def run_log(result: dict) -> Path | None:
    """The training log of a slip-train checkpoint's run (docs/checkpoint-format.md)."""
    source = Path(str(result.get("pretrained", "")))
    if source.parent.name != "checkpoints":
        return None
    return source.parent.parent / "log.jsonl"


def read_log(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash mid-write
        if isinstance(record, dict) and "step" in record and "loss" in record:
            records.append(record)
    return records
