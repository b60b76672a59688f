"""Contrastive batches larger than the encoders' activations fit: gradient caching (GradCache,
Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").

The encoders run over the batch in chunks of `optim.grad_cache_rows` rows without keeping a graph.
The graph heads and both losses then run once on the whole batch's embeddings, which alone carry
a gradient; that gradient, cached, is pushed back through the encoders chunk by chunk, each chunk
encoded again with the random state of its first pass. The gradients are those of one pass over
the whole batch, to float rounding, for a second forward of the encoders: the encoders' memory
follows the chunk, not the batch. open_clip's `accum_freq` caches features too, but computes the
loss once per chunk.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import Tensor

from slip_train.distributed import gather_rows, own_rows
from slip_train.model import SlipModel


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextmanager
def _replayed(state: tuple[Tensor, Tensor | None], device: torch.device) -> Iterator[None]:
    """Random numbers drawn as they were from `state` (dropout of the first pass), leaving the
    run's own stream where it was."""
    cpu, cuda = state
    with torch.random.fork_rng(devices=[device] if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        yield


def cached_backward(
    model: SlipModel,
    batch: tuple[Tensor, Tensor, Tensor],
    *,
    rows: int,
    loss: Callable[..., dict[str, Tensor]],
    autocast: AbstractContextManager,
    scale: float,
    world: int,
) -> dict[str, Tensor]:
    """Forward and backward of one contrastive batch (images, tokens, edge_index: this rank's
    share of the images and tokens, the global batch's edges) with the encoders `rows` rows at a
    time; the gradients of `loss` × `scale` are added to the parameters' `.grad` and the losses
    returned. Under torchrun each rank adds its own rows' share (the caller averages the ranks'
    gradients, distributed.average_gradients)."""
    images, tokens, edge_index = batch
    device = images.device
    chunks = [slice(start, start + rows) for start in range(0, images.shape[0], rows)]
    states, encoded = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state(device))
            with autocast:
                encoded.append(
                    (model.clip.encode_image(images[chunk]), model.clip.encode_text(tokens[chunk]))
                )
    image, text = (
        gather_rows(torch.cat(parts)).requires_grad_() for parts in zip(*encoded, strict=True)
    )
    del encoded
    with autocast:
        out = model.embed(image, text, edge_index)
    losses = loss({k: v.float() for k, v in out.items()}, edge_index, model.logit_scale)
    (losses["loss"] * scale).backward()  # the heads' and the logit scale's gradients, and the cache
    # each rank's loss is the same global one: its rows' gradient counts once per rank, as the
    # backward of gather_rows sums it, and the ranks' average then gives the global batch's
    cached_image, cached_text = (
        own_rows(leaf.grad, images.shape[0]) * world for leaf in (image, text)
    )
    for chunk, state in zip(chunks, states, strict=True):
        with _replayed(state, device), autocast:
            again = (model.clip.encode_image(images[chunk]), model.clip.encode_text(tokens[chunk]))
        torch.autograd.backward(again, (cached_image[chunk], cached_text[chunk]))
    return {name: value.detach() for name, value in losses.items()}
