"""Where work runs: a thread pool that carries DSPy's settings into its workers (Ray when asked).

DSPy keeps per-thread settings (``dspy.context``: the LM, the usage tracker, the trace) in a context
variable; plain threads would start without them. :func:`parallel_map` copies the caller's settings
into each worker, as DSPy's own ``ParallelExecutor`` does, and shows a tqdm bar.
"""

from __future__ import annotations

import contextvars
import logging
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
    bar = tqdm(total=len(items), desc=desc, disable=not progress or not desc or len(items) <= 1, leave=False)
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
