"""slip-train on shards that slip-data built: each package through its command only."""

import json

from commands import train_run


def test_a_short_cpu_run_on_demo_shards_lowers_the_loss(demo_build, tmp_path):
    trained = train_run(demo_build, tmp_path, "slip", steps=40)
    assert trained.returncode == 0, trained.stderr
    log = [json.loads(line) for line in (tmp_path / "slip" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 40 and all(r["edges"] > 0 for r in log)
    first = sum(r["loss"] for r in log[:5]) / 5
    last = sum(r["loss"] for r in log[-5:]) / 5
    assert last < first - 0.4, (first, last)  # measured: 6.54 to 5.85
