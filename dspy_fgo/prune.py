"""Rule ablation after a merge: drop the rules whose removal does not cost anything on the back-test.

With ``update="rules"`` a merge is the union of its members' rules, and a small proposer LM mixes right
rules with wrong ones ("Look for the "Track your order" line" next to "DHL writes it after "Waybill:"");
the union keeps both. ``prune_rules=True`` then ablates an accepted merged candidate rule by rule, last
rule first (the union lists the best member's rules first): each candidate without one rule is raced against
the current one on the merge's union (``backtest.race``: paired on growing slices, the current candidate's
scores come from the ledger, so only the ablated one runs) and replaces it when it reaches the whole union
at an equal or higher score (with ``backtest="half"``: the half of it the merge was decided on). A removal
that is clearly worse on a slice stops its race early: the rule helps and stays.

``prune_rules="all"`` prunes a merge that scored below its best member as well (a union of rules can be
worse than either member because one member's rule breaks the other's examples) and passes it up when its
pruned text then scores at least as well as the member on the union.

Costs at most one back-test of the union (or of its half) per rule; in a run spent in rounds
(``rounds.py``), at most one such back-test per merge, as the budget's plan has it, so that the rest goes
to the next round. Pruning is the optional part of a merge: it stops, and the current candidate stands,
when the next ablation would leave less than ``keep`` runs of the budget (the planned back-tests of the
merges above this one; the valset check is reserved by the budget itself), or when the budget runs out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backtest import backtest_share, race, slices_for
from .budget import BudgetExhausted
from .candidate import Candidate
from .rules import join_rules, split_rules

if TYPE_CHECKING:
    from .context import RunContext

logger = logging.getLogger("dspy." + __name__)

PRUNE_MODES = (False, True, "all")  # off; after an accepted merge; after every rules merge (a lost one is
# passed up when its pruned text scores at least as well as the best member)


@dataclass(frozen=True)
class Pruned:
    candidate: Candidate
    score: float  # on the union
    dropped: tuple[str, ...]  # the rules removed, in the order they were
    tried: int  # rules ablated
    runs: int  # task runs spent
    stopped: str | None = None  # why pruning stopped before trying every rule

    def note(self) -> str:
        if not self.tried:
            return ""
        kept = f"pruned {len(self.dropped)} of {self.tried} rules tried ({self.runs} runs), union {self.score:.3f}"
        return kept + (f"; {self.stopped}" if self.stopped else "")


def without_rule(candidate: Candidate, name: str, rule: str) -> Candidate:
    base, rules = split_rules(candidate[name])
    return candidate.updated({name: join_rules(base, [r for r in rules if r != rule])})


def prune_rules(run: RunContext, candidate: Candidate, indices: list[int], score: float, threads: int = 1,
                keep: int = 0, strata: list[list[int]] | None = None, max_runs: int | None = None) -> Pruned:
    """``candidate`` (back-tested on ``indices`` at ``score``; ``strata``: the merge's members' examples)
    without the rules that do not help there (module docstring); ``max_runs``: the most task runs to spend."""
    from .merge import MergeNode  # merge.py imports this module

    current, runs = candidate, 0  # its runs come from the merge's back-test, in the ledger
    ablation = math.ceil(len(indices) * backtest_share(run.backtest))  # the most one ablation runs
    dropped: list[str] = []
    tried = 0
    for name in candidate:
        for rule in reversed(split_rules(candidate[name])[1]):
            if keep and not run.budget.fits(ablation + keep):
                logger.info("Pruning stopped: %d runs are kept for the merges above", keep)
                return Pruned(current, score, tuple(dropped), tried, runs,
                              f"stopped: {keep} runs kept for the merges above")
            if max_runs is not None and runs + ablation > max_runs:
                return Pruned(current, score, tuple(dropped), tried, runs, f"stopped at its {max_runs} runs")
            ablated = without_rule(current, name, rule)
            tried += 1
            try:
                raced = race(run, ablated, MergeNode(-1, current, list(indices), score), indices, threads, strata,
                             slices_for(run.backtest))
            except BudgetExhausted as exc:
                logger.info("Budget reached (%s) while pruning rules", exc.reason)
                return Pruned(current, score, tuple(dropped), tried - 1, runs, f"budget reached ({exc.reason})")
            runs += raced.runs
            if raced.accepted:
                current, score = ablated, raced.merged_score
                dropped.append(rule)
    return Pruned(current, score, tuple(dropped), tried, runs)
