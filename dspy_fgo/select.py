"""Select: the final choice over the run's nodes, never worse than the seed, and the run's record.

The merge tree passes up, at every level, the better of a merge and its best member, so its root is
the best optimized node by the run's own back-tests; it is compared with the seed on the valset (inside
the budget: the check was reserved up front, and its scores are checkpointed), or without a valset on
the union back-test over the trainset. With ``valset_candidates=k`` the valset check also scores up to
k-1 other nodes of the tree (best back-test score first), as far as what is left of the budget allows
(``reserve_candidates=True`` reserves their runs up front, as far as the budget covers them):
with a small task LM, scores on a few subset examples predict the valset poorly. The best valset score
wins; ties go to the seed, then to the node scored first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dspy

from .backtest import scores_on
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
    if root.score is not None and not root.estimated and root.indices == list(range(n)):
        return seed, root.score
    scores, _ = scores_on(run, root.candidate, range(n), threads)  # the back-tests' runs come from the ledger
    return seed, sum(scores.values()) / n


def valset_nodes(root: MergeNode, seed: Candidate, k: int) -> list[MergeNode]:
    """The root, then up to ``k - 1`` other nodes with distinct non-seed candidates, best back-test score
    first (more examples, then the lower node id, break ties)."""
    others = sorted((n for n in root.walk() if n is not root),
                    key=lambda n: (-(n.score if n.score is not None else -1.0), -len(n.indices), n.node_id))
    chosen, seen = [root], {seed, root.candidate}
    for node in others:
        if len(chosen) >= k:
            break
        if node.candidate not in seen:
            chosen.append(node)
            seen.add(node.candidate)
    return chosen


def _valset_choice(run: RunContext, root: MergeNode, threads: int):
    try:
        seed = _score_on(run, run.seed, run.valset, True, threads)
        opt = seed if root.candidate == run.seed else _score_on(run, root.candidate, run.valset, True, threads)
    except BudgetExhausted as exc:
        return "seed", "seed", f"the valset check did not fit the budget ({exc.reason}): kept the seed", {}, {}
    scores, best, best_score = {"seed": seed, "optimized": opt}, root, opt
    for node in valset_nodes(root, run.seed, run.valset_candidates)[1:]:
        stored = run.checkpoint.load_val(node.candidate) if run.checkpoint is not None else None
        if stored is None and not run.budget.fits(len(run.valset), reserved=True):
            logger.info("valset check: what is left of the budget does not cover node %d", node.node_id)
            break
        try:  # what is left of the reservation (reserve_candidates=True), then what the optimization left
            score = _score_on(run, node.candidate, run.valset, True, threads)
        except BudgetExhausted as exc:
            logger.info("valset check: node %d not scored (%s)", node.node_id, exc.reason)
            break
        scores[f"node {node.node_id}"] = score
        if score > best_score:
            best, best_score = node, score
    name = "" if best is root else f" (node {best.node_id}, not the root)"
    if best_score > seed:
        return "optimized", best.node_id, f"valset score {best_score:.3f}{name} > seed's {seed:.3f}", scores, {}
    return "seed", "seed", f"valset score {best_score:.3f}{name} <= seed's {seed:.3f}: kept the seed " \
                           "(ties go to the seed)", scores, {}


def choose(run: RunContext, subsets: Sequence[SubsetResult], root: MergeNode | None, threads: int):
    """(choice, node id, reason, valset scores, trainset scores)."""
    if root is None:
        return "seed", "seed", "optimization changed nothing", {}, {}
    if root.candidate == run.seed:  # the merges kept the seed; with a valset, other nodes may still beat it
        others = run.valset is not None and len(valset_nodes(root, run.seed, run.valset_candidates)) > 1
        if not others:
            return "seed", "seed", "optimization changed nothing", {}, {}
    if run.valset is not None:
        return _valset_choice(run, root, threads)
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
    final = run.seed if choice == "seed" else next(n.candidate for n in root.walk() if n.node_id == node)
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
