"""The fixed-row-group writer (parquet_groups.py) that the graph and shard stages share."""

from itertools import pairwise

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slip_data.parquet_groups import write_row_groups

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.large_string())])


def whole() -> pl.DataFrame:
    """50 rows of 150 to 250 kB: a group of 8 fills more than pyarrow's 1 MB page."""
    names = [f"product {i} " * (15_000 + 1_000 * (i % 7)) for i in range(50)]
    return pl.DataFrame({"id": range(50), "name": names})


def cuts(frame: pl.DataFrame) -> dict[str, list[pl.DataFrame]]:
    """The same rows brought whole, in uneven frames with empty ones between, and in one frame
    of many chunks (pyarrow's pages would follow them, had they stayed)."""
    ends = [0, 3, 3, 17, 18, 40, 50]
    chunked = pl.concat([frame[i : i + 6] for i in range(0, frame.height, 6)], rechunk=False)
    assert chunked.n_chunks() > 1
    return {
        "whole": [frame],
        "uneven": [frame[a:b] for a, b in pairwise(ends)],
        "chunked": [chunked],
    }


def test_the_bytes_are_those_of_the_whole_table_however_the_rows_came(tmp_path):
    frame = whole()
    expected = tmp_path / "expected.parquet"
    pq.write_table(
        frame.to_arrow(), expected, row_group_size=8, compression="zstd", use_dictionary=["id"]
    )
    for name, frames in cuts(frame).items():
        dest = tmp_path / f"{name}.parquet"
        options = {"compression": "zstd", "use_dictionary": ["id"]}
        written = write_row_groups(dest, frames, schema=SCHEMA, rows=8, **options)
        assert written == 50
        assert dest.read_bytes() == expected.read_bytes(), name
    meta = pq.ParquetFile(expected).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [8] * 6 + [2]


@pytest.mark.parametrize("empty_group", [False, True])
def test_no_rows_write_one_empty_group_only_when_asked(tmp_path, empty_group):
    for name, frames in (("none", []), ("empty", [whole().clear(), whole().clear()])):
        dest = tmp_path / f"{name}.parquet"
        written = write_row_groups(
            dest, frames, schema=SCHEMA, rows=8, compression="zstd", empty_group=empty_group
        )
        assert written == 0
        file = pq.ParquetFile(dest)
        assert file.schema_arrow == SCHEMA and file.metadata.num_rows == 0
        assert file.num_row_groups == int(empty_group), name
