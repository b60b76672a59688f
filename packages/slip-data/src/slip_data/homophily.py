"""Label homophily of the co-purchase graph: how often neighbours share the label.

SLIP takes co-purchase neighbours as positives, so whether edges follow the label, and how far
above chance, tells a user whether those positives carry label information on their data. The
definitions are those of docs/shard-format.md (`homophily` in the manifest).
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EdgeLabelCounts:
    """What the measures need of the edges, added one batch at a time: a writer that streams
    billions of edges keeps per-class counts, never the edges' ends."""

    labels: np.ndarray  # node labels 0..C-1
    edges: int = 0
    same: int = 0
    # an edge adds one to the degree of each end: degree sums per class, and their same-label part
    degrees: np.ndarray = field(init=False)
    same_degrees: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        num_classes = int(self.labels.max()) + 1 if self.labels.size else 0
        self.degrees = np.zeros(num_classes, dtype=np.int64)
        self.same_degrees = np.zeros(num_classes, dtype=np.int64)

    def add(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Count undirected edges listed once each."""
        src_label, dst_label = self.labels[src], self.labels[dst]
        same = src_label == dst_label
        num_classes = self.degrees.size
        self.degrees += np.bincount(src_label, minlength=num_classes)
        self.degrees += np.bincount(dst_label, minlength=num_classes)
        self.same_degrees += 2 * np.bincount(src_label[same], minlength=num_classes)
        self.edges += src.size
        self.same += int(same.sum())

    def homophily(self) -> dict:
        """Edge, class-insensitive and adjusted homophily and the chance levels. A measure that
        is undefined (no edges; one class) is None."""
        labels = self.labels
        counts = np.bincount(labels)  # nodes per class
        num_classes = counts.size
        node_share_chance = float(np.sum((counts / labels.size) ** 2)) if labels.size else None
        if self.edges == 0:
            return {
                "edge": None,
                "class_insensitive": None,
                "adjusted": None,
                "chance": None,
                "node_share_chance": node_share_chance,
            }
        degrees = self.degrees
        edge = self.same / self.edges
        chance = float(np.sum((degrees / degrees.sum()) ** 2))
        class_edge = np.divide(
            self.same_degrees, degrees, out=np.zeros(num_classes), where=degrees > 0
        )  # h_k: 0 for a class without edges, as in PyG
        excess = np.maximum(class_edge - counts / labels.size, 0.0).sum()
        return {
            "edge": edge,
            "class_insensitive": float(excess / (num_classes - 1)) if num_classes > 1 else None,
            "adjusted": (edge - chance) / (1 - chance) if chance < 1 else None,
            "chance": chance,
            "node_share_chance": node_share_chance,
        }


def label_homophily(labels: np.ndarray, src: np.ndarray, dst: np.ndarray) -> dict:
    """The measures for node labels 0..C-1 (`labels[node]`) and undirected edges listed once
    each (`src`, `dst`)."""
    counts = EdgeLabelCounts(labels)
    counts.add(src, dst)
    return counts.homophily()
