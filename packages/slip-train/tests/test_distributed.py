"""torchrun on the CPU (gloo): 2 processes of per-rank batch b train like 1 process of batch 2b,
with and without gradient caching, rank 0 alone writes, and a run resumes at the same world size
only."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from train_shards import write_colour_shards

from slip_train.checkpoint import load_checkpoint

CONFIG = """
[data]
shards = {shards}
cache_dir = {cache}
num_workers = 0
[sampler]
batch_size = {batch}
fanouts = [3]
[optim]
warmup_steps = 3
lr = 2e-3
[train]
device = "cpu"
steps = 6
checkpoint_every = 3
out_dir = {out}
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_colour_shards(tmp_path_factory.mktemp("colours") / "shards")


def write_config(shards, out, batch: int):
    config = out.with_suffix(".toml")
    config.write_text(
        CONFIG.format(
            shards=json.dumps(str(shards)), cache=json.dumps(str(out.parent / "cache")),
            out=json.dumps(str(out)), batch=batch,
        )
    )  # fmt: skip
    return config


def run(shards, out, processes: int, batch: int, *args: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node P -m slip_train run` on a fresh config file; a
    plain `python -m slip_train run` for P = 0."""
    config = write_config(shards, out, batch)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher += [f"--nproc_per_node={processes}"] if processes else []
    command = (
        [*launcher, "-m", "slip_train", "run"]
        if processes
        else [sys.executable, "-m", "slip_train", "run"]
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [*command, str(config), "--quiet", *args], capture_output=True, text=True, env=env
    )


def losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


ACCUM = ("--set", "optim.grad_accum=2")


@pytest.fixture(scope="module")
def two_processes(shards, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """6 steps on 2 processes of batch 24, 2 micro-batches a step, trained once: its folder and
    how torchrun ended."""
    out = tmp_path_factory.mktemp("two-processes") / "run"
    return out, run(shards, out, 2, 24, *ACCUM)


@pytest.fixture(scope="module")
def one_process(shards, tmp_path_factory) -> Path:
    """6 steps on 1 process of batch 48, one pass a step, trained once: its folder."""
    out = tmp_path_factory.mktemp("one-process") / "run"
    done = run(shards, out, 0, 48)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_two_processes_train_like_one_with_twice_the_batch(shards, two_processes, tmp_path):
    """With 2 micro-batches a step: DDP all-reduces in the last one's backward only (no_sync)."""
    out, two = two_processes
    assert two.returncode == 0, two.stderr[-2000:]
    # one line from rank 0 only
    assert two.stdout.count("step 6: loss") == 1, two.stdout
    one = run(shards, tmp_path / "one", 1, 48, *ACCUM)
    assert one.returncode == 0, one.stderr[-2000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7))
    assert all(r["samples"] == 96 and r["edges"] > 0 for r in log)
    # the same global batches, pixels and update: equal up to float rounding (batch 24 and 48
    # encode through differently blocked matrix products); measured: equal to 7 decimals
    assert losses(out) == pytest.approx(losses(tmp_path / "one"), rel=1e-5)
    state = load_checkpoint(out / "checkpoints" / "step-00000006.pt")
    assert state["world_size"] == 2
    assert losses(out)[-1] < losses(out)[0]


def test_two_nodes_of_one_process_train_like_one_process_with_twice_the_batch(
    shards, one_process, tmp_path
):
    """torchrun's multi-node launch on one machine: node 1's process has RANK 1 but LOCAL_RANK 0,
    so only a writer chosen by the global rank keeps the two nodes from both writing."""
    out = tmp_path / "nodes"
    config = write_config(shards, out, 24)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1"]
    rendezvous = ["--master_addr=127.0.0.1", f"--master_port={port}"]
    command = ["-m", "slip_train", "run", str(config), "--quiet"]
    nodes = [
        subprocess.Popen(
            [*launcher, f"--node_rank={node}", *rendezvous, *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for node in range(2)
    ]
    said = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in said]
    assert [stdout.count("step 6: loss") for stdout, _ in said] == [1, 0]
    assert losses(out) == pytest.approx(losses(one_process), rel=1e-5)
    assert load_checkpoint(out / "checkpoints" / "step-00000006.pt")["world_size"] == 2


def test_resume_at_the_same_world_size_only(shards, two_processes, tmp_path):
    out = tmp_path / "run"
    assert two_processes[1].returncode == 0, two_processes[1].stderr[-2000:]
    shutil.copytree(two_processes[0], out)  # the finished run stays as it was, for other tests
    uninterrupted = losses(out)
    (out / "checkpoints" / "step-00000006.pt").unlink()  # as if killed after step 5
    wrong = run(shards, out, 0, 24, *ACCUM, "--resume", "latest")  # no torchrun: one process
    assert wrong.returncode == 2
    assert (
        wrong.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "step-00000003.pt was written by 2 process(es); resume it with as many (this run has 1)"
        )
    )
    resumed = run(shards, out, 2, 24, *ACCUM, "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert losses(out) == uninterrupted  # gloo reduces in a fixed order: exactly


def test_two_processes_with_gradient_caching_train_like_one_process(shards, one_process, tmp_path):
    """Each rank's encoders 10 rows at a time (chunks 10, 10, 4), one loss over the global batch
    of 48, the gradients averaged by hand after the cached backward: the one process's run."""
    out = tmp_path / "cached"
    two = run(shards, out, 2, 24, "--set", "optim.grad_cache_rows=10")
    assert two.returncode == 0, two.stderr[-2000:]
    assert losses(out) == pytest.approx(losses(one_process), rel=1e-5)


def test_two_processes_weigh_the_anchors_as_one_process_does(shards, one_process, tmp_path):
    """`loss.anchor_weights`: each rank holds the whole batch's weights, as its edges, and weighs
    the loss over the gathered batch: the one process's run, and not the unweighted one's (its
    first loss, before any update, is `one_process`'s)."""
    weighted = ("--set", "loss.anchor_weights=inverse_appearances")
    two = run(shards, tmp_path / "two", 2, 24, *weighted)
    one = run(shards, tmp_path / "one", 0, 48, *weighted)
    assert two.returncode == one.returncode == 0, two.stderr[-2000:] + one.stderr[-2000:]
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-5)
    assert losses(one_process)[0] != pytest.approx(losses(tmp_path / "one")[0], rel=1e-4)
