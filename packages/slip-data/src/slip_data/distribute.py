"""Work units on an engine (img2dataset's distributor): local processes, or Ray tasks.

A stage cut into units (the crawl and shard stages: `--num-shards`; the graph stage: its
partition plan, from `--memory-gb`) runs them all on the chosen engine, or, crawl and shard, one
of them here (`--shard-index`, for a job array of your own). A unit that fails is run again up to
`unit_retries` times; every unit is resumable on its own, so a rerun continues where the failed
try stopped. Units read and write the build folder, so on a cluster it must be a filesystem every
node sees.
"""

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as connection_wait
from multiprocessing.process import BaseProcess
from types import ModuleType
from typing import Annotated, Any, Literal

from slip_data.atomic import DiskFullError
from slip_data.bounds import Bounds
from slip_data.option_fields import check_fields, option
from slip_data.progress import item_progress

GB = 1 << 30  # what every memory budget (--memory-gb, --crawl-memory-gb, ...) counts in

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitOptions:
    """How a stage is cut into work units and where they run."""

    num_shards: Annotated[int | None, Bounds(at_least=1)] = option(
        None,
        "Work units the crawl and shard stages are cut into (default: the crawl as many as "
        "--crawl-memory-gb needs, the shard stage one).",
    )
    shard_index: Annotated[int | None, Bounds(at_least=0)] = option(
        None, "Run only this work unit, here (for job arrays of your own)."
    )
    engine: Literal["local", "ray"] = option(
        "local", "local: a process per unit, --processes at once; ray: Ray tasks."
    )
    processes: Annotated[int, Bounds(at_least=1)] = option(
        1,
        "Local engine: work units run at once (1: one after another, in this process); a graph "
        "unit takes up to --memory-gb, so P at once need about P times that.",
    )
    ray_address: str | None = option(
        None, "Ray cluster address (default: RAY_ADDRESS, else a Ray instance started here)."
    )
    unit_retries: Annotated[int, Bounds(at_least=0)] = option(
        2, "Further tries of a failed work unit."
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.shard_index is not None and self.num_shards is None:
            raise ValueError(
                f"--shard-index {self.shard_index} needs --num-shards: every unit of a job "
                "array must be cut the same way"
            )
        if self.shard_index is not None and not self.shard_index < self.num_shards:
            raise ValueError(
                f"--shard-index {self.shard_index} is outside 0..{self.num_shards - 1} "
                f"(--num-shards {self.num_shards})"
            )

    def cut(self, default: int) -> "UnitOptions":
        """These options with `num_shards` set: `default` where none was given."""
        return self if self.num_shards is not None else replace(self, num_shards=default)

    def selected(self) -> list[int]:
        """The units this invocation runs (one where their number is not decided: see `cut`)."""
        if self.shard_index is not None:
            return [self.shard_index]
        return list(range(self.num_shards or 1))


class UnitFailed(RuntimeError):
    """A unit failed on every try; the message names it and its last error in one line."""


def unit_slice(count: int, index: int, num_units: int) -> slice:
    """Contiguous, near-equal ranges: unit `index` of `num_units` over `count` items."""
    return slice(index * count // num_units, (index + 1) * count // num_units)


def _one_line(exc: BaseException) -> str:
    """The last line that says something: Ray wraps the worker's traceback into its message. Cut
    at 1,000 characters, room for a full disk's two paths and the space it needed."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:1000]


def _run_in_child(sender: Connection, call: Callable[[], Any]) -> None:
    """A unit in its own process: (True, result) or (False, one-line error) down the pipe."""
    try:
        outcome = (True, call())
    except Exception as exc:
        outcome = (False, _one_line(exc))
    sender.send(outcome)
    sender.close()


RETRY_WAIT_S = 0.5


def _retry_wait(failures: int) -> float:
    return min(RETRY_WAIT_S * 2 ** (failures - 1), 30.0)


class _Tries:
    """Failures per unit and the retry decision, the same for every engine."""

    def __init__(self, name: str, retries: int) -> None:
        self.name, self.retries = name, retries
        self.failures: dict[int, int] = {}

    def failed(self, index: int, reason: str) -> float:
        """Seconds to wait before the next try of `index`; raises once the tries are spent."""
        count = self.failures[index] = self.failures.get(index, 0) + 1
        # a full disk stays full for the next try: stop at once, naming the file
        if count > self.retries or reason.startswith(f"{DiskFullError.__name__}:"):
            raise UnitFailed(
                f"{self.name} unit {index} failed {count} times, last: {reason}"
            ) from None
        log.warning(
            "%s unit %d failed (%s); try %d of %d",
            self.name,
            index,
            reason,
            count + 1,
            self.retries + 1,
        )
        return _retry_wait(count)


def run_units(
    func: Callable[..., Any],
    args: Sequence[tuple],
    options: UnitOptions,
    *,
    name: str,
    quiet: bool = False,
    kwargs: Mapping[str, Any] | None = None,
    memory_bytes: int | None = None,
) -> dict[int, Any]:
    """Call `func(*args[i], **kwargs)` for each selected unit i on the engine; returns i ->
    result. `memory_bytes`: what one unit may take, reserved with Ray's `memory` resource so
    that a node runs no more units at once than its memory holds (the local engine: by
    --processes)."""
    selected = options.selected()
    with item_progress(quiet or len(selected) == 1) as progress:
        task = progress.add_task(f"{name} units", total=len(selected))
        job = _Job(
            func=func,
            args=args,
            kwargs=dict(kwargs or {}),
            tries=_Tries(name, options.unit_retries),
            advance=lambda: progress.advance(task),
            memory_bytes=memory_bytes,
        )
        if options.engine == "ray" and options.shard_index is None:
            with ray_session(options.ray_address) as ray:
                return job.on_ray(ray, selected)
        if options.processes > 1 and len(selected) > 1:
            return job.in_processes(selected, options.processes)
        return job.inline(selected)


@dataclass(kw_only=True)
class _Job:
    """The units of one stage run, and the three ways to run them."""

    func: Callable[..., Any]
    args: Sequence[tuple]
    kwargs: dict[str, Any]  # the same for every unit
    tries: _Tries
    advance: Callable[[], None]
    memory_bytes: int | None = None

    def inline(self, selected: list[int]) -> dict[int, Any]:
        results = {}
        for index in selected:
            while True:
                try:
                    results[index] = self.func(*self.args[index], **self.kwargs)
                    break
                except Exception as exc:
                    time.sleep(self.tries.failed(index, _one_line(exc)))
            self.advance()
        return results

    def in_processes(self, selected: list[int], processes: int) -> dict[int, Any]:
        """One spawned process per unit, `processes` at a time: a unit whose process dies (OOM
        kill, crash) is charged alone, where a shared pool would fail every unit in it. Spawned,
        not forked: a fork of this process would copy polars' thread pool mid-state."""
        context = multiprocessing.get_context("spawn")
        results: dict[int, Any] = {}
        waiting = list(reversed(selected))
        running: dict[Connection, tuple[int, BaseProcess]] = {}
        while waiting or running:
            while waiting and len(running) < processes:
                index = waiting.pop()
                receiver, sender = context.Pipe(duplex=False)
                call = partial(self.func, *self.args[index], **self.kwargs)
                process = context.Process(target=_run_in_child, args=(sender, call))
                process.start()
                sender.close()  # the child's end: at its exit the pipe reads as closed
                running[receiver] = (index, process)
            for receiver in connection_wait(list(running)):
                index, process = running.pop(receiver)
                try:
                    succeeded, value = receiver.recv()
                except EOFError:
                    succeeded, value = False, None
                receiver.close()
                process.join()
                if succeeded:
                    results[index] = value
                    self.advance()
                    continue
                value = value or f"its process died with exit code {process.exitcode}"
                time.sleep(self.tries.failed(index, value))
                waiting.append(index)
        return results

    def on_ray(self, ray: ModuleType, selected: list[int]) -> dict[int, Any]:
        """One Ray task per unit; retries are ours (max_retries=0), so a lost worker and an
        exception are retried alike and reported the same way."""
        reserve = {"memory": self.memory_bytes} if self.memory_bytes else {}
        remote = ray.remote(max_retries=0, **reserve)(self.func)
        running = {remote.remote(*self.args[i], **self.kwargs): i for i in selected}
        results: dict[int, Any] = {}
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            index = running.pop(done[0])
            try:
                results[index] = ray.get(done[0])
                self.advance()
            except Exception as exc:
                time.sleep(self.tries.failed(index, _one_line(exc)))
                running[remote.remote(*self.args[index], **self.kwargs)] = index
        return results


@contextmanager
def ray_session(address: str | None) -> Iterator[ModuleType]:
    """Ray, joined at `address` (or a local instance started here) unless it already runs, and
    shut down after if this started it. Under `uv run`, Ray would by default start every worker
    with `uv run` in a copy of the current folder, each building an environment of its own (hung
    from a workspace member's folder, slow from the repository's root); slip-data's workers run the
    environment installed where they run, as on a cluster, unless RAY_ENABLE_UV_RUN_RUNTIME_ENV=1
    asks for Ray's way. Ray reads that at its import, so only a process that has not imported
    it yet is told."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
    except ImportError:
        raise RuntimeError("--engine ray needs Ray: pip install 'slip-data[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
        )
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


@contextmanager
def engine_session(options: UnitOptions) -> Iterator[None]:
    """Several `run_units` calls on one engine: Ray starts once for them all, not per call."""
    if options.engine != "ray":
        yield
        return
    with ray_session(options.ray_address):
        yield
