"""Training config: TOML parsed into typed dataclasses, with `--set a.b=value` overrides.

Every key is documented with its default in docs/config.md. An unknown key, a wrong type or a bad
value is a ConfigError whose one-line message names the key path.
"""

import dataclasses
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path."""


@dataclass
class DataConfig:
    shards: str = "out/demo/shards"  # a slip-data build folder or its shards/ folder
    split: str = "train"
    num_workers: int = 2  # DataLoader worker processes that decode and augment images
    pin_memory: bool = True
    cache_dir: str = "out/cache"  # the memory-mapped node cache, one subfolder per shard set


@dataclass
class SamplerConfig:
    batch_size: int = 128  # nodes per batch in both modes: seeds, neighbours, random fill
    fanouts: list[int] = field(default_factory=lambda: [3])
    edges: str = "induced"  # induced (every edge among batch nodes) or sampled
    device: str = "cpu"  # cpu (numba kernels), or cuda: the training graph sampled on the GPU


@dataclass
class ModelConfig:
    name: str = "slip-tiny"  # an open_clip model name or a config in slip_train/model_configs
    pretrained: str = ""  # "", an open_clip tag such as "openai", or a local file
    gat_layers: int = 1
    gat_heads: int = 4
    fusion: str = "gated_residual"  # gated_residual or replace
    gat_dropout: float = 0.0


@dataclass
class LossConfig:
    mode: str = "slip"  # slip, or clip: the baseline through the same code, without structure
    structural_weight: float = 0.5
    structural_temperature: float = 0.07
    positives: str = "equal"  # equal (each neighbour counts as much as the own pair) or soft
    neighbour_mass: float = 0.5  # soft: the neighbours' share of each anchor's target, in [0, 1]
    structural_gradient: str = "encoders"  # encoders (through the heads) or heads (heads only)


@dataclass
class OptimConfig:
    lr: float = 5e-4
    weight_decay: float = 0.2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: int = 50
    grad_clip: float = 1.0
    grad_accum: int = 1
    graph_head_lr_scale: float = 1.0  # the graph heads' learning rate, as a multiple of lr


@dataclass
class TrainConfig:
    steps: int = 500
    seed: int = 0
    device: str = "auto"  # auto (CUDA when present), cuda or cpu
    precision: str = "fp32"  # fp32 or bf16 (autocast, CUDA only)
    compile: bool = False
    grad_checkpointing: bool = False
    out_dir: str = "out/train"
    log_every: int = 1
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    tensorboard: bool = False


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "loss.mode": ("slip", "clip"),
    "loss.positives": ("equal", "soft"),
    "loss.structural_gradient": ("encoders", "heads"),
    "model.fusion": ("gated_residual", "replace"),
    "train.device": ("auto", "cuda", "cpu"),
    "train.precision": ("fp32", "bf16"),
    "data.split": ("train", "val", "test"),
    "sampler.edges": ("induced", "sampled"),
    "sampler.device": ("cpu", "cuda"),
}
POSITIVE = {
    "sampler.batch_size", "model.gat_layers", "model.gat_heads",
    "optim.lr", "optim.grad_accum", "train.steps", "train.log_every", "train.checkpoint_every",
    "train.keep_checkpoints", "loss.structural_temperature", "optim.grad_clip", "optim.eps",
    "optim.graph_head_lr_scale",
}  # fmt: skip
NON_NEGATIVE = {
    "data.num_workers", "optim.warmup_steps", "optim.weight_decay", "loss.structural_weight",
}  # fmt: skip


def _check_type(path: str, value: Any, annotation: Any) -> Any:
    """The value as the annotation's type, or a ConfigError naming `path`."""
    origin = typing.get_origin(annotation)
    if origin is list:
        (inner,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_check_type(f"{path}[{i}]", item, inner) for i, item in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type, values: dict, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.')}: expected a table, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; valid keys here: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(f"{prefix}{name}", value, hint)
    return cls(**kwargs)


def _validate(config: Config) -> None:
    for path, choices in CHOICES.items():
        section, key = path.split(".")
        value = getattr(getattr(config, section), key)
        if value not in choices:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(choices)}")
    for paths, zero_allowed in ((POSITIVE, False), (NON_NEGATIVE, True)):
        for path in sorted(paths):
            section, key = path.split(".")
            value = getattr(getattr(config, section), key)
            if not math.isfinite(value):  # TOML has nan and inf
                raise ConfigError(f"{path}: must be a finite number, got {value}")
            if value < 0 or (value == 0 and not zero_allowed):
                rule = "at least" if zero_allowed else "greater than"
                raise ConfigError(f"{path}: must be {rule} 0")
    if not config.sampler.fanouts or min(config.sampler.fanouts) < 1:
        raise ConfigError("sampler.fanouts: needs at least one hop, each at least 1")
    if not 0 <= config.loss.neighbour_mass <= 1:
        raise ConfigError("loss.neighbour_mass: expected a number in [0, 1]")
    if not 0 <= config.model.gat_dropout < 1:
        raise ConfigError("model.gat_dropout: expected a number in [0, 1)")
    if len(config.optim.betas) != 2 or not all(0 <= b < 1 for b in config.optim.betas):
        raise ConfigError("optim.betas: expected two numbers in [0, 1)")


PLAIN_WORD = re.compile(r"[\w\-./:]+", re.ASCII)
"""What `--set` takes as a string without TOML quotes: a model name, a tag, a path."""


def _parse_value(assignment: str, text: str) -> Any:
    """A TOML value (`3e-4`, `true`, `[10, 10]`, `"x"`), or a plain word as a string; anything
    else is an error, not a string with a stray quote or bracket in it."""
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError as exc:
        if PLAIN_WORD.fullmatch(text):
            return text
        reason = str(exc).split(" (at ")[0]  # its position is in the `v = ...` we parsed
        raise ConfigError(f"--set {assignment}: not a TOML value ({reason})") from None
    if len(parsed) > 1:  # `1\nx = 2` would set a second key of the document, silently dropped
        raise ConfigError(f"--set {assignment!r}: not one TOML value")
    return parsed["v"]


def apply_override(raw: dict, assignment: str) -> None:
    """`optim.lr=3e-4` into the raw TOML table."""
    path, sep, text = assignment.partition("=")
    if not sep or not path.strip():
        raise ConfigError(f"override {assignment!r} is not KEY.PATH=VALUE")
    *tables, key = path.strip().split(".")
    node = raw
    for table in tables:
        node = node.setdefault(table, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {path}: {table} is not a table")
    node[key] = _parse_value(assignment, text.strip())


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the TOML file, then each override; validated."""
    raw: dict = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for assignment in overrides:
        apply_override(raw, assignment)
    config = _build(Config, raw, "")
    _validate(config)
    return config


def to_dict(config: Config) -> dict:
    """Plain nested dict, as stored in checkpoints."""
    return dataclasses.asdict(config)
