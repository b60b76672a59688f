"""The pair step in work units: the same files whatever the partition counts, and a killed build
resumes per unit."""

import gzip
import json
import random
import subprocess

import polars as pl
import pytest
from rawfiles import product, review, write_jsonl_gz

from slip_data.graph import partitions
from slip_data.graph.build import GraphOptions
from slip_data.graph.partitions import (
    GB,
    MAX_PARTITIONS,
    USER_UNIT_BYTES_PER_REVIEW,
    partition_counts,
)
from slip_data.graph.stage import DONE_FILE, PARTITIONS, RawCategory, run_graph

OUTPUTS = ("nodes.parquet", "edges.parquet", "reviews.parquet")


def catalogue(tmp_path) -> list[RawCategory]:
    """Two categories whose users buy in both; popular products, so that many pairs repeat."""
    rng = random.Random(0)
    asins = [f"P{i:03d}" for i in range(80)]
    meta = [product(a, title="" if a.endswith("7") else f"Product {a}") for a in asins]
    records = []
    for user in range(300):
        for step in range(rng.choice([1, 2, 3, 5, 8, 13])):
            asin = asins[min(int(rng.expovariate(1 / 15)), 79)]
            records.append(
                review(f"user{user}", asin, timestamp=step, verified_purchase=rng.random() < 0.8)
            )
    records += [review("user1", "UNKNOWN"), review("user1", asins[3])]  # an orphan, a repeat
    raws = []
    for part, name in enumerate(("All_Beauty", "Appliances")):
        raws.append(
            RawCategory(
                name,
                write_jsonl_gz(tmp_path / f"{name}_meta.jsonl.gz", meta[part::2]),
                write_jsonl_gz(tmp_path / f"{name}_reviews.jsonl.gz", records[part::2]),
            )
        )
    return raws


def several(raws) -> float:
    """A memory budget that cuts this catalogue into 4 user partitions (and 3 key ranges)."""
    reviews = sum(len(gzip.decompress(raw.reviews.read_bytes()).splitlines()) for raw in raws)
    return reviews * USER_UNIT_BYTES_PER_REVIEW / 3.5 / GB


def built(raws, graph_dir, **options) -> dict:
    summary = run_graph(raws, graph_dir, GraphOptions(**options), quiet=True)
    return summary | {name: (graph_dir / name).read_bytes() for name in OUTPUTS}


@pytest.mark.parametrize(
    "options",
    [{}, {"min_weight": 2}, {"min_degree": 3}, {"verified_only": True, "max_items_per_user": 3}],
)
def test_several_partitions_write_the_same_files_as_one(tmp_path, options):
    raws = catalogue(tmp_path)
    one = built(raws, tmp_path / "one", **options)
    cut = built(raws, tmp_path / "cut", memory_gb=several(raws), **options)
    assert one["partitions"] == {"users": 1, "key_ranges": 1}
    assert cut["partitions"] == {"users": 4, "key_ranges": 3}
    for name in ("counts", *OUTPUTS):
        assert one[name] == cut[name], name
    if options.get("min_degree"):
        assert cut["counts"]["dropped_products"]["min_degree"] > 0
    edges = pl.read_parquet(tmp_path / "cut" / "edges.parquet")
    assert edges.height > 50 and edges["weight"].max() > 2
    assert (edges["src"] < edges["dst"]).all() and edges.equals(edges.sort("src", "dst"))
    assert not (tmp_path / "cut" / PARTITIONS).exists()  # removed once the stage is done


def test_the_counts_come_from_the_input_size_and_the_budget():
    assert partition_counts(1_000_000, 2.0) == (1, 1)
    users, ranges = partition_counts(100_000_000, 2.0)
    assert users > ranges > 1
    assert partition_counts(100_000_000, 8.0) < (users, ranges)
    assert partition_counts(10**12, 0.5) == (MAX_PARTITIONS, MAX_PARTITIONS)
    with pytest.raises(ValueError, match="memory_gb"):
        GraphOptions(memory_gb=0)


class Killed(RuntimeError):
    pass


def kill_at(monkeypatch, key_range: int) -> None:
    """Make step 5 die when it reaches `key_range`, as a killed build would."""
    real = partitions.count_range

    def dying(parts, at, **kwargs):
        if at == key_range:
            raise Killed
        return real(parts, at, **kwargs)

    monkeypatch.setattr(partitions, "count_range", dying)


def spy_writes(monkeypatch) -> list[str]:
    """The data files written from now on, relative to the partitions folder."""
    written: list[str] = []
    real = partitions._write

    def spying(frame, dest):
        written.append(f"{dest.parent.name}/{dest.name}")
        real(frame, dest)

    monkeypatch.setattr(partitions, "_write", spying)
    return written


def test_a_killed_build_resumes_without_redoing_finished_units(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", memory_gb=several(raws))
    graph_dir = tmp_path / "graph"
    with monkeypatch.context() as patch:
        kill_at(patch, key_range=1)
        with pytest.raises(Killed):
            run_graph(raws, graph_dir, GraphOptions(memory_gb=several(raws)), quiet=True)
    assert not (graph_dir / DONE_FILE).exists()
    assert sorted(p.name for p in (graph_dir / PARTITIONS / "edges").iterdir()) == ["k0.parquet"]
    written = spy_writes(monkeypatch)
    resumed = built(raws, graph_dir, memory_gb=several(raws))
    assert written == ["edges/k1.parquet", "edges/k2.parquet"]
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name


def test_a_unit_without_its_done_marker_is_redone_and_killed_temps_swept(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", memory_gb=several(raws))
    graph_dir = tmp_path / "graph"
    folder = graph_dir / PARTITIONS
    with monkeypatch.context() as patch:
        kill_at(patch, key_range=0)
        with pytest.raises(Killed):
            run_graph(raws, graph_dir, GraphOptions(memory_gb=several(raws)), quiet=True)
    # user partition 1 as if killed while writing its files: a file done, one half written
    (folder / "pairs" / "u1.json").unlink()
    (folder / "pairs" / "u1.k2.parquet").write_bytes(b"PAR1 half")
    dead = subprocess.Popen(["true"])
    dead.wait()
    temp = folder / "pairs" / f".u1.k2.parquet.{dead.pid}.x1.tmp"
    temp.write_bytes(b"PAR1 half")
    with monkeypatch.context() as patch:
        written = spy_writes(patch)
        kill_at(patch, key_range=0)
        with pytest.raises(Killed):
            run_graph(raws, graph_dir, GraphOptions(memory_gb=several(raws)), quiet=True)
    assert written == ["pairs/u1.k0.parquet", "pairs/u1.k1.parquet", "pairs/u1.k2.parquet"]
    assert not temp.exists()
    resumed = built(raws, graph_dir, memory_gb=several(raws))
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name


def test_another_budget_starts_the_units_over_and_a_done_graph_stays(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean")
    graph_dir = tmp_path / "graph"
    with monkeypatch.context() as patch:
        kill_at(patch, key_range=1)
        with pytest.raises(Killed):
            run_graph(raws, graph_dir, GraphOptions(memory_gb=several(raws)), quiet=True)
    written = spy_writes(monkeypatch)
    resumed = built(raws, graph_dir)  # the default budget: one partition each way
    links = ["links/All_Beauty.u0.parquet", "links/Appliances.u0.parquet"]
    assert written == [*links, "pairs/u0.k0.parquet", "edges/k0.parquet"]
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name
    plan = json.loads((graph_dir / DONE_FILE).read_text())["partitions"]
    assert plan == {"users": 1, "key_ranges": 1}
    before = (graph_dir / "edges.parquet").stat().st_mtime_ns
    run_graph(raws, graph_dir, GraphOptions(memory_gb=several(raws)), quiet=True)
    assert (graph_dir / "edges.parquet").stat().st_mtime_ns == before  # same outputs: not redone
