"""`data.decode = "cpu"` or `"cuda"`: the loader's workers check each image and draw its crop, and
the main process decodes the whole batch's JPEGs at once with torchvision's `decode_jpeg` (nvjpeg on
CUDA), then crops and resizes them there. Why: at ViT-B/32's rate a GPU takes thousands of images a
second, more than a machine's cores decode with Pillow; the workers are left the cheap part.

The crop is drawn as the workers' Pillow path draws it (the same generator, seeded the same way, on
the image at the size Pillow's draft mode would decode it), so both paths train on the same
augmentation; their pixels differ by the decoders' and resize kernels' rounding
(packages/slip-train/tests/test_data_decode.py pins by how much).
"""

from collections.abc import Callable

import torch
from open_clip.transform import MaybeConvertMode
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import Compose, InterpolationMode, RandomResizedCrop

from slip_train.config import ConfigError

MODES = {InterpolationMode.BILINEAR: "bilinear", InterpolationMode.BICUBIC: "bicubic"}
"""The crop's resize filters torch's `interpolate` has with antialiasing, as Pillow's."""


def crop_step(transform: Callable) -> RandomResizedCrop:
    """The RandomResizedCrop of open_clip's training transform: all that the device path runs,
    besides the conversion to RGB, which decode_jpeg does. Any other step is a ConfigError, rather
    than an augmentation silently left out."""
    steps = transform.transforms if isinstance(transform, Compose) else [transform]
    crops = [step for step in steps if isinstance(step, RandomResizedCrop)]
    others = [step for step in steps if not isinstance(step, (RandomResizedCrop, MaybeConvertMode))]
    if len(crops) != 1 or others or crops[0].interpolation not in MODES:
        raise ConfigError(
            "data.decode: decoding on a device runs one bilinear or bicubic RandomResizedCrop; "
            f"this model's training transform is {' '.join(repr(transform).split())}"
        )
    return crops[0]


def draw_crop(image: Image.Image, crop: RandomResizedCrop, image_size: int) -> list[int]:
    """`image`'s crop (top, left, height, width) in its own pixels, drawn from torch's generator
    as the workers' path draws it: on the image as Pillow's draft mode decodes it for
    `image_size` (a JPEG of 4x the size is decoded at a quarter), scaled back to full size. Only
    the header is read; a file that is not a JPEG is a ValueError (decode_jpeg decodes JPEGs)."""
    if image.format != "JPEG":
        raise ValueError(f"a {image.format} image, which only data.decode = workers decodes")
    width, height = image.size
    drafted = image.draft("RGB", (image_size, image_size))
    scale = round(width / drafted[1][2]) if drafted else 1
    top, left, crop_height, crop_width = crop.get_params(image, crop.scale, crop.ratio)
    top, left = top * scale, left * scale
    return [
        top,
        left,
        min(crop_height * scale, height - top),
        min(crop_width * scale, width - left),
    ]


def decode_jpegs(jpegs: list[Tensor], device: torch.device) -> list[Tensor | str]:
    """Each JPEG as uint8 (3, h, w) on `device`, or why it does not decode: the batch in one call
    (batched nvjpeg on CUDA); when that fails, one by one, so one bad image costs only itself."""
    try:
        return decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        pass
    decoded: list[Tensor | str] = []
    for jpeg in jpegs:
        try:
            decoded.append(decode_jpeg(jpeg, mode=ImageReadMode.RGB, device=device))
        except RuntimeError as exc:
            decoded.append(str(exc).strip().splitlines()[0])
    return decoded


def resized_crops(images: list[Tensor], crops: Tensor, crop: RandomResizedCrop) -> Tensor:
    """The crops (top, left, height, width) of each image resized to the crop's size, as uint8
    (n, 3, h, w): torchvision's resized_crop on tensors (float, antialiased, rounded), with the
    rounding done once for the batch, not once per image."""
    resized = [
        torch.nn.functional.interpolate(
            image[None, :, top : top + height, left : left + width].float(),
            size=crop.size,
            mode=MODES[crop.interpolation],
            antialias=crop.antialias,
        )
        for image, (top, left, height, width) in zip(images, crops.tolist(), strict=True)
    ]
    return torch.cat(resized).clamp_(0, 255).round_().to(torch.uint8)
