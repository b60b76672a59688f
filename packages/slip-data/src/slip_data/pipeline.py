"""The four stages over one build folder: fetch -> graph -> crawl -> shard.

The folder shows the stages (as img2dataset's reader, downloader and writer):

    DIR/source.json     what fetch was asked for; later stages read it
    DIR/demo-source/    the generated demo catalogue (demo source only)
    DIR/raw/            downloaded raw files (remote sources only)
    DIR/graph/          parsed raw files, nodes.parquet, edges.parquet, graph.json
    DIR/crawl/parts/    image crawl results, appended part by part
    DIR/crawl/urls.parquet  the distinct image URLs in node order; each crawl unit reads its range
    DIR/shards/         the deliverable: node shards, edges, labels, manifest.json
    DIR/report.json     what every stage kept and skipped, by reason

Each stage only reads what earlier stages wrote, so it can run on its own and be rerun. One
command writes to a folder at a time (DIR/.lock, slip_data.lock); work units of a job array
(`--shard-index`) share it, and a build's own unit processes run under the build's hold.
"""

import json
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import polars as pl

from slip_data.atomic import remove_stale_temps, write_json
from slip_data.categories import CATEGORIES
from slip_data.crawl import CrawlOptions, crawl
from slip_data.crawl.options import crawl_unit_count
from slip_data.crawl.results import (
    UnitSpan,
    read_url_range,
    stored_images,
    unit_dir,
    write_node_urls,
)
from slip_data.distribute import UnitOptions, run_units, unit_slice
from slip_data.fetch.stage import DEFAULT_BASE_URL, run_fetch
from slip_data.graph.build import GraphOptions, read_texts
from slip_data.graph.stage import DONE_FILE, RawCategory, run_graph
from slip_data.lock import hold
from slip_data.shard.plan import ShardPlan, plan_shards
from slip_data.shard.writer import (
    ImageLoader,
    ShardOptions,
    TextLoader,
    write_node_files,
    write_shards,
)
from slip_data.sources.demo import DemoSpec, write_demo_catalogue
from slip_data.sources.demo_server import DemoServer

SOURCES = ("amazon2023", "demo")


class StageOrderError(RuntimeError):
    """A stage run before the stage it reads from; the message says which to run."""


@dataclass(frozen=True)
class SourceConfig:
    name: str = "amazon2023"
    categories: tuple[str, ...] = CATEGORIES
    base_url: str = DEFAULT_BASE_URL
    demo: DemoSpec = field(default_factory=DemoSpec)

    def __post_init__(self) -> None:
        if self.name not in SOURCES:
            raise ValueError(f"unknown source {self.name!r}; valid: {', '.join(SOURCES)}")

    def as_dict(self) -> dict:
        if self.name == "demo":
            demo = asdict(self.demo) | {"categories": list(self.categories)}
            return {"name": "demo", "categories": list(self.categories), "demo": demo}
        return {"name": self.name, "categories": list(self.categories), "base_url": self.base_url}


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def source_file(self) -> Path:
        return self.root / "source.json"

    @property
    def demo_source(self) -> Path:
        return self.root / "demo-source"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def graph(self) -> Path:
        return self.root / "graph"

    @property
    def crawl(self) -> Path:
        return self.root / "crawl"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    def read_source(self) -> dict:
        # every stage reads or writes here first: clear the temp files a killed run left beside
        # source.json and report.json (each stage clears its own folder itself)
        remove_stale_temps(self.root, recursive=False)
        if not self.source_file.is_file():
            raise StageOrderError(f"{self.source_file} is missing: run `slip-data fetch` first")
        return json.loads(self.source_file.read_text())


@contextmanager
def serving(layout: Layout, source: Mapping) -> Iterator[tuple[str, dict | None]]:
    """(base URL of the raw files, host map for the image crawl); the demo runs its own server."""
    if source["name"] != "demo":
        yield source["base_url"], None
        return
    with DemoServer(layout.demo_source) as server:
        yield server.base_url, dict(server.image_host_map)


def fetch(layout: Layout, source: SourceConfig, quiet: bool = False) -> list[RawCategory]:
    with hold(layout.root):
        remove_stale_temps(layout.root, recursive=False)
        recorded = source.as_dict()
        if source.name == "demo" and layout.source_file.is_file():
            previous = {k: v for k, v in layout.read_source().items() if k != "raw_files"}
            if previous != recorded:  # another catalogue: its raw files are not ours
                shutil.rmtree(layout.raw, ignore_errors=True)
        if source.name == "demo":
            spec = DemoSpec(**(asdict(source.demo) | {"categories": source.categories}))
            write_demo_catalogue(spec, layout.demo_source, quiet=quiet)
        with serving(layout, recorded) as (base_url, _):
            raws = run_fetch(source.categories, base_url, layout.raw, quiet=quiet)
        recorded["raw_files"] = [
            {"category": r.name, "meta": str(r.meta), "reviews": str(r.reviews)} for r in raws
        ]
        write_json(layout.source_file, recorded)
        return raws


def graph(
    layout: Layout,
    options: GraphOptions,
    units: UnitOptions = UnitOptions(),  # noqa: B008 - frozen, so sharing it is safe
    *,
    quiet: bool = False,
) -> dict:
    """The graph stage, its work units (from --memory-gb) on the engine of `units`."""
    with hold(layout.root):
        source = layout.read_source()
        raws = [
            RawCategory(f["category"], Path(f["meta"]), Path(f["reviews"]))
            for f in source["raw_files"]
        ]
        return run_graph(raws, layout.graph, options, units=units, quiet=quiet)


def _check_graph(layout: Layout) -> None:
    if not (layout.graph / DONE_FILE).is_file():
        raise StageOrderError(f"{layout.graph} has no finished graph: run `slip-data graph` first")


def _url_list(layout: Layout) -> tuple[int, str]:
    """The distinct image URLs in node order, kept in the crawl folder for the units to read
    their ranges from: (how many, the list's sha256). Streamed from nodes.parquet: held whole, as
    Python strings it took several GB at 48M URLs (each unit's pickled to it), as a polars column
    about 11 GB."""
    return write_node_urls(layout.crawl, layout.graph / "nodes.parquet")


def crawl_unit(
    rows: slice,
    crawl_dir: Path,
    span: UnitSpan | None,
    *,
    crawl_root: Path,
    options: CrawlOptions,
    host_map: Mapping[str, tuple[str, int]] | None,
    quiet: bool,
) -> dict[str, int]:
    """Work unit: `crawl` of the URL list's `rows`, read here from the crawl folder (the engine
    passes the range by position, not the URLs); `span` is that range for several units, None
    for the one unit."""
    urls = read_url_range(crawl_root, rows.start, rows.stop)
    return crawl(urls, crawl_dir, options, host_map=host_map, quiet=quiet, span=span)


def crawl_images(
    layout: Layout,
    options: CrawlOptions,
    units: UnitOptions = UnitOptions(),  # noqa: B008 - frozen, so sharing it is safe
    *,
    quiet: bool = False,
) -> dict[str, int]:
    """Crawl the distinct image URLs, cut into `units.num_shards` contiguous work units (by
    default as many as `options.crawl_memory_gb` needs)."""
    with hold(layout.root, shared=units.shard_index is not None):
        _check_graph(layout)
        total, named = _url_list(layout)
        units = units.cut(crawl_unit_count(total, options.crawl_memory_gb))
        count = units.num_shards
        unit_quiet = quiet or len(units.selected()) > 1  # one bar per unit only when one runs
        args = []
        for index in range(count):
            cut = unit_slice(total, index, count)
            span = None
            if count > 1:  # several units: each records and reads by its range
                span = UnitSpan(
                    root=layout.crawl, urls_sha256=named, start=cut.start, stop=cut.stop
                )
            args.append((cut, unit_dir(layout.crawl, index, count), span))
        with serving(layout, layout.read_source()) as (_, host_map):
            shared = {
                "crawl_root": layout.crawl,
                "options": options,
                "host_map": host_map,
                "quiet": unit_quiet,
            }
            results = run_units(crawl_unit, args, units, name="crawl", quiet=quiet, kwargs=shared)
        return dict(sum((Counter(counts) for counts in results.values()), Counter()))


def _shard_plan(layout: Layout, options: ShardOptions) -> ShardPlan:
    """The shard plan, made or resumed on disk: no texts, no image bytes, no edges."""
    _check_graph(layout)
    return plan_shards(
        layout.graph,
        layout.crawl,
        layout.shards,
        keep_missing_images=options.keep_missing_images,
        rows_per_shard=options.rows_per_shard,
        memory_gb=options.plan_memory_gb,
    )


def _loaders(layout: Layout, plan: ShardPlan) -> tuple[TextLoader, ImageLoader]:
    """Texts from the graph; images from the crawl parts the plan names for them."""

    def load_images(rows: pl.DataFrame) -> pl.DataFrame:
        where = plan.image_parts(rows)
        return stored_images(layout.crawl, where)(where["sha256"].unique())

    return partial(read_texts, layout.graph), load_images


def shard_unit(root: Path, index: int, *, options: ShardOptions, num_units: int) -> int:
    """Work unit `index`: its contiguous range of node files; returns how many it holds."""
    layout = Layout(root)
    plan = _shard_plan(layout, options)
    files = range(plan.num_files)[unit_slice(plan.num_files, index, num_units)]
    texts, images = _loaders(layout, plan)
    write_node_files(plan, layout.shards, files, texts=texts, images=images, quiet=True)
    return len(files)


def shard(
    layout: Layout,
    options: ShardOptions,
    units: UnitOptions = UnitOptions(),  # noqa: B008 - frozen, so sharing it is safe
    *,
    quiet: bool = False,
) -> dict | None:
    """Write the shards; with several units, their node files first (on the engine), then
    edges, labels and manifest here. One selected unit (`--shard-index`) writes only its node
    files and returns None: a run without `--shard-index` finishes the stage."""
    with hold(layout.root, shared=units.shard_index is not None):
        plan = _shard_plan(layout, options)  # made once here: the units find it done
        units = units.cut(1)
        if units.num_shards > 1:
            args = [(layout.root, i) for i in range(units.num_shards)]
            shared = {"options": options, "num_units": units.num_shards}
            run_units(shard_unit, args, units, name="shard", quiet=quiet, kwargs=shared)
            if units.shard_index is not None:
                return None
        graph_summary = json.loads((layout.graph / DONE_FILE).read_text())
        provenance = {
            "source": {k: v for k, v in layout.read_source().items() if k != "raw_files"},
            "graph": graph_summary["options"],
        }
        texts, images = _loaders(layout, plan)
        manifest = write_shards(
            plan,
            layout.shards,
            options,
            edges=layout.graph / "edges.parquet",
            provenance=provenance,
            texts=texts,
            images=images,
            quiet=quiet,
        )
        write_json(
            layout.report,
            {
                "graph": graph_summary["counts"],
                "raw_files": graph_summary["files"],
                "crawl_status": manifest["crawl_status"],
                "dropped_images": manifest["dropped_images"],
                "shards": manifest["counts"],
            },
        )
        return manifest


def build(
    layout: Layout,
    source: SourceConfig,
    *,
    graph_options: GraphOptions,
    crawl_options: CrawlOptions,
    shard_options: ShardOptions,
    units: UnitOptions = UnitOptions(),  # noqa: B008 - frozen, so sharing it is safe
    quiet: bool = False,
) -> dict | None:
    """All four stages; each skips or resumes what an earlier run already finished. Graph,
    crawl and shard run in work units on `units.engine`, under the build's hold of the folder."""
    with hold(layout.root):
        fetch(layout, source, quiet)
        graph(layout, graph_options, units, quiet=quiet)
        crawl_images(layout, crawl_options, units, quiet=quiet)
        return shard(layout, shard_options, units, quiet=quiet)
