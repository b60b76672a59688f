"""Comma-separated options (`--split`, `--models`, `--shots`, ...) parsed once, each refusal one
line naming the flag."""

from collections.abc import Sequence


def names(text: str, *, flag: str, allowed: Sequence[str], required: bool = True) -> list[str]:
    """The option's names, each once, in the order given; each one of `allowed`."""
    chosen = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if (required and not chosen) or not set(chosen) <= set(allowed):
        wanted = "one or more" if required else "any"
        raise ValueError(f"{flag}: {text!r}: give {wanted} of {', '.join(allowed)}")
    return chosen


def shots(text: str, *, flag: str = "--shots", at_least: int = 0) -> list[int]:
    """The option's k values, sorted, each once; none when `text` is empty."""
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a comma-separated list of integers") from None
    if ks and ks[0] < at_least:
        raise ValueError(f"{flag}: {text!r}: each k must be {at_least} or more")
    return ks
