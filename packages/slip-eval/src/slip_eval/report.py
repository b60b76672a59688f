"""`slip-eval report`: one static HTML page from result files, for comparing SLIP with CLIP at a
glance: metric tables, plots, a retrieval gallery and a co-purchase neighbourhood.

The page needs no network and no script: every image it shows is a file next to `index.html`.
The folder is built in a temp folder and renamed into place, so a report is always whole.
"""

import html
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from slip_eval.data import Split, embed_split, open_split
from slip_eval.experiment import experiment_section, read_experiment
from slip_eval.figures import pyplot, save
from slip_eval.homophily import ROWS as HOMOPHILY_ROWS
from slip_eval.homophily import graph_homophily, reading
from slip_eval.models import LoadedModel, load_model
from slip_eval.results import flat_metrics, read_result

KS = (1, 5, 10)
TOP = 5  # images shown per model and query
THUMB = 128  # thumbnail side, pixels
LOWER_IS_BETTER = ("median_rank",)
VARIANTS = (("metrics", "-o", ""), ("graph_metrics", "--s", " graph"))  # plain solid, graph dashed
# tells a headless browser (and the test) how many images and tables actually rendered
LOAD_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const body = document.body.dataset;
  body.images = images.length;
  body.imagesLoaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  body.tables = document.querySelectorAll("table").length;
});
</script>"""
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1220px;
       color: #222; padding: 0 16px; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px;
       margin-top: 36px; }
.sources { color: #666; font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 10px; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; background: #eef7ee; }
img.plot { max-width: 100%; border: 1px solid #eee; }
.note { color: #8a5a00; background: #fff8e6; padding: 4px 8px; border-radius: 4px; }
.query { margin: 18px 0; padding: 10px; border: 1px solid #e4e4e4; border-radius: 6px; }
.query-title { font-weight: 600; margin-bottom: 8px; }
.target { display: inline-block; vertical-align: top; margin-right: 18px; text-align: center;
          font-size: 11px; color: #555; }
.models { display: inline-flex; gap: 22px; flex-wrap: wrap; vertical-align: top; }
.model-name { font-size: 12px; font-weight: 600; margin-bottom: 3px; }
.hits { display: flex; gap: 4px; }
.hit { width: 84px; font-size: 10px; color: #555; text-align: center; }
.hit img, .target img { width: 80px; height: 80px; object-fit: contain; background: #fafafa;
          border: 3px solid #ddd; border-radius: 3px; }
.hit.correct img, .target img { border-color: #1a9e3a; }
.hit-title { overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.rank { font-size: 11px; color: #666; margin-top: 2px; }
"""


class ReportError(ValueError):
    """A report that cannot be made from its input; one line."""


@dataclass
class Entry:
    """One result file and the label of the model it measured."""

    path: Path
    result: dict
    label: str = ""


@dataclass
class Page:
    """The report's sections as HTML fragments, and what was left out and why."""

    sections: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _model_key(result: dict) -> tuple[str, str]:
    return result["model"], str(result.get("pretrained", ""))


def label_entries(entries: list[Entry]) -> None:
    """A label per model, shared by its results: the run folder of a slip-train checkpoint
    (`.../<run>/checkpoints/step-N.pt`), else the weights' name, so SLIP and CLIP runs of one
    architecture tell apart."""
    labels: dict[tuple[str, str], str] = {}
    for entry in entries:
        key = _model_key(entry.result)
        if key not in labels:
            source = Path(key[1])
            run = source.parent.parent.name if source.parent.name == "checkpoints" else source.name
            label = f"{key[0]} · {run}" if run else key[0]
            if label in labels.values():
                label += f" [{len(labels)}]"
            labels[key] = label
        entry.label = labels[key]


def read_entries(paths: Iterable[Path]) -> list[Entry]:
    entries = [Entry(Path(p), read_result(Path(p))) for p in paths]
    if not entries:
        raise ReportError("no result file given")
    label_entries(entries)
    return entries


def _colours(entries: list[Entry]) -> dict[str, str]:
    """One colour per model, the same in every plot."""
    labels = list(dict.fromkeys(e.label for e in entries))
    return {label: f"C{i % 10}" for i, label in enumerate(labels)}


# ---- tables -------------------------------------------------------------------------------------


def _fmt(value: float | None, std: float | None) -> str:
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    text = f"{value:.4f}"
    return text + (f" ± {std:.4f}" if std is not None and not math.isnan(std) else "")


def metrics_table(entries: list[Entry]) -> str:
    """Metrics as rows, one column per result (markdown_table's layout), the best of each row in
    bold when results are compared."""
    splits = {e.result.get("split") for e in entries}
    heads = [e.label + (f" ({e.result.get('split')})" if len(splits) > 1 else "") for e in entries]
    flats = [flat_metrics(e.result) for e in entries]
    names = list(dict.fromkeys(n for flat in flats for n in flat if not n.endswith("_std")))
    rows = ["<tr><th>metric</th>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr>"]
    for name in names:
        values = [flat.get(name) for flat in flats]
        known = [v for v in values if v is not None and not math.isnan(v)]
        best = None
        if len(known) > 1 and len(set(known)) > 1:
            best = min(known) if name.endswith(LOWER_IS_BETTER) else max(known)
        cells = []
        for flat, value in zip(flats, values, strict=True):
            std = flat.get(name.removesuffix("_mean") + "_std") if name.endswith("_mean") else None
            css = "num best" if value is not None and value == best else "num"
            cells.append(f'<td class="{css}">{html.escape(_fmt(value, std))}</td>')
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


# ---- plots --------------------------------------------------------------------------------------


def run_log(result: dict) -> Path | None:
    """The training log of a slip-train checkpoint's run (docs/checkpoint-format.md)."""
    source = Path(str(result.get("pretrained", "")))
    if source.parent.name != "checkpoints":
        return None
    return source.parent.parent / "log.jsonl"


def read_log(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash mid-write
        if isinstance(record, dict) and "step" in record and "loss" in record:
            records.append(record)
    return records


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


# ---- gallery and neighbourhood ------------------------------------------------------------------


@dataclass
class Ranking:
    """One model's answer to one title query: its top images and where the right one ranked."""

    label: str
    top: list[int]  # split-local indices, best first
    rank: int  # of the query's own image, 1-based, ties after lower indices (docs/eval.md)


def _load(result: dict, path: Path) -> LoadedModel:
    """The model a result measured: its checkpoint or export path, else an open_clip name and
    tag."""
    source = str(result.get("pretrained") or "")
    if source.endswith(".pt") or os.sep in source:
        if not Path(source).exists():
            raise ReportError(f"{path}: its model {source} is missing; the gallery needs it")
        return load_model(source, None, None)
    return load_model(None, result["model"], source)


def rank_queries(
    image: torch.Tensor, text: torch.Tensor, queries: list[int]
) -> list[tuple[list[int], int]]:
    """(top indices, rank of the query's own image) per title query, on normalised embeddings."""
    scores = text[queries] @ image.T
    answers = []
    for row, q in zip(scores, queries, strict=True):
        own = row[q]
        rank = int((row > own).sum() + (row[:q] == own).sum()) + 1
        answers.append((row.topk(min(TOP, row.numel())).indices.tolist(), rank))
    return answers


def gallery_rankings(
    entries: list[Entry], split: Split, queries: list[int], cache_dir: Path | None, quiet: bool
) -> list[list[Ranking]]:
    """Per query, each retrieval result's model's ranking (embeddings from the cache when there)."""
    per_query: list[list[Ranking]] = [[] for _ in queries]
    for entry in entries:
        if entry.result.get("n") != split.node_ids.size:
            raise ReportError(
                f"{entry.path}: made on {entry.result.get('n')} products, the {split.name!r} "
                f"split of these shards has {split.node_ids.size}: other shards?"
            )
        raw = embed_split(_load(entry.result, entry.path), split, cache_dir, quiet=quiet)
        image, text = F.normalize(raw["image"], dim=-1), F.normalize(raw["text"], dim=-1)
        for answers, (top, rank) in zip(per_query, rank_queries(image, text, queries), strict=True):
            answers.append(Ranking(entry.label, top, rank))
    return per_query


def neighbourhood(
    edge_index: torch.Tensor, n: int, rng: np.random.Generator, first: int = 8, second: int = 8
) -> tuple[int, list[int], list[int], list[tuple[int, int]]] | None:
    """A product with several in-split neighbours, its neighbours (at most `first`), some of
    theirs (at most `second`, spread over the neighbours so each sits outside its own), and the
    edges among them; None without edges."""
    adjacency: list[set[int]] = [set() for _ in range(n)]
    for a, b in edge_index.T.tolist():
        if a != b:
            adjacency[a].add(b)
            adjacency[b].add(a)
    degrees = np.array([len(s) for s in adjacency])
    if degrees.max(initial=0) == 0:
        return None
    fitting = np.flatnonzero((degrees >= 3) & (degrees <= first))
    if fitting.size:  # the best-connected of those that fit, drawn at random among equals
        fitting = fitting[degrees[fitting] == degrees[fitting].max()]
    centre = int(rng.choice(fitting)) if fitting.size else int(degrees.argmax())
    hop1 = sorted(adjacency[centre])[:first]
    taken = {centre, *hop1}
    hop2, per = [], max(1, second // len(hop1))
    for node in hop1:
        for other in sorted(adjacency[node] - taken)[:per]:
            if len(hop2) < second:
                hop2.append(other)
                taken.add(other)
    edges = [(a, b) for a in taken for b in adjacency[a] if b in taken and a < b]
    return centre, hop1, hop2, edges


def _layout(centre: int, hop1: list[int], hop2: list[int], edges: list[tuple[int, int]]) -> dict:
    """Centre in the middle, neighbours on a circle, second-hop nodes on an outer circle next to
    the neighbour that brought them (a radial layout: readable without networkx)."""
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
    split: Split, picked: tuple, thumbs: dict[int, Image.Image], path: Path
) -> None:
    """The sampled co-purchase neighbourhood: thumbnails as nodes, co-purchases as lines."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    plt = pyplot()
    centre, hop1, hop2, edges = picked
    positions = _layout(centre, hop1, hop2, edges)
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


def _thumb(split: Split, index: int) -> str:
    return f"thumbs/{split.node_ids[index]}.jpg"


def gallery_html(split: Split, queries: list[int], rankings: list[list[Ranking]]) -> str:
    """Per title query: the product it belongs to, then each model's top images, the right one
    framed green, and the rank it got."""
    parts = []
    for q, answers in zip(queries, rankings, strict=True):
        title = html.escape(split.titles[q])
        models = []
        for answer in answers:
            hits = "".join(
                f'<div class="hit{" correct" if i == q else ""}">'
                f'<img src="{_thumb(split, i)}" alt="{html.escape(split.titles[i])}" '
                f'title="{html.escape(split.titles[i])}">'
                f'<div class="hit-title">{r}. {html.escape(split.titles[i])}</div></div>'
                for r, i in enumerate(answer.top, 1)
            )
            verdict = (
                "found at rank 1" if answer.rank == 1 else f"right image at rank {answer.rank}"
            )
            models.append(
                f'<div><div class="model-name">{html.escape(answer.label)}</div>'
                f'<div class="hits">{hits}</div>'
                f'<div class="rank">{verdict} of {split.node_ids.size}</div></div>'
            )
        parts.append(
            f'<div class="query"><div class="query-title">“{title}”</div>'
            f'<div class="target"><img src="{_thumb(split, q)}" alt="{title}"><br>'
            f"the right image</div>"
            f'<div class="models">{"".join(models)}</div></div>'
        )
    return "\n".join(parts)


# ---- the page -----------------------------------------------------------------------------------


def _img(name: str, alt: str) -> str:
    return f'<img class="plot" src="{name}" alt="{html.escape(alt)}">'


def render(entries: list[Entry], page: Page) -> str:
    """The whole index.html: the sections in order, then what was left out and why."""
    sources = "".join(
        f"<li>{html.escape(e.label)}: {html.escape(e.result['task'])} on "
        f"{html.escape(str(e.result.get('split', '?')))} ({html.escape(str(e.path))})</li>"
        for e in entries
    )
    body = [f"<h1>SLIP vs CLIP: evaluation report</h1><ul class='sources'>{sources}</ul>"]
    body += [f"<h2>{html.escape(title)}</h2>\n{content}" for title, content in page.sections]
    if page.notes:
        items = "".join(f"<li>{html.escape(note)}</li>" for note in page.notes)
        body.append(f"<h2>Left out</h2><ul class='note'>{items}</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>slip-eval report</title>"
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + f"\n{LOAD_PROBE}\n"
        "</body></html>\n"
    )


def graph_section(page: Page, stats: dict | None) -> None:
    """The evaluated graph's label homophily, and what it lets one expect of SLIP."""
    if stats is None:
        page.notes.append("graph homophily: the shards predate slip-data recording it")
        return
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class='num'>"
        f"{'–' if stats.get(key) is None else f'{stats[key]:.3f}'}</td></tr>"
        for key, name in HOMOPHILY_ROWS
    )
    table = f"<table><tr><th>label homophily</th><th>value</th></tr>{rows}</table>"
    page.sections.append(("Co-purchase graph", f"{table}<p>{html.escape(reading(stats))}</p>"))


def _check_out(out: Path) -> None:
    """A report replaces only an earlier report or an empty folder, never other files."""
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "index.html").is_file())
    ):
        raise ReportError(f"{out}: exists and is not a report folder; not replacing it")


def _publish(built: Path, out: Path) -> None:
    """Swap the finished folder into place: an earlier report is moved aside, then removed."""
    built.chmod(0o755)
    if not out.exists():
        os.replace(built, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, old / "report")
    os.replace(built, out)
    shutil.rmtree(old)


def _sections(
    entries: list[Entry],
    folder: Path,
    page: Page,
    shards: Path | None,
    cache_dir: Path | None,
    n_queries: int,
    seed: int,
    quiet: bool,
) -> None:
    """Fill `page` and write its images into `folder`."""
    colours = _colours(entries)
    by_task: dict[str, list[Entry]] = {}
    for entry in entries:
        by_task.setdefault(entry.result["task"], []).append(entry)
    page.sections.append(
        (
            "Metrics",
            "\n".join(
                f"<h3>{html.escape(task)}</h3>\n{metrics_table(group)}"
                for task, group in by_task.items()
            ),
        )
    )
    if shards is not None:
        graph_section(page, graph_homophily(shards))
    logs: dict[str, list[dict]] = {}
    first_of_model: dict[str, Entry] = {}
    for entry in entries:
        first_of_model.setdefault(entry.label, entry)
    for entry in first_of_model.values():
        log = run_log(entry.result)
        if log is None or not log.is_file():
            page.notes.append(
                f"training loss of {entry.label}: no log.jsonl next to its checkpoint "
                f"({log or entry.result.get('pretrained')})"
            )
        elif records := read_log(log):
            logs[entry.label] = records
    if logs:
        loss_figure(logs, colours, folder / "loss.png")
        page.sections.append(("Training loss", _img("loss.png", "training loss per model")))
    retrievals = by_task.get("zeroshot_retrieval", [])
    if retrievals:
        recall_figure(retrievals, colours, folder / "recall.png")
        page.sections.append(("Retrieval recall@k", _img("recall.png", "recall@k per model")))
    classifications = by_task.get("zeroshot_classification", [])
    if classifications:
        fewshot_figure(classifications, colours, folder / "fewshot.png")
        page.sections.append(("Zero- and few-shot accuracy", _img("fewshot.png", "accuracy")))
    if shards is None:
        page.notes.append("retrieval gallery and co-purchase neighbourhood: no --shards given")
        return
    split_name = (retrievals or entries)[0].result.get("split", "test")
    split = open_split(shards, split_name)
    rng = np.random.default_rng(seed)
    queries = sorted(
        rng.choice(split.node_ids.size, min(n_queries, split.node_ids.size), replace=False).tolist()
    )
    on_split = [e for e in retrievals if e.result.get("split") == split_name]
    if len(on_split) < len(retrievals):
        page.notes.append(f"gallery: only the retrieval results on the {split_name!r} split shown")
    rankings = gallery_rankings(on_split, split, queries, cache_dir, quiet) if on_split else []
    picked = neighbourhood(split.edge_index, split.node_ids.size, rng)
    wanted = {*queries, *(i for answers in rankings for a in answers for i in a.top)}
    if picked is not None:
        wanted |= {picked[0], *picked[1], *picked[2]}
    thumbs = thumbnails(split, wanted, folder / "thumbs")
    if rankings:
        intro = (
            f"<p>{len(queries)} titles of the {split_name} split as text queries; each "
            f"model's top {TOP} images, the right one framed green.</p>"
        )
        page.sections.append(("Retrieval gallery", intro + gallery_html(split, queries, rankings)))
    else:
        page.notes.append("retrieval gallery: no retrieval result given")
    if picked is None:
        page.notes.append(f"co-purchase neighbourhood: the {split_name!r} split has no edges")
    else:
        neighbourhood_figure(split, picked, thumbs, folder / "neighbourhood.png")
        page.sections.append(
            ("Co-purchase neighbourhood", _img("neighbourhood.png", "co-purchase neighbourhood"))
        )


def build_report(
    paths: list[Path],
    out: Path,
    shards: Path | None = None,
    cache_dir: Path | None = None,
    n_queries: int = 6,
    seed: int = 0,
    quiet: bool = False,
    *,
    experiment: Path | None = None,
) -> Path:
    """Write the report folder `out` (index.html and its images) and return index.html's path;
    with `experiment`, that summary's SLIP − CLIP against label homophily last."""
    entries = read_entries(paths)
    homophily_axis = None if experiment is None else read_experiment(experiment)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        page = Page()
        _sections(entries, folder, page, shards, cache_dir, n_queries, seed, quiet)
        if homophily_axis is not None:
            page.sections.append(experiment_section(homophily_axis, folder))
        (folder / "index.html").write_text(render(entries, page), encoding="utf-8")
        _publish(folder, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out / "index.html"
