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


SPEC_KEYS = ("dim", "layers", "heads", "fusion")  # a checkpoint's `graph_head`


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
        """The head of a checkpoint's `graph_head` spec and state dict; ValueError (one line,
        naming the key) if either lacks what the format promises."""
        missing = [key for key in SPEC_KEYS if key not in spec]
        if missing:
            raise ValueError(f"missing key 'graph_head.{missing[0]}'")
        head = cls(spec["dim"], spec["layers"], spec["heads"], spec["fusion"])
        try:
            head.load_state_dict(state)
        except RuntimeError as exc:  # torch lists every missing, unexpected or misfit key
            detail = " ".join(str(exc).split("\n", 1)[-1].split())
            raise ValueError(f"graph head weights do not fit graph_head: {detail[:300]}") from None
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
