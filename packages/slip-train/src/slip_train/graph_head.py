"""SLIP's graph head, as docs/checkpoint-format.md describes it: slip-train trains one per modality
and saves its `graph_head` spec and state dict; slip-eval rebuilds it from them (`from_state`) for
structure-aware inference.

The same file is in slip_train and slip_eval (one behaviour, no import between the packages;
tests/test_shared_modules.py keeps the copies equal, tests/test_graph_head.py loads a trained
head's state into slip-eval and compares the outputs).
"""

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

with warnings.catch_warnings():  # PyG scripts a helper at import; torch now warns on that
    warnings.filterwarnings("ignore", r".*torch\.jit\.script.*deprecated", FutureWarning)
    from torch_geometric.nn import GATConv
    from torch_geometric.utils import to_undirected

SPEC_KEYS = ("dim", "layers", "heads", "fusion")  # a checkpoint's `graph_head`


def neighbour_edges(edge_index: Tensor) -> Tensor:
    """The graph as the heads and the structural loss take it: each pair of distinct nodes in
    both directions once, sorted by (source, target), no self loop (a head adds every node's own).
    The shards store a pair once, a head sees both ways. The sort, the deduplication and the mask
    have sizes only the data knows, so on a GPU each waits for it: slip-train makes these on the
    CPU, in its loader's workers."""
    edges = to_undirected(edge_index)
    return edges[:, edges[0] != edges[1]]


class GraphHead(nn.Module):
    """LayerNorm then GATConv per layer over one modality's (n, dim) embeddings. With
    `gated_residual` fusion each layer adds its output through a tanh gate that starts at 0, so a
    fresh head returns its input; with `replace` the last layer's output is the embedding."""

    def __init__(
        self, dim: int, *, layers: int, heads: int, fusion: str, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model.gat_heads: {heads} does not divide the embedding size {dim}")
        self.fusion = fusion
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.convs = nn.ModuleList(
            GATConv(dim, dim // heads, heads=heads, dropout=dropout, add_self_loops=False)
            for _ in range(layers)
        )
        self.gates = nn.Parameter(torch.zeros(layers)) if fusion == "gated_residual" else None

    @classmethod
    def from_state(cls, spec: dict, state: dict[str, Tensor]) -> "GraphHead":
        """The head of a checkpoint's `graph_head` spec and state dict, in eval mode; ValueError
        (one line, naming the key) if either lacks what the format promises."""
        missing = [key for key in SPEC_KEYS if key not in spec]
        if missing:
            raise ValueError(f"missing key 'graph_head.{missing[0]}'")
        head = cls(spec["dim"], layers=spec["layers"], heads=spec["heads"], fusion=spec["fusion"])
        try:
            head.load_state_dict(state)
        except RuntimeError as exc:  # torch lists every missing, unexpected or misfit key
            detail = " ".join(str(exc).split("\n", 1)[-1].split())
            raise ValueError(f"graph head weights do not fit graph_head: {detail[:300]}") from None
        return head.eval()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """`edge_index` as `neighbour_edges` makes it. Each node's self loop is appended here, as
        GATConv's own `add_self_loops` would, without its data-dependent mask."""
        loops = torch.arange(x.shape[0], device=x.device).repeat(2, 1)
        edge_index = torch.cat([edge_index, loops], dim=1)
        h = x
        for layer, (norm, conv) in enumerate(zip(self.norms, self.convs, strict=True)):
            out = conv(norm(h), edge_index)
            if self.gates is not None:
                h = h + torch.tanh(self.gates[layer]) * out
            else:
                h = out if layer == len(self.convs) - 1 else F.elu(out)
        return h
