"""SLIP's model: an open_clip CLIP dual encoder plus one graph head per modality.

A graph head (graph_head.py) refines each embedding with those of its in-batch co-purchase
neighbours through PyG's GATConv layers. With `gated_residual` fusion every layer adds its output
through a learned tanh gate that starts at 0, so a fresh head returns the encoder's embedding
unchanged and the run starts as plain CLIP (docs/method.md).
"""

import torch.nn.functional as F
from torch import Tensor, nn

from slip_train.distributed import gather_rows
from slip_train.graph_head import GraphHead


class SlipModel(nn.Module):
    """`clip` is a plain open_clip model (exported as is); `image_graph` and `text_graph` are
    None in `clip` mode, so the baseline runs through the same code without a graph head. With
    `detach_graph_input` the heads see the encoders' embeddings without their gradient, so the
    structural loss trains the heads alone and the encoders learn from CLIP's loss only."""

    def __init__(
        self,
        clip: nn.Module,
        image_graph: GraphHead | None,
        text_graph: GraphHead | None,
        *,
        detach_graph_input: bool = False,
    ) -> None:
        super().__init__()
        self.clip = clip
        self.image_graph = image_graph
        self.text_graph = text_graph
        self.detach_graph_input = detach_graph_input

    def graph_heads(self) -> nn.ModuleList:
        """The heads present (none in `clip` mode): the parameters SLIP adds to CLIP."""
        return nn.ModuleList(h for h in (self.image_graph, self.text_graph) if h is not None)

    @property
    def logit_scale(self) -> Tensor:
        return self.clip.logit_scale

    def forward(self, images: Tensor, tokens: Tensor, edge_index: Tensor) -> dict[str, Tensor]:
        """Normalised encoder embeddings, and (with a graph head) graph-refined ones over
        `edge_index`, the batch's graph as graph_head.neighbour_edges makes it. Under torchrun
        `images` and `tokens` are this rank's share of the batch, `edge_index` and the outputs
        are the global batch's (slip_train.distributed)."""
        image = gather_rows(self.clip.encode_image(images))
        text = gather_rows(self.clip.encode_text(tokens))
        return self.embed(image, text, edge_index)

    def embed(self, image: Tensor, text: Tensor, edge_index: Tensor) -> dict[str, Tensor]:
        """The forward pass past the encoders, on the global batch's encoder outputs: what
        gradient caching (grad_cache.py) runs once over a batch the encoders see in chunks."""
        out = {"image": F.normalize(image, dim=-1), "text": F.normalize(text, dim=-1)}
        if self.image_graph is not None and self.text_graph is not None:
            if self.detach_graph_input:
                image, text = image.detach(), text.detach()
            out["image_graph"] = F.normalize(self.image_graph(image, edge_index), dim=-1)
            out["text_graph"] = F.normalize(self.text_graph(text, edge_index), dim=-1)
        return out
