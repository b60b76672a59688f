"""The shard plan made in buckets and node ranges on disk (in one step when one bucket holds it):
the same shards at any cut, however the crawl results lie (several unit folders, reruns, ties,
duplicates, URLs never crawled, a damaged part), and a killed plan resumes; a plan made for other
inputs is made again."""

import json
import threading
from pathlib import Path

import polars as pl
import pytest
from builds import shard_bytes

from slip_data import pipeline
from slip_data.crawl.results import load_results, read_latest, write_part
from slip_data.distribute import GB
from slip_data.shard import plan as shard_plan
from slip_data.shard.plan import PLAN_DIR, plan_shards
from slip_data.shard.writer import ShardOptions, write_shards

N = 30
SHA = {i: f"{i:064x}" for i in range(20)}


def result(url: int, status: str = "ok", *, attempts: int = 1, stored: int | None = None) -> dict:
    """A crawl row of URL `url`; an ok image's bytes are `stored`'s (None: not stored here, as a
    duplicate of an image stored in another part)."""
    ok = status == "ok"
    image = url if stored is None else stored
    return {
        "url": f"http://i/{url}.jpg",
        "status": status,
        "error": None,
        "attempts": attempts,
        "source_sha256": SHA[image] if ok else None,
        "sha256": SHA[image] if ok else None,
        "width": 8 if ok else None,
        "height": 6 if ok else None,
        "image": bytes([image]) * 10 if ok and stored is None else None,
    }


def make_inputs(root: Path) -> None:
    """A graph of N nodes (nodes i and i + 20 share a URL; URLs 17 to 19 never crawled) and its
    crawl in the root and two unit folders, with a rerun that fixes URL 3, a tie on URL 14 (the
    later folder wins), and URL 7 serving URL 1's image, stored once."""
    graph = root / "graph"
    graph.mkdir(parents=True)
    pl.DataFrame(
        {
            "graph_id": range(N),
            "parent_asin": [f"A{i:02d}" for i in range(N)],
            "category": ["All_Beauty" if i % 3 else "Books" for i in range(N)],
            "label": [["Soap", "Cream", "Novel"][i % 3] for i in range(N)],
            "title": [f"title {i}" for i in range(N)],
            "text": [f"text {i}" for i in range(N)],
            "image_url": [f"http://i/{i % 20}.jpg" for i in range(N)],
            "split": [["train", "train", "val", "test"][i % 4] for i in range(N)],
        },
        schema_overrides={"graph_id": pl.Int64},
    ).write_parquet(graph / "nodes.parquet", row_group_size=7)
    pl.DataFrame(
        {"graph_id": range(0, N, 2), "reviews": [[f"review {i}"] for i in range(0, N, 2)]},
        schema_overrides={"graph_id": pl.Int64},
    ).write_parquet(graph / "reviews.parquet")
    pairs = [(a, b) for a in range(N) for b in range(a + 1, N) if (a * 7 + b) % 5 == 0]
    pl.DataFrame(
        {"src": [a for a, _ in pairs], "dst": [b for _, b in pairs], "weight": [1] * len(pairs)},
        schema={"src": pl.Int64, "dst": pl.Int64, "weight": pl.Int32},
    ).write_parquet(graph / "edges.parquet")
    crawl = root / "crawl"
    units = crawl / "units"
    write_part(crawl, 0, [result(u, "http_404" if u == 3 else "ok") for u in range(7)])
    write_part(crawl, 1, [result(7, stored=1), result(8, "decode_error"), result(16)])
    write_part(units / "00000-of-00002", 0, [result(u, "timeout" if u == 12 else "ok")
                                              for u in range(9, 17)])  # fmt: skip
    write_part(units / "00001-of-00002", 0, [result(3, attempts=2), result(14, "http_500")])
    write_part(units / "00001-of-00002", 1, [result(12, "timeout", attempts=2)])


def shard(root: Path, options: ShardOptions, memory_gb: float = 2.0) -> dict:
    """The shard stage on `root`'s graph and crawl with its own loaders, the plan cut for
    `memory_gb`."""
    layout = pipeline.Layout(root)
    plan = plan_shards(
        layout.graph,
        layout.crawl,
        layout.shards,
        keep_missing_images=options.keep_missing_images,
        rows_per_shard=options.rows_per_shard,
        memory_gb=memory_gb,
    )
    texts, images = pipeline._loaders(layout, plan)
    return write_shards(
        plan,
        layout.shards,
        options,
        edges=layout.graph / "edges.parquet",
        provenance={},
        texts=texts,
        images=images,
    )


def cut(root: Path) -> dict:
    return json.loads((root / "shards" / PLAN_DIR / "plan.json").read_text())["cut"]


@pytest.fixture
def inputs(tmp_path) -> Path:
    make_inputs(tmp_path / "in")
    return tmp_path / "in"


@pytest.mark.parametrize("keep_missing", [False, True])
def test_any_cut_writes_the_latest_results_and_the_same_bytes(inputs, tmp_path, keep_missing):
    options = ShardOptions(rows_per_shard=4, keep_missing_images=keep_missing)
    manifest = shard(inputs, options)
    assert cut(inputs)["buckets"] == 1 and len(cut(inputs)["chunks"]) == 1  # made in one step
    whole = shard_bytes(inputs)

    latest = read_latest(inputs / "crawl")
    images = dict(zip(latest["url"], load_results(inputs / "crawl")["image"], strict=True))
    nodes = pl.read_parquet(inputs / "graph" / "nodes.parquet")
    status = dict(zip(latest["url"], latest["status"], strict=True))
    statuses = [status.get(url, "not_crawled") for url in nodes["image_url"]]
    kept = [i for i, s in enumerate(statuses) if keep_missing or s == "ok"]
    rows = pl.concat(
        pl.read_parquet(inputs / "shards" / f["path"])
        for f in manifest["files"]
        if f["kind"] == "nodes"
    )
    assert rows["parent_asin"].to_list() == [f"A{i:02d}" for i in kept]
    assert rows["image"].to_list() == [images.get(nodes["image_url"][i]) for i in kept]
    assert manifest["crawl_status"] == dict(sorted(pl.Series(statuses).value_counts().rows()))
    assert statuses[3] == "ok" and statuses[14] == "http_500" and statuses[17] == "not_crawled"
    assert rows.filter(pl.col("parent_asin") == "A07")["image"][0] == bytes([1]) * 10

    for budget in (4_000, 20_000):  # bytes: B x B buckets, chunks of one part, small ranges
        folder = tmp_path / f"cut-{budget}"
        make_inputs(folder)
        shard(folder, options, memory_gb=budget / GB)
        made = cut(folder)
        assert made["buckets"] > 1 and len(made["chunks"]) > 1 and made["range_rows"] < N
        assert shard_bytes(folder) == whole


def test_a_killed_plan_resumes_and_skips_what_it_finished(inputs, tmp_path, monkeypatch):
    options = ShardOptions(rows_per_shard=4)
    reference = tmp_path / "reference"
    make_inputs(reference)
    shard(reference, options)

    budget = 4_000 / GB
    plan_range = shard_plan.plan_range

    def killed(files, node_range, **kwargs):
        if node_range == 3:
            raise KeyboardInterrupt  # as a kill: the steps before it are on disk
        return plan_range(files, node_range, **kwargs)

    monkeypatch.setattr(shard_plan, "plan_range", killed)
    with pytest.raises(KeyboardInterrupt):
        shard(inputs, options, memory_gb=budget)
    monkeypatch.undo()
    stale = inputs / "shards" / PLAN_DIR / "ranges" / ".r3.parquet.999999999.x.tmp"
    stale.write_bytes(b"half")  # a temp file of a writer that is gone

    calls = []
    for step in ("bucket_crawl", "join_urls", "join_shas", "plan_range"):
        original = getattr(shard_plan, step)
        monkeypatch.setattr(
            shard_plan, step, lambda *a, _f=original, _s=step, **k: calls.append(_s) or _f(*a, **k)
        )
    shard(inputs, options, memory_gb=budget)
    made = cut(inputs)
    assert calls.count("plan_range") == -(-N // made["range_rows"])  # read back or made
    assert not stale.exists()
    assert shard_bytes(inputs) == shard_bytes(reference)


def test_a_plan_made_for_other_inputs_or_options_is_made_again(inputs):
    options = ShardOptions(rows_per_shard=4)
    first = shard(inputs, options)
    assert first["dropped_images"]["decode_error"] == 2  # nodes 8 and 28
    write_part(inputs / "crawl", 2, [result(8, attempts=3)])  # a rerun fixes URL 8
    again = shard(inputs, options)
    assert again["counts"]["nodes"] == first["counts"]["nodes"] + 2
    assert again["dropped_images"].get("decode_error") is None
    kept = shard(inputs, ShardOptions(rows_per_shard=4, keep_missing_images=True))
    assert kept["counts"]["nodes"] == N


@pytest.mark.parametrize("memory_gb", [2.0, 4_000 / GB])
def test_nodes_out_of_graph_id_order_are_refused(inputs, memory_gb):
    nodes = inputs / "graph" / "nodes.parquet"
    pl.read_parquet(nodes).reverse().write_parquet(nodes)
    with pytest.raises(ValueError, match="not in graph_id order: build the graph again"):
        shard(inputs, ShardOptions(), memory_gb=memory_gb)


def test_a_plan_of_one_bucket_is_made_in_one_step_without_bucket_files(inputs, monkeypatch):
    calls = []
    for step in ("bucket_crawl", "bucket_nodes", "join_urls", "join_shas", "plan_range"):
        monkeypatch.setattr(shard_plan, step, lambda *a, _s=step, **k: calls.append(_s))
    monkeypatch.setattr(shard_plan, "read_parts", lambda *a, **k: calls.append("part by part"))
    first = shard(inputs, ShardOptions(rows_per_shard=4))
    folder = inputs / "shards" / PLAN_DIR
    made = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    assert made == ["plan.json", "ranges/r0.json", "ranges/r0.parquet"] and calls == []

    def made_again(*args, **kwargs):
        raise AssertionError("the finished range was made again")

    monkeypatch.setattr(shard_plan, "_write_range", made_again)
    assert shard(inputs, ShardOptions(rows_per_shard=4))["counts"] == first["counts"]


@pytest.mark.parametrize("memory_gb", [2.0, 4_000 / GB])
def test_a_damaged_crawl_part_is_skipped_in_one_line(inputs, tmp_path, memory_gb, caplog):
    options = ShardOptions(rows_per_shard=4)
    reference = tmp_path / "reference"
    make_inputs(reference)
    shard(reference, options, memory_gb=memory_gb)
    (inputs / "crawl" / "parts" / "part-000002.parquet").write_bytes(b"PAR1 cut short")
    shard(inputs, options, memory_gb=memory_gb)
    assert shard_bytes(inputs) == shard_bytes(reference)
    skipped = [r.getMessage() for r in caplog.records if "unreadable crawl part" in r.getMessage()]
    assert skipped and all("\n" not in line and "part-000002" in line for line in skipped)


def test_a_second_planner_waits_for_the_first(inputs):
    """Units of a job array each call the plan: while one holds the plan's lock, another neither
    starts nor removes a file; it goes on once the lock is free and makes the same plan."""
    layout = pipeline.Layout(inputs)
    made = {}

    def plan():
        return plan_shards(
            layout.graph, layout.crawl, layout.shards, keep_missing_images=False,
            rows_per_shard=4, memory_gb=2.0,
        )  # fmt: skip

    second = threading.Thread(target=lambda: made.update(plan=plan()))
    with shard_plan.one_planner(layout.shards):
        second.start()
        second.join(timeout=2)  # alone, it makes this plan well within that
        assert second.is_alive() and not (layout.shards / PLAN_DIR).exists()
    second.join()
    assert (layout.shards / PLAN_DIR / "plan.json").is_file()
    assert made["plan"].kept == plan().kept and sum(made["plan"].kept) > 0
