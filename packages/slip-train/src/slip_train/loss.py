"""Losses: CLIP's symmetric InfoNCE as open_clip computes it, and SLIP's structural loss.

The structural loss is a multi-positive InfoNCE between the two modalities: for product i, the
positives are its own other-modality embedding and those of its graph neighbours in the batch
(docs/method.md gives the choice and the reason).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_LOGIT_SCALE = math.log(100.0)  # open_clip clamps the learned log scale here


def clip_loss(image: Tensor, text: Tensor, logit_scale: Tensor) -> Tensor:
    """Mean of image->text and text->image cross-entropy over the batch (open_clip's ClipLoss).

    `image` and `text` are L2-normalised (n, d); `logit_scale` is the log of the scale, clamped
    to [0, ln 100] as open_clip does.
    """
    scale = logit_scale.clamp(0, MAX_LOGIT_SCALE).exp()
    logits = scale * image @ text.T
    labels = torch.arange(image.shape[0], device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def positive_mask(num_nodes: int, edge_index: Tensor) -> Tensor:
    """(n, n) bool: i with itself and with every in-batch graph neighbour, both directions."""
    mask = torch.eye(num_nodes, dtype=torch.bool, device=edge_index.device)
    mask[edge_index[0], edge_index[1]] = True
    mask[edge_index[1], edge_index[0]] = True
    return mask


def structural_loss(image: Tensor, text: Tensor, edge_index: Tensor, temperature: float) -> Tensor:
    """Multi-positive InfoNCE, both directions: each anchor's log-probability averaged over its
    positives (itself and its neighbours), as in supervised contrastive learning."""
    positives = positive_mask(image.shape[0], edge_index)
    logits = image @ text.T / temperature
    per_direction = []
    for scores in (logits, logits.T):
        log_prob = scores.log_softmax(dim=1)
        mean_positive = (log_prob * positives).sum(1) / positives.sum(1)
        per_direction.append(-mean_positive.mean())
    return (per_direction[0] + per_direction[1]) / 2


def training_loss(
    out: dict[str, Tensor],
    edge_index: Tensor,
    logit_scale: Tensor,
    structural_weight: float,
    structural_temperature: float,
) -> dict[str, Tensor]:
    """CLIP's loss on the encoders' embeddings, plus (when the model has graph heads) the weighted
    structural loss on the graph-refined ones; `loss` is what is minimised."""
    losses = {"clip_loss": clip_loss(out["image"], out["text"], logit_scale)}
    losses["loss"] = losses["clip_loss"]
    if "image_graph" in out:
        losses["structural_loss"] = structural_loss(
            out["image_graph"], out["text_graph"], edge_index, structural_temperature
        )
        losses["loss"] = losses["loss"] + structural_weight * losses["structural_loss"]
    return losses
