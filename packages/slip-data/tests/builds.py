"""Comparing build folders: what a build delivers, byte for byte."""

import json
from pathlib import Path


def shard_bytes(out: Path) -> dict[str, bytes]:
    """Every shard file's bytes, and the manifest without its created time."""
    files = {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.parquet"))}
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    manifest.pop("created")
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files
