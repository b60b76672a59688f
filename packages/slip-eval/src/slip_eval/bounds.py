"""Number options checked as they are parsed: a value out of bounds stops the command before any
work, with the one-line `error:` every other bad value gives. (typer's own `min=`/`max=` print a
usage panel instead.) `--help` shows each option's bounds.

The same file is in slip_data and slip_eval (one behaviour, no import between the packages;
tests/test_shared_modules.py keeps the copies equal).
"""

import math
from typing import Any

import typer


def number(
    help: str,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
) -> Any:
    """A typer option of a finite number within the bounds given (None: that side is open)."""
    rules = [
        f"{word} {bound}"
        for word, bound in (("at least", at_least), ("above", above), ("at most", at_most))
        if bound is not None
    ]

    def check(param: typer.CallbackParam, value: float | None) -> float | None:
        if value is None:
            return value
        inside = (
            math.isfinite(value)
            and (at_least is None or value >= at_least)
            and (above is None or value > above)
            and (at_most is None or value <= at_most)
        )
        if not inside:
            raise ValueError(f"{param.opts[0]}: must be {' and '.join(rules)}, got {value}")
        return value

    # `\[`: the bounds are shown as typer shows a default, not read as rich markup
    return typer.Option(help=f"{help} \\[{', '.join(rules)}]", callback=check)
