"""Feedback: critique each run, render runs within a token budget, summarize what does not fit, propose a
rewrite or new rules, and hold the proposal to the format check (``rules.py``).

Every prompt that carries the program's components budgets them in tokens (one counter,
``budget.count_tokens``), and every new component text is held to ``max_component_tokens``: an
oversized or unusable reply is recorded and skipped (the old text stays), never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .budget import cut_to_tokens
from .candidate import Candidate
from .executor import parallel_map
from .rollout import Trajectory, answer_lines, input_lines, pack_within_budget, render_trajectory
from .rules import (
    MAX_RULE_WORDS,
    instruction_problem,
    is_duplicate,
    join_rules,
    parse_rule_list,
    split_rules,
    ungrounded_cue,
)
from .signatures import CritiqueTrajectory, ProposeComponent, ProposeRules, SummarizeCritiques

if TYPE_CHECKING:
    from .context import RunContext

logger = logging.getLogger("dspy." + __name__)

CORRECT_CRITIQUE = "Correct: the prediction matches the expected answer; keep what made it work."
MIN_FEEDBACK_TOKENS = 100
# the error-log stage of proposals the checks dropped (counted apart from the optimizer LM's failures)
REJECTED = "proposal check"


@dataclass(frozen=True)
class OverflowPolicy:
    """What to do when the feedback for one proposal does not fit the optimizer LM's window.

    ``"summarize"`` (FGO): split the runs across calls, summarize each part into lessons, propose from
    the lessons. ``"trim"`` (the paper's all-at-once): keep what fits, drop the rest, count the trim.
    """

    mode: str = "summarize"


def components_within(run: RunContext, candidate: Candidate, role: str, share: float = 0.4,
                      skip: str | None = None, count: bool = True) -> str:
    """The candidate's components (but ``skip``) as text, cut to ``share`` of what the role's window leaves
    (``count=False``: a cut is not counted as a trim, for the cost estimate's renderings)."""
    text = "\n\n".join(f"[{n}]\n{t}" for n, t in candidate.items() if n != skip) or "(none)"
    limit = max(50, int(run.input_budget(role) * share))
    if run.tokens(text, role) > limit:
        if count:
            run.budget.count_trim()
        return cut_to_tokens(text, limit, run.lms[role].model)
    return text


@dataclass(frozen=True)
class Proposal:
    """One step's outcome: the new candidate, the critiques it came from (None per run without a critic),
    what was proposed per component and why a proposal was dropped (the format check)."""

    candidate: Candidate
    critiques: tuple[str | None, ...] = ()
    proposed: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Tried:
    """The previous step's proposals on the same runs that were not kept, per component, and what became of
    them: shown to the proposer with a request for something different, so that it is not asked the same
    question twice."""

    proposals: dict[str, str]
    outcome: str = "changed nothing (its rules were already in the text, or failed the checks)"


def textual_gradient_step(run: RunContext, candidate: Candidate, trajectories: Sequence[Trajectory],
                          overflow: OverflowPolicy, threads: int = 1, tried: Tried | None = None) -> Proposal:
    """Critique the trajectories (``feedback="critique"``; ``"raw"`` shows the proposer the runs and the
    metric's feedback as they are, as GEPA's reflection does), then rewrite every component or add rules
    to it (``update``), in parallel; a failed or rejected proposal keeps the old text. ``tried``: the previous
    step's proposals on these same runs that were not kept."""
    if run.feedback == "raw":
        critiques: list[str | None] = [None] * len(trajectories)
    else:
        critiques = list(critique_trajectories(run, candidate, trajectories, threads))
    feedback = render_feedback(run, candidate, trajectories, critiques)
    names = list(candidate)
    tried = tried or Tried({})
    texts = parallel_map(lambda name: propose_component(run, candidate, name, feedback, overflow, threads,
                                                        tried_note(tried, name, run.lms["optimizer"].model)),
                         names, threads, desc="propose")
    proposed, rejected, updates = {}, {}, {}
    for name, text in zip(names, texts, strict=True):
        if not text or text == candidate[name].strip():
            continue
        proposed[name] = text
        new = add_rules(run, candidate[name], text, trajectories, rejected, name) if run.update == "rules" else \
            checked_text(run, text, trajectories, rejected, name)
        if new is not None and new != candidate[name]:
            updates[name] = new
    return Proposal(candidate.updated(updates) if updates else candidate, tuple(critiques), proposed, rejected)


def proposal_problem(run: RunContext, text: str, trajectories: Sequence[Trajectory],
                     max_words: int | None = None) -> str | None:
    """Why a proposed text (or rule) made from ``trajectories`` is rejected, or None: not an instruction
    (``check_format``), or pointing at a phrase of the inputs that never holds the answer (``check_grounding``)."""
    if run.check_format:
        problem = instruction_problem(text, [v for t in trajectories for v in t.label.values()], max_words)
        if problem is not None:
            return problem
    if run.check_grounding:
        return ungrounded_cue(text, [("\n".join(input_lines(t)), answer_lines(t)) for t in trajectories])
    return None


def checked_text(run: RunContext, text: str, trajectories: Sequence[Trajectory], rejected: dict[str, str],
                 name: str) -> str | None:
    """``text``, or None (recorded in ``rejected``) when :func:`proposal_problem` finds a problem."""
    problem = proposal_problem(run, text, trajectories)
    if problem is None:
        return text
    rejected[name] = problem
    run.errors.record(REJECTED, f"proposal for component {name!r} {problem}: rejected")
    return None


def add_rules(run: RunContext, current: str, reply: str, trajectories: Sequence[Trajectory],
              rejected: dict[str, str], name: str) -> str | None:
    """``current`` plus the reply's new rules that pass :func:`proposal_problem`, are not duplicates and keep
    the text within ``max_component_tokens`` (as a rewrite is held to it)."""
    base, rules = split_rules(current)
    added, problems, cap = [], [], run.max_component_tokens
    for rule in parse_rule_list(reply):
        problem = proposal_problem(run, rule, trajectories, MAX_RULE_WORDS)
        if problem is None and is_duplicate(rule, rules + added):
            continue
        if problem is None and run.tokens(join_rules(base, rules + added + [rule]), "optimizer") > cap:
            problem = f"takes the component over max_component_tokens={cap}"
        if problem is not None:
            problems.append(f"{rule[:60]!r} {problem}")
        else:
            added.append(rule)
    if problems:
        rejected[name] = "; ".join(problems)
        run.errors.record(REJECTED, f"rules for component {name!r} rejected: {rejected[name]}")
    return join_rules(base, rules + added) if added else None


def critique_trajectories(run: RunContext, candidate: Candidate, trajectories: Sequence[Trajectory],
                          threads: int = 1) -> list[str]:
    """The evaluator LM's critique of each trajectory (a fixed note for correct runs unless asked)."""
    components = components_within(run, candidate, "evaluator")
    budget = run.input_budget("evaluator", components)
    model = run.lms["evaluator"].model

    def critique(traj: Trajectory) -> str:
        if not traj.failed and not run.critique_successes:
            return CORRECT_CRITIQUE
        text = render_trajectory(traj, max(MIN_FEEDBACK_TOKENS, budget), model, evidence=run.evidence)
        out = run.call(CritiqueTrajectory, "evaluator", program_components=components, trajectory=text)
        return str(out.critique) if out is not None and out.get("critique") else _fallback_critique(traj)

    return parallel_map(critique, list(trajectories), threads, desc="critique")


def _fallback_critique(traj: Trajectory) -> str:
    return traj.feedback or traj.error or "Incorrect: the prediction does not match the expected answer."


def render_feedback(run: RunContext, candidate: Candidate, trajectories: Sequence[Trajectory],
                    critiques: Sequence[str | None]) -> list[str]:
    """Each trajectory with its critique, failures first, each within a per-run budget."""
    model = run.lms["optimizer"].model
    per_run = max(200, run.input_budget("optimizer", components_within(run, candidate, "optimizer")) // 2)
    order = sorted(range(len(trajectories)), key=lambda i: (not trajectories[i].failed, i))
    return [render_trajectory(trajectories[i], per_run, model, critiques[i], run.evidence) for i in order]


def accept_text(run: RunContext, role: str, name: str, text: str | None) -> str | None:
    """A component text from an LM reply, or None (recorded) when it is empty or over the length cap."""
    text = (text or "").strip()
    if not text:
        return None
    tokens = run.tokens(text, role)
    if tokens > run.max_component_tokens:
        run.errors.record(role, f"reply for component {name!r} is {tokens} tokens, over max_component_tokens="
                                f"{run.max_component_tokens}: skipped, the old text is kept", kind="oversized")
        return None
    return text


def propose_component(run: RunContext, candidate: Candidate, name: str, feedback: Sequence[str],
                      overflow: OverflowPolicy, threads: int = 1, note: str = "") -> str | None:
    """The optimizer LM's new text for one component, from feedback that is made to fit its window
    (``note``: what became of the previous proposal on the same runs, see ``tried_note``)."""
    model = run.lms["optimizer"].model
    current = cut_to_tokens(candidate[name], run.max_component_tokens, model)
    others = components_within(run, candidate, "optimizer", share=0.3, skip=name)
    budget = run.input_budget("optimizer", current, others, note)
    if budget < MIN_FEEDBACK_TOKENS:
        run.errors.record("optimizer", f"no room for feedback on component {name!r} ({budget} tokens left): "
                                       "skipped", kind="window")
        return None
    text = fit_feedback(run, name, current, feedback, budget, overflow, threads) + note
    signature, field_name = (ProposeRules, "new_rules") if run.update == "rules" else (ProposeComponent, "new_text")
    out = run.call(signature, "optimizer", component_name=name, current_text=current, other_components=others,
                   feedback=text)
    return accept_text(run, "optimizer", name, out.get(field_name) if out is not None else None)


TRIED_NOTE_TOKENS = 200


def tried_note(tried: Tried, name: str, model: str | None) -> str:
    """The note that shows the proposer its previous proposal for component ``name`` on the same runs,
    which was not kept, or "" when there is none."""
    if not tried.proposals.get(name):
        return ""
    return (f"\n\nYour previous proposal for these same runs {tried.outcome}, and the failed runs above still "
            "fail with the current text:\n"
            f"{cut_to_tokens(tried.proposals[name], TRIED_NOTE_TOKENS, model)}\n"
            "Do not propose it again. Look at the failed runs once more: what in the input marks the expected "
            "value (its exact label, position or format) that the current rules do not say?")


def fit_feedback(run: RunContext, name: str, current: str, feedback: Sequence[str], budget: int,
                 overflow: OverflowPolicy, threads: int = 1) -> str:
    """Join the feedback texts into at most ``budget`` tokens, trimming or summarizing what does not fit."""
    model = run.lms["optimizer"].model
    chunks = pack_within_budget(feedback, budget, model)
    if len(chunks) <= 1:
        return cut_to_tokens("\n\n".join(feedback), budget, model)
    run.budget.count_trim()
    if overflow.mode == "trim":
        logger.info("Feedback for %s trimmed to %d of %d runs to fit the window", name, len(chunks[0]), len(feedback))
        return "\n\n".join(feedback[i] for i in chunks[0])

    def summarize(chunk: list[int]) -> str | None:
        runs = cut_to_tokens("\n\n".join(feedback[i] for i in chunk), budget, model)
        out = run.call(SummarizeCritiques, "optimizer", component_name=name, current_text=current,
                       runs_with_critiques=runs)
        return str(out.lessons) if out is not None and out.get("lessons") else None

    lessons = [t for t in parallel_map(summarize, chunks, threads, desc="summarize") if t]
    per_part = max(40, budget // max(1, len(lessons)) - 10)
    return "\n\n".join(f"Lessons from runs part {i + 1}:\n{cut_to_tokens(text, per_part, model)}"
                       for i, text in enumerate(lessons))
