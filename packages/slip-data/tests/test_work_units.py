"""Crawl and shard in work units: local processes, a local Ray instance, job arrays; retries."""

import fcntl
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from builds import shard_bytes
from flaky_units import die_once

from slip_data import pipeline
from slip_data.crawl import CrawlOptions
from slip_data.crawl.results import read_latest
from slip_data.distribute import UnitFailed, UnitOptions, run_units, unit_slice
from slip_data.graph.build import GraphOptions
from slip_data.shard.writer import ShardOptions
from slip_data.sources.demo import DemoSpec

CATEGORIES = ("All_Beauty", "Books", "Electronics")
SOURCE = pipeline.SourceConfig(
    "demo", CATEGORIES, demo=DemoSpec(products=400, categories=CATEGORIES)
)
CRAWL = CrawlOptions(workers=1)
SHARD = ShardOptions(rows_per_shard=50)  # 8 node files, so shard units have work


@pytest.fixture(scope="module")
def graphed(tmp_path_factory) -> Path:
    """A demo build folder after fetch and graph: the input of the crawl and shard stages."""
    root = tmp_path_factory.mktemp("graphed")
    layout = pipeline.Layout(root)
    pipeline.fetch(layout, SOURCE, quiet=True)
    pipeline.graph(layout, GraphOptions(), quiet=True)
    return root


@pytest.fixture(scope="module")
def reference(graphed, tmp_path_factory) -> dict[str, bytes]:
    """The shards of the plain build: one unit, in this process."""
    root = tmp_path_factory.mktemp("reference") / "build"
    shutil.copytree(graphed, root)
    layout = pipeline.Layout(root)
    pipeline.crawl_images(layout, CRAWL, quiet=True)
    pipeline.shard(layout, SHARD, quiet=True)
    return shard_bytes(root)


@pytest.fixture
def build(graphed, tmp_path) -> Path:
    root = tmp_path / "build"
    shutil.copytree(graphed, root)
    return root


@contextmanager
def locked_until_first_retry(folder: Path) -> Iterator[list[str]]:
    """Hold a crawl unit's folder lock, as a crawl still running there would, and let go when
    the distributor reports the unit's first failure; yields the failure lines seen."""
    folder.mkdir(parents=True)
    held = open(folder / ".lock", "w")  # noqa: SIM115 - closed by the handler or at exit
    fcntl.flock(held, fcntl.LOCK_EX)
    seen: list[str] = []

    class ReleaseOnRetry(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())
            held.close()

    logger = logging.getLogger("slip_data.distribute")
    handler = ReleaseOnRetry(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        held.close()


def test_unit_slices_cover_every_item_once():
    for count in (0, 1, 7, 100):
        for units in (1, 3, 8):
            covered = [i for u in range(units) for i in range(count)[unit_slice(count, u, units)]]
            assert covered == list(range(count))


def test_unit_options_are_checked():
    with pytest.raises(ValueError, match=r"--shard-index 3 is outside 0\.\.2"):
        UnitOptions(num_shards=3, shard_index=3)
    with pytest.raises(ValueError, match="engine: 'spark' is not one of local, ray"):
        UnitOptions(engine="spark")
    assert UnitOptions(num_shards=4, shard_index=2).selected() == [2]


def test_ray_engine_without_ray_installed_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    expected = r"--engine ray needs Ray: pip install 'slip-data\[ray\]'"
    with pytest.raises(RuntimeError, match=expected):
        run_units(print, [()], UnitOptions(engine="ray"), name="test", quiet=True)


def test_units_in_local_processes_with_a_retry_equal_the_plain_build(build, reference):
    layout = pipeline.Layout(build)
    units = UnitOptions(num_shards=3, processes=2)
    with locked_until_first_retry(build / "crawl" / "units" / "00001-of-00003") as failures:
        counts = pipeline.crawl_images(layout, CRAWL, units, quiet=True)
    assert len(failures) == 1 and "crawl unit 1 failed" in failures[0]
    assert "another crawl is running" in failures[0]
    # every distinct URL fetched once, in exactly one of the three unit folders
    assert sum(counts.values()) == read_latest(layout.crawl, ["url"]).height
    assert len(list((build / "crawl" / "units").iterdir())) == 3
    pipeline.shard(layout, SHARD, units, quiet=True)
    assert shard_bytes(build) == reference


def test_units_on_a_local_ray_instance_with_a_retry_equal_the_plain_build(build, reference):
    pytest.importorskip("ray", reason="Ray is in the dev group; pip install 'slip-data[ray]'")
    layout = pipeline.Layout(build)
    units = UnitOptions(num_shards=2, engine="ray")
    with locked_until_first_retry(build / "crawl" / "units" / "00000-of-00002") as failures:
        pipeline.crawl_images(layout, CRAWL, units, quiet=True)
    assert len(failures) == 1 and "crawl unit 0 failed (RayTaskError" in failures[0]
    pipeline.shard(layout, SHARD, UnitOptions(num_shards=3, engine="ray"), quiet=True)
    assert shard_bytes(build) == reference


def test_a_unit_whose_process_dies_is_retried_in_a_pool_and_on_ray(tmp_path, caplog):
    units = [(str(tmp_path / f"pool-{i}"), i) for i in range(3)]
    pool = UnitOptions(num_shards=3, processes=2)
    assert run_units(die_once, units, pool, name="test", quiet=True) == {0: 0, 1: 2, 2: 4}
    assert caplog.text.count("failed (its process died with exit code 1)") == 3
    ray = pytest.importorskip("ray", reason="Ray is in the dev group; pip install 'slip-data[ray]'")
    # Ray's workers import die_once from this folder, as a cluster's would from slip-data
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    ray.init(runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False)
    try:
        units = [(str(tmp_path / f"ray-{i}"), i) for i in range(2)]
        on_ray = UnitOptions(num_shards=2, engine="ray")
        caplog.clear()
        assert run_units(die_once, units, on_ray, name="test", quiet=True) == {0: 0, 1: 2}
        assert caplog.text.count("failed (WorkerCrashedError") == 2
    finally:
        ray.shutdown()


def test_a_unit_failing_every_try_stops_the_stage_naming_it(build):
    folder = build / "crawl" / "units" / "00001-of-00002"
    folder.mkdir(parents=True)
    with open(folder / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        units = UnitOptions(num_shards=2, unit_retries=1)
        with pytest.raises(UnitFailed, match=r"crawl unit 1 failed 2 times, last: RuntimeError"):
            pipeline.crawl_images(pipeline.Layout(build), CRAWL, units, quiet=True)
        command = ["crawl", "--out", str(build), "--num-shards", "2", "--unit-retries", "0"]
        result = subprocess.run(
            [sys.executable, "-m", "slip_data", *command, "--quiet"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: crawl unit 1 failed 1 times"), lines
    # the other unit finished and is kept: a rerun fetches only unit 1's URLs
    done = read_latest(build / "crawl", ["url"]).height
    rest = pipeline.crawl_images(pipeline.Layout(build), CRAWL, quiet=True)
    assert done > 0 and done + sum(rest.values()) == read_latest(build / "crawl", ["url"]).height


def test_a_rerun_with_other_units_fetches_only_what_is_left(build):
    layout = pipeline.Layout(build)
    first = pipeline.crawl_images(
        layout, CRAWL, UnitOptions(num_shards=2, shard_index=0), quiet=True
    )
    rest = pipeline.crawl_images(layout, CRAWL, UnitOptions(num_shards=3), quiet=True)
    total = read_latest(layout.crawl, ["url"]).height
    assert sum(first.values()) + sum(rest.values()) == total
    assert pipeline.crawl_images(layout, CRAWL, quiet=True) == {}  # everything is settled


def test_job_array_units_then_a_finishing_run_equal_the_plain_build(build, reference):
    def slip_data(*args: str) -> str:
        command = [sys.executable, "-m", "slip_data", *args, "--out", str(build), "--quiet"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    for index in range(2):
        slip_data("crawl", "--workers", "1", "--num-shards", "2", "--shard-index", str(index))
    for index in range(3):
        said = slip_data(
            "shard", "--rows-per-shard", "50", "--num-shards", "3", "--shard-index", str(index)
        )
        assert f"shard unit {index} of 3 written" in said
    assert not (build / "shards" / "manifest.json").exists()
    written = {p.name: p.stat().st_mtime_ns for p in (build / "shards").glob("nodes-*")}
    assert len(written) == 8
    slip_data("shard", "--rows-per-shard", "50")  # edges, labels, manifest; node files kept
    assert {p.name: p.stat().st_mtime_ns for p in (build / "shards").glob("nodes-*")} == written
    assert shard_bytes(build) == reference
    # a unit that rewrites node files takes the manifest that listed the old ones away
    slip_data("shard", "--rows-per-shard", "100", "--num-shards", "2", "--shard-index", "0")
    assert not (build / "shards" / "manifest.json").exists()
