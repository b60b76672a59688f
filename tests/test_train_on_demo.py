"""slip-train on shards that slip-data built: each package through its command only."""

import json


def test_a_short_cpu_run_on_demo_shards_lowers_the_loss(demo_runs):
    log_file = demo_runs.folder("slip") / "log.jsonl"
    log = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert len(log) == 40 and all(r["edges"] > 0 for r in log)
    first = sum(r["loss"] for r in log[:5]) / 5
    last = sum(r["loss"] for r in log[-5:]) / 5
    assert last < first - 0.4, (first, last)  # measured: 6.49 to 5.06
