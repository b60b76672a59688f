"""Training config: TOML parsed into typed dataclasses, with `--set a.b=value` overrides.

Each field carries its own rules, torchtitan's way: a `Literal` of its choices, `Bounds` on a
number, `Length` on a list; one checker reads them. Every key is documented with its default and
rules in docs/config.md (tests/test_docs.py keeps the page true). An unknown key, a wrong type or a
bad value is a ConfigError whose one-line message names the key path.
"""

import dataclasses
import math
import operator
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path."""


SIDES = {
    "at_least": ("at least", ">=", operator.ge),
    "above": ("greater than", ">", operator.gt),
    "at_most": ("at most", "<=", operator.le),
    "below": ("less than", "<", operator.lt),
}
"""Each side a bound may close: its words in a message, its sign in the docs, its test."""


@dataclass(frozen=True)
class Bounds:
    """Where a number field may lie (None: that side is open); it must be finite too, since
    TOML has nan and inf."""

    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    below: float | None = None

    def sides(self) -> list[tuple[str, float]]:
        """The closed sides, in SIDES' order (the lower first)."""
        return [(side, bound) for side in SIDES if (bound := getattr(self, side)) is not None]

    def __str__(self) -> str:
        """`> 0`, or `[0, 1)` when both sides are closed: as docs/config.md lists it."""
        sides = self.sides()
        if len(sides) == 1:
            ((side, bound),) = sides
            return f"{SIDES[side][1]} {bound}"
        (low, a), (high, b) = sides
        opening = "[" if low == "at_least" else "("
        closing = "]" if high == "at_most" else ")"
        return f"{opening}{a}, {b}{closing}"

    def check(self, path: str, value: float) -> None:
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number, got {value}")
        sides = self.sides()
        if all(SIDES[side][2](value, bound) for side, bound in sides):
            return
        if len(sides) == 2:
            raise ConfigError(f"{path}: expected a number in {self}")
        ((side, bound),) = sides
        raise ConfigError(f"{path}: must be {SIDES[side][0]} {bound}")


@dataclass(frozen=True)
class Length:
    """How many items a list field holds: `exactly`, or `at_least`."""

    at_least: int | None = None
    exactly: int | None = None

    def __str__(self) -> str:
        count = self.exactly if self.exactly is not None else self.at_least
        return f"{'' if self.exactly is not None else 'at least '}{count} item{'s' * (count != 1)}"

    def check(self, path: str, value: list) -> None:
        if (self.exactly is not None and len(value) != self.exactly) or (
            self.at_least is not None and len(value) < self.at_least
        ):
            raise ConfigError(f"{path}: expected {self}, got {len(value)}")


POSITIVE = Bounds(above=0)
NON_NEGATIVE = Bounds(at_least=0)
SHARE = Bounds(at_least=0, at_most=1)
BELOW_ONE = Bounds(at_least=0, below=1)


@dataclass
class DataConfig:
    shards: str = "out/demo/shards"  # a slip-data build folder or its shards/ folder
    split: Literal["train", "val", "test"] = "train"
    num_workers: Annotated[int, NON_NEGATIVE] = 2  # DataLoader worker processes
    # where JPEGs are decoded, cropped and resized: Pillow in the workers, or torchvision's batched
    # decode_jpeg in the main process on the CPU or the training GPU (nvjpeg)
    decode: Literal["workers", "cpu", "cuda"] = "workers"
    pin_memory: bool = True
    cache_dir: str = "out/cache"  # the memory-mapped node cache, one subfolder per shard set


@dataclass
class SamplerConfig:
    batch_size: Annotated[int, POSITIVE] = 128  # nodes per batch in both modes
    fanouts: Annotated[list[Annotated[int, POSITIVE]], Length(at_least=1)] = field(
        default_factory=lambda: [3]  # neighbours drawn per node at each hop
    )
    edges: Literal["induced", "sampled"] = "induced"  # every edge among batch nodes, or drawn
    device: Literal["cpu", "cuda"] = "cpu"  # numba kernels, or the graph sampled on the GPU
    # epoch: every training node a seed once an epoch; balanced: seeds drawn anew each batch,
    # weighted so that each node's expected appearances as seed or sampled neighbour are equal
    seeds: Literal["epoch", "balanced"] = "epoch"
    # none: every co-purchase of the split; similarity: only those whose products the starting
    # model finds more alike than `edge_gate_quantile` of random pairs of them; graph (the
    # default): all of them, or CLIP's uniform batches where too few are alike; from scratch, all
    # of them unjudged (edge_gate.py, docs/method.md)
    edge_gate: Literal["none", "similarity", "graph"] = "graph"
    edge_gate_quantile: Annotated[float, SHARE] = 0.95


@dataclass
class ModelConfig:
    name: str = "slip-tiny"  # an open_clip model name or a config in slip_train/model_configs
    pretrained: str = ""  # "", an open_clip tag such as "openai", or a local file
    gat_layers: Annotated[int, POSITIVE] = 1
    gat_heads: Annotated[int, POSITIVE] = 4
    fusion: Literal["gated_residual", "replace"] = "gated_residual"
    gat_dropout: Annotated[float, BELOW_ONE] = 0.0


@dataclass
class LossConfig:
    mode: Literal["slip", "clip"] = "slip"  # clip: the baseline through the same code
    structural_weight: Annotated[float, NON_NEGATIVE] = 0.5
    structural_temperature: Annotated[float, POSITIVE] = 0.07
    positives: Literal["equal", "soft"] = "equal"  # equal: a neighbour counts as the own pair
    neighbour_mass: Annotated[float, SHARE] = 0.5  # soft: the neighbours' share of the target
    # where the structural loss trains; the paper's SLIP: "encoders" (docs/method.md: the default)
    structural_gradient: Literal["encoders", "heads"] = "heads"
    neighbours_as_negatives: bool = False  # CLIP's loss skips in-batch neighbour pairs; paper: true
    # CLIP's loss per anchor: equal, or one over the product's expected appearances in a batch
    anchor_weights: Literal["equal", "inverse_appearances"] = "equal"


@dataclass
class OptimConfig:
    lr: Annotated[float, POSITIVE] = 5e-4
    weight_decay: Annotated[float, NON_NEGATIVE] = 0.2
    betas: Annotated[list[Annotated[float, BELOW_ONE]], Length(exactly=2)] = field(
        default_factory=lambda: [0.9, 0.98]
    )
    eps: Annotated[float, POSITIVE] = 1e-6
    warmup_steps: Annotated[int, NON_NEGATIVE] = 50
    grad_clip: Annotated[float, POSITIVE] = 1.0
    grad_accum: Annotated[int, POSITIVE] = 1
    # 0: off; N: each batch's encoders N rows at a time, one loss over the whole batch (GradCache)
    grad_cache_rows: Annotated[int, NON_NEGATIVE] = 0
    graph_head_lr_scale: Annotated[float, POSITIVE] = 1.0  # the graph heads' lr, a multiple of lr


@dataclass
class TrainConfig:
    steps: Annotated[int, POSITIVE] = 500
    seed: int = 0
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: CUDA when present
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast, CUDA only
    compile: bool = False
    grad_checkpointing: bool = False
    out_dir: str = "out/train"
    log_every: Annotated[int, POSITIVE] = 1
    checkpoint_every: Annotated[int, POSITIVE] = 100
    keep_checkpoints: Annotated[int, POSITIVE] = 3
    tensorboard: bool = False


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _as_type(path: str, value: Any, annotation: Any) -> Any:
    """The value as the annotation's type (one of a Literal's choices), or a ConfigError."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(choices)}")
        return value
    if origin is list:
        (inner,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_check(f"{path}[{i}]", item, inner) for i, item in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}")
    return value


def _check(path: str, value: Any, annotation: Any) -> Any:
    """The value as the field's type, within the rules next to it, or a ConfigError."""
    rules: list = []
    if typing.get_origin(annotation) is Annotated:
        annotation, *rules = typing.get_args(annotation)
    value = _as_type(path, value, annotation)
    for rule in rules:
        rule.check(path, value)
    return value


def _build(cls: type, values: dict, prefix: str) -> Any:
    """`cls` from its TOML table, each field (a default too) checked against its rules."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.')}: expected a table, got {values!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    known = [item.name for item in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; valid keys here: {', '.join(sorted(known))}"
        )
    defaults = cls()
    kwargs = {}
    for name in known:
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], values.get(name, {}), f"{prefix}{name}.")
        else:
            value = values.get(name, getattr(defaults, name))
            kwargs[name] = _check(f"{prefix}{name}", value, hints[name])
    return cls(**kwargs)


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
    """Defaults, then the TOML file, then each override; every key checked."""
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
    return _build(Config, raw, "")


def to_dict(config: Config) -> dict:
    """Plain nested dict, as stored in checkpoints."""
    return dataclasses.asdict(config)
