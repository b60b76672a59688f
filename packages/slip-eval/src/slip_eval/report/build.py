"""`slip-eval report`'s entry point: the sections in order (metrics, the graph, the plots, the
gallery and the neighbourhood, the experiment), built in a temp folder and published whole."""

import html
import shutil
from pathlib import Path

import numpy as np

from slip_eval.atomic import remove_stale_temps, temp_folder
from slip_eval.data import open_split
from slip_eval.experiment import experiment_section, read_experiment
from slip_eval.homophily import graph_homophily
from slip_eval.report.entries import Entry, colours, read_entries, read_log, run_log
from slip_eval.report.page import Page, gallery_html, graph_section, img, metrics_table, render
from slip_eval.report.plots import (
    fewshot_figure,
    loss_figure,
    neighbourhood_figure,
    recall_figure,
    scorer_figure,
    thumbnails,
)
from slip_eval.report.publish import check_out, publish
from slip_eval.report.ranking import TOP, gallery_rankings, neighbourhood


def _by_task(entries: list[Entry]) -> dict[str, list[Entry]]:
    by_task: dict[str, list[Entry]] = {}
    for entry in entries:
        by_task.setdefault(entry.result["task"], []).append(entry)
    return by_task


def _metrics(page: Page, entries: list[Entry]) -> None:
    tables = "\n".join(
        f"<h3>{html.escape(task)}</h3>\n{metrics_table(group)}"
        for task, group in _by_task(entries).items()
    )
    page.sections.append(("Metrics", tables))


def _plots(page: Page, folder: Path, entries: list[Entry]) -> None:
    """Training loss (from each model's run log), recall@k, few-shot accuracy, link prediction's
    MRR per scorer and node classification's accuracy per model."""
    palette = colours(entries)
    by_task = _by_task(entries)
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
        loss_figure(logs, palette, folder / "loss.png")
        page.sections.append(("Training loss", img("loss.png", "training loss per model")))
    if retrievals := by_task.get("zeroshot_retrieval", []):
        recall_figure(retrievals, palette, folder / "recall.png")
        page.sections.append(("Retrieval recall@k", img("recall.png", "recall@k per model")))
    if classifications := by_task.get("zeroshot_classification", []):
        fewshot_figure(classifications, palette, folder / "fewshot.png")
        page.sections.append(("Zero- and few-shot accuracy", img("fewshot.png", "accuracy")))
    if links := by_task.get("linkpred", []):
        title = "link prediction: MRR of held-out co-purchases (hatched: graph-refined)"
        scorer_figure(links, palette, folder / "linkpred.png", metric="mrr", title=title)
        page.sections.append(("Link prediction", img("linkpred.png", "MRR per scorer")))
    if node_runs := by_task.get("nodeclass", []):
        title = "node classification: test accuracy per model (hatched: graph-refined features)"
        scorer_figure(node_runs, palette, folder / "nodeclass.png", metric="acc", title=title)
        page.sections.append(("Node classification", img("nodeclass.png", "accuracy per GNN")))


def _split_sections(
    page: Page,
    folder: Path,
    entries: list[Entry],
    *,
    shards: Path,
    cache_dir: Path | None,
    n_queries: int,
    seed: int,
    quiet: bool,
) -> None:
    """The retrieval gallery and the co-purchase neighbourhood, from the split the retrieval
    results measured."""
    retrievals = _by_task(entries).get("zeroshot_retrieval", [])
    split_name = (retrievals or entries)[0].result.get("split", "test")
    split = open_split(shards, split_name)
    rng = np.random.default_rng(seed)
    queries = sorted(
        rng.choice(split.node_ids.size, min(n_queries, split.node_ids.size), replace=False).tolist()
    )
    on_split = [e for e in retrievals if e.result.get("split") == split_name]
    if len(on_split) < len(retrievals):
        page.notes.append(f"gallery: only the retrieval results on the {split_name!r} split shown")
    rankings = []
    if on_split:
        rankings = gallery_rankings(on_split, split, queries, cache_dir=cache_dir, quiet=quiet)
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
        neighbourhood_figure(split, picked, thumbs=thumbs, path=folder / "neighbourhood.png")
        page.sections.append(
            ("Co-purchase neighbourhood", img("neighbourhood.png", "co-purchase neighbourhood"))
        )


def build_report(
    paths: list[Path],
    out: Path,
    *,
    shards: Path | None = None,
    cache_dir: Path | None = None,
    n_queries: int = 6,
    seed: int = 0,
    quiet: bool = False,
    experiment: Path | None = None,
) -> Path:
    """Write the report folder `out` (index.html and its images) and return index.html's path;
    with `experiment`, that summary's SLIP − CLIP against label homophily last."""
    entries = read_entries(paths)
    homophily_axis = None if experiment is None else read_experiment(experiment)
    check_out(out)
    remove_stale_temps(out.parent, recursive=False, of=out.name)  # of killed reports
    folder = temp_folder(out)
    try:
        page = Page()
        _metrics(page, entries)
        if shards is not None:
            graph_section(page, graph_homophily(shards))
        _plots(page, folder, entries)
        if shards is None:
            page.notes.append("retrieval gallery and co-purchase neighbourhood: no --shards given")
        else:
            _split_sections(
                page,
                folder,
                entries,
                shards=shards,
                cache_dir=cache_dir,
                n_queries=n_queries,
                seed=seed,
                quiet=quiet,
            )
        if homophily_axis is not None:
            page.sections.append(experiment_section(homophily_axis, folder))
        (folder / "index.html").write_text(render(entries, page), encoding="utf-8")
        publish(folder, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out / "index.html"
