"""The graph stage in work units: the same files whatever the partition counts and wherever the
units run (inline, spawned processes, Ray), a failed or dying unit retried alone, a full disk
one line, and a killed build resumes per unit."""

import gzip
import json
import random
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from flaky_units import pair_users_dying_once
from rawfiles import product, review, write_jsonl_gz

from slip_data.distribute import UnitFailed, UnitOptions
from slip_data.graph import build, partitions, stage, texts
from slip_data.graph.build import GraphOptions
from slip_data.graph.partitions import (
    GB,
    MAX_PARTITIONS,
    META_UNIT_BYTES_PER_PRODUCT,
    NODE_UNIT_BYTES_PER_PRODUCT,
    USER_UNIT_BYTES_PER_REVIEW,
    partition_counts,
)
from slip_data.graph.stage import DONE_FILE, PARTITIONS, RawCategory, run_graph
from slip_data.graph.texts import write_reviews

OUTPUTS = ("nodes.parquet", "edges.parquet", "reviews.parquet")
ONE = partition_counts(reviews=1, products=1, memory_gb=2.0)  # the default budget: one unit
# meta files: 3 slices (a duplicate in the same file lands in the last); review files: 6 link
# slices, and 7 text slices and item ranges
CUT = {
    "users": 4,
    "key_ranges": 3,
    "node_ranges": 3,
    "meta_rows": 20,
    "link_rows": 150,
    "text_rows": 130,
}
INLINE = UnitOptions()  # the default: one unit after another, in this process
FEW = {
    "users": 2,
    "key_ranges": 2,
    "node_ranges": 2,
    "meta_rows": 10**6,
    "link_rows": 10**6,
    "text_rows": 10**6,
}
# 12 units


def catalogue(tmp_path) -> list[RawCategory]:
    """Two categories whose users buy in both; popular products, so that many pairs repeat. Some
    products are twice in one meta file, some in both."""
    rng = random.Random(0)
    asins = [f"P{i:03d}" for i in range(80)]
    meta = [product(a, title="" if a.endswith("7") else f"Product {a}") for a in asins]
    again = asins[4:40:3] + asins[5:41:3]  # by meta[part::2] below: the same file, the other
    meta += [product(a, title=f"Again {a}") for a in again]
    records = []
    for user in range(300):
        for step in range(rng.choice([1, 2, 3, 5, 8, 13])):
            asin = asins[min(int(rng.expovariate(1 / 15)), 79)]
            records.append(
                review(f"user{user}", asin, timestamp=step, verified_purchase=rng.random() < 0.8)
            )
    records += [review("user1", "UNKNOWN"), review("user1", asins[3])]  # an orphan, a repeat
    texts = random.Random(1)  # the texts apart, so that the graph stays as it was
    for index, record in enumerate(records):
        record["helpful_vote"] = texts.choice([0, 0, 0, 1, 2, None])
        record["title"] = texts.choice(["Fine", "", None, "<b>Good</b> &amp; cheap"])
        record["text"] = texts.choice([f"Review {index}.", "", None, "One<br />two &lt;3"])
    ties = [
        review("tied", asins[1], timestamp=9, text=f"Tie {i}", helpful_vote=3) for i in range(4)
    ]
    records[100:100] = ties  # full ties, in both review files: their order in the file decides
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


def run_cut(
    raws, graph_dir, cut: dict | None = None, units: UnitOptions = INLINE, **options
) -> dict:
    """run_graph, with the partition counts `cut` in place of those of the memory budget."""
    with pytest.MonkeyPatch.context() as patch:
        if cut:
            patch.setattr(stage, "partition_counts", lambda **_: cut)
        return run_graph(raws, graph_dir, GraphOptions(**options), units=units, quiet=True)


def built(raws, graph_dir, cut: dict | None = None, units: UnitOptions = INLINE, **options) -> dict:
    summary = run_cut(raws, graph_dir, cut, units, **options)
    return summary | {name: (graph_dir / name).read_bytes() for name in OUTPUTS}


@pytest.mark.parametrize(
    "options",
    [{}, {"min_weight": 2}, {"min_degree": 3}, {"verified_only": True, "max_items_per_user": 3}],
)
def test_several_partitions_write_the_same_files_as_one(tmp_path, options):
    raws = catalogue(tmp_path)
    one = built(raws, tmp_path / "one", **options)
    cut = built(raws, tmp_path / "cut", CUT, **options)
    budget = built(raws, tmp_path / "budget", memory_gb=several(raws), **options)
    assert one["partitions"] == ONE and cut["partitions"] == CUT
    assert budget["partitions"]["users"] == 4 and budget["partitions"]["key_ranges"] == 3
    for name in ("counts", *OUTPUTS):
        assert one[name] == cut[name] == budget[name], name
    dropped = cut["counts"]["dropped_products"]
    assert dropped["duplicate_parent_asin"] == 24 and dropped["no_title"] == 7
    if options.get("min_degree"):
        assert dropped["min_degree"] > 0
    edges = pl.read_parquet(tmp_path / "cut" / "edges.parquet")
    assert edges.height > 50 and edges["weight"].max() > 2
    assert (edges["src"] < edges["dst"]).all() and edges.equals(edges.sort("src", "dst"))
    nodes = pl.read_parquet(tmp_path / "cut" / "nodes.parquet")
    assert nodes["graph_id"].to_list() == list(range(nodes.height))
    assert nodes["parent_asin"].is_sorted() and nodes["parent_asin"].is_unique().all()
    assert not (tmp_path / "cut" / PARTITIONS).exists()  # removed once the stage is done


def test_the_outputs_are_written_in_row_groups_of_a_fixed_size(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    monkeypatch.setattr(build, "NODE_GROUP_ROWS", 10)
    monkeypatch.setattr(build, "EDGE_GROUP_ROWS", 100)
    one = built(raws, tmp_path / "one", min_degree=3)
    cut = built(raws, tmp_path / "cut", CUT, min_degree=3)
    for name in OUTPUTS:
        assert one[name] == cut[name], name
    for name, rows in (("nodes.parquet", 10), ("edges.parquet", 100)):
        meta = pq.ParquetFile(tmp_path / "cut" / name).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert len(sizes) > 2 and sizes[:-1] == [rows] * (len(sizes) - 1), name
        assert 0 < sizes[-1] <= rows, name
    meta = pq.ParquetFile(tmp_path / "cut" / "nodes.parquet").metadata
    stats = [meta.row_group(i).column(0).statistics for i in range(meta.num_row_groups)]
    assert [(s.min, s.max) for s in stats[:2]] == [(0, 9), (10, 19)]  # graph_id, for skipping
    wanted = pl.col("graph_id").is_between(20, 24)
    texts = pl.scan_parquet(tmp_path / "cut" / "nodes.parquet").filter(wanted).collect()
    assert texts["graph_id"].to_list() == list(range(20, 25))


def test_the_review_texts_are_the_same_bytes_however_polars_chunked_them(tmp_path):
    reviews = [[f"review {i}.{j} " * 20 for j in range(3)] for i in range(3000)]
    texts = pl.DataFrame({"graph_id": range(3000), "reviews": reviews})
    chunked = pl.concat([texts[i : i + 37] for i in range(0, 3000, 37)], rechunk=False)
    assert chunked.n_chunks() == 82  # pyarrow's pages would follow these, had they stayed
    parts = [texts[i : i + 500] for i in range(0, 3000, 500)]
    for name, frames in (("one", [texts]), ("chunked", [chunked]), ("parts", parts)):
        write_reviews([frames, []], tmp_path / f"{name}.parquet")
    assert (
        len({(tmp_path / f"{name}.parquet").read_bytes() for name in ("one", "chunked", "parts")})
        == 1
    )


def todays_top_reviews(reviews: pl.LazyFrame, nodes: pl.DataFrame, max_reviews: int):
    """The review texts of one whole review file, as the driver took them before the units
    (the join's order made the file's order explicit: polars' parallel join does not keep it)."""
    body = texts._clean_html(pl.col("text").fill_null(""))
    title = texts._clean_html(pl.col("title").fill_null(""))
    line = pl.when(title != "").then(pl.concat_str(title, pl.lit(": "), body)).otherwise(body)
    return (
        reviews.with_row_index("row")
        .join(nodes.lazy(), on="parent_asin")
        .sort("row")
        .with_columns(user=pl.col("user_id").hash(seed=0))
        .sort(
            ["graph_id", "helpful_vote", "timestamp", "user"],
            descending=[False, True, True, False],
            nulls_last=True,
            maintain_order=True,
        )
        .select("graph_id", line=line)
        .filter(pl.col("line") != "")
        .group_by("graph_id", maintain_order=True)
        .agg(reviews=pl.col("line").head(max_reviews))
        .collect()
    )


def todays_reviews(graph_dir: Path, categories, max_reviews: int, group_rows=None) -> bytes:
    """reviews.parquet as the driver wrote it before the units, from the build's parsed review
    files and nodes: each file's texts whole, cut by pyarrow into `group_rows`-row groups."""
    nodes = pl.read_parquet(graph_dir / "nodes.parquet", columns=["parent_asin", "graph_id"])
    dest = graph_dir / "todays_reviews.parquet"
    with pq.ParquetWriter(dest, texts.REVIEW_SCHEMA) as writer:
        for name in categories:
            path = graph_dir / "parsed" / f"review_{name}.parquet"
            frame = todays_top_reviews(pl.scan_parquet(path), nodes, max_reviews)
            table = frame.rechunk().to_arrow().cast(texts.REVIEW_SCHEMA)
            writer.write_table(table, row_group_size=group_rows)
    return dest.read_bytes()


TEXT_CUTS = [CUT, CUT | {"text_rows": 37}, FEW | {"text_rows": 300}]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"min_degree": 3, "max_reviews": 2},
        {"verified_only": True, "max_reviews": 1},
        {"max_reviews": 0},
    ],
)
def test_the_review_texts_are_todays_bytes_at_any_cut(tmp_path, monkeypatch, options):
    """Row slices of 130, 37 and 300 rows, one whole file; the texts' order, ties and cleaning,
    and a product reviewed in both files (a row in each), as the driver wrote them whole."""
    raws = catalogue(tmp_path)
    names = [raw.name for raw in raws]
    max_reviews = options.get("max_reviews", 25)
    one = built(raws, tmp_path / "one", **options)
    todays = todays_reviews(tmp_path / "one", names, max_reviews)
    assert one["reviews.parquet"] == todays
    for index, cut in enumerate(TEXT_CUTS):
        assert built(raws, tmp_path / f"cut{index}", cut, **options)["reviews.parquet"] == todays
    monkeypatch.setattr(texts, "REVIEW_GROUP_ROWS", 7)  # several row groups a file
    grouped = built(raws, tmp_path / "grouped", TEXT_CUTS[1], **options)["reviews.parquet"]
    assert grouped == todays_reviews(tmp_path / "grouped", names, max_reviews, group_rows=7)
    rows = pl.read_parquet(tmp_path / "one" / "reviews.parquet")
    assert rows["graph_id"].is_duplicated().any()  # reviewed in both files
    if max_reviews == 25:
        lines = [[line for line in row if "Tie" in line] for row in rows["reviews"].to_list()]
        assert [row for row in lines if row] == [
            ["Fine: Tie 0", "Fine: Tie 2"],
            ["Fine: Tie 1", "Fine: Tie 3"],
        ]


def test_the_counts_come_from_the_input_size_and_the_budget():
    one = partition_counts(reviews=1_000_000, products=100_000, memory_gb=2.0)
    assert one == ONE and one["users"] == one["key_ranges"] == one["node_ranges"] == 1
    assert one["link_rows"] > 10_000_000
    assert one["meta_rows"] == 2 * GB // META_UNIT_BYTES_PER_PRODUCT > 100_000
    cut = partition_counts(reviews=100_000_000, products=10_000_000, memory_gb=2.0)
    assert cut["users"] > cut["key_ranges"] > 1 and cut["node_ranges"] > 1
    fewer = partition_counts(reviews=100_000_000, products=10_000_000, memory_gb=8.0)
    assert all(fewer[way] < cut[way] for way in ("users", "key_ranges", "node_ranges"))
    assert fewer["link_rows"] == 4 * cut["link_rows"]
    assert fewer["meta_rows"] // 4 == cut["meta_rows"] < cut["text_rows"]
    products = 2 * GB // NODE_UNIT_BYTES_PER_PRODUCT
    assert partition_counts(reviews=1, products=products, memory_gb=2.0)["node_ranges"] == 1
    assert partition_counts(reviews=1, products=products + 1, memory_gb=2.0)["node_ranges"] == 2
    assert fewer["text_rows"] // 4 == cut["text_rows"] < cut["link_rows"]
    most = partition_counts(reviews=10**12, products=10**12, memory_gb=0.5)
    rows = {name: most[name] for name in ("meta_rows", "link_rows", "text_rows")}
    assert most == dict.fromkeys(ONE, MAX_PARTITIONS) | rows
    with pytest.raises(ValueError, match="memory_gb"):
        GraphOptions(memory_gb=0)


class Killed(BaseException):
    """A kill: not an Exception, so no retry catches it and the build stops there."""


def kill_at(monkeypatch, module, name: str, at) -> None:
    """Make the unit `name` of `module` die when it reaches `at` (its second argument: a meta
    file, a key range, a node range), as a killed build would."""
    real = getattr(module, name)

    def dying(parts, unit, *args, **kwargs):
        if unit == at:
            raise Killed
        return real(parts, unit, *args, **kwargs)

    monkeypatch.setattr(module, name, dying)


def spy_writes(monkeypatch) -> list[str]:
    """The data files written from now on, relative to the partitions folder."""
    written: list[str] = []
    real = partitions._write

    def spying(frame, dest):
        written.append(f"{dest.parent.name}/{dest.name}")
        real(frame, dest)

    monkeypatch.setattr(partitions, "_write", spying)
    monkeypatch.setattr(texts, "_write", spying)
    return written


def killed(raws, graph_dir, cut, *, module, unit: str, at, **options) -> None:
    with pytest.MonkeyPatch.context() as patch:
        kill_at(patch, module, unit, at)
        with pytest.raises(Killed):
            run_cut(raws, graph_dir, cut, **options)
    assert not (graph_dir / DONE_FILE).exists()


def test_a_killed_build_resumes_without_redoing_finished_units(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", CUT)
    graph_dir = tmp_path / "graph"
    killed(raws, graph_dir, CUT, module=partitions, unit="count_range", at=1)
    assert sorted(p.name for p in (graph_dir / PARTITIONS / "edges").iterdir()) == ["k0.parquet"]
    written = spy_writes(monkeypatch)
    resumed = built(raws, graph_dir, CUT)
    assert written[:2] == ["edges/k1.parquet", "edges/k2.parquet"]
    assert all(name.startswith("texts/") for name in written[2:])  # not run before the kill
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name


def test_a_review_file_is_linked_in_row_slices_each_a_unit(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", CUT)
    graph_dir = tmp_path / "graph"
    links = graph_dir / PARTITIONS / "links"
    killed(raws, graph_dir, CUT, module=partitions, unit="link_reviews", at="Appliances.s2")
    done = [f"All_Beauty.s{i}.json" for i in range(6)] + [
        "Appliances.s0.json",
        "Appliances.s1.json",
    ]
    assert sorted(p.name for p in links.glob("*.json")) == done
    written = spy_writes(monkeypatch)
    resumed = built(raws, graph_dir, CUT)
    slices = [f"links/Appliances.s{i}.u{j}.parquet" for i in range(2, 6) for j in range(4)]
    assert [name for name in written if name.startswith("links/")] == slices
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name


def test_a_build_killed_in_the_review_texts_resumes_per_unit(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", CUT, min_degree=3)
    parsed = tmp_path / "clean" / "parsed"
    slices = {
        raw.name: partitions.slice_count(parsed / f"review_{raw.name}.parquet", CUT["text_rows"])
        for raw in raws
    }
    assert slices == {"All_Beauty": 7, "Appliances": 7}
    graph_dir = tmp_path / "graph"
    folder = graph_dir / PARTITIONS / "texts"
    killed(raws, graph_dir, CUT, module=texts, unit="slice_texts", at="Appliances.s3", min_degree=3)
    done = [
        f"{name}.s{i}.json" for name, n in (("All_Beauty", 7), ("Appliances", 3)) for i in range(n)
    ]
    assert sorted(p.name for p in folder.glob("*.json")) == done
    with monkeypatch.context() as patch:  # then killed again in the range units
        written = spy_writes(patch)
        kill_at(patch, texts, "top_texts", texts.TextRange("Appliances", 7, 1))
        with pytest.raises(Killed):
            run_cut(raws, graph_dir, CUT, min_degree=3)
    rest = [f"texts/Appliances.s{i}.r{t}.parquet" for i in range(3, 7) for t in range(7)]
    ranges = [f"texts/All_Beauty.r{t}.parquet" for t in range(7)]
    assert written == [*rest, *ranges, "texts/Appliances.r0.parquet"]
    assert not (graph_dir / "reviews.parquet").exists()
    written = spy_writes(monkeypatch)
    resumed = built(raws, graph_dir, CUT, min_degree=3)
    assert written == [f"texts/Appliances.r{t}.parquet" for t in range(1, 7)]
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name


def test_a_review_file_without_texts_is_an_empty_row_group_as_before(tmp_path):
    raws = meta_files(tmp_path, ("All_Beauty", "Appliances"), [[product("A")], [product("B")]])
    orphans = [review("u1", "Z", text="Nobody's"), review("u2", "A", title="", text="")]
    raws[1] = RawCategory(raws[1].name, raws[1].meta, write_jsonl_gz(tmp_path / "r.gz", orphans))
    run_cut(raws, tmp_path / "graph", CUT)
    written = (tmp_path / "graph" / "reviews.parquet").read_bytes()
    assert written == todays_reviews(tmp_path / "graph", [raw.name for raw in raws], 25)
    meta = pq.ParquetFile(tmp_path / "graph" / "reviews.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1, 0]


def test_a_build_killed_in_the_node_units_resumes_from_the_meta_files_done(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", CUT, min_degree=3)
    graph_dir = tmp_path / "graph"
    nodes = graph_dir / PARTITIONS / "nodes"
    killed(raws, graph_dir, CUT, module=build, unit="filter_meta", at="Appliances.s1", min_degree=3)
    done = [f"All_Beauty.s{i}.json" for i in range(3)] + ["Appliances.s0.json", "bounds.json"]
    assert sorted(p.name for p in nodes.glob("*.json")) == done
    with monkeypatch.context() as patch:  # then killed again while writing nodes.parquet
        written = spy_writes(patch)
        kill_at(patch, build, "node_range", 2)
        with pytest.raises(Killed):
            run_cut(raws, graph_dir, CUT, min_degree=3)
    slices = [
        f"nodes/Appliances.s{s}.{kind}{r}.parquet"
        for s in (1, 2)
        for kind in ("ids.r", "r")
        for r in range(3)
    ]
    assert written[:12] == slices  # All_Beauty's and Appliances.s0's kept
    assert not (graph_dir / "nodes.parquet").exists()
    assert not list(graph_dir.glob(".nodes.parquet.*"))  # the temp file gone with the error
    written = spy_writes(monkeypatch)
    resumed = built(raws, graph_dir, CUT, min_degree=3)
    assert all(name.startswith("texts/") for name in written)  # the rest were done
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name


def test_a_unit_without_its_done_marker_is_redone_and_killed_temps_swept(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", CUT)
    graph_dir = tmp_path / "graph"
    folder = graph_dir / PARTITIONS
    killed(raws, graph_dir, CUT, module=partitions, unit="count_range", at=0)
    # user partition 1 as if killed while writing its files: a file done, one half written
    (folder / "pairs" / "u1.json").unlink()
    (folder / "pairs" / "u1.k2.parquet").write_bytes(b"PAR1 half")
    dead = subprocess.Popen(["true"])
    dead.wait()
    temp = folder / "pairs" / f".u1.k2.parquet.{dead.pid}.x1.tmp"
    temp.write_bytes(b"PAR1 half")
    with monkeypatch.context() as patch:
        written = spy_writes(patch)
        killed(raws, graph_dir, CUT, module=partitions, unit="count_range", at=0)
    assert written == ["pairs/u1.k0.parquet", "pairs/u1.k1.parquet", "pairs/u1.k2.parquet"]
    assert not temp.exists()
    resumed = built(raws, graph_dir, CUT)
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name


def test_another_budget_starts_the_units_over_and_a_done_graph_stays(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean")
    graph_dir = tmp_path / "graph"
    killed(raws, graph_dir, CUT, module=partitions, unit="count_range", at=1)
    written = spy_writes(monkeypatch)
    resumed = built(raws, graph_dir)  # the default budget: one partition each way
    nodes = [f"nodes/{name}.s0.{kind}.parquet" for name in ("All_Beauty", "Appliances")
             for kind in ("ids.r0", "r0")]  # fmt: skip
    nodes.append("ids/r0.parquet")
    links = ["links/All_Beauty.s0.u0.parquet", "links/Appliances.s0.u0.parquet"]
    slices = ["texts/All_Beauty.s0.r0.parquet", "texts/Appliances.s0.r0.parquet"]
    ranges = ["texts/All_Beauty.r0.parquet", "texts/Appliances.r0.parquet"]
    assert written == [*nodes, *links, "pairs/u0.k0.parquet", "edges/k0.parquet", *slices, *ranges]
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name
    plan = json.loads((graph_dir / DONE_FILE).read_text())["partitions"]
    assert plan == ONE
    before = (graph_dir / "edges.parquet").stat().st_mtime_ns
    run_cut(raws, graph_dir, CUT)
    assert (graph_dir / "edges.parquet").stat().st_mtime_ns == before  # same outputs: not redone


def meta_files(tmp_path, names, metas) -> list[RawCategory]:
    reviews = [review("u1", asin) for asin in "ABCDE"] + [review("u2", asin) for asin in "ACE"]
    return [
        RawCategory(
            name,
            write_jsonl_gz(tmp_path / f"{name}_meta.jsonl.gz", meta),
            write_jsonl_gz(tmp_path / f"{name}_reviews.jsonl.gz", reviews[i::2]),
        )
        for i, (name, meta) in enumerate(zip(names, metas, strict=True))
    ]


def test_a_product_in_several_meta_files_is_its_first_row_in_category_order(tmp_path):
    """Its later rows are dropped as duplicates, even when a filter then drops the first; the
    meta files are filtered as separate units, one of them in a run that was killed."""
    beauty = [product("A", title="Beauty A"), product("B", title=""), product("C")]
    beauty.append(product("C", title="C again"))
    appliances = [product("A", title="Appliances A"), product("B", title="Appliances B")]
    appliances += [product("D", images=[]), product("E")]
    names = ("All_Beauty", "Appliances")
    for order, kept, dropped in [
        (
            slice(None),
            {"A": ("Beauty A", "All_Beauty"), "C": ("Product C", "All_Beauty")},
            {"duplicate_parent_asin": 3, "no_title": 1, "no_image": 1},
        ),
        (
            slice(None, None, -1),
            {"A": ("Appliances A", "Appliances"), "B": ("Appliances B", "Appliances")},
            {"duplicate_parent_asin": 3, "no_image": 1},
        ),
    ]:
        folder = tmp_path / str(order.step)
        raws = meta_files(folder, names[order], [beauty, appliances][order])
        killed(
            raws, folder / "graph", CUT, module=build, unit="filter_meta", at=f"{raws[1].name}.s0"
        )
        counts = run_cut(raws, folder / "graph", CUT)["counts"]
        nodes = pl.read_parquet(folder / "graph" / "nodes.parquet")
        rows = {a: (t, c) for a, t, c in nodes.select("parent_asin", "title", "category").rows()}
        assert rows == kept | {"C": ("Product C", "All_Beauty"), "E": ("Product E", "Appliances")}
        assert counts["dropped_products"] == dropped
        assert counts == run_cut(raws, folder / "one", ONE)["counts"]


def test_a_meta_file_in_row_slices_is_the_same_as_whole(tmp_path):
    """Slices of two rows: a product dropped by a filter in its first row, its later rows in
    another slice of its file and in the next file still duplicates; a product kept in its first
    row and repeated in its file's last slice."""
    beauty = [product("A", title=""), product("B"), product("C")]
    beauty += [product("A", title="A again"), product("D"), product("B", title="B again")]
    appliances = [product("E"), product("A", title="Appliances A"), product("F", images=[])]
    raws = meta_files(tmp_path, ("All_Beauty", "Appliances"), [beauty, appliances])
    sliced = CUT | {"meta_rows": 2}
    graph_dir = tmp_path / "graph"
    killed(raws, graph_dir, sliced, module=partitions, unit="count_range", at=0)
    nodes = graph_dir / PARTITIONS / "nodes"
    units = [f"All_Beauty.s{i}" for i in range(3)] + ["Appliances.s0", "Appliances.s1"]
    markers = [json.loads((nodes / f"{unit}.json").read_text()) for unit in units]
    assert markers == [
        {"rows": 2, "kept": 1},
        {"rows": 2, "kept": 2},  # A again: no filter drops it, id_range does
        {"rows": 2, "kept": 2},
        {"rows": 2, "kept": 2},
        {"rows": 1, "kept": 0},
    ]
    cut = built(raws, graph_dir, sliced)
    one = built(raws, tmp_path / "one", ONE)
    for name in ("counts", *OUTPUTS):
        assert cut[name] == one[name], name
    assert cut["counts"]["dropped_products"] == {
        "duplicate_parent_asin": 3,
        "no_image": 1,
        "no_title": 1,
    }
    nodes = pl.read_parquet(graph_dir / "nodes.parquet")
    assert nodes.select("parent_asin", "title").rows() == [
        ("B", "Product B"),
        ("C", "Product C"),
        ("D", "Product D"),
        ("E", "Product E"),
    ]


def tries(graph_dir: Path) -> list[str]:
    """pair_users_dying_once's tries, by user partition and try."""
    return sorted(p.name for p in (graph_dir / "tries").iterdir())


DIED = "graph pair_users unit 1 failed (its process died with exit code 1); try 2 of 3"


def test_units_in_spawned_processes_write_the_same_files_and_a_dying_one_is_retried_alone(
    tmp_path, monkeypatch, caplog
):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", CUT, min_degree=3)
    graph_dir = tmp_path / "graph"
    monkeypatch.setattr(partitions, "pair_users", pair_users_dying_once)  # pickled by name
    spawned = built(raws, graph_dir, FEW, UnitOptions(processes=2), min_degree=3)
    for name in ("counts", *OUTPUTS):
        assert spawned[name] == clean[name], name
    assert caplog.messages == [DIED]  # no other unit failed
    assert tries(graph_dir) == ["u0.0", "u1.0", "u1.1"]


def test_units_on_a_local_ray_instance_write_the_same_files(tmp_path):
    """A worker lost on Ray is retried as a dying process is: test_work_units.py."""
    ray = pytest.importorskip("ray", reason="Ray is in the dev group; pip install 'slip-data[ray]'")
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", CUT)
    ray.init(include_dashboard=False, log_to_driver=False)  # once, for the four steps
    try:
        on_ray = built(raws, tmp_path / "graph", FEW, UnitOptions(engine="ray"))
    finally:
        ray.shutdown()
    for name in ("counts", *OUTPUTS):
        assert on_ray[name] == clean[name], name


def test_a_failing_unit_is_retried_alone_without_redoing_the_others(tmp_path, monkeypatch, caplog):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", CUT)
    real = partitions.count_range
    failures = []

    def failing_once(parts, key_range, **kwargs):
        if key_range == 1 and not failures:
            failures.append(key_range)
            raise OSError("the network filesystem went away")
        return real(parts, key_range, **kwargs)

    monkeypatch.setattr(partitions, "count_range", failing_once)
    written = spy_writes(monkeypatch)
    resumed = built(raws, tmp_path / "graph", CUT)
    assert caplog.messages == [
        "graph count_range unit 1 failed (OSError: the network filesystem went away); try 2 of 3"
    ]
    assert [name for name in written if name.startswith("edges/")] == [
        "edges/k0.parquet",
        "edges/k1.parquet",
        "edges/k2.parquet",
    ]
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name


def test_the_graph_stage_refuses_a_shard_index(tmp_path):
    with pytest.raises(ValueError, match="--shard-index runs one crawl or shard unit"):
        run_graph([], tmp_path, GraphOptions(), units=UnitOptions(num_shards=2, shard_index=0))


def test_a_full_disk_in_a_unit_is_one_line_naming_the_stage_and_nothing_half_written_stays(
    tmp_path, small_disk, monkeypatch
):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean")
    graph_dir = small_disk / "graph"
    killed(raws, graph_dir, None, module=partitions, unit="link_reviews", at="All_Beauty.s0")
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * max(0, shutil.disk_usage(small_disk).free - 4096))
    with pytest.raises(UnitFailed) as failed:
        run_cut(raws, graph_dir, units=UnitOptions(unit_retries=2))
    line = str(failed.value)
    assert "\n" not in line, line
    assert line.startswith("graph link_reviews unit 0 failed 1 times, last: DiskFullError: ")
    links = graph_dir / PARTITIONS / "links"
    assert f"{links / 'All_Beauty.s0.u0.parquet'}: no space left on device (" in line
    assert "bytes free in" in line and "so it needs more than that" in line
    assert not [p.name for p in links.iterdir()]  # no temp file, no half-written unit
    filler.unlink()
    written = spy_writes(monkeypatch)
    resumed = built(raws, graph_dir)
    assert [name for name in written if name.startswith("nodes/")] == []  # kept, not redone
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name


# Eight node ranges over the parent_asins A A B B C C D E F G G (every meta row sampled): bounds
# A B C C D F G, so ranges 0 (before A) and 3 ([C, C)) are empty.
EIGHT = CUT | {"node_ranges": 8, "meta_rows": 3, "link_rows": 3}


def test_each_node_range_finds_its_duplicates_and_items_on_its_own(tmp_path):
    """Duplicates in one file and across files, a product a filter dropped in its first file and
    kept in a later one (dropped, as before), empty node ranges, review slices in one range or
    several, and a review file with no rows: the counts and bytes of one range."""
    beauty = [product("A", title="Beauty A"), product("B", title=""), product("C")]
    beauty += [product("C", title="C again"), product("F"), product("G", images=[])]
    appliances = [product("A", title="Appliances A"), product("B", title="Appliances B")]
    appliances += [product("D", images=[]), product("E"), product("G")]
    buyers = [review(f"u{i}", asin, timestamp=i) for i in range(4) for asin in "ABCDEFGZ"]
    raws = [
        RawCategory(
            name,
            write_jsonl_gz(tmp_path / f"{name}_meta.jsonl.gz", meta),
            write_jsonl_gz(tmp_path / f"{name}_reviews.jsonl.gz", buyers[i::2]),
        )
        for i, (name, meta) in enumerate((("All_Beauty", beauty), ("Appliances", appliances)))
    ]
    empty = write_jsonl_gz(tmp_path / "Baby_reviews.jsonl.gz", [])
    raws.append(RawCategory("Baby", write_jsonl_gz(tmp_path / "Baby_meta.jsonl.gz", []), empty))
    graph_dir = tmp_path / "graph"
    killed(raws, graph_dir, EIGHT, module=partitions, unit="count_range", at=0)
    folder = graph_dir / PARTITIONS
    assert json.loads((folder / "nodes" / "bounds.json").read_text()) == list("ABCCDFG")
    tables = [pl.read_parquet(folder / "ids" / f"r{i}.parquet").rows() for i in range(8)]
    assert tables == [
        [],
        [("A", 0)],
        [("B", None)],  # dropped by no_title in All_Beauty, its first file
        [],
        [("C", 0)],
        [("D", None), ("E", 0)],
        [("F", 0)],
        [("G", None)],
    ]
    kept = [json.loads((folder / "ids" / f"r{i}.json").read_text())["kept"] for i in range(8)]
    assert kept == [0, 1, 0, 0, 1, 1, 1, 0]
    cut = built(raws, graph_dir, EIGHT)
    one = built(raws, tmp_path / "one", ONE)
    for name in ("counts", *OUTPUTS):
        assert cut[name] == one[name], name
    counts = cut["counts"]
    assert counts["dropped_products"] == {
        "duplicate_parent_asin": 4,
        "no_image": 2,
        "no_title": 1,
    }
    assert counts["dropped_reviews"] == {"filtered_product": 12, "unknown_product": 4}
    nodes = pl.read_parquet(graph_dir / "nodes.parquet")
    assert nodes.select("graph_id", "parent_asin", "title", "category").rows() == [
        (0, "A", "Beauty A", "All_Beauty"),
        (1, "C", "Product C", "All_Beauty"),
        (2, "E", "Product E", "Appliances"),
        (3, "F", "Product F", "All_Beauty"),
    ]
    edges = pl.read_parquet(graph_dir / "edges.parquet")
    assert edges.rows() == [(s, d, 4) for s in range(4) for d in range(s + 1, 4)]


def test_a_build_killed_in_the_id_units_resumes_per_node_range(tmp_path, monkeypatch):
    raws = catalogue(tmp_path)
    clean = built(raws, tmp_path / "clean", CUT, min_degree=3)
    graph_dir = tmp_path / "graph"
    killed(raws, graph_dir, CUT, module=build, unit="id_range", at=1, min_degree=3)
    ids = graph_dir / PARTITIONS / "ids"
    assert sorted(p.name for p in ids.iterdir()) == ["r0.json", "r0.parquet"]
    (ids / "r0.json").unlink()  # as if killed between its table and its marker
    written = spy_writes(monkeypatch)
    resumed = built(raws, graph_dir, CUT, min_degree=3)
    assert [name for name in written if name.startswith(("ids/", "nodes/"))] == [
        f"ids/r{i}.parquet" for i in range(3)
    ]
    for name in ("counts", *OUTPUTS):
        assert resumed[name] == clean[name], name
