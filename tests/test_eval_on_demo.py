"""slip-eval on what slip-train and slip-data wrote, through the commands only: checkpoints and
exports of both modes, structure-aware inference, the embedding cache, compare, bad input."""

import hashlib
import json

import pytest
import torch
from commands import SLIP_EVAL, run, slip_eval_in_process


def evaluate(*args: str) -> dict:
    done = run([*SLIP_EVAL, *args, "--quiet"])
    assert done.returncode == 0, done.stderr
    return done


def test_retrieval_of_a_slip_checkpoint_with_structure(demo_build, demo_runs, tmp_path):
    ckpt = demo_runs.checkpoint("slip")
    out, cache = tmp_path / "slip.json", tmp_path / "cache"
    done = evaluate("retrieval", "--ckpt", str(ckpt), "--shards", str(demo_build), "--structure",
                    "--out", str(out), "--cache-dir", str(cache))  # fmt: skip
    result = json.loads(out.read_text())
    assert result["task"] == "zeroshot_retrieval" and result["model"] == "slip-tiny"
    assert result["split"] == "test" and result["n"] > 30 and result["edges"] > 0
    for metrics in (result["metrics"], result["graph_metrics"]):
        assert 0 <= metrics["image_retrieval_recall@1"] <= metrics["image_retrieval_recall@5"] <= 1
        assert 1 <= metrics["text_retrieval_median_rank"] <= result["n"]
    assert "| image_retrieval_recall@1 |" in done.stdout and "graph: " in done.stdout
    # the cache holds the encoders' output; a second run reads it, and agrees
    (cached,) = cache.glob("*.pt")
    embeddings = torch.load(cached, weights_only=True)
    assert embeddings["image"].shape == (result["n"], 64)
    evaluate("retrieval", "--ckpt", str(ckpt), "--shards", str(demo_build), "--structure",
             "--out", str(tmp_path / "again.json"), "--cache-dir", str(cache))  # fmt: skip
    assert json.loads((tmp_path / "again.json").read_text()) == result


def test_parity_with_clip_benchmark_on_real_embeddings(demo_build, demo_runs, tmp_path):
    from clip_benchmark.metrics.zeroshot_retrieval import dataloader_with_indices, recall_at_k

    del dataloader_with_indices  # imported to pin the module that defines recall_at_k
    ckpt = demo_runs.checkpoint("clip")
    out, cache = tmp_path / "clip.json", tmp_path / "cache"
    evaluate("retrieval", "--ckpt", str(ckpt), "--shards", str(demo_build), "--out", str(out),
             "--cache-dir", str(cache))  # fmt: skip
    result = json.loads(out.read_text())
    (cached,) = cache.glob("*.pt")
    embeddings = torch.load(cached, weights_only=True)
    image = torch.nn.functional.normalize(embeddings["image"], dim=-1)
    text = torch.nn.functional.normalize(embeddings["text"], dim=-1)
    scores = text @ image.T
    positives = torch.eye(len(image), dtype=torch.bool)
    for k in (1, 5, 10):
        theirs = recall_at_k(scores, positives, k).float().mean().item()
        assert result["metrics"][f"image_retrieval_recall@{k}"] == pytest.approx(theirs)
        theirs = recall_at_k(scores.T, positives.T, k).float().mean().item()
        assert result["metrics"][f"text_retrieval_recall@{k}"] == pytest.approx(theirs)


def test_classify_zero_and_few_shot_and_compare(demo_build, demo_runs, tmp_path):
    results = []
    for mode in ("slip", "clip"):
        out = tmp_path / f"{mode}.json"
        done = evaluate("classify", "--ckpt", str(demo_runs.checkpoint(mode)),
                        "--shards", str(demo_build), "--shots", "0,2,16", "--seeds", "2",
                        "--out", str(out), "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
        result = json.loads(out.read_text())
        assert set(result["metrics"]) == {"acc1", "acc5", "mean_per_class_recall"}
        assert set(result["fewshot"]["metrics"]) == {"prototype", "linear_probe"}
        two = result["fewshot"]["metrics"]["linear_probe"]["2"]
        assert 0 <= two["acc1_mean"] <= 1 and two["acc1_std"] >= 0
        # 600 products over 132 labels: some have fewer than 16 train examples, and it is said
        assert result["short_classes"]["16"] and "note: 16-shot: fewer than 16" in done.stderr
        results.append(out)
    chart = tmp_path / "chart.png"
    compared = run([*SLIP_EVAL, "compare", *map(str, results), "--chart", str(chart)])
    assert compared.returncode == 0, compared.stderr
    assert "| acc1 |" in compared.stdout and "slip-tiny (slip)" in compared.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one cache entry per (model, split): two checkpoints, three splits each
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 6


def test_the_export_and_the_named_model_give_the_checkpoints_numbers(
    demo_build, demo_runs, demo_export, tmp_path
):
    numbers = []
    named = ["--model", "slip-tiny", "--model-config", str(demo_export / "slip-tiny.json"),
             "--pretrained", str(demo_export / "open_clip_pytorch_model.bin")]  # fmt: skip
    ckpt = demo_runs.checkpoint("clip")
    for source in (["--ckpt", str(ckpt)], ["--ckpt", str(demo_export)], named):
        out = tmp_path / f"{len(numbers)}.json"
        evaluate("retrieval", *source, "--shards", str(demo_build), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
        numbers.append(json.loads(out.read_text())["metrics"])
    assert numbers[1] == pytest.approx(numbers[0]) and numbers[2] == pytest.approx(numbers[0])


@pytest.mark.parametrize(
    ("task", "options"),
    [
        ("linkpred", ["--edges", "touching", "--predictors", "sage"]),
        ("nodeclass", ["--models", "sage,mlp", "--seeds", "1", "--max-epochs", "20"]),
    ],
)
def test_the_graph_tasks_take_any_open_clip_model(
    demo_build, demo_runs, demo_export, tmp_path, task, options
):
    # open_clip's own model by name and weights file, as a user brings one, gives the numbers of
    # the checkpoint it was exported from
    named = ["--model", "slip-tiny", "--model-config", str(demo_export / "slip-tiny.json"),
             "--pretrained", str(demo_export / "open_clip_pytorch_model.bin")]  # fmt: skip
    numbers = []
    for source in (["--ckpt", str(demo_runs.checkpoint("clip"))], named):
        out = tmp_path / f"{len(numbers)}.json"
        evaluate(task, *source, *options, "--shards", str(demo_build), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
        numbers.append(json.loads(out.read_text())["metrics"])
    assert numbers[1] == pytest.approx(numbers[0], nan_ok=True)
    assert numbers[0]


def shards_without(demo_build, folder, split=None, labels=True):
    """A copy of the demo shards with one split's products moved to train, or no label names."""
    import shutil

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shutil.copytree(demo_build / "shards", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if split:
        for entry in manifest["files"]:
            if entry["kind"] == "nodes":
                table = pq.read_table(folder / entry["path"])
                moved = pc.replace_substring(table["split"], split, "train")
                pq.write_table(table.set_column(table.schema.get_field_index("split"), "split",
                                                moved), folder / entry["path"])  # fmt: skip
                data = (folder / entry["path"]).read_bytes()  # readers verify the manifest's hash
                entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    if not labels:
        manifest["label_names"] = []
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_missing_split_and_missing_labels(demo_build, demo_runs, tmp_path, monkeypatch, capsys):
    slip = str(demo_runs.checkpoint("slip"))
    no_val = shards_without(demo_build, tmp_path / "no-val", split="val")
    out = tmp_path / "r.json"
    code, err = slip_eval_in_process(
        ["retrieval", "--ckpt", slip, "--shards", str(no_val), "--split", "val", "--quiet"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert code == 2 and "the 'val' split has no product with an image" in err.splitlines()[-1]
    # few-shot without val: the documented fallback, said on stderr and in the result
    from typer.testing import CliRunner

    from slip_eval.cli import app

    done = CliRunner().invoke(app, ["classify", "--ckpt", slip, "--shards", str(no_val), "--shots",
                                    "0,2", "--seeds", "1", "--out", str(out), "--quiet",
                                    "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert done.exit_code == 0, done.output
    result = json.loads(out.read_text())
    assert result["notes"] == ["no val split: weight decay chosen on a second draw from train"]
    assert "2" in result["fewshot"]["metrics"]["linear_probe"]
    no_labels = shards_without(demo_build, tmp_path / "no-labels", labels=False)
    code, err = slip_eval_in_process(
        ["classify", "--ckpt", slip, "--shards", str(no_labels), "--quiet"], monkeypatch, capsys
    )
    assert code == 2 and "the manifest has no label_names" in err.splitlines()[-1]


def test_bad_input_is_one_line(demo_build, demo_runs, tmp_path, monkeypatch, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not really")
    clip = str(demo_runs.checkpoint("clip"))
    slip = str(demo_runs.checkpoint("slip"))
    shards = ["--shards", str(demo_build), "--cache-dir", str(tmp_path), "--quiet"]
    cases = [
        (["retrieval", "--ckpt", "missing.pt", *shards], "missing.pt: no such checkpoint"),
        (["retrieval", "--model", "ViT-Q-99", *shards], "--model: open_clip knows no model"),
        (["retrieval", "--model", "x", "--model-config", "none.json", *shards], "no such file"),
        (["retrieval", *shards], "give --ckpt (a checkpoint or export) or --model"),
        (["retrieval", "--ckpt", clip, "--structure", *shards], "the model has no graph head"),
        (["retrieval", "--ckpt", slip, "--split", "dev", *shards], "'dev' is not one of"),
        (["retrieval", "--ckpt", str(corrupt), *shards], "not a readable checkpoint"),
        (["retrieval", "--ckpt", str(tmp_path), *shards], "without open_clip_config.json"),
        (["retrieval", "--ckpt", slip, "--shards", "nowhere"], "no manifest.json in nowhere"),
        (["classify", "--ckpt", slip, "--shots", "1,x", *shards], "--shots: '1,x' is not"),
        (["classify", "--ckpt", slip, "--seeds", "0", *shards], "--seeds: must be at least 1"),
        (["compare", str(corrupt)], "not a readable result file"),
    ]
    for args, message in cases:
        code, err = slip_eval_in_process(args, monkeypatch, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and lines[-1].startswith("error: ") and message in lines[-1], (args, err)
        assert "Traceback" not in err
