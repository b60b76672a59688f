"""`slip-data`: build co-purchase graph shards; `build` runs every stage, each is a command too."""

import json
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from slip_data import entry, pipeline
from slip_data.bounds import number
from slip_data.categories import parse_categories
from slip_data.crawl import CrawlOptions
from slip_data.distribute import UnitOptions
from slip_data.fetch.stage import DEFAULT_BASE_URL
from slip_data.graph.build import GraphOptions
from slip_data.inspect import summarize
from slip_data.shard.writer import ShardOptions
from slip_data.sources.demo import DemoSpec

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

# fetch
Source = Annotated[str, typer.Option(help="amazon2023 (raw files) or demo (embedded, offline).")]
Categories = Annotated[str, typer.Option(help="'all' or a comma list of category names.")]
BaseUrl = Annotated[str, typer.Option(help="Base URL or local folder of the raw files.")]
DemoProducts = Annotated[int, number("Demo: number of products.", at_least=300, at_most=1_000_000)]
DemoSeed = Annotated[int, number("Demo: seed of the catalogue.", at_least=0, at_most=2**63 - 1)]
CaptionNoise = Annotated[
    float, number("Demo: share of generic or wrong titles.", at_least=0, at_most=1)
]
DemoReviews = Annotated[
    float,
    number(
        "Demo: mean reviews per product, fixed (the mean degree then follows); 0: as many as "
        "--demo-mean-degree needs.",
        at_least=0,
        at_most=100,
    ),
]
DemoHomophily = Annotated[
    float,
    number(
        "Demo: edge homophily of the built graph (share of edges within one subcategory).",
        at_least=0,
        at_most=1,
    ),
]
DemoDegree = Annotated[float, number("Demo: mean degree of the built graph.", above=0, at_most=100)]
DemoItems = Annotated[float, number("Demo: mean products reviewed per user.", above=1, at_most=8)]
# graph
VerifiedOnly = Annotated[bool, typer.Option(help="Link products through verified purchases only.")]
MinWeight = Annotated[int, number("Keep edges with at least this many shared buyers.", at_least=1)]
MaxItemsPerUser = Annotated[int, number("A user's most recent N products make pairs.", at_least=1)]
MinDegree = Annotated[int, number("Keep the k-core with this minimum degree (0: off).", at_least=0)]
LabelLevel = Annotated[int, number("Level of `categories` used as label (0 = root).", at_least=0)]
LabelLevels = Annotated[str, typer.Option(help="Per-category levels, e.g. 'Books=2,Software=1'.")]
MaxReviews = Annotated[int, number("Review texts kept per product.", at_least=0)]
Split = Annotated[str, typer.Option(help="train,val,test shares.")]
Seed = Annotated[
    int, number("Seed of the train/val/test node split.", at_least=-(2**63), at_most=2**63 - 1)
]
# crawl
MaxSide = Annotated[int, number("Resize images so the longer side is at most this.", at_least=1)]
Concurrency = Annotated[int, number("Image requests in flight.", at_least=1)]
PerHost = Annotated[int, number("Connections per host.", at_least=1)]
PerHostRate = Annotated[float, number("Requests per second per host (0: no limit).", at_least=0)]
Timeout = Annotated[float, number("Total seconds per image request, body included.", above=0)]
MaxBytes = Annotated[int, number("Largest image response read, in bytes.", at_least=1)]
Attempts = Annotated[int, number("Tries per image within one run.", at_least=1)]
AllowPrivate = Annotated[
    bool, typer.Option(help="Allow image URLs on private, loopback and link-local addresses.")
]
UserAgent = Annotated[str, typer.Option(help="User-Agent header of the crawler.")]
MaxPixels = Annotated[int, number("Largest image (width x height, from its header).", at_least=1)]
MaxRedirects = Annotated[int, number("Redirects followed per image request.", at_least=0)]
RespectRobots = Annotated[
    bool,
    typer.Option(
        "--respect-robots/--ignore-robots",
        help="Honour X-Robots-Tag noai, noimageai, noindex, noimageindex (status opted_out).",
    ),
]
JpegQuality = Annotated[int, number("JPEG quality of the stored images.", at_least=1, at_most=100)]
Workers = Annotated[int, number("Image decoding threads or processes (0: per core).", at_least=0)]
Decoder = Annotated[str, typer.Option(help="Decode in 'threads' (faster) or 'processes'.")]
Resample = Annotated[str, typer.Option(help="Resize filter: bilinear, bicubic or lanczos.")]
# shard
RowsPerShard = Annotated[int, number("Products per node shard file.", at_least=1)]
KeepMissing = Annotated[bool, typer.Option(help="Keep products whose image failed (image null).")]

# work units (crawl and shard)
Engine = Annotated[str, typer.Option(help="Run work units on 'local' processes or on 'ray'.")]
NumShards = Annotated[
    int, number("Work units the crawl and shard stages are cut into.", at_least=1)
]
ShardIndex = Annotated[
    int | None, number("Run only this work unit, here (for job arrays of your own).", at_least=0)
]
Processes = Annotated[int, number("Local engine: work units run at once.", at_least=1)]
RayAddress = Annotated[
    str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else start one).")
]
UnitRetries = Annotated[int, number("Further tries of a failed work unit.", at_least=0)]

CRAWL_DEFAULTS = CrawlOptions()
DEMO_DEFAULTS = DemoSpec()
T = TypeVar("T")


def _source(values: dict[str, Any]) -> pipeline.SourceConfig:
    names = tuple(parse_categories(values["categories"]))
    demo = DemoSpec(
        products=values["demo_products"],
        seed=values["demo_seed"],
        caption_noise=values["caption_noise"],
        reviews_per_product=values["demo_reviews_per_product"],
        categories=names,
        label_homophily=values["demo_label_homophily"],
        mean_degree=values["demo_mean_degree"],
        items_per_user=values["demo_items_per_user"],
    )
    return pipeline.SourceConfig(values["source"], names, values["base_url"], demo)


def _label_levels(spec: str) -> dict[str, int]:
    levels = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, level = item.partition("=")
        if not sep or not level.strip().isdigit():
            raise ValueError(f"--label-levels entry {item!r} is not CATEGORY=LEVEL")
        levels[parse_categories(name.strip())[0]] = int(level)
    return levels


def _split(spec: str) -> tuple[float, float, float]:
    try:
        shares = tuple(float(part) for part in spec.split(","))
    except ValueError:
        raise ValueError(f"--split {spec!r} is not three numbers like 0.8,0.1,0.1") from None
    if len(shares) != 3:
        raise ValueError(f"--split {spec!r} needs three shares (train,val,test)")
    return shares  # type: ignore[return-value]


def _pick(cls: type[T], values: dict[str, Any]) -> T:
    """The options dataclass `cls` from a command's arguments of the same names."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{name: value for name, value in values.items() if name in names})


def _units(values: dict[str, Any]) -> UnitOptions:
    return _pick(UnitOptions, values)


def _graph_options(values: dict[str, Any]) -> GraphOptions:
    converted = {
        "label_levels": _label_levels(values["label_levels"]),
        "split_fractions": _split(values["split"]),
    }
    return _pick(GraphOptions, values | converted)


@app.command()
def build(
    out_dir: Out,
    source: Source = "amazon2023",
    categories: Categories = "all",
    base_url: BaseUrl = DEFAULT_BASE_URL,
    demo_products: DemoProducts = DEMO_DEFAULTS.products,
    demo_seed: DemoSeed = DEMO_DEFAULTS.seed,
    caption_noise: CaptionNoise = DEMO_DEFAULTS.caption_noise,
    demo_reviews_per_product: DemoReviews = DEMO_DEFAULTS.reviews_per_product,
    demo_label_homophily: DemoHomophily = DEMO_DEFAULTS.label_homophily,
    demo_mean_degree: DemoDegree = DEMO_DEFAULTS.mean_degree,
    demo_items_per_user: DemoItems = DEMO_DEFAULTS.items_per_user,
    verified_only: VerifiedOnly = False,
    min_weight: MinWeight = 1,
    max_items_per_user: MaxItemsPerUser = 100,
    min_degree: MinDegree = 0,
    label_level: LabelLevel = 1,
    label_levels: LabelLevels = "",
    max_reviews: MaxReviews = 25,
    split: Split = "0.8,0.1,0.1",
    seed: Seed = 0,
    max_side: MaxSide = CRAWL_DEFAULTS.max_side,
    concurrency: Concurrency = CRAWL_DEFAULTS.concurrency,
    per_host: PerHost = CRAWL_DEFAULTS.per_host,
    per_host_rate: PerHostRate = CRAWL_DEFAULTS.per_host_rate,
    timeout: Timeout = CRAWL_DEFAULTS.timeout,
    max_bytes: MaxBytes = CRAWL_DEFAULTS.max_bytes,
    attempts: Attempts = CRAWL_DEFAULTS.attempts,
    allow_private_network: AllowPrivate = False,
    user_agent: UserAgent = CRAWL_DEFAULTS.user_agent,
    max_pixels: MaxPixels = CRAWL_DEFAULTS.max_pixels,
    max_redirects: MaxRedirects = CRAWL_DEFAULTS.max_redirects,
    respect_robots: RespectRobots = CRAWL_DEFAULTS.respect_robots,
    jpeg_quality: JpegQuality = CRAWL_DEFAULTS.jpeg_quality,
    workers: Workers = CRAWL_DEFAULTS.workers,
    decoder: Decoder = CRAWL_DEFAULTS.decoder,
    resample: Resample = CRAWL_DEFAULTS.resample,
    rows_per_shard: RowsPerShard = 10_000,
    keep_missing_images: KeepMissing = False,
    engine: Engine = "local",
    num_shards: NumShards = 1,
    processes: Processes = 1,
    ray_address: RayAddress = None,
    unit_retries: UnitRetries = 2,
    quiet: Quiet = False,
) -> None:
    """Run fetch -> graph -> crawl -> shard, then print the summary of the shards."""
    pipeline.build(
        pipeline.Layout(out_dir),
        _source(locals()),
        _graph_options(locals()),
        _pick(CrawlOptions, locals()),
        _pick(ShardOptions, locals()),
        _units(locals()),
        quiet=quiet,
    )
    _print_summary(summarize(pipeline.Layout(out_dir).shards))


@app.command()
def fetch(
    out_dir: Out,
    source: Source = "amazon2023",
    categories: Categories = "all",
    base_url: BaseUrl = DEFAULT_BASE_URL,
    demo_products: DemoProducts = DEMO_DEFAULTS.products,
    demo_seed: DemoSeed = DEMO_DEFAULTS.seed,
    caption_noise: CaptionNoise = DEMO_DEFAULTS.caption_noise,
    demo_reviews_per_product: DemoReviews = DEMO_DEFAULTS.reviews_per_product,
    demo_label_homophily: DemoHomophily = DEMO_DEFAULTS.label_homophily,
    demo_mean_degree: DemoDegree = DEMO_DEFAULTS.mean_degree,
    demo_items_per_user: DemoItems = DEMO_DEFAULTS.items_per_user,
    quiet: Quiet = False,
) -> None:
    """Stage 1: download (or locate) the raw meta and review files of each category."""
    raws = pipeline.fetch(pipeline.Layout(out_dir), _source(locals()), quiet=quiet)
    typer.echo(f"fetched {2 * len(raws)} raw files for {len(raws)} categories")


@app.command()
def graph(
    out_dir: Out,
    verified_only: VerifiedOnly = False,
    min_weight: MinWeight = 1,
    max_items_per_user: MaxItemsPerUser = 100,
    min_degree: MinDegree = 0,
    label_level: LabelLevel = 1,
    label_levels: LabelLevels = "",
    max_reviews: MaxReviews = 25,
    split: Split = "0.8,0.1,0.1",
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Stage 2: parse the raw files and build the filtered co-purchase graph."""
    counts = pipeline.graph(pipeline.Layout(out_dir), _graph_options(locals()), quiet)["counts"]
    typer.echo(f"graph: {counts['nodes']} nodes, {counts['edges']} edges")


@app.command()
def crawl(
    out_dir: Out,
    max_side: MaxSide = CRAWL_DEFAULTS.max_side,
    concurrency: Concurrency = CRAWL_DEFAULTS.concurrency,
    per_host: PerHost = CRAWL_DEFAULTS.per_host,
    per_host_rate: PerHostRate = CRAWL_DEFAULTS.per_host_rate,
    timeout: Timeout = CRAWL_DEFAULTS.timeout,
    max_bytes: MaxBytes = CRAWL_DEFAULTS.max_bytes,
    attempts: Attempts = CRAWL_DEFAULTS.attempts,
    allow_private_network: AllowPrivate = False,
    user_agent: UserAgent = CRAWL_DEFAULTS.user_agent,
    max_pixels: MaxPixels = CRAWL_DEFAULTS.max_pixels,
    max_redirects: MaxRedirects = CRAWL_DEFAULTS.max_redirects,
    respect_robots: RespectRobots = CRAWL_DEFAULTS.respect_robots,
    jpeg_quality: JpegQuality = CRAWL_DEFAULTS.jpeg_quality,
    workers: Workers = CRAWL_DEFAULTS.workers,
    decoder: Decoder = CRAWL_DEFAULTS.decoder,
    resample: Resample = CRAWL_DEFAULTS.resample,
    engine: Engine = "local",
    num_shards: NumShards = 1,
    processes: Processes = 1,
    ray_address: RayAddress = None,
    unit_retries: UnitRetries = 2,
    shard_index: ShardIndex = None,
    quiet: Quiet = False,
) -> None:
    """Stage 3: fetch and resize each product's main image; a rerun retries only failures."""
    options, units = _pick(CrawlOptions, locals()), _units(locals())
    counts = pipeline.crawl_images(pipeline.Layout(out_dir), options, units, quiet)
    typer.echo(
        "crawl: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing to do")
    )


@app.command()
def shard(
    out_dir: Out,
    rows_per_shard: RowsPerShard = 10_000,
    keep_missing_images: KeepMissing = False,
    engine: Engine = "local",
    num_shards: NumShards = 1,
    processes: Processes = 1,
    ray_address: RayAddress = None,
    unit_retries: UnitRetries = 2,
    shard_index: ShardIndex = None,
    quiet: Quiet = False,
) -> None:
    """Stage 4: write the Parquet node shards, edges, labels and manifest."""
    layout, units = pipeline.Layout(out_dir), _units(locals())
    manifest = pipeline.shard(layout, _pick(ShardOptions, locals()), units, quiet)
    if manifest is None:
        typer.echo(
            f"shard unit {shard_index} of {num_shards} written; once every unit is, "
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


def _table(title: str, rows: dict, key: str, value: str = "count") -> Table:
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
    out.print(_table("overview", overview, "what", "value"))
    out.print(_table("degree quantiles", summary["degree_quantiles"], "quantile", "degree"))
    homophily = summary["homophily"]
    measures = {
        "edge": homophily["edge"],
        "class-insensitive": homophily["class_insensitive"],
        "adjusted": homophily["adjusted"],
        "chance (degree-weighted)": homophily["chance"],
        "chance (node shares)": homophily["node_share_chance"],
    }
    shown = {name: "-" if v is None else round(v, 3) for name, v in measures.items()}
    out.print(_table("label homophily (docs/data.md)", shown, "measure", "value"))
    out.print(_table("splits", summary["splits"], "split"))
    out.print(_table("crawl status", summary["crawl_status"], "status"))
    labels = summary["labels"]
    top = dict(sorted(labels.items(), key=lambda kv: -kv[1])[:15])
    out.print(_table(f"labels ({len(labels)}, largest 15)", top, "label"))
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
    """Entry point: an error becomes one line on stderr and exit status 2, never a traceback."""
    entry.run(app, "slip-data")
