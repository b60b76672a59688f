"""Image checks and re-encoding; `decode_image` runs in a thread or process pool per crawl."""

import hashlib
import io
import os
import threading
import time
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

_WEBP_TAG = b"WEBP"


def sniff_image(head: bytes) -> bool:
    """True when the first bytes are JPEG, PNG, GIF or WebP: servers lie in Content-Type."""
    return (
        head.startswith(b"\xff\xd8\xff")
        or head.startswith(b"\x89PNG\r\n\x1a\n")
        or head.startswith((b"GIF87a", b"GIF89a"))
        or (head.startswith(b"RIFF") and head[8:12] == _WEBP_TAG)
    )


@dataclass(frozen=True)
class DecodedImage:
    status: str  # ok, bomb or decode_error
    error: str | None = None
    data: bytes | None = None
    width: int | None = None
    height: int | None = None
    sha256: str | None = None


def exit_with_parent(parent: int) -> None:
    """Pool initializer: a decoder outlives a kill -9 of the crawl by at most a second."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten transparency onto white: product cut-outs on black would mislead a model."""
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if not has_alpha:
        return img if img.mode == "RGB" else img.convert("RGB")
    rgba = img.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, (255, 255, 255))
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


# Sizes are checked against max_pixels from the header (below) before any pixel is decoded, so
# Pillow's own warning for large images is noise; its error (at twice its limit) is still caught.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def decode_image(
    data: bytes, *, max_side: int, quality: int, max_pixels: int, resample: str = "bilinear"
) -> DecodedImage:
    """Check the header size, decode (JPEG scaled while decoding), resize and re-encode as JPEG.

    The output depends only on the input bytes and the arguments, so reruns and duplicate
    images store identical bytes. Thread-safe: Pillow releases the GIL while it decodes,
    resizes and encodes, so threads use every core.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                return DecodedImage("bomb", f"{width}x{height} exceeds {max_pixels} pixels")
            if img.format == "JPEG":
                img.draft("RGB", (max_side, max_side))
            img.load()
            out = _to_rgb(ImageOps.exif_transpose(img))
        out.thumbnail((max_side, max_side), RESAMPLING[resample])
        buffer = io.BytesIO()
        out.save(buffer, "JPEG", quality=quality)
    except Image.DecompressionBombError as exc:
        return DecodedImage("bomb", str(exc))
    except Exception as exc:  # Pillow raises many types on hostile input; none may stop a crawl
        return DecodedImage("decode_error", f"{type(exc).__name__}: {exc}")
    encoded = buffer.getvalue()
    return DecodedImage(
        "ok",
        data=encoded,
        width=out.width,
        height=out.height,
        sha256=hashlib.sha256(encoded).hexdigest(),
    )
