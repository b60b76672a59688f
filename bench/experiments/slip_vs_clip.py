"""Experiment: SLIP against CLIP on demo data, over catalogue sizes, caption-noise levels and
graph label-homophily levels, with several seeds and the same compute budget; mean and std.

    uv run python bench/experiments/slip_vs_clip.py                  # 2 sizes x 2 noise x 3 seeds
    uv run python bench/experiments/slip_vs_clip.py --sizes 1000 --noise 0,0.5 --homophily 0.7
    uv run python bench/experiments/slip_vs_clip.py --sizes 1000 --noise 0.2 --seeds 0 --steps 50
    uv run python bench/experiments/slip_vs_clip.py --jobs 4 --workers 3  # several runs at once
    uv run python bench/experiments/slip_vs_clip.py --summary-only   # tables from the runs on disk

A cell is (size, noise, homophily): demo shards built once with `slip-data build --source demo
--demo-products SIZE --caption-noise NOISE --demo-label-homophily H` (H: the share of a buyer's
purchases from their own subcategory; at 0, the default, co-purchases ignore the label). A run is
(cell, seed, mode): `slip-train run configs/demo-cpu.toml` with `train.seed`, `loss.mode`, and the
same steps and batch for both modes (the same number of encoder passes; SLIP adds its graph heads,
~4% of a step), then `slip-eval` on the test split: retrieval and classification (zero-shot;
4-shot linear probe and prototype, 3 draws), SLIP also with graph-refined embeddings
(`--structure`). The seed sets the model's initialisation, the batches and the augmentation; the
shards are the same for every seed of a cell.

Everything goes through the three commands (`python -m slip_data|slip_train|slip_eval`), so the
script imports none of the packages. Runs write under bench/_work/experiments/slip_vs_clip/; a run
whose results exist is skipped, so a stopped experiment resumes. The summary, mean ± std over seeds
(sample std) per cell and mode and the paired difference SLIP − CLIP per seed, goes to summary.md
and summary.json there, for the cells the arguments name.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "experiments" / "slip_vs_clip"
METRICS = {  # name in the summary: (result file, key in the result's metrics)
    "text→image R@1": ("retrieval", "image_retrieval_recall@1"),
    "image→text R@1": ("retrieval", "text_retrieval_recall@1"),
    "text→image MRR": ("retrieval", "image_retrieval_mrr"),
    "image→text MRR": ("retrieval", "text_retrieval_mrr"),
    "zero-shot acc1": ("classify", "acc1"),
    "4-shot probe acc1": ("classify", ("linear_probe", "4", "acc1_mean")),
    "4-shot prototype acc1": ("classify", ("prototype", "4", "acc1_mean")),
}


def cell_name(size: int, noise: float, homophily: float) -> str:
    return f"demo-{size}-noise{noise:g}" + (f"-homophily{homophily:g}" if homophily else "")


def build_shards(size: int, noise: float, homophily: float) -> Path:
    """The cell's demo shards, built once (a finished build is reused)."""
    out = WORK / "shards" / cell_name(size, noise, homophily)
    if not (out / "shards" / "manifest.json").is_file():
        command = [
            "slip_data",
            "build",
            "--source",
            "demo",
            "--categories",
            "all",
            "--quiet",
            "--demo-products",
            str(size),
            "--caption-noise",
            str(noise),
            "--demo-label-homophily",
            str(homophily),
            "--out",
            str(out),
        ]
        run_command(command, out.with_suffix(".log"))
    return out / "shards"


def run_command(args: list[str], log: Path, env: dict | None = None) -> None:
    """`python -m` one of the three commands, its output to `log`; a failure stops with its tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"{' '.join(args[:2])} failed ({log}): {tail[0]}")


def train_and_evaluate(shards: Path, run_dir: Path, seed: int, mode: str, args) -> None:
    """One run: train, then retrieval and classification on the test split; skipped when done."""
    if (run_dir / "classify.json").is_file():
        return
    started = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    overrides = [
        f'data.shards="{shards}"',
        f'data.cache_dir="{run_dir / "cache"}"',
        f"data.num_workers={args.workers}",
        f'loss.mode="{mode}"',
        f"train.seed={seed}",
        f"train.steps={args.steps}",
        f'train.out_dir="{run_dir / "train"}"',
        f'train.device="{args.device}"',
        f"train.checkpoint_every={args.steps}",
    ]
    checkpoint = run_dir / "train" / "checkpoints" / f"step-{args.steps:08d}.pt"
    if not checkpoint.is_file():
        resume = ["--resume", "latest"] if (run_dir / "train" / "checkpoints").is_dir() else []
        command = ["slip_train", "run", str(ROOT / "configs" / "demo-cpu.toml"), "--quiet", *resume]
        command += [item for override in overrides for item in ("--set", override)]
        run_command(command, run_dir / "train.log", env)
    structure = ["--structure"] if mode == "slip" else []
    common = [
        "--ckpt",
        str(checkpoint),
        "--shards",
        str(shards),
        "--split",
        "test",
        "--quiet",
        "--cache-dir",
        str(run_dir / "eval-cache"),
        *structure,
    ]
    run_command(
        ["slip_eval", "retrieval", *common, "--out", str(run_dir / "retrieval.json")],
        run_dir / "retrieval.log",
        env,
    )
    run_command(
        [
            "slip_eval",
            "classify",
            *common,
            "--shots",
            "0,4",
            "--seeds",
            "3",
            "--out",
            str(run_dir / "classify.json.tmp"),
        ],
        run_dir / "classify.log",
        env,
    )
    seconds = time.perf_counter() - started
    (run_dir / "run.json").write_text(json.dumps({"device": args.device, "seconds": seconds}))
    (run_dir / "classify.json.tmp").replace(run_dir / "classify.json")  # the run's done-mark


def read_metrics(run_dir: Path) -> dict[str, float]:
    """The summary's metrics of one run; `graph:` ones from graph-refined embeddings (SLIP)."""
    results = {
        name: json.loads((run_dir / f"{name}.json").read_text())
        for name in ("retrieval", "classify")
    }
    found = {}
    for variant, prefix in (("metrics", ""), ("graph_metrics", "graph: ")):
        for name, (task, key) in METRICS.items():
            result = results[task]
            if isinstance(key, tuple):
                method, k, field = key
                value = result.get("fewshot", {}).get(variant, {}).get(method, {}).get(k, {})
                value = value.get(field)
            else:
                value = result.get(variant, {}).get(key)
            if value is not None:
                found[prefix + name] = value
    return found


def mean_std(values: list[float]) -> dict[str, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def summarise(cells: list[tuple[int, float, float]], seeds: list[int]) -> dict:
    """Per cell: mean ± std over seeds of each metric for CLIP, SLIP, SLIP graph-refined, and the
    paired difference SLIP − CLIP (same seed, same shards)."""
    summary = {}
    for size, noise, homophily in cells:
        runs = {
            (mode, seed): WORK / "runs" / cell_name(size, noise, homophily) / f"{mode}-seed{seed}"
            for mode in ("slip", "clip")
            for seed in seeds
        }
        done = [
            s
            for s in seeds
            if all((runs[m, s] / "classify.json").is_file() for m in ("slip", "clip"))
        ]
        if not done:
            continue
        metrics = {key: read_metrics(path) for key, path in runs.items() if key[1] in done}
        rows = {}
        for name in METRICS:
            clip = [metrics["clip", s][name] for s in done]
            slip = [metrics["slip", s][name] for s in done]
            row = {
                "clip": mean_std(clip),
                "slip": mean_std(slip),
                "slip_minus_clip": mean_std([a - b for a, b in zip(slip, clip, strict=True)]),
            }
            graph = [metrics["slip", s].get("graph: " + name) for s in done]
            if all(v is not None for v in graph):
                row["slip_graph"] = mean_std(graph)
            rows[name] = row
        devices = sorted(
            {
                json.loads((path / "run.json").read_text())["device"]
                for key, path in runs.items()
                if key[1] in done
            }
        )
        summary[cell_name(size, noise, homophily)] = {
            "devices": devices,
            "size": size,
            "noise": noise,
            "homophily": homophily,
            "seeds": done,
            "metrics": rows,
        }
    return summary


def markdown(summary: dict, args) -> str:
    def cell(stats: dict | None) -> str:
        return "–" if stats is None else f"{stats['mean']:.3f} ± {stats['std']:.3f}"

    lines = [
        f"SLIP against CLIP: slip-tiny, {args.steps} steps of 128, test split; mean ± std over "
        "seeds (sample std); SLIP − CLIP paired by seed.",
        "",
    ]
    for entry in summary.values():
        lines += [
            f"### {entry['size']:,} products, caption noise {entry['noise']:g}, label homophily "
            f"{entry['homophily']:g} "
            f"(seeds {', '.join(map(str, entry['seeds']))}; trained on "
            f"{', '.join(entry['devices'])})",
            "",
            "| metric | CLIP | SLIP | SLIP − CLIP | SLIP, graph-refined |",
            "|---|---|---|---|---|",
        ]
        for metric, row in entry["metrics"].items():
            lines.append(
                f"| {metric} | {cell(row['clip'])} | {cell(row['slip'])} | "
                f"{cell(row['slip_minus_clip'])} | {cell(row.get('slip_graph'))} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000", help="demo products per cell")
    parser.add_argument("--noise", default="0,0.5", help="caption-noise levels")
    parser.add_argument("--homophily", default="0", help="demo label-homophily levels")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=500, help="steps of 128 for each model")
    parser.add_argument("--device", default="auto", help="train.device: auto, cpu or cuda")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--workers", type=int, default=2, help="loader workers per run")
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="OMP_NUM_THREADS per run",
    )
    parser.add_argument("--summary-only", action="store_true", help="no runs, only the tables")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    noises = [float(p) for p in args.noise.split(",")]
    homophilies = [float(h) for h in args.homophily.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    cells = [(n, p, h) for n in sizes for p in noises for h in homophilies]
    started = time.perf_counter()
    if not args.summary_only:
        shards = {cell: build_shards(*cell) for cell in cells}
        plan = [(cell, seed, mode) for cell in cells for seed in seeds for mode in ("slip", "clip")]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [
                pool.submit(
                    train_and_evaluate,
                    shards[cell],
                    WORK / "runs" / cell_name(*cell) / f"{mode}-seed{seed}",
                    seed,
                    mode,
                    args,
                )
                for cell, seed, mode in plan
            ]
            for number, future in enumerate(futures, 1):
                future.result()
                print(
                    f"[{time.perf_counter() - started:6.0f} s] {number}/{len(plan)} runs done",
                    flush=True,
                )
    summary = summarise(cells, seeds)
    text = markdown(summary, args)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (WORK / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
