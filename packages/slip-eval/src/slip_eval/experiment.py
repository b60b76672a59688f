"""The SLIP-vs-CLIP experiment's headline picture for `slip-eval report --experiment`: SLIP − CLIP
against the co-purchase graph's label homophily, read from the summary.json that
bench/experiments/slip_vs_clip.py writes (its fields: docs/eval.md).

The homophily axis is the cells equal to the main cell on every other axis the summary names
(start, size, noise, weight, batch, ...), so its points differ in the graph alone; each of SLIP's
variants measured along it (`variant`, docs/method.md) is a line of its own. The main cell
is the one the script puts on every axis; a point sits at its graph's measured edge homophily,
not the option's value, since the generator reaches the asked level only approximately.
"""

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

from slip_eval.figures import pyplot, save

AXIS = "homophily"
VARIANT = "variant"
HEADLINE = ("text→image R@1", "text→image MRR", "zero-shot acc1", "4-shot probe acc1")
TITLE = "SLIP − CLIP against label homophily"
FIGURE = "homophily.png"


@dataclass(kw_only=True)
class Point:
    """One cell of the homophily axis: its graph and, per headline metric, the paired SLIP − CLIP
    mean and 95% interval (None from a single seed)."""

    name: str
    edge_homophily: float
    steps: int
    batch: int
    seeds: list[int]
    main: bool
    variant: str  # SLIP's variant (the paper's when the summary predates variants)
    differences: dict[str, tuple[float, tuple[float, float] | None]]


@dataclass
class Experiment:
    """The homophily axis of a summary, by measured edge homophily, and the headline metrics
    every one of its cells has."""

    path: Path
    main: str
    points: list[Point]
    metrics: list[str]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _field(path: Path, name: str, cell: dict, *keys: str) -> object:
    """cell[keys[0]][keys[1]]...; a missing or null one is an error naming the file and cell."""
    value: object = cell
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or value.get(key) is None:
            raise ValueError(f"{path}: cell {name!r} has no {'.'.join(keys[: depth + 1])}")
        value = value[key]
    return value


def _read(path: Path) -> dict[str, dict]:
    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable experiment summary ({exc})") from None
    if not (
        isinstance(summary, dict)
        and summary
        and all(isinstance(cell, dict) for cell in summary.values())
    ):
        raise ValueError(f"{path}: not an experiment summary (an object of cells by name)")
    return summary


def _point(path: Path, name: str, cell: dict, *, main: bool, variant: str) -> Point:
    edge, steps, batch = (
        _field(path, name, cell, *key.split("."))
        for key in ("graph.edge_homophily", "steps", "batch")
    )
    seeds = _field(path, name, cell, "seeds")
    if not (_number(edge) and _number(steps) and _number(batch) and isinstance(seeds, list)):
        raise ValueError(
            f"{path}: cell {name!r}: graph.edge_homophily, steps and batch must be "
            "numbers, seeds a list"
        )
    metrics = _field(path, name, cell, "metrics")
    differences = {}
    for metric in HEADLINE:
        if not isinstance(metrics, dict) or metric not in metrics:
            continue
        mean = _field(path, name, cell, "metrics", metric, "slip_minus_clip", "mean")
        ci = metrics[metric]["slip_minus_clip"].get("ci95")
        if not _number(mean) or not (
            ci is None or (isinstance(ci, list) and len(ci) == 2 and all(map(_number, ci)))
        ):
            raise ValueError(
                f"{path}: cell {name!r}: {metric}: slip_minus_clip needs a numeric "
                "mean and ci95 [lo, hi] or null"
            )
        differences[metric] = (mean, None if ci is None else (ci[0], ci[1]))
    return Point(
        name=name,
        edge_homophily=edge,
        steps=int(steps),
        batch=int(batch),
        seeds=seeds,
        main=main,
        variant=variant,
        differences=differences,
    )


def read_experiment(path: Path) -> Experiment:
    """The summary's homophily axis around its main cell; bad input is a one-line ValueError
    naming the file (the commands print it as `error: ...`)."""
    summary = _read(path)
    for name, cell in summary.items():
        axes = cell.get("axes")
        if not (isinstance(axes, list) and axes and all(isinstance(a, str) for a in axes)):
            raise ValueError(f"{path}: cell {name!r} has no axes (a list of axis names)")
    named = {axis for cell in summary.values() for axis in cell["axes"]}
    mains = [name for name, cell in summary.items() if set(cell["axes"]) >= named]
    if len(mains) != 1 or AXIS not in named:
        raise ValueError(
            f"{path}: needs one main cell, on every axis, and a {AXIS} axis "
            f"(axes: {', '.join(sorted(named))})"
        )
    main = summary[mains[0]]
    for name, cell in summary.items():
        for axis in main["axes"]:
            _field(path, name, cell, axis)
    points = [
        _point(path, name, cell, main=name == mains[0], variant=str(cell.get(VARIANT, "paper")))
        for name, cell in summary.items()
        if all(cell[axis] == main[axis] for axis in main["axes"] if axis not in (AXIS, VARIANT))
    ]
    first = str(main.get(VARIANT, "paper"))  # the main cell's variant: the first line
    points.sort(key=lambda point: (point.variant != first, point.variant, point.edge_homophily))
    metrics = [m for m in HEADLINE if all(m in point.differences for point in points)]
    return Experiment(Path(path), mains[0], points, metrics)


def _seeds(points: list[Point]) -> str:
    """The seeds the points average, or how many when cells differ (the table has each)."""
    if all(point.seeds == points[0].seeds for point in points):
        return "seeds " + ", ".join(map(str, points[0].seeds))
    low, high = min(len(p.seeds) for p in points), max(len(p.seeds) for p in points)
    return f"{low} seeds per cell" if low == high else f"{low}–{high} seeds per cell"


def _compute(points: list[Point]) -> str:
    steps = sorted({f"{point.steps} steps of {point.batch}" for point in points})
    return f"{', '.join(steps)}, {_seeds(points)}"


def caption(experiment: Experiment) -> str:
    """What every point is: its compute and seeds, and how the difference is paired."""
    return (
        f"Paired by seed (same shards, same compute for both modes): "
        f"{_compute(experiment.points)}; error bars are the 95% t-interval of the mean difference."
    )


def variants(experiment: Experiment) -> dict[str, list[Point]]:
    """The points by SLIP variant, the main cell's first, each by measured homophily."""
    lines: dict[str, list[Point]] = {}
    for point in experiment.points:
        lines.setdefault(point.variant, []).append(point)
    return lines


def homophily_figure(experiment: Experiment, path: Path) -> None:
    """One panel per headline metric: SLIP − CLIP at each cell's measured edge homophily, a
    dashed line at 0 (no difference), its interval as error bars."""
    plt = pyplot()
    metrics, points = experiment.metrics, experiment.points
    cols = min(2, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 3.4 * rows + 0.5), squeeze=False)
    lines = variants(experiment)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for number, (variant, line) in enumerate(lines.items()):
            means, below, above = [], [], []
            for point in line:
                mean, ci = point.differences[metric]
                lo, hi = ci or (mean, mean)  # one seed: no interval, no bar
                means.append(mean)
                below.append(mean - lo)
                above.append(hi - mean)
            x = [point.edge_homophily + 0.004 * number for point in line]  # bars side by side
            ax.errorbar(x, means, yerr=[below, above], fmt="-o", capsize=3, color=f"C{number}",
                        label=variant)  # fmt: skip
        for point in points:
            mean = point.differences[metric][0]
            if point.main:
                ax.annotate(
                    "main",
                    (point.edge_homophily, mean),
                    xytext=(5, -12),
                    textcoords="offset points",
                    fontsize=8,
                    color="#555",
                )
        ax.axhline(0, color="#777", linestyle="--", linewidth=1)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("edge homophily (share of co-purchases within one label)", fontsize=9)
        ax.set_ylabel("SLIP − CLIP (paired mean, 95% CI)", fontsize=9)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(title="SLIP variant", fontsize=8, title_fontsize=8)
    for ax in axes.flat[len(metrics) :]:
        ax.axis("off")
    figure.suptitle(
        f"{TITLE} ({_compute(points)}; bars: 95% t-interval of the paired mean)", fontsize=10
    )
    save(figure, path)


def homophily_table(experiment: Experiment) -> str:
    """Per cell: its measured edge homophily, seeds, and per metric the plotted mean [lo, hi]."""
    heads = ["cell", "variant", "edge homophily", "seeds", *experiment.metrics]
    rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr>"]
    for point in experiment.points:
        cells = [point.variant, f"{point.edge_homophily:.4f}", str(len(point.seeds))]
        for metric in experiment.metrics:
            mean, ci = point.differences[metric]
            cells.append(f"{mean:.4f} " + ("[–]" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"))
        name = html.escape(point.name) + (" (main)" if point.main else "")
        numbers = "".join(f'<td class="num">{html.escape(c)}</td>' for c in cells)
        rows.append(f"<tr><td>{name}</td>{numbers}</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def experiment_section(experiment: Experiment, folder: Path) -> tuple[str, str]:
    """The report's section (title, HTML), its figure written into `folder`; a sentence instead
    when there is no line to draw."""
    source = html.escape(str(experiment.path))
    longest = max(map(len, variants(experiment).values()))
    if longest < 2 or not experiment.metrics:
        reason = (
            f"the main cell is its only cell on the {AXIS} axis, and a line needs 2"
            if longest < 2
            else f"none of {', '.join(HEADLINE)} is in every cell on the {AXIS} axis"
        )
        return TITLE, f"<p class='note'>No line from {source}: {html.escape(reason)}.</p>"
    homophily_figure(experiment, folder / FIGURE)
    intro = (
        f"<p>{source}: the cells that differ from the main cell "
        f"({html.escape(experiment.main)}) in label homophily alone, a line per SLIP variant. "
        f"{html.escape(caption(experiment))}</p>"
    )
    image = f'<img class="plot" src="{FIGURE}" alt="{html.escape(TITLE)}">'
    return TITLE, intro + image + homophily_table(experiment)
