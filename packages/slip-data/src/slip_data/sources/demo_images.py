"""Demo product images: tokens that carry everything needed to draw, and the drawing itself.

The image server keeps no catalogue: a token packs the subcategory visual, the community style,
the product and the photo variant, guarded by a checksum, so a URL path alone decides the pixels.
"""

import io
import random
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from slip_data.categories import CATEGORIES

SUBCATEGORIES_PER_CATEGORY = 4
N_SUBCATEGORIES = len(CATEGORIES) * SUBCATEGORIES_PER_CATEGORY
N_COMMUNITIES = 12
MAX_PRODUCTS = 1 << 21  # product index bits in a token
VARIANTS = ("MAIN", "PT01", "PT02", "PT03")

SHAPES = (
    "circle", "square", "triangle", "star", "ring", "cross",
    "diamond", "hexagon", "pentagon", "arrow", "semicircle", "crescent",
)  # fmt: skip
# Saturated object colours; shape = index % 12 and colour = index // 12 keeps all 132 distinct.
PALETTE = (
    (214, 39, 40), (255, 127, 14), (188, 150, 0), (44, 160, 44), (23, 160, 160), (31, 119, 180),
    (20, 30, 110), (148, 103, 189), (227, 60, 170), (140, 86, 75), (40, 40, 40),
)  # fmt: skip
# Pale backgrounds, one per community; the faint pattern drawn over them is the community style.
TINTS = (
    (246, 236, 236), (236, 244, 250), (240, 248, 236), (250, 246, 230), (244, 238, 250),
    (236, 248, 246), (250, 238, 228), (238, 240, 246), (248, 248, 240), (232, 242, 238),
    (250, 240, 246), (242, 242, 242),
)  # fmt: skip
PATTERNS = ("hstripes", "vstripes", "diagonal", "dots", "grid", "checker")
SIZES = {"._SS40_": 40, "": 320, "._SL1500_": 512}

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGIT = {ch: i for i, ch in enumerate(_ALPHABET)}
_TOKEN_LEN = 11  # 62**11 > 2**63
_PATH_RE = re.compile(r"/images/I/[4-8]1([0-9A-Za-z]{11})(\._SS40_|\._SL1500_)?\.jpg")
_M64 = (1 << 64) - 1
_M47 = (1 << 47) - 1
_SPREAD = 0x5A17C0DE  # keys the scramble of the payload by the checksum


@dataclass(frozen=True)
class DemoImage:
    """What a demo image path says: ground truth for tests and evaluation."""

    subcategory: int  # global index: CATEGORIES.index(category) * 4 + subcategory within it
    community: int
    product: int
    variant: int
    salt: int
    size: int

    @property
    def category(self) -> str:
        return CATEGORIES[self.subcategory // SUBCATEGORIES_PER_CATEGORY]


def mix64(x: int) -> int:
    """splitmix64 finaliser on Python ints (must equal `mix64_np`)."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def mix64_np(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays; wraps modulo 2**64 like `mix64`."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def seed_salt(seed: int) -> int:
    """12 bits of the seed in every token, so another seed gives other image URLs and pixels."""
    return mix64(seed & _M64) & 0xFFF


def digits_to_strings(values: np.ndarray, alphabet: str, width: int) -> list[str]:
    """Fixed-width base-len(alphabet) strings of uint64 values, most significant digit first."""
    base = np.uint64(len(alphabet))
    v = values.astype(np.uint64)
    digits = np.empty((len(v), width), dtype=np.uint8)
    for col in range(width - 1, -1, -1):
        digits[:, col] = v % base
        v = v // base
    text = np.frombuffer(alphabet.encode(), dtype=np.uint8)[digits].tobytes().decode("ascii")
    return [text[i : i + width] for i in range(0, len(text), width)]


def encode_tokens(
    subcategory: np.ndarray, community: np.ndarray, product: np.ndarray, *, variant: int, salt: int
) -> list[str]:
    """Vectorised image tokens: a 47-bit payload, scrambled and checked by a 16-bit hash."""
    payload = subcategory.astype(np.uint64)
    payload = (payload << np.uint64(4)) | community.astype(np.uint64)
    payload = (payload << np.uint64(2)) | np.uint64(variant)
    payload = (payload << np.uint64(21)) | product.astype(np.uint64)
    payload = (payload << np.uint64(12)) | np.uint64(salt)
    check = mix64_np(payload) & np.uint64(0xFFFF)
    spread = mix64_np(check + np.uint64(_SPREAD)) & np.uint64(_M47)
    return digits_to_strings((check << np.uint64(47)) | (payload ^ spread), _ALPHABET, _TOKEN_LEN)


def decode_demo_image(path: str) -> DemoImage | None:
    """Parse a demo image URL path; None unless it is well formed and its checksum holds."""
    match = _PATH_RE.fullmatch(path)
    if match is None:
        return None
    value = 0
    for ch in match.group(1):
        value = value * 62 + _DIGIT[ch]
    if value >> 63:
        return None
    check = value >> 47
    payload = (value & _M47) ^ (mix64(check + _SPREAD) & _M47)
    if mix64(payload) & 0xFFFF != check:
        return None
    salt, payload = payload & 0xFFF, payload >> 12
    product, payload = payload & (MAX_PRODUCTS - 1), payload >> 21
    variant, payload = payload & 3, payload >> 2
    community, subcategory = payload & 15, payload >> 4
    if subcategory >= N_SUBCATEGORIES or community >= N_COMMUNITIES:
        return None
    return DemoImage(subcategory, community, product, variant, salt, SIZES[match.group(2) or ""])


def _jitter(colour: tuple[int, int, int], rnd: random.Random, amount: int) -> tuple[int, ...]:
    return tuple(min(255, max(0, c + rnd.randint(-amount, amount))) for c in colour)


def _draw_background(draw: ImageDraw.ImageDraw, w: int, *, community: int, tint: tuple) -> None:
    """A faint, community-specific pattern: visible to a model, easy to overlook for a person."""
    ink = tuple(int(c * 0.93) for c in tint)
    pattern = PATTERNS[community % len(PATTERNS)]
    step = max(4, w // (14 if community < len(PATTERNS) else 8))
    line = max(1, step // 5)
    if pattern == "hstripes":
        for y in range(0, w, step):
            draw.rectangle((0, y, w, y + line), fill=ink)
    elif pattern == "vstripes":
        for x in range(0, w, step):
            draw.rectangle((x, 0, x + line, w), fill=ink)
    elif pattern == "diagonal":
        for x in range(-w, w, step):
            draw.line((x, 0, x + w, w), fill=ink, width=line)
    elif pattern == "dots":
        r = max(1, step // 6)
        for y in range(step // 2, w, step):
            for x in range(step // 2, w, step):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    elif pattern == "grid":
        for v in range(0, w, step):
            draw.line((v, 0, v, w), fill=ink, width=line)
            draw.line((0, v, w, v), fill=ink, width=line)
    else:
        for y in range(0, w, step):
            for x in range((y // step) % 2 * step, w, 2 * step):
                draw.rectangle((x, y, x + step - 1, y + step - 1), fill=ink)


def _polygon(
    n: int, centre: tuple[float, float], r: float, *, rot: float, inner: float = 0
) -> list:
    """Regular polygon (or a star when `inner` > 0) as a point list; `rot` in degrees."""
    cx, cy = centre
    count = 2 * n if inner else n
    pts = []
    for i in range(count):
        radius = inner * r if inner and i % 2 else r
        a = np.deg2rad(rot - 90 + 360 * i / count)
        pts.append((cx + radius * np.cos(a), cy + radius * np.sin(a)))
    return pts


def _rotated(points: list, centre: tuple[float, float], rot: float) -> list:
    cx, cy = centre
    a = np.deg2rad(rot)
    c, s = np.cos(a), np.sin(a)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _draw_shape(
    image: Image.Image,
    shape: str,
    *,
    centre: tuple[float, float],
    r: float,
    rot: float,
    colour: tuple,
    background: tuple,
) -> None:
    """The subcategory's shape; rotation stays small so a square never becomes the diamond."""
    cx, cy = centre
    draw = ImageDraw.Draw(image)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.polygon(_polygon(4, centre, r * 1.2, rot=rot + 45), fill=colour)
    elif shape == "triangle":
        draw.polygon(_polygon(3, (cx, cy + r * 0.15), r * 1.15, rot=rot), fill=colour)
    elif shape == "star":
        draw.polygon(_polygon(5, centre, r * 1.1, rot=rot, inner=0.45), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(1, int(r * 0.32)))
    elif shape == "cross":
        a, b = r, r * 0.34
        arm = [
            (-b, -a),
            (b, -a),
            (b, -b),
            (a, -b),
            (a, b),
            (b, b),
            (b, a),
            (-b, a),
            (-b, b),
            (-a, b),
            (-a, -b),
            (-b, -b),
        ]
        draw.polygon(_rotated(arm, centre, rot), fill=colour)
    elif shape == "diamond":
        draw.polygon(
            _rotated([(0, -r * 1.15), (r * 0.62, 0), (0, r * 1.15), (-r * 0.62, 0)], centre, rot),
            fill=colour,
        )
    elif shape == "hexagon":
        draw.polygon(_polygon(6, centre, r * 1.05, rot=rot + 30), fill=colour)
    elif shape == "pentagon":
        draw.polygon(_polygon(5, centre, r * 1.05, rot=rot), fill=colour)
    elif shape == "arrow":
        body = [
            (-r, -r * 0.3),
            (r * 0.1, -r * 0.3),
            (r * 0.1, -r * 0.75),
            (r, 0),
            (r * 0.1, r * 0.75),
            (r * 0.1, r * 0.3),
            (-r, r * 0.3),
        ]
        draw.polygon(_rotated(body, centre, rot), fill=colour)
    elif shape == "semicircle":
        draw.pieslice(
            (cx - r, cy - r * 0.6, cx + r, cy + r * 1.4), 180 + rot, 360 + rot, fill=colour
        )
    else:  # crescent: a disc with an offset disc of background cut out of it
        draw.ellipse(box, fill=colour)
        dx = r * 0.45
        draw.ellipse(
            (cx - r + dx, cy - r - dx * 0.3, cx + r + dx, cy + r - dx * 0.3), fill=background
        )


def _render(info: DemoImage) -> Image.Image:
    """Draw at a comfortable size; tiny thumbnails are drawn larger and scaled down."""
    w = max(info.size, 160)
    rnd = random.Random(mix64((info.product << 16) | (info.salt << 2) | info.variant))
    tint = _jitter(TINTS[info.community], rnd, 4)
    image = Image.new("RGB", (w, w), tint)
    draw = ImageDraw.Draw(image)
    _draw_background(draw, w, community=info.community, tint=tint)
    colour = _jitter(PALETTE[info.subcategory // len(SHAPES)], rnd, 14)
    shape = SHAPES[info.subcategory % len(SHAPES)]
    r = w * rnd.uniform(0.25, 0.31)
    cx = w / 2 + rnd.uniform(-0.07, 0.07) * w
    cy = w / 2 + rnd.uniform(-0.07, 0.07) * w
    rot = rnd.uniform(-10, 10)
    if info.variant:  # a second photo: smaller product beside its box
        r *= 0.7
        cx, cy = w * 0.34, w * 0.52
        bx0, by0, bx1, by1 = w * 0.6, w * 0.25, w * 0.92, w * 0.8
        draw.rectangle(
            (bx0, by0, bx1, by1), fill=(250, 250, 250), outline=colour, width=max(1, w // 80)
        )
        for i in range(rnd.randint(2, 5)):
            y = by0 + (i + 1.5) * w * 0.07
            draw.line(
                (bx0 + w * 0.04, y, bx1 - rnd.uniform(0.05, 0.14) * w, y),
                fill=(150, 150, 150),
                width=max(1, w // 100),
            )
    shadow = (cx - r, cy + r * 0.95, cx + r, cy + r * 1.25)
    draw.ellipse(shadow, fill=tuple(int(c * 0.85) for c in tint))
    _draw_shape(image, shape, centre=(cx, cy), r=r, rot=rot, colour=colour, background=tint)
    if w != info.size:
        image = image.resize((info.size, info.size), Image.Resampling.LANCZOS)
    return image


def render_demo_image(path: str) -> bytes | None:
    """JPEG bytes for a demo image URL path, or None when the path is not one of ours."""
    info = decode_demo_image(path)
    if info is None:
        return None
    buffer = io.BytesIO()
    _render(info).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()
