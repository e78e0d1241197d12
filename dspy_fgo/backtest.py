"""The merge back-test raced: stop early on a merge that is clearly worse than its best member.

``backtest="full"`` (the default; the paper's procedure, in ``merge.py``) runs the merged candidate on
the whole union of its members' examples and the best member on the union's examples outside its own,
and passes the merge up when it scores at least as well. ``backtest="race"`` (successive halving with
two arms, as TRIPLE does for prompt selection) runs both *paired* on growing slices of the union: the
first quarter, the first half, then all of it, each slice running only its new examples.
``backtest="half"`` races the first quarter and decides on the first half (``HALF_SLICES``): at most
half the runs of ``"full"``, its union scores estimates (below), and the budget plans half the
back-test runs (``compat``), which buys more steps.

The order is a proportional interleave of the members' examples (each member's in a seeded random
order, those the compared member already has scores for first), so every slice holds each member's
examples in proportion and a half-sample decides on all of them; it is seeded by the run's seed and
the union, so a rerun races the same slices, and rule pruning after a ``"half"`` merge ablates on the
very half the merge was decided on.

After each slice but the last, the race stops and keeps the member when a one-sided sign test on the
paired per-example differences says the merge is worse: at least ``MIN_DISCORDANT`` examples where
the two scores differ, and P(this many losses or more | either is as likely to win) < ``ALPHA``.
A sign test because the pairs share an example, scores need not be 0/1, and examples where both score
the same say nothing about which prompt is better. With ``ALPHA = 0.1`` the race stops at 4-0, 6-1,
7-2, 9-3, ... (the merge's losses-wins) or worse. Two looks at 0.1 each bound the chance of stopping a
merge that is in truth as good as its member at 0.2; in practice it is smaller (the test is discrete,
needs 4 differing examples, and the slices are drawn without replacement from the union): a merge that
exactly ties its member on unions of 16 to 128 examples, 25-50% of them differing, is stopped in 0-5%
of 4000 simulated races. The better the merge, the rarer the stop. A merge that is not clearly worse
reaches the whole union and is decided exactly as by ``"full"`` (merged >= member on the union).

A stopped or half race's union scores are estimates (``MergeNode.estimated``): the examples not run are
scored at the mean of the compared examples from the same stratum (each member's subset), and the
member's known scores on the union are used exactly.

The member's scores come from the run's ledger where it already ran (its own subset's examples, or an
earlier back-test; a resumed run gets them back from the subsets' checkpoints); only the rest run. So a
race costs at most what ``"full"`` costs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .candidate import Candidate

if TYPE_CHECKING:
    from .context import RunContext
    from .merge import MergeNode

BACKTEST_MODES = ("full", "race", "half")
RACE_SLICES = (0.25, 0.5, 1.0)  # cumulative fractions of the union
HALF_SLICES = (0.25, 0.5)  # backtest="half": decided on the first half
ALPHA = 0.1
MIN_DISCORDANT = 4


def slices_for(backtest: str) -> tuple[float, ...]:
    """The race's cumulative fractions under ``backtest`` ("full" merges are not raced; pruning races them)."""
    return HALF_SLICES if backtest == "half" else RACE_SLICES


def backtest_share(backtest: str) -> float:
    """The share of a union back-test's runs the budget plans for (``compat.metric_calls``)."""
    return slices_for(backtest)[-1]


def race_order(indices: Sequence[int], seed: int, strata: Sequence[Sequence[int]] | None = None,
               known: Iterable[int] = ()) -> list[int]:
    """The union in race order: each stratum (a member's examples) shuffled by a seed of its own with the
    ``known`` examples first, then interleaved so that every prefix holds each stratum in proportion."""
    union, known = set(indices), set(known)
    strata = [sorted(union & set(s)) for s in (strata or [indices])]
    strata = [s for s in strata if s]
    rest = sorted(union - {i for s in strata for i in s})
    keyed = []
    for k, stratum in enumerate([*strata, rest] if rest else strata):
        random.Random(f"{seed}:{stratum}").shuffle(stratum)  # a str seed hashes the same in every process
        stratum.sort(key=lambda i: i not in known)  # stable: the shuffle stays within each group
        keyed += [((j + 0.5) / len(stratum), k, i) for j, i in enumerate(stratum)]
    return [i for *_, i in sorted(keyed)]


def race_slices(indices: Sequence[int], seed: int, fractions: Sequence[float] = RACE_SLICES,
                strata: Sequence[Sequence[int]] | None = None, known: Iterable[int] = ()) -> list[list[int]]:
    """The union in race order (:func:`race_order`), cut into the new examples of each growing slice."""
    order = race_order(indices, seed, strata, known)
    cuts = sorted({max(1, math.ceil(f * len(order))) for f in fractions})
    return [order[a:b] for a, b in zip([0, *cuts[:-1]], cuts, strict=True)]


def sign_test(losses: int, wins: int) -> float:
    """One-sided sign test: P(at least ``losses`` of ``losses + wins`` fair coin flips)."""
    n = losses + wins
    return sum(math.comb(n, k) for k in range(losses, n + 1)) / 2**n


def scores_on(run: RunContext, candidate: Candidate, indices: Sequence[int], threads: int) -> tuple[dict, int]:
    """``candidate``'s score per index (the ledger's where it already ran, the rest run now), and the runs."""
    known = run.ledger.scores(candidate)
    missing = [i for i in indices if i not in known]
    if missing:
        known.update((t.index, t.score) for t in run.evaluate(candidate, missing, threads=threads, desc="back-test"))
    return {i: known[i] for i in indices}, len(missing)


def union_estimate(scores: dict[int, float], strata: Sequence[Sequence[int]]) -> float:
    """The mean over the union (``strata`` partition it) with each stratum's unscored examples at the
    stratum's mean on its scored ones (at the overall mean where a stratum has none)."""
    overall = sum(scores.values()) / len(scores)
    total = 0.0
    for stratum in strata:
        seen = [scores[i] for i in stratum if i in scores]
        fill = sum(seen) / len(seen) if seen else overall
        total += sum(scores.get(i, fill) for i in stratum)
    return total / sum(len(s) for s in strata)


@dataclass(frozen=True)
class Race:
    merged: dict[int, float]  # per example compared
    member: dict[int, float]  # on the same examples
    total: int  # examples in the union
    runs: int  # task runs the race spent
    p: float | None = None  # the sign test's p when it stopped the race
    estimates: tuple[float, float] | None = None  # (merged, member) on the union when not all of it ran

    @property
    def stopped(self) -> bool:
        """Stopped early by the sign test."""
        return self.p is not None

    @property
    def sampled(self) -> bool:
        """Decided on part of the union (stopped, or ``backtest="half"``): the union scores are estimates."""
        return len(self.merged) < self.total

    @property
    def accepted(self) -> bool:
        return not self.stopped and sum(self.merged.values()) >= sum(self.member.values())

    @property
    def merged_score(self) -> float:
        return self.estimates[0] if self.estimates else sum(self.merged.values()) / len(self.merged)

    @property
    def member_score(self) -> float:
        return self.estimates[1] if self.estimates else sum(self.member.values()) / len(self.member)

    def note(self, member_id: int) -> str:
        runs = f"{self.runs} back-test runs"
        n = len(self.merged)
        if self.stopped:
            return (f"race stopped after {n} of {self.total} examples: merged {sum(self.merged.values()):g}/{n} vs "
                    f"member {member_id} {sum(self.member.values()):g}/{n} (sign test p={self.p:.3f}): kept the "
                    f"member; {runs}; union scores estimated {self.merged_score:.3f} vs {self.member_score:.3f}")
        ran = f"race ran {n} of {self.total}, union scores estimated" if self.sampled else f"race ran all {self.total}"
        if not self.accepted:
            return (f"merge scored {self.merged_score:.3f} < member {member_id}'s {self.member_score:.3f} on the "
                    f"union: kept the member ({ran}; {runs})")
        return (f"merged: {self.merged_score:.3f} >= best member's {self.member_score:.3f} on the union "
                f"({ran}; {runs})")


def clearly_worse(ours: dict[int, float], theirs: dict[int, float]) -> float | None:
    """The sign test's p when it says ``ours`` is worse than ``theirs`` on their paired examples, else None."""
    losses = sum(ours[i] < theirs[i] for i in ours)
    wins = sum(ours[i] > theirs[i] for i in ours)
    p = sign_test(losses, wins)
    return p if losses + wins >= MIN_DISCORDANT and p < ALPHA else None


def race(run: RunContext, merged: Candidate, member: MergeNode, indices: Sequence[int], threads: int = 1,
         strata: Sequence[Sequence[int]] | None = None, fractions: Sequence[float] = RACE_SLICES) -> Race:
    """Race ``merged`` against ``member`` on the union ``indices``, whose ``strata`` are the members'
    examples (default: ``member``'s and the rest), on the slices ``fractions`` cut (module docstring)."""
    union, own = set(indices), set(member.indices)
    strata = strata or [[i for i in indices if i in own]]
    covered = {i for s in strata for i in s}
    cells = [c for c in [*map(list, strata), [i for i in indices if i not in covered]] if c]  # partition the union
    known = {i: s for i, s in run.ledger.scores(member.candidate).items() if i in union}
    slices = race_slices(indices, run.random_seed, fractions, cells, known)
    ours: dict[int, float] = {}
    theirs: dict[int, float] = {}
    runs, p = 0, None
    for k, new in enumerate(slices):
        for candidate, scores in ((merged, ours), (member.candidate, theirs)):
            got, spent = scores_on(run, candidate, new, threads)
            scores.update(got)
            runs += spent
        if k + 1 < len(slices) and (p := clearly_worse(ours, theirs)) is not None:
            break
    if len(ours) == len(indices):
        return Race(ours, theirs, len(indices), runs)
    estimates = (union_estimate(ours, cells), union_estimate({**known, **theirs}, cells))
    return Race(ours, theirs, len(indices), runs, p, estimates)
