"""`slip-eval nodeclass` on the demo's checkpoints: GNNs and an MLP on the frozen embeddings over
the whole co-purchase graph, supervised and few-shot, plain and graph-refined, the same numbers
on a rerun, and bad input as one line (the options' own checks are in packages/slip-eval/tests:
test_nodeclass.py and test_cli.py)."""

import json
import math
import shutil

from commands import SLIP_EVAL, run, slip_eval_in_process

SMALL = ["--models", "gcn,mlp", "--seeds", "1", "--max-epochs", "30", "--quiet"]


def nodeclass(*args: str) -> dict:
    done = run([*SLIP_EVAL, "nodeclass", *args, *SMALL])
    assert done.returncode == 0, done.stderr
    return done


def test_both_modes_classify_the_test_products_repeat_and_compare(demo_build, demo_runs, tmp_path):
    results, stderr = {}, {}
    for mode, features in (("slip", "concat"), ("clip", "image"), ("clip-again", "image")):
        out = tmp_path / f"{mode}.json"
        structure = ["--structure"] if mode == "slip" else []
        checkpoint = str(demo_runs.checkpoint(mode.split("-")[0]))
        done = nodeclass("--ckpt", checkpoint, "--shards", str(demo_build), "--features",
                         features, "--shots", "2", "--out", str(out), "--cache-dir",
                         str(tmp_path / "c"), *structure)  # fmt: skip
        results[mode], stderr[mode] = json.loads(out.read_text()), done.stderr
    slip, clip = results["slip"], results["clip"]
    assert slip["task"] == "nodeclass" and slip["split"] == "test"
    assert slip["n"] == slip["nodes"]["test"] > 0 and slip["edges"] > 0
    assert slip["features"] == "concat" and clip["features"] == "image"
    assert slip["hyperparameters"]["max_epochs"] == 30
    assert "graph_metrics" in slip and "graph_metrics" not in clip
    for metrics in (slip["metrics"], slip["graph_metrics"], clip["metrics"]):
        assert set(metrics) == {
            f"{kind}_{name}{std}"
            for kind in ("gcn", "mlp")
            for name in ("acc", "macro_f1")
            for std in ("", "_std")
        }
        assert all(0 <= metrics[f"{kind}_acc"] <= 1 for kind in ("gcn", "mlp"))
        assert math.isnan(metrics["gcn_acc_std"])  # one seed
    two_shot = slip["fewshot"]["graph_metrics"]["gcn"]["2"]
    assert 0 <= two_shot["acc_mean"] <= 1 and 0 <= two_shot["macro_f1_mean"] <= 1
    # the demo's 132 labels over 600 products leave classes with fewer than 2 train products
    assert slip["short_classes"]["2"] and "2-shot: fewer than 2 train examples" in stderr["slip"]
    again = results["clip-again"]
    for part in ("metrics", "fewshot"):  # the same seeds, the same numbers (json: nan == nan)
        assert json.dumps(again[part]) == json.dumps(clip[part])
    files = [str(tmp_path / "slip.json"), str(tmp_path / "clip.json")]
    compared = run([*SLIP_EVAL, "compare", *files])
    assert compared.returncode == 0, compared.stderr
    assert "| gcn_acc |" in compared.stdout and "| 2-shot mlp acc_mean |" in compared.stdout


def test_bad_input_is_one_line(demo_build, demo_runs, tmp_path, monkeypatch, capsys):
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(demo_build / "shards", unlabelled)
    manifest = json.loads((unlabelled / "manifest.json").read_text())
    del manifest["label_names"]
    (unlabelled / "manifest.json").write_text(json.dumps(manifest))
    slip, clip = (str(demo_runs.checkpoint(mode)) for mode in ("slip", "clip"))
    base = ["--shards", str(demo_build), "--cache-dir", str(tmp_path / "c")]
    cases = [
        (["--ckpt", slip, "--models", "gcn,gin"], "--models: 'gcn,gin': give one or more of"),
        (["--ckpt", clip, "--structure"], "--structure: the model has no graph head"),
        (["--ckpt", slip, "--shards", str(unlabelled)], "no label_names: nothing to classify"),
    ]
    for args, message in cases:
        command = ["nodeclass", *base, *args, "--quiet"]
        code, err = slip_eval_in_process(command, monkeypatch, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and message in lines[-1], (args, err)
        assert "Traceback" not in err and len(lines) == 1, err
