"""`slip-eval report` on two tiny runs (SLIP and CLIP) of the demo build, opened in a real
headless Chromium: every image the page shows loads, and its tables are there."""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slip_eval.cli import app, main
from slip_eval.models import load_model
from slip_eval.nodeclass import nodeclass
from slip_eval.results import write_result
from slip_eval.tasks import classification, linkpred

QUERIES = 6
# put into a copy of the page, which has no script of its own: tells the headless browser's
# dumped DOM how many images and tables actually rendered
LOAD_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const body = document.body.dataset;
  body.images = images.length;
  body.imagesLoaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  body.tables = document.querySelectorAll("table").length;
});
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium binary, which scripts/test-setup.sh installs; missing, a skip here and a
    failure in CI, where this test must run."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "chromium is missing: scripts/test-setup.sh installs it (as root, with apt-get)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def invoke(*args: str) -> str:
    done = CliRunner().invoke(app, [*args, "--quiet"])
    assert done.exit_code == 0, done.output
    return done.output


@pytest.fixture(scope="module")
def evaluated(demo_build, demo_runs, tmp_path_factory) -> tuple[list[Path], Path]:
    """Retrieval (SLIP with --structure), 0/2-shot classification and link prediction results of
    both runs, and SLIP's node classification; the few-shot through the prototype alone, since
    the probe's weight-decay sweep takes minutes."""
    out = tmp_path_factory.mktemp("report-results")
    cache, results = out / "ecache", []
    for mode in ("slip", "clip"):
        ckpt = str(demo_runs.checkpoint(mode))
        results.append(out / f"{mode}-retrieval.json")
        invoke("retrieval", "--ckpt", ckpt, "--shards", str(demo_build), "--cache-dir", str(cache),
               *(["--structure"] if mode == "slip" else []), "--out", str(results[-1]))  # fmt: skip
        results.append(out / f"{mode}-classify.json")
        model = load_model(ckpt, None, None)
        classified = classification(
            model,
            demo_build,
            "test",
            cache_dir=cache,
            shots=[0, 2],
            seeds=2,
            methods=("prototype",),
            quiet=True,
        )
        write_result(classified, results[-1])
        results.append(out / f"{mode}-linkpred.json")
        ranked = linkpred(model, demo_build, "test", cache_dir=cache, per_positive=20,
                          predictors=("sage",), structure=mode == "slip", quiet=True)  # fmt: skip
        write_result(ranked, results[-1])
    results.append(out / "slip-nodeclass.json")  # SLIP's alone: its plot and table are drawn
    slip = load_model(str(demo_runs.checkpoint("slip")), None, None)
    classified = nodeclass(slip, demo_build, cache_dir=cache, models=("gcn", "mlp"), seeds=1,
                           structure=True, max_epochs=20, quiet=True)  # fmt: skip
    write_result(classified, results[-1])
    return results, cache


def experiment_summary(folder: Path) -> Path:
    """Two cells on the homophily axis of bench/experiments/slip_vs_clip.py's summary.json, with
    the fields the report reads (docs/eval.md)."""
    main = {"start": "pretrained", "size": 11000, "noise": 0.2, "homophily": 0.5, "weight": 0.5,
            "batch": 128}  # fmt: skip
    cells = {}
    for homophily, edge in ((0.5, 0.5), (0.0, 0.12)):
        mean = edge / 10
        diff = {"mean": mean, "std": 0.01, "n": 3, "ci95": [mean - 0.02, mean + 0.02]}
        cells[f"pretrained-demo-11000-noise0.2-homophily{homophily:g}-weight0.5-batch128"] = {
            "axes": list(main) if homophily == main["homophily"] else ["homophily"],
            **main,
            "homophily": homophily,
            "steps": 500,
            "seeds": [0, 1, 2],
            "graph": {"edge_homophily": edge},
            "metrics": {"text→image R@1": {"slip_minus_clip": diff}},
        }
    path = folder / "summary.json"
    path.write_text(json.dumps(cells))
    return path


class Sources(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def test_report_opens_in_chromium(chromium, demo_build, evaluated, tmp_path):
    results, cache = evaluated
    out = tmp_path / "report"
    summary = experiment_summary(tmp_path)
    said = invoke("report", *map(str, results), "--out", str(out), "--shards", str(demo_build),
                  "--cache-dir", str(cache), "--queries", str(QUERIES),
                  "--experiment", str(summary))  # fmt: skip
    index = out / "index.html"
    assert f"wrote {index}" in said
    plots = ("loss", "recall", "fewshot", "linkpred", "nodeclass", "neighbourhood", "homophily")
    for name in (f"{plot}.png" for plot in plots):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = index.read_text()
    parser = Sources()
    parser.feed(page)
    assert parser.links and all((out / link).is_file() for link in parser.links)
    assert "slip-tiny · slip" in page and "slip-tiny · clip" in page and "Left out" not in page
    assert "<h2>Co-purchase graph</h2>" in page and "by chance (adjusted homophily" in page
    assert "<h2>SLIP − CLIP against label homophily</h2>" in page and 'src="homophily.png"' in page
    # a second report replaces the first whole, and sweeps what a killed one left beside it
    killed = subprocess.Popen(["true"])
    killed.wait()
    left = tmp_path / f".report.{killed.pid}.x.tmp"
    left.mkdir()
    invoke("report", *map(str, results), "--out", str(out))
    assert not left.exists() and sorted(p.name for p in tmp_path.glob(".report*")) == []
    assert not (out / "thumbs").exists() and "no --shards given" in index.read_text()
    invoke("report", *map(str, results), "--out", str(out), "--shards", str(demo_build),
           "--cache-dir", str(cache), "--queries", str(QUERIES),
           "--experiment", str(summary))  # fmt: skip

    browse = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--virtual-time-budget=10000"]  # fmt: skip
    assert "<script" not in index.read_text()
    probed = out / "probed.html"  # beside index.html, so that its image paths resolve
    probed.write_text(index.read_text().replace("</body>", LOAD_PROBE + "</body>"))
    dom = subprocess.run([*browse, "--dump-dom", probed.as_uri()], capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:2000]
    probe = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body.group(1)))
    # seven plots, and per query the right image plus each of the two models' top five; the
    # metrics tables of the four tasks, the homophily table and the experiment's
    assert probe == {"images": str(7 + QUERIES * 11), "images-loaded": str(7 + QUERIES * 11),
                     "tables": "6"}, probe  # fmt: skip
    shot = tmp_path / "report.png"
    subprocess.run([*browse, f"--screenshot={shot}", "--window-size=1280,2400", index.as_uri()],
                   capture_output=True, timeout=120, check=False)  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SLIP_REPORT_SCREENSHOT"):  # for a person to look at
        shutil.copy(shot, os.environ["SLIP_REPORT_SCREENSHOT"])


def test_bad_input_is_one_line(demo_build, evaluated, tmp_path, monkeypatch, capsys):
    results, _ = evaluated
    unreadable = tmp_path / "broken.json"
    unreadable.write_text("{not json")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    report = tmp_path / "report"
    cases = [
        ([str(unreadable)], report, "broken.json: not a readable result file"),
        ([str(results[0]), "--shards", str(tmp_path / "nowhere")], report, "no manifest.json in"),
        ([str(results[0])], taken, "taken: exists and is not a report folder"),
    ]
    for args, out, message in cases:
        monkeypatch.setattr("sys.argv", ["slip-eval", "report", *args, "--out", str(out)])
        with pytest.raises(SystemExit) as exit_:
            main()
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and lines[-1].startswith("error: "), lines
        assert message in lines[-1] and len(lines) == 1, lines
    assert (taken / "notes.txt").read_text() == "mine" and not report.exists()
