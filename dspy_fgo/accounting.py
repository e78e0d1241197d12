"""Accounting: LM calls, tokens, cost and seconds per role; token counting and context windows.

Every LM call DSPy makes (ours, and those of DSPy's own optimizers through ``lm.copy()``) reports its usage
to ``dspy.settings.usage_tracker``. :class:`Accounting` installs one tracker per role with
``dspy.context``; DSPy carries that setting into its worker threads, so calls are counted once, in
one place, whoever makes them. Cache hits are free and not counted.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import dspy

logger = logging.getLogger(__name__)

ROLES = ("task", "evaluator", "optimizer", "merge")
DEFAULT_CONTEXT_WINDOW = 8192


@dataclass
class RoleUsage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    seconds: float = 0.0

    def add(self, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def merge(self, other: RoleUsage) -> None:
        """Add another usage record (calls and seconds included) to this one."""
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.seconds += other.seconds
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost


class _RoleTracker:
    """What DSPy sees as ``settings.usage_tracker``: forwards each call's usage to one role."""

    def __init__(self, accounting: Accounting, role: str, parent: Any = None):
        self.accounting, self.role, self.parent = accounting, role, parent

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        self.accounting.record(self.role, lm, usage_entry)
        if self.parent is not None:  # an outer tracker (dspy.track_usage, a benchmark) sees the call too
            self.parent.add_usage(lm, usage_entry)

    def __deepcopy__(self, memo):  # DSPy deep-copies the tracker per thread; we want one shared count.
        return self


class Accounting:
    """Thread-safe usage per role, with optional budgets checked by :meth:`over_budget`."""

    def __init__(self, max_lm_calls: int | None = None, max_tokens: int | None = None, max_cost: float | None = None):
        self._lock = threading.Lock()
        self.roles: dict[str, RoleUsage] = {}
        self.max_lm_calls, self.max_tokens, self.max_cost = max_lm_calls, max_tokens, max_cost
        self.trims = 0  # prompts whose content was cut to fit a context window

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
            elapsed = time.perf_counter() - start
            with self._lock:
                self.roles.setdefault(name, RoleUsage()).seconds += elapsed

    def record(self, role: str, model: str, usage: dict[str, Any]) -> None:
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        cost = _cost(model, prompt, completion)
        with self._lock:
            self.roles.setdefault(role, RoleUsage()).add(prompt, completion, cost)

    def __getstate__(self):  # travels to Ray workers without its lock
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def add_from(self, other: Accounting) -> None:
        """Add another accounting's usage (a Ray worker's) to this one."""
        with self._lock:
            for name, usage in other.roles.items():
                self.roles.setdefault(name, RoleUsage()).merge(usage)
            self.trims += other.trims

    def count_trim(self) -> None:
        with self._lock:
            self.trims += 1

    def total(self, roles: tuple[str, ...] | None = None) -> RoleUsage:
        out = RoleUsage()
        with self._lock:
            for name, usage in self.roles.items():
                if roles is None or name in roles:
                    out.merge(usage)
        return out

    def over_budget(self) -> str | None:
        """The reason a budget is exhausted, or None."""
        total = self.total()
        if self.max_lm_calls is not None and total.calls >= self.max_lm_calls:
            return f"max_lm_calls={self.max_lm_calls} reached ({total.calls} calls)"
        tokens = total.prompt_tokens + total.completion_tokens
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"max_tokens={self.max_tokens} reached ({tokens} tokens)"
        if self.max_cost is not None and (total.cost or 0.0) >= self.max_cost:
            return f"max_cost={self.max_cost} reached ({total.cost:.4f})"
        return None

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            roles = {name: asdict(usage) for name, usage in self.roles.items()}
        optimizer_side = self.total(("evaluator", "optimizer", "merge"))
        return {
            "roles": roles,
            "optimizer_side": asdict(optimizer_side),
            "total": asdict(self.total()),
            "context_trims": self.trims,
        }


def _litellm():
    import litellm

    litellm.suppress_debug_info = True  # otherwise it prints a provider list for every unknown model
    return litellm


def _cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The call's price when litellm knows the model's prices, else None."""
    try:
        litellm = _litellm()

        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
        return float(prompt_cost + completion_cost)
    except Exception:
        return None


# ----- tokens and context windows --------------------------------------------------------------------


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens in ``text`` by litellm's counter for ``model`` (tiktoken's cl100k for unknown models)."""
    if not text:
        return 0
    litellm = _litellm()
    try:
        return int(litellm.token_counter(model=model or "gpt-4o", text=text))
    except Exception:
        return max(1, len(text) // 4)


_UNKNOWN_WINDOWS_LOGGED: set[str | None] = set()


def context_window(lm: Any, override: int | None = None) -> int:
    """The LM's input context window in tokens: ``override``, else litellm's model info, else a default."""
    if override:
        return int(override)
    model = getattr(lm, "model", None)
    window = getattr(lm, "context_window", None)
    if window:
        return int(window)
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
