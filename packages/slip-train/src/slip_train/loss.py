"""Losses: CLIP's symmetric InfoNCE as open_clip computes it, and SLIP's structural loss.

The structural loss is a multi-positive InfoNCE between the two modalities: for product i, the
positives are its own other-modality embedding and those of its graph neighbours in the batch
(docs/method.md gives the choice and the reason).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# the training loop clamps the learned log scale to [0, ln 100] in place after every optimizer
# step, as open_clip's does: the loss then always has a gradient for it, and the log and the
# export carry the scale the loss used
MAX_LOGIT_SCALE = math.log(100.0)


def clip_loss(
    image: Tensor,
    text: Tensor,
    logit_scale: Tensor,
    *,
    not_negatives: Tensor | None = None,
    weights: Tensor | None = None,
) -> Tensor:
    """Mean of image->text and text->image cross-entropy over the batch (open_clip's ClipLoss).

    `image` and `text` are L2-normalised (n, d); `logit_scale` is the log of the scale.
    `not_negatives`, an (n, n) bool mask, takes pairs out of each other's denominators (the
    diagonal must be False): SLIP's batches gather co-purchases, and where those share the label
    InfoNCE would push a class apart that random batches leave alone. `weights` (n,), when given,
    weigh each anchor's two cross-entropies (the mean becomes the weighted mean): SLIP's batches
    see a product about in proportion to one plus its degree, and weights of one over that make
    every product count alike in expectation, as in CLIP's shuffled batches.
    """
    scale = logit_scale.exp()
    logits = scale * image @ text.T
    if not_negatives is not None:
        logits = logits.masked_fill(not_negatives, float("-inf"))
    labels = torch.arange(image.shape[0], device=image.device)
    if weights is None:
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    each = F.cross_entropy(logits, labels, reduction="none")
    each = each + F.cross_entropy(logits.T, labels, reduction="none")
    return (weights * each).sum() / (2 * weights.sum())


def positive_mask(num_nodes: int, edge_index: Tensor) -> Tensor:
    """(n, n) bool: i with itself and with every in-batch graph neighbour (`edge_index` holds
    both directions)."""
    mask = torch.eye(num_nodes, dtype=torch.bool, device=edge_index.device)
    mask[edge_index[0], edge_index[1]] = True
    return mask


def positive_pairs(
    num_nodes: int, edge_index: Tensor, neighbour_mass: float | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Each anchor's positives as (anchor, other, target) rows, the targets of an anchor summing
    to 1: its own pair, and each in-batch neighbour (`edge_index` as graph_head.neighbour_edges
    makes it: each pair both ways once, no self loop). The (n, n) target matrix in sparse form, as
    a batch of 32,768 would need 8.6 GB for it dense. Only ops of fixed shape, so that the step
    never waits for the GPU: finding the distinct pairs is the loader's (data.py).

    `neighbour_mass` None: every positive (itself and each neighbour) counts equally, so the
    neighbours' share grows with the degree. A number m: the anchor's own pair keeps 1 - m and its
    neighbours share m, whatever the degree, which bounds how far unrelated neighbours can pull
    (a product without a neighbour in the batch keeps 1 on its own pair).
    """
    anchor, other = edge_index
    degree = torch.zeros(num_nodes, dtype=torch.float64, device=edge_index.device).index_add_(
        0, anchor, torch.ones_like(anchor, dtype=torch.float64)
    )
    if neighbour_mass is None:
        own_target = 1 / (degree + 1)
        neighbour_target = own_target[anchor]
    else:
        own_target = 1 - neighbour_mass * (degree > 0).double()
        neighbour_target = neighbour_mass / degree[anchor]
    own = torch.arange(num_nodes, device=edge_index.device)
    return (
        torch.cat([own, anchor]),
        torch.cat([own, other]),
        torch.cat([own_target, neighbour_target]),
    )


def structural_loss(
    image: Tensor,
    text: Tensor,
    edge_index: Tensor,
    *,
    temperature: float,
    neighbour_mass: float | None = None,
) -> Tensor:
    """Multi-positive InfoNCE, both directions: the cross-entropy between each anchor's
    similarities and its targets (`positive_pairs`); with equal targets it is supervised
    contrastive learning's log-probability averaged over the positives. Only the similarity
    matrix is (n, n): the targets and their log-probabilities are one number per positive."""
    n = image.shape[0]
    anchor, other, target = positive_pairs(n, edge_index, neighbour_mass)
    target = target.to(image.dtype)
    logits = image @ text.T / temperature
    # an image anchor i against the texts: logits[i, j]; a text anchor j against the images:
    # logits[i, j] too, normalised over the column. index_select, whose backward is a scatter-add,
    # rather than advanced indexing, whose backward sorts the indices
    flat, rows, columns = logits.flatten(), logits.logsumexp(dim=1), logits.logsumexp(dim=0)
    image_anchors = flat.index_select(0, anchor * n + other) - rows.index_select(0, anchor)
    text_anchors = flat.index_select(0, other * n + anchor) - columns.index_select(0, anchor)
    return -(target * (image_anchors + text_anchors)).sum() / (2 * n)


def training_loss(
    out: dict[str, Tensor],
    edge_index: Tensor,
    logit_scale: Tensor,
    *,
    structural_weight: float,
    structural_temperature: float,
    neighbour_mass: float | None = None,
    neighbours_as_negatives: bool = True,
    anchor_weights: Tensor | None = None,
) -> dict[str, Tensor]:
    """CLIP's loss on the encoders' embeddings, plus (when the model has graph heads) the weighted
    structural loss on the graph-refined ones; `loss` is what is minimised. `edge_index` is the
    batch's graph as graph_head.neighbour_edges makes it. Without `neighbours_as_negatives`,
    CLIP's loss leaves each product's in-batch neighbours out of its negatives. `anchor_weights`
    (n,), the batch's (PlannedBatch.anchor_weights), weigh CLIP's loss per anchor."""
    not_negatives = None
    if not neighbours_as_negatives:
        n = out["image"].shape[0]
        own = torch.eye(n, dtype=torch.bool, device=edge_index.device)
        not_negatives = positive_mask(n, edge_index) & ~own
    losses = {
        "clip_loss": clip_loss(
            out["image"],
            out["text"],
            logit_scale,
            not_negatives=not_negatives,
            weights=anchor_weights,
        )
    }
    losses["loss"] = losses["clip_loss"]
    if "image_graph" in out:
        losses["structural_loss"] = structural_loss(
            out["image_graph"],
            out["text_graph"],
            edge_index,
            temperature=structural_temperature,
            neighbour_mass=neighbour_mass,
        )
        losses["loss"] = losses["loss"] + structural_weight * losses["structural_loss"]
    return losses
