"""The config reference documents every key of slip-train's config, with its default and the
rules next to its field (choices, bounds, length)."""

import dataclasses
import re
import typing
from pathlib import Path
from typing import Annotated, Literal

from slip_train.config import Config

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def documented() -> dict[str, tuple[str, str]]:
    """Each key's default and rules, as the page's tables give them."""
    keys, section = {}, None
    for line in DOC.read_text().splitlines():
        if heading := re.fullmatch(r"## `\[(\w+)\]`", line):
            section = heading.group(1)
        elif section and (row := re.match(r"\| `(\w+)` \| `(.*?)` \| (.*?) \|", line)):
            keys[f"{section}.{row.group(1)}"] = (row.group(2), row.group(3))
    return keys


def actual() -> dict[str, object]:
    config = Config()
    return {
        f"{section.name}.{item.name}": getattr(getattr(config, section.name), item.name)
        for section in dataclasses.fields(Config)
        for item in dataclasses.fields(getattr(config, section.name))
    }


def annotations() -> dict[str, object]:
    return {
        f"{section.name}.{name}": hint
        for section in dataclasses.fields(Config)
        for name, hint in typing.get_type_hints(section.type, include_extras=True).items()
    }


def rules_text(annotation: object) -> str:
    """A field's rules as the page lists them: `a`, `b` (choices), `> 0`, `[0, 1)` (bounds),
    at least 1 item, each `> 0` (a list); `-` for none."""
    rules: list = []
    if typing.get_origin(annotation) is Annotated:
        annotation, *rules = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return ", ".join(f"`{choice}`" for choice in typing.get_args(annotation))
    if typing.get_origin(annotation) is list:
        (inner,) = typing.get_args(annotation)
        return ", ".join([*(str(rule) for rule in rules), f"each {rules_text(inner)}"])
    return ", ".join(f"`{rule}`" for rule in rules) or "-"


def toml_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def test_every_key_is_documented_with_its_default_and_rules():
    docs, hints = documented(), annotations()
    assert set(docs) == set(actual())
    for key, value in actual().items():
        assert docs[key] == (toml_text(value), rules_text(hints[key])), key


def test_example_configs_are_valid():
    from slip_train.config import load_config

    configs = sorted((DOC.parents[1] / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        load_config(path)
