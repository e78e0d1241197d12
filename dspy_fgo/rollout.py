"""Rollout: run a program on examples with traces -> :class:`Trajectory`; render them within a token budget."""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

from .budget import count_tokens, cut_to_tokens
from .executor import parallel_map

logger = logging.getLogger("dspy." + __name__)

CUT_MARKER = "\n...[{n} characters cut]...\n"
METADATA_KEYS = ("category", "language")  # example fields shown as context, not as the expected answer


@dataclass(frozen=True)
class Step:
    """One predictor call inside a trajectory."""

    predictor: str
    inputs: dict[str, str]
    outputs: dict[str, str]


@dataclass(frozen=True)
class Trajectory:
    """One example's run: what went in, what came out, how it scored, and every step on the way."""

    index: int
    inputs: dict[str, str]
    label: dict[str, str]
    prediction: dict[str, str] | None
    score: float
    feedback: str | None = None
    steps: tuple[Step, ...] = ()
    tool_calls: tuple[dict[str, str], ...] = ()
    error: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    predictor_feedback: dict[str, str] = field(default_factory=dict)  # a 5-argument metric's, per predictor
    perfect_score: float = 1.0

    @property
    def failed(self) -> bool:
        return self.error is not None or self.score < self.perfect_score


@dataclass(frozen=True)
class MetricResult:
    score: float
    feedback: str | None = None


class MetricContractError(ValueError):
    """The metric returned something FGO cannot use (None, NaN, a score outside its range): the run stops
    at the first such score instead of optimizing against it."""


@dataclass(frozen=True)
class MetricContract:
    """What a score must look like, and how the metric is called."""

    perfect_score: float = 1.0
    failure_score: float = 0.0
    five_args: bool = False  # GEPA's (gold, pred, trace, pred_name, pred_trace)
    feedback_on_successes: bool = False


def check_metric(metric: Callable) -> int:
    """The metric's form when the optimizer is built: 3 for ``metric(example, prediction, trace=None)``,
    5 for GEPA's ``(gold, pred, trace, pred_name, pred_trace)``; anything else is a TypeError."""
    if not callable(metric):
        raise TypeError(f"metric must be callable, got {type(metric).__name__}")
    try:
        sig = inspect.signature(metric)
    except (TypeError, ValueError):
        return 3  # a builtin or C callable: trust it
    try:
        sig.bind(None, None, None, None, None)
        return 5
    except TypeError:
        pass
    try:
        sig.bind(None, None, None)
        return 3
    except TypeError:
        raise TypeError(
            f"metric {_name(metric)!r} {sig} cannot be called as metric(example, prediction, trace): FGO passes the "
            "trace (as DSPy's optimizers do). Define it as def metric(example, prediction, trace=None), or with "
            "GEPA's five arguments (gold, pred, trace=None, pred_name=None, pred_trace=None)."
        ) from None


def _name(metric: Callable) -> str:
    return getattr(metric, "__name__", None) or type(metric).__name__


def call_metric(metric: Callable, example: dspy.Example, prediction: Any, trace: Any = None,
                contract: MetricContract | None = None, pred_name: str | None = None,
                pred_trace: Any = None) -> MetricResult:
    """Normalize a DSPy metric's answer (number, bool or ``Prediction(score=, feedback=)``) and hold it to
    the contract (a number in ``[failure_score, perfect_score]``)."""
    contract = contract or MetricContract()
    if contract.five_args:
        value = metric(example, prediction, trace, pred_name, pred_trace)
    else:
        value = metric(example, prediction, trace)
    feedback = None
    if isinstance(value, dspy.Prediction) or hasattr(value, "score"):
        feedback, value = getattr(value, "feedback", None), value.score
    elif isinstance(value, dict) and "score" in value:
        feedback, value = value.get("feedback"), value["score"]
    where = f"metric {_name(metric)!r} returned"
    if value is None:
        raise MetricContractError(f"{where} None: it must return a number, a bool or dspy.Prediction(score=..., "
                                  "feedback=...) (a missing return statement?)")
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise MetricContractError(f"{where} {value!r} ({type(value).__name__}): scores must be numbers") from None
    if not math.isfinite(score):
        raise MetricContractError(f"{where} {score}: scores must be finite numbers")
    lo, hi = contract.failure_score, contract.perfect_score
    if not lo - 1e-9 <= score <= hi + 1e-9:
        raise MetricContractError(
            f"{where} {score:g}, outside [failure_score={lo:g}, perfect_score={hi:g}]: a run counts as correct "
            f"only at perfect_score. Pass perfect_score= and failure_score= for the metric's scale (e.g. "
            f"perfect_score=10 for a 0-10 metric), or scale the metric to [0, 1].")
    return MetricResult(score, str(feedback) if feedback else None)


def run_examples(
    program: dspy.Module,
    examples: Sequence[dspy.Example],
    indices: Sequence[int],
    metric: Callable,
    num_threads: int = 1,
    desc: str | None = None,
    runner: Callable | None = None,
    on_metric: Callable[[], None] | None = None,
    contract: MetricContract | None = None,
) -> list[Trajectory]:
    """Run ``program`` on ``examples[i]`` for each i in ``indices``; a failing run becomes a Trajectory
    with its error. ``runner(run_one)`` applies the run's LM policy to each program run (returning
    ``(value, final exception)``); without it the program is called once."""
    names = {id(p): name for name, p in program.named_predictors()}
    outputs = output_fields(program)
    runner = runner or _run_plain
    return parallel_map(
        lambda i: _run_one(program, names, examples[i], i, metric, runner, on_metric, contract or MetricContract(),
                           outputs),
        list(indices),
        num_threads=num_threads,
        desc=desc,
    )


def _run_plain(run_one: Callable[[int], Any]) -> tuple[Any, BaseException | None]:
    try:
        return run_one(0), None
    except Exception as exc:
        return None, exc


def output_fields(program: dspy.Module) -> set[str]:
    """The output field names of the program's predictors (what a label can be compared with)."""
    return {name for p in program.predictors() for name in p.signature.output_fields}


def _run_one(program: dspy.Module, names: dict[int, str], example: dspy.Example, index: int, metric: Callable,
             runner: Callable, on_metric: Callable[[], None] | None, contract: MetricContract,
             outputs: set[str] = frozenset()):
    inputs = {k: _text(v) for k, v in example.inputs().items()}
    metadata = {k: _text(example[k]) for k in METADATA_KEYS if k in example}
    labels = {k: v for k, v in example.labels().items() if k not in metadata}
    if outputs & set(labels):  # other fields an example carries (ids, notes, a generator's decoys) are not answers
        labels = {k: v for k, v in labels.items() if k in outputs}
    label = {k: _text(v) for k, v in labels.items()}
    traces: list[list] = []

    def run_one(attempt: int):
        trace: list = []
        traces.append(trace)
        with dspy.context(trace=trace):
            return program(**example.inputs())

    prediction, exc = runner(run_one)
    trace = list(traces[-1]) if traces else []
    if exc is not None:  # a failing program run is data for the critic, not a crash
        logger.debug("Program failed on example %d: %s", index, exc)
        return Trajectory(index, inputs, label, None, contract.failure_score, steps=_steps(trace, names),
                          error=_error(exc), metadata=metadata, perfect_score=contract.perfect_score)
    steps = _steps(trace, names)
    outputs = {k: _text(v) for k, v in prediction.items() if k != "trajectory"}
    tools = _tool_calls(prediction)
    if on_metric is not None:
        on_metric()
    try:
        result = call_metric(metric, example, prediction, trace, contract)
    except MetricContractError:
        raise
    except Exception as exc:
        logger.warning("Metric raised on example %d (scored %g): %s", index, contract.failure_score, exc)
        return Trajectory(index, inputs, label, outputs, contract.failure_score, None, steps, tools,
                          "metric: " + _error(exc), metadata, perfect_score=contract.perfect_score)
    per_predictor = {}
    if contract.five_args and (result.score < contract.perfect_score or contract.feedback_on_successes):
        per_predictor = _predictor_feedback(metric, example, prediction, trace, names, contract)
    return Trajectory(index, inputs, label, outputs, result.score, result.feedback, steps, tools, None, metadata,
                      per_predictor, contract.perfect_score)


def _predictor_feedback(metric: Callable, example: dspy.Example, prediction: Any, trace: list,
                        names: dict[int, str], contract: MetricContract) -> dict[str, str]:
    """GEPA's per-predictor call: ``metric(gold, pred, trace, pred_name, pred_trace)`` for each predictor
    that ran, ``pred_trace`` holding that predictor's calls only; its feedback goes to that predictor."""
    out = {}
    for name in dict.fromkeys(names.get(id(p), type(p).__name__) for p, _, _ in trace):
        own = [step for step in trace if names.get(id(step[0]), type(step[0]).__name__) == name]
        try:
            result = call_metric(metric, example, prediction, trace, contract, name, own)
        except Exception as exc:  # per-predictor feedback is extra: the score was already taken
            logger.debug("Metric with pred_name=%s raised: %s", name, exc)
            continue
        if result.feedback:
            out[name] = result.feedback
    return out


def _steps(trace: list, names: dict[int, str]) -> tuple[Step, ...]:
    steps = []
    for predictor, inputs, outputs in trace:
        out = dict(outputs.items()) if hasattr(outputs, "items") else {"output": outputs}
        steps.append(
            Step(
                names.get(id(predictor), type(predictor).__name__),
                {k: _text(v) for k, v in inputs.items()},
                {k: _text(v) for k, v in out.items()},
            )
        )
    return tuple(steps)


def _tool_calls(prediction: dspy.Prediction) -> tuple[dict[str, str], ...]:
    """Tool calls of a ``dspy.ReAct`` run, from its prediction's ``trajectory`` field."""
    trajectory = prediction.get("trajectory") if hasattr(prediction, "get") else None
    if not isinstance(trajectory, dict):
        return ()
    calls, i = [], 0
    while f"tool_name_{i}" in trajectory:
        calls.append(
            {
                "tool": _text(trajectory[f"tool_name_{i}"]),
                "args": _text(trajectory.get(f"tool_args_{i}", {})),
                "observation": _text(trajectory.get(f"observation_{i}", "")),
            }
        )
        i += 1
    return tuple(calls)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except Exception:
        return str(value)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def mean_score(trajectories: Sequence[Trajectory]) -> float:
    return sum(t.score for t in trajectories) / len(trajectories) if trajectories else 0.0


# ----- rendering within a budget ---------------------------------------------------------------------


def cut_middle(text: str, max_chars: int) -> str:
    """Keep the start and the end of ``text`` with a marker in between, at most about ``max_chars``."""
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - len(CUT_MARKER) - 8)
    head, tail = keep - keep // 2, keep // 2
    return text[:head] + CUT_MARKER.format(n=len(text) - head - tail) + text[len(text) - tail:]


def render_trajectory(traj: Trajectory, budget_tokens: int, model: str | None = None, critique: str | None = None,
                      evidence: bool = False) -> str:
    """Readable text of one trajectory that fits ``budget_tokens``: long fields are cut in the middle.
    ``evidence``: for a failed run, also the input lines where the expected and the predicted values sit."""
    field_chars = 4000
    while True:
        text = _render(traj, field_chars, critique, evidence)
        if count_tokens(text, model) <= budget_tokens or field_chars <= 40:
            return text if count_tokens(text, model) <= budget_tokens else _hard_cut(text, budget_tokens, model)
        field_chars //= 2


def _hard_cut(text: str, budget_tokens: int, model: str | None) -> str:
    return cut_to_tokens(text, budget_tokens, model, marker=CUT_MARKER.format(n="some"))


def input_lines(traj: Trajectory) -> list[str]:
    """The non-empty lines of a run's inputs, stripped."""
    return [line.strip() for text in traj.inputs.values() for line in text.splitlines() if line.strip()]


def answer_lines(traj: Trajectory) -> list[str]:
    """The input lines that hold one of the run's expected values (3 characters or more); a line that is
    only the value brings the line before it (its label) along."""
    lines = input_lines(traj)
    out = []
    for value in (v.strip() for v in traj.label.values()):
        if len(value) < 3:
            continue
        for k, line in enumerate(lines):
            if value in line:
                out += [line] if line != value or k == 0 else [lines[k - 1], line]
    return out


def evidence_lines(traj: Trajectory, chars: int = 200) -> list[str]:
    """Where a failed run's expected and predicted values sit in its inputs: the input line holding each
    (an extraction task's rule is usually in what surrounds the right value). Values under 3 characters
    and values found nowhere say nothing and are left out, but a prediction that is not in the input is named."""
    if not traj.failed:
        return []
    lines = input_lines(traj)
    out = []
    for role, values in (("expected", traj.label), ("predicted", traj.prediction or {})):
        for name, value in values.items():
            value = value.strip()
            if len(value) < 3 or (role == "predicted" and value == traj.label.get(name, "").strip()):
                continue
            where = next((line for line in lines if value in line), None)
            if where is not None:
                out.append(f"  the {role} {name} sits in the input line: {cut_middle(where, chars)}")
            elif role == "predicted":
                out.append(f"  the predicted {name} is not in the input")
    return ["Evidence:", *out] if out else []


def _render(traj: Trajectory, field_chars: int, critique: str | None, evidence: bool = False) -> str:
    def fields(d: dict[str, str]) -> str:
        return "\n".join(f"  {k}: {cut_middle(v, field_chars)}" for k, v in d.items())

    lines = [f"## Example {traj.index} (score {traj.score:.2f})"]
    if traj.metadata:
        lines.append(fields(traj.metadata))
    lines += ["Inputs:", fields(traj.inputs), "Expected:", fields(traj.label)]
    lines += ["Predicted:", fields(traj.prediction) if traj.prediction is not None else "  (no prediction)"]
    if evidence:
        lines += evidence_lines(traj, min(200, field_chars))
    if not traj.tool_calls:  # a ReAct run is told by its tool calls; other programs by their steps
        for n, step in enumerate(traj.steps):
            extra = {k: v for k, v in step.outputs.items() if k not in (traj.prediction or {})}
            if extra:
                lines += [f"Step {n + 1} ({step.predictor}):", fields(extra)]
    for n, call in enumerate(traj.tool_calls):
        lines.append(f"Tool call {n + 1}: {call['tool']}({cut_middle(call['args'], field_chars)})")
        lines.append(f"  observation: {cut_middle(call['observation'], field_chars)}")
    if traj.feedback:
        lines.append(f"Metric feedback: {cut_middle(traj.feedback, field_chars)}")
    for name, text in traj.predictor_feedback.items():
        if text != traj.feedback:
            lines.append(f"Metric feedback for predictor {name}: {cut_middle(text, field_chars)}")
    if traj.error:
        lines.append(f"Error: {cut_middle(traj.error, field_chars)}")
    if critique:
        lines.append(f"Critique: {cut_middle(critique, field_chars)}")
    return "\n".join(lines)


def pack_within_budget(texts: Sequence[str], budget_tokens: int, model: str | None = None) -> list[list[int]]:
    """Group consecutive texts into chunks whose summed tokens fit ``budget_tokens`` (indices per chunk)."""
    chunks: list[list[int]] = [[]]
    used = 0
    for i, text in enumerate(texts):
        tokens = count_tokens(text, model) + 2
        if chunks[-1] and used + tokens > budget_tokens:
            chunks.append([])
            used = 0
        chunks[-1].append(i)
        used += tokens
    return [c for c in chunks if c]
