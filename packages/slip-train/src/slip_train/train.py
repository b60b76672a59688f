"""The training loop, top to bottom: data, model, optimizer, then steps with logs and checkpoints.

`loss.mode = "clip"` runs the same loop without graph heads or structural loss, on uniformly
random batches of the same size: the baseline SLIP is compared with.
"""

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from slip_train import __version__
from slip_train.batches import BatchPlanner
from slip_train.checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    remove_run_temps,
    resolve_resume,
    save_checkpoint,
)
from slip_train.config import Config, ConfigError, to_dict
from slip_train.data import BatchDataset, batch_loader, load_train_data, to_model_images
from slip_train.distributed import barrier, init_from_env
from slip_train.factory import build_model, param_groups
from slip_train.lock import hold
from slip_train.loss import training_loss


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


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _keep_log_until(log_path: Path, step: int) -> None:
    """After a resume, drop log lines of steps the resumed run will redo."""
    if not log_path.is_file():
        return
    lines = [line for line in log_path.read_text().splitlines() if json.loads(line)["step"] <= step]
    tmp = log_path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(log_path)


def train(config: Config, resume: str | None = None, show_progress: bool = True) -> TrainResult:
    """Train as `config` says; `resume` is a checkpoint path or `latest` (in out_dir). Under
    torchrun, every rank runs this; `sampler.batch_size` is per rank, as open_clip's. One run
    writes to an out_dir at a time: its rank 0, the only writer there, holds it (lock.py)."""
    with hold(config.train.out_dir) if os.environ.get("RANK", "0") == "0" else nullcontext():
        return _train(config, resume, show_progress)


def _train(config: Config, resume: str | None, show_progress: bool) -> TrainResult:
    cfg_train, cfg_loss, cfg_optim = config.train, config.loss, config.optim
    device = pick_device(cfg_train.device)
    if cfg_train.precision == "bf16" and device.type != "cuda":
        raise ConfigError(f"train.precision: bf16 autocast needs CUDA; this run is on {device}")
    ranks = init_from_env(device.type)
    if device.type == "cuda" and ranks.world > 1:
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    show_progress = show_progress and ranks.main
    out_dir = Path(cfg_train.out_dir)
    checkpoints = out_dir / "checkpoints"
    if ranks.main:  # the temps of a killed run go before anything new is written
        remove_run_temps(out_dir, Path(config.data.cache_dir))
    torch.manual_seed(cfg_train.seed)

    # data: the split's graph, the planner of batches, the workers' dataset; rank 0 builds the
    # node cache first, so that the ranks do not write it at once
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
    graph = data.graph
    if config.sampler.device == "cuda":
        if device.type != "cuda":
            raise ConfigError(
                f"sampler.device: cuda needs training on CUDA; this run is on {device}"
            )
        graph = graph.to(device)
    planner = BatchPlanner(
        graph,
        data.split_nodes,
        global_batch,
        config.sampler.fanouts,
        mode=cfg_loss.mode,
        edges=config.sampler.edges,
        seed=cfg_train.seed,
    )

    # model, optimizer, schedule
    built = build_model(
        config.model, with_graph=cfg_loss.mode == "slip",
        structural_gradient=cfg_loss.structural_gradient,
    )  # fmt: skip
    model = built.model.to(device)
    if cfg_train.grad_checkpointing:
        model.clip.set_grad_checkpointing(True)
    mean, std = (
        torch.tensor(v, device=device).view(-1, 1, 1) for v in (built.image_mean, built.image_std)
    )
    image_size = built.preprocess_cfg["size"]
    dataset = BatchDataset(
        data.cache, built.train_transform, built.tokenizer,
        image_size[0] if isinstance(image_size, (tuple, list)) else image_size,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(
        param_groups(
            model, weight_decay=cfg_optim.weight_decay, lr=cfg_optim.lr,
            graph_head_lr_scale=cfg_optim.graph_head_lr_scale,
        ),
        lr=cfg_optim.lr, betas=tuple(cfg_optim.betas), eps=cfg_optim.eps,
        fused=device.type == "cuda",  # one kernel for the whole update on the GPU
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg_optim.warmup_steps, cfg_train.steps)
    )
    step, epoch, index = 0, 0, 0
    if not resume and list_checkpoints(checkpoints):
        raise ConfigError(
            f"train.out_dir: {out_dir} already holds checkpoints; continue with --resume latest "
            "or train into another out_dir"
        )
    saved: Path | None = None  # the last whole checkpoint: the resumed one until a new one
    if resume:
        saved = resolve_resume(resume, checkpoints)
        state = load_checkpoint(saved)
        if state.get("world_size", 1) != ranks.world:
            raise ConfigError(
                f"--resume: {saved} was written by {state.get('world_size', 1)} process(es); "
                f"resume it with as many (this run has {ranks.world})"
            )
        model.clip.load_state_dict(state["clip_state_dict"])
        for name in ("image_graph", "text_graph"):
            head = getattr(model, name)
            if head is not None:
                head.load_state_dict(state["graph_state_dict"][name])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        step, epoch, index = state["step"], state["epoch"], state["batch_index"]
    forward = model
    if ranks.world > 1:  # averages the gradients across ranks during backward
        forward = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward = torch.compile(forward) if cfg_train.compile else forward

    # logs: rank 0 writes them, and the checkpoints
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "log.jsonl"
    if ranks.main:
        _keep_log_until(log_path, step)
    tensorboard = None
    if cfg_train.tensorboard and ranks.main:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "train.tensorboard: needs tensorboard (pip install 'slip-train[tensorboard]')"
            ) from None
        tensorboard = SummaryWriter(str(out_dir / "tensorboard"))
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cfg_train.precision == "bf16"
        else nullcontext()
    )

    loader = batch_loader(
        dataset, planner, epoch, index, config.data.num_workers,
        config.data.pin_memory and device.type == "cuda", ranks.rank, ranks.world,
    )  # fmt: skip
    batches = iter(loader)
    last_loss = math.nan
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.1f} samples/s  loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(), disable=not show_progress,
    )  # fmt: skip
    with progress, open(log_path, "a") if ranks.main else nullcontext() as log:
        task = progress.add_task(
            f"train {cfg_loss.mode}", total=cfg_train.steps, completed=step, rate=0.0, loss=0.0
        )
        model.train()
        while step < cfg_train.steps:
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            totals: dict[str, float] = {}
            samples = edges = 0
            waited = 0.0  # time the step waited for the loader: > 0 means the loader is behind
            loaded = 0.0  # time a worker spent making the step's batches, in its own process
            skipped = 0  # images dropped from the step's batches for failing their check
            for _ in range(cfg_optim.grad_accum):
                wait_start = time.perf_counter()
                batch = next(batches)
                waited += time.perf_counter() - wait_start
                loaded += batch["load_s"]
                skipped += batch["skipped_images"]
                images = to_model_images(batch["images"].to(device, non_blocking=True), mean, std)
                tokens = batch["tokens"].to(device, non_blocking=True)
                edge_index = batch["edge_index"].to(device, non_blocking=True)
                with autocast:
                    out = forward(images, tokens, edge_index)
                losses = training_loss(
                    {k: v.float() for k, v in out.items()}, edge_index, model.logit_scale,
                    structural_weight=cfg_loss.structural_weight,
                    structural_temperature=cfg_loss.structural_temperature,
                    neighbour_mass=(
                        cfg_loss.neighbour_mass if cfg_loss.positives == "soft" else None
                    ),
                )  # fmt: skip
                if not torch.isfinite(losses["loss"]):
                    raise TrainingError(
                        f"step {step + 1}: loss is {losses['loss'].item()}, not finite; stopped "
                        f"before updating, last good checkpoint: {saved or 'none written yet'}"
                    )
                (losses["loss"] / cfg_optim.grad_accum).backward()
                for name, value in losses.items():
                    totals[name] = totals.get(name, 0.0) + value.item() / cfg_optim.grad_accum
                samples += images.shape[0] * ranks.world
                edges += edge_index.shape[1]
                epoch, index = batch["epoch"], batch["index"] + 1
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg_optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            elapsed = time.perf_counter() - started
            last_loss = totals["loss"]
            record = {
                "step": step, "epoch": epoch, **totals, "lr": scheduler.get_last_lr()[0],
                "logit_scale": model.logit_scale.exp().item(), "grad_norm": grad_norm.item(),
                "samples": samples, "edges": edges, "samples_per_s": samples / elapsed,
                "step_s": elapsed, "data_wait_s": waited, "load_s": loaded,
                "skipped_images": skipped,
            }  # fmt: skip
            if ranks.main and (step % cfg_train.log_every == 0 or step == cfg_train.steps):
                log.write(json.dumps(record) + "\n")
                log.flush()
                if tensorboard is not None:
                    for key, value in record.items():
                        if key != "step":
                            tensorboard.add_scalar(f"train/{key}", value, step)
            progress.update(task, completed=step, rate=samples / elapsed, loss=last_loss)
            if not (step % cfg_train.checkpoint_every == 0 or step == cfg_train.steps):
                continue
            if not ranks.main:
                saved = checkpoint_path(checkpoints, step)
            else:
                saved = save_checkpoint(
                    {
                        "slip_train_version": __version__,
                        "step": step, "epoch": epoch, "batch_index": index,
                        "mode": cfg_loss.mode, "config": to_dict(config),
                        "model_name": config.model.name, "model_cfg": built.model_cfg,
                        "preprocess_cfg": built.preprocess_cfg,
                        "clip_state_dict": model.clip.state_dict(),
                        "graph_head": {
                            "dim": built.model_cfg["embed_dim"], "layers": config.model.gat_layers,
                            "heads": config.model.gat_heads, "fusion": config.model.fusion,
                        },
                        "graph_state_dict": {
                            name: getattr(model, name).state_dict()
                            for name in ("image_graph", "text_graph")
                            if getattr(model, name) is not None
                        },
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": _rng_state(),
                        "world_size": ranks.world,
                    },
                    checkpoints, cfg_train.keep_checkpoints,
                )  # fmt: skip
    if tensorboard is not None:
        tensorboard.close()
    barrier()  # every rank returns once rank 0 has written the last checkpoint
    return TrainResult(step, last_loss, saved)
