"""Rounds: a metric-call budget that affords more steps per subset than help is spent in successive rounds.

Steps on the same small subset stop paying off after a few: the proposer sees the same runs and re-proposes rules
the text already has (benchmarks/README.md, bookings at 750 metric calls: 80 of 96 steps changed nothing and the run
spent 293 of its 750 calls). So with ``FGO(rounds=True)``, when ``max_metric_calls`` (or ``max_full_evals``) affords
more than ``ROUND_EPOCHS`` steps per subset and ``epochs`` is not set, FGO runs the whole pipeline (divide, optimize
``ROUND_EPOCHS`` steps, merge, select) again from the program the round before returned: the next round's subsets
see the failures that program still makes. Every round is held to the same total budget and checked on the valset
against the program it started from, so the result is never worse than the program passed in. In a round, the rule
ablation after a merge spends at most one back-test of the merge's union (as the plan budgets it) rather than one
per rule: at 750 calls on bookings, ablating rule by rule took 512 of the run's 736 metric calls and left no budget
for a second round. The rounds end when one keeps its seed, stops on a budget, or the rest of the budget affords no
round of one step per subset. An explicit ``epochs``, ``auto`` or ``rounds=False`` runs one pass.

Off by default: measured on bookings at 750 metric calls, seed 0 (benchmarks/README.md), one pass 0.44, rounds with
uncapped pruning 0.51 (one round ran), rounds as here 0.37 (two rounds; the second kept its seed, before the valset fix of 190ea0b), GEPA 0.66: no
gain shown, and two runs of the same seed differ by as much.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .backtest import backtest_share
from .compat import metric_call_limit, metric_calls, plan

if TYPE_CHECKING:
    import dspy

    from .fgo import TextGradOptimizer
    from .result import FGOResult

logger = logging.getLogger("dspy." + __name__)

ROUND_EPOCHS = 3  # steps per subset in one round when the budget affords more


def _limit(optimizer: TextGradOptimizer, n_train: int, n_val: int) -> int | None:
    return metric_call_limit(optimizer.budgets["max_metric_calls"], optimizer.max_full_evals, n_train, n_val)


def round_epochs(optimizer: TextGradOptimizer, n_train: int, n_val: int) -> int | None:
    """``ROUND_EPOCHS`` when the budget is spent in rounds (it affords more steps per subset and neither
    ``epochs`` nor ``auto`` fixes them), else None: one run as planned."""
    limit = _limit(optimizer, n_train, n_val)
    if not optimizer.rounds or limit is None or optimizer.epochs is not None \
            or optimizer.auto is not None or n_train < 1:
        return None
    epochs, _ = plan(None, limit, None, None, n_train, n_val, optimizer.merge_levels(n_train),
                     optimizer.prune_rules, backtest_share(optimizer.backtest))
    return ROUND_EPOCHS if epochs > ROUND_EPOCHS else None


def affords_round(optimizer: TextGradOptimizer, spent: int, n_train: int, n_val: int) -> bool:
    """Whether what is left of the metric-call budget covers one more round of one step per subset."""
    limit = _limit(optimizer, n_train, n_val)
    need = metric_calls(n_train, n_val, 1, optimizer.merge_levels(n_train), backtest_share(optimizer.backtest))
    return limit is not None and limit - spent >= need


def round_optimizer(optimizer: TextGradOptimizer, number: int, epochs: int) -> TextGradOptimizer:
    """The optimizer for round ``number`` (from 1): ``epochs`` steps per subset, its own optimizer seed, the
    first round logging to ``log_dir`` itself and round k to ``log_dir/round-k``; only the first estimates."""
    one = copy.copy(optimizer)
    one.epochs, one.seed = epochs, optimizer.seed + number - 1
    if optimizer.log_dir and number > 1:
        one.log_dir = os.path.join(optimizer.log_dir, f"round-{number}")
    one.estimate = optimizer.estimate and number == 1
    one._in_rounds = True  # pruning keeps to the plan's one back-test per merge (prune.py): the rest is for rounds
    return one


def compile_in_rounds(optimizer: TextGradOptimizer, compile_once: Callable[..., dspy.Module], student: dspy.Module,
                      trainset: Sequence[Any], valset: Sequence[Any] | None, epochs: int, **kwargs: Any) -> dspy.Module:
    """Run rounds of ``compile_once(optimizer, student, trainset, valset, spent=..., **kwargs)``, each from the
    program the round before returned, and return the last program with the whole run's record."""
    started = time.perf_counter()
    n_train, n_val = len(trainset), len(valset) if valset is not None else 0
    results: list[FGOResult] = []
    program, spent = student, None
    for number in range(1, 1000):
        logger.info("%s: round %d (%d steps per subset; %d metric calls spent so far)", optimizer.method, number,
                    epochs, (spent or {}).get("metric_calls", 0))
        out = compile_once(round_optimizer(optimizer, number, epochs), program, trainset, valset, spent=spent,
                           **kwargs)
        result = out.fgo_result
        results.append(result)
        spent = result.accounting
        program = out
        if result.final_choice == "seed" or result.stopped \
                or not affords_round(optimizer, spent.get("metric_calls", 0), n_train, n_val):
            break
    program.fgo_result = combine(results, time.perf_counter() - started)
    if getattr(program, "detailed_results", None) is not None:
        program.detailed_results = program.fgo_result
    return program


def combine(results: list[FGOResult], seconds: float) -> FGOResult:
    """The record of the round that produced the returned program (the last that did not keep its seed) for
    the whole run: its seed is the program passed in, its reason covers every round, its accounting is the
    whole run's (with what each round spent); every round's own record is in ``rounds``, in order."""
    if len(results) == 1:
        return results[0]
    made = max((i for i, r in enumerate(results) if r.final_choice == "optimized"), default=0)
    top, first = results[made], results[0]
    choice = "seed" if top.final_candidate == first.seed_candidate else "optimized"
    reason = "; ".join(f"round {i}: {r.reason}" for i, r in enumerate(results, 1))
    accounting = dict(results[-1].accounting, rounds=[_round_spend(r) for r in results])
    return dataclasses.replace(top, seed_candidate=first.seed_candidate, final_choice=choice, reason=reason,
                               accounting=accounting, seconds=seconds, rounds=list(results))


def _round_spend(result: FGOResult) -> dict[str, Any]:
    """What the run had spent when a round ended (the accounting is cumulative)."""
    keep = ("metric_calls", "optimizer_side", "roles")
    return {k: result.accounting[k] for k in keep if k in result.accounting}
