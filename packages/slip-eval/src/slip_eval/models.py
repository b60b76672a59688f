"""Models to evaluate, read by their documented formats only (docs/checkpoint-format.md): a
slip-train checkpoint, its open_clip export folder, or any open_clip model by name and pretrained
tag or file. slip-eval never imports slip-train."""

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import open_clip
from torch import nn

from slip_eval.checkpoint_contract import GRAPH_HEADS, read_checkpoint
from slip_eval.graph_head import GraphHead
from slip_eval.shard_contract import file_sha256

# the keys of docs/checkpoint-format.md this reader uses (and, in slip mode, the graph heads')
CHECKPOINT_KEYS = ("mode", "model_name", "model_cfg", "preprocess_cfg", "clip_state_dict")


class ModelError(ValueError):
    """A model that cannot be loaded; one line."""


@dataclass(kw_only=True)
class LoadedModel:
    clip: nn.Module
    transform: Callable  # open_clip's eval transform: PIL image -> tensor
    tokenizer: Callable
    name: str  # CLIP_benchmark's "model"
    pretrained: str  # CLIP_benchmark's "pretrained": the checkpoint path or the tag
    fingerprint: str  # changes whenever the weights do: the embedding cache key
    graph_heads: tuple[GraphHead, GraphHead] | None  # (image, text), slip checkpoints only


def _quietly(build: Callable):
    """open_clip logs a warning when it builds without weights; ours are loaded right after."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return build()
    finally:
        logger.setLevel(level)


def _from_checkpoint(path: Path) -> LoadedModel:
    state = read_checkpoint(path, needs=CHECKPOINT_KEYS, error=ModelError)
    with tempfile.TemporaryDirectory() as folder:
        config = {"model_cfg": state["model_cfg"], "preprocess_cfg": state["preprocess_cfg"]}
        (Path(folder) / "open_clip_config.json").write_text(json.dumps(config))
        clip, _, transform = _quietly(
            lambda: open_clip.create_model_and_transforms(f"local-dir:{folder}", load_weights=False)
        )
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    try:
        clip.load_state_dict(state["clip_state_dict"])
    except RuntimeError as exc:  # torch lists every missing, unexpected or misfit key
        detail = " ".join(str(exc).split("\n", 1)[-1].split())
        raise ModelError(
            f"{path}: clip_state_dict does not fit model_cfg: {detail[:300]}"
        ) from None
    heads = None
    if state["mode"] == "slip":
        try:
            heads = tuple(
                GraphHead.from_state(state["graph_head"], state["graph_state_dict"][name])
                for name in GRAPH_HEADS
            )
        except ValueError as exc:
            raise ModelError(f"{path}: {exc} (docs/checkpoint-format.md)") from None
    return LoadedModel(
        clip=clip.eval(),
        transform=transform,
        tokenizer=tokenizer,
        name=state["model_name"],
        pretrained=str(path),
        fingerprint=file_sha256(path),
        graph_heads=heads,
    )


def _from_export(folder: Path) -> LoadedModel:
    try:
        clip, _, transform = open_clip.create_model_and_transforms(f"local-dir:{folder}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        raise ModelError(
            f"{folder}: not an open_clip export ({str(exc).splitlines()[0]})"
        ) from None
    name = json.loads((folder / "open_clip_config.json").read_text()).get("model_name", folder.name)
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".safetensors"))
    fingerprint = hashlib.sha256("".join(file_sha256(p) for p in weights).encode()).hexdigest()
    return LoadedModel(
        clip=clip.eval(),
        transform=transform,
        tokenizer=tokenizer,
        name=name,
        pretrained=str(folder),
        fingerprint=fingerprint,
        graph_heads=None,
    )


def _from_open_clip(name: str, pretrained: str) -> LoadedModel:
    if name not in open_clip.list_models():
        raise ModelError(f"--model: open_clip knows no model {name!r} (open_clip.list_models())")
    try:
        clip, _, transform = open_clip.create_model_and_transforms(
            name, pretrained=pretrained or None, weights_only=True
        )
    except RuntimeError as exc:  # open_clip's message for an unknown tag, a bad file, no network
        raise ModelError(f"--pretrained {pretrained!r}: {str(exc).splitlines()[0]}") from None
    source = Path(pretrained)
    fingerprint = f"{name}:{file_sha256(source) if source.is_file() else pretrained}"
    return LoadedModel(
        clip=clip.eval(),
        transform=transform,
        tokenizer=open_clip.get_tokenizer(name),
        name=name,
        pretrained=pretrained,
        fingerprint=hashlib.sha256(fingerprint.encode()).hexdigest(),
        graph_heads=None,
    )


def load_model(
    ckpt: str | None, model: str | None, pretrained: str | None, *, model_config: Path | None = None
) -> LoadedModel:
    """`ckpt` (a slip-train checkpoint file or an open_clip export folder), or `model` with an
    optional `pretrained` tag or file; `model_config` (a JSON file or a folder of them) registers
    architectures open_clip does not ship, as `open_clip.add_model_config` does."""
    if model_config is not None:
        if not model_config.exists():
            raise ModelError(f"--model-config {model_config}: no such file or folder")
        open_clip.add_model_config(model_config)
    if ckpt:
        path = Path(ckpt)
        if path.is_dir():
            if not (path / "open_clip_config.json").is_file():
                raise ModelError(f"{path}: a folder without open_clip_config.json is no export")
            return _from_export(path)
        return _from_checkpoint(path)
    if model:
        return _from_open_clip(model, pretrained or "")
    raise ModelError("give --ckpt (a checkpoint or export) or --model (an open_clip name)")
