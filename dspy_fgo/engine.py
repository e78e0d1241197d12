"""Engine: what every stage of one ``compile()`` shares (the program, data, metric, LMs, accounting).

The stages (``optimize.py``, ``merge.py``) are functions of an :class:`Engine`; it evaluates candidates,
calls FGO's signatures on the right LM under the right accounting role, and keeps the record of errors.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

from .accounting import Accounting, context_window, count_tokens
from .candidate import Candidate
from .rollout import Trajectory, run_examples

logger = logging.getLogger(__name__)

# Tokens kept free for the signature's own instructions, field headers and the adapter's formatting.
PROMPT_OVERHEAD_TOKENS = 700
# Our counter (litellm's, tiktoken for unknown models) is not the receiving model's tokenizer: keep a margin.
TOKENIZER_MARGIN = 0.9


@dataclass
class Engine:
    student: dspy.Module
    trainset: Sequence[dspy.Example]
    metric: Callable
    evaluator_lm: dspy.LM
    optimizer_lm: dspy.LM
    merge_lm: dspy.LM
    task_lm: dspy.LM | None = None
    accounting: Accounting = field(default_factory=Accounting)
    num_threads: int = 1
    context_window_override: int | None = None
    max_retries: int = 2
    checkpoint: Any = None  # a checkpoint.Checkpoint when compile() was given a log_dir
    errors: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def evaluate(self, candidate: Candidate, indices: Sequence[int], desc: str | None = None,
                 examples: Sequence[dspy.Example] | None = None, num_threads: int | None = None) -> list[Trajectory]:
        """Run ``candidate`` on ``examples`` (default: the trainset) at ``indices``, counted as the task role."""
        program = candidate.apply(self.student)
        with self.accounting.role("task"), dspy.context(**self._task_context()):
            trajectories = run_examples(
                program, examples if examples is not None else self.trainset, indices, self.metric,
                num_threads=num_threads or self.num_threads, desc=desc,
            )
        for t in trajectories:
            if t.error and t.error.startswith("metric:"):
                self.record_error("metric", t.error, example=t.index)
        return trajectories

    def __getstate__(self):  # travels to Ray workers without its lock or checkpoint
        state = self.__dict__.copy()
        del state["_lock"]
        state["checkpoint"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def fresh_copy(self) -> Engine:
        """A copy with its own empty accounting and error list (for work done elsewhere, then added back)."""
        other = copy.copy(self)
        other.accounting = Accounting(self.accounting.max_lm_calls, self.accounting.max_tokens, self.accounting.max_cost)
        other.errors, other._lock, other.checkpoint = [], threading.Lock(), None
        return other

    def _task_context(self) -> dict[str, Any]:
        return {"lm": self.task_lm} if self.task_lm is not None else {}

    def call(self, signature: type[dspy.Signature], role: str, **inputs: str) -> dspy.Prediction | None:
        """One FGO prompt on the role's LM, retried with backoff on any failure (timeouts, rate limits,
        server errors, unparseable replies); after ``max_retries`` the failure is recorded and gives None."""
        lm = self.lm_for(role)
        for attempt in range(self.max_retries + 1):
            try:
                with self.accounting.role(role), dspy.context(lm=lm):
                    # a new rollout_id makes DSPy's cache miss, so a retry is a fresh sample
                    config = {"rollout_id": attempt} if attempt else {}
                    return dspy.Predict(signature)(**inputs, config=config)
            except Exception as exc:
                if attempt < self.max_retries:
                    logger.info("%s call failed (%s), retrying", role, type(exc).__name__)
                    time.sleep(min(8.0, 0.5 * 2**attempt))
                    continue
                self.record_error(role, f"{type(exc).__name__}: {exc}", signature=signature.__name__)
        return None

    def lm_for(self, role: str) -> dspy.LM:
        return {"evaluator": self.evaluator_lm, "optimizer": self.optimizer_lm, "merge": self.merge_lm}[role]

    def input_budget(self, role: str, *fixed_texts: str) -> int:
        """Tokens left for variable content in a prompt to ``role``'s LM after ``fixed_texts`` and the reply."""
        lm = self.lm_for(role)
        window = context_window(lm, self.context_window_override)
        reply = int((getattr(lm, "kwargs", {}) or {}).get("max_tokens") or 1000)
        fixed = sum(count_tokens(t, lm.model) for t in fixed_texts)
        return int(window * TOKENIZER_MARGIN) - reply - fixed - PROMPT_OVERHEAD_TOKENS

    def record_error(self, stage: str, message: str, **details: Any) -> None:
        logger.warning("%s error: %s", stage, message[:300])
        with self._lock:
            self.errors.append({"stage": stage, "message": message[:2000], **details})
