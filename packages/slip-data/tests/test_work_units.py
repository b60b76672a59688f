"""Crawl and shard in work units: local processes, a local Ray instance, job arrays; retries.
The crawl driver keeps the URL list in the crawl folder and gives its units ranges of it."""

import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from builds import shard_bytes
from flaky_units import die_once, parse_dying_once, reserved_memory
from url_names import listed_sha256

from slip_data import pipeline
from slip_data.crawl import CrawlOptions
from slip_data.crawl.options import UNIT_BYTES_PER_URL, crawl_unit_count
from slip_data.crawl.results import (
    HASHED_URLS,
    MADE_FOR,
    URL_LIST,
    UnitSpan,
    read_latest,
    read_url_range,
    unit_dir,
    write_url_list,
)
from slip_data.distribute import GB, UnitFailed, UnitOptions, run_units, unit_slice
from slip_data.graph import stage
from slip_data.graph.build import GraphOptions
from slip_data.shard.plan import PLAN_DIR
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


def listed(layout: pipeline.Layout) -> list[str]:
    """The URL list as the driver made it before it kept it on disk: a Python list."""
    nodes = pl.read_parquet(layout.graph / "nodes.parquet", columns=["graph_id", "image_url"])
    return nodes.sort("graph_id")["image_url"].unique(maintain_order=True).to_list()


def test_the_list_keeps_the_name_it_had_as_a_python_list(tmp_path: Path) -> None:
    urls = [f"http://images.slip-demo.invalid/{i}.jpg" for i in range(HASHED_URLS + 3)]
    urls.append('http://images.slip-demo.invalid/caf\u00e9 "q".jpg')  # escaped by JSON
    _, named = write_url_list(tmp_path, lambda: [pl.Series(urls)])
    assert named == listed_sha256(urls) != listed_sha256(urls[::-1])
    # the value the list version gave (commit 3464f02): a whole slice, then a short one
    assert named == "b2a25ddf9f629ed59c062e23a06f24d0893fcd2045aef8cd4d9ed4e967727756"


@pytest.fixture
def unit_args(monkeypatch) -> list[tuple]:
    """Every unit's positional arguments, as the driver hands them to the engine."""
    seen: list[tuple] = []

    def recording(func, args, options, **kwargs):
        seen.extend(args)
        return run_units(func, args, options, **kwargs)

    monkeypatch.setattr(pipeline, "run_units", recording)
    return seen


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
    with pytest.raises(ValueError, match="--shard-index 0 needs --num-shards"):
        UnitOptions(shard_index=0)  # a job array's units must agree on the cut
    assert UnitOptions().cut(5).num_shards == 5 and UnitOptions(num_shards=2).cut(5).num_shards == 2


def test_crawl_units_follow_the_memory_budget():
    most = 2 * GB // UNIT_BYTES_PER_URL  # the most URLs whose state fits in 2 GB
    assert crawl_unit_count(0, 2.0) == crawl_unit_count(most, 2.0) == 1
    assert crawl_unit_count(most + 1, 2.0) == 2
    assert crawl_unit_count(48_190_000, 2.0) == 29  # the whole corpus's images
    assert crawl_unit_count(48_190_000, 16.0) == 4


def test_a_crawl_without_num_shards_is_cut_by_its_memory_budget(build, unit_args):
    layout = pipeline.Layout(build)
    urls = listed(layout)
    budget = len(urls) * UNIT_BYTES_PER_URL / (2.5 * GB)  # the list's state in 2.5 budgets
    counts = pipeline.crawl_images(layout, replace(CRAWL, crawl_memory_gb=budget), quiet=True)
    assert [cut for cut, _, _ in unit_args] == [
        unit_slice(len(urls), index, 3) for index in range(3)
    ]
    assert [folder for _, folder, _ in unit_args] == [
        unit_dir(layout.crawl, index, 3) for index in range(3)
    ]
    assert sum(counts.values()) == len(urls)
    assert sorted(read_latest(layout.crawl, ["url"])["url"]) == sorted(urls)


def test_ray_engine_without_ray_installed_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    expected = r"--engine ray needs Ray: pip install 'slip-data\[ray\]'"
    with pytest.raises(RuntimeError, match=expected):
        run_units(print, [()], UnitOptions(engine="ray"), name="test", quiet=True)


def test_units_in_local_processes_with_a_retry_equal_the_plain_build(build, reference, unit_args):
    layout = pipeline.Layout(build)
    units = UnitOptions(num_shards=3, processes=2)
    with locked_until_first_retry(build / "crawl" / "units" / "00001-of-00003") as failures:
        counts = pipeline.crawl_images(layout, CRAWL, units, quiet=True)
    assert len(failures) == 1 and "crawl unit 1 failed" in failures[0]
    assert "another crawl is running" in failures[0]
    # every distinct URL fetched once, in exactly one of the three unit folders
    urls = listed(layout)
    assert sum(counts.values()) == read_latest(layout.crawl, ["url"]).height == len(urls)
    assert len(list((build / "crawl" / "units").iterdir())) == 3
    # each unit was given its range of the list kept on disk, not URLs, and crawled those URLs
    named = pl.read_parquet_metadata(layout.crawl / URL_LIST)["urls_sha256"]
    assert named == listed_sha256(urls)  # earlier unit folders' records still name this list
    for index, (rows, folder, span) in enumerate(unit_args):
        cut = unit_slice(len(urls), index, 3)
        assert (rows, folder) == (cut, unit_dir(layout.crawl, index, 3))
        start, stop = cut.start, cut.stop
        assert span == UnitSpan(root=layout.crawl, urls_sha256=named, start=start, stop=stop)
        made_for = json.loads((folder / MADE_FOR).read_text())["ranges"]
        assert made_for == [{"urls_sha256": named, "start": start, "stop": stop}]
        assert read_url_range(layout.crawl, start, stop) == urls[cut]
        crawled = read_latest(folder, ["url"], paths=sorted(folder.glob("parts/*.parquet")))
        assert sorted(crawled["url"]) == sorted(urls[cut])  # the unit's URLs, all and only
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


RAY_UNDER_UV_RUN = """
import json, sys
from slip_data.distribute import ray_session
with ray_session(None) as ray:
    job_env = dict(ray.get_runtime_context().runtime_env)
    worker_python = ray.get(ray.remote(lambda: sys.executable).remote())
print(json.dumps({"job_env": job_env, "worker_python": worker_python}))
"""


def test_ray_started_under_uv_run_runs_its_workers_in_the_driver_s_environment(tmp_path):
    """Ray's default under `uv run` starts each worker with `uv run` in a copy of the current
    folder (hung from packages/slip-data, slow from the repository's root); the Ray that
    slip-data starts does not. Ray recognises `uv run` by an ancestor process's command line, so
    the driver here is the child of a process whose command line is `.../uv run ...`: Python
    under that name."""
    pytest.importorskip("ray", reason="Ray is in the dev group; pip install 'slip-data[ray]'")
    (tmp_path / "driver.py").write_text(RAY_UNDER_UV_RUN)
    (tmp_path / "run").write_text(
        "import subprocess, sys\nsys.exit(subprocess.call([sys.argv[1], 'driver.py']))\n"
    )
    fake_uv = tmp_path / "bin" / "uv"
    fake_uv.parent.mkdir()
    fake_uv.symlink_to(Path(sys.executable).resolve())  # no venv beside it: the stdlib is enough
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_UV_RUN_RUNTIME_ENV"}
    done = subprocess.run(
        [str(fake_uv), "run", sys.executable],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "py_executable" not in seen["job_env"] and "working_dir" not in seen["job_env"]
    assert seen["worker_python"] == sys.executable


def test_the_parse_runs_a_unit_per_raw_file_and_a_dying_one_is_retried_alone(
    graphed, tmp_path, monkeypatch, caplog
):
    root = tmp_path / "build"
    shutil.copytree(graphed, root)
    shutil.rmtree(root / "graph")
    monkeypatch.setattr(stage, "_parsed", parse_dying_once)  # pickled by name
    pipeline.graph(pipeline.Layout(root), GraphOptions(), UnitOptions(processes=2), quiet=True)
    assert [m for m in caplog.messages if "parse" in m] == [
        "graph parse unit 3 failed (its process died with exit code 1); try 2 of 3"
    ]
    tries = sorted(p.name for p in (root / "graph" / "tries").iterdir())
    assert tries == sorted(
        [f"{kind}_{name}.0" for name in CATEGORIES for kind in ("meta", "review")]
        + ["review_Books.1"]
    )
    for name in ("nodes.parquet", "edges.parquet", "reviews.parquet"):
        assert (root / "graph" / name).read_bytes() == (graphed / "graph" / name).read_bytes()


def test_ray_units_reserve_the_memory_a_unit_may_take():
    ray = pytest.importorskip("ray", reason="Ray is in the dev group; pip install 'slip-data[ray]'")
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    ray.init(runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = UnitOptions(num_shards=2, engine="ray")
        args = [(0,), (1,)]
        plain = run_units(reserved_memory, args, on_ray, name="test", quiet=True)
        assert plain == {0: (0, None), 1: (1, None)}
        reserved = run_units(
            reserved_memory, args, on_ray, name="test", quiet=True, memory_bytes=1 << 28
        )
        assert reserved == {0: (0, 1 << 28), 1: (1, 1 << 28)}
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


def test_a_rerun_with_other_units_fetches_only_what_is_left(build, unit_args):
    layout = pipeline.Layout(build)
    urls = listed(layout)
    first = pipeline.crawl_images(
        layout, CRAWL, UnitOptions(num_shards=2, shard_index=0), quiet=True
    )
    kept = os.stat(layout.crawl / URL_LIST)
    rest = pipeline.crawl_images(layout, CRAWL, UnitOptions(num_shards=3), quiet=True)
    assert sum(first.values()) == len(urls) // 2
    assert sum(first.values()) + sum(rest.values()) == len(urls)
    again = os.stat(layout.crawl / URL_LIST)  # the same list: its file is not written again
    assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)
    # a list file of another graph, or a damaged one, is written again; nothing is fetched
    write_url_list(layout.crawl, lambda: [pl.Series(urls[::-1])])
    assert pipeline.crawl_images(layout, CRAWL, UnitOptions(num_shards=2), quiet=True) == {}
    assert read_url_range(layout.crawl, 0, len(urls)) == urls
    (layout.crawl / URL_LIST).write_bytes(b"not parquet")
    unit_args.clear()
    assert pipeline.crawl_images(layout, CRAWL, quiet=True) == {}  # everything is settled
    assert unit_args == [(slice(0, len(urls)), layout.crawl, None)]  # one unit: the whole list
    assert read_url_range(layout.crawl, 0, len(urls)) == urls
    assert not (layout.crawl / MADE_FOR).exists()  # the root holds results for any URL


def test_the_plan_budget_cuts_the_shard_plan_not_the_shards(build, reference):
    layout = pipeline.Layout(build)
    pipeline.crawl_images(layout, CRAWL, quiet=True)
    pipeline.shard(layout, replace(SHARD, plan_memory_gb=4_000 / GB), quiet=True)
    made = json.loads((layout.shards / PLAN_DIR / "plan.json").read_text())["cut"]
    assert made["buckets"] > 1 and made["range_rows"] < len(listed(layout))
    assert shard_bytes(build) == reference  # the manifest does not record the budget


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
