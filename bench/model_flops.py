"""FLOPs per trained sample of the real model, counted by torch's FlopCounterMode, against
open_clip's own profile (open_clip's docs/model_profile.csv): the numerator of bench/gpu.py's MFU.

    uv run python bench/model_flops.py                          # ViT-B-32 and ViT-B-16, both modes
    uv run python bench/model_flops.py --models slip-tiny --image-size 64

A step's FLOPs are counted over one forward (encoders, graph heads), the loss and the backward of
the model slip-train builds, on a batch of `--batch` random images and tokens with `--degree`
in-batch edges per product, and divided by the batch: the encoders' share does not depend on the
batch, the losses' (n x n similarities) grows with it. The encoders' forward alone is checked
against open_clip's profile (fvcore), printed as a ratio.
"""

import argparse
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

# open_clip's docs/model_profile.csv: forward GFLOPs per sample at 224 px (image, text)
OPEN_CLIP_PROFILE = {"ViT-B-32": (8.82, 5.96), "ViT-B-16": (35.13, 5.96)}
# dense bf16 tensor-core peak, TFLOP/s per GPU (NVIDIA's data sheets; the SXM parts)
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


def peak_tflops(device_name: str, given: float | None) -> float | None:
    """The device's dense bf16 peak: `given` (--peak-tflops), else from the table by name."""
    if given:
        return given
    return next((peak for name, peak in PEAK_BF16_TFLOPS.items() if name in device_name), None)


def random_batch(
    batch: int, *, image_size: int, context: int, degree: float, device: str
) -> tuple[torch.Tensor, ...]:
    """Images, tokens and `degree` x batch / 2 random in-batch edges, prepared as the loader
    prepares a batch's (both ways, no self loop: graph_head.neighbour_edges)."""
    from slip_train.graph_head import neighbour_edges

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, image_size, image_size, generator=generator)
    tokens = torch.randint(1, 1000, (batch, context), generator=generator)
    pairs = torch.randint(0, batch, (2, max(1, round(degree * batch / 2))), generator=generator)
    pairs = pairs[:, pairs[0] != pairs[1]]
    edges = neighbour_edges(torch.stack([pairs.min(0).values, pairs.max(0).values]))
    return images.to(device), tokens.to(device), edges.to(device)


def step_flops(
    name: str, *, mode: str, batch: int, image_size: int, degree: float, device: str = "cpu"
) -> dict[str, float]:
    """GFLOPs per sample: the encoders' forward (image, text) and the whole training step."""
    from slip_train.config import ModelConfig
    from slip_train.factory import build_model
    from slip_train.loss import training_loss

    with warnings.catch_warnings():  # open_clip warns that no pretrained weights were loaded
        warnings.simplefilter("ignore")
        model = build_model(ModelConfig(name=name), with_graph=mode == "slip").model.to(device)
    context = model.clip.context_length
    images, tokens, edges = random_batch(
        batch, image_size=image_size, context=context, degree=degree, device=device
    )
    counted = {}
    with torch.no_grad():
        for part, run in (("image", model.clip.encode_image), ("text", model.clip.encode_text)):
            with FlopCounterMode(display=False) as counter:
                run(images if part == "image" else tokens)
            counted[f"{part}_forward"] = counter.get_total_flops() / batch / 1e9
    with FlopCounterMode(display=False) as counter:
        out = model(images, tokens, edges)
        losses = training_loss(
            out, edges, model.logit_scale, structural_weight=0.5, structural_temperature=0.07
        )
        losses["loss"].backward()
    counted["step"] = counter.get_total_flops() / batch / 1e9
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ViT-B-32,ViT-B-16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--degree", type=float, default=4.0, help="in-batch edges per product")
    args = parser.parse_args()
    for name in args.models.split(","):
        for mode in ("clip", "slip"):
            counted = step_flops(
                name, mode=mode, batch=args.batch, image_size=args.image_size, degree=args.degree
            )
            line = (
                f"{name:9} {mode}: forward image {counted['image_forward']:.2f} + text "
                f"{counted['text_forward']:.2f} GFLOPs/sample, training step "
                f"{counted['step']:.2f} GFLOPs/sample at batch {args.batch}"
            )
            profile = OPEN_CLIP_PROFILE.get(name)
            if profile and args.image_size == 224:
                ratio = (counted["image_forward"] + counted["text_forward"]) / sum(profile)
                line += f"; forward / open_clip's profile ({sum(profile):.2f}) {ratio:.4f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
