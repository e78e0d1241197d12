"""Where work runs: a thread pool that carries DSPy's settings into its workers, or Ray tasks.

DSPy keeps per-thread settings (``dspy.context``: the LM, the usage tracker, the trace) in a context
variable; plain threads would start without them. :func:`parallel_map` copies the caller's settings
into each worker, as DSPy's own ``ParallelExecutor`` does, and shows a tqdm bar. Ctrl-C (or a fatal
error) sets one stop flag that every unit of LM work checks, so a run stops within a fraction of a second.
"""

from __future__ import annotations

import contextvars
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm.auto import tqdm

logger = logging.getLogger("dspy." + __name__)

T = TypeVar("T")
R = TypeVar("R")

_STOP = threading.Event()


class Shippable:
    """Mixin for objects with a ``_lock`` that travel to Ray workers (pickled without the lock)."""

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """Raised in workers once the run was interrupted (Ctrl-C or a fatal error elsewhere)."""


def check_interrupt() -> None:
    if _STOP.is_set():
        raise Interrupted("the run was interrupted")


def reset_interrupt() -> None:
    _STOP.clear()


@contextmanager
def ctrl_c_stops_the_run() -> Iterator[None]:
    """Within the block, Ctrl-C sets the stop flag as well as raising KeyboardInterrupt. Python drops a
    KeyboardInterrupt that lands in a finalizer (``__del__``, run by the garbage collector at any moment): the
    flag still stops every worker, whose ``Interrupted`` then reaches the caller (a fresh CI run had finished
    a compile that its SIGINT should have stopped). A handler of the caller's own is left alone."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def stop(signum, frame):
        _STOP.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def parallel_map(fn: Callable[[T], R], items: Sequence[T], num_threads: int = 1, desc: str | None = None,
                 progress: bool = True) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``num_threads`` threads, results in input order.

    Exceptions propagate (callers that must survive failures catch them inside ``fn``); work not yet
    started is cancelled, and on Ctrl-C the workers are told to stop instead of being waited for."""
    items = list(items)
    quiet = not progress or not desc or len(items) <= 1 or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    bar = tqdm(total=len(items), desc=desc, disable=quiet, leave=False)
    try:
        if num_threads <= 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(fn(item))
                bar.update()
            return results
        pool = ThreadPoolExecutor(max_workers=min(num_threads, len(items)))
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
        try:
            results = []
            for future in futures:
                results.append(future.result())
                bar.update()
        except KeyboardInterrupt:
            _STOP.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return results
    finally:
        bar.close()


class ThreadExecutor:
    """Jobs on a thread pool."""

    name = "thread"

    def map(self, fn: Callable[[Any, T], R], run: Any, jobs: Sequence[T], threads: int, desc: str) -> list[R]:
        return parallel_map(lambda job: fn(run, job), jobs, threads, desc=desc)


class RayExecutor:
    """The same job function as Ray tasks (on the cluster ``ray.init`` connected to, else a local one);
    a job's exception is re-raised on the driver as the thread pool would. Each worker holds a copy of
    the run's budget (not yet one shared guard: see the issue 13 note)."""

    name = "ray"

    def map(self, fn: Callable[[Any, T], R], run: Any, jobs: Sequence[T], threads: int, desc: str) -> list[R]:
        try:
            import ray
        except ImportError as exc:
            raise ImportError("executor='ray' needs Ray: pip install 'dspy-fgo[ray]'") from exc
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(_apply)
        fn_ref, run_ref = ray.put(fn), ray.put(run)
        refs = [remote.remote(fn_ref, run_ref, job) for job in jobs]
        before = run.budget.to_dict()
        outcomes = [ray.get(ref) for ref in tqdm(refs, desc=desc, disable=len(refs) <= 1, leave=False)]
        for outcome in outcomes:  # the workers' usage and errors come back into the driver's record
            run.budget.add_since(outcome.usage, before)
            for record in outcome.errors:
                run.errors.record(record.pop("stage"), record.pop("message"), **record)
            run.ledger.merge_from(outcome.ledger)
        for outcome in outcomes:
            if outcome.exc is not None:
                raise outcome.exc
        return [outcome.value for outcome in outcomes]


class _Outcome:
    def __init__(self, value: Any, exc: BaseException | None, usage: dict, errors: list, ledger: list):
        self.value, self.exc, self.usage, self.errors, self.ledger = value, exc, usage, errors, ledger


def _apply(fn, run, job):
    value, exc = None, None
    try:
        value = fn(run, job)
    except Exception as error:  # the driver re-raises it, as the thread pool would
        exc = error
    return _Outcome(value, exc, run.budget.to_dict(), [dict(r) for r in run.errors.records], run.ledger.to_list())


def executor_for(name: str):
    if name == "thread":
        return ThreadExecutor()
    if name == "ray":
        return RayExecutor()
    raise ValueError(f"executor must be 'thread' or 'ray', got {name!r}")
