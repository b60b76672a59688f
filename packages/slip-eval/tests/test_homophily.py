import json

from typer.testing import CliRunner

from slip_eval.cli import app
from slip_eval.homophily import reading
from slip_eval.report.page import Page, graph_section

FOLLOWS = {"edge": 0.62, "chance": 0.05, "adjusted": 0.6, "class_insensitive": 0.4}
BLIND = {"edge": 0.011, "chance": 0.008, "adjusted": 0.003, "class_insensitive": 0.0}


def test_the_reading_follows_adjusted_homophily():
    assert reading(FOLLOWS).startswith("Co-purchased products share the label 62.0% of the time")
    assert "well above chance" in reading(FOLLOWS) and "little" not in reading(FOLLOWS)
    assert "against 0.8% by chance" in reading(BLIND) and "not expected to help" in reading(BLIND)
    empty = {"edge": None, "chance": None, "adjusted": None, "class_insensitive": None}
    assert "no edges" in reading(empty)
    assert all(text.count(". ") == 1 for text in (reading(FOLLOWS), reading(BLIND), reading(empty)))


def test_the_report_section_escapes_and_notes_old_shards():
    page = Page()
    graph_section(page, FOLLOWS | {"edge": None})
    ((title, content),) = page.sections
    assert title == "Co-purchase graph" and "<td class='num'>–</td>" in content
    graph_section(page, None)
    assert page.notes == ["graph homophily: the shards predate slip-data recording it"]


def write_manifest(folder, **extra):
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1, **extra}))
    return folder


def test_compare_prints_the_graphs_homophily(tmp_path):
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"model": "m", "task": "t", "metrics": {"acc1": 0.5}}))
    shards = write_manifest(tmp_path / "new", homophily=BLIND)
    said = CliRunner().invoke(app, ["compare", str(result), "--shards", str(shards)])
    assert said.exit_code == 0, said.output
    assert "edge homophily (share of edges within one label): 0.011" in said.output
    assert "not expected to help" in said.output
    old = write_manifest(tmp_path / "old")
    said = CliRunner().invoke(app, ["compare", str(result), "--shards", str(old)])
    assert "the shards predate slip-data recording it" in said.output
