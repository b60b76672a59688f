"""Benchmark: slip-data's image crawl against img2dataset on loopback, plus a fault-server run.

    uv run python bench/crawl_bench.py                  # ~3 min on 2 cores (+1 min first time)
    uv run python bench/crawl_bench.py --repeats 1 --skip-fault      # quicker look
    uv run python bench/crawl_bench.py --profile        # also: where slip-data's time goes
    uv run python bench/crawl_bench.py --variant decoder=processes,resample=lanczos  # also these

Both tools fetch the same 2,000 distinct 600x600 JPEGs (~60-85 KB, generated once, cached under
bench/_work/crawl/images) from one aiohttp server running in its own process on 127.0.0.1, and
make 256-px JPEGs at quality 90. Each measurement is a child process, timed from spawn to exit
(start-up included; the rate inside the crawl is reported too), with CPU time from wait4.
img2dataset lives in a throwaway venv (bench/_work/crawl/venv-img2dataset). The runs alternate
and the median of --repeats is reported, also written to bench/_work/crawl/report.json.

Both tools' children get the same bytecode policy (--bytecode). By default .pyc files are used
even where PYTHONDONTWRITEBYTECODE is set: without them slip-data compiles polars, aiohttp and
rich from source at every start (~0.5 s), while pip has already compiled img2dataset's venv.
Nothing leaves 127.0.0.1 (img2dataset's wandb and albumentations' update check are off).
"""

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "_work" / "crawl"
IMAGES = WORK / "images"
VENV = WORK / "venv-img2dataset"
SERVER = BENCH / "crawl_server.py"
REPORT = WORK / "report.json"

IMG2DATASET_SPEC = "img2dataset==1.47.0"  # latest release; imports and runs on Python 3.11
IMAGE_SIDE = 600
MAX_SIDE = 256
QUALITY = 90
GEN_VERSION = 1  # bump when the generator changes, so the cache is rebuilt
FAULT_HOSTS = 8


# --------------------------------------------------------------------------- test images


def _make_jpeg(seed: int) -> bytes:
    """A textured 600x600 photo-like JPEG: smooth colour fields, mid-scale grain, outlines."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    size = (IMAGE_SIDE, IMAGE_SIDE)

    def layer(cells: int, amplitude: float):
        small = Image.fromarray(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8), "RGB")
        upscaled = np.asarray(small.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
        return (upscaled - 128) * amplitude

    pixels = 128 + layer(6, 1.0) + layer(40, 0.4) + layer(100, float(rng.uniform(0.03, 0.15)))
    pixels += rng.normal(0, float(rng.uniform(0, 2)), (*size, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 15))):
        x, y = (int(v) for v in rng.integers(0, IMAGE_SIDE, 2))
        w, h = (int(v) for v in rng.integers(20, 200, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x, y, x + w, y + h), outline=colour, width=int(rng.integers(1, 6)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def _write_image(args: tuple[int, int]) -> int:
    index, seed = args
    data = _make_jpeg(seed * 1_000_003 + index)
    path = IMAGES / f"img-{index:05d}.jpg"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def ensure_images(count: int, seed: int) -> dict:
    """Generate the images once; a manifest records what is there, so reruns reuse them."""
    manifest_path = IMAGES / "manifest.json"
    wanted = {"count": count, "seed": seed, "side": IMAGE_SIDE, "version": GEN_VERSION}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        same = all(manifest.get(k) == wanted[k] for k in ("seed", "side", "version"))
        if same and manifest.get("count", 0) >= count:
            return manifest
    shutil.rmtree(IMAGES, ignore_errors=True)
    IMAGES.mkdir(parents=True)
    print(f"generating {count:,} test images in {IMAGES} ...", flush=True)
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool() as pool:
        sizes = pool.map(_write_image, [(i, seed) for i in range(count)], chunksize=16)
    manifest = wanted | {
        "bytes_total": sum(sizes),
        "bytes_min": min(sizes),
        "bytes_median": int(statistics.median(sizes)),
        "bytes_max": max(sizes),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return manifest


# --------------------------------------------------------------------------- processes


@contextlib.contextmanager
def serving(mode: str) -> Iterator[tuple[int, int]]:
    """(port, pid) of a crawl_server.py process; it exits when we close its stdin."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER), mode, str(IMAGES)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"{mode} server did not start")
        yield json.loads(line)["port"], process.pid
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc (for the server's share of the work)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# How the measured children treat Python bytecode; main() sets it from --bytecode. "cached":
# both tools read and write .pyc files under bench/_work/crawl/pycache (the warm-up run fills
# it), as any normal install does; "none": both compile every module from source at each start.
BYTECODE: dict[str, str] = {}


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if "proxy" not in k.lower() and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    env["no_proxy"] = env["NO_PROXY"] = "*"
    return env | BYTECODE | (extra or {})


def timed(cmd: list[str], server_pid: int | None, log: Path | None = None, env=None) -> dict:
    """Wall time (spawn to exit), CPU of the child and its reaped children, and the server's."""
    server_before = cpu_seconds(server_pid) if server_pid else 0.0
    start = time.perf_counter()
    with open(log or os.devnull, "wb") as sink:
        process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=sink, env=env or _clean_env(), cwd=BENCH.parent
        )
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{cmd[:3]} failed with status {status}; see {log}")
    return {
        "stdout": out,
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "server_cpu_seconds": (cpu_seconds(server_pid) - server_before) if server_pid else None,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


# --------------------------------------------------------------------------- img2dataset


def ensure_img2dataset() -> str:
    """The throwaway venv with img2dataset; created once, reused while it imports."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('img2dataset'))"]
    env = _clean_env({"NO_ALBUMENTATIONS_UPDATE": "1"})
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True, env=env)
        if found.returncode == 0:
            return found.stdout.strip()
    print(f"creating {VENV} with {IMG2DATASET_SPEC} ...", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, IMG2DATASET_SPEC], check=True)
    return subprocess.run(probe, capture_output=True, text=True, check=True, env=env).stdout.strip()


def img2dataset_cmd(url_file: Path, out_dir: Path, timeout: int) -> list[str]:
    return [
        str(VENV / "bin" / "img2dataset"),
        f"--url_list={url_file}",
        "--input_format=txt",
        f"--output_folder={out_dir}",
        "--output_format=parquet",
        f"--image_size={MAX_SIDE}",
        "--resize_mode=keep_ratio",  # smaller side = 256; for these squares, the longer side too
        f"--encode_quality={QUALITY}",
        "--encode_format=jpg",
        "--processes_count=2",
        "--thread_count=32",
        # The default 10,000-URL shard would put all 2,000 URLs on one process; two shards
        # give each of the 2 processes one.
        "--number_sample_per_shard=1000",
        f"--timeout={timeout}",
        "--extract_exif=False",  # no post-processing beyond resize + encode (+ sha256, as ours)
        "--retries=0",
        "--enable_wandb=False",
    ]


def run_img2dataset(url_file: Path, out_dir: Path, server_pid: int, timeout: int) -> dict:
    import polars as pl

    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    env = _clean_env({"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"})
    log = out_dir.parent / f"{out_dir.name}.log"
    result = timed(img2dataset_cmd(url_file, out_dir, timeout), server_pid, log, env)
    frame = pl.read_parquet(
        sorted(out_dir.glob("*.parquet")), columns=["status", "width", "height"]
    )
    ok = frame.filter(pl.col("status") == "success")
    stats = [json.loads(p.read_text()) for p in out_dir.glob("*_stats.json")]
    result.update(
        ok=len(ok),
        counts=dict(Counter(frame["status"].to_list())),
        stats_successes=sum(s.get("successes", 0) for s in stats),
        # From the first shard's start to the last one's end: after spawn and imports.
        shard_seconds=max(s["end_time"] for s in stats) - min(s["start_time"] for s in stats),
        sizes=dict(Counter(f"{w}x{h}" for w, h in ok.select("width", "height").iter_rows())),
    )
    del result["stdout"]
    return result


# --------------------------------------------------------------------------- slip-data


def child_slip(url_file: Path, out_dir: Path, spec: dict) -> dict:
    """Runs in the child: one crawl, timed inside too; optionally a patched decoder.

    Also reports the import time of slip_data.crawl, the time from spawn to the crawl() call,
    and the CPU of this process (event loop, fetching, hand-off) apart from the decoders'.
    """
    import resource

    begin = time.perf_counter()
    from slip_data.crawl import CrawlOptions, crawl

    imported = time.perf_counter() - begin
    urls = url_file.read_text().split()
    host_map = {h: tuple(d) for h, d in spec.get("host_map", {}).items()} or None
    options = CrawlOptions(**spec["options"], **_variant_options(spec.get("variant", "")))
    startup = time.time() - spec["spawned_at"]
    start = time.perf_counter()
    counts = crawl(urls, out_dir, options, host_map=host_map, quiet=True)
    seconds = time.perf_counter() - start
    main, decoders = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return {
        "seconds": seconds,
        "counts": counts,
        "import_seconds": imported,
        "startup_seconds": startup,
        "main_cpu_seconds": main.ru_utime + main.ru_stime,
        "decoder_cpu_seconds": decoders.ru_utime + decoders.ru_stime,
    }


def run_slip(url_file: Path, out_dir: Path, server_pid: int, spec: dict) -> dict:
    from slip_data.crawl import load_results

    shutil.rmtree(out_dir, ignore_errors=True)
    spec = spec | {"spawned_at": time.time()}
    cmd = [sys.executable, __file__, "--child", str(url_file), str(out_dir), json.dumps(spec)]
    result = timed(cmd, server_pid, out_dir.parent / f"{out_dir.name}.log")
    result.update(json.loads(result.pop("stdout")))
    frame = load_results(out_dir)
    ok = frame.filter(frame["status"] == "ok")
    result["ok"] = len(ok)
    result["sizes"] = dict(Counter(f"{w}x{h}" for w, h in ok.select("width", "height").iter_rows()))
    result["frame"] = frame
    return result


def _variant_options(variant: str) -> dict:
    """`decoder=processes,resample=lanczos` -> CrawlOptions overrides (the other settings)."""
    return dict(item.split("=", 1) for item in variant.split(",") if item)


def slip_options(**overrides) -> dict:
    base = {
        "max_side": MAX_SIDE,
        "jpeg_quality": QUALITY,
        "allow_private_network": True,
        "workers": 2,
    }
    return base | overrides


# --------------------------------------------------------------------------- fault run


def fault_urls(count: int, seed: int) -> list[tuple[str, str]]:
    from crawl_server import FAULTS

    kinds = list(FAULTS)
    weights = [FAULTS[k][0] for k in kinds]
    rng = random.Random(seed)
    picks = rng.choices(kinds, weights=weights, k=count)
    return [(f"http://h{i % FAULT_HOSTS}.faults.invalid/{k}/{i}", k) for i, k in enumerate(picks)]


def _images_on_disk(crawl_dir: Path) -> int:
    """Image bytes actually written (load_results fills duplicates in from their twin)."""
    import polars as pl

    from slip_data.crawl.results import part_files

    paths = [path for _, path in part_files(crawl_dir)]
    return pl.read_parquet(paths, columns=["image"])["image"].is_not_null().sum()


def fault_run(count: int, seed: int, tmp: Path) -> dict:
    from crawl_server import FAULTS

    pairs = fault_urls(count, seed)
    url_file = tmp / "fault-urls.txt"
    url_file.write_text("\n".join(u for u, _ in pairs) + "\n")
    options = slip_options(allow_private_network=False, timeout=2.0, max_bytes=5_000_000)
    with serving("fault") as (port, pid):
        host_map = {f"h{h}.faults.invalid": ["127.0.0.1", port] for h in range(FAULT_HOSTS)}
        spec = {"options": options, "host_map": host_map}
        result = run_slip(url_file, tmp / "fault-slip", pid, spec)
    frame = result.pop("frame")
    got = dict(zip(frame["url"], frame["status"], strict=True))
    wrong: Counter[str] = Counter()
    for url, kind in pairs:
        if got.get(url) != FAULTS[kind][1]:
            wrong[f"{kind}: want {FAULTS[kind][1]}, got {got.get(url)}"] += 1
    dups = frame.filter(frame["url"].str.contains("/dup/") & (frame["status"] == "ok"))
    result.update(
        urls=count,
        kinds=dict(Counter(k for _, k in pairs)),
        unexpected=dict(wrong),
        dup_urls_ok=len(dups),
        images_stored=_images_on_disk(tmp / "fault-slip"),
        dup_distinct_sha256=dups["sha256"].n_unique(),
        options=options,
    )
    return result


# --------------------------------------------------------------------------- profile


def _mean_abs_diff(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two JPEGs' pixels, 0-255 scale."""
    import numpy as np
    from PIL import Image

    x, y = (np.asarray(Image.open(io.BytesIO(d)), dtype=np.int16) for d in (a, b))
    return float(np.abs(x - y).mean())


def profile(count: int, tmp: Path) -> dict:
    """Per-image costs of slip-data's decoder stages, in this process, on the test images."""
    import hashlib

    from PIL import Image, ImageOps

    from slip_data.crawl.decode import _to_rgb, decode_image
    from slip_data.crawl.options import RESAMPLE

    bodies = [p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))[:count]]
    report: dict = {"images": len(bodies)}

    def per_image(fn) -> float:
        start = time.perf_counter()
        for body in bodies:
            fn(body)
        return 1000 * (time.perf_counter() - start) / len(bodies)

    def decode(body: bytes, resample: str = "bilinear"):
        return decode_image(
            body, max_side=MAX_SIDE, quality=QUALITY, max_pixels=40_000_000, resample=resample
        )

    report["decode_image_ms"] = per_image(decode)
    report["variant_decode_ms"] = {}
    lanczos = [decode(b, "lanczos").data for b in bodies[:50]]
    for name in RESAMPLE:
        ms = per_image(lambda b, f=name: decode(b, f))
        diff = statistics.mean(
            _mean_abs_diff(ref, decode(b, name).data)
            for ref, b in zip(lanczos, bodies, strict=False)
        )
        report["variant_decode_ms"][name] = {"ms": ms, "mean_abs_diff_vs_lanczos": diff}

    stages = Counter()
    draft_sizes = Counter()
    for body in bodies:
        t0 = time.perf_counter()
        img = Image.open(io.BytesIO(body))
        t1 = time.perf_counter()
        img.draft("RGB", (MAX_SIDE, MAX_SIDE))
        img.load()
        t2 = time.perf_counter()
        draft_sizes[f"{img.size[0]}x{img.size[1]}"] += 1
        out = _to_rgb(ImageOps.exif_transpose(img))
        t3 = time.perf_counter()
        out.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        t4 = time.perf_counter()
        buffer = io.BytesIO()
        out.save(buffer, "JPEG", quality=QUALITY)
        t5 = time.perf_counter()
        hashlib.sha256(buffer.getvalue()).hexdigest()
        t6 = time.perf_counter()
        for name, seconds in zip(
            (
                "open",
                "draft+decode",
                "exif_transpose+rgb",
                "lanczos_resize",
                "encode_q90",
                "sha256",
            ),
            (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5),
            strict=True,
        ):
            stages[name] += seconds
    report["stages_ms"] = {k: round(1000 * v / len(bodies), 3) for k, v in stages.items()}
    report["size_after_draft"] = dict(draft_sizes)

    def full_decode(body: bytes) -> None:
        with Image.open(io.BytesIO(body)) as img:
            img.load()

    report["full_decode_no_draft_ms"] = per_image(full_decode)

    def lanczos_from_full(body: bytes) -> None:
        with Image.open(io.BytesIO(body)) as img:
            img.load()
            img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)

    report["full_decode_plus_lanczos_ms"] = per_image(lanczos_from_full)

    # Network alone: slip-data's fetcher, no decoding, against the static server.
    import asyncio

    from slip_data.crawl.fetch import Fetcher, open_session
    from slip_data.crawl.options import CrawlOptions

    async def fetch_all(urls: list[str]) -> float:
        options = CrawlOptions(allow_private_network=True)
        async with open_session(options, None) as session:
            fetcher = Fetcher(session, options)
            start = time.perf_counter()
            results = await asyncio.gather(*(fetcher.fetch(u) for u in urls))
            elapsed = time.perf_counter() - start
        assert all(r.status == "ok" for r in results), Counter(r.status for r in results)
        return elapsed

    with serving("static") as (port, pid):
        names = [p.name for p in sorted(IMAGES.glob("*.jpg"))]
        urls = [f"http://127.0.0.1:{port}/img/{n}" for n in names]
        server_before = cpu_seconds(pid)
        seconds = asyncio.run(fetch_all(urls))
        report["fetch_only"] = {
            "urls": len(urls),
            "seconds": seconds,
            "images_per_s": len(urls) / seconds,
            "server_cpu_seconds": cpu_seconds(pid) - server_before,
        }
        # Decoding alone through a 2-process fork pool, the way stage.Decoder does it.
        from concurrent.futures import ProcessPoolExecutor

        allbodies = [p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))]
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(2, mp_context=ctx) as pool:
            pool.submit(int).result()
            start = time.perf_counter()
            pooled = partial(
                decode_image, max_side=MAX_SIDE, quality=QUALITY, max_pixels=40_000_000
            )
            list(pool.map(pooled, allbodies))
            seconds = time.perf_counter() - start
        report["decode_pool_only"] = {"images_per_s": len(allbodies) / seconds}
    return report


# --------------------------------------------------------------------------- main


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarise(results: list[dict], urls: int) -> dict:
    """Medians over the repeats; per-image CPU is per URL of the run."""
    summary = {
        "images_per_s": median_of(results, "images_per_s"),
        "wall_seconds": median_of(results, "wall_seconds"),
        "in_process_images_per_s": median_of(results, "in_process_images_per_s"),
        "cpu_ms_per_image": 1000 * median_of(results, "cpu_seconds") / urls,
        "server_cpu_ms_per_image": 1000 * median_of(results, "server_cpu_seconds") / urls,
    }
    if "startup_seconds" in results[0]:  # slip-data's child reports its inside
        summary |= {
            "startup_seconds": median_of(results, "startup_seconds"),
            "import_seconds": median_of(results, "import_seconds"),
            "main_cpu_ms_per_image": 1000 * median_of(results, "main_cpu_seconds") / urls,
            "decoder_cpu_ms_per_image": 1000 * median_of(results, "decoder_cpu_seconds") / urls,
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fault-urls", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-img2dataset", action="store_true")
    parser.add_argument("--skip-fault", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also time decoder stages")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="also run slip-data with other crawl options, e.g. decoder=processes,resample=lanczos;"
        " may be repeated",
    )
    parser.add_argument(
        "--bytecode",
        choices=("cached", "none"),
        default="cached",
        help="cached: both tools' children use .pyc files (the usual case); none: both compile "
        "every module, the standard library's too, from source at each start (worst case)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url_file, out_dir, spec = args.child
        print(json.dumps(child_slip(Path(url_file), Path(out_dir), json.loads(spec))))
        return

    sys.path.insert(0, str(BENCH))  # crawl_server's fault catalogue
    if args.bytecode == "cached":
        BYTECODE["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    else:
        BYTECODE["PYTHONDONTWRITEBYTECODE"] = "1"
        BYTECODE["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache-empty")  # no .pyc is ever found
    manifest = ensure_images(args.images, args.seed)
    report: dict = {
        "images": {
            k: manifest[k] for k in ("count", "side", "bytes_min", "bytes_median", "bytes_max")
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "bytecode": args.bytecode,
    }
    version = None if args.skip_img2dataset else ensure_img2dataset()
    report["img2dataset_version"] = version
    report["img2dataset_command"] = " ".join(img2dataset_cmd(Path("URLS"), Path("OUT"), 60))

    with tempfile.TemporaryDirectory(prefix="crawl-bench-", dir=WORK) as tmp_name:
        tmp = Path(tmp_name)
        runs: dict[str, list[dict]] = {"img2dataset": [], "slip-data": []}
        for variant in args.variant:
            runs[f"slip-data+{variant}"] = []
        with serving("static") as (port, pid):
            names = sorted(p.name for p in IMAGES.glob("*.jpg"))[: args.images]
            url_file = tmp / "urls.txt"
            url_file.write_text("".join(f"http://127.0.0.1:{port}/img/{n}\n" for n in names))
            warm_file = tmp / "warm.txt"
            warm_file.write_text("".join(f"http://127.0.0.1:{port}/img/{n}\n" for n in names[:50]))
            spec = {"options": slip_options(timeout=60.0)}
            # One small untimed run of each: imports and the server are warm for every repeat.
            run_slip(warm_file, tmp / "warm-slip", pid, spec)
            if version:
                run_img2dataset(warm_file, tmp / "warm-i2d", pid, 60)
            for repeat in range(args.repeats):
                if version:
                    result = run_img2dataset(url_file, tmp / f"i2d-{repeat}", pid, 60)
                    runs["img2dataset"].append(result)
                    _progress("img2dataset", repeat, result)
                for name in runs:
                    if not name.startswith("slip-data"):
                        continue
                    variant = name.partition("+")[2]
                    result = run_slip(
                        url_file, tmp / f"slip-{repeat}", pid, spec | {"variant": variant}
                    )
                    result.pop("frame")
                    runs[name].append(result)
                    _progress(name, repeat, result)
        for results in runs.values():
            for r in results:
                r["images_per_s"] = r["ok"] / r["wall_seconds"]
                inside = r.get("seconds", r.get("shard_seconds"))
                if inside:
                    r["in_process_images_per_s"] = r["ok"] / inside
        report["runs"] = runs
        # Every stored image must be 256x256 (600x600 squares, longer side 256) in both tools.
        report["wrong_sizes"] = [
            f"{name} run {i + 1}: {r['sizes']}"
            for name, results in runs.items()
            for i, r in enumerate(results)
            if set(r["sizes"]) != {f"{MAX_SIDE}x{MAX_SIDE}"}
        ]
        report["median"] = {
            name: summarise(results, args.images) for name, results in runs.items() if results
        }
        medians = report["median"]
        if "img2dataset" in medians:
            report["ratio_slip_over_img2dataset"] = (
                medians["slip-data"]["images_per_s"] / medians["img2dataset"]["images_per_s"]
            )
        if not args.skip_fault:
            report["fault"] = fault_run(args.fault_urls, args.seed, tmp)
        if args.profile:
            report["profile"] = profile(min(300, args.images), tmp)

    REPORT.write_text(json.dumps(report, indent=1, default=str))
    print_report(report)


def _progress(name: str, repeat: int, r: dict) -> None:
    inner = ""
    if "seconds" in r:
        inner = (
            f" ({r['startup_seconds']:.2f} s to crawl(), {r['seconds']:.2f} s in it; cpu main "
            f"{r['main_cpu_seconds']:.1f} s + decoders {r['decoder_cpu_seconds']:.1f} s)"
        )
    print(
        f"  [{repeat + 1}] {name:<24} {r['ok']:>5} ok in {r['wall_seconds']:6.2f} s wall{inner}, "
        f"cpu {r['cpu_seconds']:.1f} s, server cpu {r['server_cpu_seconds']:.1f} s",
        flush=True,
    )


def print_report(report: dict) -> None:
    images = report["images"]
    print(
        f"\ncrawl benchmark: {images['count']:,} distinct {images['side']}x{images['side']} JPEGs "
        f"({images['bytes_min'] // 1000}-{images['bytes_max'] // 1000} KB, median "
        f"{images['bytes_median'] // 1000} KB) from a loopback aiohttp server in its own process, "
        f"-> {MAX_SIDE} px, q{QUALITY}; {report['machine']['cpus']} CPUs; bytecode "
        f"{report['bytecode']}"
    )
    for name, m in report["median"].items():
        print(
            f"  {name:<26} {m['images_per_s']:5.0f} images/s (median wall "
            f"{m['wall_seconds']:.2f} s; cpu {m['cpu_ms_per_image']:.1f} ms/image + server "
            f"{m['server_cpu_ms_per_image']:.1f})"
        )
        if "startup_seconds" not in m:
            print(
                f"  {'':<26} {m['in_process_images_per_s']:5.0f} images/s from first shard start "
                "to last shard end"
            )
        else:
            print(
                f"  {'':<26} {m['in_process_images_per_s']:5.0f} images/s inside crawl(); "
                f"{m['startup_seconds']:.2f} s spawn-to-crawl ({m['import_seconds']:.2f} s import);"
                f" cpu main {m['main_cpu_ms_per_image']:.1f} + decoders "
                f"{m['decoder_cpu_ms_per_image']:.1f} ms/image"
            )
    for line in report["wrong_sizes"]:
        print(f"  WARNING: output sizes other than {MAX_SIDE}x{MAX_SIDE}: {line}")
    if "ratio_slip_over_img2dataset" in report:
        print(
            f"  ratio slip-data / img2dataset {report['img2dataset_version']}: "
            f"{report['ratio_slip_over_img2dataset']:.2f}x"
        )
    fault = report.get("fault")
    if fault:
        counts = ", ".join(
            f"{k} {v}" for k, v in sorted(fault["counts"].items(), key=lambda x: -x[1])
        )
        print(
            f"fault server, {fault['urls']:,} URLs (timeout {fault['options']['timeout']} s, "
            f"{FAULT_HOSTS} hosts): {fault['wall_seconds']:.1f} s wall, "
            f"{fault['urls'] / fault['wall_seconds']:.0f} URLs/s\n  {counts}\n"
            f"  duplicates: {fault['dup_urls_ok']} URLs -> {fault['dup_distinct_sha256']} distinct "
            f"sha256; {fault['images_stored']} images stored for "
            f"{fault['counts'].get('ok', 0)} ok; "
            f"unexpected statuses: {sum(fault['unexpected'].values())}"
        )
        for what, n in fault["unexpected"].items():
            print(f"    {n:4d} x {what}")
    prof = report.get("profile")
    if prof:
        print(
            f"profile (one process, {prof['images']} images): decode_image "
            f"{prof['decode_image_ms']:.2f} ms/image; stages {prof['stages_ms']}; "
            f"size after draft {prof['size_after_draft']}; full decode without draft "
            f"{prof['full_decode_no_draft_ms']:.2f} ms (+lanczos "
            f"{prof['full_decode_plus_lanczos_ms']:.2f} ms)\n"
            f"  decode_image with other resize filters (ms/image, mean |diff| vs Lanczos): "
            + ", ".join(
                f"{k} {v['ms']:.2f} ({v['mean_abs_diff_vs_lanczos']:.2f})"
                for k, v in prof["variant_decode_ms"].items()
            )
            + "\n"
            f"  fetch only (slip-data Fetcher, no decode): {prof['fetch_only']['images_per_s']:.0f}"
            f"/s; decode only (2-process pool): {prof['decode_pool_only']['images_per_s']:.0f}/s"
        )
    print(f"report: {REPORT}")


if __name__ == "__main__":
    main()
