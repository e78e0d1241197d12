"""RunContext: what every stage of one ``compile()`` shares, built and checked once, then not changed.

It holds the student, the data, the metric, the LMs per role, the budget guard, the error log and the
checkpoint, and it is the one place LM work goes through: :meth:`RunContext.run_unit` applies the
single policy for every unit of LM work (one FGO prompt, one program run on one example), on threads
and on Ray alike: stop on Ctrl-C, ask the budget, time out, retry with backoff (tenacity), record the
final failure by kind, and stop the run with :class:`LMFailedError` when an LM keeps failing.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from .budget import Budget, BudgetExhausted, context_window, count_tokens
from .candidate import Candidate
from .executor import Shippable, check_interrupt
from .ledger import Ledger
from .persist import Checkpoint, collect_secrets, redact
from .rollout import MetricContract, Trajectory, run_examples
from .signatures import prompt_adapter

logger = logging.getLogger("dspy." + __name__)

# Tokens kept free for the signature's own instructions, field headers and the adapter's formatting.
PROMPT_OVERHEAD_TOKENS = 700
# Our counter is not the receiving model's tokenizer: keep a margin.
TOKENIZER_MARGIN = 0.9
# An LM whose last this-many units of work all failed (after retries) stops the run.
FAILURE_STREAK = 5
MAX_ERROR_RECORDS = 500


class LMFailedError(RuntimeError):
    """An LM kept failing (wrong key, server down, bad model name): the run stops instead of going on
    with zeros. Finished checkpoints are kept."""


def _sleep(seconds: float) -> None:  # module level so that tests can skip the backoff
    threading.Event().wait(seconds)


def _unparseable(exc: BaseException) -> bool:
    from dspy.utils.exceptions import AdapterParseError

    return isinstance(exc, AdapterParseError)


class ErrorLog(Shippable):
    """Every failure of the run, counted by kind; detects an LM that keeps failing."""

    def __init__(self, secrets: Sequence[str] = ()):
        self._lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.secrets = tuple(secrets)
        self._recent: dict[str, deque[bool]] = {}
        self.outcomes: dict[str, Counter[bool]] = {}  # per role: units that failed (True) and that did not

    def record(self, stage: str, message: str, **details: Any) -> None:
        message = redact(message, self.secrets)[:2000]
        logger.warning("%s error: %s", stage, message[:300])
        with self._lock:
            self.counts[stage] += 1
            if len(self.records) < MAX_ERROR_RECORDS:
                self.records.append({"stage": stage, "message": message, **details})

    def outcome(self, role: str, exc: BaseException | None) -> None:
        """Count a unit's outcome; raise :class:`LMFailedError` after ``FAILURE_STREAK`` failures in a row."""
        with self._lock:
            recent = self._recent.setdefault(role, deque(maxlen=FAILURE_STREAK))
            recent.append(exc is not None)
            self.outcomes.setdefault(role, Counter())[exc is not None] += 1
            failing = len(recent) == FAILURE_STREAK and all(recent)
        if failing:
            what = redact(f"{type(exc).__name__}: {exc}", self.secrets)[:300]
            raise LMFailedError(
                f"The {role} LM failed on {FAILURE_STREAK} calls in a row after retries (last: {what}). "
                f"Check its model name, API key and server; finished work is kept in log_dir if one was given."
            )

    def raise_if_every_call_failed(self, roles: Sequence[str]) -> None:
        """A run too small for ``FAILURE_STREAK`` failures in a row still stops when an LM failed on every
        one of its calls: the run would otherwise return the seed as if optimizing had found nothing."""
        for role in roles:
            counts = self.outcomes.get(role, Counter())
            if counts[True] and not counts[False]:
                last = next((r["message"] for r in reversed(self.records) if r["stage"] == role), "")
                raise LMFailedError(
                    f"The {role} LM failed on every one of its {counts[True]} calls after retries (last: "
                    f"{last[:300]}). Check its model name, API key and server; finished work is kept in log_dir "
                    "if one was given.")


class SeedRuns(Shippable):
    """The seed's runs on training examples made before the pipeline starts (the cost estimate's pilot),
    handed once to the first evaluation of the seed on those examples: the pilot's metric calls are the
    ones the first step would have made, not extra ones."""

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[int, Trajectory] = {}

    def put(self, trajectories: Sequence[Trajectory]) -> None:
        with self._lock:
            self._runs.update({t.index: t for t in trajectories})

    def take(self, indices: Sequence[int]) -> dict[int, Trajectory]:
        """The stored runs at ``indices`` (each handed out once)."""
        with self._lock:
            return {i: self._runs.pop(i) for i in indices if i in self._runs}

    def __len__(self) -> int:
        return len(self._runs)


@dataclass(frozen=True)
class RunContext:
    student: dspy.Module
    trainset: tuple[dspy.Example, ...]
    valset: tuple[dspy.Example, ...] | None
    metric: Callable
    lms: dict[str, dspy.LM]  # task, evaluator, optimizer, merge
    seed: Candidate
    method: str = "fgo"
    budget: Budget = field(default_factory=Budget)
    errors: ErrorLog = field(default_factory=ErrorLog)
    checkpoint: Checkpoint | None = None
    num_threads: int = 1
    max_retries: int = 2
    timeout: float | None = None
    max_component_tokens: int = 1000
    context_window: int | None = None
    critique_successes: bool = False
    random_seed: int = 0
    epochs: int = 2
    perfect_score: float = 1.0
    failure_score: float = 0.0
    skip_perfect_score: bool = False
    metric_five_args: bool = False
    ledger: Ledger = field(default_factory=Ledger)
    # The method's switches. FGO passes every one (its defaults are in fgo.py); these field defaults, the
    # paper's procedure with the format check, serve contexts that tests build with ``create``.
    feedback: str = "critique"  # "critique": the evaluator LM critiques each run; "raw": the runs as they are
    update: str = "rewrite"  # "rewrite": a step rewrites a component; "rules": it adds itemized rules
    acceptance: str = "improve"  # a proposal is kept when it scores higher ("improve") or as high ("tie"; "tie-once":
    # as high only while the best is the seed; "climb": as "tie-once", and a proposal not kept is dropped, the
    # next step starting again from the best)
    check_format: bool = True  # reject proposals that are code, JSON or a restated answer
    check_grounding: bool = False  # reject proposals that point at an input phrase never on the answer's line
    evidence: bool = False  # show, for a failed run, the input lines where the expected and predicted values sit
    prune_rules: bool | str = False  # after an accepted rules merge ("all": after any), drop the rules that do
    # not help on its union
    valset_candidates: int = 1  # merge-tree nodes the final valset check scores (the root first)
    backtest: str = "full"  # a merge's back-test: the whole union ("full"), raced on growing slices ("race"),
    # or raced and decided on half of the union ("half")
    in_rounds: bool = False  # a round of a run spent in rounds: pruning spends one union back-test per merge
    seed_runs: SeedRuns = field(default_factory=SeedRuns)  # the estimate's pilot runs, reused once

    @classmethod
    def create(cls, student: dspy.Module, trainset: Sequence[dspy.Example], metric: Callable, *,
               optimizer_lm: dspy.LM, task_lm: dspy.LM | None = None, evaluator_lm: dspy.LM | None = None,
               merge_lm: dspy.LM | None = None, valset: Sequence[dspy.Example] | None = None,
               **settings: Any) -> RunContext:
        """A context from parts (the pipeline builds its own in ``fgo.py``; tests use this)."""
        lms = {"task": task_lm or dspy.settings.lm, "evaluator": evaluator_lm or optimizer_lm,
               "optimizer": optimizer_lm, "merge": merge_lm or optimizer_lm}
        settings.setdefault("errors", ErrorLog(collect_secrets(lms.values())))
        seed = settings.pop("seed", None) or Candidate.from_program(student, "all")
        return cls(student, tuple(trainset), tuple(valset) if valset is not None else None, metric, lms, seed,
                   **settings)

    # ----- the one policy for LM work ----------------------------------------------------------------

    def run_unit(self, role: str, fn: Callable[[int], Any], *, examples: int = 0, reserved: bool = False,
                 what: str = "") -> tuple[Any, BaseException | None]:
        """``fn(attempt)`` under the policy; returns ``(value, None)`` or ``(None, final exception)``.

        :class:`BudgetExhausted`, :class:`LMFailedError` and ``KeyboardInterrupt`` propagate."""
        fatal = (BudgetExhausted, LMFailedError, KeyboardInterrupt)
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential(multiplier=0.5, max=8.0),
            retry=retry_if_exception(lambda e: not isinstance(e, fatal)),
            sleep=lambda s: _sleep(s),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number - 1
                    check_interrupt()
                    with self.budget.acquire(role, examples, reserved):
                        value = call_with_timeout(lambda n=number: fn(n), self.timeout)
        except fatal:
            raise
        except Exception as exc:
            self.errors.record(role, f"{type(exc).__name__}: {exc}", **({"what": what} if what else {}))
            if not _unparseable(exc):  # an unusable reply is skipped; a failing LM is counted
                self.errors.outcome(role, exc)
            return None, exc
        self.errors.outcome(role, None)
        return value, None

    def call(self, signature: type[dspy.Signature], role: str, **inputs: str) -> dspy.Prediction | None:
        """One FGO prompt on the role's LM under the policy; a final failure gives None (recorded)."""
        def predict(attempt: int) -> dspy.Prediction:
            with self.budget.role(role), dspy.context(lm=self.lms[role], adapter=prompt_adapter()):
                # a new rollout_id makes DSPy's cache miss, so a retry is a fresh sample
                return dspy.Predict(signature)(**inputs, config={"rollout_id": attempt} if attempt else {})

        return self.run_unit(role, predict, what=signature.__name__)[0]

    def evaluate(self, candidate: Candidate, indices: Sequence[int], *, threads: int = 1, desc: str | None = None,
                 examples: Sequence[dspy.Example] | None = None, reserved: bool = False) -> list[Trajectory]:
        """Run ``candidate`` on ``examples`` (default: the trainset) at ``indices`` as the task role."""
        program = candidate.apply(self.student)
        split = "train" if examples is None or examples is self.trainset else "val"
        callbacks = list(dspy.settings.get("callbacks") or [])
        call_id = uuid.uuid4().hex
        # DSPy's callbacks see FGO's evaluations as they see dspy.Evaluate's
        _notify(callbacks, "on_evaluate_start", call_id=call_id, instance=self, inputs={
            "program": program, "split": split, "indices": list(indices), "desc": desc})
        try:
            trajectories = self._reuse_seed_runs(candidate, split, indices, reserved, lambda rest: self._evaluate(
                program, rest, threads, desc, examples, reserved))
        except BaseException as exc:
            _notify(callbacks, "on_evaluate_end", call_id=call_id, outputs=None, exception=exc)
            raise
        self.ledger.record(candidate, split, trajectories)
        _notify(callbacks, "on_evaluate_end", call_id=call_id, exception=None, outputs=dspy.Prediction(
            score=sum(t.score for t in trajectories) / max(1, len(trajectories)), split=split,
            results=[(t.index, t.prediction, t.score) for t in trajectories]))
        return trajectories

    def _reuse_seed_runs(self, candidate: Candidate, split: str, indices: Sequence[int], reserved: bool,
                         evaluate: Callable[[list[int]], list[Trajectory]]) -> list[Trajectory]:
        """``evaluate(indices)``, but the seed's runs made by the pilot (:class:`SeedRuns`) stand in for
        their examples: the runs are not made, nor their metric calls counted, twice."""
        indices = list(indices)
        if (not len(self.seed_runs) or split != "train" or reserved or candidate != self.seed
                or len(set(indices)) != len(indices)):
            return evaluate(indices)
        done = self.seed_runs.take(indices)
        rest = [i for i in indices if i not in done]
        if not done:
            return evaluate(indices)
        fresh = {t.index: t for t in evaluate(rest)} if rest else {}
        return [done[i] if i in done else fresh[i] for i in indices]

    def _evaluate(self, program: dspy.Module, indices: Sequence[int], threads: int, desc: str | None,
                  examples: Sequence[dspy.Example] | None, reserved: bool) -> list[Trajectory]:
        def runner(run_one: Callable[[int], Any]):
            return self.run_unit("task", run_one, examples=1, reserved=reserved, what="program run")

        with self.budget.role("task"), dspy.context(lm=self.lms["task"]):
            trajectories = run_examples(program, examples if examples is not None else self.trainset, indices,
                                        self.metric, num_threads=threads, desc=desc, runner=runner,
                                        on_metric=self.budget.count_metric_call, contract=self.contract())
        for t in trajectories:
            if t.error and t.error.startswith("metric:"):
                self.errors.record("metric", t.error, example=t.index)
        failed = [t.error for t in trajectories if t.error and not t.error.startswith("metric:")]
        if len(trajectories) >= 2 and len(failed) > len(trajectories) / 2:
            raise LMFailedError(
                f"The program (task LM) failed on {len(failed)} of {len(trajectories)} examples of one step after "
                f"retries (first: {redact(failed[0], self.errors.secrets)[:300]}). Check the task LM's model name, "
                "API key and server; finished work is kept in log_dir if one was given."
            )
        return trajectories

    def contract(self) -> MetricContract:
        return MetricContract(self.perfect_score, self.failure_score, self.metric_five_args,
                              self.critique_successes)

    # ----- windows -----------------------------------------------------------------------------------

    def input_budget(self, role: str, *fixed_texts: str) -> int:
        """Tokens left for variable content in a prompt to ``role``'s LM after ``fixed_texts`` and the reply."""
        lm = self.lms[role]
        window = context_window(lm, self.context_window)
        reply = int((getattr(lm, "kwargs", {}) or {}).get("max_tokens") or 1000)
        fixed = sum(count_tokens(t, lm.model) for t in fixed_texts)
        return int(window * TOKENIZER_MARGIN) - reply - fixed - PROMPT_OVERHEAD_TOKENS

    def tokens(self, text: str, role: str = "optimizer") -> int:
        return count_tokens(text, self.lms[role].model)


def _notify(callbacks: Sequence[Any], event: str, **kwargs: Any) -> None:
    for cb in callbacks:  # as DSPy does, a failing callback is logged, not fatal
        try:
            getattr(cb, event)(**kwargs)
        except Exception as exc:
            logger.warning("Error in callback %s.%s: %s", type(cb).__name__, event, exc)


def call_with_timeout(fn: Callable[[], Any], timeout: float | None) -> Any:
    """``fn()`` on a daemon thread (DSPy's settings carried over); a hung call raises ``TimeoutError``
    after ``timeout`` seconds and Ctrl-C is noticed within a fraction of a second."""
    done, box = threading.Event(), {}
    ctx = contextvars.copy_context()

    def target():
        try:
            box["value"] = ctx.run(fn)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, daemon=True, name="fgo-lm-call").start()
    waited, step = 0.0, 0.1
    while not done.wait(step):
        waited += step
        check_interrupt()
        if timeout is not None and waited >= timeout:
            raise TimeoutError(f"LM work took longer than timeout={timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


