import json
import math

import pytest

from slip_eval.results import bar_chart, flat_metrics, markdown_table, read_result, write_result

RETRIEVAL = {
    "model": "slip-tiny", "task": "zeroshot_retrieval",
    "metrics": {"image_retrieval_recall@1": 0.25, "text_retrieval_mrr": 0.5},
    "graph_metrics": {"image_retrieval_recall@1": 0.5},
}  # fmt: skip
CLASSIFY = {
    "model": "ViT-B-32", "task": "zeroshot_classification",
    "metrics": {"acc1": 0.125, "acc5": math.nan},
    "fewshot": {"metrics": {"prototype": {"4": {"acc1_mean": 0.5, "acc1_std": 0.0625}}}},
}  # fmt: skip


def test_flat_metrics_name_every_number_once():
    assert flat_metrics(RETRIEVAL) == {
        "image_retrieval_recall@1": 0.25,
        "text_retrieval_mrr": 0.5,
        "graph: image_retrieval_recall@1": 0.5,
    }
    assert flat_metrics(CLASSIFY)["4-shot prototype acc1_mean"] == 0.5


def test_markdown_table_puts_results_side_by_side_with_std_and_gaps():
    table = markdown_table([RETRIEVAL, CLASSIFY], ["a", "b"]).splitlines()
    assert table[0] == "| metric | a | b |"
    assert "| image_retrieval_recall@1 | 0.2500 | – |" in table
    assert "| acc5 | – | nan |" in table
    assert "| 4-shot prototype acc1_mean | – | 0.5000 ± 0.0625 |" in table
    assert not any("acc1_std" in line for line in table)


def test_a_supervised_nodeclass_row_shows_its_seeds_std():
    nodes = {"model": "m", "task": "nodeclass", "metrics": {"gcn_acc": 0.75, "gcn_acc_std": 0.125}}
    table = markdown_table([nodes], ["a"]).splitlines()
    assert "| gcn_acc | 0.7500 ± 0.1250 |" in table
    assert not any("gcn_acc_std" in line for line in table)


def test_results_round_trip_and_bad_files_are_one_line(tmp_path):
    write_result(RETRIEVAL, tmp_path / "r.json")
    assert read_result(tmp_path / "r.json") == RETRIEVAL
    assert not list(tmp_path.glob(".*"))
    (tmp_path / "other.json").write_text(json.dumps({"model": "x"}))
    with pytest.raises(ValueError, match="not a slip-eval result"):
        read_result(tmp_path / "other.json")


def test_bar_chart_writes_a_png(tmp_path):
    bar_chart([RETRIEVAL, RETRIEVAL | {"model": "clip"}], ["slip", "clip"], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no metric in common"):
        bar_chart([{"task": "other", "metrics": {}}], ["x"], tmp_path / "d.png")
