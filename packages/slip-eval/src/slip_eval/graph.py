"""Structure-aware inference: each embedding refined by its neighbours through a slip checkpoint's
graph heads (graph_head.py, rebuilt from docs/checkpoint-format.md; slip-eval does not import
slip-train)."""

import torch
import torch.nn.functional as F
from torch import Tensor

from slip_eval.graph_head import GraphHead, neighbour_edges


@torch.no_grad()
def refine(head: GraphHead, raw: Tensor, edge_index: Tensor) -> Tensor:
    """Normalised embeddings of `raw` (the encoder's unnormalised output) after the head, over
    the graph made undirected, as slip-train's loader prepares a batch's."""
    return F.normalize(head(raw, neighbour_edges(edge_index)), dim=-1)
