"""The crawl's URL list streamed from nodes.parquet: the same URLs, order and sha256 as polars'
`unique(maintain_order=True)` of the column and the Python list's name, whatever the batches,
the slices hashed and the 64-bit hashes that decide which rows to compare."""

import hashlib
import os
import random
from pathlib import Path

import polars as pl
import pytest
from url_names import listed_sha256

from slip_data.crawl import results
from slip_data.crawl.results import URL_LIST, read_url_range, write_node_urls


def nodes_file(folder: Path, urls: list[str], *, ids: list[int] | None = None) -> Path:
    path = folder / "nodes.parquet"
    ids = list(range(0, 3 * len(urls), 3)) if ids is None else ids  # only their order counts
    frame = pl.DataFrame(
        {"graph_id": ids, "image_url": urls}, schema_overrides={"graph_id": pl.Int64}
    )
    frame.write_parquet(path, row_group_size=7)
    return path


def catalogue_urls(rows: int, seed: int) -> list[str]:
    """URLs drawn from a pool a third of `rows`, of several lengths: repeats near and far."""
    draw = random.Random(seed)
    pool = [f"http://img.invalid/{'x' * draw.randrange(4)}{n}.jpg" for n in range(rows // 3)]
    return [draw.choice(pool) for _ in range(rows)]


@pytest.fixture
def small_steps(monkeypatch: pytest.MonkeyPatch) -> int:
    """Batches of 5 rows, hashed slices of 4 URLs: both cut across each other and the repeats."""
    monkeypatch.setattr(results, "READ_ROWS", 5)
    monkeypatch.setattr(results, "HASHED_URLS", 4)
    return 4


def check_list(crawl: Path, nodes: Path, urls: list[str], size: int) -> None:
    expected = pl.Series(urls, dtype=pl.String).unique(maintain_order=True).to_list()
    count, named = write_node_urls(crawl, nodes)
    assert count == len(expected) and named == listed_sha256(expected, size)
    assert read_url_range(crawl, 0, count) == expected
    assert pl.read_parquet_metadata(crawl / URL_LIST)["urls_sha256"] == named


def test_the_list_is_polars_unique_of_the_column_across_batches(tmp_path, small_steps):
    urls = catalogue_urls(200, seed=1)
    assert len(set(urls)) < len(urls) - 50  # repeats within and across batches
    nodes = nodes_file(tmp_path, urls)
    check_list(tmp_path / "crawl", nodes, urls, small_steps)
    kept = os.stat(tmp_path / "crawl" / URL_LIST)
    check_list(tmp_path / "crawl", nodes, urls, small_steps)  # the same list: not written again
    again = os.stat(tmp_path / "crawl" / URL_LIST)
    assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)
    other = urls[::-1]
    check_list(tmp_path / "crawl", nodes_file(tmp_path, other), other, small_steps)


def test_an_empty_graph_gives_an_empty_list(tmp_path, small_steps):
    check_list(tmp_path / "crawl", nodes_file(tmp_path, []), [], small_steps)
    assert write_node_urls(tmp_path / "crawl", nodes_file(tmp_path, []))[1] == (
        hashlib.sha256().hexdigest()
    )


@pytest.mark.parametrize(
    "hashes",
    [
        lambda urls: urls.str.len_bytes().cast(pl.UInt64).to_numpy(),  # URLs of a length collide
        lambda urls: pl.zeros(len(urls), pl.UInt64, eager=True).to_numpy(),  # all collide
    ],
    ids=["by-length", "all-equal"],
)
def test_urls_that_share_a_hash_are_told_apart_by_their_strings(
    tmp_path, small_steps, monkeypatch, hashes
):
    monkeypatch.setattr(results, "_url_hashes", hashes)
    monkeypatch.setattr(results, "COMPARED_ROWS", 10)  # the repeated hashes in several passes
    urls = catalogue_urls(120, seed=2)
    check_list(tmp_path / "crawl", nodes_file(tmp_path, urls), urls, small_steps)


def test_nodes_out_of_graph_id_order_are_refused(tmp_path, small_steps):
    nodes = nodes_file(tmp_path, ["a", "b", "c", "d", "e", "f", "g"], ids=[0, 1, 2, 3, 4, 6, 5])
    with pytest.raises(ValueError, match=r"not in graph_id order \(row 6\): run `slip-data graph`"):
        write_node_urls(tmp_path / "crawl", nodes)
    assert not (tmp_path / "crawl" / URL_LIST).exists()
