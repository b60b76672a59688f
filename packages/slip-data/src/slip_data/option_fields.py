"""The stages' options, each declared once, on its dataclass field: its type (a `Literal` for a
choice), its `Bounds` and its `--help` line. slip-data's commands take their flags from these
fields (cli.py), so `--help` lists every choice and bound and no flag can be lost on its way to its
stage; a dataclass made in code checks the same rules (`check_fields` in its `__post_init__`).
A field made without `option()` (a crawl's backoff, say) is set in code only, not on the command
line."""

import typing
from collections.abc import Callable
from dataclasses import Field, field, fields
from typing import Annotated, Any, Literal

from slip_data.bounds import Bounds


def option(default: Any, help: str, *, flag: str | None = None) -> Any:
    """A field that is also a command-line option: `--help` shows `help`; `flag` replaces the one
    made from the field's name (`--respect-robots/--ignore-robots`)."""
    return field(default=default, metadata={"help": help, "flag": flag})


def text_option(default: str, help: str, parse: Callable[[str], Any], *, flag: str) -> Any:
    """A field whose flag takes text (`--split 0.8,0.1,0.1`) that `parse` turns into the field's
    value (a tuple, a table); its default is `parse(default)`."""
    metadata = {"help": help, "flag": flag, "parse": parse, "text": default}
    return field(default_factory=lambda: parse(default), metadata=metadata)


def is_option(item: Field) -> bool:
    """A field with a flag (made by `option` or `text_option`)."""
    return "help" in item.metadata


def split_annotation(annotation: Any) -> tuple[Any, Bounds | None]:
    """A field's type without `Annotated`, and the `Bounds` next to it (None: unbounded)."""
    if typing.get_origin(annotation) is not Annotated:
        return annotation, None
    base, *extras = typing.get_args(annotation)
    return base, next((extra for extra in extras if isinstance(extra, Bounds)), None)


def check_fields(options: Any) -> None:
    """A one-line ValueError naming the first field of `options` outside its choices or bounds."""
    hints = typing.get_type_hints(type(options), include_extras=True)
    for item in fields(options):
        value = getattr(options, item.name)
        base, bounds = split_annotation(hints[item.name])
        if typing.get_origin(base) is Literal and value not in typing.get_args(base):
            choices = ", ".join(typing.get_args(base))
            raise ValueError(f"{item.name}: {value!r} is not one of {choices}")
        if bounds is not None and value is not None:
            bounds.check(item.name, value)


def flag_default(item: Field) -> Any:
    """The field's default as its flag takes it: the text of a text option, else the value."""
    return item.metadata.get("text", item.default)


def from_flag(item: Field, value: Any) -> Any:
    """The field's value from its flag's: parsed for a text option."""
    parse = item.metadata.get("parse")
    return parse(value) if parse else value
