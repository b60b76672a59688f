import re
from collections import Counter

import pytest
from aiohttp import web
from rawfiles import product, review, write_jsonl_gz
from servers import ThreadedServer

from slip_data.categories import raw_relpaths
from slip_data.fetch.download import DownloadOptions
from slip_data.fetch.stage import FetchError, run_fetch

FAST = DownloadOptions(attempts=4, backoff_base=0.01, backoff_max=0.05)


def raw_folder(tmp_path, category="All_Beauty", n=3000):
    meta_rel, review_rel = raw_relpaths(category)
    write_jsonl_gz(tmp_path / meta_rel, [product(f"A{i}", title="x" * 40) for i in range(n)])
    write_jsonl_gz(tmp_path / review_rel, [review(f"u{i}", f"A{i}") for i in range(n)])
    return tmp_path


def flaky_app(root, hits: Counter, cut_first: bool = True, corrupt_first: bool = False):
    """Serves files under root; honours Range; the first request of each file breaks off."""

    async def handler(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["rel"]
        path = root / rel
        if not path.is_file():
            raise web.HTTPNotFound()
        data = path.read_bytes()
        hits[rel] += 1
        first = hits[rel] == 1
        if corrupt_first and first:
            data = data[:100] + bytes(200) + data[300:]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            response = web.StreamResponse(status=206)
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        else:
            response = web.StreamResponse(status=200)
        response.content_length = len(data) - start
        await response.prepare(request)
        if cut_first and first:
            await response.write(data[start : start + (len(data) - start) // 2])
            request.transport.close()
            return response
        await response.write(data[start:])
        return response

    app = web.Application()
    app.router.add_get("/raw/{rel:.+}", handler)
    return app


def test_interrupted_download_resumes_with_range(tmp_path):
    src = raw_folder(tmp_path / "src")
    hits: Counter = Counter()
    with ThreadedServer(lambda: flaky_app(src, hits)) as server:
        raws = run_fetch(
            ["All_Beauty"], server.url + "/raw", tmp_path / "out", options=FAST, quiet=True
        )
    for rel in raw_relpaths("All_Beauty"):
        assert (tmp_path / "out" / rel).read_bytes() == (src / rel).read_bytes()
        assert hits[rel] == 2  # the broken request, then one resume
        assert not (tmp_path / "out" / (rel + ".part")).exists()
    assert raws[0].meta == tmp_path / "out" / raw_relpaths("All_Beauty")[0]


def test_a_kept_part_file_is_resumed_and_whole_files_are_not_fetched_again(tmp_path):
    src = raw_folder(tmp_path / "src")
    meta_rel, review_rel = raw_relpaths("All_Beauty")
    out = tmp_path / "out"
    (out / meta_rel).parent.mkdir(parents=True)
    whole = (src / meta_rel).read_bytes()
    (out / (meta_rel + ".part")).write_bytes(whole[: len(whole) // 3])  # as a kill -9 leaves it
    (out / review_rel).parent.mkdir(parents=True)
    (out / review_rel).write_bytes((src / review_rel).read_bytes())
    hits: Counter = Counter()
    with ThreadedServer(lambda: flaky_app(src, hits, cut_first=False)) as server:
        run_fetch(["All_Beauty"], server.url + "/raw/", out, options=FAST, quiet=True)
    assert (out / meta_rel).read_bytes() == whole
    assert hits == Counter({meta_rel: 1})


def test_corrupt_download_is_detected_and_fetched_again(tmp_path):
    src = raw_folder(tmp_path / "src")
    hits: Counter = Counter()
    with ThreadedServer(lambda: flaky_app(src, hits, cut_first=False, corrupt_first=True)) as srv:
        run_fetch(["All_Beauty"], srv.url + "/raw/", tmp_path / "out", options=FAST, quiet=True)
    for rel in raw_relpaths("All_Beauty"):
        assert (tmp_path / "out" / rel).read_bytes() == (src / rel).read_bytes()


def test_missing_remote_file_is_a_one_line_error(tmp_path):
    src = raw_folder(tmp_path / "src")
    with (
        ThreadedServer(lambda: flaky_app(src, Counter())) as server,
        pytest.raises(FetchError) as error,
    ):
        run_fetch(["Books"], server.url + "/raw/", tmp_path / "out", options=FAST, quiet=True)
    message = str(error.value)
    assert "meta_Books.jsonl.gz" in message and "404" in message and "\n" not in message


def test_local_folder_is_read_in_place(tmp_path):
    src = raw_folder(tmp_path / "src")
    raws = run_fetch(["All_Beauty"], str(src), tmp_path / "out", quiet=True)
    assert raws[0].meta == src / raw_relpaths("All_Beauty")[0]
    assert not (tmp_path / "out").exists()
    with pytest.raises(FetchError, match=r"missing raw file .*meta_Books"):
        run_fetch(["Books"], str(src), tmp_path / "out", quiet=True)
