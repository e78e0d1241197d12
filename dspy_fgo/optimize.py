"""Algorithm 1 on one job: critique-and-rewrite steps on a sequence of batches.

One step: run the candidate on a batch (with traces), have the evaluator LM critique each trajectory,
have the optimizer LM rewrite every component (``feedback.py``). FGO gives each subset the same batch
every epoch and keeps the best candidate; the baselines feed other batch sequences to the same loop.
A spent budget ends the job with what it has (``stopped`` says why).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .budget import BudgetExhausted
from .candidate import Candidate
from .feedback import OverflowPolicy, Proposal, Tried, textual_gradient_step
from .rollout import Trajectory, mean_score

if TYPE_CHECKING:
    from .context import RunContext

logger = logging.getLogger("dspy." + __name__)


@dataclass(frozen=True)
class Job:
    """One call of Algorithm 1: the batches in order, the epoch of each, and how to pick the result."""

    job_id: int
    indices: tuple[int, ...]
    batches: tuple[tuple[int, ...], ...]
    epochs: tuple[int, ...]
    keep_best: bool = True
    overflow: OverflowPolicy = OverflowPolicy()
    threads: int = 1
    first: tuple[Trajectory, ...] = ()  # the current candidate's runs on the first batch, when already run


@dataclass(frozen=True)
class StepRecord:
    """One optimization step: the batch, the score of the candidate that was critiqued, the critiques, what
    was proposed (kept or not) and its score, what changed, and whether it became the subset's best."""

    epoch: int
    indices: tuple[int, ...]
    score_before: float
    changed: tuple[str, ...] = ()
    score_after: float | None = None
    critiques: tuple[str | None, ...] = ()
    proposed: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    accepted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "indices": list(self.indices), "score_before": self.score_before,
                "changed": list(self.changed), "score_after": self.score_after, "critiques": list(self.critiques),
                "proposed": dict(self.proposed), "rejected": dict(self.rejected), "accepted": self.accepted}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepRecord:
        return cls(d["epoch"], tuple(d["indices"]), d["score_before"], tuple(d["changed"]), d["score_after"],
                   tuple(d.get("critiques", ())), dict(d.get("proposed", {})), dict(d.get("rejected", {})),
                   bool(d.get("accepted", False)))


@dataclass(frozen=True)
class SubsetResult:
    """The outcome of Algorithm 1 on one subset (or one baseline schedule)."""

    subset_id: int
    indices: list[int]
    seed_candidate: Candidate
    best_candidate: Candidate
    best_score: float | None
    steps: list[StepRecord] = field(default_factory=list)
    stopped: str | None = None
    seed_score: float | None = None  # the seed's score on these examples (the first step's, when full)
    best_scores: dict[int, float] = field(default_factory=dict)  # best_candidate's score per example index
    seed_scores: dict[int, float] = field(default_factory=dict)  # and the seed's

    def to_dict(self) -> dict[str, Any]:
        return {
            "subset_id": self.subset_id,
            "indices": list(self.indices),
            "best_score": self.best_score,
            "seed_score": self.seed_score,
            "best_candidate": self.best_candidate.to_dict(),
            "seed_candidate": self.seed_candidate.to_dict(),
            "history": [s.to_dict() for s in self.steps],
            "stopped": self.stopped,
            "best_scores": {str(i): score for i, score in self.best_scores.items()},
            "seed_scores": {str(i): score for i, score in self.seed_scores.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubsetResult:
        steps = [StepRecord.from_dict(s) for s in data["history"]]
        best = Candidate(data["best_candidate"])
        return cls(data["subset_id"], list(data["indices"]), Candidate(data.get("seed_candidate", best)), best,
                   data["best_score"], steps, data.get("stopped"), data.get("seed_score"),
                   *({int(i): score for i, score in data.get(key, {}).items()} for key in ("best_scores", "seed_scores")))


def optimize_job(run: RunContext, job: Job) -> SubsetResult | None:
    """Algorithm 1 for one job, or its checkpoint; an unexpected failure is recorded and gives None so
    the other jobs go on (Ctrl-C and an LM that keeps failing stop the run; a spent budget ends the job
    with what it has). Configuration errors were found before any job started."""
    if run.checkpoint is not None and (done := run.checkpoint.load_subset(job.job_id, job.indices)) is not None:
        run.ledger.record_scores(done.seed_candidate, "train", done.seed_scores)  # the merges' back-tests and
        run.ledger.record_scores(done.best_candidate, "train", done.best_scores)  # pruning reuse them
        return done
    try:
        result = optimize_on_batches(run, job)
    except Exception as exc:
        from .context import LMFailedError
        from .rollout import MetricContractError

        if isinstance(exc, LMFailedError | MetricContractError):
            raise
        run.errors.record("subset", f"{type(exc).__name__}: {exc}", subset=job.job_id)
        return None
    if run.checkpoint is not None and result.stopped is None:
        run.checkpoint.save_subset(result)
        run.checkpoint.save_spent(run.budget.to_dict())
    return result


@dataclass
class JobProgress:
    """A job's state between steps, checkpointed after every step so that an interrupted job resumes at its
    next step (the candidates' scores go with it: the merges and the final report use them)."""

    current: Candidate
    best: Candidate
    best_score: float | None = None
    seed_score: float | None = None
    steps: list[StepRecord] = field(default_factory=list)

    def to_dict(self, run: RunContext, job: Job) -> dict[str, Any]:
        own = set(job.indices)
        scores = {name: {str(i): x for i, x in run.ledger.scores(c).items() if i in own}
                  for name, c in (("seed", run.seed), ("current", self.current), ("best", self.best))}
        return {"indices": list(job.indices), "current": self.current.to_dict(), "best": self.best.to_dict(),
                "best_score": self.best_score, "seed_score": self.seed_score,
                "steps": [s.to_dict() for s in self.steps], "scores": scores}

    @classmethod
    def resume(cls, run: RunContext, data: dict[str, Any]) -> JobProgress:
        progress = cls(Candidate(data["current"]), Candidate(data["best"]), data["best_score"], data["seed_score"],
                       [StepRecord.from_dict(s) for s in data["steps"]])
        for name, candidate in (("seed", run.seed), ("current", progress.current), ("best", progress.best)):
            run.ledger.record_scores(candidate, "train", {int(i): x for i, x in data["scores"][name].items()})
        return progress


def _tie_kept(acceptance: str, best: Candidate, seed: Candidate) -> bool:
    """Whether a proposal that scores as high as the subset's best replaces it: always with "tie", only
    while the best is still the seed with "tie-once" and "climb" (one rule gets through to the merges, and
    later steps, on the same examples, must score higher: ties at every step pile up rules that change nothing)."""
    return acceptance == "tie" or (acceptance in ("tie-once", "climb") and best == seed)


def _not_kept(proposal: Proposal, changed: tuple[str, ...], after: float | None, best: float | None,
              climbed_back: bool) -> Tried:
    """What the next step on the same runs is shown of this step's proposals: those that changed nothing,
    or (``acceptance="climb"``, which starts again from the best) those that did not score higher."""
    if climbed_back:
        return Tried({n: proposal.proposed[n] for n in changed if n in proposal.proposed},
                     f"scored {after:.2f} on these runs, not above the current text's {best:.2f}")
    return Tried({} if changed else dict(proposal.proposed))


def _start(run: RunContext, job: Job) -> JobProgress:
    data = run.checkpoint.load_progress(job.job_id, job.indices) if run.checkpoint is not None else None
    if data is None:
        return JobProgress(run.seed, run.seed)
    logger.info("Subset %d resumes after step %d", job.job_id, len(data["steps"]) - 1)
    return JobProgress.resume(run, data)


def optimize_on_batches(run: RunContext, job: Job) -> SubsetResult:
    """One step per batch. ``keep_best`` scores every proposal on its batch and keeps the best candidate
    (meaningful when every batch is the same, as in FGO); otherwise the last candidate is the result.
    With a checkpoint, the job's progress is saved after every step and an interrupted job resumes there."""
    seed = run.seed
    p = _start(run, job)
    first_step, stopped = len(p.steps), None
    trajs = (list(job.first) or None) if first_step == 0 else None  # a resumed step runs its candidate again
    sid = job.job_id
    tried = Tried({})  # the last step's proposals on the same runs that were not kept, per component
    best_trajs = trajs  # the runs of the subset's best on the current batch ("climb" goes on from them)
    try:
        for step in range(first_step, len(job.batches)):
            batch = job.batches[step]
            if step > first_step and run.checkpoint is not None:
                run.checkpoint.save_progress(sid, p.to_dict(run, job))
                run.checkpoint.save_spent(run.budget.to_dict())  # a resumed run does not spend those steps again
            if trajs is None:
                trajs = run.evaluate(p.current, batch, threads=job.threads, desc=f"subset {sid} step {step}")
            score = mean_score(trajs)
            if step == 0 and list(batch) == list(job.indices):
                p.seed_score = score
            if job.keep_best and (p.best_score is None or score > p.best_score):
                p.best, p.best_score = p.current, score
            if p.current == p.best:
                best_trajs = trajs
            if run.skip_perfect_score and trajs and all(t.score >= run.perfect_score for t in trajs):
                logger.info("Subset %d step %d: every run scored perfect_score=%g, nothing to learn: skipped",
                            sid, step, run.perfect_score)
                p.steps.append(StepRecord(job.epochs[step], tuple(batch), score, (), None))
                if not (job.keep_best and step + 1 < len(job.batches) and list(job.batches[step + 1]) == list(batch)):
                    trajs = None
                continue
            proposal = textual_gradient_step(run, p.current, trajs, job.overflow, job.threads, tried)
            proposed = proposal.candidate
            changed = tuple(proposed.changed_components(p.current))
            if changed:
                run.ledger.link(proposed, [p.current], f"subset {sid} step {step}")
            after, accepted = None, False
            if job.keep_best and changed:
                trajs = run.evaluate(proposed, batch, threads=job.threads, desc=f"subset {sid} step {step} eval")
                after = mean_score(trajs)
                accepted = after > p.best_score or (after == p.best_score and _tie_kept(run.acceptance, p.best, seed))
                if accepted:
                    p.best, p.best_score, best_trajs = proposed, after, trajs
            same_next = step + 1 < len(job.batches) and list(job.batches[step + 1]) == list(batch)
            climb_back = job.keep_best and run.acceptance == "climb" and bool(changed) and not accepted
            if climb_back:
                trajs = best_trajs  # the next step starts again from the best, and its runs
            if not (job.keep_best and same_next):
                trajs = None  # the next step works on another batch (or on a changed candidate): run afresh
            tried = _not_kept(proposal, changed, after, p.best_score, climb_back) if same_next else Tried({})
            p.steps.append(StepRecord(job.epochs[step], tuple(batch), score, changed, after, proposal.critiques,
                                      proposal.proposed, proposal.rejected, accepted))
            p.current = p.best if climb_back else proposed
    except BudgetExhausted as exc:
        stopped = exc.reason
        logger.info("Subset %d stopped: %s", sid, stopped)
    best, best_score = (p.best, p.best_score) if job.keep_best else (p.current, None)
    logger.info("Subset %d: best score %s after %d steps", sid, best_score, len(p.steps))
    own = set(job.indices)
    seed_scores, best_scores = ({i: x for i, x in run.ledger.scores(c).items() if i in own} for c in (seed, best))
    return SubsetResult(sid, list(job.indices), seed, best, best_score, p.steps, stopped, p.seed_score, best_scores,
                        seed_scores)
