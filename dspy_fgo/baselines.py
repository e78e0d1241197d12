"""The paper's baselines (section 4.1) as data schedules on FGO's pipeline; only the schedule differs.

- :class:`AllAtOnce`: Algorithm 1 on the whole trainset; each optimizer prompt sees every trajectory,
  trimmed to fit the context window when it does not (trims are counted in the accounting).
- :class:`BatchWise`: fixed batches visited in sequence within each epoch; the last candidate wins.
- :class:`Bootstrapping`: batches sampled with replacement; the last candidate wins.
"""

from __future__ import annotations

import random
from typing import Any

from .compat import DEFAULT_EPOCHS
from .feedback import OverflowPolicy
from .fgo import TextGradOptimizer
from .merge import NoMerge
from .optimize import Job


class WholeSetSchedule:
    """One job over the whole trainset: the same batch every epoch (all-at-once)."""

    def jobs(self, run, epochs: int, threads: int) -> list[Job]:
        every = tuple(range(len(run.trainset)))
        return [Job(0, every, (every,) * epochs, tuple(range(epochs)), True, OverflowPolicy("trim"), threads)]

    def plan(self, run, epochs: int) -> list[Job]:
        """The jobs without LM work (the cost estimate's plan)."""
        return self.jobs(run, epochs, 1)


class BatchSchedule:
    """One job over a sequence of batches (fixed or sampled with replacement); the last candidate wins."""

    def __init__(self, batch_size: int, seed: int, epochs: int, with_replacement: bool):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.seed, self.epochs, self.with_replacement = batch_size, seed, epochs, with_replacement

    def batches(self, n: int) -> tuple[list[list[int]], list[int]]:
        """The batches in order and the epoch of each."""
        if self.with_replacement:
            rng = random.Random(self.seed)
            per_epoch = -(-n // self.batch_size)
            batches = [sorted(rng.choices(range(n), k=min(self.batch_size, n))) for _ in range(self.epochs * per_epoch)]
            return batches, [i // per_epoch for i in range(len(batches))]
        order = list(range(n))
        random.Random(self.seed).shuffle(order)
        fixed = [sorted(order[i:i + self.batch_size]) for i in range(0, n, self.batch_size)]
        return [b for _ in range(self.epochs) for b in fixed], [e for e in range(self.epochs) for _ in fixed]

    def jobs(self, run, epochs: int, threads: int) -> list[Job]:
        batches, epoch_of = self.batches(len(run.trainset))
        return [Job(0, tuple(range(len(run.trainset))), tuple(tuple(b) for b in batches), tuple(epoch_of), False,
                    OverflowPolicy("summarize"), threads)]

    def plan(self, run, epochs: int) -> list[Job]:
        """The jobs without LM work (the cost estimate's plan)."""
        return self.jobs(run, epochs, 1)


class AllAtOnce(TextGradOptimizer):
    """Optimize on the whole trainset at once (one job, no merge)."""

    method = "all-at-once"

    def schedule(self, epochs: int | None = None):
        return WholeSetSchedule()

    def merger(self):
        return NoMerge()


class _Batches(TextGradOptimizer):
    with_replacement = False

    def __init__(self, metric=None, *, batch_size: int = 8, **params: Any):
        super().__init__(metric, **params)  # the shell's explicit parameters (a typo is a TypeError)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def schedule(self, epochs: int | None = None) -> BatchSchedule:
        return BatchSchedule(self.batch_size, self.seed, epochs or self.epochs or DEFAULT_EPOCHS, self.with_replacement)

    def batches(self, n: int):
        return self.schedule().batches(n)

    def merger(self):
        return NoMerge()


class BatchWise(_Batches):
    """Fixed batches of ``batch_size`` (one shuffle by ``seed``) visited in sequence every epoch."""

    method = "batch-wise"


class Bootstrapping(_Batches):
    """Each epoch, ceil(n / batch_size) batches of ``batch_size`` examples drawn with replacement."""

    method = "bootstrapping"
    with_replacement = True
