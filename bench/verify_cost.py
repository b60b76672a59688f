"""Benchmark: what the readers' checks of the shard manifest cost, against the reads they guard.

    uv run python bench/verify_cost.py                   # 4,000 demo products (~1.5 min)
    uv run python bench/verify_cost.py --products 2000 --rounds 3

On demo shards (built once into bench/_work/verify-cost/ with `slip-data build`, 1,000 products a
node file), each case against its anchor in the same run, interleaved, median over `--rounds`:
1. **Per image**: the sha256 of the stored JPEG bytes (what slip-train's loader and slip-eval do
   before decoding) against decoding it as they do: slip-train's draft + open_clip train
   transform at 224 (RandomResizedCrop), and slip-eval's full decode + eval transform at 224.
2. **Per node file**: building slip-train's node cache as shipped (`build_node_cache`: each file
   read once, hashed, parsed from the hashed bytes) against the same copy read straight from the
   file without a hash (the build before the check); and slip-eval's pass over a split's images
   (`Split.images`: file and image hashes) against the same pass without them. The files are in
   the page cache (read once before timing), so the ratio is the check against the parsing and
   copying, the least it can be relative to a cold read.
"""

import argparse
import hashlib
import io
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work" / "verify-cost"


def demo_shards(products: int) -> Path:
    out = WORK / f"demo-{products}"
    if not (out / "shards" / "manifest.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "slip_data", "build", "--source", "demo", "--categories", "all",
             "--demo-products", str(products), "--rows-per-shard", "1000", "--out", str(out),
             "--quiet"],
            check=True,
        )  # fmt: skip
    return out / "shards"


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def interleaved(cases: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each case, the cases run in turn each round so drift hits them alike."""
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            times[name].append(timed(run))
    return {name: statistics.median(values) for name, values in times.items()}


def per_image(images: list[bytes], rounds: int) -> dict[str, float]:
    """Seconds per image: the hash, and the two decodes it guards."""
    import open_clip
    import torch
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    from slip_train.factory import split_train_transform

    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    train, _ = split_train_transform(open_clip.image_transform(224, True, mean=mean, std=std))
    evaluate = open_clip.image_transform(224, is_train=False, mean=mean, std=std)

    def train_decode(data: bytes):  # slip_train.data.BatchDataset._image without the check
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (224, 224))
        return pil_to_tensor(train(image.convert("RGB")))

    def eval_decode(data: bytes):  # slip_eval.data._decode
        return evaluate(Image.open(io.BytesIO(data)).convert("RGB"))

    torch.set_num_threads(1)
    seconds = interleaved(
        {
            "sha256": lambda: [hashlib.sha256(d).hexdigest() for d in images],
            "train_decode": lambda: [train_decode(d) for d in images],
            "eval_decode": lambda: [eval_decode(d) for d in images],
        },
        rounds,
    )
    return {name: value / len(images) for name, value in seconds.items()}


def per_file(shards: Path, rounds: int) -> dict[str, float]:
    """Seconds for the whole set of node files: the node cache build and the eval images pass,
    each checked (as shipped) and unchecked (the anchor)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    from slip_eval.data import open_split
    from slip_train.shards import NODE_CACHE_SCHEMA, build_node_cache, open_shards

    opened = open_shards(shards)
    split = open_split(shards, "train")
    cache = WORK / "cache"

    def build_checked() -> None:
        shutil.rmtree(cache, ignore_errors=True)
        build_node_cache(opened, cache)

    def build_unchecked() -> None:  # the same copy, each file read straight from disk
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        with (
            pa.OSFile(str(cache / "nodes.arrow"), "wb") as sink,
            ipc.new_file(sink, NODE_CACHE_SCHEMA) as writer,
        ):
            for path in opened.node_files:
                table = pq.read_table(path, columns=NODE_CACHE_SCHEMA.names)
                writer.write_table(table.cast(NODE_CACHE_SCHEMA))

    def images_checked() -> None:
        for _ in split.images(128):
            pass

    def images_unchecked() -> None:  # Split.images before the checks
        for path in split.node_files:
            shard = pq.ParquetFile(path)
            for batch in shard.iter_batches(128, columns=["split", "image_sha256", "image"]):
                wanted = pc.and_(
                    pc.equal(batch.column("split"), split.name),
                    batch.column("image_sha256").is_valid(),
                )
                batch.column("image").filter(wanted).to_pylist()

    def hash_only() -> None:
        for path in opened.node_files:
            hashlib.sha256(path.read_bytes()).hexdigest()

    images_unchecked()  # the files into the page cache
    seconds = interleaved(
        {
            "cache_unchecked": build_unchecked,
            "cache_checked": build_checked,
            "images_unchecked": images_unchecked,
            "images_checked": images_checked,
            "read_and_hash": hash_only,
        },
        rounds,
    )
    shutil.rmtree(cache, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=4000)
    parser.add_argument("--images", type=int, default=1000, help="images timed per image")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import pyarrow.parquet as pq

    shards = demo_shards(args.products)
    manifest = json.loads((shards / "manifest.json").read_text())
    node_files = [shards / f["path"] for f in manifest["files"] if f["kind"] == "nodes"]
    file_bytes = sum(p.stat().st_size for p in node_files)
    images = pq.read_table(node_files[0], columns=["image"])["image"].drop_null().to_pylist()
    images = images[: args.images]
    image = per_image(images, args.rounds)
    files = per_file(shards, args.rounds)

    kb = statistics.mean(len(d) for d in images) / 1000
    gb = file_bytes / 1e9
    print(
        f"demo {args.products} products: {len(node_files)} node files, {file_bytes / 1e6:.1f} MB; "
        f"{len(images)} images of {kb:.1f} kB on average; median of {args.rounds} rounds"
    )
    for name in ("train_decode", "eval_decode"):
        print(
            f"per image  sha256 {image['sha256'] * 1e6:.1f} us against {name} "
            f"{image[name] * 1e3:.2f} ms: ratio {image['sha256'] / image[name]:.4f}"
        )
    print(
        f"per file   read + sha256 {files['read_and_hash'] / gb:.2f} s/GB "
        f"({gb / files['read_and_hash']:.2f} GB/s)"
    )
    products = {"cache": manifest["counts"]["nodes"], "images": manifest["split_sizes"]["train"]}
    for case, count in products.items():
        checked, unchecked = files[f"{case}_checked"], files[f"{case}_unchecked"]
        print(
            f"{case:6s}     checked {checked:.3f} s ({checked / gb:.2f} s/GB) against unchecked "
            f"{unchecked:.3f} s: ratio {checked / unchecked:.2f}, "
            f"{(checked - unchecked) / count * 1e6:.1f} us more per product ({count})"
        )
    WORK.mkdir(parents=True, exist_ok=True)
    result = {
        "products": args.products, "node_files": len(node_files), "node_file_bytes": file_bytes,
        "images": len(images), "image_kb": kb, "per_image_s": image, "per_file_s": files,
    }  # fmt: skip
    (WORK / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
