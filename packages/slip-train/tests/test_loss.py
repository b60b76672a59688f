import math

import pytest
import torch
import unprepared

from slip_train.graph_head import neighbour_edges
from slip_train.loss import (
    clip_loss,
    positive_mask,
    positive_pairs,
    structural_loss,
    training_loss,
)


def unit(rows):
    t = torch.tensor(rows, dtype=torch.float64)
    return t / t.norm(dim=1, keepdim=True)


def test_clip_loss_by_hand():
    image = unit([[1.0, 0.0], [0.0, 1.0]])
    text = unit([[1.0, 0.0], [1.0, 1.0]])
    scale = 2.0
    # similarities: row 0 = [1, 1/sqrt2], row 1 = [0, 1/sqrt2]
    s = 1 / math.sqrt(2)
    logits = [[scale * 1, scale * s], [0.0, scale * s]]

    def ce(row, target):
        return -(row[target] - math.log(sum(math.exp(v) for v in row)))

    image_to_text = (ce(logits[0], 0) + ce(logits[1], 1)) / 2
    columns = [[logits[0][0], logits[1][0]], [logits[0][1], logits[1][1]]]
    text_to_image = (ce(columns[0], 0) + ce(columns[1], 1)) / 2
    expected = (image_to_text + text_to_image) / 2
    got = clip_loss(image, text, torch.tensor(math.log(scale), dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_the_loss_takes_the_logit_scale_as_given_and_passes_it_a_gradient():
    """The clamp to ln 100 is the training loop's, in place after the update (as open_clip's): a
    clamp inside the loss would leave a scale above the cap without a gradient, drifting."""
    image = unit([[1.0, 0.9], [0.9, 1.0]])  # close pairs: the loss is far from 0 at these scales
    text = unit([[1.0, 0.85], [0.85, 1.0]])
    above = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    loss = clip_loss(image, text, above)
    at_cap = clip_loss(image, text, torch.tensor(math.log(100.0), dtype=torch.float64))
    loss.backward()
    assert loss.item() != pytest.approx(at_cap.item(), rel=1e-6) and above.grad.item() != 0


def test_positive_mask_is_symmetric_with_the_diagonal():
    mask = positive_mask(4, neighbour_edges(torch.tensor([[0, 2], [1, 3]])))
    assert mask.tolist() == [
        [True, True, False, False],
        [True, True, False, False],
        [False, False, True, True],
        [False, False, True, True],
    ]


def test_structural_loss_by_hand():
    image = unit([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    text = unit([[1.0, 0.1], [0.1, 1.0], [1.0, 0.9]])
    edges = neighbour_edges(torch.tensor([[0], [2]]))  # 0 and 2 are co-purchased
    temperature = 0.5
    sim = (image @ text.T / temperature).tolist()
    positives = {0: [0, 2], 1: [1], 2: [2, 0]}

    def direction(rows):
        total = 0.0
        for i, row in enumerate(rows):
            log_z = math.log(sum(math.exp(v) for v in row))
            total += -sum(row[p] - log_z for p in positives[i]) / len(positives[i])
        return total / len(rows)

    columns = [list(col) for col in zip(*sim, strict=True)]
    expected = (direction(sim) + direction(columns)) / 2
    got = structural_loss(image, text, edges, temperature=temperature)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_without_edges_the_structural_loss_is_plain_infonce():
    image = unit([[1.0, 0.3], [0.2, 1.0], [0.7, 0.7]])
    text = unit([[0.9, 0.1], [0.3, 0.8], [0.6, 0.6]])
    none = torch.empty(2, 0, dtype=torch.long)
    got = structural_loss(image, text, none, temperature=0.25)
    expected = clip_loss(image, text, torch.tensor(math.log(4.0), dtype=torch.float64))
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_neighbours_as_positives_lower_the_loss_when_they_are_close():
    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(6, 8, dtype=torch.float64), dim=1)
    text = image.clone()
    text[0] = -image[0]  # product 0's own caption fits its image badly,
    text[1] = image[0]  # product 1's caption fits it well
    linked = neighbour_edges(torch.tensor([[0], [1]]))
    none = torch.empty(2, 0, dtype=torch.long)
    lowered = structural_loss(image, text, none, temperature=0.1) - structural_loss(
        image, text, linked, temperature=0.1
    )
    assert lowered > 0.5  # 1.02 here


def dense_targets(num_nodes: int, edges: torch.Tensor, neighbour_mass: float | None):
    anchor, other, target = positive_pairs(num_nodes, neighbour_edges(edges), neighbour_mass)
    dense = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
    dense.index_put_((anchor, other), target, accumulate=True)  # a pair twice would add up
    return dense


def test_soft_targets_give_the_own_pair_a_fixed_share_whatever_the_degree():
    # 0 has 3 neighbours (0-4 twice, once each way), 3 has 1, 5 none; the self-loop 2-2 is no pair
    edges = torch.tensor([[0, 0, 0, 3, 4, 2], [1, 2, 4, 4, 0, 2]])
    equal = dense_targets(6, edges, neighbour_mass=None)
    soft = dense_targets(6, edges, neighbour_mass=0.2)
    ones = torch.ones(6, dtype=torch.float64)
    assert torch.allclose(equal.sum(1), ones) and torch.allclose(soft.sum(1), ones)
    assert equal[0].tolist() == pytest.approx([0.25, 0.25, 0.25, 0, 0.25, 0])
    assert soft[0].tolist() == pytest.approx([0.8, 0.2 / 3, 0.2 / 3, 0, 0.2 / 3, 0])
    assert soft[3].tolist() == pytest.approx([0, 0, 0, 0.8, 0.2, 0])
    assert soft[4].tolist() == pytest.approx([0.2 / 2, 0, 0, 0.2 / 2, 0.8, 0])
    assert equal[2].tolist() == pytest.approx([0.5, 0, 0.5, 0, 0, 0])
    assert soft[5].tolist() == [0, 0, 0, 0, 0, 1]  # no neighbour: all on its own pair


def test_soft_structural_loss_by_hand():
    image = unit([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    text = unit([[1.0, 0.1], [0.1, 1.0], [1.0, 0.9]])
    edges = neighbour_edges(torch.tensor([[0, 0], [1, 2]]))  # 0 with 1 and with 2
    temperature, mass = 0.5, 0.3
    sim = (image @ text.T / temperature).tolist()
    targets = {0: {0: 0.7, 1: 0.15, 2: 0.15}, 1: {1: 0.7, 0: 0.3}, 2: {2: 0.7, 0: 0.3}}

    def direction(rows):
        total = 0.0
        for i, row in enumerate(rows):
            log_z = math.log(sum(math.exp(v) for v in row))
            total += -sum(q * (row[j] - log_z) for j, q in targets[i].items())
        return total / len(rows)

    columns = [list(col) for col in zip(*sim, strict=True)]
    expected = (direction(sim) + direction(columns)) / 2
    got = structural_loss(image, text, edges, temperature=temperature, neighbour_mass=mass)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_zero_neighbour_mass_is_plain_infonce():
    torch.manual_seed(1)
    image = torch.nn.functional.normalize(torch.randn(5, 4, dtype=torch.float64), dim=1)
    text = torch.nn.functional.normalize(torch.randn(5, 4, dtype=torch.float64), dim=1)
    edges = neighbour_edges(torch.tensor([[0, 1, 2], [1, 2, 4]]))
    got = structural_loss(image, text, edges, temperature=0.25, neighbour_mass=0.0)
    expected = clip_loss(image, text, torch.tensor(math.log(4.0), dtype=torch.float64))
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_neighbours_left_out_of_the_negatives_by_hand():
    """Without neighbours as negatives, each row's and column's cross-entropy sums only over the
    pairs that are not in-batch neighbours: here 0 and 1 are co-purchased, so 0's denominator
    holds 0 and 2 only."""
    image = unit([[1.0, 0.2], [0.9, 0.4], [0.1, 1.0]])
    text = unit([[1.0, 0.3], [0.8, 0.5], [0.2, 1.0]])
    edges = neighbour_edges(torch.tensor([[0], [1]]))
    scale = 3.0
    logits = (scale * image @ text.T).tolist()
    allowed = [[0, 2], [1, 2], [0, 1, 2]]  # row i's candidates: itself and its non-neighbours

    def ce(scores, target, keep):
        return -(scores[target] - math.log(sum(math.exp(scores[j]) for j in keep)))

    columns = [list(c) for c in zip(*logits, strict=True)]
    rows_term = sum(ce(logits[i], i, allowed[i]) for i in range(3)) / 3
    columns_term = sum(ce(columns[i], i, allowed[i]) for i in range(3)) / 3
    out = {"image": image, "text": text}
    got = training_loss(
        out,
        edges,
        torch.tensor(math.log(scale), dtype=torch.float64),
        structural_weight=0.5,
        structural_temperature=0.1,
        neighbours_as_negatives=False,
    )
    assert got["clip_loss"].item() == pytest.approx((rows_term + columns_term) / 2, rel=1e-12)
    counted = training_loss(
        out,
        edges,
        torch.tensor(math.log(scale), dtype=torch.float64),
        structural_weight=0.5,
        structural_temperature=0.1,
    )
    plain = clip_loss(image, text, torch.tensor(math.log(scale), dtype=torch.float64))
    assert counted["clip_loss"].item() == pytest.approx(plain.item(), rel=1e-12)
    assert got["clip_loss"].item() < counted["clip_loss"].item()  # fewer terms in each sum


def test_anchor_weights_weigh_each_anchors_two_cross_entropies():
    """Weights all alike give the plain loss; weights on one anchor alone give that anchor's own
    image->text and text->image terms; a weight of 2 counts an anchor as twice the others."""
    generator = torch.Generator().manual_seed(3)
    image = torch.nn.functional.normalize(
        torch.randn(4, 5, generator=generator, dtype=torch.float64)
    )
    text = torch.nn.functional.normalize(
        torch.randn(4, 5, generator=generator, dtype=torch.float64)
    )
    scale = torch.tensor(math.log(10.0), dtype=torch.float64)
    logits = (10.0 * image @ text.T).tolist()

    def own(i):  # anchor i's two cross-entropies, by hand
        rows = -(logits[i][i] - math.log(sum(math.exp(v) for v in logits[i])))
        column = [logits[j][i] for j in range(4)]
        return rows - (logits[i][i] - math.log(sum(math.exp(v) for v in column)))

    plain = clip_loss(image, text, scale)
    alike = clip_loss(image, text, scale, weights=torch.full((4,), 3.0, dtype=torch.float64))
    assert alike.item() == pytest.approx(plain.item(), rel=1e-12)
    assert plain.item() == pytest.approx(sum(own(i) for i in range(4)) / 8, rel=1e-12)
    alone = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    assert clip_loss(image, text, scale, weights=alone).item() == pytest.approx(own(2) / 2)
    twice = torch.tensor([2.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    expected = (2 * own(0) + own(1) + own(2) + own(3)) / 10
    assert clip_loss(image, text, scale, weights=twice).item() == pytest.approx(expected)


RAW_GRAPHS = [  # (nodes, edges) as a planner may hand them over
    (6, torch.tensor([[0, 0, 0, 3, 4, 2], [1, 2, 4, 4, 0, 2]])),  # repeated pair, self loop
    (4, torch.empty(2, 0, dtype=torch.long)),
    (12, torch.randint(10, (2, 30), generator=torch.Generator().manual_seed(0))),
    (40, torch.randint(40, (2, 200), generator=torch.Generator().manual_seed(1))),
]


@pytest.mark.parametrize(("num_nodes", "raw"), RAW_GRAPHS)
@pytest.mark.parametrize("neighbour_mass", [None, 0.3])
def test_positives_of_the_prepared_edges_are_those_found_on_the_device_before(
    num_nodes, raw, neighbour_mass
):
    """The same (anchor, other, target) rows, in the same order, as torch.unique found in the
    raw edges inside the loss (tests/unprepared.py); the same mask of CLIP's non-negatives."""
    now = positive_pairs(num_nodes, neighbour_edges(raw), neighbour_mass)
    before = unprepared.positive_pairs(num_nodes, raw, neighbour_mass)
    for got, expected in zip(now, before, strict=True):
        assert got.dtype == expected.dtype and torch.equal(got, expected)
    mask = positive_mask(num_nodes, neighbour_edges(raw))
    assert torch.equal(mask, unprepared.positive_mask(num_nodes, raw))


@pytest.mark.parametrize(("num_nodes", "raw"), RAW_GRAPHS)
@pytest.mark.parametrize("neighbour_mass", [None, 0.3])
def test_the_structural_loss_of_the_prepared_edges_is_the_one_before(
    num_nodes, raw, neighbour_mass
):
    """The loss and its gradients, in float64, as the loss that found its positives itself."""
    generator = torch.Generator().manual_seed(num_nodes)
    made = [torch.randn(num_nodes, 8, dtype=torch.float64, generator=generator) for _ in "it"]
    image, text = (x.div(x.norm(dim=1, keepdim=True)).requires_grad_() for x in made)
    settings = {"temperature": 0.1, "neighbour_mass": neighbour_mass}
    now = structural_loss(image, text, neighbour_edges(raw), **settings)
    now_grads = torch.autograd.grad(now, (image, text))
    before = unprepared.structural_loss(image, text, raw, **settings)
    assert now.item() == pytest.approx(before.item(), rel=1e-12)
    for got, expected in zip(now_grads, torch.autograd.grad(before, (image, text)), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
