"""The demo's shopper model (docs/data.md, "--source demo"): who reviews what, mixed so that
the graph slip-data builds from the reviews has the asked edge homophily and mean degree."""

from collections.abc import Callable

import numpy as np
import polars as pl

from slip_data.graph.build import GraphOptions, co_purchase_edges
from slip_data.sources.demo_images import N_COMMUNITIES, N_SUBCATEGORIES, SUBCATEGORIES_PER_CATEGORY
from slip_data.sources.demo_spec import GENERATOR_VERSION, T0, T_END, YEAR_MS, DemoSpec

COMMUNITY_P = np.array([1 / (i + 4) for i in range(N_COMMUNITIES)])  # shoppers per community
COMMUNITY_P /= COMMUNITY_P.sum()
# The mix t in [-1, 1] sets the shares of a shopper's later purchases (_mix); these two constants
# fix the rest of the path. The complements' share puts the category-level homophily at the
# published coarse-label figures (about 0.8) at the default label homophily.
_COMPLEMENTS = 0.65  # complements' share of the non-substitutes at t = 0
_COMMUNITY = 0.8  # community picks' share of the purchases left, noise the rest
_REPEAT = 0.015  # a review of the shopper's previous product again
_ORPHAN = 0.005  # a review of a product missing from the metadata
# A user reviews at most as many products as a subcategory of the default catalogue holds (2,000
# over 132), so that even the most active can keep to their own: the dataset's tail of users
# with thousands of reviews would link most of a small catalogue and swamp the label structure.
MOST_ITEMS_PER_USER = 15
_BLOCK = 4096  # shoppers per block of the stream, each block with a generator of its own
MOST_REVIEWS_PER_PRODUCT = 25  # where the search for the mean degree stops (Amazon: 18-27)
_HOMOPHILY_TOLERANCE = 0.002
_DEGREE_TOLERANCE = 0.005  # relative
_GRAPH = GraphOptions()  # the graph the targets are measured on: slip-data's defaults


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


class Shoppers:
    """An endless, seeded stream of shoppers with every candidate purchase drawn; a catalogue is
    its first `length` reviews under one mix (_mix). A block of shoppers has a generator of its
    own, so the start of the stream does not depend on how far it is read, and the homophily and
    degree can be measured for any (mix, length) on the same draws."""

    def __init__(
        self,
        spec: DemoSpec,
        *,
        psub: np.ndarray,
        pcomm: np.ndarray,
        popularity: np.ndarray,
        kept: np.ndarray,
    ) -> None:
        """`psub`, `pcomm`, `popularity`: each product's subcategory, community and popularity;
        `kept`: the products the graph stage keeps."""
        self.spec, self.psub, self.kept = spec, psub, kept
        n = spec.products
        self.by_subcategory = _Picker(psub, N_SUBCATEGORIES, popularity)
        self.by_community = _Picker(pcomm, N_COMMUNITIES, popularity)
        self.anywhere = _Picker(np.zeros(n, dtype=np.int64), 1, popularity)
        self.count_cdf = _count_cdf(spec.items_per_user, MOST_ITEMS_PER_USER)
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
        community = rng.choice(N_COMMUNITIES, _BLOCK, p=COMMUNITY_P)
        start = rng.integers(T0, T_END, _BLOCK)
        span = rng.exponential(2 * YEAR_MS, _BLOCK)
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
            "ts": np.minimum(ts, T_END - rng.integers(0, YEAR_MS // 4, size)),
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
                user_items,
                self.spec.products,
                cap=_GRAPH.max_items_per_user,
                min_weight=_GRAPH.min_weight,
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
        most = n * MOST_REVIEWS_PER_PRODUCT

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
