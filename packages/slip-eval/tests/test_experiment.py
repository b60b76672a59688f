"""`slip-eval report --experiment`: the homophily axis of a synthetic slip_vs_clip summary, its
table and figure, and bad summaries as one line naming the file. No training: the summaries are
written here in the shape bench/experiments/slip_vs_clip.py gives them."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from slip_eval.cli import main
from slip_eval.experiment import (
    FIGURE,
    HEADLINE,
    TITLE,
    experiment_section,
    homophily_table,
    read_experiment,
    variants,
)
from slip_eval.report import build_report
from slip_eval.results import write_result

AXES = ["start", "size", "noise", "homophily", "weight", "batch", "variant"]
MAIN = {"start": "pretrained", "size": 11000, "noise": 0.2, "homophily": 0.5, "weight": 0.5,
        "batch": 128, "variant": "paper"}  # fmt: skip
METRICS = [*HEADLINE, "image→text MRR"]
RESULT = {"model": "m", "task": "zeroshot_retrieval", "metrics": {"image_retrieval_recall@1": 0.5}}


def cell(edge: float, shift: float, *, axes: list[str], seeds: int = 3, **changes) -> dict:
    """A summary cell at measured edge homophily `edge`; metric i's SLIP − CLIP is shift + i/100,
    its interval ± 0.0125 (exact to the table's 4 decimals); one seed has no interval."""
    metrics = {}
    for i, name in enumerate(METRICS):
        mean = shift + i / 100
        ci = [mean - 0.0125, mean + 0.0125] if seeds > 1 else None
        metrics[name] = {
            "clip": {"mean": 0.3, "std": 0.01, "n": seeds},
            "slip": {"mean": 0.3 + mean, "std": 0.01, "n": seeds},
            "slip_minus_clip": {"mean": mean, "std": 0.01, "n": seeds, "ci95": ci},
        }
    return {"axes": axes, **(MAIN | changes), "steps": 500, "seeds": list(range(seeds)),
            "devices": ["cpu"], "metrics": metrics,
            "graph": {"edge_homophily": edge, "adjusted_homophily": edge - 0.1,
                      "mean_degree": 8.0, "test_products": 1077}}  # fmt: skip


def summary_file(folder: Path, cells: dict[str, dict], name: str = "summary.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(cells, ensure_ascii=False))
    return path


def grid() -> dict[str, dict]:
    """The main cell, four more on the homophily axis (measured homophily not in the options'
    order); off the axis: a weight and a start cell at the main homophily, and another SLIP
    variant's cell at homophily 0.25 (the script puts it on a homophily axis of its own)."""
    return {
        "h0.75": cell(0.78, 0.04, axes=["homophily"], homophily=0.75),
        "h0": cell(0.11, -0.02, axes=["homophily"], homophily=0.0),
        "main<&>": cell(0.50, 0.01, axes=AXES),
        "h1": cell(0.74, 0.05, axes=["homophily"], homophily=1.0),
        "h0.25": cell(0.30, 0.0, axes=["homophily"], homophily=0.25),
        "w0": cell(0.50, 0.09, axes=["weight"], weight=0.0),
        "scratch": cell(0.50, 0.07, axes=["start"], start="scratch"),
        "soft-h0.25": cell(0.30, 0.08, axes=["homophily"], homophily=0.25, variant="soft"),
    }


class Table(HTMLParser):
    """The text of each row's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.inside = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
            self.inside = True

    def handle_endtag(self, tag: str) -> None:
        self.inside = self.inside and tag not in ("td", "th")

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.rows[-1][-1] += data


def test_the_axis_is_the_cells_off_the_main_one_in_homophily_alone_by_measured_homophily(tmp_path):
    experiment = read_experiment(summary_file(tmp_path, grid()))
    assert experiment.main == "main<&>"
    lines = variants(experiment)
    assert list(lines) == ["paper", "soft"]  # the main cell's variant first
    assert [p.name for p in lines["paper"]] == ["h0", "h0.25", "main<&>", "h1", "h0.75"]
    assert [p.edge_homophily for p in lines["paper"]] == [0.11, 0.30, 0.50, 0.74, 0.78]
    assert [p.main for p in lines["paper"]] == [False, False, True, False, False]
    assert [p.name for p in lines["soft"]] == ["soft-h0.25"]  # off the weight and start axes
    assert experiment.metrics == list(HEADLINE)  # image→text MRR is no headline


def test_the_table_gives_each_cells_homophily_and_mean_with_its_interval(tmp_path):
    cells = grid()
    cells["h0"] = cell(0.11, -0.02, axes=["homophily"], seeds=1, homophily=0.0)
    experiment = read_experiment(summary_file(tmp_path, cells))
    parser = Table()
    parser.feed(homophily_table(experiment))
    head, *rows = parser.rows
    assert head == ["cell", "variant", "edge homophily", "seeds", *HEADLINE]
    assert [row[0] for row in rows] == [
        "h0", "h0.25", "main<&> (main)", "h1", "h0.75", "soft-h0.25",
    ]  # fmt: skip
    for row in rows:
        given = cells[row[0].removesuffix(" (main)")]
        assert row[1] == given["variant"]
        assert float(row[2]) == given["graph"]["edge_homophily"]
        assert int(row[3]) == len(given["seeds"])
        for metric, text in zip(HEADLINE, row[4:], strict=True):
            diff = given["metrics"][metric]["slip_minus_clip"]
            mean, interval = re.fullmatch(r"(\S+) \[(.*)\]", text).groups()
            assert float(mean) == pytest.approx(diff["mean"], abs=5e-5)
            if diff["ci95"] is None:
                assert interval == "–"
            else:
                lo, hi = map(float, interval.split(", "))
                assert [lo, hi] == pytest.approx(diff["ci95"], abs=5e-5)


def test_the_section_draws_the_figure_and_escapes_names(tmp_path):
    experiment = read_experiment(summary_file(tmp_path, grid()))
    title, body = experiment_section(experiment, tmp_path)
    assert title == TITLE and f'src="{FIGURE}"' in body
    assert "main&lt;&amp;&gt;" in body and "main<&>" not in body
    assert "seeds 0, 1, 2" in body and "500 steps of 128" in body
    with Image.open(tmp_path / FIGURE) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300
        image.verify()


def test_fewer_than_two_cells_on_the_axis_is_a_sentence_not_a_figure(tmp_path):
    cells = {name: c for name, c in grid().items() if not name.startswith("h")}
    title, body = experiment_section(read_experiment(summary_file(tmp_path, cells)), tmp_path)
    assert title == TITLE and "only cell on the homophily axis" in body
    assert "<img" not in body and not (tmp_path / FIGURE).exists()


def test_the_report_page_has_the_section_and_its_image(tmp_path):
    result = tmp_path / "result.json"
    write_result(RESULT, result)
    index = build_report([result], tmp_path / "report", experiment=summary_file(tmp_path, grid()))
    page = index.read_text()
    assert f"<h2>{TITLE}</h2>" in page and f'src="{FIGURE}"' in page
    assert (index.parent / FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def edited(*keys: str, value: object = None) -> str:
    """The grid's summary with the key at the path `keys` (a cell name first) set to `value`, or
    removed without one."""
    cells = grid()
    target = cells
    for key in keys[:-1]:
        target = target[key]
    if value is None:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return json.dumps(cells)


BAD = {  # what the summary is: (its text, or None for no file; what the error line says)
    "missing": (None, "not a readable experiment summary ([Errno 2]"),
    "not-json": ("{not json", "not a readable experiment summary (Expecting"),
    "a-list": ("[1, 2]", "not an experiment summary"),
    "no-axes": (edited("w0", "axes"), "cell 'w0' has no axes"),
    "no-main": (edited("main<&>"), "needs one main cell, on every axis, and a homophily axis"),
    "no-axis-value": (edited("w0", "batch"), "cell 'w0' has no batch"),
    "no-homophily": (
        edited("h1", "graph", "edge_homophily"),
        "cell 'h1' has no graph.edge_homophily",
    ),
    "not-a-number": (
        edited("h1", "graph", "edge_homophily", value="high"),
        "cell 'h1': graph.edge_homophily, steps and batch must be numbers",
    ),
    "no-mean": (
        edited("h1", "metrics", "zero-shot acc1", "slip_minus_clip", "mean"),
        "cell 'h1' has no metrics.zero-shot acc1.slip_minus_clip.mean",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_summary_is_one_line_naming_the_file(case, tmp_path, monkeypatch, capsys):
    text, message = BAD[case]
    summary = tmp_path / "summary.json"
    if text is not None:
        summary.write_text(text)
    result = tmp_path / "result.json"
    write_result(RESULT, result)
    out = tmp_path / "report"
    monkeypatch.setattr(
        "sys.argv",
        ["slip-eval", "report", str(result), "--out", str(out), "--experiment", str(summary)],
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {summary}: {message}"), lines
    assert not out.exists()
