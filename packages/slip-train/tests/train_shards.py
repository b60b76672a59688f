"""Tiny shard folders written by hand to docs/shard-format.md, for slip-train's tests."""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
RGB = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 20),
       (150, 30, 160), (250, 140, 0), (245, 245, 245), (10, 10, 10)]  # fmt: skip


def write_shards(
    folder: Path,
    n: int = 5,
    per_shard: int = 2,
    drop_column: str | None = None,
    version: int = 1,
    images: list[bytes | None] | None = None,
    titles: list[str] | None = None,
    labels: list[int] | None = None,
    splits: list[str] | None = None,
    edges: list[tuple[int, int]] = ((0, 1), (1, 4)),
) -> Path:
    """A shard folder of `n` nodes; columns not given get placeholder values."""
    folder.mkdir(parents=True, exist_ok=True)
    images = images or [f"jpeg-bytes-{i}".encode() for i in range(n)]
    titles = titles or [f"title {i}" for i in range(n)]
    labels = labels or [0] * n
    splits = splits or ["train"] * n
    files = []

    def add(name: str, table: pa.Table, kind: str) -> None:
        pq.write_table(table, folder / name)
        data = (folder / name).read_bytes()
        entry = {"path": name, "kind": kind, "rows": table.num_rows, "bytes": len(data)}
        files.append(entry | {"sha256": hashlib.sha256(data).hexdigest()})

    for index, start in enumerate(range(0, n, per_shard)):
        ids = list(range(start, min(n, start + per_shard)))
        columns = {
            "node_id": pa.array(ids, pa.int64()),
            "parent_asin": [f"A{i}" for i in ids],
            "main_category": ["Books"] * len(ids),
            "label": [COLOURS[labels[i] % len(COLOURS)] for i in ids],
            "label_id": pa.array([labels[i] for i in ids], pa.int32()),
            "title": [titles[i] for i in ids],
            "text": [""] * len(ids),
            "reviews": pa.array([["a review"] for _ in ids], pa.list_(pa.string())),
            "image": pa.array([images[i] for i in ids], pa.binary()),
            "image_sha256": [
                hashlib.sha256(images[i]).hexdigest() if images[i] is not None else None
                for i in ids
            ],
            "width": pa.array([8] * len(ids), pa.int32()),
            "height": pa.array([8] * len(ids), pa.int32()),
            "split": [splits[i] for i in ids],
        }
        columns.pop(drop_column, None)
        add(f"nodes-{index:05d}.parquet", pa.table(columns), "nodes")
    src, dst = zip(*sorted((min(a, b), max(a, b)) for a, b in edges), strict=True)
    edge_table = pa.table(
        {
            "src": pa.array(src, pa.int64()),
            "dst": pa.array(dst, pa.int64()),
            "weight": pa.array([1] * len(src), pa.int32()),
        }
    )
    add("edges.parquet", edge_table, "edges")
    manifest = {
        "format": "slip-shards",
        "format_version": version,
        "counts": {"nodes": n, "edges": len(src)},
        "label_names": COLOURS,
        "files": files,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def write_colour_shards(
    folder: Path, n: int = 192, seed: int = 0, replace: dict[int, bytes | None] | None = None
) -> Path:
    """Products of 8 colours: a noisy image of the colour, a title naming it, co-purchase edges
    mostly within a colour; 3 in 4 nodes in train. Learnable in a few CPU steps. `replace` swaps
    some nodes' image bytes (None: no image)."""
    rng = np.random.default_rng(seed)
    labels = [i % len(COLOURS) for i in range(n)]
    images = []
    for label in labels:
        pixels = np.clip(rng.normal(RGB[label], 40, size=(32, 32, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        images.append(buffer.getvalue())
    for node, data in (replace or {}).items():
        images[node] = data
    titles = [f"{COLOURS[label]} product {i}" for i, label in enumerate(labels)]
    splits = ["train" if i % 4 else "test" for i in range(n)]
    edges = set()
    while len(edges) < 3 * n:
        a, b = (int(x) for x in rng.integers(0, n, 2))
        same = labels[a] == labels[b]
        if a != b and (same or rng.random() < 0.1):
            edges.add((min(a, b), max(a, b)))
    return write_shards(
        folder, n=n, per_shard=64, images=images, titles=titles, labels=labels,
        splits=splits, edges=sorted(edges),
    )  # fmt: skip
