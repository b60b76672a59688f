"""The demo catalogue written out: its draws as JSON lines in the dataset's meta and review
formats, with product and user ids and image URLs that look like the dataset's."""

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from slip_data.categories import CATEGORIES
from slip_data.sources.demo_images import (
    SUBCATEGORIES_PER_CATEGORY,
    digits_to_strings,
    encode_tokens,
    mix64_np,
    seed_salt,
)
from slip_data.sources.demo_spec import T0
from slip_data.sources.demo_words import (
    ADJECTIVES,
    BRANDS,
    COLOURS,
    DESCRIPTIONS,
    FEATURES,
    GENERIC_TITLES,
    LEAF_FACETS,
    NOUNS,
    PRODUCT_LINES,
    REVIEW_EXTRAS,
    REVIEW_MENTIONS,
    REVIEW_OPENERS,
    REVIEW_TITLES,
    TAXONOMY,
    TITLE_TEMPLATES,
    VARIANTS,
)

if TYPE_CHECKING:
    from slip_data.sources.demo import Catalogue

DEMO_IMAGE_HOST = "images.slip-demo.invalid"
_ASIN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_USER_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_IMAGE_URL = f"http://{DEMO_IMAGE_HOST}/images/I/"


def _js(text: str) -> str:
    """JSON string literal, UTF-8 kept (as in the dataset)."""
    return json.dumps(text, ensure_ascii=False)


class Ids:
    """Product and user ids from one random key: unique, and scrambled like the dataset's."""

    def __init__(self, mix: int, *, asin_offset: int = 0, user_offset: int = 0) -> None:
        # Affine maps coprime with the alphabet size: unique ids that look scrambled. The blocks
        # of a larger catalogue share one key, each with its codes shifted past the blocks
        # before it (the ASIN shift folded into the map's constant, so a * code stays in 64 bits).
        self._user_offset = np.uint64(user_offset)
        self._asin_a = (mix % 36**8) | 1
        while self._asin_a % 3 == 0:
            self._asin_a += 2
        self._asin_b = (self._asin_a * asin_offset + (mix >> 20)) % 36**8
        self._user_a = ((mix >> 7) % 32**12) | 1
        self._user_b = (mix >> 3) % 32**12
        self._user_key = np.uint64(mix)

    def asins(self, codes: np.ndarray) -> list[str]:
        """'B0' + 8 base36 chars; codes n..2n-1 are variants, 2n.. orphans, never a product."""
        scrambled = (
            np.uint64(self._asin_a) * codes.astype(np.uint64) + np.uint64(self._asin_b)
        ) % np.uint64(36**8)
        return ["B0" + s for s in digits_to_strings(scrambled, _ASIN_ALPHABET, 8)]

    def user_ids(self, users: np.ndarray) -> list[str]:
        """28 chars like the dataset's: 15 hashed, then 12 unique to the user."""
        u = users.astype(np.uint64) + self._user_offset
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


def meta_text(cat: "Catalogue", lo: int, hi: int) -> str:
    """The meta lines of products lo..hi-1."""
    sl = slice(lo, hi)
    products = np.arange(lo, hi)
    salt = seed_salt(cat.spec.seed)
    tok_main = encode_tokens(cat.psub[sl], cat.pcomm[sl], products, variant=0, salt=salt)
    tok_second = encode_tokens(cat.psub[sl], cat.pcomm[sl], products, variant=1, salt=salt)
    asins = cat.ids.asins(products)
    cols = [
        cat.psub[sl], cat.pcomm[sl], cat.store[sl], cat.generic[sl], cat.wrong[sl],
        cat.wrong_offset[sl], cat.generic_pick[sl], cat.brand_in_title[sl],
        cat.template[sl], cat.line[sl], cat.adjective[sl], cat.title_variant[sl],
        cat.empty_title[sl], cat.no_images[sl], cat.hires_null[sl], cat.second_photo[sl],
        cat.empty_categories[sl], cat.leaf[sl], cat.price[sl], cat.price_null[sl],
        cat.feature_start[sl], cat.feature_count[sl], cat.description[sl], cat.details[sl],
        cat.colour[sl], cat.first_day[sl], cat.average_rating[sl], cat.rating_number[sl],
    ]  # fmt: skip
    lines = []
    for row in zip(*(c.tolist() for c in cols), tok_main, tok_second, asins, strict=True):
        (g, comm, store_i, generic, wrong, wrong_offset, generic_pick, brand_in, template,
         line, adj, variant, empty_title, no_images, hires_null, second, empty_cats, leaf,
         price, price_null, f_start, f_count, desc, details, colour, day, avg, number,
         tok1, tok2, asin) = row  # fmt: skip
        store = BRANDS[comm][store_i]
        noun = NOUNS[g]
        if empty_title:
            title = ""
        elif generic:
            title = GENERIC_TITLES[generic_pick]
        else:
            if wrong:
                block = g - g % SUBCATEGORIES_PER_CATEGORY
                noun_shown = NOUNS[block + (g + wrong_offset) % SUBCATEGORIES_PER_CATEGORY]
            else:
                noun_shown = noun
            title = TITLE_TEMPLATES[template].format(
                line=PRODUCT_LINES[line],
                adj=ADJECTIVES[adj],
                noun=noun_shown,
                variant=VARIANTS[variant],
            )
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


def review_text(cat: "Catalogue", idx: np.ndarray) -> str:
    """The review lines of reviews `idx`, in that order."""
    n = cat.spec.products
    prod = cat.rprod[idx]
    orphan = cat.orphan[idx]
    parent = np.where(orphan, 2 * n + cat.orphan_rank[idx], prod)
    asin = np.where(cat.variant_asin[idx], n + prod, parent)
    rating = cat.rating[idx].astype(np.int64)
    empty_text = cat.rempty_text[idx]
    brk = cat.rbreak[idx].astype(np.int64)
    opener = np.where(empty_text, len(_OPENERS_JSON) - 1, (rating - 1) * 6 + cat.ropener[idx])
    mention = cat.rmention[idx]
    mention = np.where(
        (mention < 0) | empty_text,
        0,
        1 + (cat.psub[prod] * len(REVIEW_MENTIONS) + mention) * 2 + brk,
    )
    extra = cat.rextra[idx]
    extra = np.where((extra < 0) | empty_text, 0, 1 + extra * 2 + brk)
    title = np.where(
        cat.rempty_title[idx],
        len(_REVIEW_TITLES_JSON) - 1,
        (rating - 1) * 6 + cat.rtitle[idx],
    )
    rows = zip(
        rating.tolist(),
        title.tolist(),
        opener.tolist(),
        mention.tolist(),
        extra.tolist(),
        cat.ids.asins(asin),
        cat.ids.asins(parent),
        cat.ids.user_ids(cat.ruser[idx]),
        cat.ts[idx].tolist(),
        cat.helpful[idx].tolist(),
        cat.verified[idx].tolist(),
        strict=True,
    )
    return "".join(
        f'{{"rating": {r}.0, "title": {_REVIEW_TITLES_JSON[t]}, '
        f'"text": "{_OPENERS_JSON[o]}{_MENTIONS_JSON[m]}{_EXTRAS_JSON[e]}", "images": [], '
        f'"asin": "{a}", "parent_asin": "{p}", "user_id": "{u}", "timestamp": {ts}, '
        f'"helpful_vote": {h}, "verified_purchase": {"true" if v else "false"}}}\n'
        for r, t, o, m, e, a, p, u, ts, h, v in rows
    )


def _image_entry(token: str, variant: str, hires_null: bool) -> str:
    """Amazon-style URLs: '41' thumbnails and large, '71' hi-res; the suffix sets the size."""
    hi_res = "null" if hires_null else f'"{_IMAGE_URL}71{token}._SL1500_.jpg"'
    return (
        f'{{"thumb": "{_IMAGE_URL}41{token}._SS40_.jpg", "large": "{_IMAGE_URL}41{token}.jpg", '
        f'"variant": "{variant}", "hi_res": {hi_res}}}'
    )


def _date_text(day: int) -> str:
    d = datetime.fromtimestamp(T0 / 1000, UTC) + timedelta(days=day)
    return f"{d:%B} {d.day}, {d.year}"


def _inner(text: str) -> str:
    """JSON-escaped text without the quotes, so escaped pieces can be concatenated."""
    return _js(text)[1:-1]


_ROOT_JSON = tuple(_js(TAXONOMY[CATEGORIES[g // 4]][0]) for g in range(len(NOUNS)))
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
        for noun in NOUNS
        for mention in REVIEW_MENTIONS
        for sep in (" ", "<br />")
    ),
)
_EXTRAS_JSON = ("", *(_inner(sep + e) for e in REVIEW_EXTRAS for sep in (" ", "<br />")))
