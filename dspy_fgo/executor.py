"""Where work runs: a thread pool that carries DSPy's settings into its workers, or Ray tasks.

DSPy keeps per-thread settings (``dspy.context``: the LM, the usage tracker, the trace) in a context
variable; plain threads would start without them. :func:`parallel_map` copies the caller's settings
into each worker, as DSPy's own ``ParallelExecutor`` does, and shows a tqdm bar.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    num_threads: int = 1,
    desc: str | None = None,
    progress: bool = True,
) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``num_threads`` threads, results in input order.

    Exceptions propagate (callers that must survive failures catch them inside ``fn``).
    """
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
        with ThreadPoolExecutor(max_workers=min(num_threads, len(items))) as pool:
            futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
            results = []
            for future in futures:
                results.append(future.result())
                bar.update()
            return results
    finally:
        bar.close()


def ray_map(fn: Callable[[T], R], items: Sequence[T], desc: str | None = None) -> list[R]:
    """``[fn(x) for x in items]`` as Ray tasks (on the cluster ``ray.init`` connected to, else a local one).

    ``fn`` and the items travel by cloudpickle, so they must not hold locks or open connections; DSPy's
    global settings do not travel (pass LMs explicitly). Results come back in input order.
    """
    try:
        import ray
    except ImportError as exc:
        raise ImportError("executor='ray' needs Ray: pip install 'dspy-fgo[ray]'") from exc
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(_apply)
    fn_ref = ray.put(fn)  # shipped once, not once per item
    refs = [remote.remote(fn_ref, item) for item in items]
    results = []
    for ref in tqdm(refs, desc=desc, disable=not desc or len(refs) <= 1, leave=False):
        results.append(ray.get(ref))
    return results


def _apply(fn: Callable[[T], R], item: T) -> R:
    return fn(item)
