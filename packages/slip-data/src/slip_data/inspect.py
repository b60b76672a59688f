"""`slip-data inspect`: the summary of a shard folder, from its manifest and edges."""

import json
from collections import Counter
from pathlib import Path

import networkx as nx
import numpy as np
import polars as pl

from slip_data.homophily import label_homophily
from slip_data.shard_contract import read_manifest

DEGREE_QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
MAX_EXAMPLES = 3  # `file:line` examples shown per skip reason


NETWORKX_MAX_EDGES = 2_000_000


def component_sizes(n_nodes: int, src: np.ndarray, dst: np.ndarray) -> list[int]:
    """Sizes of the connected components, largest first.

    networkx where the graph fits it; above NETWORKX_MAX_EDGES, min-label propagation with
    pointer jumping on numpy arrays (a few passes over the edges, memory linear in them).
    """
    if src.size <= NETWORKX_MAX_EDGES:
        graph = nx.Graph()
        graph.add_nodes_from(range(n_nodes))
        graph.add_edges_from(zip(src.tolist(), dst.tolist(), strict=True))
        return sorted((len(c) for c in nx.connected_components(graph)), reverse=True)
    label = np.arange(n_nodes)
    while True:
        low = np.minimum(label[src], label[dst])
        before = label.copy()
        np.minimum.at(label, src, low)
        np.minimum.at(label, dst, low)
        while not np.array_equal(label, label[label]):
            label = label[label]
        if np.array_equal(label, before):
            break
    return sorted(np.bincount(label)[np.unique(label)].tolist(), reverse=True)


def raw_line_skips(report_path: Path) -> dict | None:
    """The raw files' lines read, kept and skipped by reason over every file, with the first
    few `file:line` examples per reason, from the build's report.json (None without one)."""
    try:
        files = json.loads(report_path.read_text())["raw_files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    skipped: Counter = Counter()
    examples: dict[str, list[str]] = {}
    for report in files.values():
        skipped.update(report["skipped"])
        for reason, where in report["examples"].items():
            examples.setdefault(reason, []).extend(where)
    return {
        "lines": sum(report["lines"] for report in files.values()),
        "kept": sum(report["kept"] for report in files.values()),
        "skipped": dict(skipped.most_common()),
        "examples": {reason: examples[reason][:MAX_EXAMPLES] for reason in skipped},
    }


def node_labels(folder: Path, manifest: dict) -> np.ndarray:
    """Every node's `label_id`, in `node_id` order (the node files' order): the one column read."""
    node_files = [folder / f["path"] for f in manifest["files"] if f["kind"] == "nodes"]
    return pl.read_parquet(node_files, columns=["label_id"])["label_id"].to_numpy()


def summarize(shards_dir) -> dict:
    """Counts, degree quantiles, connected components, label homophily, label, split and crawl
    status counts, and the raw lines skipped by reason when the build folder's report.json is
    there."""
    folder, manifest = read_manifest(Path(shards_dir))
    n_nodes = manifest["counts"]["nodes"]
    edges = pl.read_parquet(folder / "edges.parquet")
    src, dst = edges["src"].to_numpy(), edges["dst"].to_numpy()
    degree = np.bincount(src, minlength=n_nodes) + np.bincount(dst, minlength=n_nodes)
    components = component_sizes(n_nodes, src, dst)
    labels = pl.read_parquet(folder / "labels.parquet")
    homophily = manifest.get("homophily")  # shards written before it are measured here
    if homophily is None:
        homophily = label_homophily(node_labels(folder, manifest), src, dst)
    return {
        "shards": str(folder),
        "format_version": manifest["format_version"],
        "created": manifest["created"],
        "source": manifest["build"]["source"]["name"],
        "categories": len(manifest["categories"]),
        "nodes": n_nodes,
        "edges": edges.height,
        "mean_degree": float(degree.mean()) if n_nodes else 0.0,
        "degree_quantiles": {
            f"p{round(q * 100)}": float(np.quantile(degree, q)) if n_nodes else 0.0
            for q in DEGREE_QUANTILES
        },
        "isolated_nodes": int((degree == 0).sum()),
        "isolated_share": float((degree == 0).mean()) if n_nodes else 0.0,
        "connected_components": len(components),
        "largest_component": components[0] if components else 0,
        "homophily": homophily,
        "labels": dict(zip(labels["label"], labels["count"], strict=True)),
        "splits": manifest["split_sizes"],
        "crawl_status": manifest["crawl_status"],
        "files": len(manifest["files"]),
        "raw_lines": raw_line_skips(folder.parent / "report.json"),
    }
