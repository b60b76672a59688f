"""Benchmark: SLIP's step time against CLIP's, and the loader against what the step consumes.

    uv run python bench/train_step.py                      # demo config (slip-tiny, batch 128)
    uv run python bench/train_step.py --products 20000 --steps 30

On demo shards (built once into bench/_work/train-step/ with `slip-data build`):
1. **Step time**, `mode = "slip"` against `mode = "clip"` (the anchor), on the same model config,
   the same batch size and the same image and token tensors: forward, loss, backward and AdamW
   step, the two modes' steps interleaved, median over `--steps` after 3 warm-up rounds. SLIP's
   edges are those of real planned batches. The planner's own time per batch (sampling plus the
   induced edges, done in the main process ahead of the step) is measured apart and added to
   SLIP's step for the overhead.
2. **Loader**, images/s decoded, augmented and tokenized by the DataLoader workers alone, against
   the samples/s the SLIP step consumes; then the whole training loop (`slip-train run`'s code)
   whose samples/s, against the step alone, says whether the loader holds the step back.
3. **Decode at 224 px** (ViT-B/32's training crop, from the demo's 256 px JPEGs): images/s of the
   workers' Pillow path against `data.decode = "cpu"` (the workers check the images and draw the
   crops, the main process decodes the batch with torchvision's decode_jpeg and crops and resizes
   it), with no worker (one process does all) and with `--workers`.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch

WORK = Path(__file__).resolve().parent / "_work" / "train-step"


def synchronize(device: str | None) -> None:
    """Wait for the device's queued work (CUDA's); on the CPU there is none."""
    if device == "cuda":
        torch.cuda.synchronize()


def demo_shards(products: int) -> Path:
    out = WORK / f"demo-{products}"
    if not (out / "shards" / "manifest.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "slip_data", "build", "--source", "demo", "--categories", "all",
             "--demo-products", str(products), "--out", str(out), "--quiet"],
            check=True,
        )  # fmt: skip
    return out / "shards"


def config_for(shards: Path, mode: str, batch: int, workers: int, steps: int):
    from slip_train.config import load_config

    return load_config(
        Path(__file__).resolve().parents[1] / "configs" / "demo-cpu.toml",
        [f'data.shards="{shards}"', f'data.cache_dir="{WORK / "cache"}"',
         f"data.num_workers={workers}", f"sampler.batch_size={batch}", f'loss.mode="{mode}"',
         f"train.steps={steps}", f'train.out_dir="{WORK / ("run-" + mode)}"',
         "train.checkpoint_every=100000"],
    )  # fmt: skip


class TrainInputs(NamedTuple):
    data: object
    dataset: object
    planner: object


def train_inputs(config, image_size: int) -> TrainInputs:
    """The train split, its dataset (the config's model's transform and tokenizer) and a SLIP
    batch planner over its graph: what the loader and step measurements share."""
    from slip_train.batches import BatchPlanner
    from slip_train.data import BatchDataset, load_train_data
    from slip_train.factory import build_model

    data = load_train_data(config.data.shards, "train", config.data.cache_dir)
    built = build_model(config.model, with_graph=True)
    dataset = BatchDataset(
        data.cache,
        transform=built.train_transform,
        tokenizer=built.tokenizer,
        image_size=image_size,
    )
    planner = BatchPlanner(
        data.graph,
        data.split_nodes,
        batch_size=config.sampler.batch_size,
        fanouts=config.sampler.fanouts,
        mode="slip",
    )
    return TrainInputs(data, dataset, planner)


def decoding_in_main(dataset):
    """`dataset` as `data.decode = "cpu"` or `"cuda"` builds it: its workers hand over JPEGs."""
    from slip_train.data import BatchDataset

    return BatchDataset(
        dataset.cache,
        transform=dataset.transform,
        tokenizer=dataset.tokenizer,
        image_size=dataset.image_size,
        decode_in_workers=False,
    )


def loader_rate(
    dataset, planner, *, workers: int, batches: int, decode: str | None = None, pin: bool = False
) -> tuple[float, list[dict]]:
    """Images/s of `batches` batches from a fresh loader (its workers' start included), and the
    batches; with `decode` (a device) each decoded there in this process, as train() does, and
    on CUDA timed to the last kernel."""
    from slip_train.data import batch_loader

    loader = iter(batch_loader(dataset, planner, epoch=0, start=0, workers=workers, pin=pin))
    if decode is not None:
        loader = map(partial(dataset.decode, device=torch.device(decode)), loader)
    start = time.perf_counter()
    made = [next(loader) for _ in range(batches)]
    synchronize(decode)
    return sum(b["images"].shape[0] for b in made) / (time.perf_counter() - start), made


def step_times(
    configs: list,
    batches: list[dict],
    steps: int,
    device: str = "cpu",
    precision: str = "fp32",
) -> list[list[float]]:
    """Seconds per optimizer step for each config on the same batches, the configs' steps
    interleaved so that drift in the machine's speed hits them alike; 3 warm-up rounds. On CUDA
    the batches are moved to the device first and each step is timed to its last kernel."""
    from slip_train.data import to_model_images
    from slip_train.factory import build_model, param_groups
    from slip_train.loss import training_loss

    runs = []
    for config in configs:
        torch.manual_seed(0)
        built = build_model(config.model, with_graph=config.loss.mode == "slip")
        model = built.model.to(device)
        if config.train.compile:
            model = torch.compile(model)
        optimizer = torch.optim.AdamW(
            param_groups(model, weight_decay=0.2, lr=1e-4), fused=device == "cuda"
        )
        runs.append((config, model, optimizer))
    mean, std = (
        torch.tensor(v, device=device).view(-1, 1, 1) for v in (built.image_mean, built.image_std)
    )
    batches = [
        {
            "images": to_model_images(batch["images"].to(device), mean, std),
            "tokens": batch["tokens"].to(device),
            "edge_index": batch["edge_index"].to(device),
        }
        for batch in batches
    ]
    bf16 = precision == "bf16"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
    times: list[list[float]] = [[] for _ in configs]
    for i in range(steps + 3):
        batch = batches[i % len(batches)]
        for (config, model, optimizer), spent in zip(runs, times, strict=True):
            slip = config.loss.mode == "slip"
            edges = batch["edge_index"] if slip else batch["edge_index"][:, :0]
            synchronize(device)
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                out = model(batch["images"], batch["tokens"], edges)
            out = {key: value.float() for key, value in out.items()}
            losses = training_loss(
                out, edges, model.logit_scale, structural_weight=0.5, structural_temperature=0.07
            )
            losses["loss"].backward()
            optimizer.step()
            synchronize(device)
            if i >= 3:
                spent.append(time.perf_counter() - start)
    return times


class Loop(NamedTuple):
    samples_per_s: float  # median over the steps after the warm-up
    waiting: float  # share of the step time spent waiting for the loader
    workers_images_per_s: float  # what the workers make, each on a core of its own (load_s)


def measure_loop(config, warmup: int) -> Loop:
    """`slip-train run`'s loop afresh into config's out_dir, measured after `warmup` steps."""
    from slip_train.train import train

    shutil.rmtree(config.train.out_dir, ignore_errors=True)
    train(config, show_progress=False)
    log = [json.loads(line) for line in (Path(config.train.out_dir) / "log.jsonl").open()][warmup:]
    waiting = sum(r["data_wait_s"] for r in log) / sum(r["step_s"] for r in log)
    per_worker = statistics.median(r["samples"] / r["load_s"] for r in log)
    workers = max(config.data.num_workers, 1)
    return Loop(statistics.median(r["samples_per_s"] for r in log), waiting, workers * per_worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decode-batches", type=int, default=6, help="timed at 224 px per path")
    args = parser.parse_args()
    torch.set_num_threads(2)

    shards = demo_shards(args.products)
    slip = config_for(shards, "slip", args.batch, args.workers, args.steps)
    clip = config_for(shards, "clip", args.batch, args.workers, args.steps)
    data, dataset, planner = train_inputs(slip, image_size=64)

    # the planner alone: sampling and induced edges, per batch
    plan_times = []
    planner.make(data.split_nodes[: planner.seeds_per_batch], 0, 0)  # warm-up (numba compile)
    for index in range(min(len(planner), 50)):
        seeds = torch.arange(index, index + planner.seeds_per_batch) % data.split_nodes.numel()
        start = time.perf_counter()
        planner.make(data.split_nodes[seeds], 1, index)
        plan_times.append(time.perf_counter() - start)
    plan = statistics.median(plan_times)

    # the loader alone: images/s with the workers
    loader, batches = loader_rate(
        dataset, planner, workers=args.workers, batches=max(8, args.steps)
    )

    # the step alone, both modes, same tensors
    slip_times, clip_times = step_times([slip, clip], batches, args.steps)
    slip_step, clip_step = statistics.median(slip_times), statistics.median(clip_times)
    step_rate = args.batch / (slip_step + plan)

    # the whole loop, loader included (a fresh run each time)
    loop_rate, waiting, workers_rate = measure_loop(slip, warmup=3)

    # decode at 224 px: the workers' Pillow path against the main process's decode_jpeg on CPU
    vit = config_for(shards, "slip", args.batch, args.workers, args.steps)
    vit.model.name = "ViT-B-32"
    pillow = train_inputs(vit, image_size=224).dataset
    paths = {"workers": (pillow, None), "cpu": (decoding_in_main(pillow), "cpu")}
    decode_rates = {
        f"{path}, {workers} workers": loader_rate(
            loading, planner, workers=workers, batches=args.decode_batches, decode=decode
        )[0]
        for workers in (0, args.workers)
        for path, (loading, decode) in paths.items()
    }

    edges = statistics.mean(b["edge_index"].shape[1] for b in batches)
    print(f"demo {args.products} products, slip-tiny, batch {args.batch}, {edges:.0f} edges/batch")
    overhead = (slip_step + plan) / clip_step
    print(
        f"step  clip {clip_step * 1000:.1f} ms, slip {slip_step * 1000:.1f} ms + planner "
        f"{plan * 1000:.2f} ms: ratio slip/clip {overhead:.3f}"
    )
    print(
        f"loader {loader:.0f} images/s ({args.workers} workers) against {step_rate:.0f} "
        f"samples/s the step consumes: ratio {loader / step_rate:.2f}"
    )
    print(
        f"loop  {loop_rate:.0f} samples/s (ratio to the step alone {loop_rate / step_rate:.2f}), "
        f"{waiting:.1%} of its time waiting for the loader; its workers, a core each, would "
        f"make {workers_rate:.0f} images/s"
    )
    rates = ", ".join(f"{path} {rate:.0f}" for path, rate in decode_rates.items())
    print(f"decode 224 px, images/s of the loader (data.decode = workers or cpu): {rates}")
    WORK.mkdir(parents=True, exist_ok=True)
    result = {
        "products": args.products, "batch": args.batch, "edges_per_batch": edges,
        "clip_step_s": clip_step, "slip_step_s": slip_step, "planner_s": plan,
        "loader_images_per_s": loader, "step_samples_per_s": step_rate,
        "loop_samples_per_s": loop_rate, "loop_data_wait_share": waiting,
        "loop_workers_images_per_s": workers_rate, "decode_224_images_per_s": decode_rates,
    }  # fmt: skip
    (WORK / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
