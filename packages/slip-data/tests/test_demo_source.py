"""The embedded demo source: format, determinism, quirks, learnable signal, the shopper model's
knobs (measured on the graph slip-data builds), images and server."""

import asyncio
import collections
import dataclasses
import gzip
import io
import json
import math
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import numpy as np
import polars as pl
import pytest
from PIL import Image

from slip_data.categories import CATEGORIES
from slip_data.fetch.stage import local_raws
from slip_data.graph.build import GraphOptions
from slip_data.graph.stage import run_graph
from slip_data.sources import demo
from slip_data.sources.demo import (
    DEMO_IMAGE_HOST,
    SPEC_FILE,
    DemoSpec,
    decode_demo_image,
    demo_files,
    demo_label_names,
    render_demo_image,
    write_demo_catalogue,
)
from slip_data.sources.demo_server import DemoServer
from slip_data.sources.demo_shoppers import MOST_ITEMS_PER_USER, MOST_REVIEWS_PER_PRODUCT
from slip_data.sources.demo_words import BRANDS, GENERIC_TITLES, NOUNS, TAXONOMY

SPEC = DemoSpec(products=600, seed=0)
SMALL = DemoSpec(products=300, seed=3, categories=("Electronics", "Books", "Toys_and_Games"))
# 100 products per subcategory: room for any homophily at the default mean degree
ROOMY = DemoSpec(products=1200, seed=5, categories=SMALL.categories)
META_KEYS = [
    "main_category", "title", "average_rating", "rating_number", "features", "description",
    "price", "images", "videos", "store", "categories", "details", "parent_asin",
    "bought_together",
]  # fmt: skip
REVIEW_KEYS = [
    "rating", "title", "text", "images", "asin", "parent_asin", "user_id", "timestamp",
    "helpful_vote", "verified_purchase",
]  # fmt: skip
ASIN = re.compile(r"B0[0-9A-Z]{8}")
COMMUNITY_OF_STORE = {brand: i for i, row in enumerate(BRANDS) for brand in row}


def read_lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jsonl.gz"))}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("demo")
    summary = write_demo_catalogue(SPEC, root)
    meta = {c: read_lines(demo_files(root, c)[0]) for c in SPEC.categories}
    reviews = {c: read_lines(demo_files(root, c)[1]) for c in SPEC.categories}
    return {"root": root, "summary": summary, "meta": meta, "reviews": reviews}


def all_meta(catalogue: dict) -> list[dict]:
    return [row for rows in catalogue["meta"].values() for row in rows]


def all_reviews(catalogue: dict) -> list[dict]:
    return [row for rows in catalogue["reviews"].values() for row in rows]


def image_path(url: str) -> str:
    parsed = urlparse(url)
    assert parsed.scheme == "http" and parsed.hostname == DEMO_IMAGE_HOST
    return parsed.path


@pytest.mark.parametrize(
    "kwargs",
    [
        {"products": 299},
        {"products": 100_000_001},
        {"products": 500.0},
        {"products": True},
        {"seed": -1},
        {"caption_noise": -0.1},
        {"caption_noise": 1.5},
        {"caption_noise": math.nan},
        {"reviews_per_product": -0.1},
        {"reviews_per_product": 101},
        {"label_homophily": -0.1},
        {"label_homophily": 1.5},
        {"mean_degree": 0},
        {"mean_degree": 100.5},
        {"mean_degree": math.inf},
        {"items_per_user": 1},
        {"items_per_user": 8.5},
        {"categories": ()},
        {"categories": ("Nope",)},
        {"categories": ("Books", "Books")},
        {"categories": "Books,Toys_and_Games"},
    ],
)
def test_bad_spec_is_a_one_line_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError) as info:
        DemoSpec(**kwargs)
    assert "\n" not in str(info.value)


def test_spec_keeps_categories_in_published_order() -> None:
    spec = DemoSpec(categories=["Toys_and_Games", "Books"])
    assert spec.categories == ("Books", "Toys_and_Games")
    assert spec == DemoSpec(categories=("Books", "Toys_and_Games"))


def test_same_spec_same_bytes_other_seed_other_bytes(catalogue: dict, tmp_path: Path) -> None:
    write_demo_catalogue(SPEC, tmp_path / "again")
    first = folder_bytes(catalogue["root"])
    assert len(first) == 2 * len(CATEGORIES)
    assert folder_bytes(tmp_path / "again") == first
    write_demo_catalogue(DemoSpec(products=600, seed=1), tmp_path / "other")
    other = folder_bytes(tmp_path / "other")
    assert other.keys() == first.keys()
    assert all(other[name] != first[name] for name in first)


def test_meta_lines_follow_the_format(catalogue: dict) -> None:
    rows = all_meta(catalogue)
    assert len(rows) == SPEC.products
    assert len({r["parent_asin"] for r in rows}) == len(rows)
    for category, cat_rows in catalogue["meta"].items():
        root_name = TAXONOMY[category][0]
        labels = demo_label_names(category)
        for r in cat_rows:
            assert list(r) == META_KEYS
            assert r["main_category"] == root_name
            assert isinstance(r["title"], str) and isinstance(r["store"], str) and r["store"]
            assert isinstance(r["average_rating"], float) and 1.0 <= r["average_rating"] <= 5.0
            assert isinstance(r["rating_number"], int) and r["rating_number"] >= 0
            assert all(isinstance(x, str) for x in r["features"] + r["description"])
            assert r["price"] is None or isinstance(r["price"], float)
            assert r["videos"] == [] and r["bought_together"] is None
            assert isinstance(r["details"], dict)
            assert ASIN.fullmatch(r["parent_asin"])
            if r["categories"]:
                assert r["categories"][0] == root_name and r["categories"][1] in labels
                assert 2 <= len(r["categories"]) <= 3
            for image in r["images"]:
                assert list(image) == ["thumb", "large", "variant", "hi_res"]
                assert image["variant"] in ("MAIN", "PT01")
                assert image_path(image["thumb"]).endswith("._SS40_.jpg")
                assert image["hi_res"] is None or image_path(image["hi_res"]).endswith(
                    "_SL1500_.jpg"
                )
                assert decode_demo_image(image_path(image["large"])) is not None


def test_review_lines_follow_the_format(catalogue: dict) -> None:
    rows = all_reviews(catalogue)
    assert len(rows) == catalogue["summary"]["reviews"] > SPEC.products
    for r in rows:
        assert list(r) == REVIEW_KEYS
        assert isinstance(r["rating"], float) and r["rating"] in (1.0, 2.0, 3.0, 4.0, 5.0)
        assert isinstance(r["title"], str) and isinstance(r["text"], str)
        assert r["images"] == []
        assert ASIN.fullmatch(r["asin"]) and ASIN.fullmatch(r["parent_asin"])
        assert re.fullmatch(r"A[A-Z2-7]{27}", r["user_id"])
        assert isinstance(r["timestamp"], int) and 1.1e12 < r["timestamp"] < 1.7e12
        assert isinstance(r["helpful_vote"], int) and r["helpful_vote"] >= 0
        assert isinstance(r["verified_purchase"], bool)
    for cat_rows in catalogue["reviews"].values():
        times = [r["timestamp"] for r in cat_rows]
        assert times == sorted(times)


def test_summary_counts_match_the_files(catalogue: dict) -> None:
    summary = catalogue["summary"]
    assert summary["products"] == SPEC.products
    assert summary["reviews"] == len(all_reviews(catalogue))
    assert summary["users"] == len({r["user_id"] for r in all_reviews(catalogue)})
    for category in SPEC.categories:
        counts = summary["categories"][category]
        assert counts["products"] == len(catalogue["meta"][category])
        assert counts["reviews"] == len(catalogue["reviews"][category])
        assert counts["users"] == len({r["user_id"] for r in catalogue["reviews"][category]})
    sizes = [c["products"] for c in summary["categories"].values()]
    assert max(sizes) - min(sizes) <= 1


def test_quirks_are_present(catalogue: dict) -> None:
    meta, reviews = all_meta(catalogue), all_reviews(catalogue)
    asins = {r["parent_asin"] for r in meta}
    images = [i for r in meta for i in r["images"]]
    assert any(i["hi_res"] is None for i in images)
    assert any(i["variant"] == "PT01" for i in images)
    assert 0 < sum(not r["images"] for r in meta) < 0.05 * len(meta)
    assert 0 < sum(not r["categories"] for r in meta) < 0.05 * len(meta)
    assert 0 < sum(r["title"] == "" for r in meta) < 0.03 * len(meta)
    assert 0 < sum(r["parent_asin"] not in asins for r in reviews) < 0.02 * len(reviews)
    assert any(r["asin"] != r["parent_asin"] for r in reviews)
    pairs = collections.Counter((r["user_id"], r["parent_asin"]) for r in reviews)
    assert max(pairs.values()) >= 2
    texts = [r["text"] for r in reviews]
    assert any("<br />" in t for t in texts) and any("&amp;" in t for t in texts)
    assert any(ord(ch) > 0xFFFF for t in texts for ch in t)  # emoji
    assert any(t == "" for t in texts)
    verified = sum(r["verified_purchase"] for r in reviews) / len(reviews)
    assert 0.85 < verified < 0.95
    per_user = collections.Counter(r["user_id"] for r in reviews)
    assert per_user.most_common(1)[0][1] == MOST_ITEMS_PER_USER  # a long tail, capped
    assert sum(v <= 5 for v in per_user.values()) > 0.8 * len(per_user)


def test_subcategory_shows_in_titles_and_images(catalogue: dict) -> None:
    nouns = dict(zip(NOUNS, range(len(NOUNS)), strict=True))
    clean = generic = wrong = 0
    for category, rows in catalogue["meta"].items():
        base = CATEGORIES.index(category) * 4
        labels = demo_label_names(category)
        own_nouns = [NOUNS[base + i] for i in range(4)]
        for r in rows:
            if not r["categories"] or not r["title"]:
                continue
            sub = labels.index(r["categories"][1])
            if own_nouns[sub] in r["title"]:
                clean += 1
            elif r["title"] in GENERIC_TITLES:
                generic += 1
            else:
                assert any(noun in r["title"] for noun in own_nouns)
                wrong += 1
            for image in r["images"]:
                info = decode_demo_image(image_path(image["large"]))
                assert info.subcategory == base + sub and info.category == category
                assert info.community == COMMUNITY_OF_STORE[r["store"]]
    total = clean + generic + wrong
    assert abs((generic + wrong) / total - SPEC.caption_noise) < 0.06
    assert generic > 0 and wrong > 0
    assert len(nouns) == 4 * len(CATEGORIES)


def test_caption_noise_extremes(tmp_path: Path) -> None:
    for noise, expect_clean in ((0.0, True), (1.0, False)):
        root = tmp_path / str(noise)
        write_demo_catalogue(
            DemoSpec(products=300, caption_noise=noise, categories=SMALL.categories), root
        )
        for category in SMALL.categories:
            labels = demo_label_names(category)
            base = CATEGORIES.index(category) * 4
            for r in read_lines(demo_files(root, category)[0]):
                if r["categories"] and r["title"]:
                    noun = NOUNS[base + labels.index(r["categories"][1])]
                    assert (noun in r["title"]) == expect_clean


def test_brand_weakly_in_titles(catalogue: dict) -> None:
    titled = [r for r in all_meta(catalogue) if r["title"]]
    share = sum(r["title"].startswith(r["store"] + " ") for r in titled) / len(titled)
    assert 0.2 < share < 0.4


def built_graph(spec: DemoSpec, root: Path) -> tuple[float, float, dict, pl.DataFrame]:
    """(edge homophily, mean degree, generator summary, nodes with their edges' ends) of the graph
    slip-data's graph stage builds, with its default options, from the generated raw files."""
    summary = write_demo_catalogue(spec, root / "raw")
    raws = local_raws(spec.categories, root / "raw")
    run_graph(raws, root / "graph", GraphOptions(), quiet=True)
    nodes = pl.read_parquet(root / "graph" / "nodes.parquet").sort("graph_id")
    edges = pl.read_parquet(root / "graph" / "edges.parquet")
    label = nodes["label"].to_numpy()
    src, dst = edges["src"].to_numpy(), edges["dst"].to_numpy()
    ends = pl.DataFrame({"src": nodes["parent_asin"][src], "dst": nodes["parent_asin"][dst]})
    return float(np.mean(label[src] == label[dst])), 2 * len(src) / len(label), summary, ends


@pytest.mark.parametrize(
    "spec",
    [ROOMY, DemoSpec(products=2000, seed=5)],  # the default shape: 15 products a subcategory
    ids=["1200-over-3-categories", "2000-over-all"],
)
def test_homophily_is_set_without_moving_the_density(spec: DemoSpec, tmp_path: Path) -> None:
    degrees = []
    for asked in (0.1, 0.4, 0.7):
        homophily, degree, summary, _ = built_graph(
            dataclasses.replace(spec, label_homophily=asked), tmp_path / str(asked)
        )
        assert abs(homophily - asked) <= 0.05
        assert abs(degree / spec.mean_degree - 1) <= 0.1
        # the generator measures the graph the graph stage builds
        assert summary["edge_homophily"] == pytest.approx(homophily, abs=1e-4)
        assert summary["mean_degree"] == pytest.approx(degree, abs=1e-4)
        degrees.append(degree)
    assert max(degrees) <= 1.1 * min(degrees)


def test_above_the_block_size_a_catalogue_is_its_blocks_joined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Independent blocks of their own seeds, no id repeated, the summary adding up to the files
    and to the graph the graph stage builds; a run killed in a block keeps the finished ones."""
    monkeypatch.setattr(demo, "BLOCK_PRODUCTS", 500)
    spec = dataclasses.replace(SMALL, products=1300)  # blocks of 434, 433 and 433: seeds 3, 4, 5
    drawn, draw = [], demo.Catalogue

    def catalogue(block: DemoSpec, ids: object = None) -> object:
        drawn.append(block.seed)
        if block.seed == 5 and drawn.count(5) == 1:
            raise KeyboardInterrupt  # killed while drawing the last block
        return draw(block, ids=ids)

    monkeypatch.setattr(demo, "Catalogue", catalogue)
    with pytest.raises(KeyboardInterrupt):
        write_demo_catalogue(spec, tmp_path / "raw")
    assert not (tmp_path / "raw" / SPEC_FILE).exists()
    assert len(list((tmp_path / "raw").rglob("*.jsonl.gz"))) == 2 * 2 * len(spec.categories)

    homophily, degree, summary, _ = built_graph(spec, tmp_path)  # resumes the write
    assert drawn == [3, 4, 5, 5]
    assert not (tmp_path / "raw" / ".blocks").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    meta = [row for c in spec.categories for row in read_lines(demo_files(tmp_path / "raw", c)[0])]
    reviews = {c: read_lines(demo_files(tmp_path / "raw", c)[1]) for c in spec.categories}
    asins = [row["parent_asin"] for row in meta]
    assert len(asins) == len(set(asins)) == summary["products"] == spec.products
    users = {r["user_id"] for rows in reviews.values() for r in rows}
    assert summary["users"] == len(users)
    assert summary["reviews"] == sum(map(len, reviews.values()))
    # the blocks are the catalogues of their seeds, ids apart: users disjoint across blocks
    alone = [
        write_demo_catalogue(dataclasses.replace(spec, products=n, seed=seed), tmp_path / str(n))
        for n, seed in ((434, 3), (433, 4), (433, 5))
    ]
    assert summary["users"] == sum(block["users"] for block in alone)
    for category in spec.categories:
        assert len(reviews[category]) == summary["categories"][category]["reviews"]
        assert summary["categories"][category]["reviews"] == sum(
            block["categories"][category]["reviews"] for block in alone
        )
    # the graph of the whole is the union of the blocks' graphs, as the summary says
    assert summary["edges"] == sum(block["edges"] for block in alone)
    assert summary["edge_homophily"] == pytest.approx(homophily, abs=1e-4)
    assert summary["mean_degree"] == pytest.approx(degree, abs=1e-4)


def test_density_knob_moves_the_degree_not_the_homophily(tmp_path: Path) -> None:
    measured = {
        degree: built_graph(dataclasses.replace(ROOMY, mean_degree=degree), tmp_path / str(degree))
        for degree in (4.0, 12.0)
    }
    for asked, (homophily, degree, _, _) in measured.items():
        assert abs(degree / asked - 1) <= 0.1
        assert abs(homophily - ROOMY.label_homophily) <= 0.05
    assert measured[12.0][1] > 2.5 * measured[4.0][1]


def test_fixed_reviews_per_product_keep_the_homophily(tmp_path: Path) -> None:
    spec = dataclasses.replace(ROOMY, reviews_per_product=3.0, label_homophily=0.3)
    summary = write_demo_catalogue(spec, tmp_path)
    assert summary["reviews"] == 3 * spec.products
    assert abs(summary["edge_homophily"] - 0.3) <= 0.01


def test_label_blind_shoppers_follow_their_communities(tmp_path: Path) -> None:
    """At homophily 0 a shopper's purchases come from their brand-like community (and noise)."""
    spec = dataclasses.replace(ROOMY, label_homophily=0.0)
    _, _, _, ends = built_graph(spec, tmp_path)
    meta = [r for c in spec.categories for r in read_lines(demo_files(tmp_path / "raw", c)[0])]
    community = {r["parent_asin"]: COMMUNITY_OF_STORE[r["store"]] for r in meta}
    same = [community[a] == community[b] for a, b in ends.iter_rows()]
    assert len(same) > 1000
    assert sum(same) / len(same) > 0.5  # chance level is about 0.1


def test_an_unreachable_target_stops_at_the_review_cap(catalogue: dict) -> None:
    """600 products over 132 subcategories (4 or 5 each) cannot hold a same-label degree of 4:
    the search stops at its review cap and the summary says what the graph will be."""
    summary = catalogue["summary"]
    assert summary["reviews"] == MOST_REVIEWS_PER_PRODUCT * SPEC.products
    assert summary["mean_degree"] < SPEC.mean_degree
    assert abs(summary["edge_homophily"] - SPEC.label_homophily) <= 0.01


def test_rendered_images(catalogue: dict) -> None:
    row = next(r for r in all_meta(catalogue) if r["images"] and r["images"][0]["hi_res"])
    paths = {
        512: image_path(row["images"][0]["hi_res"]),
        320: image_path(row["images"][0]["large"]),
        40: image_path(row["images"][0]["thumb"]),
    }
    for size, path in paths.items():
        data = render_demo_image(path)
        assert data == render_demo_image(path)
        image = Image.open(io.BytesIO(data))
        assert image.format == "JPEG" and image.size == (size, size) and image.mode == "RGB"
    token = paths[320][len("/images/I/41") : -len(".jpg")]
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    for junk in (
        "",
        "/images/I/",
        "/images/I/41abc.jpg",
        f"/images/I/41{flipped}.jpg",
        f"/images/I/41{token}._SX300_.jpg",
        f"/images/I/41{token}.png",
        f"/raw/images/I/41{token}.jpg",
        f"/images/I/../41{token}.jpg",
    ):
        assert render_demo_image(junk) is None, junk


def object_mask(data: bytes) -> np.ndarray:
    """Where the object is, centred on it: the faint background pattern stays below threshold."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).resize((64, 64))).astype(np.int16)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    mask = np.abs(pixels - background).max(axis=-1) > 60
    ys, xs = np.nonzero(mask)
    cy, cx = int(ys.mean()), int(xs.mean())
    return np.pad(mask, 32)[cy : cy + 64, cx : cx + 64].astype(np.float32).ravel()


def test_subcategory_is_recognisable_from_the_image(catalogue: dict) -> None:
    """Nearest-centroid on object masks tells the 4 subcategories of each category apart."""
    hits = total = 0
    for rows in catalogue["meta"].values():
        masks = collections.defaultdict(list)
        for r in rows:
            if r["images"]:
                path = image_path(r["images"][0]["large"])
                info = decode_demo_image(path)
                masks[info.subcategory].append(object_mask(render_demo_image(path)))
        centroids = {sub: np.mean(m, axis=0) for sub, m in masks.items()}
        for sub, items in masks.items():
            for mask in items:
                best = min(centroids, key=lambda c: np.abs(centroids[c] - mask).sum())
                hits += best == sub
                total += 1
    assert hits / total > 0.9


def test_write_is_idempotent_and_tracks_the_spec(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = write_demo_catalogue(SMALL, root)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert write_demo_catalogue(SMALL, root) == first
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps
    marker = json.loads((root / SPEC_FILE).read_text())
    assert marker["spec"]["categories"] == list(SMALL.categories)

    demo_files(root, "Books")[1].unlink()  # a missing file is rebuilt
    assert write_demo_catalogue(SMALL, root) == first
    assert demo_files(root, "Books")[1].is_file()

    fewer = DemoSpec(products=300, seed=3, categories=("Books",))
    summary = write_demo_catalogue(fewer, root)
    assert list(summary["categories"]) == ["Books"]
    assert sorted(p.name for p in root.rglob("*.jsonl.gz")) == [
        "Books.jsonl.gz",
        "meta_Books.jsonl.gz",
    ]
    assert not list(root.rglob("*.tmp"))


def test_label_names() -> None:
    assert demo_label_names("Electronics") == [
        "Headphones & Earbuds", "Cameras & Photo", "Portable Speakers", "Computer Keyboards",
    ]  # fmt: skip
    assert all(len(set(demo_label_names(c))) == 4 for c in CATEGORIES)
    with pytest.raises(ValueError):
        demo_label_names("Nope")


def fetch(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), b""


def test_server_serves_raw_files_with_ranges_and_images(catalogue: dict) -> None:
    root = catalogue["root"]
    meta_path = demo_files(root, "Books")[0]
    row = catalogue["meta"]["Books"][0]
    path = image_path(row["images"][0]["hi_res"])
    with DemoServer(root) as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/raw/", server.base_url)
        host, port = server.image_host_map[DEMO_IMAGE_HOST]
        assert server.base_url == f"http://{host}:{port}/raw/"

        status, _, body = fetch(server.base_url + "meta_categories/meta_Books.jsonl.gz")
        assert status == 200 and body == meta_path.read_bytes()
        status, headers, body = fetch(
            server.base_url + "meta_categories/meta_Books.jsonl.gz", {"Range": "bytes=10-99"}
        )
        assert status == 206 and body == meta_path.read_bytes()[10:100]
        assert "Content-Encoding" not in headers
        for missing in ("meta_categories/meta_Nope.jsonl.gz", "..%2F..%2Fetc%2Fpasswd", ""):
            assert fetch(server.base_url + missing)[0] == 404

        status, headers, body = fetch(f"http://{host}:{port}{path}", {"Host": DEMO_IMAGE_HOST})
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert body == render_demo_image(path)
        assert fetch(f"http://{host}:{port}/images/I/41junk.jpg")[0] == 404

        async def crawl() -> bytes:  # a caller's own event loop, as the crawler has
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://{host}:{port}{path}") as response,
            ):
                return await response.read()

        assert asyncio.run(crawl()) == body
    with pytest.raises(OSError):
        urllib.request.urlopen(server.base_url, timeout=2)
