"""The paper's baselines on FGO's engine: only the data schedule differs (section 4.1).

- :class:`AllAtOnce`: Algorithm 1 on the whole trainset; each optimizer prompt sees every trajectory,
  trimmed to fit the context window when it does not (trims are counted in the accounting).
- :class:`BatchWise`: fixed batches visited in sequence within each epoch; the last candidate wins.
- :class:`Bootstrapping`: batches sampled with replacement; the last candidate wins.
"""

from __future__ import annotations

import random
from typing import Any

from .candidate import Candidate
from .engine import Engine
from .merge import MergeNode
from .optimize import OverflowPolicy, optimize_on_batches, optimize_subset
from .teleprompter import TextGradOptimizer


def _root(result, n: int) -> MergeNode:
    return MergeNode(0, result.best_candidate, list(range(n)), result.best_score)


class AllAtOnce(TextGradOptimizer):
    """Optimize on the whole trainset at once (one subset, no merge)."""

    method = "all-at-once"
    overflow = OverflowPolicy("trim")

    def optimize(self, engine: Engine, seed: Candidate):
        n = len(engine.trainset)
        result = self.run_subset(engine, 0, list(range(n)), lambda: optimize_subset(
            engine, seed, list(range(n)), self.epochs, 0, self.overflow, self.critique_successes))
        if result is None:
            return [], None, None
        return [result], _root(result, n), result.stopped


class _BatchSchedule(TextGradOptimizer):
    def __init__(self, metric=None, *, batch_size: int = 8, **kwargs: Any):
        super().__init__(metric, **kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def batches(self, n: int) -> tuple[list[list[int]], list[int]]:
        """The batches in order and the epoch of each."""
        raise NotImplementedError

    def optimize(self, engine: Engine, seed: Candidate):
        n = len(engine.trainset)
        batches, epochs = self.batches(n)
        result = self.run_subset(engine, 0, list(range(n)), lambda: optimize_on_batches(
            engine, seed, batches, 0, self.overflow, self.critique_successes, keep_best=False,
            indices=list(range(n)), epoch_of_step=epochs))
        if result is None:
            return [], None, None
        return [result], _root(result, n), result.stopped


class BatchWise(_BatchSchedule):
    """Fixed batches of ``batch_size`` (one shuffle by ``seed``) visited in sequence every epoch."""

    method = "batch-wise"

    def batches(self, n: int):
        order = list(range(n))
        random.Random(self.seed).shuffle(order)
        fixed = [sorted(order[i:i + self.batch_size]) for i in range(0, n, self.batch_size)]
        return [b for _ in range(self.epochs) for b in fixed], [e for e in range(self.epochs) for _ in fixed]


class Bootstrapping(_BatchSchedule):
    """Each epoch, ceil(n / batch_size) batches of ``batch_size`` examples drawn with replacement."""

    method = "bootstrapping"

    def batches(self, n: int):
        rng = random.Random(self.seed)
        per_epoch = -(-n // self.batch_size)
        batches = [sorted(rng.choices(range(n), k=min(self.batch_size, n)))
                   for _ in range(self.epochs * per_epoch)]
        return batches, [i // per_epoch for i in range(len(batches))]
