"""Number bounds, declared once: an option's value out of them stops the command before any work,
with the one-line `error:` every other bad value gives (typer's own `min=`/`max=` print a usage
panel instead), and `--help` shows each option's bounds. An options dataclass whose fields carry
`Bounds` checks the same rules when code makes one.

The same file is in slip_data and slip_eval (one behaviour, no import between the packages;
tests/test_shared_modules.py keeps the copies equal).
"""

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bounds:
    """Where a finite number may lie; None leaves that side open."""

    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None

    def rules(self) -> list[str]:
        """`at least 1`, `at most 100`: one phrase per closed side."""
        sides = (("at least", self.at_least), ("above", self.above), ("at most", self.at_most))
        return [f"{word} {bound}" for word, bound in sides if bound is not None]

    def check(self, name: str, value: float) -> None:
        """A one-line ValueError naming `name` (a flag or a field) when `value` lies outside."""
        inside = (
            math.isfinite(value)
            and (self.at_least is None or value >= self.at_least)
            and (self.above is None or value > self.above)
            and (self.at_most is None or value <= self.at_most)
        )
        if not inside:
            raise ValueError(f"{name}: must be {' and '.join(self.rules())}, got {value}")


def number(
    help: str,
    *decls: str,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    panel: str | None = None,
) -> Any:
    """A typer option of a finite number within the bounds given (None: that side is open),
    named `decls` (none: after its parameter) and listed under the `--help` panel `panel` (None:
    the command's options)."""
    import typer  # here, not above: the stages' worker processes check Bounds without typer

    shown = ", ".join(Bounds(at_least=at_least, above=above, at_most=at_most).rules())

    def check(param: typer.CallbackParam, value: float | None) -> float | None:
        if value is not None:
            Bounds(at_least=at_least, above=above, at_most=at_most).check(param.opts[0], value)
        return value

    # `\[`: the bounds are shown as typer shows a default, not read as rich markup
    return typer.Option(*decls, help=f"{help} \\[{shown}]", callback=check, rich_help_panel=panel)
