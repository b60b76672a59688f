"""The report's HTML: metric tables, the gallery, the graph's homophily and the page around
them. The page has no script: every image it shows is a file next to `index.html`."""

import html
import math
from dataclasses import dataclass, field

from slip_eval.data import Split
from slip_eval.homophily import ROWS as HOMOPHILY_ROWS
from slip_eval.homophily import reading
from slip_eval.report.entries import Entry
from slip_eval.report.ranking import Ranking
from slip_eval.results import flat_metrics

LOWER_IS_BETTER = ("median_rank",)
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


@dataclass
class Page:
    """The report's sections as HTML fragments, and what was left out and why."""

    sections: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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


def img(name: str, alt: str) -> str:
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
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
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
