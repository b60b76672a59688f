"""Result files (plain JSON, CLIP_benchmark's shape) and their tables and chart."""

import json
import math
from pathlib import Path

from slip_eval.atomic import atomic_path, remove_stale_temps

HEADLINE = {  # the metrics a side-by-side table shows, per task
    "zeroshot_retrieval": (
        "image_retrieval_recall@1", "image_retrieval_recall@5", "image_retrieval_mrr",
        "text_retrieval_recall@1", "text_retrieval_recall@5", "text_retrieval_mrr",
    ),
    "zeroshot_classification": ("acc1", "acc5", "mean_per_class_recall"),
    "linkpred": ("fused_mrr", "fused_hits@1", "fused_hits@10", "image_mrr", "text_mrr"),
    "nodeclass": ("gcn_acc", "sage_acc", "gat_acc", "mlp_acc", "gcn_macro_f1", "mlp_macro_f1"),
}  # fmt: skip


def write_result(result: dict, path: Path) -> None:
    """The result as JSON, written whole or not at all (atomic.py)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")


def remove_run_temps(cache_dir: Path, out: Path | None) -> None:
    """Delete the temp files killed runs left in the embedding cache and of `out` (a cache file
    is large, and nothing ever reads a temp); a live writer's stay, so runs may share a cache."""
    remove_stale_temps(cache_dir)
    if out is not None:
        remove_stale_temps(out.parent, recursive=False, of=out.name)


def read_result(path: Path) -> dict:
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable result file ({exc})") from None
    if not isinstance(result, dict) or not {"model", "task", "metrics"} <= set(result):
        raise ValueError(f"{path}: not a slip-eval result (needs model, task, metrics)")
    return result


def flat_metrics(result: dict) -> dict[str, float]:
    """Every number of a result under one name: plain, `graph:` refined, `k-shot` few-shot."""
    flat = {}
    for variant, prefix in (("metrics", ""), ("graph_metrics", "graph: ")):
        flat |= {prefix + k: v for k, v in result.get(variant, {}).items()}
        for method, by_k in result.get("fewshot", {}).get(variant, {}).items():
            for k, metrics in by_k.items():
                for name, value in metrics.items():
                    flat[f"{prefix}{k}-shot {method} {name}"] = value
    return flat


def _cell(value: float | None) -> str:
    if value is None:
        return "–"
    return "nan" if math.isnan(value) else f"{value:.4f}"


def markdown_table(results: list[dict], labels: list[str] | None = None) -> str:
    """Metrics as rows, one column per result (a result alone is a two-column table)."""
    labels = labels or [
        r["model"] + ("" if len(results) == 1 else f" [{i}]") for i, r in enumerate(results)
    ]
    flats = [flat_metrics(r) for r in results]
    names = list(
        dict.fromkeys(name for flat in flats for name in flat if not name.endswith("_std"))
    )
    lines = [
        "| metric | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for name in names:
        cells = []
        for flat in flats:
            value = flat.get(name)
            # few-shot rows pair NAME_mean with NAME_std; nodeclass's supervised NAME with NAME_std
            std = flat.get(name.removesuffix("_mean") + "_std")
            cells.append(
                _cell(value) + (f" ± {std:.4f}" if std is not None and not math.isnan(std) else "")
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(results: list[dict], labels: list[str], path: Path) -> None:
    """Grouped bars of the headline metrics (plain and graph-refined where present), one colour
    per result; a PNG, written whole or not at all (atomic.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flats = [flat_metrics(r) for r in results]
    headline = [m for r in results for m in HEADLINE.get(r["task"], ())]
    names = [
        n
        for n in dict.fromkeys(headline + ["graph: " + m for m in headline])
        if any(n in flat for flat in flats)
    ]
    if not names:
        raise ValueError("the results have no metric in common to chart")
    width = 0.8 / len(results)
    figure, axes = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4), dpi=120)
    for i, (label, flat) in enumerate(zip(labels, flats, strict=True)):
        values = [flat.get(name, math.nan) for name in names]
        axes.bar([x + i * width for x in range(len(names))], values, width, label=label)
    axes.set_xticks([x + width * (len(results) - 1) / 2 for x in range(len(names))])
    axes.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.legend(fontsize=8)
    axes.set_title(" vs ".join(labels), fontsize=9)
    figure.tight_layout()
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png")
    finally:
        plt.close(figure)
