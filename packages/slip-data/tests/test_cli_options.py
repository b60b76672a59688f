"""Every option field of the stages' dataclasses is one flag of each command that takes the
dataclass, and the value given to the flag, or in a `--config` file, is the value the stage gets:
no flag is dropped or renamed on its way (the old `_pick(cls, locals())` dropped a renamed one)."""

import dataclasses
import typing

import pytest
import typer
from typer.testing import CliRunner

from slip_data import pipeline
from slip_data.cli import SourceOptions, app, main
from slip_data.crawl import CrawlOptions
from slip_data.distribute import UnitOptions
from slip_data.graph.build import GraphOptions
from slip_data.option_fields import split_annotation
from slip_data.shard.writer import ShardOptions
from slip_data.sources.demo import DemoSpec

COMMANDS = typer.main.get_command(app).commands
TAKES = {
    "build": (SourceOptions, GraphOptions, CrawlOptions, ShardOptions, UnitOptions),
    "fetch": (SourceOptions,),
    "graph": (GraphOptions, UnitOptions),
    "crawl": (CrawlOptions, UnitOptions),
    "shard": (ShardOptions, UnitOptions),
}
"""The options dataclasses each command takes, and calls its stage with."""
NOT_ON = {  # build and graph run every unit; the graph's units come from --memory-gb
    ("build", "shard_index"),
    ("graph", "shard_index"),
    ("graph", "num_shards"),
}
IN_CODE_ONLY = {
    "backoff_base",
    "backoff_max",
    "part_size",
}  # no flag: tests and benchmarks set them
FLAGS = {"split_fractions": "--split"}  # flags not named after their field
OFF_FLAGS = {"respect_robots": "--ignore-robots"}
TEXTS = {
    "categories": "Books",
    "base_url": "/elsewhere",
    "user_agent": "test-agent/1",
    "ray_address": "auto",
    "label_levels": "Books=2",
    "split_fractions": "0.6,0.2,0.2",
}
"""A value other than the default of each text flag."""


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def flagged(command: str) -> list[tuple[type, dataclasses.Field]]:
    return [
        (group, item)
        for group in TAKES[command]
        for item in dataclasses.fields(group)
        if item.name not in IN_CODE_ONLY and (command, item.name) not in NOT_ON
    ]


def other_value(item: dataclasses.Field, hint: object) -> tuple[list[str], object]:
    """Arguments that set the field to a value other than its default, and that value."""
    if item.name in TEXTS:
        parse = item.metadata.get("parse")
        text = TEXTS[item.name]
        return [flag(item.name), text], parse(text) if parse else text
    base, bounds = split_annotation(hint)
    default = item.default
    if base is bool:
        off = OFF_FLAGS.get(item.name, "--no-" + item.name.replace("_", "-"))
        return [off if default else flag(item.name)], not default
    if typing.get_origin(base) is typing.Literal:
        value = next(choice for choice in typing.get_args(base) if choice != default)
        return [flag(item.name), value], value
    if default is None:  # --num-shards 1, --shard-index 0: their least values
        return [flag(item.name), str(bounds.at_least)], bounds.at_least
    step = 1 if isinstance(default, int) else 0.5
    value = default + step if bounds.at_most is None or default + step <= bounds.at_most else None
    value = default - step if value is None else value
    return [flag(item.name), str(value)], value


class Called(Exception):
    """The stage was called: the test has what it needs, nothing runs."""


def stage_arguments(monkeypatch, argv: list[str]) -> dict[type, object]:
    """The options dataclasses `slip-data ARGV` calls its stage with."""
    seen: dict[type, object] = {}

    def stage(*args, **kwargs):
        seen.update((type(arg), arg) for arg in [*args, *kwargs.values()])
        raise Called

    def config(options: SourceOptions):
        seen[SourceOptions] = options
        return None

    for name in ("build", "fetch", "graph", "crawl_images", "shard"):
        monkeypatch.setattr(pipeline, name, stage)
    monkeypatch.setattr(SourceOptions, "config", config)
    result = CliRunner().invoke(app, argv)
    assert isinstance(result.exception, Called), result.output
    return seen


@pytest.mark.parametrize("command", sorted(TAKES))
def test_each_option_field_is_one_flag_of_each_command_taking_its_dataclass(command):
    params = COMMANDS[command].params
    flags = [param.opts[0] for param in params]
    expected = {flag(item.name) for _, item in flagged(command)}
    assert sorted(set(flags) - {"--out", "--config", "--quiet"}) == sorted(expected)
    assert len(flags) == len(set(flags))


@pytest.mark.parametrize("command", sorted(TAKES))
def test_each_flag_reaches_its_field(command, tmp_path, monkeypatch):
    argv, changed = [command, "--out", str(tmp_path / "o")], {}
    for group, item in flagged(command):
        args, value = other_value(
            item, typing.get_type_hints(group, include_extras=True)[item.name]
        )
        argv += args
        changed.setdefault(group, {})[item.name] = value
    seen = stage_arguments(monkeypatch, argv)
    for group in TAKES[command]:
        assert seen[group] == group(**changed[group]), group.__name__


def test_source_options_make_the_source_config():
    options = SourceOptions(
        source="demo",
        categories="Books,Software",
        base_url="/elsewhere",
        demo_products=301,
        demo_seed=7,
        caption_noise=0.3,
        demo_reviews_per_product=2.0,
        demo_label_homophily=0.6,
        demo_mean_degree=5.0,
        demo_items_per_user=3.0,
    )
    assert all(getattr(options, f.name) != f.default for f in dataclasses.fields(options))
    names = ("Books", "Software")
    demo = DemoSpec(
        products=301,
        seed=7,
        caption_noise=0.3,
        reviews_per_product=2.0,
        categories=names,
        label_homophily=0.6,
        mean_degree=5.0,
        items_per_user=3.0,
    )
    assert options.config() == pipeline.SourceConfig("demo", names, "/elsewhere", demo)


def test_a_config_file_sets_options_and_a_flag_wins(tmp_path, monkeypatch):
    """One file serves build and each stage: crawl skips the graph's keys, graph the crawl's."""
    config = tmp_path / "build.toml"
    config.write_text(
        'max_side = 100\nconcurrency = 8\nrespect_robots = false\ndecoder = "processes"\n'
        'min_weight = 2\nsplit = "0.6,0.2,0.2"\nlabel_levels = "Books=2"\nnum_shards = 4\n'
    )
    out = ["--out", str(tmp_path / "o"), "--config", str(config)]
    seen = stage_arguments(monkeypatch, ["crawl", *out, "--max-side", "50"])
    crawl = CrawlOptions(max_side=50, concurrency=8, respect_robots=False, decoder="processes")
    assert seen[CrawlOptions] == crawl and seen[UnitOptions] == UnitOptions(num_shards=4)
    seen = stage_arguments(monkeypatch, ["graph", *out])
    graph = GraphOptions(min_weight=2, split_fractions=(0.6, 0.2, 0.2), label_levels={"Books": 2})
    assert seen[GraphOptions] == graph


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_sid = 3\n", "unknown key 'max_sid'; a key is an option's name with _ for -"),
        ("max-side = 3\n", "unknown key 'max-side'"),
        ("max_side = 0\n", "--max-side: must be at least 1, got 0"),
        ('max_side = "big"\n', "Invalid value for '--max-side'"),
        ('decoder = "fast"\n', "'fast' is not one of 'threads', 'processes'"),
        ("max_side = [1]\n", "max_side: expected one value as its flag takes, got [1]"),
        ("max_side = \n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file(
    text, message, tmp_path, monkeypatch, capsys
):
    config = tmp_path / "crawl.toml"
    config.write_text(text)
    out = tmp_path / "o"
    monkeypatch.setattr(
        "sys.argv", ["slip-data", "crawl", "--out", str(out), "--config", str(config)]
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {config}: ") and message in err, err
    assert not out.exists()


def test_help_lists_the_choices():
    shown = CliRunner().invoke(app, ["crawl", "--help"], env={"COLUMNS": "200"}).output
    for choices in ("threads|processes", "bilinear|bicubic|lanczos", "local|ray"):
        assert choices in shown, shown
