"""The checkpoint format (docs/checkpoint-format.md) as code: its stamp, the graph heads' keys, and
a checkpoint file read and checked the way every reader must.

The same file is in slip_train and slip_eval (one behaviour, no import between the packages;
tests/test_shared_modules.py keeps the copies equal). It needs torch alone: reading a checkpoint
builds no model.
"""

from collections.abc import Sequence
from pathlib import Path

import torch

FORMAT = "slip-checkpoint"
FORMAT_VERSION = 1
GRAPH_HEADS = ("image_graph", "text_graph")  # graph_state_dict's keys in slip mode
SLIP_KEYS = ("graph_head", "graph_state_dict")  # what every reader needs in slip mode
PAGE = "docs/checkpoint-format.md"
PROGRAM = __name__.split(".")[0].replace("_", "-")  # slip-train or slip-eval, by the copy


def read_checkpoint(path: Path, *, needs: Sequence[str], error: type[Exception]) -> dict:
    """The checkpoint at `path`, loaded with `weights_only=True`: of this format and version, with
    every key of `needs` and, in slip mode, the heads' spec and both their state dicts; else
    `error` (the caller's own one-line error type) naming the file and what is wrong."""
    if not path.is_file():
        raise error(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise error(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise error(f"{path}: not a slip-train checkpoint ({PAGE})")
    if state.get("format_version") != FORMAT_VERSION:
        raise error(
            f"{path}: checkpoint format version {state.get('format_version')!r}; "
            f"this {PROGRAM} reads {FORMAT_VERSION}"
        )
    slip = state.get("mode") == "slip"
    keys = dict.fromkeys([*needs, *(SLIP_KEYS if slip else ())])  # in order, each once
    missing = [key for key in keys if key not in state]
    if slip:
        heads = state.get("graph_state_dict", {})
        missing += [f"graph_state_dict.{name}" for name in GRAPH_HEADS if name not in heads]
    if missing:
        raise error(f"{path}: missing key {missing[0]!r} ({PAGE})")
    return state
