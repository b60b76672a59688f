"""End to end through the `slip-data` command: demo over HTTP, kill -9 and resume, bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from builds import shard_bytes
from rawfiles import product, review, write_jsonl_gz

from slip_data.inspect import summarize

SLIP_DATA = [sys.executable, "-m", "slip_data"]
DEMO = [
    "--source",
    "demo",
    "--categories",
    "All_Beauty,Books,Electronics",
    "--demo-products",
    "400",
]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*SLIP_DATA, *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"slip-data {' '.join(args)} failed:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    result = run("build", *DEMO, "--out", str(out), "--quiet")
    assert "connected components" in result.stdout  # the summary is printed
    return out


def test_demo_build_over_http_gives_a_summary_and_report(clean_build):
    summary = json.loads(run("inspect", str(clean_build), "--json").stdout)
    assert summary["source"] == "demo" and summary["categories"] == 3
    assert summary["raw_lines"]["skipped"] == {}
    assert "read, all kept" in run("inspect", str(clean_build)).stdout
    assert summary["nodes"] > 300 and summary["edges"] > summary["nodes"]
    assert summary["crawl_status"]["ok"] >= summary["nodes"]
    assert set(summary["splits"]) == {"train", "val", "test"}
    assert len(summary["labels"]) == 12  # 4 subcategories in each of 3 categories
    report = json.loads((clean_build / "report.json").read_text())
    assert report["graph"]["dropped_products"]["no_image"] > 0  # the demo's quirks, counted
    assert report["graph"]["dropped_reviews"]["unknown_product"] > 0
    assert set(report["raw_files"]) == {
        f"{kind}:{c}" for kind in ("meta", "review") for c in ("All_Beauty", "Books", "Electronics")
    }


def test_manifest_holds_the_label_homophily_of_its_shards(clean_build, tmp_path):
    manifest = json.loads((clean_build / "shards" / "manifest.json").read_text())
    stats = manifest["homophily"]
    assert set(stats) == {"edge", "class_insensitive", "adjusted", "chance", "node_share_chance"}
    assert 0 < stats["chance"] < 1 and 0 <= stats["edge"] <= 1
    edges = pl.read_parquet(clean_build / "shards" / "edges.parquet")
    assert (edges["src"] < edges["dst"]).all()  # each pair once, no self-loops: as counted
    # shards written before the manifest held it: inspect measures the shards themselves
    old = tmp_path / "shards"
    shutil.copytree(clean_build / "shards", old)
    del manifest["homophily"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert summarize(old)["homophily"] == stats
    summary = json.loads(run("inspect", str(clean_build), "--json").stdout)
    assert summary["homophily"] == stats and 0 <= summary["isolated_share"] < 1
    shown = run("inspect", str(clean_build)).stdout
    assert "label homophily" in shown and "class-insensitive" in shown
    assert f"{round(stats['adjusted'], 3):g}" in shown


def test_rerun_of_a_finished_build_changes_nothing(clean_build, tmp_path):
    before = shard_bytes(clean_build)
    run("build", *DEMO, "--out", str(clean_build), "--quiet")
    assert shard_bytes(clean_build) == before


def _kill_when(out: Path, marker: str, args: list[str]) -> None:
    """Start a build, kill -9 it once `marker` (a glob under out) exists."""
    process = subprocess.Popen(
        [*SLIP_DATA, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if any(out.glob(marker)):
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait()


def test_killed_at_every_stage_then_rerun_equals_the_clean_build(clean_build, tmp_path):
    out = tmp_path / "killed"
    args = ["build", *DEMO, "--out", str(out), "--quiet"]
    for marker in ("raw/**/*.part", "graph/parsed/*", "crawl/*", "shards/nodes-*"):
        _kill_when(out, marker, args)
    run(*args)
    assert shard_bytes(out) == shard_bytes(clean_build)
    assert not list(out.rglob(".*.tmp"))


def test_stages_one_by_one_equal_the_build(clean_build, tmp_path):
    out = str(tmp_path / "staged")
    run("fetch", *DEMO, "--out", out, "--quiet")
    run("graph", "--out", out, "--quiet")
    run("crawl", "--out", out, "--quiet")
    run("shard", "--out", out, "--quiet")
    assert shard_bytes(Path(out)) == shard_bytes(clean_build)


def test_bad_raw_input_is_counted_not_fatal(tmp_path):
    raw = tmp_path / "raw"
    meta = [product("A0"), product("A1"), product("A2", images=[]), product("A1", title="dup")]
    write_jsonl_gz(raw / "meta_categories/meta_All_Beauty.jsonl.gz", meta, ("{broken",))
    reviews = [review("u0", "NOPE")]
    reviews += [review(f"u{i}", asin) for i in range(500) for asin in ("A0", "A1")]
    path = write_jsonl_gz(raw / "review_categories/All_Beauty.jsonl.gz", reviews)
    path.write_bytes(path.read_bytes()[:-20])  # a truncated download
    write_jsonl_gz(raw / "meta_categories/meta_Books.jsonl.gz", [])  # an empty category
    write_jsonl_gz(raw / "review_categories/Books.jsonl.gz", [])
    out = str(tmp_path / "out")
    run("fetch", "--categories", "All_Beauty,Books", "--base-url", str(raw), "--out", out)
    assert "graph: 2 nodes, 1 edges" in run("graph", "--out", out, "--quiet").stdout
    summary = json.loads((tmp_path / "out" / "graph" / "graph.json").read_text())
    assert summary["files"]["meta:All_Beauty"]["skipped"] == {"malformed_json": 1}
    assert summary["files"]["review:All_Beauty"]["skipped"]["truncated_gzip"] == 1
    assert summary["files"]["meta:Books"] == {"lines": 0, "kept": 0, "skipped": {}, "examples": {}}
    counts = summary["counts"]
    assert counts["dropped_products"] == {"duplicate_parent_asin": 1, "no_image": 1}
    assert counts["dropped_reviews"]["unknown_product"] == 1
    # inspect shows the skipped raw lines by reason, with where the first ones are
    run("crawl", "--out", out, "--attempts", "1", "--timeout", "2", "--quiet")
    run("shard", "--out", out, "--keep-missing-images", "--quiet")
    lines = json.loads(run("inspect", out, "--json").stdout)["raw_lines"]
    # the line cut by the truncation is malformed too
    assert lines["skipped"] == {"malformed_json": 2, "truncated_gzip": 1}
    assert lines["lines"] == lines["kept"] + 2
    meta = raw / "meta_categories/meta_All_Beauty.jsonl.gz"  # a local --base-url is read in place
    assert lines["examples"]["malformed_json"][0] == f"{meta}:5"
    shown = run("inspect", out).stdout
    assert "malformed_json" in shown and "truncated_gzip" in shown and "skipped by reason" in shown


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["build", "--categories", "Nope", "--out", "x"], "unknown categories Nope; valid names"),
        (["graph", "--out", "{tmp}/empty"], "run `slip-data fetch` first"),
        (["crawl", "--out", "{tmp}/empty"], "run `slip-data graph` first"),
        (["inspect", "{tmp}"], "no manifest.json in"),
        (["build", *DEMO, "--split", "a,b", "--out", "{tmp}/o"], "--split 'a,b' is not three"),
        (["build", *DEMO, "--demo-products", "5", "--out", "{tmp}/o"], "products"),
        (["fetch", "--categories", "Books", "--base-url", "{tmp}/none", "--out", "{tmp}/o"],
         "missing raw file"),
        (["crawl", "--out", "{tmp}/o", "--num-shards", "2", "--shard-index", "2"],
         "--shard-index 2 is outside 0..1 (--num-shards 2)"),
        (["shard", "--out", "{tmp}/o", "--engine", "spark"], "'spark' is not one of 'local'"),
    ],
)  # fmt: skip
def test_bad_invocations_are_one_line_errors(tmp_path, args, expected):
    result = run(*(a.replace("{tmp}", str(tmp_path)) for a in args), check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "Traceback" not in result.stderr


def test_crawl_and_shard_options_reach_their_stage(tmp_path):
    out = tmp_path / "small"
    run("build", "--source", "demo", "--categories", "Books", "--demo-products", "300",
        "--max-side", "48", "--jpeg-quality", "60", "--ignore-robots", "--workers", "1",
        "--rows-per-shard", "100", "--out", str(out), "--quiet")  # fmt: skip
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    node_files = [f for f in manifest["files"] if f["kind"] == "nodes"]
    assert len(node_files) == -(-manifest["counts"]["nodes"] // 100)  # ceil
    sizes = pl.read_parquet(out / "shards" / node_files[0]["path"], columns=["width", "height"])
    assert sizes.select(pl.max_horizontal("width", "height").max()).item() == 48
