"""GPU smoke test and benchmark: ViT-B/32 and ViT-B/16 at batch 256, SLIP against CLIP, samples/s
per GPU and MFU; a contrastive batch of 32,768 by gradient caching.

    uv run python bench/gpu.py                       # without CUDA: says why it skips, exits 0
    uv run python bench/gpu.py --compile --steps 50
    uv run python bench/gpu.py --shards DIR          # any slip-data shards; default: demo shards
    uv run python bench/gpu.py --models ViT-B-32 --cache-batch 0   # B/32 only, no 32k step

On demo shards (built once with `slip-data build` unless `--shards` names some), with
configs/vit-b-32-gpu.toml and random weights (`--pretrained` to start from others):
1. **Smoke**: `slip-train run`'s loop on CUDA in SLIP mode (bf16 autocast, pinned memory, loader
   workers): a few steps to a checkpoint, a resume that continues from it, and the open_clip export
   loaded back by open_clip, whose image embeddings must equal the trained encoder's.
2. **Step**: forward, losses, backward and AdamW for `slip` and `clip` (the anchor) on the same
   batches, already on the GPU, the two modes' steps interleaved; median of `--steps`. Samples/s
   per GPU and the SLIP/CLIP step-time ratio. For scale: open_clip's LAION-400M ViT-B/32 run
   (32 epochs of about 400M samples in about 36 h on 128 A100s) works out to ~772 samples/s/GPU.
3. **Planner**: ms per SLIP batch, one thread (the default) against torch's thread count, on idle
   cores and with as many spinning processes as loader workers (what the loop's planner meets).
4. **Loader**: images/s decoded, augmented and pinned by the workers alone (their start included),
   and with `data.decode = "cuda"` (the workers check the images and draw the crops, the main
   process decodes each batch with nvjpeg and crops and resizes it on the GPU), each against the
   samples/s every model's step consumes; the largest difference of the CUDA decode's pixels from
   the CPU decode's (`data.decode = "cpu"`) on the same batch.
5. **Loop**: the whole training loop, loader included, in both modes, and in SLIP mode with the
   graph sampled on the GPU (`sampler.device = "cuda"`) and with the images decoded on it
   (`data.decode = "cuda"`): samples/s and the share of the time the step waited for the loader.
6. **MFU** of every step and loop: samples/s x the step's FLOPs per sample (counted by torch's
   FlopCounterMode on the real model at the run's batch, bench/model_flops.py, which checks the
   encoders against open_clip's profile) / the device's dense bf16 peak (a table for H100, H200
   and A100; `--peak-tflops` for others). Steps and loops for each of `--models`; the GPU-sampled
   loop for the first only.
7. **32k**: one contrastive batch of `--cache-batch` products (random images, tokens and
   in-batch edges at the demo batches' degree) trained by gradient caching (slip_train.grad_cache,
   `--cache-rows` rows of encoder at a time), SLIP with both losses and the GAT over the whole
   batch: seconds per step, samples/s, MFU and peak memory.
8. **Syncs**: how often one eager step of the loop (`train_step` with the loop's own parts, on the
   loader's pinned batches) waits for the GPU, SLIP and CLIP, counted by torch's sync debug mode
   (`torch.cuda.set_sync_debug_mode("warn")`: a warning at each synchronizing op; torch says it
   does not catch them all), with the lines that made them.
"""

import argparse
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
    train_inputs,
)

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "gpu"
OPEN_CLIP_B32_PER_GPU = 32 * 400e6 / (36 * 3600 * 128)  # samples/s per A100, LAION-400M run


def gpu_config(
    shards: Path,
    mode: str,
    args: argparse.Namespace,
    steps: int,
    out: str,
    sampler: str = "cpu",
    model: str = "ViT-B-32-quickgelu",
    decode: str = "workers",
):
    from slip_train.config import load_config

    return load_config(
        ROOT / "configs" / "vit-b-32-gpu.toml",
        [f'data.shards="{shards}"', f'data.cache_dir="{WORK / "cache"}"',
         f"data.num_workers={args.workers}", f"sampler.batch_size={args.batch}",
         f'model.pretrained="{args.pretrained}"', f'loss.mode="{mode}"', f"train.steps={steps}",
         f'train.out_dir="{WORK / out}"', "train.checkpoint_every=100000",
         "train.tensorboard=false", f"train.compile={str(args.compile).lower()}",
         f"train.grad_checkpointing={str(args.grad_checkpointing).lower()}",
         f'sampler.device="{sampler}"', f'model.name="{model}"', f'data.decode="{decode}"'],
    )  # fmt: skip


def smoke(shards: Path, args: argparse.Namespace) -> dict:
    """Train, resume, export, load in open_clip, all on CUDA; returns what was checked."""
    import open_clip

    from slip_train.checkpoint import export_open_clip, load_checkpoint
    from slip_train.train import train

    shutil.rmtree(WORK / "smoke", ignore_errors=True)
    config = gpu_config(shards, "slip", args, 4, "smoke")
    config.train.checkpoint_every = 2
    first = train(config, show_progress=False)
    config.train.steps = 6
    resumed = train(config, resume="latest", show_progress=False)
    state = load_checkpoint(resumed.checkpoint)
    folder = export_open_clip(state, WORK / "smoke" / "export").parent
    model = open_clip.create_model(f"local-dir:{folder}", device="cuda").eval()
    trained = open_clip.create_model(state["model_name"], pretrained=None, device="cuda").eval()
    trained.load_state_dict(state["clip_state_dict"])
    images = torch.randn(4, 3, 224, 224, device="cuda")
    with torch.no_grad():
        same = torch.equal(model.encode_image(images), trained.encode_image(images))
    log = [json.loads(line) for line in (WORK / "smoke" / "log.jsonl").read_text().splitlines()]
    checks = {
        "steps": [r["step"] for r in log], "loss_finite": all(r["loss"] == r["loss"] for r in log),
        "first_checkpoint": first.checkpoint.name, "resumed_to": resumed.step,
        "export_equals_trained": same,
    }  # fmt: skip
    if checks["steps"] != list(range(1, 7)) or not (checks["loss_finite"] and same):
        raise SystemExit(f"bench/gpu: smoke test failed: {checks}")
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


def cached_step(name: str, *, batch: int, rows: int, degree: float, steps: int = 3) -> dict:
    """A SLIP step over one contrastive batch of `batch` by gradient caching, bf16: seconds,
    GFLOPs per sample (counted on one more step) and peak memory."""
    from functools import partial

    from slip_train.config import ModelConfig
    from slip_train.factory import build_model, param_groups
    from slip_train.grad_cache import cached_backward
    from slip_train.graph_head import neighbour_edges
    from slip_train.loss import training_loss

    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name), with_graph=True).model.cuda()
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay=0.2, lr=1e-5), fused=True)
    images, tokens, edges = random_batch(
        batch, image_size=224, context=model.clip.context_length, degree=degree, device="cuda"
    )
    inputs = (images, tokens, neighbour_edges(edges))  # as the loader prepares a batch's graph
    loss = partial(training_loss, structural_weight=0.5, structural_temperature=0.07)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        cached_backward(
            model, inputs, rows=rows, loss=loss, scale=1.0, world=1,
            autocast=torch.autocast("cuda", dtype=torch.bfloat16),
        )  # fmt: skip
        optimizer.step()

    torch.cuda.reset_peak_memory_stats()
    step()  # warm-up
    spent = []
    for _ in range(steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        spent.append(time.perf_counter() - start)
    with FlopCounterMode(display=False) as counter:
        step()
    seconds = statistics.median(spent)
    return {
        "batch": batch, "rows": rows, "edges": int(edges.shape[1]), "step_s": seconds,
        "samples_per_s": batch / seconds,
        "gflops_per_sample": counter.get_total_flops() / batch / 1e9,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
    }  # fmt: skip


def step_syncs(config, batches: list[dict]) -> dict:
    """Syncs with the GPU in one eager step of the loop (`train_step` with the loop's own parts:
    bf16, fused AdamW, the loader's pinned batches moved with non_blocking), after two warm-up
    steps: their count, and per op's line (with the innermost slip_train line that led there)."""
    from slip_train.distributed import Ranks
    from slip_train.train import _setup, train_step

    config.train.compile = False
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, help="slip-data shards (default: demo shards)")
    parser.add_argument("--products", type=int, default=2000, help="demo shards' size")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per mode")
    parser.add_argument("--loop-steps", type=int, default=60)
    parser.add_argument("--loader-batches", type=int, default=100, help="timed loader batches")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--pretrained", default="", help="open_clip tag or file; none by default")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--models", default="ViT-B-32,ViT-B-16", help="open_clip model names")
    parser.add_argument(
        "--peak-tflops", type=float, help="dense bf16 peak of a GPU not in the table"
    )
    parser.add_argument(
        "--cache-batch", type=int, default=32768, help="0: no gradient-caching step"
    )
    parser.add_argument("--cache-rows", type=int, default=1024, help="encoder rows at a time")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/gpu: skipped, torch sees no CUDA device (this benchmark needs a GPU)")
        return
    shards = args.shards or demo_shards(args.products)
    gpu = torch.cuda.get_device_name()
    print(
        f"{gpu}, torch {torch.__version__}, ViT-B-32 batch {args.batch}, bf16, {args.workers} "
        f"loader workers, compile {args.compile}, grad ckpt {args.grad_checkpointing}"
    )
    started = time.perf_counter()
    checks = smoke(shards, args)
    print(f"smoke  ok in {time.perf_counter() - started:.0f} s: {checks}")

    slip = gpu_config(shards, "slip", args, args.loop_steps, "loop-slip")
    clip = gpu_config(shards, "clip", args, args.loop_steps, "loop-clip")
    _, dataset, planner = train_inputs(slip, image_size=224)
    next(planner.epoch(0))  # numba's kernels loaded
    planning = {"idle": planner_ms(planner, 0), "busy": planner_ms(planner, args.workers)}
    for load, times in planning.items():
        spread = ", ".join(f"{key.replace('_', ' ')} {ms:.2f} ms" for key, ms in times.items())
        print(f"planner {load} cores ({args.workers if load == 'busy' else 0} spinning): {spread}")
    loader, batches = loader_rate(
        dataset, planner, workers=args.workers, batches=args.loader_batches, pin=True
    )
    batches = batches[:8]
    jpegs = decoding_in_main(dataset)
    cuda_loader, _ = loader_rate(
        jpegs, planner, workers=args.workers, batches=args.loader_batches, decode="cuda", pin=True
    )
    handed = jpegs.__getitems__(next(planner.epoch(0)))
    by_cuda, by_cpu = (
        jpegs.decode(handed, device=torch.device(d))["images"] for d in ("cuda", "cpu")
    )
    diff = (by_cuda.cpu().int() - by_cpu.int()).abs()
    print(
        f"loader {loader:.0f} images/s decoded, augmented and pinned by {args.workers} workers; "
        f"{cuda_loader:.0f} images/s decoded on CUDA (data.decode = cuda), whose pixels differ "
        f"from the CPU decode's by at most {diff.max()} (mean {diff.float().mean():.3f})"
    )
    edges = statistics.mean(b["edge_index"].shape[1] for b in batches)
    edgeless = [b | {"edge_index": b["edge_index"][:, :0]} for b in batches]  # as CLIP's
    syncs = {
        mode: step_syncs(gpu_config(shards, mode, args, 3, f"syncs-{mode}"), given)
        for mode, given in (("slip", batches), ("clip", edgeless))
    }
    for mode, counted in syncs.items():
        print(f"syncs  {mode} step (eager, torch's sync debug mode): {counted['syncs']} "
              f"{counted['where'] or ''}")  # fmt: skip
    peak = peak_tflops(gpu, args.peak_tflops)
    models, result = args.models.split(","), {}
    for number, name in enumerate(models):
        slip = gpu_config(shards, "slip", args, args.loop_steps, f"loop-slip-{name}", model=name)
        clip = gpu_config(shards, "clip", args, args.loop_steps, f"loop-clip-{name}", model=name)
        flops = {
            mode: step_flops(name, mode=mode, batch=args.batch, image_size=224,
                             degree=2 * edges / args.batch, device="cuda")["step"]
            for mode in ("slip", "clip")
        }  # fmt: skip
        times = step_times([slip, clip], batches, args.steps, "cuda", "bf16")
        slip_step, clip_step = (statistics.median(t) for t in times)
        rates = {"slip": args.batch / slip_step, "clip": args.batch / clip_step}
        print(f"step   {name}: clip {clip_step * 1e3:.1f} ms = {rates['clip']:.0f} samples/s, "
              f"{mfu(rates['clip'], flops['clip'], peak)}; slip {slip_step * 1e3:.1f} ms = "
              f"{rates['slip']:.0f} samples/s, {mfu(rates['slip'], flops['slip'], peak)} "
              f"({edges:.0f} edges/batch, {flops['slip']:.2f} GFLOPs/sample): ratio slip/clip "
              f"{slip_step / clip_step:.3f}")  # fmt: skip
        print(f"loader {name}: workers {loader:.0f}, CUDA decode {cuda_loader:.0f} images/s "
              f"against the {rates['slip']:.0f} samples/s the SLIP step consumes: ratios "
              f"{loader / rates['slip']:.2f}, {cuda_loader / rates['slip']:.2f}")  # fmt: skip
        configs = [("clip", clip), ("slip", slip)]
        if number == 0:
            sampled = gpu_config(
                shards, "slip", args, args.loop_steps, "loop-slip-gpu", "cuda", name
            )
            decoded = gpu_config(
                shards, "slip", args, args.loop_steps, "loop-slip-decode", model=name, decode="cuda"
            )
            configs += [("slip, sampled on GPU", sampled), ("slip, decoded on GPU", decoded)]
        loops = {mode: measure_loop(config, warmup=5) for mode, config in configs}
        for mode, (rate, waiting, workers_rate) in loops.items():
            base = mode.split(",")[0]  # the GPU-sampled loop runs SLIP's step
            print(f"loop   {name} {mode} {rate:.0f} samples/s per GPU, "
                  f"{mfu(rate, flops[base], peak)}, {rate / rates[base]:.1%} of the step's rate, "
                  f"{waiting:.1%} of the time waiting for the loader (its workers, a core each, "
                  f"would make {workers_rate:.0f} images/s); ratio to open_clip's ~"
                  f"{OPEN_CLIP_B32_PER_GPU:.0f}/GPU {rate / OPEN_CLIP_B32_PER_GPU:.2f}"
                  )  # fmt: skip
        result[name] = {
            "gflops_per_sample": flops, "clip_step_s": clip_step, "slip_step_s": slip_step,
            "step_ratio_slip_clip": slip_step / clip_step,
            "step_mfu": {m: rates[m] * flops[m] / peak / 1e3 for m in rates} if peak else None,
            "loop_samples_per_s": {mode: loop.samples_per_s for mode, loop in loops.items()},
            "loop_data_wait_share": {mode: loop.waiting for mode, loop in loops.items()},
            "loop_workers_images_per_s": {
                mode: loop.workers_images_per_s for mode, loop in loops.items()
            },
        }  # fmt: skip
    if args.cache_batch:
        cached = cached_step(
            models[0], batch=args.cache_batch, rows=args.cache_rows, degree=2 * edges / args.batch
        )
        print(f"32k    {models[0]} SLIP, batch {cached['batch']} by gradient caching "
              f"({cached['rows']} rows at a time, {cached['edges']} edges): "
              f"{cached['step_s']:.2f} s/step = {cached['samples_per_s']:.0f} samples/s, "
              f"{mfu(cached['samples_per_s'], cached['gflops_per_sample'], peak)} "
              f"({cached['gflops_per_sample']:.2f} GFLOPs/sample with the second encoder pass), "
              f"peak memory {cached['peak_memory_gb']:.1f} GB")  # fmt: skip
        result["cached_step"] = cached
    result |= {
        "gpu": gpu, "peak_tflops": peak, "torch": torch.__version__, "batch": args.batch,
        "workers": args.workers, "compile": args.compile,
        "grad_checkpointing": args.grad_checkpointing, "edges_per_batch": edges,
        "planner_ms": planning, "loader_images_per_s": loader, "step_syncs": syncs,
        "loader_cuda_decode_images_per_s": cuda_loader,
        "cuda_decode_pixel_diff": {"max": int(diff.max()), "mean": float(diff.float().mean())},
        "smoke": checks,
    }  # fmt: skip
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
