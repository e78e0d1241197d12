"""Select: the final choice over the run's nodes, never worse than the seed, and the run's record.

The merge tree passes up, at every level, the better of a merge and its best member, so its root is
the best optimized node; it is compared with the seed on the valset (inside the budget: the check was
reserved up front, and its scores are checkpointed), or without a valset on the union back-test over
the trainset. Ties go to the seed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dspy

from .budget import BudgetExhausted
from .candidate import Candidate
from .merge import MergeNode
from .optimize import SubsetResult
from .result import FGOResult
from .rollout import mean_score

if TYPE_CHECKING:
    from .context import RunContext

logger = logging.getLogger("dspy." + __name__)


def _score_on(run: RunContext, candidate: Candidate, examples: Sequence[dspy.Example] | None,
              reserved: bool, threads: int) -> float:
    cp = run.checkpoint if examples is not None else None
    if cp is not None and (stored := cp.load_val(candidate)) is not None:
        return stored
    data = examples if examples is not None else run.trainset
    score = mean_score(run.evaluate(candidate, range(len(data)), examples=data, reserved=reserved, threads=threads,
                                    desc="valset" if examples is not None else "union"))
    if cp is not None:
        cp.save_val(candidate, score)
    return score


def _train_scores(run: RunContext, subsets: Sequence[SubsetResult], root: MergeNode, threads: int):
    """Seed's and root's scores on the whole trainset, from the run's own measurements where it has them."""
    n = len(run.trainset)
    covered = sorted(i for s in subsets for i in s.indices) == list(range(n))
    if covered and all(s.seed_score is not None for s in subsets):
        seed = sum(s.seed_score * len(s.indices) for s in subsets) / n
    else:
        seed = _score_on(run, run.seed, None, False, threads)
    opt = root.score if root.score is not None and not root.estimated and root.indices == list(range(n)) else \
        _score_on(run, root.candidate, None, False, threads)
    return seed, opt


def choose(run: RunContext, subsets: Sequence[SubsetResult], root: MergeNode | None, threads: int):
    """(choice, node id, reason, valset scores, trainset scores)."""
    if root is None or root.candidate == run.seed:
        return "seed", "seed", "optimization changed nothing", {}, {}
    if run.valset is not None:
        try:
            seed = _score_on(run, run.seed, run.valset, True, threads)
            opt = _score_on(run, root.candidate, run.valset, True, threads)
        except BudgetExhausted as exc:
            return "seed", "seed", f"the valset check did not fit the budget ({exc.reason}): kept the seed", {}, {}
        scores = {"seed": seed, "optimized": opt}
        if opt > seed:
            return "optimized", root.node_id, f"valset score {opt:.3f} > seed's {seed:.3f}", scores, {}
        return "seed", "seed", f"valset score {opt:.3f} <= seed's {seed:.3f}: kept the seed (ties go to the seed)", \
            scores, {}
    try:
        seed, opt = _train_scores(run, subsets, root, threads)
    except BudgetExhausted as exc:
        return "seed", "seed", f"no valset, and the union back-test did not fit the budget ({exc.reason}): " \
                               "kept the seed", {}, {}
    train = {"seed": seed, "optimized": opt}
    if opt > seed:
        return "optimized", root.node_id, f"no valset: union back-test {opt:.3f} > seed's {seed:.3f}", {}, train
    return "seed", "seed", f"no valset: union back-test {opt:.3f} <= seed's {seed:.3f}: kept the seed", {}, train


def select_and_record(run: RunContext, subsets: Sequence[SubsetResult], root: MergeNode | None,
                      config: dict[str, Any], started: float, threads: int) -> dspy.Module:
    choice, node, reason, val_scores, train_scores = choose(run, subsets, root, threads)
    final = run.seed if choice == "seed" else root.candidate
    program = final.apply(run.student)
    stopped = run.budget.stopped or next((s.stopped for s in subsets if s.stopped), None)
    program.fgo_result = FGOResult(
        method=run.method, seed_candidate=run.seed, final_candidate=final, final_choice=choice, reason=reason,
        subsets=list(subsets), merge_root=root, accounting=run.budget.to_dict(), val_scores=val_scores,
        errors=list(run.errors.records), config=config, stopped=stopped, seconds=time.perf_counter() - started,
        resumed=dict(run.checkpoint.resumed) if run.checkpoint is not None else {}, selected=node,
        train_scores=train_scores, error_counts=dict(run.errors.counts),
        candidates=run.ledger.to_list(), best_outputs={k: dict(v) for k, v in run.ledger.best_outputs.items() if v},
        winner=run.ledger.id_of(final),
    )
    if run.checkpoint is not None:
        run.checkpoint.save_spent(run.budget.to_dict())
    logger.info(program.fgo_result.summary())
    return program
