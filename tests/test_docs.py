"""The config reference documents every key of slip-train's config, with its default."""

import dataclasses
import re
from pathlib import Path

from slip_train.config import Config

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def documented() -> dict[str, str]:
    keys, section = {}, None
    for line in DOC.read_text().splitlines():
        if heading := re.fullmatch(r"## `\[(\w+)\]`", line):
            section = heading.group(1)
        elif section and (row := re.match(r"\| `(\w+)` \| `(.*?)` \|", line)):
            keys[f"{section}.{row.group(1)}"] = row.group(2)
    return keys


def actual() -> dict[str, object]:
    config = Config()
    return {
        f"{section.name}.{item.name}": getattr(getattr(config, section.name), item.name)
        for section in dataclasses.fields(Config)
        for item in dataclasses.fields(getattr(config, section.name))
    }


def toml_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def test_every_key_is_documented_with_its_default():
    docs = documented()
    assert set(docs) == set(actual())
    for key, value in actual().items():
        assert docs[key] == toml_text(value), key


def test_example_configs_are_valid():
    from slip_train.config import load_config

    configs = sorted((DOC.parents[1] / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        load_config(path)
