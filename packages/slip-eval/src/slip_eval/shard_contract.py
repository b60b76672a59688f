"""The shard format (docs/shard-format.md) as code: its version, the node and edge columns, the
manifest found, read and checked, and a file checked against the manifest's sha256.

The same file is in slip_data, slip_train and slip_eval (one behaviour, no import between the
packages; tests/test_shared_modules.py keeps the copies equal). It needs pyarrow and the standard
library only, so slip-data stays free of torch.
"""

import hashlib
import json
from pathlib import Path

import pyarrow as pa

FORMAT = "slip-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# the documented Arrow types; a writer may store the `large_` variants (polars does)
NODE_COLUMNS = {
    "node_id": pa.int64(),
    "parent_asin": pa.string(),
    "main_category": pa.string(),
    "label": pa.string(),
    "label_id": pa.int32(),
    "title": pa.string(),
    "text": pa.string(),
    "reviews": pa.list_(pa.string()),
    "image": pa.binary(),
    "image_sha256": pa.string(),
    "width": pa.int32(),
    "height": pa.int32(),
    "split": pa.string(),
}
EDGE_COLUMNS = {"src": pa.int64(), "dst": pa.int64(), "weight": pa.int32()}
PROGRAM = __name__.split(".")[0].replace(
    "_", "-"
)  # slip-data, slip-train or slip-eval, by the copy


class ShardFormatError(ValueError):
    """Shards that are missing, of another format version, or not whole; one line."""


def file_sha256(path: Path) -> str:
    """The file's hex sha256, read a MiB at a time (shard files and checkpoints outgrow memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(
    path: str | Path, *, error: type[Exception] = ShardFormatError
) -> tuple[Path, dict]:
    """The shard folder (`path`, or `path/shards` for a build folder) and its manifest, whose
    version this reader knows and whose files are all present; else `error`, the caller's own
    one-line error type."""
    path = Path(path)
    folder = next((f for f in (path, path / "shards") if (f / MANIFEST).is_file()), None)
    if folder is None:
        raise error(f"no {MANIFEST} in {path} or {path / 'shards'}: not slip-data shards")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise error(f"{folder / MANIFEST}: unreadable manifest ({exc})") from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise error(
            f"{folder}: shard format version {version!r}; this {PROGRAM} reads {FORMAT_VERSION}"
        )
    for entry in manifest.get("files", []):
        if not (folder / entry["path"]).is_file():
            raise error(f"{folder / entry['path']}: listed in the manifest but missing")
    return folder, manifest


def node_paths(folder: Path, manifest: dict) -> list[Path]:
    """The manifest's node files, in name order: node_id order."""
    return [folder / entry["path"] for entry in manifest["files"] if entry["kind"] == "nodes"]


def _check_sha256(
    folder: Path, manifest: dict, path: Path, actual: str, *, error: type[Exception]
) -> None:
    """An error when the manifest lists a sha256 for `path` other than `actual`."""
    listed = {entry["path"]: entry.get("sha256") for entry in manifest["files"]}
    expected = listed.get(path.relative_to(folder).as_posix())
    if expected is not None and actual != expected:
        raise error(
            f"{path}: sha256 {actual} is not the manifest's {expected} "
            "(the file changed after slip-data wrote it)"
        )


def read_verified(
    folder: Path, manifest: dict, path: Path, *, error: type[Exception] = ShardFormatError
) -> pa.Buffer:
    """The file's bytes, read once and checked against the manifest's sha256 (when it lists one):
    parsing the bytes that were hashed leaves no window for the file to change."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: unreadable ({exc.strerror or exc})") from None
    _check_sha256(folder, manifest, path, hashlib.sha256(data).hexdigest(), error=error)
    return pa.py_buffer(data)


def verify_file(
    folder: Path, manifest: dict, path: Path, *, error: type[Exception] = ShardFormatError
) -> Path:
    """`path`, checked against the manifest's sha256 (when it lists one) a MiB at a time, for a
    file too large to read whole that the caller then reads in batches (a change after the check
    is not seen)."""
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise error(f"{path}: unreadable ({exc.strerror or exc})") from None
    _check_sha256(folder, manifest, path, actual, error=error)
    return path
