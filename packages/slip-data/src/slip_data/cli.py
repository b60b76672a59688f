"""`slip-data`: build co-purchase graph shards; `build` runs every stage, each is a command too.

A stage's options are the fields of its options dataclass (CrawlOptions, GraphOptions, ...), each
with its type, bounds and help (option_fields.py); a command that takes the dataclass has one flag
per field, and `--config FILE.toml` sets any of them.
"""

import functools
import inspect
import json
import tomllib
import typing
from collections.abc import Callable
from dataclasses import Field, asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from slip_data import entry, pipeline
from slip_data.bounds import Bounds, number
from slip_data.categories import parse_categories
from slip_data.crawl import CrawlOptions
from slip_data.distribute import UnitOptions
from slip_data.fetch.stage import DEFAULT_BASE_URL
from slip_data.graph.build import GraphOptions
from slip_data.inspect import summarize
from slip_data.option_fields import (
    check_fields,
    flag_default,
    from_flag,
    is_option,
    option,
    split_annotation,
)
from slip_data.shard.writer import ShardOptions
from slip_data.sources.demo import DemoSpec
from slip_data.sources.demo_spec import MOST_ASKED_REVIEWS_PER_PRODUCT, MOST_PRODUCTS

app = typer.Typer(
    help="Build co-purchase graph shards from Amazon Reviews 2023 or the embedded demo catalogue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console()

Out = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        file_okay=False,
        help="Build folder (created if missing; one writer at once).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

DEMO = DemoSpec()


@dataclass(frozen=True)
class SourceOptions:
    """fetch's options: the raw files' source, or the demo catalogue to generate."""

    source: Literal["amazon2023", "demo"] = option(
        "amazon2023", "amazon2023 (raw files) or demo (embedded, offline)."
    )
    categories: str = option("all", "'all' or a comma list of category names.")
    base_url: str = option(DEFAULT_BASE_URL, "Base URL or local folder of the raw files.")
    demo_products: Annotated[int, Bounds(at_least=300, at_most=MOST_PRODUCTS)] = option(
        DEMO.products,
        "Demo: number of products (above 1,000,000: independent blocks of at most 1,000,000).",
    )
    demo_seed: Annotated[int, Bounds(at_least=0, at_most=2**63 - 1)] = option(
        DEMO.seed, "Demo: seed of the catalogue."
    )
    caption_noise: Annotated[float, Bounds(at_least=0, at_most=1)] = option(
        DEMO.caption_noise, "Demo: share of generic or wrong titles."
    )
    demo_reviews_per_product: Annotated[
        float, Bounds(at_least=0, at_most=MOST_ASKED_REVIEWS_PER_PRODUCT)
    ] = option(
        DEMO.reviews_per_product,
        "Demo: mean reviews per product, fixed (the mean degree then follows); 0: as many as "
        "--demo-mean-degree needs.",
    )
    demo_label_homophily: Annotated[float, Bounds(at_least=0, at_most=1)] = option(
        DEMO.label_homophily,
        "Demo: edge homophily of the built graph (share of edges within one subcategory).",
    )
    demo_mean_degree: Annotated[float, Bounds(above=0, at_most=100)] = option(
        DEMO.mean_degree, "Demo: mean degree of the built graph."
    )
    demo_items_per_user: Annotated[float, Bounds(above=1, at_most=8)] = option(
        DEMO.items_per_user, "Demo: mean products reviewed per user."
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def config(self) -> pipeline.SourceConfig:
        """What the fetch stage takes: the categories parsed, the demo's spec made."""
        names = tuple(parse_categories(self.categories))
        demo = DemoSpec(
            products=self.demo_products,
            seed=self.demo_seed,
            caption_noise=self.caption_noise,
            reviews_per_product=self.demo_reviews_per_product,
            categories=names,
            label_homophily=self.demo_label_homophily,
            mean_degree=self.demo_mean_degree,
            items_per_user=self.demo_items_per_user,
        )
        return pipeline.SourceConfig(self.source, names, self.base_url, demo)


class Omit(frozenset[str]):
    """`Annotated[UnitOptions, Omit({"shard_index"})]`: the command has no flag for these
    fields; they keep their defaults."""


CONFIG_KEYS: set[str] = set()
"""Every option some command takes: a config file's key of another command's options is skipped,
so one file serves `build` and each stage; any other key is an error."""


def _flag_name(item: Field) -> str:
    """The parameter (and config key) of a field: its flag's name with `_` for `-`."""
    flag = item.metadata["flag"]
    return flag.split("/")[0].lstrip("-").replace("-", "_") if flag else item.name


def _flag(item: Field, hint: Any, panel: str) -> inspect.Parameter:
    """The keyword parameter typer reads as the field's flag: typed and bounded as the field,
    listed in `--help` under `panel`."""
    base, bounds = split_annotation(hint)
    help, flag = item.metadata["help"], item.metadata["flag"]
    decls = [flag] if flag else []
    if "parse" in item.metadata:
        base = str
    if bounds is None:
        info = typer.Option(*decls, help=help, rich_help_panel=panel)
    else:
        info = number(help, *decls, **asdict(bounds), panel=panel)
    return inspect.Parameter(
        _flag_name(item),
        inspect.Parameter.KEYWORD_ONLY,
        default=flag_default(item),
        annotation=Annotated[base, info],
    )


def _config_values(ctx: typer.Context, path: Path, names: set[str]) -> dict[str, Any]:
    """The file's values of the options `names`, each checked as its flag's value is."""
    try:
        table = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    params = {param.name: param for param in ctx.command.params if param.name in names}
    for key, value in table.items():
        if key not in CONFIG_KEYS:
            raise ValueError(
                f"{path}: unknown key {key!r}; a key is an option's name with _ for - "
                f"(see `{ctx.command_path} --help`)"
            )
        if key not in params:
            continue  # another command's option
        if isinstance(value, dict | list):
            raise ValueError(f"{path}: {key}: expected one value as its flag takes, got {value!r}")
        try:
            params[key].process_value(ctx, value)
        except typer.BadParameter as exc:
            raise ValueError(f"{path}: {exc.format_message()}") from None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return {key: value for key, value in table.items() if key in params}


def _config_option(names: set[str]) -> inspect.Parameter:
    """`--config FILE.toml`: values for the options `names`; a flag on the command line wins."""

    def read(ctx: typer.Context, path: Path | None) -> Path | None:
        if path is not None:
            ctx.default_map = _config_values(ctx, path, names)
        return path

    info = typer.Option(
        "--config",
        exists=True,
        dir_okay=False,
        is_eager=True,
        callback=read,
        help="A TOML file of option values, keyed by option name with _ for - (max_side = 512); "
        "a flag given here wins over the file, the file over the default.",
    )
    return inspect.Parameter(
        "config",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[Path | None, info],
    )


def stage_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` as typer sees it: each options-dataclass parameter (`crawl: CrawlOptions`) is
    one flag per option field, plus `--config`; the command is called with the dataclasses made
    from those flags, so every flag reaches its field."""
    hints = typing.get_type_hints(command, include_extras=True)
    own, flags, groups = [], [], {}
    for name, parameter in inspect.signature(command).parameters.items():
        group, *extras = typing.get_args(hints[name]) or (hints[name],)
        if not is_dataclass(group):
            own.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        omit = next((extra for extra in extras if isinstance(extra, Omit)), Omit())
        group_hints = typing.get_type_hints(group, include_extras=True)
        chosen = [item for item in fields(group) if is_option(item) and item.name not in omit]
        groups[name] = (group, {_flag_name(item): item for item in chosen})
        panel = name.replace("_", " ").capitalize()  # `work_units: UnitOptions`: "Work units"
        flags += [_flag(item, group_hints[item.name], panel) for item in chosen]
    names = {flag.name for flag in flags}
    CONFIG_KEYS.update(names)

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        values.pop("config")
        for name, (group, items) in groups.items():
            given = {item.name: from_flag(item, values.pop(flag)) for flag, item in items.items()}
            values[name] = group(**given)
        return command(**values)

    required = [parameter for parameter in own if parameter.default is inspect.Parameter.empty]
    rest = [parameter for parameter in own if parameter.default is not inspect.Parameter.empty]
    parameters = [*required, *flags, _config_option(names), *rest]
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return run


@app.command()
@stage_options
def build(
    *,
    out_dir: Out,
    source: SourceOptions,
    graph: GraphOptions,
    crawl: CrawlOptions,
    shard: ShardOptions,
    work_units: Annotated[UnitOptions, Omit({"shard_index"})],
    quiet: Quiet = False,
) -> None:
    """Run fetch -> graph -> crawl -> shard, then print the summary of the shards."""
    layout = pipeline.Layout(out_dir)
    pipeline.build(
        layout,
        source.config(),
        graph_options=graph,
        crawl_options=crawl,
        shard_options=shard,
        units=work_units,
        quiet=quiet,
    )
    _print_summary(summarize(layout.shards))


@app.command()
@stage_options
def fetch(out_dir: Out, source: SourceOptions, quiet: Quiet = False) -> None:
    """Stage 1: download (or locate) the raw meta and review files of each category."""
    raws = pipeline.fetch(pipeline.Layout(out_dir), source.config(), quiet=quiet)
    typer.echo(f"fetched {2 * len(raws)} raw files for {len(raws)} categories")


@app.command()
@stage_options
def graph(
    *,
    out_dir: Out,
    graph: GraphOptions,
    work_units: Annotated[UnitOptions, Omit({"num_shards", "shard_index"})],
    quiet: Quiet = False,
) -> None:
    """Stage 2: parse the raw files and build the filtered co-purchase graph, its work units
    (as many as --memory-gb cuts) on --engine."""
    layout = pipeline.Layout(out_dir)
    counts = pipeline.graph(layout, graph, work_units, quiet=quiet)["counts"]
    typer.echo(f"graph: {counts['nodes']} nodes, {counts['edges']} edges")


@app.command()
@stage_options
def crawl(
    *, out_dir: Out, crawl: CrawlOptions, work_units: UnitOptions, quiet: Quiet = False
) -> None:
    """Stage 3: fetch and resize each product's main image; a rerun retries only failures."""
    counts = pipeline.crawl_images(pipeline.Layout(out_dir), crawl, work_units, quiet=quiet)
    typer.echo(
        "crawl: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing to do")
    )


@app.command()
@stage_options
def shard(
    *, out_dir: Out, shard: ShardOptions, work_units: UnitOptions, quiet: Quiet = False
) -> None:
    """Stage 4: write the Parquet node shards, edges, labels and manifest."""
    layout = pipeline.Layout(out_dir)
    manifest = pipeline.shard(layout, shard, work_units, quiet=quiet)
    if manifest is None:
        unit, units = work_units.shard_index, work_units.num_shards
        typer.echo(
            f"shard unit {unit} of {units} written; once every unit is, "
            f"`slip-data shard --out {out_dir}` writes edges, labels and the manifest"
        )
        return
    typer.echo(f"shards: {manifest['counts']} in {layout.shards}")


@app.command()
def inspect(
    shards_dir: Annotated[Path, typer.Argument(help="A build folder or its shards/ folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Summarise shards: nodes, edges, degrees, components, labels, splits, crawl statuses."""
    summary = summarize(shards_dir)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)


def _shown(value: object) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _table(title: str, rows: dict, *, key: str, value: str = "count") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    table.add_column(value, justify="right")
    for name, count in rows.items():
        table.add_row(str(name), _shown(count))
    return table


def _print_summary(summary: dict) -> None:
    overview = {
        "source": summary["source"],
        "categories": summary["categories"],
        "nodes": summary["nodes"],
        "edges": summary["edges"],
        "mean degree": round(summary["mean_degree"], 2),
        "isolated nodes": f"{summary['isolated_nodes']:,} ({summary['isolated_share']:.1%})",
        "connected components": summary["connected_components"],
        "largest component": summary["largest_component"],
    }
    out.print(f"[bold]shards[/bold] {summary['shards']} (format v{summary['format_version']})")
    out.print(_table("overview", overview, key="what", value="value"))
    out.print(
        _table("degree quantiles", summary["degree_quantiles"], key="quantile", value="degree")
    )
    homophily = summary["homophily"]
    measures = {
        "edge": homophily["edge"],
        "class-insensitive": homophily["class_insensitive"],
        "adjusted": homophily["adjusted"],
        "chance (degree-weighted)": homophily["chance"],
        "chance (node shares)": homophily["node_share_chance"],
    }
    shown = {name: "-" if v is None else round(v, 3) for name, v in measures.items()}
    out.print(_table("label homophily (docs/data.md)", shown, key="measure", value="value"))
    out.print(_table("splits", summary["splits"], key="split"))
    out.print(_table("crawl status", summary["crawl_status"], key="status"))
    labels = summary["labels"]
    top = dict(sorted(labels.items(), key=lambda kv: -kv[1])[:15])
    out.print(_table(f"labels ({len(labels)}, largest 15)", top, key="label"))
    raw = summary["raw_lines"]
    if raw is not None and not raw["skipped"]:
        out.print(f"raw lines: {raw['lines']:,} read, all kept")
    elif raw is not None:
        title = f"raw lines: {raw['lines']:,} read, {raw['kept']:,} kept, skipped by reason"
        table = Table(title=title, title_justify="left")
        table.add_column("reason")
        table.add_column("lines", justify="right")
        table.add_column("first examples (file:line)", overflow="fold")  # paths whole
        for reason, count in raw["skipped"].items():
            where = "\n".join(raw["examples"].get(reason, []))
            table.add_row(escape(reason), _shown(count), escape(where))
        out.print(table)


def main() -> None:
    """Entry point: a user's error is one line on stderr (exit status 2), a bug a traceback and
    a request to report it (exit status 1); entry.py."""
    entry.run(app, "slip-data")
