"""Parquet files in fixed-size row groups, so that their bytes depend on the rows alone.

The graph stage (nodes, edges and review texts) and the shard stage (edges) write files from
frames cut wherever their work units or read batches ended; a rerun, a unit build and a build in
memory must still write the same bytes. This module is that one writer. It is a module of its
own because both stages use it: the graph's partitions are no place for the shard's writer, and
atomic.py is copied equal into three packages that have no Parquet writer.
"""

from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from slip_data.atomic import atomic_path


def _row_groups(frames: Iterable[pl.DataFrame], rows: int) -> Iterator[pl.DataFrame]:
    """The rows of `frames` in order, as frames of `rows` rows (the last one shorter), each in
    one chunk: pyarrow's pages follow the chunks, so the bytes written depend on the rows alone,
    not on how many frames brought them."""
    held: pl.DataFrame | None = None
    for frame in frames:
        held = frame if held is None else pl.concat([held, frame], rechunk=False)
        while held.height >= rows:
            yield held.head(rows).rechunk()
            held = held.slice(rows)
    if held is not None and held.height:
        group, held = held.rechunk(), None  # its frames freed while the group is written
        yield group


def write_groups(
    writer: pq.ParquetWriter,
    frames: Iterable[pl.DataFrame],
    *,
    rows: int,
    empty_group: bool = False,
) -> int:
    """Append the rows of `frames` in order to `writer` in `rows`-row groups (the last one
    shorter), their columns cast to the writer's schema, and return the rows written. With
    `empty_group`, no rows still write one empty group, as pyarrow writes an empty table; else
    none. A reader after some rows skips the groups whose statistics exclude them."""
    schema = writer.schema
    written = 0
    for group in _row_groups((frame.select(schema.names) for frame in frames), rows):
        writer.write_table(group.to_arrow().cast(schema), rows)
        written += group.height
    if empty_group and not written:
        writer.write_table(schema.empty_table(), rows)
    return written


def write_row_groups(
    dest: Path,
    frames: Iterable[pl.DataFrame],
    *,
    schema: pa.Schema,
    rows: int,
    compression: str,
    use_dictionary: bool | list[str] = True,
    empty_group: bool = False,
) -> int:
    """Write `frames` atomically as the Parquet file `dest` of `schema` (write_groups) and return
    the rows written. `use_dictionary` names the columns to dictionary-encode: on ids and texts
    it costs space."""
    with (
        atomic_path(dest) as tmp,
        pq.ParquetWriter(
            tmp, schema, compression=compression, use_dictionary=use_dictionary
        ) as writer,
    ):
        return write_groups(writer, frames, rows=rows, empty_group=empty_group)
