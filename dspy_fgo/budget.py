"""Budget: LM calls, tokens, cost and metric calls per role; the one guard; token counting and windows.

Usage: every LM call DSPy makes reports to ``dspy.settings.usage_tracker``; :meth:`Budget.role`
installs a tracker per role that DSPy carries into its worker threads, so calls are counted once,
whoever makes them (cache hits are free). The guard: :meth:`Budget.acquire` is consulted before each
unit of LM work (one FGO prompt, one program run on one example) and counts what is in flight, so a
run overshoots a limit by at most the units in flight (``num_threads``). Work reserved up front (the
final valset check) is kept out of reach of the optimization.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

import dspy

from .executor import Shippable

logger = logging.getLogger("dspy." + __name__)

ROLES = ("task", "evaluator", "optimizer", "merge")
DEFAULT_CONTEXT_WINDOW = 8192
LIMITS = ("max_lm_calls", "max_tokens", "max_cost", "max_metric_calls")
OPTIMIZER_SIDE = ("evaluator", "optimizer", "merge")
PIPELINE = ("setup", "estimate", "divide", "optimize", "merge", "select")  # the stages, in the order they run


class BudgetExhausted(Exception):
    """Raised by the guard when a budget is spent; the run stops new work and keeps what it has."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class RoleUsage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    seconds: float = 0.0

    def merge(self, other: RoleUsage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.seconds += other.seconds
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost


class _RoleTracker:
    """What DSPy sees as ``settings.usage_tracker``: forwards each call's usage to one role."""

    def __init__(self, budget: Budget, role: str, parent: Any = None):
        self.budget, self.role, self.parent = budget, role, parent

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        self.budget.record(self.role, lm, usage_entry)
        if self.parent is not None:  # an outer tracker (dspy.track_usage, a benchmark) sees the call too
            self.parent.add_usage(lm, usage_entry)

    def __deepcopy__(self, memo):  # DSPy deep-copies the tracker per thread; we want one shared count.
        return self


class Budget(Shippable):
    """Thread-safe usage per role and the limits checked before each unit of LM work."""

    def __init__(self, max_lm_calls: int | None = None, max_tokens: int | None = None,
                 max_cost: float | None = None, max_metric_calls: int | None = None):
        for name, value in zip(LIMITS, (max_lm_calls, max_tokens, max_cost, max_metric_calls), strict=True):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.limits = dict(zip(LIMITS, (max_lm_calls, max_tokens, max_cost, max_metric_calls), strict=True))
        self._lock = threading.Lock()
        self.roles: dict[str, RoleUsage] = {}
        self.metric_calls = 0
        self.trims = 0  # prompts whose content was cut to fit a context window
        self.stopped: str | None = None  # the first reason the guard refused work
        self._in_flight = {"calls": 0, "metric_calls": 0}
        self._reserved_examples = 0  # example runs kept for the final valset check
        self.valset_reserved = 0  # how many were kept up front
        self._task_runs = 0  # example runs finished, to estimate the cost of a reserved run
        self.stage = "setup"  # the pipeline's current stage (stages run one after another)
        self.stages: dict[str, dict[str, RoleUsage]] = {}  # usage per stage and role
        self.stage_metric_calls: dict[str, int] = {}
        self._bar = None  # the run's one persistent progress bar (metric calls against the budget)
        self.estimate: dict[str, Any] | None = None  # the cost estimate made before the run (estimate.py)
        self.trainset_sample: dict[str, Any] | None = None  # the examples optimized on, when the budget sampled them

    # ----- stages and the run's progress bar ---------------------------------------------------------

    def open_progress(self, total: int | None, desc: str) -> None:
        from tqdm.auto import tqdm

        self._desc = desc
        self._bar = tqdm(total=total, desc=f"{desc} [{self.stage}]", unit=" metric calls", leave=True,
                         position=0, dynamic_ncols=True)

    def close_progress(self) -> None:
        if self._bar is not None:
            self._bar.set_description(f"{self._desc} [done]")
            self._bar.close()
            self._bar = None

    def set_stage(self, stage: str) -> None:
        self.stage = stage
        if self._bar is not None:
            self._bar.set_description(f"{self._desc} [{stage}]")

    def __getstate__(self):  # a Ray worker gets no progress bar
        state = super().__getstate__()
        state["_bar"] = None
        return state

    # ----- the guard ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def acquire(self, role: str, examples: int = 0, reserved: bool = False):
        """Admit one unit of LM work (``examples`` program runs, or one prompt when 0) or raise
        :class:`BudgetExhausted`. ``reserved`` work may use what was reserved up front."""
        with self._lock:
            calls = max(1, round(examples * self._calls_per_run())) if examples else 1
            reason = self._refusal(calls, examples, reserved)
            if reason is not None:
                self.stopped = self.stopped or reason
                raise BudgetExhausted(reason)
            self._in_flight["calls"] += calls
            self._in_flight["metric_calls"] += examples
        try:
            yield
        finally:
            with self._lock:
                self._in_flight["calls"] -= calls
                self._in_flight["metric_calls"] -= examples
                if role == "task" and examples:
                    self._task_runs += examples
                    if reserved:
                        self._reserved_examples = max(0, self._reserved_examples - examples)

    def reserve(self, examples: int) -> None:
        """Keep ``examples`` program runs (the final valset check) out of reach of the optimization."""
        with self._lock:
            self._reserved_examples = self.valset_reserved = examples

    def fits(self, examples: int, reserved: bool = False) -> bool:
        """Whether ``examples`` more program runs fit every limit now, beside what is reserved (``reserved``:
        within it)."""
        with self._lock:
            return self._refusal(max(1, round(examples * self._calls_per_run())), examples, reserved) is None

    def _calls_per_run(self) -> float:
        task = self.roles.get("task")
        return task.calls / self._task_runs if task is not None and self._task_runs else 1.0

    def _refusal(self, calls: int, examples: int, reserved: bool) -> str | None:
        total = self._total()
        keep = 0 if reserved else self._reserved_examples
        per_run_tokens = (total_task := self.roles.get("task", RoleUsage())).prompt_tokens + total_task.completion_tokens
        per_run_tokens = per_run_tokens / self._task_runs if self._task_runs else 0.0
        per_run_cost = (total_task.cost or 0.0) / self._task_runs if self._task_runs else 0.0
        spent = {
            "max_lm_calls": total.calls + self._in_flight["calls"] + calls - 1 + keep * self._calls_per_run(),
            "max_tokens": total.prompt_tokens + total.completion_tokens + keep * per_run_tokens,
            "max_cost": (total.cost or 0.0) + keep * per_run_cost,
            "max_metric_calls": self.metric_calls + self._in_flight["metric_calls"] + examples - (examples > 0)
                                + keep,
        }
        for name in LIMITS:
            limit = self.limits[name]
            if limit is not None and spent[name] >= limit:
                what = {"max_lm_calls": total.calls, "max_tokens": total.prompt_tokens + total.completion_tokens,
                        "max_cost": round(total.cost or 0.0, 6), "max_metric_calls": self.metric_calls}[name]
                held = f", {keep} valset runs reserved" if keep else ""
                return f"{name}={limit} reached ({what} spent{held})"
        return None

    # ----- usage -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def role(self, name: str):
        """Count every LM call made inside this block (in any DSPy thread) and its wall time as ``name``."""
        start = time.perf_counter()
        try:
            parent = dspy.settings.usage_tracker
            if isinstance(parent, _RoleTracker):  # nested roles: the inner one counts, outer trackers see it
                parent = parent.parent
            with dspy.context(usage_tracker=_RoleTracker(self, name, parent)):
                yield
        finally:
            with self._lock:
                self.roles.setdefault(name, RoleUsage()).seconds += time.perf_counter() - start

    def record(self, role: str, model: str, usage: dict[str, Any]) -> None:
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        cost = price(model, prompt, completion)
        with self._lock:
            entry = self.roles.setdefault(role, RoleUsage())
            entry.merge(RoleUsage(1, prompt, completion, cost))
            self.stages.setdefault(self.stage, {}).setdefault(role, RoleUsage()).merge(
                RoleUsage(1, prompt, completion, cost))

    def count_metric_call(self) -> None:
        with self._lock:
            self.metric_calls += 1
            self.stage_metric_calls[self.stage] = self.stage_metric_calls.get(self.stage, 0) + 1
            if self._bar is not None:
                self._bar.update(1)

    def count_trim(self) -> None:
        with self._lock:
            self.trims += 1

    def check_prices(self, lms: dict[str, Any]) -> None:
        """``max_cost`` needs every LM's price: refuse it up front when litellm cannot price one."""
        if self.limits["max_cost"] is None:
            return
        unpriced = sorted({lm.model for lm in lms.values() if price(lm.model, 1000, 1000) is None})
        if unpriced:
            raise ValueError(
                f"max_cost={self.limits['max_cost']} cannot be enforced: litellm has no price for {unpriced}. "
                "Use max_tokens or max_lm_calls instead, or register the model's price with litellm.register_model."
            )

    def _total(self, roles: tuple[str, ...] | None = None) -> RoleUsage:
        out = RoleUsage()
        for name, usage in self.roles.items():
            if roles is None or name in roles:
                out.merge(usage)
        return out

    def total(self, roles: tuple[str, ...] | None = None) -> RoleUsage:
        with self._lock:
            return self._total(roles)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "roles": {name: asdict(usage) for name, usage in self.roles.items()},
                "optimizer_side": asdict(self._total(OPTIMIZER_SIDE)),
                "total": asdict(self._total()),
                "metric_calls": self.metric_calls,
                "task_runs": self._task_runs,
                "context_trims": self.trims,
                "limits": dict(self.limits),
                "stopped": self.stopped,
                "valset_reserved": self.valset_reserved,
                "stages": {stage: {"metric_calls": self.stage_metric_calls.get(stage, 0),
                                   "roles": {r: asdict(u) for r, u in roles.items()}}
                           for stage, roles in {**{s: {} for s in self.stage_metric_calls}, **self.stages}.items()},
                **({"estimate": self.estimate} if self.estimate is not None else {}),
                **({"trainset_sample": self.trainset_sample} if self.trainset_sample is not None else {}),
            }

    def add_since(self, data: dict[str, Any], before: dict[str, Any]) -> None:
        """Add what a copy of this budget (a Ray worker's) spent after the snapshot ``before``."""
        old = before.get("roles", {})
        with self._lock:
            for name, usage in data.get("roles", {}).items():
                spent = RoleUsage(**usage)
                if name in old:
                    prev = RoleUsage(**old[name])
                    spent = RoleUsage(spent.calls - prev.calls, spent.prompt_tokens - prev.prompt_tokens,
                                      spent.completion_tokens - prev.completion_tokens,
                                      None if spent.cost is None else spent.cost - (prev.cost or 0.0),
                                      spent.seconds - prev.seconds)
                self.roles.setdefault(name, RoleUsage()).merge(spent)
            for key, attr in (("metric_calls", "metric_calls"), ("task_runs", "_task_runs"), ("context_trims", "trims")):
                setattr(self, attr, getattr(self, attr) + int(data.get(key, 0)) - int(before.get(key, 0)))
            self.stopped = self.stopped or data.get("stopped")

    def restore(self, data: dict[str, Any]) -> None:
        """Continue a resumed run's spending (the usage saved in its checkpoint)."""
        with self._lock:
            self.roles = {name: RoleUsage(**usage) for name, usage in data.get("roles", {}).items()}
            self.metric_calls = int(data.get("metric_calls", 0))
            self._task_runs = int(data.get("task_runs", 0))
            self.trims = int(data.get("context_trims", 0))
            self.estimate = data.get("estimate", self.estimate)  # the first run's (a resumed run makes none)
            stages = data.get("stages", {})
            self.stage_metric_calls = {name: int(stage.get("metric_calls", 0)) for name, stage in stages.items()}
            self.stages = {name: {r: RoleUsage(**u) for r, u in stage.get("roles", {}).items()}
                           for name, stage in stages.items()}


def spent_before(data: dict[str, Any], stage: str) -> dict[str, Any]:
    """A saved budget (``Budget.to_dict()``) without what ``stage`` and the stages after it spent: where the
    run stood when ``stage`` began (role seconds and context trims are not kept per stage: they stay whole)."""
    later = PIPELINE[PIPELINE.index(stage):]
    dropped = [name for name in data.get("stages", {}) if name in later]
    out = json.loads(json.dumps(data))
    for name in dropped:
        spent = out["stages"].pop(name)
        out["metric_calls"] -= spent.get("metric_calls", 0)
        out["task_runs"] -= spent.get("metric_calls", 0)
        for role, usage in spent.get("roles", {}).items():
            kept = out["roles"][role]
            for key in ("calls", "prompt_tokens", "completion_tokens"):
                kept[key] -= usage[key]
            if kept.get("cost") is not None:
                kept["cost"] -= usage.get("cost") or 0.0
    out["optimizer_side"] = _sum(u for r, u in out["roles"].items() if r in OPTIMIZER_SIDE)
    out["total"] = _sum(out["roles"].values())
    out["stopped"] = None
    return out


def _sum(usages) -> dict[str, Any]:
    out = RoleUsage()
    for usage in usages:
        out.merge(RoleUsage(**usage))
    return asdict(out)


def _litellm():
    import litellm

    litellm.suppress_debug_info = True  # otherwise it prints a provider list for every unknown model
    return litellm


def price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The call's price when litellm knows the model's prices, else None."""
    try:
        prompt_cost, completion_cost = _litellm().cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return float(prompt_cost + completion_cost)
    except Exception:
        return None


# ----- tokens and context windows --------------------------------------------------------------------


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens in ``text``: litellm's counter for ``model`` (tiktoken for unknown models), never below a
    conservative estimate (two tokens per CJK character or symbol, one per 4 other characters), so budgets
    hold for models whose tokenizer we do not have."""
    if not text:
        return 0
    try:
        counted = int(_litellm().token_counter(model=model or "gpt-4o", text=text))
    except Exception:
        counted = 0
    return max(counted, _estimate(text))


def _estimate(text: str) -> int:
    wide = sum(1 for ch in text if ord(ch) > 0x2E7F or unicodedata.category(ch) == "So")
    return wide * 2 + (len(text) - wide) // 4 if wide else len(text) // 4


def cut_to_tokens(text: str, max_tokens: int, model: str | None = None, marker: str = "\n...[cut]...\n") -> str:
    """``text`` with its middle cut out so that it fits ``max_tokens`` (start and end kept)."""
    tokens = count_tokens(text, model)
    if tokens <= max_tokens:
        return text
    chars = int(len(text) * max_tokens / tokens)
    while True:
        keep = max(0, chars - len(marker))
        head, tail = keep - keep // 2, keep // 2
        cut = text[:head] + marker + (text[len(text) - tail:] if tail else "")
        if count_tokens(cut, model) <= max_tokens or chars <= 0:
            return cut if chars > 0 else ""
        chars = int(chars * 0.85) - 1


_UNKNOWN_WINDOWS_LOGGED: set[str | None] = set()


def context_window(lm: Any, override: int | None = None) -> int:
    """The LM's input context window in tokens: ``override``, else litellm's model info, else a default."""
    if override:
        return int(override)
    window = getattr(lm, "context_window", None)
    if window:
        return int(window)
    model = getattr(lm, "model", None)
    if model:
        try:
            info = _litellm().get_model_info(model)
            window = info.get("max_input_tokens") or info.get("max_tokens")
            if window:
                return int(window)
        except Exception:
            pass
    if model not in _UNKNOWN_WINDOWS_LOGGED:
        _UNKNOWN_WINDOWS_LOGGED.add(model)
        logger.info("Context window of %s unknown; assuming %d tokens (pass context_window= to set it)",
                    model, DEFAULT_CONTEXT_WINDOW)
    return DEFAULT_CONTEXT_WINDOW
