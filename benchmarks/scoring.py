"""Held-out scoring: per-example scores, per-category means, and a bootstrap confidence interval."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import dspy


def score_program(program: dspy.Module, examples: Sequence[dspy.Example], metric: Callable, lm: dspy.LM,
                  num_threads: int = 2) -> tuple[list[float], list[dict[str, Any]]]:
    """The metric's score on each example, with ``lm`` as the task LM (errors score 0), and the short
    fields of each prediction (answers, an agent's ``won``/``steps``) for inspection."""
    with dspy.context(lm=lm):
        result = dspy.Evaluate(devset=list(examples), metric=metric, num_threads=num_threads,
                               display_progress=True, max_errors=len(examples) + 1, failure_score=0.0)(
                                   RetriedOnce(program))
    return [float(score) for _, _, score in result.results], [short_fields(p) for _, p, _ in result.results]


class RetriedOnce:
    """``program`` called a second time when a call raises: a transient error (a dropped connection, CPython
    3.11's spurious "AST constructor recursion depth mismatch" when DSPy parses in threads) should not score an
    example 0; at temperature 0 with DSPy's cache a real error repeats and still scores 0."""

    def __init__(self, program: Callable):
        self.program = program

    def __call__(self, **inputs: Any) -> Any:
        try:
            return self.program(**inputs)
        except Exception:
            return self.program(**inputs)


def short_fields(prediction: Any, max_chars: int = 300) -> dict[str, Any]:
    """The prediction's numbers, booleans and strings of at most ``max_chars`` (not trajectories)."""
    items = prediction.items() if hasattr(prediction, "items") else []
    return {k: v for k, v in items
            if isinstance(v, bool | int | float) or (isinstance(v, str) and len(v) <= max_chars)}


def bootstrap_ci(scores: Sequence[float], resamples: int = 2000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval of the mean over examples."""
    if not scores:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(scores)
    means = sorted(sum(rng.choices(scores, k=n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * resamples)]
    hi = means[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return (lo, hi)


def summarize_scores(scores: Sequence[float], examples: Sequence[dspy.Example], key: str = "category") -> dict[str, Any]:
    by: dict[str, list[float]] = defaultdict(list)
    for s, ex in zip(scores, examples, strict=True):
        by[str(ex.get(key, "all"))].append(s)
    mean = sum(scores) / len(scores) if scores else 0.0
    lo, hi = bootstrap_ci(scores)
    return {
        "score": mean,
        "ci95": [lo, hi],
        "n": len(scores),
        "per_" + key: {k: sum(v) / len(v) for k, v in sorted(by.items())},
    }
