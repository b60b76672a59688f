"""What a demo catalogue is made from: its spec, validated on construction, the generator's
version and the span of time its products and reviews fall in."""

import math
from dataclasses import asdict, dataclass

import numpy as np

from slip_data.categories import CATEGORIES

GENERATOR_VERSION = 2  # bump when the bytes for a given spec change, so old roots regenerate
T0 = 1136073600000  # 2006-01-01, ms
T_END = 1696032000000  # 2023-09-30, ms
YEAR_MS = 365 * 86_400_000
MOST_PRODUCTS = 100_000_000  # the whole of Amazon Reviews 2023 has 48.19M
MOST_ASKED_REVIEWS_PER_PRODUCT = 100


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

        if not is_int(self.products) or not 300 <= self.products <= MOST_PRODUCTS:
            raise ValueError(
                f"products must be an integer from 300 to {MOST_PRODUCTS:,}, got {self.products!r}"
            )
        if not is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer from 0 to 2**63-1, got {self.seed!r}")
        if not is_real(self.caption_noise) or not 0 <= self.caption_noise <= 1:
            raise ValueError(f"caption_noise must be from 0 to 1, got {self.caption_noise!r}")
        if not is_real(self.label_homophily) or not 0 <= self.label_homophily <= 1:
            raise ValueError(f"label_homophily must be from 0 to 1, got {self.label_homophily!r}")
        most = MOST_ASKED_REVIEWS_PER_PRODUCT
        if not is_real(self.reviews_per_product) or not 0 <= self.reviews_per_product <= most:
            raise ValueError(
                f"reviews_per_product must be from 0 to {most}, got {self.reviews_per_product!r}"
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
