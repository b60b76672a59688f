"""The training loop, in torchtitan's and nanoGPT's shape: `train()` sets the run up, restores it
(checkpoint.py's Checkpointer), then calls `train_step` once per optimizer step, logging and
checkpointing between steps. It reads numbers back from the device only for a log line or a
checkpoint, so that the host can queue the next step's work meanwhile.

`loss.mode = "clip"` runs the same loop without graph heads or structural loss, on uniformly
random batches of the same size: the baseline SLIP is compared with.
"""

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from slip_train.atomic import write_json
from slip_train.batches import BatchPlanner
from slip_train.checkpoint import Checkpointer, Position, remove_run_temps
from slip_train.config import Config, ConfigError
from slip_train.data import (
    BatchDataset,
    TrainData,
    batch_loader,
    load_train_data,
    to_model_images,
)
from slip_train.distributed import Ranks, average_gradients, barrier, init_from_env
from slip_train.edge_gate import (
    JUDGED_NODES,
    gate_edges,
    induced_sample,
    judge_graph,
    node_embeddings,
)
from slip_train.factory import Built, build_model, param_groups
from slip_train.grad_cache import cached_backward
from slip_train.lock import hold
from slip_train.loss import MAX_LOGIT_SCALE, training_loss
from slip_train.model import SlipModel
from slip_train.sampler import CSRGraph


class TrainingError(RuntimeError):
    """The run cannot go on (a loss that is not finite); one line."""


@dataclass
class TrainResult:
    step: int
    last_loss: float
    checkpoint: Path | None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def warmup_cosine(warmup: int, total: int):
    """Learning-rate factor: linear from 1/warmup to 1, then cosine down to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass(kw_only=True)
class StepParts:
    """What every optimizer step uses, set up once by `train()`."""

    model: SlipModel  # its parameters, and the logit scale clamped after each update
    forward: Callable[..., dict[str, Tensor]]  # `model`, in DDP and torch.compile when asked
    no_sync: Callable[[], AbstractContextManager]  # DDP's, for the micro-batches before the last
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss: Callable[..., dict[str, Tensor]]  # training_loss with the run's loss settings
    inputs: Callable[[dict], tuple[Tensor, Tensor, Tensor]]  # a loader batch, on the device
    autocast: AbstractContextManager
    grad_accum: int
    grad_cache_rows: int  # 0: one pass over each micro-batch; else its encoders in chunks
    grad_clip: float
    world: int


@dataclass
class Step:
    """One optimizer step; its tensors stay on the device until a log line or a check needs them."""

    losses: dict[str, Tensor]  # the mean over the micro-batches
    grad_norm: Tensor  # before clipping
    samples: int  # over all ranks
    edges: int
    waited: float  # seconds spent waiting for the loader: > 0 means the loader is behind
    loaded: float  # seconds a worker spent making the step's batches, in its own process
    skipped: int  # images dropped from the step's batches for failing their check
    epoch: int  # where the batch plan goes on from: the next batch is `batch_index` of `epoch`
    batch_index: int


def train_step(batches: Iterator[dict], parts: StepParts) -> Step:
    """Forward and backward over `grad_accum` micro-batches, then the update, without waiting for
    the device: the losses are summed there. Under DDP the gradients are all-reduced once, in the
    last micro-batch's backward (`no_sync` before it, as nanoGPT); with gradient caching, whose
    backward passes run outside DDP's forward, once after the last. The logit scale is clamped in
    place after the update, as open_clip does."""
    parts.optimizer.zero_grad(set_to_none=True)
    losses: dict[str, Tensor] = {}
    samples = edges = skipped = 0
    waited = loaded = 0.0
    for micro in range(parts.grad_accum):
        started = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - started
        loaded += batch["load_s"]
        skipped += batch["skipped_images"]
        images, tokens, edge_index = parts.inputs(batch)
        weights = batch["anchor_weights"]
        loss = partial(
            parts.loss, anchor_weights=None if weights is None else weights.to(images.device)
        )
        last = micro == parts.grad_accum - 1
        if parts.grad_cache_rows:
            micro_losses = cached_backward(
                parts.model,
                (images, tokens, edge_index),
                rows=parts.grad_cache_rows,
                loss=loss,
                autocast=parts.autocast,
                scale=1 / parts.grad_accum,
                world=parts.world,
            )
        else:
            with nullcontext() if last else parts.no_sync():  # DDP decides in the forward
                with parts.autocast:
                    out = parts.forward(images, tokens, edge_index)
                micro_losses = loss(
                    {k: v.float() for k, v in out.items()}, edge_index, parts.model.logit_scale
                )
                (micro_losses["loss"] / parts.grad_accum).backward()
        for name, value in micro_losses.items():
            losses[name] = losses.get(name, 0) + value.detach() / parts.grad_accum
        samples += images.shape[0] * parts.world
        edges += edge_index.shape[1]
    if parts.grad_cache_rows:
        average_gradients(parts.model.parameters(), parts.world)
    grad_norm = torch.nn.utils.clip_grad_norm_(parts.model.parameters(), parts.grad_clip)
    parts.optimizer.step()
    parts.scheduler.step()
    with torch.no_grad():
        parts.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return Step(
        losses=losses,
        grad_norm=grad_norm,
        samples=samples,
        edges=edges,
        waited=waited,
        loaded=loaded,
        skipped=skipped,
        epoch=batch["epoch"],
        batch_index=batch["index"] + 1,
    )


def train(config: Config, resume: str | None = None, show_progress: bool = True) -> TrainResult:
    """Train as `config` says; `resume` is a checkpoint path or `latest` (in out_dir). Under
    torchrun, every rank runs this; `sampler.batch_size` is per rank, as open_clip's. One run
    writes to an out_dir at a time: its rank 0, the only writer there, holds it (lock.py)."""
    with hold(config.train.out_dir) if os.environ.get("RANK", "0") == "0" else nullcontext():
        return _train(config, resume, show_progress)


def _train(config: Config, resume: str | None, show_progress: bool) -> TrainResult:
    device, ranks = _join(config)
    if ranks.main:  # the temps of a killed run go before anything new is written
        remove_run_temps(Path(config.train.out_dir), Path(config.data.cache_dir))
    torch.manual_seed(config.train.seed)
    dataset, planner, parts, checkpointer = _setup(config, device=device, ranks=ranks)
    position = checkpointer.restore(resume)
    loader = batch_loader(
        dataset,
        planner,
        epoch=position.epoch,
        start=position.batch_index,
        workers=config.data.num_workers,
        pin=config.data.pin_memory and device.type == "cuda",
        rank=ranks.rank,
        world=ranks.world,
    )
    batches = iter(loader)
    if config.data.decode != "workers":  # the main process decodes: loader time, in data_wait_s
        decode_on = device if config.data.decode == "cuda" else torch.device("cpu")
        batches = map(partial(dataset.decode, device=decode_on), batches)
    steps, last_loss = config.train.steps, math.nan
    since: list[Step] = []  # the steps since the last log line
    seconds = 0.0  # their wall time, the device's share included
    with RunLog(config, ranks=ranks, start=position.step, show_progress=show_progress) as log:
        parts.model.train()
        while position.step < steps:
            started = time.perf_counter()
            done = train_step(batches, parts)
            since.append(done)
            position = Position(position.step + 1, done.epoch, done.batch_index)
            line = position.step % config.train.log_every == 0 or position.step == steps
            save = position.step % config.train.checkpoint_every == 0 or position.step == steps
            if line or save:  # the loop's only reads from the device
                values = _fetch(since, parts.model, step=position.step, saved=checkpointer.last)
            seconds += time.perf_counter() - started
            if line:
                lr = parts.scheduler.get_last_lr()[0]  # group 0: the encoders' (param_groups)
                record = _record(since, values, seconds=seconds, position=position, lr=lr)
                last_loss = record["loss"]
                log.write(record)
                since, seconds = [], 0.0
            log.advance(position.step)
            if save:
                checkpointer.save(position)
    barrier()  # every rank returns once rank 0 has written the last checkpoint
    return TrainResult(position.step, last_loss, checkpointer.last)


def _fetch(since: list[Step], model: SlipModel, *, step: int, saved: Path | None) -> dict:
    """The device's numbers, in one transfer: each unlogged step's loss, checked finite (so that
    no checkpoint is written after a loss that is not), and the last step's losses, gradient norm
    and logit scale."""
    last = since[-1]
    names = [*last.losses, "grad_norm", "logit_scale"]
    tensors = [s.losses["loss"] for s in since]
    tensors += [*last.losses.values(), last.grad_norm, model.logit_scale.detach().exp()]
    values = torch.stack([t.float() for t in tensors]).tolist()
    for at, loss in enumerate(values[: len(since)], start=step - len(since) + 1):
        if not math.isfinite(loss):
            raise TrainingError(
                f"step {at}: loss is {loss}, not finite; stopped at step {step}, no checkpoint "
                f"written after it; last good checkpoint: {saved or 'none written yet'}"
            )
    return dict(zip(names, values[len(since) :], strict=True))


def _record(
    since: list[Step], values: dict, *, seconds: float, position: Position, lr: float
) -> dict:
    """A log line (docs/checkpoint-format.md): the last step's numbers, and for the timings the
    steps since the previous line, whose single wall times are not known without a wait each."""
    last, count = since[-1], len(since)
    return {
        "step": position.step,
        "epoch": position.epoch,
        **{name: values[name] for name in last.losses},
        "lr": lr,
        "logit_scale": values["logit_scale"],
        "grad_norm": values["grad_norm"],
        "samples": last.samples,
        "edges": last.edges,
        "samples_per_s": sum(s.samples for s in since) / seconds,
        "step_s": seconds / count,
        "data_wait_s": sum(s.waited for s in since) / count,
        "load_s": sum(s.loaded for s in since) / count,
        "skipped_images": sum(s.skipped for s in since),
    }


def _join(config: Config) -> tuple[torch.device, Ranks]:
    """The training device, and the process group under torchrun (one GPU per process)."""
    device = pick_device(config.train.device)
    if config.train.precision == "bf16" and device.type != "cuda":
        raise ConfigError(f"train.precision: bf16 autocast needs CUDA; this run is on {device}")
    if config.data.decode == "cuda" and device.type != "cuda":
        raise ConfigError(f"data.decode: cuda needs training on CUDA; this run is on {device}")
    ranks = init_from_env(device.type)
    if device.type == "cuda" and ranks.world > 1:
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    return device, ranks


def _setup(
    config: Config, *, device: torch.device, ranks: Ranks
) -> tuple[BatchDataset, BatchPlanner, StepParts, Checkpointer]:
    """Data, model, optimizer and schedule, as the config says."""
    built = build_model(
        config.model,
        with_graph=config.loss.mode == "slip",
        structural_gradient=config.loss.structural_gradient,
    )
    model = built.model.to(device)
    planner, cache = _planner(config, device=device, ranks=ranks, built=built)
    if config.train.grad_checkpointing:
        model.clip.set_grad_checkpointing(True)
    size = built.preprocess_cfg["size"]
    dataset = BatchDataset(
        cache,
        transform=built.train_transform,
        tokenizer=built.tokenizer,
        image_size=size[0] if isinstance(size, (tuple, list)) else size,
        decode_in_workers=config.data.decode == "workers",
    )
    optim = config.optim
    optimizer = torch.optim.AdamW(
        param_groups(
            model,
            weight_decay=optim.weight_decay,
            lr=optim.lr,
            graph_head_lr_scale=optim.graph_head_lr_scale,
        ),
        lr=optim.lr,
        betas=tuple(optim.betas),
        eps=optim.eps,
        fused=device.type == "cuda",  # one kernel for the whole update on the GPU
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(optim.warmup_steps, config.train.steps)
    )
    checkpointer = Checkpointer(
        config=config,
        model=model,
        model_cfg=built.model_cfg,
        preprocess_cfg=built.preprocess_cfg,
        optimizer=optimizer,
        scheduler=scheduler,
        ranks=ranks,
    )
    forward, no_sync = model, nullcontext
    if ranks.world > 1:  # averages the gradients across ranks during backward
        forward = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        no_sync = forward.no_sync
    mean, std = (
        torch.tensor(v, device=device).view(-1, 1, 1) for v in (built.image_mean, built.image_std)
    )
    loss = config.loss
    parts = StepParts(
        model=model,
        forward=torch.compile(forward) if config.train.compile else forward,
        no_sync=no_sync,
        optimizer=optimizer,
        scheduler=scheduler,
        loss=partial(
            training_loss,
            structural_weight=loss.structural_weight,
            structural_temperature=loss.structural_temperature,
            neighbour_mass=loss.neighbour_mass if loss.positives == "soft" else None,
            neighbours_as_negatives=loss.neighbours_as_negatives,
        ),
        inputs=partial(_to_device, device=device, mean=mean, std=std),
        autocast=(
            torch.autocast("cuda", dtype=torch.bfloat16)
            if config.train.precision == "bf16"
            else nullcontext()
        ),
        grad_accum=optim.grad_accum,
        grad_cache_rows=optim.grad_cache_rows,
        grad_clip=optim.grad_clip,
        world=ranks.world,
    )
    return dataset, planner, parts, checkpointer


def _planner(
    config: Config, *, device: torch.device, ranks: Ranks, built: Built
) -> tuple[BatchPlanner, Path]:
    """The planner of global batches over the split's graph (gated by the starting model when
    `sampler.edge_gate` asks), and the node cache; rank 0 builds the cache first, so that the
    ranks do not write it at once."""
    if not ranks.main:
        barrier()
    data = load_train_data(config.data.shards, config.data.split, config.data.cache_dir)
    if ranks.main:
        barrier()
    global_batch = config.sampler.batch_size * ranks.world
    if ranks.world > 1 and global_batch > data.split_nodes.numel():
        raise ConfigError(
            f"sampler.batch_size: {ranks.world} ranks x {config.sampler.batch_size} is more than "
            f"the {data.split_nodes.numel()} training nodes"
        )
    graph, batches = data.graph, config.loss.mode
    if config.sampler.edge_gate != "none" and config.loss.mode == "slip":
        graph, batches = _gated(config, data, built=built, device=device, ranks=ranks)
    if config.sampler.device == "cuda":
        if device.type != "cuda":
            raise ConfigError(
                f"sampler.device: cuda needs training on CUDA; this run is on {device}"
            )
        graph = graph.to(device)
    planner = BatchPlanner(
        graph,
        data.split_nodes,
        batch_size=global_batch,
        fanouts=config.sampler.fanouts,
        mode=batches,
        edges=config.sampler.edges,
        seeds=config.sampler.seeds,
        anchor_weights=config.loss.anchor_weights,
        seed=config.train.seed,
    )
    return planner, data.cache


def _gated(
    config: Config, data: TrainData, *, built: Built, device: torch.device, ranks: Ranks
) -> tuple[CSRGraph, str]:
    """The graph and the batches' mode `sampler.edge_gate` leaves (edge_gate.py): `similarity`,
    the split's graph kept to the edges the starting model finds alike; `graph`, the whole graph,
    or CLIP's uniform batches where too few edges are alike (`judge_graph`), unjudged from
    scratch (without `model.pretrained`). What was kept and decided goes to edge_gate.json in
    out_dir. Every rank computes it alike, from the same weights and seed, so no rank waits on
    another's; a resumed run computes it again, to the same result."""
    out_file = Path(config.train.out_dir) / "edge_gate.json"
    if config.sampler.edge_gate == "graph" and not config.model.pretrained:
        # a model from scratch cannot judge the co-purchases: the whole graph, unjudged
        if ranks.main:
            write_json(out_file, {"edge_gate": "graph", "judged": False, "batches": "slip"})
        return data.graph, "slip"
    graph, nodes = data.graph, data.split_nodes
    if config.sampler.edge_gate == "graph":  # a share to estimate: a bounded sample is enough
        graph, nodes = induced_sample(graph, nodes, size=JUDGED_NODES, seed=config.train.seed)
    embeddings, unusable = node_embeddings(
        built.model.clip,
        data.cache,
        nodes,
        transform=built.eval_transform,
        tokenizer=built.tokenizer,
        device=device,
    )
    quantile = config.sampler.edge_gate_quantile
    gated = gate_edges(graph, nodes, embeddings, quantile=quantile, seed=config.train.seed)
    graph, batches = gated.graph, "slip"
    if config.sampler.edge_gate == "graph":
        graph, batches = data.graph, "slip" if judge_graph(gated, quantile=quantile) else "clip"
    if ranks.main:
        write_json(
            out_file,
            {
                "edge_gate": config.sampler.edge_gate,
                "judged": True,
                "quantile": quantile,
                "threshold": gated.threshold,
                "edges_kept": gated.edges_kept,
                "edges_before": gated.edges_before,
                "products_embedded": nodes.numel(),
                "images_unusable": unusable,  # those nodes judged by their text alone
                "batches": batches,  # slip: neighbour-sampled; clip: uniform, the graph unused
            },
        )
    return graph, batches


def _to_device(
    batch: dict, *, device: torch.device, mean: Tensor, std: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    images = to_model_images(batch["images"].to(device, non_blocking=True), mean, std)
    tokens = batch["tokens"].to(device, non_blocking=True)
    return images, tokens, batch["edge_index"].to(device, non_blocking=True)


class RunLog:
    """What a run reports: log.jsonl and TensorBoard, which rank 0 writes, and the progress bar.
    After a resume, the log lines of the steps the run will redo are dropped first."""

    def __init__(self, config: Config, *, ranks: Ranks, start: int, show_progress: bool) -> None:
        out_dir = Path(config.train.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / "log.jsonl"
        self.main = ranks.main
        self.tensorboard = None
        if config.train.tensorboard and ranks.main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError(
                    "train.tensorboard: needs tensorboard (pip install 'slip-train[tensorboard]')"
                ) from None
            self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"))
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.1f} samples/s  loss {task.fields[loss]:.4f}"),
            TimeRemainingColumn(),
            disable=not (show_progress and ranks.main),
        )
        self.task = self.progress.add_task(
            f"train {config.loss.mode}",
            total=config.train.steps,
            completed=start,
            rate=0.0,
            loss=0.0,
        )
        self.start = start

    def __enter__(self) -> "RunLog":
        if self.main:
            _keep_log_until(self.path, self.start)
            self.file = open(self.path, "a")
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
        if self.main:
            self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def write(self, record: dict) -> None:
        if self.main:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step":
                    self.tensorboard.add_scalar(f"train/{key}", value, record["step"])
        self.progress.update(self.task, rate=record["samples_per_s"], loss=record["loss"])

    def advance(self, step: int) -> None:
        self.progress.update(self.task, completed=step)


def _keep_log_until(log_path: Path, step: int) -> None:
    """After a resume, drop log lines of steps the resumed run will redo."""
    if not log_path.is_file():
        return
    lines = [line for line in log_path.read_text().splitlines() if json.loads(line)["step"] <= step]
    tmp = log_path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(log_path)
