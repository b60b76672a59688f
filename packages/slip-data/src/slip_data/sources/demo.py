"""Embedded offline demo source: a synthetic catalogue in exactly the Amazon Reviews 2023 format.

The data carries the signals the toolkit is meant to learn: the subcategory is visible in the image
(shape x colour) and in most titles (its noun); co-purchases arise as in a store (substitutes
within a subcategory, complements across the subcategories of a category, a shopper's brand-like
community, noise), mixed so that the graph slip-data builds has the asked edge homophily and mean
degree; a community shows only faintly (a brand word in some titles, the store, an image
background pattern). Everything is drawn from seeded numpy generators, so the same spec gives the
same bytes.
"""

import gzip
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from slip_data.atomic import atomic_path, remove_stale_temps, write_json
from slip_data.categories import CATEGORIES, raw_relpaths
from slip_data.graph.build import GraphOptions, co_purchase_edges
from slip_data.progress import item_progress
from slip_data.sources.demo_images import (
    N_COMMUNITIES,
    N_SUBCATEGORIES,
    SUBCATEGORIES_PER_CATEGORY,
    DemoImage,
    decode_demo_image,
    digits_to_strings,
    encode_tokens,
    mix64_np,
    render_demo_image,
    seed_salt,
)

__all__ = [
    "DEMO_IMAGE_HOST",
    "DemoImage",
    "DemoSpec",
    "decode_demo_image",
    "demo_label_names",
    "render_demo_image",
    "write_demo_catalogue",
]

DEMO_IMAGE_HOST = "images.slip-demo.invalid"
SPEC_FILE = "demo-spec.json"
GENERATOR_VERSION = 2  # bump when the bytes for a given spec change, so old roots regenerate


# category -> (readable root name, ((subcategory name, title noun), ...) with 4 subcategories)
TAXONOMY: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "All_Beauty": ("All Beauty", (
        ("Skin Care", "Face Cream"), ("Hair Care", "Shampoo"),
        ("Fragrance", "Perfume"), ("Makeup", "Lipstick"))),
    "Amazon_Fashion": ("Amazon Fashion", (
        ("Wallets & Card Cases", "Wallet"), ("Sunglasses & Eyewear", "Sunglasses"),
        ("Hats & Caps", "Baseball Cap"), ("Scarves & Wraps", "Scarf"))),
    "Appliances": ("Appliances", (
        ("Refrigerator Parts", "Water Filter"), ("Washer & Dryer Parts", "Dryer Belt"),
        ("Microwaves", "Microwave"), ("Range Hoods", "Range Hood"))),
    "Arts_Crafts_and_Sewing": ("Arts, Crafts & Sewing", (
        ("Painting", "Acrylic Paint"), ("Sewing", "Sewing Thread"),
        ("Knitting & Crochet", "Yarn"), ("Scrapbooking", "Sticker Sheet"))),
    "Automotive": ("Automotive", (
        ("Car Care", "Car Wax"), ("Lights & Lighting", "Headlight Bulb"),
        ("Tires & Wheels", "Tire Gauge"), ("Interior Accessories", "Seat Cover"))),
    "Baby_Products": ("Baby Products", (
        ("Feeding", "Baby Bottle"), ("Nursery", "Crib Sheet"),
        ("Strollers", "Stroller"), ("Diapering", "Diaper Bag"))),
    "Beauty_and_Personal_Care": ("Beauty & Personal Care", (
        ("Oral Care", "Toothbrush"), ("Shaving & Hair Removal", "Razor"),
        ("Nail Care", "Nail Polish"), ("Bath & Body", "Body Wash"))),
    "Books": ("Books", (
        ("Mystery & Thriller", "Thriller Novel"), ("Cookbooks", "Cookbook"),
        ("Children's Books", "Picture Book"), ("Science Fiction", "Sci-Fi Novel"))),
    "CDs_and_Vinyl": ("CDs & Vinyl", (
        ("Rock", "Rock Album"), ("Jazz", "Jazz Record"),
        ("Classical", "Symphony"), ("Pop", "Pop Single"))),
    "Cell_Phones_and_Accessories": ("Cell Phones & Accessories", (
        ("Cases & Covers", "Phone Case"), ("Screen Protectors", "Screen Protector"),
        ("Chargers & Power Adapters", "Wall Charger"), ("Mounts & Stands", "Car Mount"))),
    "Clothing_Shoes_and_Jewelry": ("Clothing, Shoes & Jewelry", (
        ("Shoes", "Sneakers"), ("Jewelry", "Necklace"),
        ("Dresses", "Maxi Dress"), ("Watches", "Wristwatch"))),
    "Digital_Music": ("Digital Music", (
        ("Dance & Electronic", "Dance Track"), ("Country", "Country Ballad"),
        ("Soundtracks", "Film Score"), ("Rap & Hip-Hop", "Hip-Hop Beat"))),
    "Electronics": ("Electronics", (
        ("Headphones & Earbuds", "Headphones"), ("Cameras & Photo", "Camera"),
        ("Portable Speakers", "Speaker"), ("Computer Keyboards", "Keyboard"))),
    "Gift_Cards": ("Gift Cards", (
        ("Birthday", "Birthday Gift Card"), ("Holiday", "Holiday Gift Card"),
        ("Restaurants", "Dining Gift Card"), ("Entertainment", "Cinema Gift Card"))),
    "Grocery_and_Gourmet_Food": ("Grocery & Gourmet Food", (
        ("Coffee", "Ground Coffee"), ("Snacks", "Trail Mix"),
        ("Tea", "Green Tea"), ("Pantry Staples", "Olive Oil"))),
    "Handmade_Products": ("Handmade Products", (
        ("Handmade Jewelry", "Beaded Bracelet"), ("Home Decor", "Macrame Wall Hanging"),
        ("Pottery", "Ceramic Mug"), ("Candles", "Soy Candle"))),
    "Health_and_Household": ("Health & Household", (
        ("Vitamins & Supplements", "Multivitamin"), ("Household Supplies", "Laundry Detergent"),
        ("Medical Supplies", "First Aid Kit"), ("Sleep & Snoring", "Sleep Mask"))),
    "Health_and_Personal_Care": ("Health & Personal Care", (
        ("Personal Care", "Electric Shaver"), ("Massage & Relaxation", "Massage Gun"),
        ("Health Monitors", "Blood Pressure Monitor"), ("Thermometers", "Thermometer"))),
    "Home_and_Kitchen": ("Home & Kitchen", (
        ("Cookware", "Frying Pan"), ("Bedding", "Duvet Cover"),
        ("Lamps & Lighting", "Table Lamp"), ("Storage & Organization", "Storage Bin"))),
    "Industrial_and_Scientific": ("Industrial & Scientific", (
        ("Lab Supplies", "Beaker"), ("Safety Equipment", "Safety Goggles"),
        ("Fasteners", "Hex Bolt"), ("Test & Measurement", "Multimeter"))),
    "Kindle_Store": ("Kindle Store", (
        ("Romance", "Romance eBook"), ("Fantasy", "Fantasy eBook"),
        ("Biographies & Memoirs", "Memoir"), ("Self-Help", "Self-Help Guide"))),
    "Magazine_Subscriptions": ("Magazine Subscriptions", (
        ("News & Politics", "News Magazine"), ("Cooking, Food & Wine", "Food Magazine"),
        ("Travel", "Travel Magazine"), ("Technology", "Tech Magazine"))),
    "Movies_and_TV": ("Movies & TV", (
        ("Action & Adventure", "Action Blu-ray"), ("Documentary", "Documentary DVD"),
        ("Animation", "Animated Film"), ("TV Series", "TV Box Set"))),
    "Musical_Instruments": ("Musical Instruments", (
        ("Guitars", "Acoustic Guitar"), ("Drums & Percussion", "Snare Drum"),
        ("Keyboards & Pianos", "Digital Piano"), ("Microphones", "Microphone"))),
    "Office_Products": ("Office Products", (
        ("Writing Instruments", "Gel Pen"), ("Paper & Notebooks", "Spiral Notebook"),
        ("Desk Accessories", "Desk Organizer"), ("Printer Supplies", "Ink Cartridge"))),
    "Patio_Lawn_and_Garden": ("Patio, Lawn & Garden", (
        ("Gardening & Watering", "Garden Hose"), ("Grills & Outdoor Cooking", "Charcoal Grill"),
        ("Outdoor Decor", "Solar Lantern"), ("Plants & Seeds", "Seed Packet"))),
    "Pet_Supplies": ("Pet Supplies", (
        ("Dogs", "Dog Leash"), ("Cats", "Cat Scratcher"),
        ("Fish & Aquatic Pets", "Aquarium Filter"), ("Birds", "Bird Feeder"))),
    "Software": ("Software", (
        ("Antivirus & Security", "Antivirus Suite"), ("Photo Editing", "Photo Editor"),
        ("Business & Office", "Accounting Software"),
        ("Education & Reference", "Language Course"))),
    "Sports_and_Outdoors": ("Sports & Outdoors", (
        ("Camping & Hiking", "Sleeping Bag"), ("Exercise & Fitness", "Yoga Mat"),
        ("Cycling", "Bike Helmet"), ("Water Sports", "Swim Goggles"))),
    "Subscription_Boxes": ("Subscription Boxes", (
        ("Snack Boxes", "Snack Box"), ("Beauty Boxes", "Beauty Box"),
        ("Book Boxes", "Book Club Box"), ("Pet Boxes", "Pet Treat Box"))),
    "Tools_and_Home_Improvement": ("Tools & Home Improvement", (
        ("Power Tools", "Cordless Drill"), ("Hand Tools", "Screwdriver Set"),
        ("Ceiling Fans", "Ceiling Fan"), ("Plumbing", "Kitchen Faucet"))),
    "Toys_and_Games": ("Toys & Games", (
        ("Puzzles", "Jigsaw Puzzle"), ("Building Toys", "Building Blocks"),
        ("Dolls & Accessories", "Fashion Doll"), ("Board Games", "Board Game"))),
    "Video_Games": ("Video Games", (
        ("PlayStation 5", "PS5 Game"), ("Nintendo Switch", "Switch Game"),
        ("PC Gaming", "Gaming Mouse"), ("Xbox Series X", "Xbox Controller"))),
}  # fmt: skip

# Optional third level of `categories`: "<subcategory> <facet>".
LEAF_FACETS = ("Essentials", "Sets & Bundles", "Accessories")

# One row per community: the brands (stores) that sell its style.
BRANDS = (
    ("Northwind", "Nordvik", "Polarline"), ("Solara", "Sunmere", "Heliox"),
    ("Verdant", "Mossway", "Fernhollow"), ("Ironclad", "Forgeworks", "Anvilry"),
    ("Lumina", "Brightlane", "Glowmark"), ("Oakridge", "Timberly", "Cedarfield"),
    ("Bluecrest", "Tidewater", "Marinell"), ("Emberly", "Cinderhouse", "Pyrosa"),
    ("Velvetine", "Plushmere", "Satinique"), ("Quartzite", "Crystalis", "Prismo"),
    ("Urbanite", "Metrolux", "Citysmith"), ("Wildroot", "Trailwise", "Canyonic"),
)  # fmt: skip

PRODUCT_LINES = (
    "Nimbus", "Aurora", "Vertex", "Zephyr", "Orion", "Nova", "Atlas", "Echo", "Summit", "Pulse",
    "Halo", "Vista", "Comet", "Ripple", "Juniper", "Cascade", "Harbor", "Meadow", "Sierra",
    "Quill", "Tundra", "Willow", "Falcon", "Lotus", "Onyx", "Pebble", "Saffron", "Topaz",
)  # fmt: skip
ADJECTIVES = (
    "Premium", "Compact", "Classic", "Deluxe", "Everyday", "Pro", "Lightweight", "Durable",
    "Eco-Friendly", "Portable", "Ultra", "Essential", "Modern", "Vintage", "Professional", "Mini",
    "Advanced", "Signature", "Original", "Heavy Duty",
)  # fmt: skip
VARIANTS = (
    "Matte Black", "White", "Navy Blue", "Rose Gold", "Silver", "Forest Green", "Pack of 2",
    "Pack of 3", "Set of 4", "Large", "Medium", "Small", "12 oz", "8 Count", "2023 Edition",
    "Travel Size", "Family Size", "Gray", "Red", "Natural",
)  # fmt: skip
COLOURS = ("Black", "White", "Blue", "Red", "Green", "Gray", "Pink", "Beige", "Multicolor")
TITLE_TEMPLATES = (
    "{line} {adj} {noun}, {variant}",
    "{adj} {noun} by {line} - {variant}",
    "{line} {noun} ({variant})",
)
# Web-caption noise: titles that name no subcategory at all.
GENERIC_TITLES = (
    "Great value, top quality item",
    "Best Seller - Fast Shipping",
    "New Arrival 2023 Hot Sale",
    "Perfect Gift for Men and Women",
    "Premium Quality Product",
    "Limited Edition Special Offer",
    "Top Rated Choice, Satisfaction Guaranteed",
    "Item 1",
)
FEATURES = (
    "Built to last with durable materials",
    "Easy to clean and maintain",
    "Ships in recyclable packaging",
    "Backed by a 1-year warranty",
    "Lightweight and easy to carry",
    "Designed for everyday use",
    "Great gift for friends & family",
    "Tested for quality and safety",
    'Measures 8" x 5" x 2"',
    "Satisfaction guaranteed or your money back",
    "Made with responsibly sourced materials",
    "Modern look that fits any style",
)
DESCRIPTIONS = (
    "This {noun} from {store} is designed for everyday use.",
    "Meet the {line} {noun}: {store} quality at a fair price.",
    "{store} makes every {noun} with care. Enjoy!",
)

# Review snippets by rating 1..5; texts are opener [+ mention of the noun] [+ extra].
REVIEW_TITLES = (
    ("Terrible", "Broke after a week", "Do not buy", "Waste of money", "Awful", "Returned it"),
    ("Disappointed", "Not great", "Meh", "Cheaply made", "Not as pictured", "Two stars"),
    ("It's okay", "Average", "Does the job", "Mixed feelings", "Fine for the price", "OK"),
    ("Pretty good", "Nice", "Works well", "Good value", "Happy with it", "Solid"),
    ("Love it!", "Excellent", "Five stars", "Perfect", "Highly recommend", "Great purchase"),
)  # fmt: skip
REVIEW_OPENERS = (
    ("Stopped working almost right away.", "Poor quality, very disappointed.",
     "Nothing like the description.", "Would give zero stars if I could.",
     "Arrived damaged and support did not help.", "Complete waste of money."),
    ("Not what I expected.", "Quality could be better.", "It works, barely.",
     "Smaller than it looked online.", "Feels flimsy.", "I expected more for the price."),
    ("It's fine.", "Does what it says, nothing more.", "Decent but not amazing.",
     "Okay for occasional use.", "Some good points, some bad.", "Average quality."),
    ("Works well so far.", "Good quality for the price.", "Pretty happy with this.",
     "Nice design and sturdy.", "Does the job nicely.", "Would buy again."),
    ("Absolutely love it!", "Exceeded my expectations.", "Best purchase this year.",
     "Great quality, fast delivery.", "Exactly as described.", "My whole family loves it."),
)  # fmt: skip
REVIEW_MENTIONS = (
    "Compared to other {noun} I have owned, this one is better.",
    "Bought this {noun} as a gift.",
    "Good {noun} for the price.",
    "I use the {noun} every day.",
    "Second {noun} I have bought from this seller.",
)
REVIEW_EXTRAS = (
    "Fast shipping &amp; well packed.",
    "Five stars 👍",
    "Love it 😍😍",
    "Muy bueno, lo recomiendo.",
    "Sehr gut, gerne wieder.",
    "Works great!!! 💯",
    "Arrived on time &amp; as described.",
    'Note: the color is a bit "darker" than the photo.',
)

_NOUNS = tuple(noun for c in CATEGORIES for _, noun in TAXONOMY[c][1])
_COMMUNITY_P = np.array([1 / (i + 4) for i in range(N_COMMUNITIES)])
_COMMUNITY_P /= _COMMUNITY_P.sum()
# The shopper model (docs/data.md, "--source demo"): the mix t in [-1, 1] sets the shares of a
# shopper's later purchases (_mix); these two constants fix the rest of the path. The complements'
# share puts the category-level homophily at the published coarse-label figures (about 0.8) at
# the default label homophily.
_COMPLEMENTS = 0.65  # complements' share of the non-substitutes at t = 0
_COMMUNITY = 0.8  # community picks' share of the purchases left, noise the rest
_REPEAT = 0.015  # a review of the shopper's previous product again
_ORPHAN = 0.005  # a review of a product missing from the metadata
# A user reviews at most as many products as a subcategory of the default catalogue holds (2,000
# over 132), so that even the most active can keep to their own: the dataset's tail of users
# with thousands of reviews would link most of a small catalogue and swamp the label structure.
_MOST_ITEMS_PER_USER = 15
_BLOCK = 4096  # shoppers per block of the stream, each block with a generator of its own
_MOST_REVIEWS_PER_PRODUCT = 25  # where the search for the mean degree stops (Amazon: 18-27)
_HOMOPHILY_TOLERANCE = 0.002
_DEGREE_TOLERANCE = 0.005  # relative
_GRAPH = GraphOptions()  # the graph the targets are measured on: slip-data's defaults
_T0 = 1136073600000  # 2006-01-01, ms
_T_END = 1696032000000  # 2023-09-30, ms
_YEAR_MS = 365 * 86_400_000
_CHUNK = 50_000  # lines per gzip write
_GZIP_LEVEL = 3
_ASIN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_USER_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_IMAGE_URL = f"http://{DEMO_IMAGE_HOST}/images/I/"


def _js(text: str) -> str:
    """JSON string literal, UTF-8 kept (as in the dataset)."""
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True)
class DemoSpec:
    """What to generate; validated on construction, categories kept in the published order."""

    products: int = 2000
    seed: int = 0
    caption_noise: float = 0.2
    reviews_per_product: float = 0.0  # 0: as many reviews as mean_degree needs
    categories: tuple[str, ...] = CATEGORIES
    label_homophily: float = 0.5  # edge homophily of the built graph (docs/data.md: why 0.5)
    mean_degree: float = 8.0
    items_per_user: float = 2.3

    def __post_init__(self) -> None:
        def is_int(v: object) -> bool:
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        def is_real(v: object) -> bool:
            return is_int(v) or (isinstance(v, float | np.floating) and math.isfinite(v))

        if not is_int(self.products) or not 300 <= self.products <= 1_000_000:
            raise ValueError(
                f"products must be an integer from 300 to 1,000,000, got {self.products!r}"
            )
        if not is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer from 0 to 2**63-1, got {self.seed!r}")
        if not is_real(self.caption_noise) or not 0 <= self.caption_noise <= 1:
            raise ValueError(f"caption_noise must be from 0 to 1, got {self.caption_noise!r}")
        if not is_real(self.label_homophily) or not 0 <= self.label_homophily <= 1:
            raise ValueError(f"label_homophily must be from 0 to 1, got {self.label_homophily!r}")
        if not is_real(self.reviews_per_product) or not 0 <= self.reviews_per_product <= 100:
            raise ValueError(
                f"reviews_per_product must be from 0 to 100, got {self.reviews_per_product!r}"
            )
        if not is_real(self.mean_degree) or not 0 < self.mean_degree <= 100:
            raise ValueError(
                f"mean_degree must be above 0 and at most 100, got {self.mean_degree!r}"
            )
        if not is_real(self.items_per_user) or not 1 < self.items_per_user <= 8:
            raise ValueError(
                f"items_per_user must be above 1 and at most 8, got {self.items_per_user!r}"
            )
        names = (self.categories,) if isinstance(self.categories, str) else self.categories
        try:
            names = tuple(names)
        except TypeError:
            names = ()
        unknown = [c for c in names if c not in CATEGORIES]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(
                "categories must be distinct published names, "
                f"got {', '.join(map(str, names)) or '(none)'}"
            )
        object.__setattr__(self, "products", int(self.products))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "caption_noise", float(self.caption_noise))
        object.__setattr__(self, "reviews_per_product", float(self.reviews_per_product))
        object.__setattr__(self, "label_homophily", float(self.label_homophily))
        object.__setattr__(self, "mean_degree", float(self.mean_degree))
        object.__setattr__(self, "items_per_user", float(self.items_per_user))
        object.__setattr__(self, "categories", tuple(c for c in CATEGORIES if c in names))

    def as_json(self) -> dict:
        return {**asdict(self), "categories": list(self.categories)}


def demo_label_names(category: str) -> list[str]:
    """The subcategory names of a category, i.e. the values of `categories[1]` in its meta."""
    if category not in TAXONOMY:
        raise ValueError(f"unknown category {category!r}")
    return [name for name, _ in TAXONOMY[category][1]]


def demo_files(root: Path, category: str) -> tuple[Path, Path]:
    """(meta, reviews) paths of a category, laid out as on the dataset's raw host."""
    meta, reviews = raw_relpaths(category)
    return Path(root) / meta, Path(root) / reviews


def _mix(t: float) -> tuple[float, float, float]:
    """(substitute, complement, community) shares of a shopper's purchases after the first; noise
    is the rest. t = -1 ignores the label (community and noise), 0 adds complements, 1 is all
    substitutes: the graph's edge homophily grows with t, so one search finds the t asked for."""
    substitute = max(t, 0.0)
    complement = _COMPLEMENTS * (1 - abs(t))
    return substitute, complement, (1 - substitute - complement) * _COMMUNITY


def _count_cdf(mean: float, most: int) -> np.ndarray:
    """CDF over 1..most of a power law k**-a with the given mean (uniform where even a = 0 falls
    short): most users review one or two products and a few many, as in the dataset."""
    k = np.arange(1, most + 1, dtype=np.float64)

    def mean_at(a: float) -> float:
        weights = k**-a
        return float(k @ weights / weights.sum())

    lo, hi = 0.0, 64.0
    if mean_at(0.0) > mean:
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if mean_at(mid) > mean else (lo, mid)
    cdf = np.cumsum(k**-lo)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def _search(
    value: Callable[[float], float],
    *,
    lo: float,
    hi: float,
    target: float,
    tolerance: float,
    integer: bool = False,
) -> float:
    """An x in [lo, hi] where the non-decreasing `value` is within `tolerance` of `target`, else
    the closer end of the last bracket (regula falsi, Illinois variant: few evaluations)."""
    f_lo, f_hi = value(lo) - target, value(hi) - target
    if f_lo >= -tolerance or f_hi <= tolerance:
        return lo if f_lo >= -tolerance else hi
    side = 0
    while hi - lo > (1 if integer else 1e-6):
        x = lo + (hi - lo) * f_lo / (f_lo - f_hi)
        if integer:
            x = min(max(round(x), lo + 1), hi - 1)
        f = value(x) - target
        if abs(f) <= tolerance:
            return x
        if f < 0:
            lo, f_lo, f_hi = x, f, f_hi / 2 if side < 0 else f_hi
            side = -1
        else:
            hi, f_hi, f_lo = x, f, f_lo / 2 if side > 0 else f_lo
            side = 1
    return lo if target - value(lo) < value(hi) - target else hi


class _Picker:
    """Popularity-weighted product draws from a wanted group (a community, a subcategory), for
    many draws at once: sorted by group, each group is one range of the cumulative weights; a
    group without products falls back to all of them."""

    def __init__(self, group: np.ndarray, groups: int, popularity: np.ndarray) -> None:
        self.order = np.argsort(group, kind="stable")
        self.cum = np.concatenate([[0.0], np.cumsum(popularity[self.order])])
        self.edges = np.searchsorted(group[self.order], np.arange(groups + 1))

    def __call__(self, rng: np.random.Generator, wanted: np.ndarray) -> np.ndarray:
        lo, hi = self.edges[wanted], self.edges[wanted + 1]
        empty = lo == hi
        lo[empty], hi[empty] = 0, len(self.order)
        target = self.cum[lo] + rng.random(len(wanted)) * (self.cum[hi] - self.cum[lo])
        pos = np.clip(np.searchsorted(self.cum, target, side="right") - 1, lo, hi - 1)
        return self.order[pos]


class _Shoppers:
    """An endless, seeded stream of shoppers with every candidate purchase drawn; a catalogue is
    its first `length` reviews under one mix (_mix). A block of shoppers has a generator of its
    own, so the start of the stream does not depend on how far it is read, and the homophily and
    degree can be measured for any (mix, length) on the same draws."""

    def __init__(self, catalogue: "_Catalogue") -> None:
        spec = catalogue.spec
        self.spec, self.psub, self.kept = spec, catalogue.psub, catalogue.kept
        n, popularity = spec.products, catalogue.popularity
        self.by_subcategory = _Picker(catalogue.psub, N_SUBCATEGORIES, popularity)
        self.by_community = _Picker(catalogue.pcomm, N_COMMUNITIES, popularity)
        self.anywhere = _Picker(np.zeros(n, dtype=np.int64), 1, popularity)
        self.count_cdf = _count_cdf(spec.items_per_user, _MOST_ITEMS_PER_USER)
        self.blocks: list[dict[str, np.ndarray]] = []
        self.stream: dict[str, np.ndarray] = {}
        self.measured: dict[tuple[float, int], tuple[float, float]] = {}

    def _block(self, index: int) -> dict[str, np.ndarray]:
        # the 1 keeps these generators apart from the catalogue's own
        rng = np.random.default_rng([GENERATOR_VERSION, self.spec.seed, 1, index])
        most = len(self.count_cdf)
        counts = np.minimum(1 + np.searchsorted(self.count_cdf, rng.random(_BLOCK)), most)
        local = np.repeat(np.arange(_BLOCK), counts)
        size, starts = local.size, np.cumsum(counts) - counts
        first = np.zeros(size, dtype=bool)
        first[starts] = True
        community = rng.choice(N_COMMUNITIES, _BLOCK, p=_COMMUNITY_P)
        start = rng.integers(_T0, _T_END, _BLOCK)
        span = rng.exponential(2 * _YEAR_MS, _BLOCK)
        own = self.by_community(rng, community[local])
        anchor = self.psub[own[starts]][local]  # the subcategory of the first purchase
        offset = rng.integers(1, SUBCATEGORIES_PER_CATEGORY, size)
        block = anchor - anchor % SUBCATEGORIES_PER_CATEGORY
        related = block + (anchor + offset) % SUBCATEGORIES_PER_CATEGORY
        ts = start[local] + (rng.random(size) * span[local]).astype(np.int64)
        return {
            "user": (local + index * _BLOCK).astype(np.int32),
            "first": first,
            "draw": rng.random(size),
            "substitute": self.by_subcategory(rng, anchor),
            "complement": self.by_subcategory(rng, related),
            "community": own,
            "noise": self.anywhere(rng, np.zeros(size, dtype=np.int64)),
            "repeat": (rng.random(size) < _REPEAT) & ~first,
            "orphan": rng.random(size) < _ORPHAN,
            "ts": np.minimum(ts, _T_END - rng.integers(0, _YEAR_MS // 4, size)),
        }

    def columns(self, length: int) -> dict[str, np.ndarray]:
        """The stream's first `length` reviews, drawing further blocks as needed."""
        if len(self.stream.get("user", ())) < length:
            have = sum(len(b["user"]) for b in self.blocks)
            while have < length:
                self.blocks.append(self._block(len(self.blocks)))
                have += len(self.blocks[-1]["user"])
            self.stream = {k: np.concatenate([b[k] for b in self.blocks]) for k in self.blocks[0]}
        return {k: v[:length] for k, v in self.stream.items()}

    def products(self, t: float, length: int) -> np.ndarray:
        """The product of each of the first `length` reviews under mix t."""
        stream = self.columns(length)
        kind = np.searchsorted(np.cumsum(_mix(t)), stream["draw"], side="right")
        kinds = [stream[k] for k in ("substitute", "complement", "community", "noise")]
        product = np.choose(kind, kinds)
        product[stream["first"]] = stream["community"][stream["first"]]
        at = np.flatnonzero(stream["repeat"])
        product[at] = product[at - 1]
        return product

    def measure(self, t: float, length: int) -> tuple[float, float]:
        """(edge homophily, mean degree) of the graph slip-data will build from these reviews:
        its own edge code on the products and reviews its filters keep."""
        key = (t, length)
        if key not in self.measured:
            stream, product = self.columns(length), self.products(t, length)
            keep = ~stream["orphan"] & self.kept[product]
            user_items = (
                pl.DataFrame(
                    {"user": stream["user"][keep], "item": product[keep], "ts": stream["ts"][keep]}
                )
                .group_by("user", "item")
                .agg(timestamp=pl.col("ts").max())
            )
            edges = co_purchase_edges(
                user_items, self.spec.products, _GRAPH.max_items_per_user, _GRAPH.min_weight
            )
            label = self.psub[edges["src"].to_numpy()] == self.psub[edges["dst"].to_numpy()]
            homophily = float(label.mean()) if label.size else 0.0
            self.measured[key] = (homophily, 2 * label.size / max(1, int(self.kept.sum())))
        return self.measured[key]

    def solve(self) -> tuple[float, int]:
        """(mix, reviews) giving the asked edge homophily and mean degree (or, with
        reviews_per_product, that many reviews). The two searches alternate, each from the
        other's last answer, until the degree still holds once the mix is found: the homophily
        barely moves with the number of reviews, so a round or two suffices."""
        spec, n = self.spec, self.spec.products
        most = n * _MOST_REVIEWS_PER_PRODUCT

        def solve_mix(length: int) -> float:
            return _search(
                lambda t: self.measure(t, length)[0],
                lo=-1.0,
                hi=1.0,
                target=spec.label_homophily,
                tolerance=_HOMOPHILY_TOLERANCE,
            )

        def solve_length(t: float, guess: int) -> int:
            def degree(length: float) -> float:
                return self.measure(t, int(length))[1] / spec.mean_degree

            lo, hi = guess, guess
            while degree(lo) > 1 and lo > 1:
                lo //= 2
            while degree(hi) < 1 and hi < most:
                hi = min(most, 2 * hi)
            return int(
                _search(degree, lo=lo, hi=hi, target=1.0, tolerance=_DEGREE_TOLERANCE, integer=True)
            )

        if spec.reviews_per_product:
            length = max(1, round(n * spec.reviews_per_product))
            return solve_mix(length), length
        # a first guess from the pairs a review adds, before repeated pairs
        k = np.minimum(np.arange(1, len(self.count_cdf) + 1), _GRAPH.max_items_per_user)
        pmf = np.diff(self.count_cdf, prepend=0.0)
        pairs_per_review = max((pmf @ (k * (k - 1) / 2)) / (pmf @ k), 1e-9)
        length = int(min(most, max(1, spec.mean_degree * n / 2 / pairs_per_review)))
        t = solve_mix(length)
        for _ in range(4):
            length = solve_length(t, length)
            t = solve_mix(length)
            off = abs(self.measure(t, length)[1] / spec.mean_degree - 1)
            if off <= _DEGREE_TOLERANCE or length == most:
                break
        return t, length


class _Catalogue:
    """All random draws of a spec, as numpy arrays; lines are built from these per category."""

    def __init__(self, spec: DemoSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng([GENERATOR_VERSION, spec.seed])
        self._sample_products(rng)
        self._sample_meta(rng)
        self._sample_reviews(rng)
        self._aggregate_ratings(rng)
        mix = int(rng.integers(0, 2**62))
        # Affine maps coprime with the alphabet size: unique ids that look scrambled.
        self._asin_a = (mix % 36**8) | 1
        while self._asin_a % 3 == 0:
            self._asin_a += 2
        self._asin_b = (mix >> 20) % 36**8
        self._user_a = ((mix >> 7) % 32**12) | 1
        self._user_b = (mix >> 3) % 32**12
        self._user_key = np.uint64(mix)

    def _sample_products(self, rng: np.random.Generator) -> None:
        n, k = self.spec.products, len(self.spec.categories)
        self.sizes = np.full(k, n // k)
        self.sizes[: n % k] += 1
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])
        self.pcat = np.repeat(np.arange(k), self.sizes)
        within = np.arange(n) - self.starts[self.pcat]
        sub = (within % SUBCATEGORIES_PER_CATEGORY)[np.lexsort((rng.random(n), self.pcat))]
        gcat = np.array([CATEGORIES.index(c) for c in self.spec.categories])
        self.psub = gcat[self.pcat] * SUBCATEGORIES_PER_CATEGORY + sub  # global subcategory
        self.pcomm = rng.choice(N_COMMUNITIES, n, p=_COMMUNITY_P)
        self.popularity = rng.lognormal(0.0, 1.0, n)
        self.quality = np.clip(rng.normal(4.2, 0.5, n), 1.5, 5.0)

    def _sample_reviews(self, rng: np.random.Generator) -> None:
        """The reviews are the start of an endless stream of shoppers, as many as the density
        asks for, mixed so that their graph has the asked homophily (_Shoppers.solve)."""
        shoppers = _Shoppers(self)
        mix, total = shoppers.solve()
        self.graph_homophily, self.graph_degree = shoppers.measure(mix, total)
        stream = shoppers.columns(total)
        self.rprod = shoppers.products(mix, total).astype(np.int32)
        self.ruser = stream["user"]
        self.users = int(self.ruser[-1]) + 1
        self.orphan = stream["orphan"]
        self.orphan_rank = np.cumsum(self.orphan) - 1
        self.ts = stream["ts"]
        self.variant_asin = (rng.random(total) < 0.1) & ~self.orphan
        noise = rng.normal(0.0, 0.9, total)
        self.rating = np.clip(np.rint(self.quality[self.rprod] + noise), 1, 5).astype(np.int8)
        self.rtitle = rng.integers(0, 6, total, dtype=np.int8)
        self.ropener = rng.integers(0, 6, total, dtype=np.int8)
        self.rmention = np.where(rng.random(total) < 0.5, rng.integers(0, 5, total), -1)
        self.rextra = np.where(rng.random(total) < 0.12, rng.integers(0, 8, total), -1)
        self.rbreak = rng.random(total) < 0.25  # "<br />" instead of a space between sentences
        self.rempty_text = rng.random(total) < 0.003
        self.rempty_title = rng.random(total) < 0.003
        self.helpful = np.minimum(rng.pareto(1.3, total) * 0.5, 5000).astype(np.int32)
        self.verified = rng.random(total) < 0.9
        # Files hold one category each, in time order.
        k = len(self.spec.categories)
        rcat_out = self.pcat[self.rprod]
        self.review_order = np.lexsort((self.ts, rcat_out))
        self.review_bounds = np.searchsorted(rcat_out[self.review_order], np.arange(k + 1))

    def _sample_meta(self, rng: np.random.Generator) -> None:
        n, noise = self.spec.products, self.spec.caption_noise
        u = rng.random(n)
        self.generic = u < noise / 2
        self.wrong = (u >= noise / 2) & (u < noise)
        self.wrong_offset = rng.integers(1, SUBCATEGORIES_PER_CATEGORY, n)
        self.generic_pick = rng.integers(0, len(GENERIC_TITLES), n)
        self.brand_in_title = rng.random(n) < 0.3
        self.template = rng.integers(0, len(TITLE_TEMPLATES), n)
        self.line = rng.integers(0, len(PRODUCT_LINES), n)
        self.adjective = rng.integers(0, len(ADJECTIVES), n)
        self.title_variant = rng.integers(0, len(VARIANTS), n)
        self.empty_title = rng.random(n) < 0.005
        self.store = rng.integers(0, 3, n)
        self.no_images = rng.random(n) < 0.01
        self.hires_null = rng.random(n) < 0.02
        self.second_photo = rng.random(n) < 0.35
        self.empty_categories = rng.random(n) < 0.01
        self.leaf = np.where(rng.random(n) < 0.7, rng.integers(1, len(LEAF_FACETS) + 1, n), 0)
        base = np.exp(1.5 + 3.0 * _mix_unit(self.psub))  # a typical price per subcategory
        self.price = np.round(base * rng.lognormal(0.0, 0.3, n), 2)
        self.price_null = rng.random(n) < 0.08
        self.feature_start = rng.integers(0, len(FEATURES), n)
        self.feature_count = rng.integers(0, 5, n)
        self.description = np.where(rng.random(n) < 0.6, rng.integers(0, len(DESCRIPTIONS), n), -1)
        self.details = rng.random(n) < 0.85
        self.colour = rng.integers(0, len(COLOURS), n)
        self.first_day = rng.integers(0, (_T_END - _T0) // 86_400_000, n)
        # what the graph stage keeps: a title, an image and a label
        self.kept = ~(self.empty_title | self.no_images | self.empty_categories)

    def _aggregate_ratings(self, rng: np.random.Generator) -> None:
        n = self.spec.products
        real = self.rprod[~self.orphan]
        count = np.bincount(real, minlength=n)
        total = np.bincount(real, weights=self.rating[~self.orphan], minlength=n)
        mean = np.where(count > 0, total / np.maximum(count, 1), self.quality)
        self.average_rating = np.round(mean, 1)
        self.rating_number = count + rng.poisson(0.5 * count + 0.5)

    def asins(self, codes: np.ndarray) -> list[str]:
        """'B0' + 8 base36 chars; codes n..2n-1 are variants, 2n.. orphans, never a product."""
        scrambled = (
            np.uint64(self._asin_a) * codes.astype(np.uint64) + np.uint64(self._asin_b)
        ) % np.uint64(36**8)
        return ["B0" + s for s in digits_to_strings(scrambled, _ASIN_ALPHABET, 8)]

    def user_ids(self, users: np.ndarray) -> list[str]:
        """28 chars like the dataset's: 15 hashed, then 12 unique to the user."""
        u = users.astype(np.uint64)
        unique = (np.uint64(self._user_a) * u + np.uint64(self._user_b)) % np.uint64(32**12)
        hashed = mix64_np(u ^ self._user_key) % np.uint64(32**12)
        extra = mix64_np(hashed) % np.uint64(32**3)
        parts = zip(
            digits_to_strings(hashed, _USER_ALPHABET, 12),
            digits_to_strings(extra, _USER_ALPHABET, 3),
            digits_to_strings(unique, _USER_ALPHABET, 12),
            strict=True,
        )
        return ["A" + a + b + c for a, b, c in parts]

    def meta_chunks(self, ci: int) -> Iterator[tuple[str, int]]:
        lo, hi = int(self.starts[ci]), int(self.starts[ci + 1])
        for start in range(lo, hi, _CHUNK):
            stop = min(hi, start + _CHUNK)
            yield self._meta_text(start, stop), stop - start

    def review_chunks(self, ci: int) -> Iterator[tuple[str, int]]:
        lo, hi = int(self.review_bounds[ci]), int(self.review_bounds[ci + 1])
        for start in range(lo, hi, _CHUNK):
            stop = min(hi, start + _CHUNK)
            yield self._review_text(self.review_order[start:stop]), stop - start

    def _meta_text(self, lo: int, hi: int) -> str:
        sl = slice(lo, hi)
        products = np.arange(lo, hi)
        salt = seed_salt(self.spec.seed)
        tok_main = encode_tokens(self.psub[sl], self.pcomm[sl], products, 0, salt)
        tok_second = encode_tokens(self.psub[sl], self.pcomm[sl], products, 1, salt)
        asins = self.asins(products)
        cols = [
            self.psub[sl], self.pcomm[sl], self.store[sl], self.generic[sl], self.wrong[sl],
            self.wrong_offset[sl], self.generic_pick[sl], self.brand_in_title[sl],
            self.template[sl], self.line[sl], self.adjective[sl], self.title_variant[sl],
            self.empty_title[sl], self.no_images[sl], self.hires_null[sl], self.second_photo[sl],
            self.empty_categories[sl], self.leaf[sl], self.price[sl], self.price_null[sl],
            self.feature_start[sl], self.feature_count[sl], self.description[sl], self.details[sl],
            self.colour[sl], self.first_day[sl], self.average_rating[sl], self.rating_number[sl],
        ]  # fmt: skip
        lines = []
        for row in zip(*(c.tolist() for c in cols), tok_main, tok_second, asins, strict=True):
            (g, comm, store_i, generic, wrong, wrong_offset, generic_pick, brand_in, template,
             line, adj, variant, empty_title, no_images, hires_null, second, empty_cats, leaf,
             price, price_null, f_start, f_count, desc, details, colour, day, avg, number,
             tok1, tok2, asin) = row  # fmt: skip
            store = BRANDS[comm][store_i]
            noun = _NOUNS[g]
            if empty_title:
                title = ""
            elif generic:
                title = GENERIC_TITLES[generic_pick]
            else:
                if wrong:
                    block = g - g % SUBCATEGORIES_PER_CATEGORY
                    noun_shown = _NOUNS[block + (g + wrong_offset) % SUBCATEGORIES_PER_CATEGORY]
                else:
                    noun_shown = noun
                title = TITLE_TEMPLATES[template].format(
                    line=PRODUCT_LINES[line], adj=ADJECTIVES[adj], noun=noun_shown,
                    variant=VARIANTS[variant],
                )  # fmt: skip
                if brand_in:
                    title = f"{store} {title}"
            if no_images:
                images = "[]"
            else:
                images = _image_entry(tok1, "MAIN", hires_null)
                if second:
                    images += ", " + _image_entry(tok2, "PT01", hires_null)
                images = f"[{images}]"
            description = "[]"
            if desc >= 0:
                text = DESCRIPTIONS[desc].format(noun=noun, store=store, line=PRODUCT_LINES[line])
                description = f"[{_js(text)}]"
            detail = "{}"
            if details:
                detail = (
                    f'{{"Brand": "{store}", "Color": "{COLOURS[colour]}", '
                    f'"Date First Available": "{_date_text(day)}"}}'
                )
            lines.append(
                f'{{"main_category": {_ROOT_JSON[g]}, "title": {_js(title)}, '
                f'"average_rating": {avg}, "rating_number": {number}, '
                f'"features": {_FEATURES_JSON[f_start][f_count]}, "description": {description}, '
                f'"price": {"null" if price_null else f"{price:.2f}"}, "images": {images}, '
                f'"videos": [], "store": "{store}", '
                f'"categories": {"[]" if empty_cats else _CATEGORIES_JSON[g][leaf]}, '
                f'"details": {detail}, "parent_asin": "{asin}", "bought_together": null}}\n'
            )
        return "".join(lines)

    def _review_text(self, idx: np.ndarray) -> str:
        n = self.spec.products
        prod = self.rprod[idx]
        orphan = self.orphan[idx]
        parent = np.where(orphan, 2 * n + self.orphan_rank[idx], prod)
        asin = np.where(self.variant_asin[idx], n + prod, parent)
        rating = self.rating[idx].astype(np.int64)
        empty_text = self.rempty_text[idx]
        brk = self.rbreak[idx].astype(np.int64)
        opener = np.where(empty_text, len(_OPENERS_JSON) - 1, (rating - 1) * 6 + self.ropener[idx])
        mention = self.rmention[idx]
        mention = np.where(
            (mention < 0) | empty_text,
            0,
            1 + (self.psub[prod] * len(REVIEW_MENTIONS) + mention) * 2 + brk,
        )
        extra = self.rextra[idx]
        extra = np.where((extra < 0) | empty_text, 0, 1 + extra * 2 + brk)
        title = np.where(
            self.rempty_title[idx],
            len(_REVIEW_TITLES_JSON) - 1,
            (rating - 1) * 6 + self.rtitle[idx],
        )
        rows = zip(
            rating.tolist(), title.tolist(), opener.tolist(), mention.tolist(), extra.tolist(),
            self.asins(asin), self.asins(parent), self.user_ids(self.ruser[idx]),
            self.ts[idx].tolist(), self.helpful[idx].tolist(), self.verified[idx].tolist(),
            strict=True,
        )  # fmt: skip
        return "".join(
            f'{{"rating": {r}.0, "title": {_REVIEW_TITLES_JSON[t]}, '
            f'"text": "{_OPENERS_JSON[o]}{_MENTIONS_JSON[m]}{_EXTRAS_JSON[e]}", "images": [], '
            f'"asin": "{a}", "parent_asin": "{p}", "user_id": "{u}", "timestamp": {ts}, '
            f'"helpful_vote": {h}, "verified_purchase": {"true" if v else "false"}}}\n'
            for r, t, o, m, e, a, p, u, ts, h, v in rows
        )


def _mix_unit(values: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per value."""
    return (mix64_np(values.astype(np.uint64)) >> np.uint64(11)).astype(np.float64) / 2.0**53


def _image_entry(token: str, variant: str, hires_null: bool) -> str:
    """Amazon-style URLs: '41' thumbnails and large, '71' hi-res; the suffix sets the size."""
    hi_res = "null" if hires_null else f'"{_IMAGE_URL}71{token}._SL1500_.jpg"'
    return (
        f'{{"thumb": "{_IMAGE_URL}41{token}._SS40_.jpg", "large": "{_IMAGE_URL}41{token}.jpg", '
        f'"variant": "{variant}", "hi_res": {hi_res}}}'
    )


def _date_text(day: int) -> str:
    d = datetime.fromtimestamp(_T0 / 1000, UTC) + timedelta(days=day)
    return f"{d:%B} {d.day}, {d.year}"


def _inner(text: str) -> str:
    """JSON-escaped text without the quotes, so escaped pieces can be concatenated."""
    return _js(text)[1:-1]


_ROOT_JSON = tuple(_js(TAXONOMY[CATEGORIES[g // 4]][0]) for g in range(len(_NOUNS)))
_CATEGORIES_JSON = tuple(
    tuple(
        json.dumps(
            [root, sub] + ([f"{sub} {LEAF_FACETS[leaf - 1]}"] if leaf else []), ensure_ascii=False
        )
        for leaf in range(len(LEAF_FACETS) + 1)
    )
    for c in CATEGORIES
    for root, subs in [TAXONOMY[c]]
    for sub, _ in subs
)
_FEATURES_JSON = tuple(
    tuple(
        json.dumps([FEATURES[(start + i) % len(FEATURES)] for i in range(count)])
        for count in range(5)
    )
    for start in range(len(FEATURES))
)
_REVIEW_TITLES_JSON = (*(_js(t) for row in REVIEW_TITLES for t in row), '""')
_OPENERS_JSON = (*(_inner(t) for row in REVIEW_OPENERS for t in row), "")
_MENTIONS_JSON = (
    "",
    *(
        _inner(sep + mention.format(noun=noun))
        for noun in _NOUNS
        for mention in REVIEW_MENTIONS
        for sep in (" ", "<br />")
    ),
)
_EXTRAS_JSON = ("", *(_inner(sep + e) for e in REVIEW_EXTRAS for sep in (" ", "<br />")))


def _write_gzip(
    target: Path, chunks: Iterator[tuple[str, int]], advance: Callable[[int], None]
) -> None:
    """Atomic gzip with no name and mtime 0 in its header: the bytes depend on the content only."""
    with (
        atomic_path(target) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0
        ) as gz,
    ):
        for text, lines in chunks:
            gz.write(text.encode())
            advance(lines)


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_demo_catalogue(spec: DemoSpec, root: Path, quiet: bool = True) -> dict:
    """Write the raw files of every category of `spec` under `root`; a no-op when already there.

    `root/demo-spec.json` is removed first and written last, so it only ever describes complete
    files. Files of categories outside the spec are removed: the root holds exactly one catalogue.
    """
    root = Path(root)
    marker = _read_marker(root)
    complete = all(p.is_file() for c in spec.categories for p in demo_files(root, c))
    if (
        marker is not None
        and marker.get("generator") == GENERATOR_VERSION
        and marker.get("spec") == spec.as_json()
        and complete
    ):
        return marker["summary"]
    (root / SPEC_FILE).unlink(missing_ok=True)
    for folder in ("meta_categories", "review_categories"):
        remove_stale_temps(root / folder)
    for category in CATEGORIES:
        if category not in spec.categories:
            for path in demo_files(root, category):
                path.unlink(missing_ok=True)

    catalogue = _Catalogue(spec)
    per_category = {}
    with item_progress(quiet) as progress:
        task = progress.add_task("demo catalogue", total=spec.products + len(catalogue.rprod))

        def advance(lines: int) -> None:
            progress.advance(task, lines)

        for ci, category in enumerate(spec.categories):
            meta_path, review_path = demo_files(root, category)
            _write_gzip(meta_path, catalogue.meta_chunks(ci), advance)
            _write_gzip(review_path, catalogue.review_chunks(ci), advance)
            lo, hi = catalogue.review_bounds[ci], catalogue.review_bounds[ci + 1]
            users = np.unique(catalogue.ruser[catalogue.review_order[lo:hi]])
            per_category[category] = {
                "products": int(catalogue.sizes[ci]),
                "reviews": int(hi - lo),
                "users": len(users),
            }
    summary = {
        "products": spec.products,
        "reviews": len(catalogue.rprod),
        "users": catalogue.users,
        # what the graph stage will build with its default options
        "edge_homophily": round(catalogue.graph_homophily, 4),
        "mean_degree": round(catalogue.graph_degree, 4),
        "categories": per_category,
    }
    write_json(
        root / SPEC_FILE,
        {"generator": GENERATOR_VERSION, "spec": spec.as_json(), "summary": summary},
    )
    return summary
