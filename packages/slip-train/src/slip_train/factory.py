"""Builds the model, its image transforms and tokenizer from the `[model]` config, as open_clip's
factory does; slip-train's own JSON model configs (`model_configs/`) are registered with open_clip
so that any name open_clip knows, or one of ours, works the same way."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import open_clip
from torchvision.transforms import Compose, Normalize, ToTensor

from slip_train.config import ModelConfig
from slip_train.model import GraphHead, SlipModel

MODEL_CONFIGS = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIGS)


@dataclass
class Built:
    model: SlipModel
    train_transform: Callable  # PIL in, PIL out: open_clip's crop and resize, run by the workers
    image_mean: tuple[float, ...]  # open_clip's Normalize, done on the device (to_model_images)
    image_std: tuple[float, ...]
    eval_transform: Callable
    tokenizer: Callable
    model_cfg: dict  # the open_clip architecture config, stored in checkpoints and exports
    preprocess_cfg: dict


def build_model(
    config: ModelConfig, with_graph: bool, structural_gradient: str = "encoders"
) -> Built:
    """open_clip model by name (`pretrained`: none, a tag, or a local weights file) and, when
    `with_graph`, a GAT head per modality, whose gradient reaches the encoders unless
    `structural_gradient` is "heads". Errors are one line naming the key."""
    if config.name not in open_clip.list_models():
        raise ValueError(
            f"model.name: open_clip knows no model {config.name!r} "
            f"(see open_clip.list_models() or {MODEL_CONFIGS})"
        )
    pretrained = config.pretrained or None
    try:
        clip, train_transform, eval_transform = open_clip.create_model_and_transforms(
            config.name, pretrained=pretrained, weights_only=True
        )
    except RuntimeError as exc:  # open_clip's message for an unknown tag or a bad file
        raise ValueError(f"model.pretrained: {pretrained!r}: {str(exc).splitlines()[0]}") from None
    pil_steps, normalize = split_train_transform(train_transform)
    model_cfg = open_clip.get_model_config(config.name)
    dim = model_cfg["embed_dim"]
    image_graph = text_graph = None
    if with_graph:
        image_graph, text_graph = (
            GraphHead(
                dim,
                layers=config.gat_layers,
                heads=config.gat_heads,
                fusion=config.fusion,
                dropout=config.gat_dropout,
            )
            for _ in range(2)
        )
    return Built(
        model=SlipModel(
            clip, image_graph, text_graph, detach_graph_input=structural_gradient == "heads"
        ),
        train_transform=pil_steps,
        image_mean=tuple(normalize.mean),
        image_std=tuple(normalize.std),
        eval_transform=eval_transform,
        tokenizer=open_clip.get_tokenizer(config.name),
        model_cfg=model_cfg,
        preprocess_cfg=dict(clip.visual.preprocess_cfg),
    )


def split_train_transform(transform: Callable) -> tuple[Compose, Normalize]:
    """open_clip's train transform cut before its ToTensor: the PIL steps (crop, resize, RGB) stay
    in the DataLoader workers, which then hand over uint8 pixels, and the Normalize is done on the
    device: a quarter of the bytes through shared memory, pinning and the copy to the GPU."""
    steps = list(getattr(transform, "transforms", []))
    if (
        len(steps) < 2
        or not isinstance(steps[-2], ToTensor)
        or not isinstance(steps[-1], Normalize)
    ):
        raise ValueError(
            f"model: open_clip's train transform does not end in ToTensor, Normalize: {transform}"
        )
    return Compose(steps[:-2]), steps[-1]


def param_groups(
    model: SlipModel, *, weight_decay: float, lr: float, graph_head_lr_scale: float = 1.0
) -> list[dict]:
    """Weight decay by shape, as open_clip's rule reads without its name matching (which breaks on
    a renamed layer): none on parameters of at most 1 dimension (norms' gains and biases, biases,
    the gates, the logit scale), decay on matrices and embeddings. The graph heads' groups come
    after the encoders' (so group 0 holds the encoders' lr), at `lr × graph_head_lr_scale`: new
    layers on a pretrained encoder may need to learn faster than it."""
    groups = []
    for part, part_lr in ((model.clip, lr), (model.graph_heads(), lr * graph_head_lr_scale)):
        decay, no_decay = [], []
        for param in part.parameters():
            if param.requires_grad:
                (no_decay if param.ndim <= 1 else decay).append(param)
        groups += [
            {"params": no_decay, "weight_decay": 0.0, "lr": part_lr},
            {"params": decay, "weight_decay": weight_decay, "lr": part_lr},
        ]
    return [group for group in groups if group["params"]]
