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
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.progress import Progress

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
from slip_data.sources.demo_spec import (
    GENERATOR_VERSION,
    MOST_ASKED_REVIEWS_PER_PRODUCT,
    T0,
    T_END,
    DemoSpec,
)
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
# The most products one Catalogue draws (its arrays, and the graph its density search builds, are
# in memory); a larger catalogue is the disjoint union of blocks of at most this many.
BLOCK_PRODUCTS = 1_000_000
_BLOCKS = ".blocks"  # each block's files until they are joined, so a killed run resumes
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

    def __init__(self, spec: DemoSpec, ids: Ids | None = None) -> None:
        self.spec = spec
        rng = np.random.default_rng([GENERATOR_VERSION, spec.seed])
        self._sample_products(rng)
        self._sample_meta(rng)
        self._sample_reviews(rng)
        self._aggregate_ratings(rng)
        self.ids = Ids(int(rng.integers(0, 2**62))) if ids is None else ids

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


def _files_complete(spec: DemoSpec, root: Path) -> bool:
    return all(p.is_file() for c in spec.categories for p in demo_files(root, c))


def _write_catalogue(catalogue: Catalogue, root: Path, advance: Callable[[int], None]) -> dict:
    """The raw files of one Catalogue under `root`, and their summary."""
    per_category = {}
    for ci, category in enumerate(catalogue.spec.categories):
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
    kept = int(catalogue.kept.sum())
    edges = round(catalogue.graph_degree * kept / 2)
    return {
        "products": catalogue.spec.products,
        "reviews": len(catalogue.rprod),
        "users": catalogue.users,
        # what the graph stage will build with its default options
        "edge_homophily": round(catalogue.graph_homophily, 4),
        "mean_degree": round(catalogue.graph_degree, 4),
        "categories": per_category,
        # the counts behind those two, so that the blocks of a larger catalogue add up exactly
        "kept_products": kept,
        "edges": edges,
        "edges_within": round(catalogue.graph_homophily * edges),
    }


def _block_specs(spec: DemoSpec) -> list[DemoSpec]:
    """The blocks of a catalogue: as even as can be, each its own seed (spec.seed + b)."""
    count = -(-spec.products // BLOCK_PRODUCTS)
    sizes = [spec.products // count + (b < spec.products % count) for b in range(count)]
    return [
        replace(spec, products=size, seed=(spec.seed + b) % 2**63) for b, size in enumerate(sizes)
    ]


def _block_dir(root: Path, block: int) -> Path:
    return root / _BLOCKS / f"{block:05d}"


def _unmark(folder: Path) -> None:
    """Before `folder`'s files are written again: its marker goes first (it only ever describes
    complete files), then the temps a killed write left."""
    (folder / SPEC_FILE).unlink(missing_ok=True)
    for sub in ("meta_categories", "review_categories"):
        remove_stale_temps(folder / sub)


def _write_blocks(spec: DemoSpec, root: Path, progress: Progress) -> dict:
    """A catalogue of more than BLOCK_PRODUCTS products: independent blocks drawn one at a time
    (memory bounded by a block), with one id key and each block's product and user codes shifted
    past the ones before, so that no id repeats; each category's files are the blocks' gzip
    members in block order. A finished block is kept (its own marker) until all are joined."""
    blocks = _block_specs(spec)
    key = int(np.random.default_rng([GENERATOR_VERSION, spec.seed, len(blocks)]).integers(2**62))
    summaries = []
    for b, block in enumerate(blocks):
        folder = _block_dir(root, b)
        record = {"generator": GENERATOR_VERSION, "spec": block.as_json(), "key": key, "block": b}
        marker = _read_marker(folder)
        if marker is None or marker.get("block_of") != record or not _files_complete(block, folder):
            _unmark(folder)
            ids = Ids(
                key,
                # codes: products, their variants and the orphans (at most one a review)
                asin_offset=b * (2 + MOST_ASKED_REVIEWS_PER_PRODUCT) * BLOCK_PRODUCTS,
                user_offset=b * MOST_ASKED_REVIEWS_PER_PRODUCT * BLOCK_PRODUCTS,
            )
            catalogue = Catalogue(block, ids=ids)
            task = progress.add_task(
                f"demo catalogue, block {b + 1}/{len(blocks)}",
                total=block.products + len(catalogue.rprod),
            )
            marker = {
                "block_of": record,
                "summary": _write_catalogue(
                    catalogue, folder, lambda lines, task=task: progress.advance(task, lines)
                ),
            }
            del catalogue
            write_json(folder / SPEC_FILE, marker)
        summaries.append(marker["summary"])
    for category in spec.categories:
        for target, *parts in zip(
            demo_files(root, category),
            *(demo_files(_block_dir(root, b), category) for b in range(len(blocks))),
            strict=True,
        ):
            with atomic_path(target) as tmp, tmp.open("wb") as out:
                for part in parts:
                    with part.open("rb") as source:
                        shutil.copyfileobj(source, out, 1 << 24)
    return _joined_summary(spec, summaries)


def _joined_summary(spec: DemoSpec, summaries: list[dict]) -> dict:
    """The blocks' summaries added up: their products, reviews, users and edges are disjoint."""

    def total(key: str, within: list[dict]) -> int:
        return sum(int(s[key]) for s in within)

    edges, kept = total("edges", summaries), total("kept_products", summaries)
    within = total("edges_within", summaries)
    return {
        "products": spec.products,
        "reviews": total("reviews", summaries),
        "users": total("users", summaries),
        "edge_homophily": round(within / max(1, edges), 4),
        "mean_degree": round(2 * edges / max(1, kept), 4),
        "categories": {
            category: {
                key: total(key, [s["categories"][category] for s in summaries])
                for key in ("products", "reviews", "users")
            }
            for category in spec.categories
        },
        "kept_products": kept,
        "edges": edges,
        "edges_within": within,
    }


def write_demo_catalogue(spec: DemoSpec, root: Path, quiet: bool = True) -> dict:
    """Write the raw files of every category of `spec` under `root`; a no-op when already there.

    `root/demo-spec.json` is removed first and written last, so it only ever describes complete
    files. Files of categories outside the spec are removed: the root holds exactly one catalogue.
    """
    root = Path(root)
    marker = _read_marker(root)
    if (
        marker is not None
        and marker.get("generator") == GENERATOR_VERSION
        and marker.get("spec") == spec.as_json()
        and _files_complete(spec, root)
    ):
        shutil.rmtree(root / _BLOCKS, ignore_errors=True)
        return marker["summary"]
    _unmark(root)
    for category in CATEGORIES:
        if category not in spec.categories:
            for path in demo_files(root, category):
                path.unlink(missing_ok=True)

    with item_progress(quiet) as progress:
        if spec.products > BLOCK_PRODUCTS:
            summary = _write_blocks(spec, root, progress)
        else:
            catalogue = Catalogue(spec)
            task = progress.add_task("demo catalogue", total=spec.products + len(catalogue.rprod))
            summary = _write_catalogue(catalogue, root, lambda lines: progress.advance(task, lines))
    write_json(
        root / SPEC_FILE,
        {"generator": GENERATOR_VERSION, "spec": spec.as_json(), "summary": summary},
    )
    shutil.rmtree(root / _BLOCKS, ignore_errors=True)
    return summary
