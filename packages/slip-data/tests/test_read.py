import json

import polars as pl
from rawfiles import product, review, write_jsonl_gz

from slip_data.graph.read import parse_to_parquet


def test_good_file_keeps_every_line(tmp_path):
    src = write_jsonl_gz(tmp_path / "r.jsonl.gz", [review("u1", "A"), review("u2", "B")])
    report = parse_to_parquet(src, "review", tmp_path / "r.parquet")
    frame = pl.read_parquet(tmp_path / "r.parquet")
    assert report.kept == 2 and not report.skipped
    assert frame["user_id"].to_list() == ["u1", "u2"]


def test_bad_lines_are_skipped_and_counted_with_their_line(tmp_path):
    records = [
        review("u1", "A"),
        "{not json",
        "[1, 2]",
        review("u2", "B", rating="five"),
        review("", "C"),
        {"parent_asin": "D"},
        review("u3", "E"),
    ]
    src = write_jsonl_gz(tmp_path / "r.jsonl.gz", records)
    report = parse_to_parquet(src, "review", tmp_path / "r.parquet")
    assert report.kept == 2
    assert dict(report.skipped) == {
        "malformed_json": 1,
        "not_an_object": 1,
        "wrong_type_rating": 1,
        "missing_user_id": 2,
    }
    assert report.examples["malformed_json"] == [f"{src}:2"]
    assert report.examples["wrong_type_rating"] == [f"{src}:4"]
    assert pl.read_parquet(tmp_path / "r.parquet")["user_id"].to_list() == ["u1", "u3"]


def test_wrong_typed_meta_fields(tmp_path):
    records = [
        product("A"),
        product("B", images="not a list"),
        product("C", categories="Root > Sub"),
        product("D", title=["a", "list"]),
    ]
    src = write_jsonl_gz(tmp_path / "m.jsonl.gz", records)
    report = parse_to_parquet(src, "meta", tmp_path / "m.parquet")
    assert report.kept == 1
    assert set(report.skipped) == {"wrong_type_images", "wrong_type_categories", "wrong_type_title"}


def test_truncated_gzip_keeps_the_whole_lines_before_the_cut(tmp_path):
    records = [review(f"u{i}", f"A{i}", text="x" * 50) for i in range(2000)]
    src = write_jsonl_gz(tmp_path / "r.jsonl.gz", records)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) * 2 // 3])
    report = parse_to_parquet(src, "review", tmp_path / "r.parquet")
    assert report.skipped["truncated_gzip"] == 1
    kept = pl.read_parquet(tmp_path / "r.parquet")
    assert 0 < kept.height < 2000
    assert kept["user_id"].to_list() == [f"u{i}" for i in range(kept.height)]


def test_not_gzip_and_empty_files(tmp_path):
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"this is not gzip")
    report = parse_to_parquet(bad, "meta", tmp_path / "bad.parquet")
    assert report.skipped["bad_gzip"] == 1 and report.kept == 0
    assert pl.read_parquet(tmp_path / "bad.parquet").height == 0

    empty = write_jsonl_gz(tmp_path / "empty.jsonl.gz", [])
    report = parse_to_parquet(empty, "meta", tmp_path / "empty.parquet")
    assert report.kept == 0 and not report.skipped
    assert json.dumps(report.as_dict())  # the report is plain JSON


def test_multi_member_gzip_reads_every_member(tmp_path):
    first = write_jsonl_gz(tmp_path / "a.gz", [review("u1", "A")]).read_bytes()
    second = write_jsonl_gz(tmp_path / "b.gz", [review("u2", "B")]).read_bytes()
    joined = tmp_path / "joined.jsonl.gz"
    joined.write_bytes(first + second)
    report = parse_to_parquet(joined, "review", tmp_path / "j.parquet")
    assert report.kept == 2 and not report.skipped
