"""Embedded offline demo source: a synthetic catalogue in exactly the Amazon Reviews 2023 format.

The data carries the signals the toolkit is meant to learn: the subcategory is visible in the image
(shape x colour) and in most titles (its noun); co-purchases arise as in a store (substitutes
within a subcategory, complements across the subcategories of a category, a shopper's brand-like
community, noise), mixed so that the graph slip-data builds has the asked edge homophily and mean
degree; a community shows only faintly (a brand word in some titles, the store, an image
background pattern). Everything is drawn from seeded numpy generators, so the same spec gives the
same bytes.

Here the draws (Catalogue) and the files; the spec in demo_spec.py, the words in demo_words.py,
the shopper model in demo_shoppers.py, the JSON lines in demo_lines.py, the images in
demo_images.py.
"""

import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from slip_data.atomic import atomic_path, remove_stale_temps, write_json
from slip_data.categories import CATEGORIES, raw_relpaths
from slip_data.progress import item_progress
from slip_data.sources.demo_images import (
    N_COMMUNITIES,
    SUBCATEGORIES_PER_CATEGORY,
    DemoImage,
    decode_demo_image,
    mix64_np,
    render_demo_image,
)
from slip_data.sources.demo_lines import DEMO_IMAGE_HOST, Ids, meta_text, review_text
from slip_data.sources.demo_shoppers import COMMUNITY_P, Shoppers
from slip_data.sources.demo_spec import GENERATOR_VERSION, T0, T_END, DemoSpec
from slip_data.sources.demo_words import (
    ADJECTIVES,
    COLOURS,
    DESCRIPTIONS,
    FEATURES,
    GENERIC_TITLES,
    LEAF_FACETS,
    PRODUCT_LINES,
    TAXONOMY,
    TITLE_TEMPLATES,
    VARIANTS,
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

SPEC_FILE = "demo-spec.json"
_CHUNK = 50_000  # lines per gzip write
_GZIP_LEVEL = 3


def demo_label_names(category: str) -> list[str]:
    """The subcategory names of a category, i.e. the values of `categories[1]` in its meta."""
    if category not in TAXONOMY:
        raise ValueError(f"unknown category {category!r}")
    return [name for name, _ in TAXONOMY[category][1]]


def demo_files(root: Path, category: str) -> tuple[Path, Path]:
    """(meta, reviews) paths of a category, laid out as on the dataset's raw host."""
    meta, reviews = raw_relpaths(category)
    return Path(root) / meta, Path(root) / reviews


class Catalogue:
    """All random draws of a spec, as numpy arrays; demo_lines.py writes them per category."""

    def __init__(self, spec: DemoSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng([GENERATOR_VERSION, spec.seed])
        self._sample_products(rng)
        self._sample_meta(rng)
        self._sample_reviews(rng)
        self._aggregate_ratings(rng)
        self.ids = Ids(int(rng.integers(0, 2**62)))

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
        self.pcomm = rng.choice(N_COMMUNITIES, n, p=COMMUNITY_P)
        self.popularity = rng.lognormal(0.0, 1.0, n)
        self.quality = np.clip(rng.normal(4.2, 0.5, n), 1.5, 5.0)

    def _sample_reviews(self, rng: np.random.Generator) -> None:
        """The reviews are the start of an endless stream of shoppers, as many as the density
        asks for, mixed so that their graph has the asked homophily (Shoppers.solve)."""
        shoppers = Shoppers(
            self.spec,
            psub=self.psub,
            pcomm=self.pcomm,
            popularity=self.popularity,
            kept=self.kept,
        )
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
        self.first_day = rng.integers(0, (T_END - T0) // 86_400_000, n)
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

    def meta_chunks(self, ci: int) -> Iterator[tuple[str, int]]:
        lo, hi = int(self.starts[ci]), int(self.starts[ci + 1])
        for start in range(lo, hi, _CHUNK):
            stop = min(hi, start + _CHUNK)
            yield meta_text(self, start, stop), stop - start

    def review_chunks(self, ci: int) -> Iterator[tuple[str, int]]:
        lo, hi = int(self.review_bounds[ci]), int(self.review_bounds[ci + 1])
        for start in range(lo, hi, _CHUNK):
            stop = min(hi, start + _CHUNK)
            yield review_text(self, self.review_order[start:stop]), stop - start


def _mix_unit(values: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per value."""
    return (mix64_np(values.astype(np.uint64)) >> np.uint64(11)).astype(np.float64) / 2.0**53


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

    catalogue = Catalogue(spec)
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
