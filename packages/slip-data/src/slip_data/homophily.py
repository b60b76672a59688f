"""Label homophily of the co-purchase graph: how often neighbours share the label.

SLIP takes co-purchase neighbours as positives, so whether edges follow the label, and how far
above chance, tells a user whether those positives carry label information on their data. The
definitions are those of docs/shard-format.md (`homophily` in the manifest).
"""

import numpy as np


def label_homophily(labels: np.ndarray, src: np.ndarray, dst: np.ndarray) -> dict:
    """Edge, class-insensitive and adjusted homophily and the chance levels, for node labels
    0..C-1 (`labels[node]`) and undirected edges listed once each (`src`, `dst`).

    Counts per class only (np.bincount), so memory stays linear in the edges. A measure that is
    undefined (no edges; one class) is None.
    """
    counts = np.bincount(labels)  # nodes per class
    num_classes = counts.size
    src_label, dst_label = labels[src], labels[dst]
    same = src_label == dst_label
    # an edge adds one to the degree of each end: degree sums per class, and their same-label part
    degrees = np.bincount(src_label, minlength=num_classes) + np.bincount(
        dst_label, minlength=num_classes
    )
    same_degrees = 2 * np.bincount(src_label[same], minlength=num_classes)
    node_share_chance = float(np.sum((counts / labels.size) ** 2)) if labels.size else None
    if src.size == 0:
        return {
            "edge": None,
            "class_insensitive": None,
            "adjusted": None,
            "chance": None,
            "node_share_chance": node_share_chance,
        }
    edge = float(same.sum() / src.size)
    chance = float(np.sum((degrees / degrees.sum()) ** 2))
    class_edge = np.divide(
        same_degrees, degrees, out=np.zeros(num_classes), where=degrees > 0
    )  # h_k: 0 for a class without edges, as in PyG
    excess = np.maximum(class_edge - counts / labels.size, 0.0).sum()
    return {
        "edge": edge,
        "class_insensitive": float(excess / (num_classes - 1)) if num_classes > 1 else None,
        "adjusted": (edge - chance) / (1 - chance) if chance < 1 else None,
        "chance": chance,
        "node_share_chance": node_share_chance,
    }
