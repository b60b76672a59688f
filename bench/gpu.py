"""GPU benchmark and smoke test, in sections by priority within a time budget: MFU of ViT-B/32 and
ViT-B/16, SLIP against CLIP, step and loop; where the loop's time goes; a contrastive batch of
32,768 by gradient caching; the loader against the step.

    uv run python bench/gpu.py                          # without CUDA: says why it skips, exits 0
    uv run python bench/gpu.py --budget-s 480           # the sections that fit, in this order
    uv run python bench/gpu.py --sections compile,smoke # only these
    uv run python bench/gpu.py --shards DIR             # any slip-data shards; default: demo shards
    bash bench/gpu_kit.sh                               # what a lent machine without network needs

On demo shards (built once with `slip-data build` unless `--shards` names some), with
configs/vit-b-32-gpu.toml and random weights (`--pretrained` to start from others), bf16. Each
section's figures are written to `--out` (JSON) as soon as it ends, so a run cut short keeps what
it measured; a section that would not end within `--budget-s` is skipped and named, one that fails
prints its traceback and the rest go on. The sections, in the order they run (SECTIONS):
- **step**, of the first of `--models`: forward, losses, backward and AdamW for `slip` and `clip`
  (the anchor) on the same loader batches, already on the GPU, the two modes' steps interleaved;
  median of `--steps`. Samples/s, MFU, the SLIP/CLIP ratio, and the loader's images/s against
  what the step consumes.
- **loop**: `slip-train run`'s loop, loader included, in both modes: samples/s, MFU, its share
  of the step's rate and of the time spent waiting for the loader.
- **profile**: where the loop's time goes (`loop_profile`): the GPU's busy share and the main
  process's CPU time per step, with the loader's workers running and over the same batches with
  none (so the workers' cost to the main process shows apart from any wait for them).
- **32k**: one contrastive batch of `--cache-batch` products (random images, tokens and in-batch
  edges at the demo batches' degree) trained by gradient caching (slip_train.grad_cache,
  `--cache-rows` rows of encoder at a time), SLIP with both losses and the GAT over the whole
  batch: seconds per step, samples/s, MFU and peak memory.
- **sweep**: the step's samples/s and MFU at larger batches (`--sweep`), random batches, until
  memory runs out: how far a batch fills the GPU.
- **compile**: the first model's SLIP step under `torch.compile` (`train.compile`), its loop
  profiled, and what dynamo compiled (graphs, recompiles, graph breaks).
- **step** and **loop** of the other models (`--models`).
- **decode**: images/s with `data.decode = "cuda"` (the workers check the images and draw the
  crops, the main process decodes each batch with nvjpeg and crops and resizes it on the GPU), and
  the largest difference of its pixels from the CPU decode's (`data.decode = "cpu"`).
- **syncs**: how often one eager step of the loop waits for the GPU, SLIP and CLIP, counted by
  torch's sync debug mode (a warning at each synchronizing op; torch says it does not catch them
  all), with the lines that made them.
- **variants**: the SLIP loop with the graph sampled on the GPU (`sampler.device = "cuda"`) and
  with the images decoded on it (`data.decode = "cuda"`).
- **smoke**: `slip-train run`'s loop on CUDA in SLIP mode: a few steps to a checkpoint, a resume
  that continues from it, and the open_clip export loaded back by open_clip, whose image
  embeddings must equal the trained encoder's.
- **planner**: ms per SLIP batch, one thread (the default) against torch's thread count, on idle
  cores and with as many spinning processes as loader workers (what the loop's planner meets).

MFU is samples/s x the step's FLOPs per sample (counted by torch's FlopCounterMode on the real
model, bench/model_flops.py, which checks the encoders against open_clip's profile) / the device's
dense bf16 peak (a table for H100, H200 and A100; `--peak-tflops` for others). For scale:
open_clip's LAION-400M ViT-B/32 run (32 epochs of about 400M samples in about 36 h on 128 A100s)
works out to ~772 samples/s per GPU.
"""

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from model_flops import peak_tflops, random_batch, step_flops
from torch.utils.flop_counter import FlopCounterMode
from train_step import (
    decoding_in_main,
    demo_shards,
    loader_rate,
    measure_loop,
    step_times,
    synchronize,
    train_inputs,
)

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "gpu"
OPEN_CLIP_B32_PER_GPU = 32 * 400e6 / (36 * 3600 * 128)  # samples/s per A100, LAION-400M run


def gpu_config(
    shards: Path,
    mode: str,
    args: argparse.Namespace,
    *,
    steps: int,
    out: str,
    model: str,
    sampler: str = "cpu",
    decode: str = "workers",
    torch_compile: bool = False,
):
    from slip_train.config import load_config

    return load_config(
        ROOT / "configs" / "vit-b-32-gpu.toml",
        [f'data.shards="{shards}"', f'data.cache_dir="{WORK / "cache"}"',
         f"data.num_workers={args.workers}", f"sampler.batch_size={args.batch}",
         f'model.pretrained="{args.pretrained}"', f'loss.mode="{mode}"', f"train.steps={steps}",
         f'train.out_dir="{WORK / out}"', "train.checkpoint_every=100000",
         "train.tensorboard=false", f"train.compile={str(torch_compile).lower()}",
         f'train.device="{args.device}"', f'train.precision="{args.precision}"',
         f"train.grad_checkpointing={str(args.grad_checkpointing).lower()}",
         f'sampler.device="{sampler}"', f'model.name="{model}"', f'data.decode="{decode}"'],
    )  # fmt: skip


class Sections:
    """Runs measurements in priority order while `budget_s` lasts, each result written to `out`
    (temp file, then rename) as soon as it is in: a run cut short keeps what it measured."""

    def __init__(self, *, budget_s: float, out: Path, only: set[str] | None) -> None:
        self.started = time.perf_counter()
        self.budget_s, self.out, self.only = budget_s, out, only
        self.results: dict = {"skipped": {}, "failed": {}}

    def run(self, name: str, estimate_s: float, measure: Callable[[], dict]) -> dict | None:
        if self.only is not None and name.split()[0] not in self.only:
            return None
        left = self.budget_s - (time.perf_counter() - self.started)
        if estimate_s > left:
            self.results["skipped"][name] = f"needs about {estimate_s:.0f} s, {left:.0f} s left"
            print(f"{name}: skipped, {self.results['skipped'][name]}", flush=True)
            self.write()
            return None
        started = time.perf_counter()
        try:
            result = measure()
        except Exception as error:  # one failed section costs only its own figures
            traceback.print_exc()
            torch.cuda.empty_cache()
            self.results["failed"][name] = f"{type(error).__name__}: {error}"[:500]
            self.write()
            return None
        result["seconds"] = time.perf_counter() - started
        print(f"{name}: done in {result['seconds']:.0f} s", flush=True)
        self.results[name] = result
        self.write()
        return result

    def write(self) -> None:
        from slip_train.atomic import write_json

        write_json(self.out, self.results)


def smoke(shards: Path, args: argparse.Namespace) -> dict:
    """Train, resume, export, load in open_clip, all on the device; returns what was checked."""
    import open_clip

    from slip_train.checkpoint import export_open_clip, load_checkpoint
    from slip_train.train import train

    shutil.rmtree(WORK / "smoke", ignore_errors=True)
    config = gpu_config(shards, "slip", args, steps=4, out="smoke", model=args.models.split(",")[0])
    config.train.checkpoint_every, config.train.log_every = 2, 1
    first = train(config, show_progress=False)
    config.train.steps = 6
    resumed = train(config, resume="latest", show_progress=False)
    state = load_checkpoint(resumed.checkpoint)
    folder = export_open_clip(state, WORK / "smoke" / "export").parent
    model = open_clip.create_model(f"local-dir:{folder}", device=args.device).eval()
    trained = open_clip.create_model(state["model_name"], pretrained=None, device=args.device)
    trained.eval().load_state_dict(state["clip_state_dict"])
    size = image_size(state["model_name"])
    images = torch.randn(4, 3, size, size, device=args.device)
    with torch.no_grad():
        same = torch.equal(model.encode_image(images), trained.encode_image(images))
    log = [json.loads(line) for line in (WORK / "smoke" / "log.jsonl").read_text().splitlines()]
    checks = {
        "steps": [r["step"] for r in log], "loss_finite": all(r["loss"] == r["loss"] for r in log),
        "first_checkpoint": first.checkpoint.name, "resumed_to": resumed.step,
        "export_equals_trained": same,
    }  # fmt: skip
    if checks["steps"] != list(range(1, 7)) or not (checks["loss_finite"] and same):
        raise RuntimeError(f"smoke test failed: {checks}")
    return checks


def planner_ms(planner, busy: int) -> dict[str, float]:
    """Median ms per batch, planned with one thread and with torch's count, with `busy` processes
    spinning on the cores meanwhile."""
    spinning = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL)
        for _ in range(busy)
    ]
    try:
        times = {}
        for threads in (1, None):
            planner.threads = threads
            batches, spent = planner.epoch(0), []
            for _ in range(min(len(planner), 30)):
                start = time.perf_counter()
                next(batches)
                spent.append(time.perf_counter() - start)
            times[f"threads_{threads or torch.get_num_threads()}"] = statistics.median(spent) * 1e3
        return times
    finally:
        planner.threads = 1
        for process in spinning:
            process.kill()
            process.wait()


def mfu(samples_per_s: float, gflops: float, peak: float | None) -> str:
    return (
        "MFU n/a (--peak-tflops)"
        if peak is None
        else f"MFU {samples_per_s * gflops / peak / 1e3:.1%}"
    )


def cached_step(
    name: str, *, batch: int, rows: int, degree: float, device: str, steps: int = 3
) -> dict:
    """A SLIP step over one contrastive batch of `batch` by gradient caching (bf16 on CUDA):
    seconds, GFLOPs per sample (counted on one more step) and peak memory."""
    from functools import partial

    from slip_train.config import ModelConfig
    from slip_train.factory import build_model, param_groups
    from slip_train.grad_cache import cached_backward
    from slip_train.graph_head import neighbour_edges
    from slip_train.loss import training_loss

    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name), with_graph=True).model.to(device)
    on_gpu = device == "cuda"
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay=0.2, lr=1e-5), fused=on_gpu)
    images, tokens, edges = random_batch(
        batch, image_size=image_size(name), context=model.clip.context_length, degree=degree,
        device=device,
    )  # fmt: skip
    inputs = (images, tokens, neighbour_edges(edges))  # as the loader prepares a batch's graph
    loss = partial(training_loss, structural_weight=0.5, structural_temperature=0.07)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        cached_backward(
            model, inputs, rows=rows, loss=loss, scale=1.0, world=1,
            autocast=torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else nullcontext(),
        )  # fmt: skip
        optimizer.step()

    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up
    spent = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        spent.append(time.perf_counter() - start)
    with FlopCounterMode(display=False) as counter:
        step()
    seconds = statistics.median(spent)
    return {
        "batch": batch, "rows": rows, "edges": int(edges.shape[1]), "step_s": seconds,
        "samples_per_s": batch / seconds,
        "gflops_per_sample": counter.get_total_flops() / batch / 1e9,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if on_gpu else None,
    }  # fmt: skip


def step_syncs(config, batches: list[dict]) -> dict:
    """Syncs with the GPU in one eager step of the loop (`train_step` with the loop's own parts:
    bf16, fused AdamW, the loader's pinned batches moved with non_blocking), after two warm-up
    steps: their count, and per op's line (with the innermost slip_train line that led there)."""
    from slip_train.distributed import Ranks
    from slip_train.train import _setup, train_step

    _, _, parts, _ = _setup(config, device=torch.device("cuda"), ranks=Ranks())
    parts.model.train()
    for _ in range(2):  # lazy initialisation, the optimizer's state
        train_step(iter(batches), parts)
    torch.cuda.synchronize()
    where: Counter = Counter()

    def record(message, category, filename, lineno, file=None, line=None) -> None:
        if "called a synchronizing" not in str(message):
            return
        ours = [f for f in traceback.extract_stack() if "slip_train" in f.filename]
        via = f" via {Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else ""
        where[f"{Path(filename).name}:{lineno}{via}"] += 1

    with warnings.catch_warnings():  # warnings from backward's threads reach this one after it
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_step(iter(batches), parts)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return {"syncs": sum(where.values()), "where": dict(where)}


def loop_profile(config, *, steps: int, warmup: int = 5) -> dict:
    """Where the loop's time goes: `steps` steps of the loop's own parts (`train_step` as `train()`
    sets it up) after `warmup`, first on its loader's batches with the workers running, then again
    on the same batches (kept, pinned) with no worker left. For each: wall time, the GPU's busy
    time (the union of its kernels' spans, torch's profiler recording CUDA activity only) and the
    main process's CPU time, per step, and the wait for the loader. A GPU idle for much of the
    wall time while the process's CPU time stays near it says the host sets the pace; a gap
    between the two runs, the workers' cost to the main process."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from slip_train.data import batch_loader
    from slip_train.distributed import Ranks
    from slip_train.train import _setup, train_step

    device = torch.device(config.train.device)
    on_gpu = device.type == "cuda"  # elsewhere (a check on the CPU) the CPU's ops are the busy time
    activity, kind = (
        (ProfilerActivity.CUDA, DeviceType.CUDA)
        if on_gpu
        else (ProfilerActivity.CPU, DeviceType.CPU)
    )
    dataset, planner, parts, _ = _setup(config, device=device, ranks=Ranks())
    loader = batch_loader(
        dataset,
        planner,
        epoch=0,
        start=0,
        workers=config.data.num_workers,
        pin=on_gpu,
    )
    kept: list[dict] = []
    live = (kept.append(batch) or batch for batch in loader)
    parts.model.train()

    def timed(batches) -> dict:
        synchronize(device.type)
        with profile(activities=[activity]) as profiler:
            wall, cpu = time.perf_counter(), time.process_time()
            done = [train_step(batches, parts) for _ in range(steps)]
            synchronize(device.type)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        spans = sorted(
            (e.time_range.start, e.time_range.end)
            for e in profiler.events()
            if e.device_type == kind
        )
        busy, reach = 0.0, float("-inf")  # the union of the spans, in microseconds
        for start, end in spans:
            busy += max(0.0, end - max(start, reach))
            reach = max(reach, end)
        return {
            "step_s": wall / steps, "gpu_busy_s": busy / 1e6 / steps, "gpu_busy": busy / 1e6 / wall,
            "main_cpu_s": cpu / steps, "wait_s": sum(d.waited for d in done) / steps,
            "samples_per_s": sum(d.samples for d in done) / wall,
        }  # fmt: skip

    for _ in range(warmup):
        train_step(live, parts)
    kept.clear()
    with_workers = timed(live)
    del live, loader  # the workers end
    without = timed(itertools.cycle(kept))
    return {"with_workers": with_workers, "without_workers": without}


def profile_line(name: str, profiled: dict) -> str:
    return f"{name}: " + "; ".join(
        f"{how.replace('_', ' ')} {p['step_s'] * 1e3:.1f} ms a step = {p['samples_per_s']:.0f} "
        f"samples/s, GPU busy {p['gpu_busy']:.0%} ({p['gpu_busy_s'] * 1e3:.1f} ms), main process "
        f"CPU {p['main_cpu_s'] * 1e3:.1f} ms, waiting {p['wait_s'] * 1e3:.1f} ms"
        for how, p in profiled.items()
        if isinstance(p, dict)
    )


def random_loader_batch(batch: int, *, size: int, context: int, degree: float) -> dict:
    """A batch as the loader hands one over (uint8 images of `size` px), random."""
    _, tokens, edges = random_batch(
        batch, image_size=1, context=context, degree=degree, device="cpu"
    )
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    return {"images": images, "tokens": tokens, "edge_index": edges}


def sweep(slip, clip, *, sizes: list[int], steps: int, context: int, degree: float, peak) -> dict:
    """Step samples/s and MFU of both modes at each batch size on random batches, until the GPU's
    memory runs out."""
    name, rows, device = slip.model.name, {}, slip.train.device
    pixels = image_size(name)
    for size in sizes:
        try:
            batch = random_loader_batch(size, size=pixels, context=context, degree=degree)
            times = step_times([slip, clip], [batch], steps, device, slip.train.precision)
            flops = {
                mode: step_flops(name, mode=mode, batch=size, image_size=pixels, degree=degree,
                                 device=device)["step"]
                for mode in ("slip", "clip")
            }  # fmt: skip
        except torch.OutOfMemoryError:
            rows[str(size)] = "out of memory"
            print(f"sweep  {name} batch {size}: out of memory", flush=True)
            break
        finally:
            torch.cuda.empty_cache()  # nothing to do without CUDA
        rates = {
            m: size / statistics.median(t) for m, t in zip(("slip", "clip"), times, strict=True)
        }
        rows[str(size)] = {"samples_per_s": rates, "gflops_per_sample": flops}
        print(f"sweep  {name} batch {size}: " + ", ".join(
            f"{m} {rates[m]:.0f} samples/s, {mfu(rates[m], flops[m], peak)}" for m in rates
        ), flush=True)  # fmt: skip
    return rows


def compiled_stats() -> dict:
    """What torch.compile did so far in this process: graphs made, recompiles, graph breaks."""
    from torch._dynamo.utils import counters

    return {
        "unique_graphs": counters["stats"]["unique_graphs"],
        "frames_compiled": counters["frames"]["ok"],
        "recompiles": dict(counters["recompiles"]),
        "graph_breaks": dict(counters["graph_break"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, help="slip-data shards (default: demo shards)")
    parser.add_argument("--products", type=int, default=2000, help="demo shards' size")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    parser.add_argument("--loop-steps", type=int, default=60)
    parser.add_argument("--loader-batches", type=int, default=40, help="timed loader batches")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--pretrained", default="", help="open_clip tag or file; none by default")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--models", default="ViT-B-32,ViT-B-16", help="open_clip model names")
    parser.add_argument("--sweep", default="1024,2048,4096", help="batch sizes of the sweep")
    parser.add_argument(
        "--peak-tflops", type=float, help="dense bf16 peak of a GPU not in the table"
    )
    parser.add_argument("--cache-batch", type=int, default=32768, help="0: no 32k section")
    parser.add_argument("--cache-rows", type=int, default=1024, help="encoder rows at a time")
    parser.add_argument("--budget-s", type=float, default=480, help="skip what would end later")
    parser.add_argument("--sections", help=f"only these, comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=WORK / "result.json")
    parser.add_argument(
        "--cpu-check", action="store_true",
        help="every section on the CPU at toy sizes (slip-tiny, fp32, no budget): the script "
        "checked end to end before a GPU's time is spent on it",
    )  # fmt: skip
    args = parser.parse_args()
    only = set(args.sections.split(",")) if args.sections else None
    if only and only - set(SECTIONS):
        parser.error(f"--sections: unknown {', '.join(sorted(only - set(SECTIONS)))}")
    args.device, args.precision = ("cpu", "fp32") if args.cpu_check else ("cuda", "bf16")
    if args.cpu_check:
        vars(args).update(CPU_CHECK)
    elif not torch.cuda.is_available():
        print("bench/gpu: skipped, torch sees no CUDA device (this benchmark needs a GPU)")
        return
    run = Sections(budget_s=args.budget_s, out=args.out, only=only)
    shards = args.shards or demo_shards(args.products)
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    peak = peak_tflops(gpu, args.peak_tflops) if args.device == "cuda" else None
    run.results |= {
        "gpu": gpu, "peak_tflops": peak, "torch": torch.__version__, "batch": args.batch,
        "workers": args.workers, "grad_checkpointing": args.grad_checkpointing,
        "budget_s": args.budget_s,
    }  # fmt: skip
    print(f"{gpu} (dense bf16 peak {peak} TFLOP/s), torch {torch.__version__}, batch "
          f"{args.batch}, {args.precision}, {args.workers} loader workers, budget "
          f"{args.budget_s:.0f} s", flush=True)  # fmt: skip

    config = partial_config(shards, args)
    models = args.models.split(",")
    pixels = image_size(models[0])
    _, dataset, planner = train_inputs(config("slip", out="inputs"), image_size=pixels)
    next(planner.epoch(0))  # numba's kernels loaded
    loader, batches = loader_rate(
        dataset, planner, workers=args.workers, batches=args.loader_batches,
        pin=args.device == "cuda",
    )  # fmt: skip
    batches = batches[:8]
    edges = statistics.mean(b["edge_index"].shape[1] for b in batches)
    degree, context = 2 * edges / args.batch, batches[0]["tokens"].shape[1]
    run.results |= {"loader_images_per_s": loader, "edges_per_batch": edges}
    print(f"loader {loader:.0f} images/s decoded, augmented and pinned by {args.workers} "
          f"workers; {edges:.0f} in-batch edges a batch", flush=True)  # fmt: skip

    rates, flops = {}, {}

    def step(name: str) -> dict:
        slip, clip = (config(m, out=f"step-{m}", model=name) for m in ("slip", "clip"))
        flops[name] = {
            mode: step_flops(name, mode=mode, batch=args.batch, image_size=image_size(name),
                             degree=degree, device=args.device)["step"]
            for mode in ("slip", "clip")
        }  # fmt: skip
        times = step_times([slip, clip], batches, args.steps, args.device, args.precision)
        step_s = dict(zip(("slip", "clip"), map(statistics.median, times), strict=True))
        rates[name] = {m: args.batch / t for m, t in step_s.items()}
        print(f"step   {name}: " + "; ".join(
            f"{m} {step_s[m] * 1e3:.1f} ms = {rates[name][m]:.0f} samples/s, "
            f"{mfu(rates[name][m], flops[name][m], peak)}" for m in step_s
        ) + f" ({flops[name]['slip']:.2f} GFLOPs/sample): ratio slip/clip "
            f"{step_s['slip'] / step_s['clip']:.3f}; the loader makes "
            f"{loader / rates[name]['slip']:.2f}x what the SLIP step consumes",
            flush=True)  # fmt: skip
        return {"step_s": step_s, "samples_per_s": rates[name], "gflops_per_sample": flops[name],
                "mfu": {m: rates[name][m] * flops[name][m] / peak / 1e3 for m in step_s}
                if peak else None}  # fmt: skip

    def loop(name: str, variants: dict[str, dict]) -> dict:
        result = {}
        for label, settings in variants.items():
            mode = label.split(",")[0]
            rate, waiting, workers_rate = measure_loop(
                config(mode, out=f"loop-{label}", model=name, **settings), warmup=5
            )
            per_sample = flops.get(name, {}).get(mode)
            step_rate = rates.get(name, {}).get(mode)
            result[label] = {
                "samples_per_s": rate, "data_wait_share": waiting,
                "workers_images_per_s": workers_rate,
                "mfu": rate * per_sample / peak / 1e3 if peak and per_sample else None,
                "share_of_step": rate / step_rate if step_rate else None,
            }  # fmt: skip
            print(f"loop   {name} {label}: {rate:.0f} samples/s per GPU, "
                  f"{mfu(rate, per_sample, peak) if per_sample else 'MFU n/a (no step)'}, "
                  f"{f'{rate / step_rate:.1%} of the step' if step_rate else 'no step measured'}, "
                  f"{waiting:.1%} of the time waiting for the loader (its workers, a core each, "
                  f"would make {workers_rate:.0f} images/s); ratio to open_clip's "
                  f"~{OPEN_CLIP_B32_PER_GPU:.0f}/GPU {rate / OPEN_CLIP_B32_PER_GPU:.2f}",
                  flush=True)  # fmt: skip
        return result

    def profiled(torch_compile: bool) -> dict:
        result = loop_profile(
            config("slip", out="profile", model=models[0], torch_compile=torch_compile), steps=10
        )
        label = f"profile {models[0]} slip{', compiled' if torch_compile else ''}"
        print(profile_line(label, result), flush=True)
        return result

    def compiled() -> dict:
        name = models[0]
        slip = config("slip", out="compiled", model=name, torch_compile=True)
        step_s = statistics.median(
            step_times([slip], batches, args.steps, args.device, args.precision)[0]
        )
        rate = args.batch / step_s
        per_sample = flops.get(name, {}).get("slip")
        print(f"step   {name} slip compiled: {step_s * 1e3:.1f} ms = {rate:.0f} samples/s"
              f"{f', {mfu(rate, per_sample, peak)}' if per_sample else ''}",
              flush=True)  # fmt: skip
        return {"slip_step_s": step_s, "loop_profile": profiled(torch_compile=True),
                "dynamo": compiled_stats()}  # fmt: skip

    def decode() -> dict:
        jpegs = decoding_in_main(dataset)
        rate, _ = loader_rate(
            jpegs, planner, workers=args.workers, batches=args.loader_batches,
            decode=args.device, pin=args.device == "cuda",
        )  # fmt: skip
        handed = jpegs.__getitems__(next(planner.epoch(0)))
        by_device, by_cpu = (
            jpegs.decode(handed, device=torch.device(d))["images"] for d in (args.device, "cpu")
        )
        diff = (by_device.cpu().int() - by_cpu.int()).abs()
        consumed = rates.get(models[0], {}).get("slip")
        print(f"decode {rate:.0f} images/s decoded on {args.device} (data.decode)"
              f"{f', {rate / consumed:.2f}x what the SLIP step consumes' if consumed else ''}; "
              f"pixels within {diff.max()} of the CPU decode's (mean "
              f"{diff.float().mean():.3f})", flush=True)  # fmt: skip
        return {"images_per_s": rate, "pixel_diff_max": int(diff.max()),
                "pixel_diff_mean": float(diff.float().mean())}  # fmt: skip

    def syncs() -> dict:
        edgeless = [b | {"edge_index": b["edge_index"][:, :0]} for b in batches]  # as CLIP's
        counted = {
            mode: step_syncs(config(mode, out=f"syncs-{mode}"), given)
            for mode, given in (("slip", batches), ("clip", edgeless))
        }
        for mode, found in counted.items():
            print(f"syncs  {mode} step (eager, torch's sync debug mode): {found['syncs']} "
                  f"{found['where'] or ''}", flush=True)  # fmt: skip
        return counted

    def cached() -> dict:
        result = cached_step(
            models[0], batch=args.cache_batch, rows=args.cache_rows, degree=degree,
            device=args.device,
        )  # fmt: skip
        print(f"32k    {models[0]} SLIP, batch {result['batch']} by gradient caching "
              f"({result['rows']} rows at a time, {result['edges']} edges): "
              f"{result['step_s']:.2f} s/step = {result['samples_per_s']:.0f} samples/s, "
              f"{mfu(result['samples_per_s'], result['gflops_per_sample'], peak)} "
              f"({result['gflops_per_sample']:.2f} GFLOPs/sample with the second encoder pass)"
              + (f", peak memory {result['peak_memory_gb']:.1f} GB"
                 if result["peak_memory_gb"] is not None else ""), flush=True)  # fmt: skip
        return result

    def smoked() -> dict:
        checks = smoke(shards, args)
        print(f"smoke  ok: {checks}", flush=True)
        return checks

    def planned() -> dict:
        times = {"idle": planner_ms(planner, 0), "busy": planner_ms(planner, args.workers)}
        for load, ms in times.items():
            spread = ", ".join(f"{key.replace('_', ' ')} {v:.2f} ms" for key, v in ms.items())
            print(f"planner {load} cores ({args.workers if load == 'busy' else 0} spinning): "
                  f"{spread}", flush=True)  # fmt: skip
        return times

    both = {"slip": {}, "clip": {}}
    first, rest = models[0], models[1:]
    sizes = [int(size) for size in args.sweep.split(",") if size]
    plan = [
        (f"step {first}", 40, lambda: step(first)),
        (f"loop {first}", 80, lambda: loop(first, both)),
        ("profile", 45, lambda: profiled(torch_compile=False)),
        ("32k", 90, cached) if args.cache_batch else None,
        ("sweep", 25 * len(sizes), lambda: sweep(
            config("slip", out="sweep", model=first), config("clip", out="sweep", model=first),
            sizes=sizes, steps=5, context=context, degree=degree, peak=peak)),
        ("compile", 150, compiled),
        *[(f"step {name}", 45, lambda name=name: step(name)) for name in rest],
        *[(f"loop {name}", 90, lambda name=name: loop(name, both)) for name in rest],
        ("decode", 30, decode),
        ("syncs", 30, syncs) if args.device == "cuda" else None,  # torch's sync debug mode
        ("variants", 80, lambda: loop(first, {
            f"slip, sampled on {args.device}": {"sampler": args.device},
            f"slip, decoded on {args.device}": {"decode": args.device}})),
        ("smoke", 70, smoked),
        ("planner", 20, planned),
    ]  # fmt: skip
    for name, estimate, measure in filter(None, plan):
        run.run(name, estimate, measure)
    print(
        f"bench/gpu: {len(run.results['skipped'])} sections skipped, "
        f"{len(run.results['failed'])} failed; figures in {args.out}",
        flush=True,
    )
    if run.results["failed"]:
        sys.exit(1)


SECTIONS = ("step", "loop", "profile", "32k", "sweep", "compile", "decode", "syncs", "variants",
            "smoke", "planner")  # fmt: skip


CPU_CHECK = {
    "models": "slip-tiny", "batch": 32, "steps": 2, "loader_batches": 4, "workers": 2,
    "sweep": "64", "cache_batch": 128, "cache_rows": 32, "budget_s": float("inf"),
}  # fmt: skip


def image_size(model: str) -> int:
    """The side of the images `model` takes, from its open_clip config."""
    import open_clip

    import slip_train.factory  # noqa: F401  (adds slip-train's own configs to open_clip's)

    size = open_clip.get_model_config(model)["vision_cfg"]["image_size"]
    return size[0] if isinstance(size, (tuple, list)) else size


def partial_config(shards: Path, args: argparse.Namespace) -> Callable:
    """gpu_config with the run's shards and arguments, and the first of `--models` unless told."""
    return lambda mode, **settings: gpu_config(
        shards, mode, args, steps=args.loop_steps, **{"model": args.models.split(",")[0]} | settings
    )


if __name__ == "__main__":
    main()
