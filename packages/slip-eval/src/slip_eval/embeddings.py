"""Node embeddings as files for graph ML (docs/embeddings-format.md): `slip-eval embed` writes each
split's L2-normalised image and text embeddings (and, with `--structure`, the graph-refined ones)
as Parquet keyed by `node_id` and `parent_asin`, with a manifest; `to_pyg` reads them back onto
the shards' co-purchase graph as a PyG `Data`.

The embeddings come from the embedding cache (data.py), so a model evaluated once is not encoded
again. The manifest records the shard manifest's file hashes: embeddings are never joined to a
graph of other shards.
"""

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import Tensor

from slip_eval import __version__
from slip_eval.atomic import atomic_path, write_json
from slip_eval.data import SPLITS, DataError, Split, edges_among, embed_split, open_split
from slip_eval.graph import refine
from slip_eval.graph_head import neighbour_edges
from slip_eval.models import LoadedModel
from slip_eval.shard_contract import file_sha256, read_manifest

if TYPE_CHECKING:
    from torch_geometric.data import Data

FORMAT = "slip-embeddings"
FORMAT_VERSION = 1
MANIFEST = "embeddings.json"
ROWS_PER_GROUP = 8192  # rows converted and written at once: memory stays bounded per split
KEY_COLUMNS = {
    "node_id": pa.int64(),
    "parent_asin": pa.string(),
    "split": pa.string(),
    "label_id": pa.int32(),
    "label": pa.string(),
}
PLAIN, REFINED = ("image", "text"), ("image_graph", "text_graph")
FEATURES = ("image", "text", "concat", "mean")


def _shard_files(manifest: dict) -> list[dict]:
    """What identifies the shards: each file's path and sha256, as their manifest lists them."""
    return [{"path": f["path"], "sha256": f["sha256"]} for f in manifest["files"]]


def _check_structure(model: LoadedModel, splits: list[Split]) -> None:
    """The same refusals as the evaluations' --structure: no graph heads, or a split whose
    products share no edge, is an error rather than a copy of the plain embeddings."""
    if model.graph_heads is None:
        raise DataError("--structure: the model has no graph head (a slip-mode checkpoint has)")
    for split in splits:
        if split.edge_index.shape[1] == 0:
            raise DataError(
                f"--structure: the {split.name!r} split has no edge between its products "
                "(leave it out of --split)"
            )


def _columns(model: LoadedModel, raw: dict[str, Tensor], split: Split, *, structure: bool) -> dict:
    """The split's embedding columns: normalised, and refined over the split's own edges."""
    columns = {name: F.normalize(raw[name], dim=-1) for name in PLAIN}
    if structure:
        for name, head, plain in zip(REFINED, model.graph_heads, PLAIN, strict=True):
            columns[name] = refine(head, raw[plain], split.edge_index)
    return columns


def _keys(split: Split) -> pa.Table:
    """The split's key and label columns, in the embeddings' row order (node_id order)."""
    table = split.rows(["node_id", "parent_asin", "label_id", "label"])
    if not np.array_equal(table["node_id"].to_numpy(), split.node_ids):
        raise DataError(f"{split.folder}: the node files changed while they were read")
    table = table.append_column("split", pa.array([split.name] * table.num_rows, pa.string()))
    return table.select(list(KEY_COLUMNS)).cast(pa.schema(KEY_COLUMNS))


def _write_split(path: Path, keys: pa.Table, columns: dict[str, Tensor], *, quiet: bool) -> None:
    """One split's Parquet file, ROWS_PER_GROUP rows converted and written at a time."""
    dim = next(iter(columns.values())).shape[1]
    vector = pa.list_(pa.float32(), dim)
    schema = pa.schema([*KEY_COLUMNS.items(), *((name, vector) for name in columns)])
    with (
        Progress(disable=quiet, transient=True) as progress,
        atomic_path(path) as tmp,
        pq.ParquetWriter(tmp, schema) as writer,
    ):
        task = progress.add_task(f"writing {path.name}", total=keys.num_rows)
        for start in range(0, keys.num_rows, ROWS_PER_GROUP):
            rows = keys.slice(start, ROWS_PER_GROUP)
            vectors = [
                pa.FixedSizeListArray.from_arrays(
                    pa.array(values[start : start + rows.num_rows].numpy().reshape(-1)), dim
                )
                for values in columns.values()
            ]
            writer.write_table(
                pa.Table.from_arrays([*rows.columns, *vectors], schema=schema),
                row_group_size=ROWS_PER_GROUP,
            )
            progress.advance(task, rows.num_rows)


def _listed_before(folder: Path) -> set[str]:
    """The split files an earlier `embed` listed in this folder (removed if this one does not)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        listed = {entry["path"] for entry in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return listed & {f"{name}.parquet" for name in SPLITS}


def write_embeddings(
    model: LoadedModel,
    shards: str | Path,
    out: Path,
    *,
    splits: list[str],
    structure: bool,
    cache_dir: Path | None,
    quiet: bool = False,
) -> dict:
    """Each split's embeddings as `out/<split>.parquet`, then `out/embeddings.json`, which is
    written last: its presence means every file it lists is whole. Returns the manifest."""
    opened = [open_split(shards, name) for name in splits]  # every refusal before any encoding
    if structure:
        _check_structure(model, opened)
    before = _listed_before(out)
    (out / MANIFEST).unlink(missing_ok=True)  # a killed run leaves no manifest to trust
    files, dim = [], None
    for split in opened:  # one split's embeddings in memory at a time
        raw = embed_split(model, split, cache_dir=cache_dir, quiet=quiet)
        columns = _columns(model, raw, split, structure=structure)
        dim = raw["image"].shape[1]
        path = out / f"{split.name}.parquet"
        _write_split(path, _keys(split), columns, quiet=quiet)
        files.append(
            {
                "path": path.name,
                "split": split.name,
                "rows": int(split.node_ids.size),
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
            }
        )
    vector = f"fixed_size_list<float32>[{dim}]"
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "slip_eval_version": __version__,
        "model": {
            "name": model.name,
            "pretrained": model.pretrained,
            "fingerprint": model.fingerprint,
        },
        "shards": {"folder": str(opened[0].folder), "files": _shard_files(opened[0].manifest)},
        "structure": structure,
        "dim": dim,
        "columns": [{"name": name, "type": str(kind)} for name, kind in KEY_COLUMNS.items()]
        + [{"name": name, "type": vector} for name in PLAIN + (REFINED if structure else ())],
        "rows": {entry["split"]: entry["rows"] for entry in files},
        "files": files,
    }
    write_json(out / MANIFEST, manifest)
    for stale in before - {entry["path"] for entry in files}:
        (out / stale).unlink(missing_ok=True)
    return manifest


def read_embeddings_manifest(folder: str | Path) -> dict:
    """The manifest of an embeddings folder, of this format and a version this reader knows."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable embeddings manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a slip-eval embeddings manifest (docs/embeddings-format.md)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path}: embeddings format version {manifest.get('format_version')!r}; "
            f"this slip-eval reads {FORMAT_VERSION}"
        )
    return manifest


def _read_verified_table(folder: Path, entry: dict, columns: list[str]) -> pa.Table:
    """A split file, its bytes checked against the embeddings manifest's sha256 and parsed."""
    path = folder / entry["path"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry["sha256"]:
        raise DataError(
            f"{path}: sha256 {actual} is not the embeddings manifest's {entry['sha256']} "
            "(the file changed after slip-eval embed wrote it)"
        )
    return pq.read_table(pa.BufferReader(data), columns=columns)


def _matrix(table: pa.Table, name: str) -> Tensor:
    """A vector column as an (n, dim) tensor of its own (Arrow's buffers are read-only)."""
    values = table[name].combine_chunks()
    flat = values.flatten().to_numpy()
    return torch.from_numpy(flat.reshape(len(values), values.type.list_size).copy())


def to_pyg(
    embeddings: str | Path,
    shards: str | Path,
    *,
    features: Literal["image", "text", "concat", "mean"] = "image",
    structure: bool = False,
) -> "Data":
    """The embedded nodes as a `torch_geometric.data.Data`, in node_id order: `x` (the image or
    text embeddings, both side by side, or their renormalised mean; graph-refined with
    `structure`), `edge_index` (every co-purchase edge between two embedded nodes, both
    directions, whatever their splits), `y` (label_id), `train_mask`/`val_mask`/`test_mask` and
    `node_id`. Embeddings made from other shards than `shards` are refused (DataError)."""
    from torch_geometric.data import Data  # imported by graph_head.py already, warnings silenced

    if features not in FEATURES:
        raise DataError(f"features: {features!r} is not one of {', '.join(FEATURES)}")
    folder = Path(embeddings)
    manifest = read_embeddings_manifest(folder)
    shard_folder, shard_manifest = read_manifest(shards, error=DataError)
    recorded, actual = (
        {(f["path"], f["sha256"]) for f in files}
        for files in (manifest["shards"]["files"], _shard_files(shard_manifest))
    )
    if recorded != actual:
        raise DataError(
            f"{folder / MANIFEST}: made from other shards than {shard_folder} (the manifests "
            f"differ at {min(recorded ^ actual)[0]}): run slip-eval embed on these shards"
        )
    if structure and not manifest["structure"]:
        raise DataError(
            f"{folder / MANIFEST}: no graph-refined embeddings (embed ran without --structure)"
        )
    image, text = REFINED if structure else PLAIN
    wanted = {"image": [image], "text": [text]}.get(features, [image, text])
    table = pa.concat_tables(
        _read_verified_table(folder, entry, ["node_id", "split", "label_id", *wanted])
        for entry in manifest["files"]
    ).sort_by("node_id")
    vectors = [_matrix(table, name) for name in wanted]
    if features == "mean":
        x = F.normalize(vectors[0] + vectors[1], dim=-1)
    else:
        x = torch.cat(vectors, dim=1)
    node_ids = table["node_id"].to_numpy()
    edge_index = edges_among(shard_folder, shard_manifest, node_ids)
    split = table["split"].to_numpy()
    return Data(
        x=x,
        edge_index=neighbour_edges(edge_index),
        y=torch.from_numpy(table["label_id"].to_numpy().astype(np.int64)),
        node_id=torch.from_numpy(node_ids.copy()),
        **{f"{name}_mask": torch.from_numpy(split == name) for name in SPLITS},
    )
