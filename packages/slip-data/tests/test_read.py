import gzip
import json
import random

import polars as pl
import pytest
from rawfiles import product, review, write_jsonl_gz, write_lines_gz

from slip_data.graph import read
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


# A corpus of hostile lines, each mixed into a file of good reviews at every position and read
# with blocks and reader chunks of every size: the verdict must be the line's own.

REVIEW = review("uX", "AX", timestamp=7)
COLUMNS = ("parent_asin", "user_id", "rating", "title", "text", "timestamp", "helpful_vote",
           "verified_purchase")  # fmt: skip
GOOD = [review(f"u{i}", f"A{i}", timestamp=i, title=f"T{i}", text="x" * i) for i in range(7)]
BOM = b"\xef\xbb\xbf"


def raw(record: dict, **values: str) -> bytes:
    """`record` as a JSON line, with some fields' values given as raw JSON text."""
    text = json.dumps(record | {name: f"@{name}@" for name in values})
    for name, value in values.items():
        text = text.replace(f'"@{name}@"', value)
    return text.encode()


LINE = raw(REVIEW)
HOSTILE = {
    "truncated": (LINE[:40], "malformed_json"),
    "not JSON": (b"{not json", "malformed_json"),
    "trailing comma": (LINE[:-1] + b", }", "malformed_json"),
    "raw tab in a string": (raw(REVIEW, text='"a\tb"'), "malformed_json"),
    "two objects": (LINE + LINE, "malformed_json"),
    "object, then null": (LINE + b" null", "malformed_json"),
    "two byte-order marks": (BOM + BOM + LINE, "malformed_json"),
    "array": (b"[1, 2]", "not_an_object"),
    "null": (b"null", "not_an_object"),
    "string": (b'"text"', "not_an_object"),
    "NaN": (raw(REVIEW, rating="NaN"), "non_standard_json"),
    "Infinity": (raw(REVIEW, rating="Infinity"), "non_standard_json"),
    "-Infinity": (raw(REVIEW, rating="-Infinity"), "non_standard_json"),
    "Inf, which only the reader takes": (raw(REVIEW, rating="Inf"), "malformed_json"),
    "float past the float range": (raw(REVIEW, rating="1e400"), "number_out_of_range"),
    "int past the float range": (raw(REVIEW, rating="1" + "0" * 400), "number_out_of_range"),
    "int past int64": (raw(REVIEW, timestamp=str(2**63)), "number_out_of_range"),
    "int below int64": (raw(REVIEW, timestamp=str(-(2**63) - 1)), "number_out_of_range"),
    "float in an int field": (raw(REVIEW, timestamp="7.0"), "wrong_type_timestamp"),
    "bool in an int field": (raw(REVIEW, helpful_vote="true"), "wrong_type_helpful_vote"),
    "string in a float field": (raw(REVIEW, rating='"5"'), "wrong_type_rating"),
    "int in a bool field": (raw(REVIEW, verified_purchase="1"), "wrong_type_verified_purchase"),
    "list in a string field": (raw(REVIEW, title='["a", "b"]'), "wrong_type_title"),
    "object in a string field": (raw(REVIEW, title='{"a": 1}'), "wrong_type_title"),
    "int in a string field": (raw(REVIEW, title="12"), "wrong_type_title"),
    "float in a string field": (raw(REVIEW, text="1.5"), "wrong_type_text"),
    "bool in a string field": (raw(REVIEW, title="false"), "wrong_type_title"),
    "int id": (raw(REVIEW, user_id="12"), "missing_user_id"),
    "blank id": (raw(REVIEW, user_id='" \\t"'), "missing_user_id"),
    "null id": (raw(REVIEW, parent_asin="null"), "missing_parent_asin"),
    "empty object": (b"{}", "missing_parent_asin"),
    "invalid UTF-8": (LINE.replace(b"Works", b"Wo\xffrks"), "invalid_utf8"),
    "invalid UTF-8 in a field not read": (LINE.replace(b'"AX"', b'"A\xc0\xaf"', 1), "invalid_utf8"),
    "UTF-8 of a surrogate": (LINE.replace(b"Works", b"\xed\xa0\x80"), "invalid_utf8"),
    "lone surrogate": (raw(REVIEW, text='"\\ud800"'), "lone_surrogate"),
    "high surrogate, then a letter": (raw(REVIEW, text='"a\\ud83dxyz"'), "lone_surrogate"),
    "field given twice": (LINE[:-1] + b', "title": "again"}', "duplicate_key"),
}
KEPT = {  # odd but readable lines, and the record each is read as
    "byte-order mark": (BOM + LINE, REVIEW),
    "int in a float field": (raw(REVIEW, rating="4"), REVIEW | {"rating": 4.0}),
    "spaces and CR around": (b"  " + LINE + b" \r", REVIEW),
    "escapes": (raw(REVIEW, text='"\\ud83d\\ude00\\u0000"'), REVIEW | {"text": "\U0001f600\x00"}),
    "NaN in a field not read": (LINE[:-1] + b', "price": NaN}', REVIEW),
    "-NaN in a field not read": (LINE[:-1] + b', "price": -NaN}', REVIEW),
    "field not read given twice": (LINE[:-1] + b', "asin": 1}', REVIEW),
    "deep field not read": (LINE[:-1] + b', "x": ' + b"[" * 3000 + b"]" * 3000 + b"}", REVIEW),
    "fields not read, any type": (raw(REVIEW, images='{"a": [1, null]}', asin="[]"), REVIEW),
}
# (BLOCK_BYTES, CHUNK_BYTES): each line its own block; a few lines a block and a line or two a
# reader chunk (a longer line straddles chunks); all lines in one block, as in production
SIZES = [(1, 1 << 20), (700, 400), (16 << 20, 1 << 20)]


def row(record: dict) -> tuple:
    return tuple(float(record[c]) if c == "rating" else record[c] for c in COLUMNS)


def line_by_line(path):
    """Gunzip handing over one line at a time, so that a block holds exactly the lines that fit."""
    return gzip.decompress(path.read_bytes()).splitlines(keepends=True)


def placements(monkeypatch, tmp_path, line: bytes):
    """Parse `line` among good lines: first, in the middle, last, and last without a newline,
    with every block and chunk size. Yields (0-based position, source, report, rows)."""
    monkeypatch.setattr(read, "inflate", line_by_line)
    good = [json.dumps(r).encode() for r in GOOD]
    for block_bytes, chunk_bytes in SIZES:
        monkeypatch.setattr(read, "BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(read, "CHUNK_BYTES", chunk_bytes)
        for at, final_newline in ((0, True), (3, True), (len(good), True), (len(good), False)):
            lines = [*good[:at], line, *good[at:]]
            src = write_lines_gz(tmp_path / "r.jsonl.gz", lines, final_newline)
            report = parse_to_parquet(src, "review", tmp_path / "r.parquet")
            yield at, src, report, pl.read_parquet(tmp_path / "r.parquet").select(COLUMNS).rows()


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_line_is_skipped_for_its_reason_wherever_it_stands(monkeypatch, tmp_path, name):
    line, reason = HOSTILE[name]
    for at, src, report, rows in placements(monkeypatch, tmp_path, line):
        assert dict(report.skipped) == {reason: 1}
        assert report.examples == {reason: [f"{src}:{at + 1}"]}
        assert (report.lines, report.kept) == (len(GOOD) + 1, len(GOOD))
        assert rows == [row(r) for r in GOOD]  # the good rows, as written


@pytest.mark.parametrize("name", KEPT)
def test_an_odd_but_readable_line_is_kept_as_written(monkeypatch, tmp_path, name):
    line, record = KEPT[name]
    for at, _, report, rows in placements(monkeypatch, tmp_path, line):
        assert not report.skipped and report.kept == len(GOOD) + 1
        assert rows == [row(r) for r in [*GOOD[:at], record, *GOOD[at:]]]


def test_a_non_string_in_a_string_field_is_skipped_alone_and_among_good_lines(
    monkeypatch, tmp_path
):
    good = [json.dumps(r).encode() for r in GOOD]
    lines = [*good[:3], raw(REVIEW, title='["a list"]'), raw(REVIEW, user_id="12"), *good[3:]]
    src = write_lines_gz(tmp_path / "r.jsonl.gz", lines)
    monkeypatch.setattr(read, "inflate", line_by_line)
    results = []
    for block_bytes in (1, 16 << 20):  # each line its own block; all lines in one block
        monkeypatch.setattr(read, "BLOCK_BYTES", block_bytes)
        report = parse_to_parquet(src, "review", tmp_path / "r.parquet")
        assert dict(report.skipped) == {"wrong_type_title": 1, "missing_user_id": 1}
        assert report.examples == {
            "wrong_type_title": [f"{src}:4"],
            "missing_user_id": [f"{src}:5"],
        }
        results.append((report.as_dict(), pl.read_parquet(tmp_path / "r.parquet").rows()))
    assert results[0] == results[1]


def mutants(count: int) -> list[bytes]:
    """Good meta and review lines with random bytes changed, cut, or JSON tokens put in."""
    rng = random.Random(0)
    tokens = [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"null", b"NaN", b"-Infinity",
              b"Inf", b"-NaN", b"1e999", b"\xff", BOM, b"\\ud800", b" ", b"true", b"12", b"{}",
              b'"title": 5, ', b'"user_id": null, ', b'"rating": "5", ']  # fmt: skip
    sources = [json.dumps(r).encode() for r in GOOD[:4]]
    sources += [json.dumps(product(f"P{i}")).encode() for i in range(4)]
    lines = []
    for _ in range(count):
        line = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(line) + 1)
            if (op := rng.random()) < 0.5:
                line[at:at] = rng.choice(tokens)
            elif op < 0.8:
                del line[at : at + rng.randint(1, 4)]
            else:
                line[at : at + 1] = bytes([rng.randrange(256)])
        lines.append(bytes(line).replace(b"\n", b""))
    return lines


@pytest.mark.parametrize("kind", ["review", "meta"])
def test_mutated_lines_get_the_same_verdict_whatever_their_neighbours(monkeypatch, tmp_path, kind):
    good = [json.dumps(r).encode() for r in GOOD]
    lines = [line for i, mutant in enumerate(mutants(100)) for line in (mutant, good[i % 7])]
    src = write_lines_gz(tmp_path / "m.jsonl.gz", lines)
    monkeypatch.setattr(read, "inflate", line_by_line)
    results = []
    for block_bytes, chunk_bytes in SIZES:
        monkeypatch.setattr(read, "BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(read, "CHUNK_BYTES", chunk_bytes)
        report = parse_to_parquet(src, kind, tmp_path / "m.parquet")
        assert report.kept + sum(report.skipped.values()) == report.lines == len(lines)
        results.append((report.as_dict(), pl.read_parquet(tmp_path / "m.parquet").rows()))
    assert results[0] == results[1] == results[2]
    assert len(lines) // 2 < results[0][0]["kept"] < len(lines)  # some mutants are kept, some not


def test_blank_lines_are_no_records_and_keep_the_line_numbers(tmp_path):
    good = [json.dumps(r).encode() for r in GOOD[:3]]
    lines = [b"", good[0], b"  ", b"\r", *[b""] * 50_000, good[1], b"{broken", BOM, good[2], b""]
    src = write_lines_gz(tmp_path / "r.jsonl.gz", lines)
    report = parse_to_parquet(src, "review", tmp_path / "r.parquet")
    assert (report.lines, report.kept, dict(report.skipped)) == (4, 3, {"malformed_json": 1})
    assert report.examples == {"malformed_json": [f"{src}:50006"]}
    assert pl.read_parquet(tmp_path / "r.parquet")["user_id"].to_list() == ["u0", "u1", "u2"]


def test_a_line_longer_than_a_reader_chunk_is_read(monkeypatch, tmp_path):
    monkeypatch.setattr(read, "CHUNK_BYTES", 1024)
    records = [*GOOD[:5], review("u_long", "A_long", text="y" * 5000), *GOOD[5:]]
    src = write_jsonl_gz(tmp_path / "r.jsonl.gz", records)
    report = parse_to_parquet(src, "review", tmp_path / "r.parquet")
    assert report.kept == len(records) and not report.skipped
    assert pl.read_parquet(tmp_path / "r.parquet").select(COLUMNS).rows() == [
        row(r) for r in records
    ]


def test_meta_fields_read_are_judged_and_the_others_are_not(tmp_path):
    thumb = {"thumb": [1, {"a": None}], "large": "L", "variant": "MAIN", "hi_res": None}
    lines = [
        raw(product("A")),
        raw(product("B"), features='["f", 1]'),
        raw(product("C"), images='[{"large": 5}]'),
        raw(product("D"), images='[{"large": "l", "large": "m"}]'),
        raw(product("E"), parent_asin="5"),
        raw(product("F", images=[thumb]), price="NaN", details='{"a": 1, "a": 2}'),
    ]
    src = write_lines_gz(tmp_path / "m.jsonl.gz", lines)
    report = parse_to_parquet(src, "meta", tmp_path / "m.parquet")
    assert dict(report.skipped) == {
        "wrong_type_features": 1,
        "wrong_type_images": 1,
        "duplicate_key": 1,
        "missing_parent_asin": 1,
    }
    frame = pl.read_parquet(tmp_path / "m.parquet")
    assert frame["parent_asin"].to_list() == ["A", "F"]
    assert frame["images"][1].to_list() == [{"large": "L", "variant": "MAIN", "hi_res": None}]
