"""Tiny shard folders for slip-eval's tests: the files of docs/shard-format.md that slip-eval
reads, each listed in the manifest with its sha256 as slip-data lists it."""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def jpeg(colour: tuple[int, int, int]) -> bytes:
    """An 8×8 JPEG of one colour."""
    pixels = np.full((8, 8, 3), colour, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_shard_folder(
    folder: Path, node_tables: list[dict], edges: list[tuple[int, int]], manifest: dict
) -> Path:
    """Node files `nodes-00000.parquet`... of `node_tables` (columns as dicts), `edges.parquet`
    of `edges`, and `manifest.json`: `manifest`'s own keys and the files' entries."""
    folder.mkdir(parents=True)
    files = []

    def add(name: str, table: pa.Table, kind: str) -> None:
        pq.write_table(table, folder / name)
        data = (folder / name).read_bytes()
        entry = {"path": name, "kind": kind, "rows": table.num_rows, "bytes": len(data)}
        files.append(entry | {"sha256": hashlib.sha256(data).hexdigest()})

    for index, columns in enumerate(node_tables):
        add(f"nodes-{index:05d}.parquet", pa.table(columns), "nodes")
    src, dst = zip(*edges, strict=True) if edges else ((), ())
    table = pa.table({"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64())})
    add("edges.parquet", table, "edges")
    (folder / "manifest.json").write_text(json.dumps(manifest | {"files": files}))
    return folder
