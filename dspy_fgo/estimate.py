"""Cost estimate: what a run is expected to spend per role, printed before it starts and set against
what it spent when it ends (``fgo_result.accounting["estimate"]``, ``fgo_result.summary()``).

Three sources, from exact to assumed:

1. **The plan** (exact): the jobs the schedule will make (subsets, batches, steps), the merge tree over
   them, the program's components and the valset; the budget formula (``compat.py``) is the plan's
   metric calls when every step runs.
2. **A pilot** (measured): the seed program runs on a few training examples (:data:`PILOT_EXAMPLES`)
   through ``run.evaluate``, so its metric calls are counted; its runs are then handed to the first
   evaluation of the seed on those examples (``RunContext.seed_runs``), so they cost nothing extra. It
   measures the task LM's calls and tokens per run (every call, including those DSPy's cache answers,
   counted with the project's token counter) and the seed's failure rate. From the pilot's runs the
   estimate renders one critique prompt per run and the proposal, summary and merge prompts exactly as
   the pipeline would (the same rendering functions, the signature formatted by DSPy's ChatAdapter) and
   counts their tokens, without calling any optimizer-side LM: the prompt side is then accurate up to
   how typical the pilot's examples are, and up to the critiques' length inside the proposals' feedback.
3. **Assumptions** (documented constants below): how long an LM reply is (a critique, a rewrite, a few
   rules, a summary, a merge), how fast failures go away over the steps (:data:`FIX_RATE`) and how often a
   later step's rules are new and kept (:data:`LATER_RUN_SHARE`, :data:`LATER_KEEP_SHARE`). A later
   step, a skipped step (every run perfect, ``skip_perfect_score``) and a merge whose members differ
   follow from the failure rate under that assumption.

The estimate is an expectation, not a bound; budgets (``max_tokens``, ``max_lm_calls``, ...) still hold
the run, and the estimate says when a budget looks too small for the plan.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dspy
from dspy.utils.callback import BaseCallback

from .backtest import backtest_share
from .budget import BudgetExhausted, _RoleTracker, count_tokens, cut_to_tokens, price
from .feedback import CORRECT_CRITIQUE, MIN_FEEDBACK_TOKENS, components_within
from .rollout import Trajectory, render_trajectory
from .signatures import (
    CritiqueTrajectory,
    MergeComponents,
    ProposeComponent,
    ProposeRules,
    SummarizeCritiques,
    prompt_adapter,
)

if TYPE_CHECKING:
    from .context import RunContext
    from .optimize import Job

logger = logging.getLogger("dspy." + __name__)

ROLES = ("task", "evaluator", "optimizer", "merge")
OPTIMIZER_SIDE = ("evaluator", "optimizer", "merge")

# Seed runs measured before the run (reused by the first step: no extra metric calls). Four were too few: on
# tracking their failure rate read 0.50 where the subsets' seed runs failed 0.76, and optimizer prompt tokens
# came out 1.5x the estimate in every run.
PILOT_EXAMPLES = 12
# Reply lengths in tokens (assumptions). A critique is asked for "a few sentences" (about 100 tokens); the
# stored qwen1.5b runs in benchmarks/results wrote 128 (quickstart) to 170 (invoices) per critique on average.
CRITIQUE_TOKENS = 100
PROPOSAL_GROWTH = 60  # a rewrite returns the current text and about this many tokens more (new rules)
RULE_TOKENS, RULES_PER_STEP = 35, 2  # update="rules": a reply of 1 to 3 one-sentence rules
LESSONS_TOKENS = 150  # a summary of one part of a step's feedback that did not fit the window
VERSION_HEADER_TOKENS = 15  # "Version i: optimized on n examples (categories), score s"
# A step whose proposal is kept fixes this share of the failures left (the step after a proposal critiques
# the proposal's runs). It decides the later steps' critiques and how often a step is skipped as perfect.
# Measured (qwen1.5b proposing for qwen0.5b): 0.03 to 0.30 per step on the stored tracking runs (0.12 pooled
# over 184 failures, the critic's code of 2026-12-02); 0.15 assumed until 2026-12-08.
FIX_RATE = 0.15
# update="rules", after a subset's first step: the share of steps whose proposal is new and passes the checks
# (so it runs on the batch), and the share whose rules are kept (the text grows, failures get fixed). Measured
# on the six bookings runs at 750 metric calls (16 steps per subset, 2026-12-04..07): the first step's
# proposal ran in 36 of 36 subsets and was kept in 34; of the 540 later steps 142 ran (0.26) and 35 were kept
# (0.065): the proposer mostly repeats the rules the text holds. Assumed 1 for every step until 2026-12-08,
# which made a 16-step run's texts grow by 32 rules and its task prompt tokens x4 the actual.
LATER_RUN_SHARE, LATER_KEEP_SHARE = 0.26, 0.065


# ----- the estimate ------------------------------------------------------------------------------------


@dataclass
class RoleEstimate:
    """Expected LM calls and tokens of one role (fractional: expectations)."""

    calls: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    cost: float | None = None

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens

    def add(self, calls: float, prompt_tokens: float, completion_tokens: float) -> None:
        """``calls`` calls of ``prompt_tokens`` / ``completion_tokens`` tokens each."""
        self.calls += calls
        self.prompt_tokens += calls * prompt_tokens
        self.completion_tokens += calls * completion_tokens

    def plus(self, other: RoleEstimate) -> RoleEstimate:
        cost = None if self.cost is None or other.cost is None else self.cost + other.cost  # None: unpriced
        return RoleEstimate(self.calls + other.calls, self.prompt_tokens + other.prompt_tokens,
                            self.completion_tokens + other.completion_tokens, cost)

    def to_dict(self) -> dict[str, Any]:
        return {"calls": round(self.calls), "prompt_tokens": round(self.prompt_tokens),
                "completion_tokens": round(self.completion_tokens),
                "cost": None if self.cost is None else round(self.cost, 6)}


@dataclass
class CostEstimate:
    """Expected calls and tokens per role and metric calls of one run (see the module docstring)."""

    roles: dict[str, RoleEstimate]
    metric_calls: float  # expected
    planned_metric_calls: int  # the budget formula (every step runs)
    pilot: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    assumptions: dict[str, Any] = field(default_factory=dict)
    # the optimizer side if the first step fixes every failure ("low") or no step fixes any ("high")
    optimizer_side_range: dict[str, RoleEstimate] = field(default_factory=dict)

    @property
    def optimizer_side(self) -> RoleEstimate:
        out = RoleEstimate(cost=0.0)
        for role in OPTIMIZER_SIDE:
            out = out.plus(self.roles.get(role, RoleEstimate()))
        return out

    @property
    def total(self) -> RoleEstimate:
        return self.optimizer_side.plus(self.roles.get("task", RoleEstimate()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "roles": {role: self.roles.get(role, RoleEstimate()).to_dict() for role in ROLES},
            "optimizer_side": self.optimizer_side.to_dict(),
            "optimizer_side_range": {k: v.to_dict() for k, v in self.optimizer_side_range.items()},
            "total": self.total.to_dict(),
            "metric_calls": round(self.metric_calls),
            "planned_metric_calls": self.planned_metric_calls,
            "pilot": dict(self.pilot),
            "limits": dict(self.limits),
            "warnings": list(self.warnings),
            "assumptions": dict(self.assumptions),
        }

    def table(self) -> str:
        """A few lines: the pilot, calls and tokens per role, the optimizer side's range, metric calls."""
        p = self.pilot
        head = (f"Cost estimate (pilot: {p.get('runs', 0)} seed runs, {p.get('failure_rate', 0):.0%} failed, "
                f"{p.get('task_calls_per_run', 0):.1f} task calls and {p.get('task_tokens_per_run', 0):,.0f} "
                f"tokens per run)")
        rows = [head, f"  {'role':<10}{'calls':>8}{'prompt tokens':>16}{'completion tokens':>19}"]
        for role in ROLES:
            r = self.roles.get(role, RoleEstimate())
            rows.append(f"  {role:<10}{r.calls:>8,.0f}{r.prompt_tokens:>16,.0f}{r.completion_tokens:>19,.0f}")
        side, low, high = self.optimizer_side, self.optimizer_side_range.get("low"), self.optimizer_side_range.get("high")
        rows.append(f"  optimizer side: {side.calls:,.0f} calls, {side.tokens:,.0f} tokens"
                    + (f" (from {low.calls:,.0f} calls, {low.tokens:,.0f} tokens if the first step fixes every failure "
                       f"to {high.calls:,.0f}, {high.tokens:,.0f} if no step fixes any)" if low and high else ""))
        limit = self.limits.get("max_metric_calls")
        rows.append(f"  metric calls: {self.metric_calls:,.0f} expected, {self.planned_metric_calls:,} planned"
                    + (f", budget {limit:,}" if limit else ""))
        return "\n".join(rows)


def comparison(accounting: dict[str, Any]) -> list[str]:
    """Estimate against actual per role (calls, prompt and completion tokens, each with actual/estimate),
    from a result's accounting; no lines when the run made no estimate. DSPy's cache hits are not in the
    actual usage (they cost nothing); the estimate counts every call."""
    est = accounting.get("estimate")
    if not est:
        return []
    rounds = accounting.get("rounds")
    if rounds:  # the estimate plans the first round: compare it with what that round spent
        accounting = rounds[0]

    def cell(estimated: float, actual: float) -> str:
        ratio = f"x{actual / estimated:.2f}" if estimated else ("-" if not actual else "new")
        return f"{estimated:,.0f} -> {actual:,.0f} ({ratio})"

    keys = ("calls", "prompt_tokens", "completion_tokens")
    rows = [("role", "calls", "prompt tokens", "completion tokens")]
    roles = accounting.get("roles", {})
    pairs = [(r, est["roles"].get(r, {}), roles.get(r, {})) for r in ROLES]
    for role, e, a in pairs + [("opt. side", est.get("optimizer_side", {}), accounting.get("optimizer_side", {}))]:
        if e.get("calls") or a.get("calls"):
            rows.append((role, *(cell(e.get(k, 0), a.get(k, 0)) for k in keys)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  estimate -> actual" + (f" (round 1 of {len(rounds)}):" if rounds else ":")]
    lines += ["    " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(f"    metric calls {cell(est.get('metric_calls', 0), accounting.get('metric_calls', 0))}")
    return lines


# ----- the pilot ---------------------------------------------------------------------------------------


class _TaskCounter(BaseCallback):
    """Counts every LM call and its tokens (with the project's counter), including the calls DSPy's cache
    answers (those report no usage, so the budget cannot measure them)."""

    def __init__(self):
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self._models: dict[str, str | None] = {}
        self._lock = threading.Lock()  # the program runs on threads

    def on_lm_start(self, call_id, instance, inputs):
        model = getattr(instance, "model", None)
        messages = inputs.get("messages") or [{"content": inputs.get("prompt") or ""}]
        tokens = count_tokens("\n".join(str(m.get("content", "")) for m in messages), model)
        with self._lock:
            self._models[call_id] = model
            self.calls += 1
            self.prompt_tokens += tokens

    def on_lm_end(self, call_id, outputs, exception=None):
        with self._lock:
            model = self._models.pop(call_id, None)
        texts = [(out.get("text") or "") if isinstance(out, dict) else out for out in outputs or []]
        tokens = sum(count_tokens(str(text), model) for text in texts)
        with self._lock:
            self.completion_tokens += tokens


class _ReportedUsage:
    """The usage the LM itself reported for the pilot's calls (its own tokenizer; cache hits report none),
    passed on to the tracker outside the pilot."""

    def __init__(self, outer: Any):
        self.outer = outer.parent if isinstance(outer, _RoleTracker) else outer  # a role re-adds itself inside
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self._lock = threading.Lock()

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        with self._lock:
            self.calls += 1
            self.prompt_tokens += int(usage_entry.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage_entry.get("completion_tokens") or 0)
        if self.outer is not None:
            self.outer.add_usage(lm, usage_entry)

    def __deepcopy__(self, memo):  # DSPy deep-copies the tracker per thread; one shared count
        return self


@dataclass
class Pilot:
    """The seed's runs on a few training examples and what the task LM spent on them: ``task_calls`` and the
    tokens counted with the project's counter for every call, ``reported`` (calls, prompt, completion tokens)
    for the calls the LM reported usage for."""

    runs: list[Trajectory]
    task_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    note: str = ""
    reported: tuple[int, int, int] = (0, 0, 0)

    @property
    def failure_rate(self) -> float | None:
        return sum(t.failed for t in self.runs) / len(self.runs) if self.runs else None

    def per_run(self) -> tuple[float, float, float]:
        """(task calls, prompt tokens, completion tokens) per program run. Tokens per call are the LM's own
        count where it reported one: the project's counter (gpt-4o's tokenizer) reads an id like
        "1Z999AA10123456784" as half the tokens Qwen's tokenizer, one per digit, spends on it."""
        n = max(1, len(self.runs))
        calls, prompt, completion = self.reported
        if calls:
            per_call = self.task_calls / n
            return per_call, per_call * prompt / calls, per_call * completion / calls
        return self.task_calls / n, self.prompt_tokens / n, self.completion_tokens / n


def pilot_indices(run: RunContext, jobs: Sequence[Job], size: int = PILOT_EXAMPLES) -> list[int]:
    """``size`` examples (seeded sample) among those the seed runs on in the jobs' first steps, so that
    the first step reuses the pilot's runs."""
    first = sorted({i for job in jobs if job.batches for i in job.batches[0]})
    return sorted(random.Random(run.random_seed).sample(first, min(size, len(first))))


def run_pilot(run: RunContext, indices: Sequence[int], threads: int = 1) -> Pilot:
    """Run the seed on ``indices`` (counted metric calls), keep the runs for the first step to reuse, and
    measure the task LM. A spent budget gives a pilot without runs."""
    counter, reported = _TaskCounter(), _ReportedUsage(dspy.settings.usage_tracker)
    try:
        with dspy.context(callbacks=[*(dspy.settings.get("callbacks") or []), counter], usage_tracker=reported):
            runs = run.evaluate(run.seed, list(indices), threads=threads, desc="estimate: pilot")
    except BudgetExhausted as exc:
        return Pilot([], note=f"no pilot: {exc.reason}")
    run.seed_runs.put(runs)
    return Pilot(runs, counter.calls, counter.prompt_tokens, counter.completion_tokens,
                 reported=(reported.calls, reported.prompt_tokens, reported.completion_tokens))


# ----- prompt sizes ------------------------------------------------------------------------------------


def prompt_tokens(run: RunContext, role: str, signature: type[dspy.Signature], **inputs: str) -> int:
    """Tokens of the prompt ``run.call(signature, role, **inputs)`` would send (the adapter's messages)."""
    adapter = prompt_adapter()
    messages = adapter.format(signature, demos=[], inputs=inputs)
    return run.tokens("\n".join(str(m.get("content", "")) for m in messages), role)


def _stand_ins(run: RunContext, jobs: Sequence[Job], k: int) -> list[Trajectory]:
    """Trajectories of the size real ones would have, for an estimate without pilot runs: the example's
    inputs, its label as the prediction."""
    from .rollout import _text

    out = []
    for i in pilot_indices(run, jobs, k) or [0]:
        ex = run.trainset[i]
        label = {key: _text(v) for key, v in ex.labels().items()}
        out.append(Trajectory(i, {key: _text(v) for key, v in ex.inputs().items()}, label, dict(label),
                              run.failure_score, perfect_score=run.perfect_score))
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass
class _Sizes:
    """Prompt and reply sizes measured on the seed (tokens)."""

    critique: float  # one critique prompt
    run_failed: float  # one failed run in a proposal's feedback (with its critique)
    run_ok: float  # one correct run in a proposal's feedback
    component: dict[str, int]  # the seed's text per component
    propose: dict[str, int]  # a proposal prompt per component, without feedback
    feedback_room: dict[str, int]  # tokens of feedback that fit a proposal prompt per component
    summarize: dict[str, int]  # a summary prompt per component, without runs
    merge: dict[str, int]  # a merge prompt per component, without versions


def measure(run: RunContext, runs: Sequence[Trajectory]) -> _Sizes:
    """Render the prompts a step and a merge would send for the seed and these runs, and count them."""
    seed = run.seed
    model_e, model_o = run.lms["evaluator"].model, run.lms["optimizer"].model
    failed = [t for t in runs if t.failed] or list(runs)
    ok = [t for t in runs if not t.failed] or list(runs)
    components = components_within(run, seed, "evaluator", count=False)
    room = max(MIN_FEEDBACK_TOKENS, run.input_budget("evaluator", components))
    critique = _mean([prompt_tokens(run, "evaluator", CritiqueTrajectory, program_components=components,
                                    trajectory=render_trajectory(t, room, model_e, evidence=run.evidence)) for t in failed])
    per_run = max(200, run.input_budget("optimizer", components_within(run, seed, "optimizer", count=False)) // 2)

    def in_feedback(t: Trajectory, fails: bool) -> float:
        tokens = run.tokens(render_trajectory(t, per_run, model_o, evidence=run.evidence), "optimizer") + 2  # the "\n\n" between runs
        if run.feedback == "raw":
            return tokens
        if fails or run.critique_successes:
            return tokens + run.tokens("Critique: ", "optimizer") + CRITIQUE_TOKENS
        return tokens + run.tokens(f"Critique: {CORRECT_CRITIQUE}", "optimizer")

    propose, feedback_room, summarize, merge, component = {}, {}, {}, {}, {}
    signature = ProposeRules if run.update == "rules" else ProposeComponent
    for name in seed:
        current = cut_to_tokens(seed[name], run.max_component_tokens, model_o)
        others = components_within(run, seed, "optimizer", share=0.3, skip=name, count=False)
        component[name] = run.tokens(seed[name], "optimizer")
        propose[name] = prompt_tokens(run, "optimizer", signature, component_name=name, current_text=current,
                                      other_components=others, feedback="")
        feedback_room[name] = max(MIN_FEEDBACK_TOKENS, run.input_budget("optimizer", current, others))
        summarize[name] = prompt_tokens(run, "optimizer", SummarizeCritiques, component_name=name,
                                        current_text=current, runs_with_critiques="")
        merge[name] = prompt_tokens(run, "merge", MergeComponents, component_name=name, versions="")
    return _Sizes(critique, _mean([in_feedback(t, True) for t in failed]), _mean([in_feedback(t, False) for t in ok]),
                  component, propose, feedback_room, summarize, merge)


# ----- expected counts ---------------------------------------------------------------------------------


@dataclass
class _Member:
    """A merge-tree node as the estimate sees it."""

    size: int  # examples
    changed: float  # probability its candidate differs from the seed
    growth: float  # expected tokens its steps added to each component


def _merged(nodes: Sequence[_Member], union: bool) -> _Member:
    """A merge of ``nodes``: its text grows by the members' rules together (``union``) or the longest's."""
    growths = [n.growth for n in nodes]
    return _Member(sum(n.size for n in nodes), 1 - math.prod(1 - n.changed for n in nodes),
                   sum(growths) if union else max(growths))


def _merge_groups(leaves: list[_Member], threshold: int | None, union: bool = False) -> list[list[_Member]]:
    """The groups the progressive merge (``merge.progressive_merge``) merges with one LM call per
    differing component, bottom-up, the tree's shape over ``leaves`` (balanced clusters of ceil(n/k));
    the root's group comes last."""
    groups: list[list[_Member]] = []

    def merged(nodes: list[_Member]) -> _Member:
        groups.append(nodes)
        return _merged(nodes, union)

    def build(nodes: list[_Member]) -> _Member:
        if len(nodes) == 1:
            return nodes[0]
        if len(nodes) <= threshold:
            return merged(nodes)
        k = max(2, math.isqrt(len(nodes)))
        return build([build(nodes[i::k]) for i in range(k) if nodes[i::k]])

    if threshold is not None and len(leaves) > 1:
        build(leaves)
    return groups


def estimate_run(run: RunContext, jobs: Sequence[Job], levels: int, *, merge_threshold: int | None = None,
                 pilot: Pilot | None = None, pilot_size: int = PILOT_EXAMPLES, threads: int = 1,
                 divide_by_failures: bool = False) -> CostEstimate:
    """The cost estimate of running ``jobs`` (the schedule's ``plan``) and merging their results in groups
    of at most ``merge_threshold`` (None: no merge), with ``levels`` merge levels in the budget formula.

    Without ``pilot`` the seed runs on ``pilot_size`` training examples first (:func:`run_pilot`).
    ``divide_by_failures``: the seed runs on the whole trainset and its failures are critiqued in the
    divide stage (``partition="failures"``). Besides the expectation (:data:`FIX_RATE`), the optimizer
    side's range: ``low`` when the first step fixes every failure (no later step runs) and no merge needs
    the LM, ``high`` when no step fixes any (every step costs what the first does)."""
    from .compat import metric_calls as formula

    if pilot is None:
        pilot = run_pilot(run, pilot_indices(run, jobs, pilot_size), threads)
    sizes = measure(run, pilot.runs or _stand_ins(run, jobs, pilot_size))
    f0 = pilot.failure_rate if pilot.failure_rate is not None else 1.0
    per_call, per_prompt, per_completion = pilot.per_run()

    def expected(fix_rate: float, merges: bool) -> tuple[dict[str, RoleEstimate], float]:
        roles, metric, grown = _expected(run, jobs, sizes, f0, fix_rate, merge_threshold if merges else None,
                                         divide_by_failures)
        roles["task"] = RoleEstimate(metric * per_call, metric * per_prompt + grown * per_call,
                                     metric * per_completion)
        for role, usage in roles.items():
            usage.cost = price(run.lms[role].model, round(usage.prompt_tokens), round(usage.completion_tokens))
        return roles, metric

    roles, metric = expected(FIX_RATE, True)
    side = {name: CostEstimate(expected(*args)[0], 0, 0).optimizer_side
            for name, args in (("low", (1.0, False)), ("high", (0.0, True)))}
    estimate = CostEstimate(
        roles, metric, formula(len(run.trainset), len(run.valset or ()), run.epochs, levels),
        limits=dict(run.budget.limits), optimizer_side_range=side,
        pilot={"runs": len(pilot.runs), "indices": [t.index for t in pilot.runs], "failure_rate": f0,
               "task_calls_per_run": per_call, "task_tokens_per_run": per_prompt + per_completion,
               "critique_prompt_tokens": round(sizes.critique), "proposal_prompt_tokens": dict(sizes.propose),
               "note": pilot.note},
        assumptions={"critique_tokens": CRITIQUE_TOKENS, "proposal_growth": PROPOSAL_GROWTH,
                     "rule_tokens": RULE_TOKENS, "rules_per_step": RULES_PER_STEP, "lessons_tokens": LESSONS_TOKENS,
                     "fix_rate": FIX_RATE, "later_run_share": LATER_RUN_SHARE,
                     "later_keep_share": LATER_KEEP_SHARE})
    estimate.warnings = budget_warnings(estimate, pilot)
    return estimate


def _expected(run: RunContext, jobs: Sequence[Job], sizes: _Sizes, f0: float, fix_rate: float,
              merge_threshold: int | None, divide_by_failures: bool) -> tuple[dict[str, RoleEstimate], float, float]:
    """Expected optimizer-side usage per role, metric calls, and the task prompt tokens those runs add to the
    pilot's (the candidates' texts grow with each step), when the seed fails a share ``f0`` of its runs and
    each step whose proposal is kept fixes a share ``fix_rate`` of the failures left."""
    roles = {role: RoleEstimate() for role in OPTIMIZER_SIDE}
    ev, opt, mrg = roles["evaluator"], roles["optimizer"], roles["merge"]
    rules = run.update == "rules"
    step_growth = RULES_PER_STEP * RULE_TOKENS if rules else PROPOSAL_GROWTH
    cap = run.max_component_tokens
    texts = len(sizes.component)
    metric = grown = pruning = pruning_grown = 0.0
    if divide_by_failures:  # the seed on the whole trainset, its failures critiqued
        metric += len(run.trainset)
        if run.feedback != "raw":
            ev.add(len(run.trainset) * f0, sizes.critique, CRITIQUE_TOKENS)
    # the first steps send the divide stage's critique prompts again: DSPy's cache answers them, if it is on
    critiques_cached = divide_by_failures and bool(getattr(run.lms["evaluator"], "cache", False))

    leaves = []
    for job in jobs:
        growth, changed, previous_runs, previous, f = 0.0, 0.0, 1.0, None, f0
        for step, batch in enumerate(job.batches):
            s = len(batch)
            tried, kept = (LATER_RUN_SHARE, LATER_KEEP_SHARE) if rules and step else (1.0, 1.0)
            runs = 1 - (1 - f) ** s if run.skip_perfect_score else 1.0  # the step is not skipped as perfect
            if job.keep_best and step and list(batch) == previous:
                runs *= previous_runs  # the last step's runs again: a skipped step stays skipped
            elif not (divide_by_failures and step == 0):
                metric += s  # the current candidate's runs on the batch
                grown += s * growth * texts
            previous, previous_runs = list(batch), runs
            if run.feedback != "raw" and not (critiques_cached and step == 0):
                ev.add(s * runs if run.critique_successes else s * f, sizes.critique + growth * len(sizes.component),
                       CRITIQUE_TOKENS)
            if not runs:
                continue
            failures = s * f / runs  # failures in the batch, given that the step runs
            feedback = failures * sizes.run_failed + (s - failures) * sizes.run_ok
            for name, seed_tokens in sizes.component.items():
                room = sizes.feedback_room[name]
                parts = math.ceil(feedback / room) if feedback > room else 1
                if parts > 1 and job.overflow.mode == "summarize":
                    opt.add(runs * parts, sizes.summarize[name] + growth + feedback / parts, LESSONS_TOKENS)
                    shown = parts * (LESSONS_TOKENS + 10)
                else:
                    shown = min(feedback, room)
                reply = step_growth if rules else min(cap, seed_tokens + growth) + PROPOSAL_GROWTH
                opt.add(runs, sizes.propose[name] + growth + shown, reply)
            if job.keep_best:
                metric += runs * tried * s  # the proposal's runs on the batch
                grown += runs * tried * s * (growth + step_growth) * texts
            growth += runs * kept * step_growth
            changed = 1 - (1 - changed) * (1 - runs * kept)
            f *= 1 - fix_rate * kept  # the candidate carries over: so do its fixes
        leaves.append(_Member(len(job.indices), changed, growth))

    groups = _merge_groups(leaves, merge_threshold, union=rules)
    tested = backtest_share(run.backtest)  # the share of each union a back-test runs
    for members in groups:
        differ = 1 - math.prod(1 - m.changed for m in members)
        union = sum(m.size for m in members)
        merged = _merged(members, rules).growth
        # the best member's back-test on the rest: when no member changed, it is the seed, whose runs are known
        best = differ * tested * (union - max(m.size for m in members))
        metric += best + differ * tested * union  # and the merge's on all of it (on half with backtest="half")
        grown += (best * max(m.growth for m in members) + differ * tested * union * merged) * texts
        if rules and run.prune_rules:  # at most one union back-test per rule (an upper bound: races stop early)
            ablations = differ * tested * union * sum(m.growth for m in members) / RULE_TOKENS  # the growth's rules
            pruning += ablations
            pruning_grown += ablations * merged * texts
        for name, seed_tokens in sizes.component.items():
            if rules and seed_tokens + sum(m.growth for m in members) <= cap:
                continue  # the union of the members' rules: an LM merge only when it is over the cap
            versions = sum(VERSION_HEADER_TOKENS + min(cap, seed_tokens + m.growth) for m in members)
            mrg.add(differ, sizes.merge[name] + versions,
                    min(cap, seed_tokens + max(m.growth for m in members)) + PROPOSAL_GROWTH)
    limit = run.budget.limits.get("max_metric_calls")
    changed = 1 - math.prod(1 - leaf.changed for leaf in leaves)  # P(the run changed anything)
    if limit is not None and pruning:  # pruning stops where the budget does (prune.py), the valset check kept
        reserve = max(run.budget.valset_reserved, 2 * len(run.valset)) * changed if run.valset else 0.0
        share = min(1.0, max(0.0, limit - metric - reserve) / pruning)
        pruning, pruning_grown = pruning * share, pruning_grown * share
    metric, grown = metric + pruning, grown + pruning_grown
    if run.valset is None and groups and tested < 1:  # the root on the trainset's rest (select.py)
        metric += (1 - tested) * len(run.trainset) * changed
    if run.valset is not None:  # the seed and the winner on the valset, when the run changed something
        root = _merged(groups[-1], rules) if groups else max(leaves, key=lambda m: m.growth, default=_Member(0, 0, 0))
        metric += 2 * len(run.valset) * changed
        grown += len(run.valset) * changed * root.growth * texts
        extra = min(run.valset_candidates - 1, max(0, 2 * len(leaves) - 2)) * len(run.valset) * changed
        kept = max(0, run.budget.valset_reserved - 2 * len(run.valset)) * changed  # reserve_candidates=True
        extra = extra if limit is None else max(0.0, min(extra, max(kept, limit - metric)))  # on what is left
        metric += extra
        grown += extra * _mean([m.growth for m in leaves] or [0.0]) * texts
    return roles, metric, grown


def budget_warnings(estimate: CostEstimate, pilot: Pilot) -> list[str]:
    """What in the estimate the run should know: a budget below the plan, a pilot that told little."""
    out = []
    total = estimate.total
    spend = {"max_metric_calls": estimate.metric_calls, "max_lm_calls": total.calls, "max_tokens": total.tokens,
             "max_cost": total.cost}
    for name, limit in estimate.limits.items():
        value = spend.get(name)
        if limit is not None and value is not None and value > limit:
            out.append(f"Budget too small: {name}={limit:,} is below the estimated {value:,.{6 if name == 'max_cost' else 0}f} "
                       f"for the plan (planned metric calls {estimate.planned_metric_calls:,}): the run will stop "
                       f"early with the best it has; raise {name}, or lower epochs or the trainset.")
    if pilot.note:
        out.append(f"Cost estimate without a pilot ({pilot.note}): the task LM's tokens are unknown and every run "
                   "is assumed to fail.")
    elif pilot.runs and not any(t.failed for t in pilot.runs):
        out.append(f"The seed failed none of the pilot's {len(pilot.runs)} runs: the estimate expects few "
                   "failures, critiques and proposals.")
    return out
