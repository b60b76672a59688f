"""Experiment: SLIP against CLIP on demo data, one axis at a time around a main cell: the start
(a pretrained CLIP fine-tuned, the paper's protocol, or from scratch), catalogue size, caption
noise, the co-purchase graph's label homophily, the structural loss weight and the batch size.
Several seeds, the same compute for both modes, SLIP − CLIP paired by seed with a 95% interval.

    uv run python bench/experiments/slip_vs_clip.py --plan           # cells, runs, CPU time
    uv run python bench/experiments/slip_vs_clip.py                  # the default grid
    uv run python bench/experiments/slip_vs_clip.py --jobs 2 --threads 1  # two runs at once
    uv run python bench/experiments/slip_vs_clip.py --seeds 0,1,2,3,4 --start pretrained \\
        --homophily 0.5 --weights 0.5 --batches 128                  # the main cell, 5 seeds
    uv run python bench/experiments/slip_vs_clip.py --summary-only --seeds 0,1,2,3,4  # tables

Cells. The main cell (`--main`) is the realistic demo setting: fine-tuned from the pretrained
start, 11,000 products (at least 1,000 in the test split, so one point of R@1 is resolved),
caption noise 0.2 (the demo's default), label homophily 0.5, structural weight 0.5, batch 128.
Each axis option (`--start`, `--sizes`, `--noise`, `--homophily`, `--weights`, `--batches`) lists
levels; a level makes a cell that differs from the main cell on that axis alone.

Shards. One demo build per (size, noise, homophily): `slip-data build --source demo
--demo-products SIZE --caption-noise NOISE --demo-label-homophily H`, the generator's mean degree
(8) held. The summary gives each cell's graph as its manifest measured it (edge homophily, the
share of edges whose two products share the label, and its chance-adjusted form; mean degree),
not the option's value.

The pretrained start. No model hub is reachable, so the experiment makes its own CLIP as a user's
`openai` weights would be: slip-tiny trained in `clip` mode on a demo catalogue of other products
(`--pretrain-demo-seed`, another generator seed: other ASINs, images and titles; checked disjoint
from every cell's shards by parent_asin and image sha256), exported with `slip-train export`; both
modes then fine-tune from that file (`model.pretrained`) with configs/demo-finetune-cpu.toml.
From scratch is configs/demo-cpu.toml. docs/method.md says why.

Runs and compute. A run is (cell, mode, seed): `slip-train run` with `train.seed` and
`loss.mode`, then `slip-eval` retrieval and classification (zero-shot; 4-shot linear probe and
prototype, 3 draws) and link prediction (held-out co-purchases between test products: cosine
and a trained GraphSAGE) on the test split, SLIP also graph-refined (`--structure`); with
`--touching` also link prediction of every held-out co-purchase with an end in the test split
(`--edges touching`: thousands of edges where `within` has a few hundred); with `--nodeclass`
also GNN node classification of the test products (GraphSAGE and an MLP over the frozen
embeddings of every product, supervised and 4-shot: MAGB's protocol). In a cell both modes train
the same steps at the same batch size (the same encoder passes; SLIP adds its GATs).
Along the batch axis the products seen are held: steps × batch = `--steps` × the main batch.
CLIP does not depend on the structural weight, so the weight cells share the main cell's CLIP
runs; weight 0 is SLIP's batches with CLIP's loss, which separates the batches from the loss. The
seed sets the batches, the augmentation and what is initialised at random (from scratch: all of
it; fine-tuned: the graph heads).

Everything goes through the three commands (`python -m slip_data|slip_train|slip_eval`), so the
script imports none of the packages. Work goes under bench/_work/experiments/slip_vs_clip/; a
finished build, pretraining or run is skipped and a stopped one resumes. The summary (summary.md,
summary.json there) covers the cells the arguments name, with the seeds done: per cell and mode
mean ± std over seeds, and the paired difference SLIP − CLIP with its 95% t-interval; a note names
the metrics whose paired spread exceeds the mean difference (more seeds: `--seeds 0,1,2,3,4`).
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pyarrow.dataset as ds
from scipy.stats import t as student_t

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "experiments" / "slip_vs_clip"
CONFIGS = {  # a cell's start: its slip-train config
    "pretrained": ROOT / "configs" / "demo-finetune-cpu.toml",
    "scratch": ROOT / "configs" / "demo-cpu.toml",
}
METRICS = {  # name in the summary: (result file, key in the result's metrics)
    "text→image R@1": ("retrieval", "image_retrieval_recall@1"),
    "image→text R@1": ("retrieval", "text_retrieval_recall@1"),
    "text→image MRR": ("retrieval", "image_retrieval_mrr"),
    "image→text MRR": ("retrieval", "text_retrieval_mrr"),
    "zero-shot acc1": ("classify", "acc1"),
    "4-shot probe acc1": ("classify", ("linear_probe", "4", "acc1_mean")),
    "4-shot prototype acc1": ("classify", ("prototype", "4", "acc1_mean")),
    "link MRR, fused": ("linkpred", "fused_mrr"),
    "link MRR, SAGE": ("linkpred", "sage_mrr"),
    "link MRR touching, fused": ("linkpred_touching", "fused_mrr"),
    "link MRR touching, SAGE": ("linkpred_touching", "sage_mrr"),
    "node acc, SAGE": ("nodeclass", "sage_acc"),
    "node acc, MLP": ("nodeclass", "mlp_acc"),
    "node 4-shot acc, SAGE": ("nodeclass", ("sage", "4", "acc_mean")),
}
TASKS = ("retrieval", "classify", "linkpred")  # each run's result files
OPTIONAL_TASKS = ("linkpred_touching", "nodeclass")  # with --touching, --nodeclass
NODECLASS = ["--models", "sage,mlp", "--shots", "4", "--seeds", "3"]  # with --nodeclass
MAIN = "start=pretrained,size=11000,noise=0.2,homophily=0.5,weight=0.5,batch=128,variant=paper"
NO_GATE = "sampler.edge_gate=none"  # the variants measured before the gate, as they were
VARIANTS = {  # SLIP's variants (docs/method.md, "A SLIP that does no harm"): their config keys,
    # each set in full, whatever slip-train's defaults
    "paper": [NO_GATE, "loss.structural_gradient=encoders", "loss.neighbours_as_negatives=true"],
    "soft": [NO_GATE, "loss.structural_gradient=encoders", "loss.neighbours_as_negatives=true",
             "loss.positives=soft", "loss.neighbour_mass=0.5"],
    "heads": [NO_GATE, "loss.structural_gradient=heads", "loss.neighbours_as_negatives=true"],
    "headlr10": [NO_GATE, "loss.structural_gradient=encoders", "loss.neighbours_as_negatives=true",
                 "optim.graph_head_lr_scale=10"],
    "headsmask": [NO_GATE, "loss.structural_gradient=heads", "loss.neighbours_as_negatives=false"],
    "mask": [NO_GATE, "loss.structural_gradient=encoders", "loss.neighbours_as_negatives=false"],
    "headsbal": [NO_GATE, "loss.structural_gradient=heads", "loss.neighbours_as_negatives=false",
                 "sampler.seeds=balanced"],
    "headsiw": [NO_GATE, "loss.structural_gradient=heads", "loss.neighbours_as_negatives=false",
                "loss.anchor_weights=inverse_appearances"],
    "headsgate": ["loss.structural_gradient=heads", "loss.neighbours_as_negatives=false",
                  "sampler.edge_gate=similarity", "sampler.edge_gate_quantile=0.95"],
    "headscheck": ["loss.structural_gradient=heads", "loss.neighbours_as_negatives=false",
                   "sampler.edge_gate=graph", "sampler.edge_gate_quantile=0.95"],
}  # fmt: skip
# CPU seconds on this project's 2-core machine, one thread a run (slip-tiny): for --plan only.
BUILD_S_PER_PRODUCT = 0.0023  # 25 s for 11,000 products
STEP_S_PER_SAMPLE = 0.4 / 128  # a training step of 128: 0.43 s beside another busy process
RUN_OVERHEAD_S = 20  # starting slip-train and slip-eval
EVAL_S_PER_PRODUCT = 0.0045  # retrieval and classification on a 10% test split: 45 s at 10,000
LINKPRED_S = 15  # slip-eval linkpred with a SAGE predictor on a test split of 1,000 products
LINKPRED_TOUCHING_S = 80  # the same with --edges touching: about 4,000 held-out edges
NODECLASS_S = 120  # slip-eval nodeclass with NODECLASS and --structure on 11,000 products


class Cell(NamedTuple):
    start: str  # pretrained or scratch
    size: int
    noise: float
    homophily: float
    weight: float
    batch: int
    variant: str  # SLIP's variant: a key of VARIANTS


AXES = {  # axis: (option, parse one level)
    "start": ("--start", str),
    "size": ("--sizes", int),
    "noise": ("--noise", float),
    "homophily": ("--homophily", float),
    "weight": ("--weights", float),
    "batch": ("--batches", int),
    "variant": ("--variants", str),
}


def shards_name(size: int, noise: float, homophily: float) -> str:
    return f"demo-{size}-noise{noise:g}-homophily{homophily:g}"


def cell_name(cell: Cell) -> str:
    shards = shards_name(cell.size, cell.noise, cell.homophily)
    variant = "" if cell.variant == "paper" else f"-{cell.variant}"
    return f"{cell.start}-{shards}-weight{cell.weight:g}-batch{cell.batch}{variant}"


class Grid:
    """The cells the arguments name, their runs and where each lives."""

    def __init__(self, args) -> None:
        self.args = args
        self.main = parse_main(args.main)
        self.seeds = [int(s) for s in args.seeds.split(",")]
        optional = {"linkpred_touching": args.touching, "nodeclass": args.nodeclass}
        self.tasks = TASKS + tuple(task for task, chosen in optional.items() if chosen)
        self.cells = {self.main: list(AXES)}  # each cell with the axes it lies on
        for axis, (option, parse) in AXES.items():
            for text in getattr(args, option.lstrip("-").replace("-", "_")).split(","):
                self.cells.setdefault(self.main._replace(**{axis: parse(text)}), [axis])
        # a variant is measured at every homophily level: whether it harms where neighbours are
        # unrelated and keeps the gain where they share semantics is the question it answers
        levels = [cell for cell, axes in self.cells.items() if "homophily" in axes]
        for variant in {cell.variant for cell, axes in self.cells.items() if "variant" in axes}:
            for cell in levels:
                axes = self.cells.setdefault(cell._replace(variant=variant), [])
                axes += [] if "homophily" in axes else ["homophily"]
        for cell in self.cells:
            if cell.start not in CONFIGS:
                raise SystemExit(f"--start: {cell.start!r} is not one of {', '.join(CONFIGS)}")
            if cell.variant not in VARIANTS:
                known = ", ".join(VARIANTS)
                raise SystemExit(f"--variants: {cell.variant!r} is not one of {known}")
        # the pretraining catalogue: the generator's default graph, which CLIP never reads
        catalogue = f"demo-{args.pretrain_products}-noise{self.main.noise:g}"
        self.pretraining_build = WORK / "shards" / f"{catalogue}-seed{args.pretrain_demo_seed}"
        self.pretraining = f"{self.pretraining_build.name}-steps{args.pretrain_steps}"

    def steps(self, cell: Cell) -> int:
        """The main cell's products seen, at the cell's batch size."""
        return max(1, round(self.args.steps * self.main.batch / cell.batch))

    def build(self, cell: Cell) -> Path:
        """The cell's `slip-data build` folder."""
        return WORK / "shards" / shards_name(cell.size, cell.noise, cell.homophily)

    def run_dir(self, cell: Cell, mode: str, seed: int) -> Path:
        """A fine-tuned run's path names its pretraining; a CLIP run's leaves out the structural
        weight it does not use."""
        start = f"pretrained-{self.pretraining}" if cell.start == "pretrained" else cell.start
        shards = shards_name(cell.size, cell.noise, cell.homophily)
        group = f"{shards}-batch{cell.batch}-steps{self.steps(cell)}"
        variant = "" if cell.variant == "paper" else f"-{cell.variant}"
        slip = f"slip-weight{cell.weight:g}{variant}-seed{seed}"
        name = slip if mode == "slip" else f"clip-seed{seed}"
        return WORK / "runs" / start / group / name

    def todo(self) -> list[tuple[Cell, str, int]]:
        """The runs not done, (cell, mode, seed); a CLIP run shared by cells that differ only in
        the structural weight or SLIP's variant appears once."""
        runs = {}
        for cell in self.cells:
            for seed in self.seeds:
                for mode in ("slip", "clip"):
                    runs.setdefault(self.run_dir(cell, mode, seed), (cell, mode, seed))
        return [
            run
            for out, run in runs.items()
            if not all((out / f"{task}.json").is_file() for task in self.tasks)
        ]


def parse_main(text: str) -> Cell:
    values = dict(item.partition("=")[::2] for item in text.split(","))
    if set(values) != set(AXES):
        raise SystemExit(f"--main: give each of {', '.join(AXES)} once, as axis=value")
    return Cell(**{axis: parse(values[axis]) for axis, (_, parse) in AXES.items()})


def build_shards(out: Path, options: list[str]) -> None:
    """Demo shards built with `options` into `out`, once (a finished build is reused)."""
    if not (out / "shards" / "manifest.json").is_file():
        command = ["slip_data", "build", "--source", "demo", "--categories", "all", "--quiet"]
        run_command([*command, *options, "--out", str(out)], out.parent / f"{out.name}.log")


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


def train(*, config: Path, out: Path, steps: int, overrides: list[str], env: dict) -> Path:
    """`slip-train run` into `out` (resumed when it has checkpoints); its last checkpoint."""
    checkpoint = out / "train" / "checkpoints" / f"step-{steps:08d}.pt"
    if not checkpoint.is_file():
        resume = ["--resume", "latest"] if checkpoint.parent.is_dir() else []
        overrides = [
            f'data.cache_dir="{WORK / "cache"}"',  # one node cache per shard set, shared
            f"train.steps={steps}",
            f"train.checkpoint_every={min(steps, 500)}",  # a stopped run resumes from there
            f'train.out_dir="{out / "train"}"',
            *overrides,
        ]
        command = ["slip_train", "run", str(config), "--quiet", *resume]
        command += [item for override in overrides for item in ("--set", override)]
        run_command(command, out / "train.log", env)
    return checkpoint


def pretrain(grid: Grid) -> Path:
    """The pretrained start: CLIP trained on a catalogue of other products (checked disjoint
    from every cell's), exported as open_clip loads it; its weights file."""
    args = grid.args
    options = ["--demo-products", str(args.pretrain_products), "--caption-noise",
               str(grid.main.noise), "--demo-seed", str(args.pretrain_demo_seed)]  # fmt: skip
    shards = grid.pretraining_build
    build_shards(shards, options)
    for cell in grid.cells:
        shared = overlap(shards, grid.build(cell))
        if shared["products"] or shared["images"]:
            raise SystemExit(f"{grid.build(cell)} shares products or images with {shards}")
    out = WORK / "pretrain" / grid.pretraining
    weights = out / "export" / "open_clip_pytorch_model.bin"
    if not weights.is_file():
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads * args.jobs))
        overrides = [
            f'data.shards="{shards}"',
            f"data.num_workers={args.workers}",
            'loss.mode="clip"',
            f'train.device="{args.device}"',
        ]
        checkpoint = train(config=CONFIGS["scratch"], out=out, steps=args.pretrain_steps,
                           overrides=overrides, env=env)  # fmt: skip
        export = ["slip_train", "export", str(checkpoint), "--out", str(out / "export")]
        run_command(export, out / "export.log")
    return weights


def train_and_evaluate(grid: Grid, run: tuple[Cell, str, int], weights: Path | None) -> None:
    """One run: train (fine-tuning `weights` in a pretrained cell), then retrieval,
    classification and link prediction on the test split, and with `--nodeclass` GNN node
    classification; what is done is skipped, so a run finished before a task was added gets only
    that task."""
    cell, mode, seed = run
    args, out, shards = grid.args, grid.run_dir(*run), grid.build(cell)
    started = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    overrides = [
        f'data.shards="{shards}"',
        f"data.num_workers={args.workers}",
        f"sampler.batch_size={cell.batch}",
        f'loss.mode="{mode}"',
        f"train.seed={seed}",
        f'train.device="{args.device}"',
    ]
    if mode == "slip":
        overrides += [f"loss.structural_weight={cell.weight}", *VARIANTS[cell.variant]]
    if cell.start == "pretrained":
        overrides.append(f'model.pretrained="{weights}"')
    checkpoint = train(
        config=CONFIGS[cell.start], out=out, steps=grid.steps(cell), overrides=overrides, env=env
    )
    common = ["--ckpt", str(checkpoint), "--shards", str(shards), "--split", "test", "--quiet",
              "--cache-dir", str(out / "eval-cache"),
              *(["--structure"] if mode == "slip" else [])]  # fmt: skip
    if not (out / "classify.json").is_file():
        retrieval = ["slip_eval", "retrieval", *common, "--out", str(out / "retrieval.json")]
        run_command(retrieval, out / "retrieval.log", env)
        classify = ["slip_eval", "classify", *common, "--shots", "0,4", "--seeds", "3",
                    "--out", str(out / "classify.json.tmp")]  # fmt: skip
        run_command(classify, out / "classify.log", env)
        seconds = time.perf_counter() - started
        (out / "run.json").write_text(json.dumps({"device": args.device, "seconds": seconds}))
        (out / "classify.json.tmp").replace(out / "classify.json")  # training's done-mark
    if not (out / "linkpred.json").is_file():  # slip-eval writes it whole (atomic)
        links = ["slip_eval", "linkpred", *common, "--predictors", "sage",
                 "--out", str(out / "linkpred.json")]  # fmt: skip
        run_command(links, out / "linkpred.log", env)
    if "linkpred_touching" in grid.tasks and not (out / "linkpred_touching.json").is_file():
        links = ["slip_eval", "linkpred", *common, "--predictors", "sage", "--edges", "touching",
                 "--out", str(out / "linkpred_touching.json")]  # fmt: skip
        run_command(links, out / "linkpred_touching.log", env)
    if "nodeclass" in grid.tasks and not (out / "nodeclass.json").is_file():
        nodes = ["slip_eval", "nodeclass", "--ckpt", str(checkpoint), "--shards", str(shards),
                 *NODECLASS, "--cache-dir", str(out / "eval-cache"), "--quiet",
                 *(["--structure"] if mode == "slip" else []),
                 "--out", str(out / "nodeclass.json")]  # fmt: skip
        run_command(nodes, out / "nodeclass.log", env)


def read_nodes(build: Path, columns: list[str]) -> dict[str, list]:
    """Columns of a build's node files (docs/shard-format.md)."""
    shards = build / "shards"
    manifest = json.loads((shards / "manifest.json").read_text())
    files = [str(shards / f["path"]) for f in manifest["files"] if f["kind"] == "nodes"]
    return ds.dataset(files, format="parquet").to_table(columns=columns).to_pydict()


def graph_stats(build: Path) -> dict:
    """The co-purchase graph as built, from its manifest (docs/shard-format.md): label homophily
    (`edge`, the share of edges whose two products share the label; `adjusted`, 0 where edges
    ignore the label), mean degree, and the test split's size."""
    manifest = json.loads((build / "shards" / "manifest.json").read_text())
    homophily = manifest.get("homophily", {})
    return {
        "edge_homophily": homophily.get("edge"),
        "adjusted_homophily": homophily.get("adjusted"),
        "mean_degree": 2 * manifest["counts"]["edges"] / manifest["counts"]["nodes"],
        "test_products": manifest["split_sizes"]["test"],
    }


@cache
def catalogue(build: Path) -> tuple[set, set, set]:
    nodes = read_nodes(build, ["parent_asin", "image_sha256", "title"])
    return set(nodes["parent_asin"]), set(nodes["image_sha256"]), set(nodes["title"])


def overlap(pretraining: Path, build: Path) -> dict:
    """What a cell shares with the pretraining catalogue: products and images (must be none),
    and the share of its test titles that also occur there (the demo's title templates and
    generic titles are common to every seed)."""
    asins, images, titles = catalogue(pretraining)
    nodes = read_nodes(build, ["parent_asin", "image_sha256", "title", "split"])
    test = [
        title
        for title, split in zip(nodes["title"], nodes["split"], strict=True)
        if split == "test"
    ]
    return {
        "products": len(asins & set(nodes["parent_asin"])),
        "images": len(images & set(nodes["image_sha256"])),
        "test_titles": sum(title in titles for title in test) / max(1, len(test)),
    }


def read_metrics(out: Path) -> dict[str, float]:
    """The summary's metrics of one run; `graph:` ones from graph-refined embeddings (SLIP)."""
    results = {
        name: json.loads((out / f"{name}.json").read_text())
        for name in (*TASKS, *OPTIONAL_TASKS)
        if (out / f"{name}.json").is_file()  # link prediction came later than the first runs
    }
    found = {}
    for variant, prefix in (("metrics", ""), ("graph_metrics", "graph: ")):
        for name, (task, key) in METRICS.items():
            result = results.get(task, {})
            if isinstance(key, tuple):
                method, k, field = key
                value = result.get("fewshot", {}).get(variant, {}).get(method, {}).get(k, {})
                value = value.get(field)
            else:
                value = result.get(variant, {}).get(key)
            if value is not None:
                found[prefix + name] = value
    return found


def mean_std(values: list[float]) -> dict:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def paired(differences: list[float]) -> dict:
    """Mean ± std of the per-seed differences and the 95% t-interval of their mean."""
    return with_interval(mean_std(differences))


def with_interval(stats: dict) -> dict:
    """`stats` with the 95% t-interval of its mean, mean ± t(0.975, n−1)·s/√n; none from one
    seed."""
    n = stats["n"]
    half = float(student_t.ppf(0.975, n - 1)) * stats["std"] / math.sqrt(n) if n > 1 else None
    return stats | {"ci95": None if half is None else [stats["mean"] - half, stats["mean"] + half]}


def pooled(groups: list[dict]) -> dict:
    """Mean ± std over the seeds of several groups of other seeds, exactly from each group's n,
    mean and std (the within-group squares plus each group's offset from the pooled mean)."""
    n = sum(group["n"] for group in groups)
    mean = sum(group["n"] * group["mean"] for group in groups) / n
    squares = sum(
        (group["n"] - 1) * group["std"] ** 2 + group["n"] * (group["mean"] - mean) ** 2
        for group in groups
    )
    return {"mean": mean, "std": math.sqrt(squares / (n - 1)) if n > 1 else 0.0, "n": n}


def unresolved(rows: dict, seeds: int) -> list[str]:
    """The metrics whose paired std exceeds |mean|: more seeds are due."""
    return [
        name
        for name, row in rows.items()
        if seeds > 1 and abs(row["slip_minus_clip"]["mean"]) < row["slip_minus_clip"]["std"]
    ]


def pool_with(summary: dict, earlier: dict) -> dict:
    """`earlier` (a summary whose runs are no longer on disk) with this summary's cells pooled
    into it: a cell named in both counts the seeds of both, as one run of them all would. Only
    the same cell pools: the same graph measured on its build made again, and other seeds.
    Metrics measured in one of the two alone are left out of the pooled cell; a pooled cell lies
    on the axes of this run's grid (whose main cell the tables name)."""
    cells = dict(earlier)
    for name, entry in summary.items():
        before = earlier.get(name)
        if before is None:
            cells[name] = entry
            continue
        both = sorted(set(before["seeds"]) & set(entry["seeds"]))
        if both:
            raise SystemExit(f"--pool-with: {name}: seeds {both} are in both summaries")
        same_start = before.get("pretraining") == entry.get("pretraining")
        if before["graph"] != entry["graph"] or not same_start:
            raise SystemExit(
                f"--pool-with: {name}: its graph or pretraining differs from the earlier summary's"
                f" ({entry['graph']} against {before['graph']}): not the same cell"
            )
        rows = {
            metric: {
                key: pooled([before["metrics"][metric][key], stats])
                for key, stats in row.items()
                if key in before["metrics"][metric]
            }
            for metric, row in entry["metrics"].items()
            if metric in before["metrics"]
        }
        for row in rows.values():
            row["slip_minus_clip"] = with_interval(row["slip_minus_clip"])
        seeds = sorted(before["seeds"] + entry["seeds"])
        cells[name] = before | {
            "axes": entry["axes"],
            "seeds": seeds,
            "devices": sorted(set(before["devices"]) | set(entry["devices"])),
            "metrics": rows,
            "unresolved": unresolved(rows, len(seeds)),
        }
    return cells


def summarise(grid: Grid) -> dict:
    """Per cell with finished seeds: its axes, compute and measured graph, and per metric mean ±
    std for CLIP, SLIP and SLIP graph-refined, the paired difference SLIP − CLIP (same seed, same
    shards) with its interval, and the metrics whose paired std exceeds |mean| (`unresolved`)."""
    summary = {}
    for cell, axes in grid.cells.items():
        runs = {(m, s): grid.run_dir(cell, m, s) for m in ("slip", "clip") for s in grid.seeds}
        done = [
            s
            for s in grid.seeds
            if all((runs[m, s] / "classify.json").is_file() for m in ("slip", "clip"))
        ]
        if not done:
            continue
        metrics = {key: read_metrics(path) for key, path in runs.items() if key[1] in done}
        rows = {}
        for name in METRICS:
            if not all(name in metrics[m, s] for m in ("slip", "clip") for s in done):
                continue  # a metric some of the cell's runs lack: not paired, not shown
            clip = [metrics["clip", s][name] for s in done]
            slip = [metrics["slip", s][name] for s in done]
            rows[name] = {
                "clip": mean_std(clip),
                "slip": mean_std(slip),
                "slip_minus_clip": paired([a - b for a, b in zip(slip, clip, strict=True)]),
            }
            graph = [metrics["slip", s].get("graph: " + name) for s in done]
            if all(v is not None for v in graph):
                rows[name]["slip_graph"] = mean_std(graph)
        devices = {
            json.loads((path / "run.json").read_text())["device"]
            for key, path in runs.items()
            if key[1] in done
        }
        entry = {
            "axes": axes,
            **cell._asdict(),
            "steps": grid.steps(cell),
            "seeds": done,
            "devices": sorted(devices),
            "graph": graph_stats(grid.build(cell)),
            "metrics": rows,
            "unresolved": unresolved(rows, len(done)),
        }
        if cell.start == "pretrained":
            entry["pretraining"] = grid.pretraining
            entry["pretraining_overlap"] = overlap(grid.pretraining_build, grid.build(cell))
        summary[cell_name(cell)] = entry
    return summary


def signed(value: float) -> str:
    return f"{value:+.3f}"


def interval(stats: dict) -> str:
    ci = stats["ci95"]
    return "–" if ci is None else f"[{signed(ci[0])}, {signed(ci[1])}]"


def markdown(summary: dict, grid: Grid) -> str:
    """An overview per axis (SLIP − CLIP with its interval at each level), then each cell."""

    def spread(stats: dict | None) -> str:
        return "–" if stats is None else f"{stats['mean']:.3f} ± {stats['std']:.3f}"

    def homophily(entry: dict) -> str:
        edge, adjusted = entry["graph"]["edge_homophily"], entry["graph"]["adjusted_homophily"]
        return " ".join(["–" if edge is None else f"{edge:.3f}",
                         "" if adjusted is None else f"({adjusted:.3f})"]).strip()  # fmt: skip

    def level(value: object) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    lines = [
        f"SLIP against CLIP: slip-tiny, {grid.args.steps} steps of {grid.main.batch} in the main "
        f"cell ({cell_name(grid.main)}), the same steps and batch for both modes in a cell; "
        "test split; mean ± sample std over seeds; SLIP − CLIP paired by seed, with its 95% "
        "t-interval.",
        "",
        "## SLIP − CLIP by axis (paired mean [95% interval]; the other axes at the main cell)",
        "",
    ]
    order = list(VARIANTS)
    for axis in AXES:
        entries = sorted(
            (e for e in summary.values() if axis in e["axes"]),
            key=lambda e: (order.index(e["variant"]), e[axis]),
        )
        if len(entries) < 2:
            continue
        variants = axis != "variant" and len({e["variant"] for e in entries}) > 1
        lines += [
            f"### {axis}",
            "",
            f"| {axis} | {'variant | ' if variants else ''}edge homophily (adjusted) | "
            "mean degree | seeds | " + " | ".join(METRICS) + " |",
            "|---" * (len(METRICS) + 4 + variants) + "|",
        ]
        for e in entries:
            diffs = [e["metrics"].get(m, {}).get("slip_minus_clip") for m in METRICS]
            lines.append(
                f"| {level(e[axis])} | {e['variant'] + ' | ' if variants else ''}"
                f"{homophily(e)} | {e['graph']['mean_degree']:.1f} | "
                f"{len(e['seeds'])} | "
                + " | ".join(
                    "–" if d is None else f"{signed(d['mean'])} {interval(d)}" for d in diffs
                )
                + " |"
            )
        lines.append("")
    lines += ["## Cells", ""]
    for name, e in summary.items():
        graph = e["graph"]
        lines += [
            f"### {name}",
            "",
            f"{e['start']} start, {e['size']:,} products ({graph['test_products']:,} in the test "
            f"split), caption noise {e['noise']:g}, label homophily option {e['homophily']:g}: "
            f"edge homophily (adjusted) {homophily(e)}, mean degree {graph['mean_degree']:.1f}; "
            f"structural weight {e['weight']:g}, SLIP variant {e['variant']} "
            f"({', '.join(VARIANTS[e['variant']])}); "
            f"{e['steps']} steps of {e['batch']}; seeds "
            f"{', '.join(map(str, e['seeds']))}; trained on {', '.join(e['devices'])}.",
        ]
        if "pretraining" in e:
            shared = e["pretraining_overlap"]
            lines.append(
                f"Fine-tuned from CLIP pretrained on {e['pretraining']}, which shares with it "
                f"{shared['products']} products, "
                f"{shared['images']} images, {shared['test_titles']:.1%} of test titles."
            )
        lines += [
            "",
            "| metric | CLIP | SLIP | SLIP − CLIP | 95% interval | SLIP, graph-refined |",
            "|---|---|---|---|---|---|",
        ]
        for metric, row in e["metrics"].items():
            diff = row["slip_minus_clip"]
            lines.append(
                f"| {metric} | {spread(row['clip'])} | {spread(row['slip'])} | "
                f"{signed(diff['mean'])} ± {diff['std']:.3f} | {interval(diff)} | "
                f"{spread(row.get('slip_graph'))} |"
            )
        if e["unresolved"]:
            lines += ["", f"Paired std above |mean| (more seeds): {', '.join(e['unresolved'])}."]
        lines.append("")
    return "\n".join(lines)


def print_plan(grid: Grid, todo: list[tuple[Cell, str, int]]) -> None:
    """Cells, runs to do, and their CPU time on this project's 2-core machine, one run at once."""
    args = grid.args
    print(f"{len(grid.cells)} cells, seeds {args.seeds}; main: {cell_name(grid.main)}")
    for cell, axes in grid.cells.items():
        runs = sum(run[0] == cell for run in todo)
        print(
            f"  {cell_name(cell):74} {grid.steps(cell):5} steps, {runs:2} runs to do "
            f"({', '.join(axes)})"
        )
    builds = {grid.build(cell): cell.size for cell in grid.cells}
    missing = [size for path, size in builds.items() if not (path / "shards").is_dir()]
    seconds = BUILD_S_PER_PRODUCT * sum(missing)
    pretraining = WORK / "pretrain" / grid.pretraining / "export" / "open_clip_pytorch_model.bin"
    pretrain = any(c.start == "pretrained" for c in grid.cells) and not pretraining.is_file()
    if pretrain:
        seconds += BUILD_S_PER_PRODUCT * args.pretrain_products
        seconds += RUN_OVERHEAD_S + STEP_S_PER_SAMPLE * 128 * args.pretrain_steps
    for run in todo:
        cell = run[0]
        if not (grid.run_dir(*run) / "classify.json").is_file():  # else link prediction alone
            seconds += STEP_S_PER_SAMPLE * cell.batch * grid.steps(cell)
            seconds += EVAL_S_PER_PRODUCT * cell.size
        seconds += RUN_OVERHEAD_S + LINKPRED_S + NODECLASS_S * ("nodeclass" in grid.tasks)
        seconds += LINKPRED_TOUCHING_S * ("linkpred_touching" in grid.tasks)
    print(
        f"{len(todo)} runs to do, {len(missing)} builds to make"
        f"{', the pretraining' if pretrain else ''}: about {seconds / 3600:.1f} h on the "
        "2-core CPU machine, one run at a time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--main", default=MAIN, help="the main cell: axis=value for each axis")
    parser.add_argument("--start", default="pretrained,scratch", help="pretrained, scratch")
    parser.add_argument("--sizes", default="11000", help="demo products")
    parser.add_argument("--noise", default="0.2", help="caption-noise levels")
    parser.add_argument("--homophily", default="0,0.25,0.5,0.75", help="--demo-label-homophily")
    parser.add_argument("--weights", default="0,0.25,0.5,1", help="loss.structural_weight")
    parser.add_argument("--batches", default="64,128,256", help="sampler.batch_size")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="SLIP's variants, at each homophily level"
    )
    parser.add_argument("--seeds", default="0,1,2", help="train.seed values, in every cell")
    parser.add_argument("--steps", type=int, default=500, help="steps at the main batch size")
    parser.add_argument("--pretrain-products", type=int, default=20000)
    parser.add_argument("--pretrain-demo-seed", type=int, default=1, help="not the cells' 0")
    parser.add_argument("--pretrain-steps", type=int, default=2000, help="steps of 128")
    parser.add_argument("--device", default="auto", help="train.device: auto, cpu or cuda")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--workers", type=int, default=2, help="loader workers per run")
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="OMP_NUM_THREADS per run",
    )
    parser.add_argument(
        "--nodeclass",
        action="store_true",
        help="also GNN node classification per run (slip-eval nodeclass: SAGE and MLP, "
        "supervised and 4-shot, 3 seeds; about 2 min a run)",
    )
    parser.add_argument(
        "--touching",
        action="store_true",
        help="also link prediction of every held-out edge with an end in the test split "
        "(slip-eval linkpred --edges touching; about 80 s a run)",
    )
    parser.add_argument("--plan", action="store_true", help="print cells, runs and time; no runs")
    parser.add_argument("--summary-only", action="store_true", help="no runs, only the tables")
    parser.add_argument(
        "--pool-with",
        type=Path,
        help="an earlier summary.json whose runs are gone: its cells kept, the same cells with "
        "other seeds here pooled into them",
    )
    args = parser.parse_args()
    if args.pretrain_demo_seed == 0:
        raise SystemExit("--pretrain-demo-seed: 0 is the cells' catalogue; pick another")
    grid = Grid(args)
    todo = grid.todo()
    if args.plan:
        print_plan(grid, todo)
        return
    started = time.perf_counter()
    if not args.summary_only:
        for cell in grid.cells:
            options = ["--demo-products", str(cell.size), "--caption-noise", str(cell.noise),
                       "--demo-label-homophily", str(cell.homophily)]  # fmt: skip
            build_shards(grid.build(cell), options)
        pretrained = any(cell.start == "pretrained" for cell in grid.cells)
        weights = pretrain(grid) if pretrained else None
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(train_and_evaluate, grid, run, weights) for run in todo]
            for number, future in enumerate(futures, 1):
                future.result()
                print(
                    f"[{time.perf_counter() - started:6.0f} s] {number}/{len(todo)} runs done",
                    flush=True,
                )
    summary = summarise(grid)
    if args.pool_with:
        summary = pool_with(summary, json.loads(args.pool_with.read_text()))
    text = markdown(summary, grid)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (WORK / "summary.md").write_text(text + "\n")
    print(text)
    for name, entry in summary.items():
        if entry["graph"]["test_products"] < 1000:
            print(f"note: {name}: {entry['graph']['test_products']} test products; one point of "
                  "R@1 is resolved from 1,000")  # fmt: skip
        if entry["unresolved"]:
            print(
                f"note: {name}: |mean paired difference| < its std for "
                f"{', '.join(entry['unresolved'])}: rerun the cell with --seeds 0,1,2,3,4"
            )


if __name__ == "__main__":
    main()
