"""`train_step` alone, on made-up batches: DDP's `no_sync` around every micro-batch but the last,
the losses averaged over the micro-batches and left on the device, the logit scale clamped in
place after the update, and gradient caching's gradients equal to one pass over the batch."""

import copy
import math
from contextlib import contextmanager, nullcontext
from functools import partial

import open_clip
import pytest
import torch

from slip_train.config import ModelConfig
from slip_train.factory import build_model, param_groups
from slip_train.loss import training_loss
from slip_train.train import StepParts, train_step

LOSS = partial(training_loss, structural_weight=0.5, structural_temperature=0.07)


def made_up_batches(count: int, size: int = 6, edges=((0, 1, 3), (1, 2, 4))) -> list[dict]:
    """Batches as the loader hands them over: uint8 pixels, tokens, the global batch's edges."""
    generator = torch.Generator().manual_seed(0)
    context = open_clip.get_model_config("slip-tiny")["text_cfg"]["context_length"]
    return [
        {
            "images": torch.randint(
                0, 256, (size, 3, 64, 64), dtype=torch.uint8, generator=generator
            ),
            "tokens": torch.randint(1, 100, (size, context), generator=generator),
            "edge_index": torch.tensor(edges),
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
    assert (step.epoch, step.batch_index, step.samples, step.edges) == (2, 3, 18, 9)


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


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradient_caching_gives_the_gradients_of_one_pass_over_the_batch(variant):
    """Encoders 3 rows at a time over batches of 8 (chunks 3, 3, 2), 2 micro-batches a step: the
    same losses and gradients as the encoders over each whole batch at once."""
    with_graph, gradient, settings = VARIANTS[variant]
    torch.manual_seed(0)
    dense = build_model(ModelConfig(), with_graph=with_graph, structural_gradient=gradient).model
    with torch.no_grad():
        for head in dense.graph_heads():
            head.gates.fill_(0.5)  # open, so that the heads pass gradients on
    cached = copy.deepcopy(dense)
    loss = partial(training_loss, structural_weight=0.5, structural_temperature=0.07, **settings)
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
        if parameter.grad is not None:
            torch.testing.assert_close(named[name].grad, parameter.grad, rtol=1e-4, atol=1e-6)
    assert steps[1].grad_norm.item() == pytest.approx(steps[0].grad_norm.item(), rel=1e-5)
