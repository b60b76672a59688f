"""`slip-eval linkpred` on the demo's checkpoints: held-out co-purchases of the test split ranked
against seeded negatives, plain and graph-refined, and bad input as one line."""

import json

import torch
from commands import SLIP_EVAL, run, slip_eval_in_process


def linkpred(*args: str) -> dict:
    done = run([*SLIP_EVAL, "linkpred", *args, "--quiet"])
    assert done.returncode == 0, done.stderr
    return done


def test_both_modes_rank_held_out_edges_and_compare(demo_build, demo_runs, tmp_path):
    results = {}
    for mode in ("slip", "clip"):
        out = tmp_path / f"{mode}.json"
        extra = ["--structure", "--predictors", "sage,gcn"] if mode == "slip" else []
        linkpred("--ckpt", str(demo_runs.checkpoint(mode)), "--shards", str(demo_build),
                 "--per-positive", "20", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                 *extra)  # fmt: skip
        results[mode] = json.loads(out.read_text())
    slip = results["slip"]
    assert slip["task"] == "linkpred" and slip["negatives"] == "random"
    assert slip["held_out_edges"] > 0 and slip["observed_edges"] > 0
    assert abs(slip["held_out_edges"] - slip["observed_edges"]) <= 1  # --holdout 0.5
    assert "graph_metrics" in slip and "graph_metrics" not in results["clip"]
    assert "sage_mrr" in slip["graph_metrics"] and "sage_mrr" not in results["clip"]["metrics"]
    for metrics in (slip["metrics"], slip["graph_metrics"], results["clip"]["metrics"]):
        scorers = {name.split("_")[0] for name in metrics}
        assert scorers in ({"image", "text", "fused"}, {"image", "text", "fused", "sage", "gcn"})
        for features in scorers:
            hits = [metrics[f"{features}_hits@{k}"] for k in (1, 3, 10)]
            assert 0 <= hits[0] <= hits[1] <= hits[2] <= 1
            assert 1 / 21 <= metrics[f"{features}_mrr"] <= 1
    files = [str(tmp_path / "slip.json"), str(tmp_path / "clip.json")]
    compared = run([*SLIP_EVAL, "compare", *files])
    assert compared.returncode == 0 and "| fused_mrr |" in compared.stdout


def test_hard_negatives_repeat_by_seed_and_held_out_edges_never_refine(
    demo_build, demo_runs, tmp_path, monkeypatch
):
    from slip_eval import tasks
    from slip_eval.models import load_model

    model = load_model(str(demo_runs.checkpoint("slip")), None, None)
    seen = []

    def recording_refine(head, raw, edge_index):
        seen.append(edge_index.clone())
        return refine(head, raw, edge_index)

    refine = tasks.refine
    monkeypatch.setattr(tasks, "refine", recording_refine)
    options = dict(cache_dir=tmp_path / "c", negatives="hard", per_positive=5, structure=True)
    first = tasks.linkpred(model, demo_build, "test", seed=3, quiet=True, **options)
    again = tasks.linkpred(model, demo_build, "test", seed=3, quiet=True, **options)
    assert json.dumps(first) == json.dumps(again) and first["hard_filled"] >= 0  # nan: hits@10
    split = tasks.open_split(demo_build, "test")
    order = torch.randperm(split.edge_index.shape[1], generator=torch.Generator().manual_seed(3))
    held = {tuple(e) for e in split.edge_index[:, order[: first["held_out_edges"]]].t().tolist()}
    for edges in seen:
        used = {tuple(e) for e in edges.t().tolist()}
        assert used and not used & held


def test_bad_input_is_one_line(demo_build, demo_runs, tmp_path, monkeypatch, capsys):
    slip = str(demo_runs.checkpoint("slip"))
    base = ["--ckpt", slip, "--shards", str(demo_build), "--cache-dir", str(tmp_path)]
    cases = [
        (["--per-positive", "100000"], "possible negatives, fewer than the 100000"),
        (["--holdout", "1", "--structure"], "every edge of the 'test' split is held out"),
        (["--holdout", "0"], "--holdout"),
        (["--negatives", "near"], "'near' is not one of"),
        (["--predictors", "sage,gat"], "--predictors: 'sage,gat': give any of sage, gcn"),
        (["--holdout", "1", "--predictors", "gcn"], "--predictors: every edge of the 'test'"),
    ]
    for args, message in cases:
        command = ["linkpred", *base, *args, "--quiet"]
        code, err = slip_eval_in_process(command, monkeypatch, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and message in lines[-1], (args, err)
        assert "Traceback" not in err
