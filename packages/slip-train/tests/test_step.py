"""`train_step` alone, on made-up batches: DDP's `no_sync` around every micro-batch but the last,
the losses averaged over the micro-batches and left on the device, the logit scale clamped in
place after the update, gradient caching's gradients equal to one pass over the batch, and the
losses and gradients of batches whose graph the loader prepared equal to those of the step that
prepared it on the device (tests/unprepared.py)."""

import copy
import math
from contextlib import contextmanager, nullcontext
from functools import partial

import open_clip
import pytest
import torch
from unprepared import undirected, unprepared

from slip_train.config import ModelConfig
from slip_train.factory import build_model, param_groups
from slip_train.graph_head import neighbour_edges
from slip_train.loss import training_loss
from slip_train.train import StepParts, train_step

LOSS = partial(training_loss, structural_weight=0.5, structural_temperature=0.07)


def made_up_batches(count: int, size: int = 6, edges=((0, 1, 3), (1, 2, 4))) -> list[dict]:
    """Batches as the loader hands them over: uint8 pixels, tokens, the global batch's edges
    (`edges` as planned, prepared as the loader's workers prepare them)."""
    generator = torch.Generator().manual_seed(0)
    context = open_clip.get_model_config("slip-tiny")["text_cfg"]["context_length"]
    return [
        {
            "images": torch.randint(
                0, 256, (size, 3, 64, 64), dtype=torch.uint8, generator=generator
            ),
            "tokens": torch.randint(1, 100, (size, context), generator=generator),
            "edge_index": neighbour_edges(torch.tensor(edges)),
            "anchor_weights": None,
            "epoch": 2,
            "index": index,
            "load_s": 0.01,
            "skipped_images": 0,
        }
        for index in range(count)
    ]


def inputs(batch: dict) -> tuple[torch.Tensor, ...]:
    return batch["images"].float() / 255, batch["tokens"], batch["edge_index"]


def step_parts(
    model,
    *,
    grad_accum: int,
    forward=None,
    no_sync=nullcontext,
    loss=LOSS,
    grad_cache_rows: int = 0,
    grad_clip: float = 1.0,
) -> StepParts:
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay=0.1, lr=1e-3))
    return StepParts(
        model=model,
        forward=forward or model,
        no_sync=no_sync,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        loss=loss,
        inputs=inputs,
        autocast=nullcontext(),
        grad_accum=grad_accum,
        grad_cache_rows=grad_cache_rows,
        grad_clip=grad_clip,
        world=1,
    )


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(), with_graph=True).model


def test_gradients_are_synced_on_the_last_micro_batch_only(model):
    unsynced = False
    synced = []

    @contextmanager
    def no_sync():
        nonlocal unsynced
        unsynced = True
        try:
            yield
        finally:
            unsynced = False

    def forward(*args):
        synced.append(not unsynced)
        return model(*args)

    parts = step_parts(model, grad_accum=3, forward=forward, no_sync=no_sync)
    step = train_step(iter(made_up_batches(3)), parts)
    assert synced == [False, False, True]
    # each batch's 3 pairs both ways
    assert (step.epoch, step.batch_index, step.samples, step.edges) == (2, 3, 18, 18)


def test_the_losses_are_the_micro_batches_mean_left_on_the_device(model):
    batches = made_up_batches(2)
    with torch.no_grad():
        each = [LOSS(model(*inputs(b)), b["edge_index"], model.logit_scale) for b in batches]
    step = train_step(iter(batches), step_parts(model, grad_accum=2))
    for name in ("loss", "clip_loss", "structural_loss"):
        value = step.losses[name]
        assert isinstance(value, torch.Tensor) and not value.requires_grad
        assert value.item() == pytest.approx((each[0][name] + each[1][name]).item() / 2, rel=1e-6)


@pytest.mark.parametrize(("start", "clamped"), [(5.0, math.log(100)), (-0.5, 0.0)])
def test_the_logit_scale_is_clamped_in_place_after_the_update(model, start, clamped):
    with torch.no_grad():
        model.logit_scale.fill_(start)
    train_step(iter(made_up_batches(1)), step_parts(model, grad_accum=1))
    assert model.logit_scale.item() == pytest.approx(clamped)


VARIANTS = {  # name: (graph heads, structural_gradient, loss settings)
    "paper": (True, "encoders", {"neighbours_as_negatives": True}),
    "default": (True, "heads", {"neighbours_as_negatives": False}),
    "soft": (True, "encoders", {"neighbour_mass": 0.5, "neighbours_as_negatives": False}),
    "clip": (False, "encoders", {}),
}


def open_model(variant: str):
    """A model of `variant` with its heads' gates open, so that they pass gradients on, and the
    variant's loss."""
    with_graph, gradient, settings = VARIANTS[variant]
    torch.manual_seed(0)
    model = build_model(ModelConfig(), with_graph=with_graph, structural_gradient=gradient).model
    with torch.no_grad():
        for head in model.graph_heads():
            head.gates.fill_(0.5)
    loss = partial(training_loss, structural_weight=0.5, structural_temperature=0.07, **settings)
    return model, loss


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradient_caching_gives_the_gradients_of_one_pass_over_the_batch(variant):
    """Encoders 3 rows at a time over batches of 8 (chunks 3, 3, 2), 2 micro-batches a step: the
    same losses and gradients as the encoders over each whole batch at once."""
    dense, loss = open_model(variant)
    cached = copy.deepcopy(dense)
    edges = ((0, 0, 2, 3, 5, 6), (1, 4, 3, 7, 6, 7))  # across the chunks' bounds
    batches = made_up_batches(2, size=8, edges=edges)
    steps = [
        train_step(
            iter(batches),
            step_parts(model, grad_accum=2, loss=loss, grad_cache_rows=rows, grad_clip=1e9),
        )
        for model, rows in ((dense, 0), (cached, 3))
    ]
    assert steps[0].losses.keys() == steps[1].losses.keys()
    for name, value in steps[0].losses.items():
        assert steps[1].losses[name].item() == pytest.approx(value.item(), rel=1e-5)
    named = dict(cached.named_parameters())
    for name, parameter in dense.named_parameters():
        assert (parameter.grad is None) == (named[name].grad is None), name
        if parameter.grad is not None:  # measured: at most 3e-6 apart, in gradients up to 6
            torch.testing.assert_close(named[name].grad, parameter.grad, rtol=1e-4, atol=1e-5)
    assert steps[1].grad_norm.item() == pytest.approx(steps[0].grad_norm.item(), rel=1e-5)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_prepared_graph_gives_the_losses_and_gradients_of_the_step_before(variant, monkeypatch):
    """2 micro-batches of 8 whose planned edges hold a pair once, a pair both ways, a repeated
    pair, a self loop and a node without an edge: the step on the edges the loader prepared gives
    the losses and every parameter's gradient of the step that made the raw edges undirected,
    added GATConv's self loops and found the positives on the device."""
    model, loss = open_model(variant)
    before = copy.deepcopy(model)
    raw = ((0, 1, 2, 2, 4, 5, 5), (1, 0, 3, 3, 4, 6, 7))
    batches = made_up_batches(2, size=8, edges=raw)
    step = train_step(iter(batches), step_parts(model, grad_accum=2, loss=loss, grad_clip=1e9))
    losses = {}
    with unprepared(before, monkeypatch):
        for batch in batches:
            images, tokens, _ = inputs(batch)
            edges = torch.tensor(raw)
            out = before(images, tokens, undirected(edges, images.shape[0]))
            micro = loss({k: v.float() for k, v in out.items()}, edges, before.logit_scale)
            (micro["loss"] / 2).backward()
            for name, value in micro.items():
                losses[name] = losses.get(name, 0) + value.detach() / 2
    assert step.losses.keys() == losses.keys()
    for name, value in losses.items():
        assert step.losses[name].item() == pytest.approx(value.item(), rel=1e-6), name
    named = dict(model.named_parameters())
    for name, parameter in before.named_parameters():
        assert (parameter.grad is None) == (named[name].grad is None), name
        if parameter.grad is not None:  # float rounding: the loss's gathers add up in turn
            torch.testing.assert_close(named[name].grad, parameter.grad, rtol=1e-4, atol=1e-5)


def test_the_compiled_forward_holds_whatever_a_batch_s_edge_count(model):
    """`train.compile` holds in the loop, whose batches each have their own edge count: the
    forward compiles once for the first batch and once more, dynamic in the edge count, for all
    the others, with no graph break (fullgraph) and the eager forward's outputs. The eager
    backend: whether a graph breaks or recompiles is dynamo's call, not the compiler's."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    edge_sets = [((0, 1), (1, 2)), ((0, 1, 3), (1, 2, 4)), ((0, 1, 2, 3), (1, 2, 3, 4))]
    edge_sets += [((0, 2, 3, 4, 0), (1, 3, 4, 5, 5)), ((0, 1), (4, 5))]  # the last: a count again
    try:
        for edges in edge_sets:
            batch = made_up_batches(1, edges=edges)[0]
            out, expected = compiled(*inputs(batch)), model(*inputs(batch))
            assert out.keys() == expected.keys() == {"image", "text", "image_graph", "text_graph"}
            for name, value in out.items():
                torch.testing.assert_close(value, expected[name])
        assert counters["stats"]["unique_graphs"] == 2
        assert not counters["graph_break"]
    finally:
        torch._dynamo.reset()  # nothing compiled left for the worker's other tests
