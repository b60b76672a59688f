"""Reading slip-data shards through their contract (docs/shard-format.md), never slip-data's code.

Images need random access in any order, for datasets larger than RAM: the image, title and
image_sha256 columns are copied once into an Arrow IPC file (`nodes.arrow`, written atomically
beside a stamp of the manifest it came from) and memory-mapped, so a DataLoader worker reads one
image without loading a shard.

Readers verify what the manifest promises: a file read whole (the node files when the cache is
built, edges.parquet when the training graph is) is checked against its sha256, so a byte changed
on disk is an error, not a silent difference in what is trained on; each image is checked against
its image_sha256 when it is decoded (slip_train.data).
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from slip_train.atomic import atomic_path, write_bytes
from slip_train.shard_contract import (
    EDGE_COLUMNS,
    NODE_COLUMNS,
    node_paths,
    read_manifest,
    read_verified,
    verify_file,
)

NODE_CACHE = "nodes.arrow"
NODE_CACHE_SCHEMA = pa.schema(
    {"image": pa.large_binary(), "title": pa.large_string(), "image_sha256": pa.large_string()}
)


class ShardError(ValueError):
    """Shards that are missing, of another format version, or not as documented; one line."""


def _same_kind(actual: pa.DataType, expected: pa.DataType) -> bool:
    """string/large_string, binary/large_binary and list/large_list count as the same type."""

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(t):
            return pa.string()
        if pa.types.is_large_binary(t):
            return pa.binary()
        if pa.types.is_large_list(t) or pa.types.is_list(t):
            return pa.list_(plain(t.value_type))
        return t

    return plain(actual) == plain(expected)


def _check_columns(path: Path, schema: pa.Schema, expected: dict[str, pa.DataType]) -> None:
    for name, dtype in expected.items():
        index = schema.get_field_index(name)
        if index < 0:
            raise ShardError(f"{path}: missing column {name} (docs/shard-format.md)")
        if not _same_kind(schema.field(index).type, dtype):
            raise ShardError(f"{path}: column {name} is {schema.field(index).type}, not {dtype}")


@dataclass(frozen=True)
class Shards:
    """A checked shard folder: its manifest and the paths of its files."""

    folder: Path
    manifest: dict

    @property
    def node_files(self) -> list[Path]:
        return node_paths(self.folder, self.manifest)

    @property
    def num_nodes(self) -> int:
        return self.manifest["counts"]["nodes"]

    def edge_file(self) -> Path:
        """edges.parquet, checked against the manifest's sha256 a MiB at a time: it outgrows
        memory, so it is hashed first and then read in batches (a change after the check is not
        seen)."""
        return verify_file(
            self.folder, self.manifest, self.folder / "edges.parquet", error=ShardError
        )

    def verified(self, path: Path) -> pa.Buffer:
        """The file's bytes, checked against the manifest's sha256 (read_verified)."""
        return read_verified(self.folder, self.manifest, path, error=ShardError)


def open_shards(path: str | Path) -> Shards:
    """A shard folder (or a build folder holding shards/), its version and columns checked."""
    folder, manifest = read_manifest(path, error=ShardError)
    shards = Shards(folder, manifest)
    for entry in manifest.get("files", []):
        file = folder / entry["path"]
        try:
            schema = pq.read_schema(file)
        except (OSError, pa.ArrowException) as exc:
            raise ShardError(f"{file}: not a readable Parquet file ({exc})") from None
        if entry["kind"] == "nodes":
            _check_columns(file, schema, NODE_COLUMNS)
        elif entry["kind"] == "edges":
            _check_columns(file, schema, EDGE_COLUMNS)
    if not shards.node_files:
        raise ShardError(f"{folder}: the manifest lists no node shards")
    return shards


def _cache_problem(target: Path, rows: int) -> str | None:
    """Why the node cache at `target` cannot be used, or None: it must be a readable Arrow IPC
    file of NODE_CACHE_SCHEMA with one row per node."""
    try:
        reader = ipc.open_file(pa.memory_map(str(target)))
        if not reader.schema.equals(NODE_CACHE_SCHEMA):
            return f"schema {reader.schema.names}, not {NODE_CACHE_SCHEMA.names}"
        found = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (OSError, pa.ArrowException) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        return f"not a readable Arrow IPC file ({reason})"
    return None if found == rows else f"{found} rows, not the manifest's {rows}"


def build_node_cache(shards: Shards, cache_dir: Path) -> Path:
    """The columns a training step reads at random (image, title, image_sha256) in one Arrow IPC
    file, indexed by node_id, built on first use; `read_node_cache` memory-maps it, so reading
    one image touches only its pages.

    The cache is rebuilt when the manifest changed (its sha256 list is the stamp) or when it is
    not the file it should be (unreadable, another schema, another row count: a one-line warning
    says why). Each node file is checked against its sha256 as it is copied in; the cache is
    written atomically, so a killed build leaves no half cache.
    """
    target = cache_dir / NODE_CACHE
    stamp_file = cache_dir / (NODE_CACHE + ".stamp")
    stamp = json.dumps([f["sha256"] for f in shards.manifest["files"]])
    if target.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        problem = _cache_problem(target, shards.num_nodes)
        if problem is None:
            return target
        print(f"slip-train: node cache {target}: {problem}; rebuilding it", file=sys.stderr)
    with (
        atomic_path(target) as tmp,
        pa.OSFile(str(tmp), "wb") as sink,
        ipc.new_file(sink, NODE_CACHE_SCHEMA) as writer,
    ):
        for path in shards.node_files:
            table = pq.read_table(shards.verified(path), columns=NODE_CACHE_SCHEMA.names)
            writer.write_table(table.cast(NODE_CACHE_SCHEMA))
    write_bytes(stamp_file, stamp.encode())
    return target


def read_node_cache(path: Path) -> pa.Table:
    """The node cache, memory-mapped: `table.take(node_ids)` reads just those rows."""
    return ipc.open_file(pa.memory_map(str(path))).read_all()
