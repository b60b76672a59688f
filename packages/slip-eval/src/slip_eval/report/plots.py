"""The report's figures, one PNG each: training loss, recall@k, zero- and few-shot accuracy, the
co-purchase neighbourhood (with the product thumbnails it and the gallery show)."""

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from slip_eval.data import Split
from slip_eval.figures import pyplot, save
from slip_eval.report.entries import Entry

KS = (1, 5, 10)
THUMB = 128  # thumbnail side, pixels
VARIANTS = (("metrics", "-o", ""), ("graph_metrics", "--s", " graph"))  # plain solid, graph dashed


def loss_figure(logs: dict[str, list[dict]], colours: dict[str, str], path: Path) -> None:
    """The minimised loss and its contrastive part per model: SLIP minimises more than CLIP
    (its structural term), so only the contrastive part compares like with like."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for label, records in logs.items():
        steps = [r["step"] for r in records]
        axes[0].plot(steps, [r["loss"] for r in records], color=colours[label], label=label)
        clip = [(r["step"], r["clip_loss"]) for r in records if r.get("clip_loss") is not None]
        if clip:
            axes[1].plot(*zip(*clip, strict=True), color=colours[label], label=label)
    for ax, title in zip(axes, ("loss (minimised)", "contrastive (CLIP) loss"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save(figure, path)


def recall_figure(entries: list[Entry], colours: dict[str, str], path: Path) -> None:
    """Recall@1/5/10 per model, both directions; graph-refined numbers dashed."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    directions = (("image_retrieval", "text → image"), ("text_retrieval", "image → text"))
    for ax, (prefix, title) in zip(axes, directions, strict=True):
        for entry in entries:
            for variant, style, suffix in VARIANTS:
                metrics = entry.result.get(variant)
                if not metrics:
                    continue
                recalls = [metrics.get(f"{prefix}_recall@{k}", math.nan) for k in KS]
                ax.plot(KS, recalls, style, color=colours[entry.label], label=entry.label + suffix)
        ax.set_title(f"{title} recall@k", fontsize=10)
        ax.set_xticks(KS)
        ax.set_xlabel("k")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save(figure, path)


def fewshot_figure(entries: list[Entry], colours: dict[str, str], path: Path) -> None:
    """Top-1 accuracy against shots per model and few-shot method, zero-shot as shot 0; error bars
    are the std over the few-shot draws."""
    plt = pyplot()
    methods = list(
        dict.fromkeys(m for e in entries for m in e.result.get("fewshot", {}).get("metrics", {}))
    )
    methods = methods or ["zero-shot"]
    figure, axes = plt.subplots(1, len(methods), figsize=(5.5 * len(methods), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, method in zip(axes, methods, strict=True):
        ticks: set[int] = set()
        for entry in entries:
            for variant, style, suffix in VARIANTS:
                points = []
                if "acc1" in entry.result.get(variant, {}):
                    points.append((0, entry.result[variant]["acc1"], 0.0))
                by_k = entry.result.get("fewshot", {}).get(variant, {}).get(method, {})
                for k, m in sorted(by_k.items(), key=lambda item: int(item[0])):
                    points.append((int(k), m["acc1_mean"], m.get("acc1_std", 0.0)))
                if not points:
                    continue
                shots, means, stds = zip(*points, strict=True)
                ax.errorbar(
                    shots,
                    means,
                    yerr=stds,
                    fmt=style,
                    capsize=3,
                    color=colours[entry.label],
                    label=entry.label + suffix,
                )
                ticks.update(shots)
        ax.set_xticks(sorted(ticks))
        ax.set_title(f"top-1 accuracy, {method.replace('_', ' ')} (shot 0: zero-shot)", fontsize=10)
        ax.set_xlabel("shots per class")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save(figure, path)


def scorer_figure(
    entries: list[Entry], colours: dict[str, str], path: Path, *, metric: str, title: str
) -> None:
    """One bar per model and scorer (the keys `SCORER_{metric}` of each result), graph-refined
    bars hatched: link prediction's scorers (image, text, fused, trained predictors), or node
    classification's models."""
    plt = pyplot()
    suffix = f"_{metric}"
    scorers = list(
        dict.fromkeys(
            key[: -len(suffix)]
            for entry in entries
            for variant, _, _ in VARIANTS
            for key in entry.result.get(variant, {})
            if key.endswith(suffix)
        )
    )
    bars = [
        (entry, variant, label)
        for entry in entries
        for variant, _, label in VARIANTS
        if entry.result.get(variant)
    ]
    width = 0.8 / max(len(bars), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.4 * len(scorers)), 3.6))
    for i, (entry, variant, label) in enumerate(bars):
        values = [entry.result[variant].get(name + suffix, math.nan) for name in scorers]
        axes.bar(
            [x + i * width for x in range(len(scorers))],
            values,
            width,
            color=colours[entry.label],
            hatch="//" if variant == "graph_metrics" else None,
            edgecolor="white",
            label=entry.label + label,
        )
    axes.set_xticks([x + width * (len(bars) - 1) / 2 for x in range(len(scorers))])
    axes.set_xticklabels(scorers)
    axes.set_ylim(0, 1)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=8)
    save(figure, path)


def _layout(picked: tuple) -> dict:
    """Centre in the middle, neighbours on a circle, second-hop nodes on an outer circle next to
    the neighbour that brought them (a radial layout: readable without networkx)."""
    centre, hop1, hop2, edges = picked
    positions = {centre: np.zeros(2)}
    angles = {}
    for i, node in enumerate(hop1):
        angles[node] = 2 * math.pi * i / len(hop1) + math.pi / 2
        positions[node] = 1.5 * np.array([math.cos(angles[node]), math.sin(angles[node])])
    by_parent: dict[int, list[int]] = {}
    joined = set(edges)
    for node in hop2:
        parent = next(p for p in hop1 if (min(p, node), max(p, node)) in joined)
        by_parent.setdefault(parent, []).append(node)
    spread = math.pi / max(len(hop1), 1) * 0.8
    for parent, children in by_parent.items():
        for j, node in enumerate(children):
            angle = angles[parent] + spread * (j - (len(children) - 1) / 2)
            positions[node] = 2.8 * np.array([math.cos(angle), math.sin(angle)])
    return positions


def _short(title: str, width: int = 24) -> str:
    return title if len(title) <= width else title[: width - 1].rstrip() + "…"


def neighbourhood_figure(
    split: Split, picked: tuple, *, thumbs: dict[int, Image.Image], path: Path
) -> None:
    """The sampled co-purchase neighbourhood: thumbnails as nodes, co-purchases as lines."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    plt = pyplot()
    centre, hop1, hop2, edges = picked
    positions = _layout(picked)
    figure, ax = plt.subplots(figsize=(9, 9))
    for a, b in edges:  # the centre's edges strong, the rest faint: the demo graph is dense
        inner = centre in (a, b)
        ax.plot(
            *zip(positions[a], positions[b], strict=True),
            color="#1f77b4" if inner else "#999",
            lw=2 if inner else 0.6,
            alpha=1 if inner else 0.4,
            zorder=1,
        )
    frames = {
        centre: ("#d62728", 0.55),
        **{n: ("#1f77b4", 0.42) for n in hop1},
        **{n: ("#999", 0.34) for n in hop2},
    }
    for node, (colour, zoom) in frames.items():
        x, y = positions[node]
        box = AnnotationBbox(
            OffsetImage(np.asarray(thumbs[node]), zoom=zoom),
            (x, y),
            pad=0.15,
            bboxprops={"edgecolor": colour, "lw": 2},
            zorder=2,
        )
        ax.add_artist(box)
        ax.text(
            x,
            y - 0.3,
            _short(split.titles[node]),
            ha="center",
            va="top",
            fontsize=7,
            bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1},
            zorder=3,
        )
    reach = max(np.abs(p).max() for p in positions.values()) + 0.6
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-reach, reach)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(
        f"co-purchases of “{_short(split.titles[centre], 60)}” ({split.name} split): "
        f"{len(hop1)} neighbours (blue), {len(hop2)} at two hops (grey)",
        fontsize=10,
    )
    save(figure, path)


def thumbnails(split: Split, wanted: set[int], folder: Path) -> dict[int, Image.Image]:
    """Small copies of the wanted products' images (split-local indices), saved as JPEG files
    named by node id; one pass over the shards."""
    folder.mkdir(parents=True, exist_ok=True)
    thumbs, index = {}, 0
    for batch in split.images(256):
        for data in batch:
            if index in wanted:
                image = Image.open(io.BytesIO(data)).convert("RGB")
                image.thumbnail((THUMB, THUMB))
                image.save(folder / f"{split.node_ids[index]}.jpg", quality=85)
                thumbs[index] = image
            index += 1
    return thumbs
