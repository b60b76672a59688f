"""What the evaluated shards' co-purchase graph lets a user expect of SLIP: its label homophily
(the manifest's `homophily`, docs/shard-format.md) and a two-sentence reading of it.

SLIP takes co-purchase neighbours as positives; they carry label information only as far as the
graph's edges join products of one label more often than chance, which adjusted homophily
(Platonov et al. 2023) measures: 0 at chance, 1 when every edge joins one label.
"""

from pathlib import Path

from slip_eval.shard_contract import read_manifest

LITTLE = 0.1  # adjusted homophily under which neighbours share the label hardly above chance
ROWS = (  # (manifest key, what the report and compare call it)
    ("edge", "edge homophily (share of edges within one label)"),
    ("chance", "chance level (degree-weighted)"),
    ("adjusted", "adjusted homophily (0 = chance, 1 = every edge within one label)"),
    ("class_insensitive", "class-insensitive homophily"),
)


def graph_homophily(shards: str | Path) -> dict | None:
    """The manifest's homophily figures; None for shards written before slip-data recorded them."""
    _, manifest = read_manifest(shards)
    return manifest.get("homophily")


def reading(stats: dict) -> str:
    """Two sentences: how often neighbours share the label against chance, and what that means
    for SLIP's structural positives."""
    edge, chance, adjusted = stats.get("edge"), stats.get("chance"), stats.get("adjusted")
    if edge is None or chance is None or adjusted is None:
        return (
            "The graph has no edges between products of different labels to compare with chance "
            "(no edges, or one label). Its label homophily says nothing about SLIP here."
        )
    first = (
        f"Co-purchased products share the label {edge:.1%} of the time, against {chance:.1%} by "
        f"chance (adjusted homophily {adjusted:.2f})."
    )
    if adjusted < LITTLE:
        return first + (
            " Neighbours carry little label information, so SLIP's structural positives are not "
            "expected to help label-level retrieval or classification over CLIP."
        )
    return first + (
        " Neighbours share the label well above chance, so SLIP's structural positives carry "
        "label information and can help retrieval and few-shot classification."
    )


def homophily_lines(stats: dict) -> list[str]:
    """The figures as `name: value` lines, then the reading."""
    lines = [
        f"{name}: {'-' if stats.get(key) is None else format(stats[key], '.3f')}"
        for key, name in ROWS
    ]
    return [*lines, reading(stats)]
