"""Algorithm 1: optimize a candidate on batches of examples with textual gradients.

One step: run the candidate on a batch (with traces), have the evaluator LM critique each trajectory
against its label, and have the optimizer LM rewrite every component from the trajectories and
critiques. FGO gives each subset the same batch every epoch; the baselines in ``schedules.py`` feed
other batch sequences to the same loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .candidate import Candidate
from .engine import Engine
from .executor import parallel_map
from .rollout import Trajectory, cut_middle, mean_score, pack_within_budget, render_trajectory
from .signatures import CritiqueTrajectory, ProposeComponent, SummarizeCritiques

logger = logging.getLogger(__name__)

CORRECT_CRITIQUE = "Correct: the prediction matches the expected answer; keep what made it work."


@dataclass(frozen=True)
class StepRecord:
    """One optimization step: the batch, the score of the candidate that was critiqued, what changed."""

    epoch: int
    indices: tuple[int, ...]
    score_before: float
    changed: tuple[str, ...] = ()
    score_after: float | None = None


@dataclass
class SubsetResult:
    """The outcome of Algorithm 1 on one subset (or one baseline schedule)."""

    subset_id: int
    indices: list[int]
    seed_candidate: Candidate
    best_candidate: Candidate
    best_score: float | None
    steps: list[StepRecord] = field(default_factory=list)
    stopped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "subset_id": self.subset_id,
            "indices": list(self.indices),
            "best_score": self.best_score,
            "best_candidate": self.best_candidate.to_dict(),
            "history": [s.__dict__ | {"indices": list(s.indices), "changed": list(s.changed)} for s in self.steps],
            "stopped": self.stopped,
        }


@dataclass(frozen=True)
class OverflowPolicy:
    """What to do when the feedback for one proposal does not fit the optimizer LM's window.

    ``"summarize"`` (FGO): split the runs across calls, summarize each part into lessons, propose from
    the lessons. ``"trim"`` (the paper's all-at-once): keep what fits, drop the rest, count the trim.
    """

    mode: str = "summarize"


def optimize_subset(
    engine: Engine,
    candidate: Candidate,
    indices: Sequence[int],
    epochs: int,
    subset_id: int = 0,
    overflow: OverflowPolicy = OverflowPolicy(),
    critique_successes: bool = False,
) -> SubsetResult:
    """Algorithm 1 on one subset: ``epochs`` critique-and-rewrite steps on the same examples.

    Unlike the paper, where the last epoch's modules are the result, the best candidate seen on the
    subset is kept (a rewrite that makes things worse is not returned).
    """
    batches = [list(indices)] * epochs
    return optimize_on_batches(engine, candidate, batches, subset_id, overflow, critique_successes,
                               keep_best=True, indices=list(indices))


def optimize_on_batches(
    engine: Engine,
    candidate: Candidate,
    batches: Sequence[Sequence[int]],
    subset_id: int = 0,
    overflow: OverflowPolicy = OverflowPolicy(),
    critique_successes: bool = False,
    keep_best: bool = True,
    indices: list[int] | None = None,
    epoch_of_step: Sequence[int] | None = None,
) -> SubsetResult:
    """One step per batch. ``keep_best`` scores every proposal on its batch and keeps the best candidate
    (meaningful when every batch is the same, as in FGO); otherwise the last candidate is the result."""
    result = SubsetResult(subset_id, indices or sorted({i for b in batches for i in b}), candidate, candidate, None)
    current, trajs = candidate, None
    for step, batch in enumerate(batches):
        if (reason := engine.accounting.over_budget()) is not None:
            result.stopped = reason
            break
        if trajs is None:
            trajs = engine.evaluate(current, batch, desc=f"subset {subset_id} step {step}")
        score = mean_score(trajs)
        _consider(result, current, score, keep_best)
        proposed = textual_gradient_step(engine, current, trajs, overflow, critique_successes)
        changed = tuple(proposed.changed_components(current))
        after = None
        if keep_best and changed:
            trajs = engine.evaluate(proposed, batch, desc=f"subset {subset_id} step {step} eval")
            after = mean_score(trajs)
            _consider(result, proposed, after, keep_best)
        same_next = step + 1 < len(batches) and list(batches[step + 1]) == list(batch)
        if not (keep_best and same_next):
            trajs = None  # the next step works on another batch (or on a changed candidate): run afresh
        epoch = epoch_of_step[step] if epoch_of_step else step
        result.steps.append(StepRecord(epoch, tuple(batch), score, changed, after))
        current = proposed
    if not keep_best:
        result.best_candidate, result.best_score = current, None
        logger.info("Subset %d: kept the last candidate after %d steps", subset_id, len(result.steps))
    else:
        logger.info("Subset %d: best score %s after %d steps", subset_id, result.best_score, len(result.steps))
    return result


def _consider(result: SubsetResult, candidate: Candidate, score: float, keep_best: bool) -> None:
    if keep_best and (result.best_score is None or score > result.best_score):
        result.best_candidate, result.best_score = candidate, score


def textual_gradient_step(
    engine: Engine,
    candidate: Candidate,
    trajectories: Sequence[Trajectory],
    overflow: OverflowPolicy = OverflowPolicy(),
    critique_successes: bool = False,
) -> Candidate:
    """Critique the trajectories, then rewrite every component (in parallel); a failed rewrite keeps the
    old text."""
    critiques = critique_trajectories(engine, candidate, trajectories, critique_successes)
    feedback = render_feedback(engine, candidate, trajectories, critiques)
    names = list(candidate)
    texts = parallel_map(lambda name: propose_component(engine, candidate, name, feedback, overflow), names,
                         engine.num_threads, desc="propose")
    updates = {name: text.strip() for name, text in zip(names, texts, strict=True)
               if text and text.strip() and text.strip() != candidate[name].strip()}
    return candidate.updated(updates) if updates else candidate


def critique_trajectories(
    engine: Engine, candidate: Candidate, trajectories: Sequence[Trajectory], critique_successes: bool = False
) -> list[str]:
    """The evaluator LM's critique of each trajectory (a fixed note for correct runs unless asked)."""
    components = candidate.render()
    budget = engine.input_budget("evaluator", components)
    model = engine.evaluator_lm.model

    def critique(traj: Trajectory) -> str:
        if not traj.failed and not critique_successes:
            return CORRECT_CRITIQUE
        text = render_trajectory(traj, budget, model)
        out = engine.call(CritiqueTrajectory, "evaluator", program_components=components, trajectory=text)
        return str(out.critique) if out is not None and out.get("critique") else _fallback_critique(traj)

    return parallel_map(critique, list(trajectories), engine.num_threads, desc="critique")


def _fallback_critique(traj: Trajectory) -> str:
    return traj.feedback or traj.error or "Incorrect: the prediction does not match the expected answer."


def render_feedback(engine: Engine, candidate: Candidate, trajectories: Sequence[Trajectory],
                    critiques: Sequence[str]) -> list[str]:
    """Each trajectory with its critique, failures first, each within a per-run budget."""
    model = engine.optimizer_lm.model
    per_run = max(200, engine.input_budget("optimizer", candidate.render()) // 2)
    order = sorted(range(len(trajectories)), key=lambda i: (not trajectories[i].failed, i))
    return [render_trajectory(trajectories[i], per_run, model, critiques[i]) for i in order]


def propose_component(engine: Engine, candidate: Candidate, name: str, feedback: Sequence[str],
                      overflow: OverflowPolicy) -> str | None:
    """The optimizer LM's new text for one component, from feedback that is made to fit its window."""
    others = "\n\n".join(f"[{n}]\n{t}" for n, t in candidate.items() if n != name) or "(none)"
    budget = engine.input_budget("optimizer", candidate[name], others)
    if budget < 100:
        raise ValueError(
            f"The optimizer LM's context window is too small for component {name!r}: "
            f"{budget} tokens left for feedback. Use an LM with a larger window or shorter components."
        )
    text = fit_feedback(engine, name, candidate[name], feedback, budget, overflow)
    out = engine.call(ProposeComponent, "optimizer", component_name=name, current_text=candidate[name],
                      other_components=others, feedback=text)
    return str(out.new_text) if out is not None and out.get("new_text") else None


def fit_feedback(engine: Engine, name: str, current: str, feedback: Sequence[str], budget: int,
                 overflow: OverflowPolicy) -> str:
    """Join the feedback texts into at most ``budget`` tokens, trimming or summarizing what does not fit."""
    model = engine.optimizer_lm.model
    chunks = pack_within_budget(feedback, budget, model)
    if len(chunks) <= 1:
        return "\n\n".join(feedback)
    engine.accounting.count_trim()
    if overflow.mode == "trim":
        logger.info("Feedback for %s trimmed to %d of %d runs to fit the window", name, len(chunks[0]), len(feedback))
        return "\n\n".join(feedback[i] for i in chunks[0])
    def summarize(chunk: list[int]) -> str | None:
        runs = "\n\n".join(feedback[i] for i in chunk)
        out = engine.call(SummarizeCritiques, "optimizer", component_name=name, current_text=current,
                          runs_with_critiques=runs)
        return str(out.lessons) if out is not None and out.get("lessons") else None

    lessons = [t for t in parallel_map(summarize, chunks, engine.num_threads, desc="summarize") if t]
    per_part = max(40, budget * 3 // max(1, len(lessons)))  # ~3 characters a token, cut in the middle
    return "\n\n".join(f"Lessons from runs part {i + 1}:\n{cut_middle(text, per_part)}" for i, text in enumerate(lessons))
