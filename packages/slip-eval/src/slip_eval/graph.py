"""The graph heads of a slip checkpoint, rebuilt from docs/checkpoint-format.md (slip-eval does not
import slip-train), for structure-aware inference: each embedding refined by its neighbours."""

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

with warnings.catch_warnings():  # PyG scripts a helper at import; torch now warns on that
    warnings.filterwarnings("ignore", r".*torch\.jit\.script.*deprecated", FutureWarning)
    from torch_geometric.nn import GATConv
    from torch_geometric.utils import to_undirected


class GraphHead(nn.Module):
    """LayerNorm then GATConv per layer, joined by a tanh-gated residual or replacing (the
    checkpoint format's pseudo-code)."""

    def __init__(self, dim: int, layers: int, heads: int, fusion: str) -> None:
        super().__init__()
        self.fusion = fusion
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.convs = nn.ModuleList(GATConv(dim, dim // heads, heads=heads) for _ in range(layers))
        self.gates = nn.Parameter(torch.zeros(layers)) if fusion == "gated_residual" else None

    @classmethod
    def from_state(cls, spec: dict, state: dict[str, Tensor]) -> "GraphHead":
        head = cls(spec["dim"], spec["layers"], spec["heads"], spec["fusion"])
        head.load_state_dict(state)
        return head.eval()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        h = x
        for layer, (norm, conv) in enumerate(zip(self.norms, self.convs, strict=True)):
            out = conv(norm(h), edge_index)
            if self.gates is not None:
                h = h + torch.tanh(self.gates[layer]) * out
            else:
                h = out if layer == len(self.convs) - 1 else F.elu(out)
        return h


@torch.no_grad()
def refine(head: GraphHead, raw: Tensor, edge_index: Tensor) -> Tensor:
    """Normalised embeddings of `raw` (the encoder's unnormalised output) after the head, over
    the graph made undirected."""
    undirected = to_undirected(edge_index, num_nodes=raw.shape[0])
    return F.normalize(head(raw, undirected), dim=-1)
