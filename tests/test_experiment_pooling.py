"""bench/experiments/slip_vs_clip.py --pool-with: seeds run in two sittings give the summary one
sitting of them all would, and only the same cell pools."""

import importlib.util
import random
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "experiments" / "slip_vs_clip.py"
spec = importlib.util.spec_from_file_location("slip_vs_clip", SCRIPT)
experiment = importlib.util.module_from_spec(spec)
spec.loader.exec_module(experiment)

GRAPH = {"edge_homophily": 0.008, "adjusted_homophily": 0.0, "mean_degree": 8.0}


def cell(seeds: list[int], values: dict[str, tuple[list[float], list[float]]], graph=GRAPH):
    """A summary entry in summarise's shape, from per-seed CLIP and SLIP values per metric."""
    metrics = {
        name: {
            "clip": experiment.mean_std(clip),
            "slip": experiment.mean_std(slip),
            "slip_minus_clip": experiment.paired([a - b for a, b in zip(slip, clip, strict=True)]),
        }
        for name, (clip, slip) in values.items()
    }
    return {
        "axes": ["homophily"],
        "seeds": seeds,
        "devices": ["auto"],
        "graph": graph,
        "metrics": metrics,
        "unresolved": experiment.unresolved(metrics, len(seeds)),
        "pretraining": "demo-20000",
    }


def draws(n: int, rng: random.Random) -> tuple[list[float], list[float]]:
    clip = [rng.gauss(0.2, 0.01) for _ in range(n)]
    return clip, [value + rng.gauss(-0.004, 0.008) for value in clip]


def test_two_sittings_pool_to_the_summary_of_one():
    rng = random.Random(3)
    first = {"R@1": draws(5, rng), "MRR": draws(5, rng)}
    second = {"R@1": draws(5, rng), "MRR": draws(5, rng), "only here": draws(5, rng)}
    earlier = {"c": cell([0, 1, 2, 3, 4], first), "elsewhere": cell([0, 1, 2], first)}
    earlier["c"]["axes"] = ["start", "homophily"]  # on the axes of the earlier run's main cell
    pooled = experiment.pool_with({"c": cell([5, 6, 7, 8, 9], second)}, earlier)
    whole = cell(
        list(range(10)),
        {
            name: tuple(a + b for a, b in zip(first[name], second[name], strict=True))
            for name in first
        },
    )
    assert pooled["elsewhere"] == earlier["elsewhere"]  # a cell not run again is kept as it was
    assert set(pooled["c"]["metrics"]) == {"R@1", "MRR"}  # a metric of one sitting is not pooled
    assert pooled["c"]["seeds"] == whole["seeds"]
    assert pooled["c"]["axes"] == ["homophily"]  # where this run's grid puts it
    for name, row in whole["metrics"].items():
        for key, stats in row.items():
            got = pooled["c"]["metrics"][name][key]
            assert got["n"] == stats["n"] == 10
            assert got["mean"] == pytest.approx(stats["mean"], rel=1e-12)
            assert got["std"] == pytest.approx(stats["std"], rel=1e-9)
        assert pooled["c"]["metrics"][name]["slip_minus_clip"]["ci95"] == pytest.approx(
            row["slip_minus_clip"]["ci95"], rel=1e-9
        )
    assert pooled["c"]["unresolved"] == whole["unresolved"]


@pytest.mark.parametrize(
    ("seeds", "graph", "said"),
    [
        ([4, 5], GRAPH, "seeds [4] are in both"),
        ([5, 6], GRAPH | {"edge_homophily": 0.009}, "not the same cell"),
    ],
)
def test_only_the_same_cell_with_other_seeds_pools(seeds, graph, said):
    rng = random.Random(4)
    earlier = {"c": cell([0, 1, 2, 3, 4], {"R@1": draws(5, rng)})}
    with pytest.raises(SystemExit, match=re.escape(said)):
        experiment.pool_with({"c": cell(seeds, {"R@1": draws(2, rng)}, graph)}, earlier)
