"""FGO(Teleprompter).compile(): validate -> estimate -> divide -> optimize subsets -> merge -> select -> record.

The estimate (``estimate=True``, ``estimate.py``) logs the expected calls and tokens per role before any
optimizer-side work, from the plan and a pilot of the seed on a few examples whose runs the first step reuses.

The baselines (``baselines.py``) are the same pipeline with another data schedule and no merge: a
method is a schedule object and a merger object, so every method shares every policy (errors,
budgets, windows, checkpoints, selection).
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import dspy
from dspy.teleprompt import Teleprompter

from .backtest import BACKTEST_MODES, backtest_share
from .budget import Budget
from .candidate import COMPONENT_KINDS, Candidate
from .compat import (
    AUTO_EPOCHS,
    affordable_trainset,
    gepa_auto_budget,
    merge_levels,
    plan,
    reject_unknown,
    split_known_knobs,
    valset_reservation,
)
from .context import ErrorLog, LMFailedError, RunContext
from .divide import DivideSchedule, resolve_num_subsets, sample_indices
from .executor import ctrl_c_stops_the_run, executor_for, reset_interrupt
from .ledger import Ledger
from .merge import MergeNode, ProgressiveMerger
from .optimize import SubsetResult, optimize_job
from .persist import Checkpoint, collect_secrets, describe_callable, describe_lm, examples_digest, fingerprint
from .prune import PRUNE_MODES
from .rollout import check_metric
from .rounds import compile_in_rounds, round_epochs, round_optimizer
from .select import select_and_record
from .tracking import RunTracker

if TYPE_CHECKING:
    from .estimate import CostEstimate

logger = logging.getLogger("dspy." + __name__)

FEEDBACK_MODES = ("critique", "raw")
UPDATE_MODES = ("rewrite", "rules")
ACCEPTANCE_MODES = ("improve", "tie", "tie-once", "climb")

# The paper's procedure (critic, free-text rewrites and LM merges, a subset keeps a rewrite that scores higher)
# with none of the additions: ``FGO(**PAPER_SETTINGS, ...)``. The defaults are the additions that measured
# better with small LMs (benchmarks/README.md: itemized rules, ties kept, the proposer shown the raw runs and
# where the values sit, ungrounded rules rejected, rule pruning, four candidates for the valset check).
PAPER_SETTINGS: dict[str, Any] = {"update": "rewrite", "acceptance": "improve", "feedback": "critique",
                                  "check_format": False, "evidence": False, "check_grounding": False,
                                  "prune_rules": False, "valset_candidates": 1}


class TextGradOptimizer(Teleprompter):
    """The pipeline every method shares: LLM critiques (textual gradients) rewrite the program's
    instructions and tool descriptions. A method supplies :meth:`schedule` and :meth:`merger`."""

    method = "textgrad"
    rounds = False  # FGO's option (rounds=True): spend a budget beyond ROUND_EPOCHS steps per subset in rounds
    _in_rounds = False  # set on a round's copy of the optimizer (rounds.round_optimizer)

    def __init__(
        self,
        metric: Callable | None = None,
        *,
        optimizer_lm: dspy.LM | None = None,
        evaluator_lm: dspy.LM | None = None,
        merge_lm: dspy.LM | None = None,
        task_lm: dspy.LM | None = None,
        reflection_lm: dspy.LM | None = None,
        epochs: int | None = None,
        components: str = "all",
        num_threads: int | None = 4,
        seed: int | None = 0,
        context_window: int | None = None,
        critique_successes: bool = False,
        input_keys: Sequence[str] | None = None,
        max_lm_calls: int | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        max_metric_calls: int | None = None,
        auto: str | None = None,
        max_full_evals: int | None = None,
        log_dir: str | None = None,
        max_retries: int = 2,
        timeout: float | None = 600.0,
        max_component_tokens: int = 1000,
        executor: str = "thread",
        perfect_score: float = 1.0,
        failure_score: float = 0.0,
        skip_perfect_score: bool = True,
        track_stats: bool = False,
        track_best_outputs: bool = False,
        use_mlflow: bool = False,
        feedback: str = "raw",
        update: str = "rules",
        acceptance: str = "tie",
        check_format: bool = True,
        check_grounding: bool = True,
        evidence: bool = True,
        backtest: str = "full",
        prune_rules: bool | str | None = None,
        valset_candidates: int = 4,
        reserve_candidates: bool = False,
        estimate: bool = True,
        **unknown: Any,
    ):
        super().__init__()
        unknown = split_known_knobs(dict(unknown), f"{type(self).__name__}()")
        if unknown:
            known = tuple(inspect.signature(type(self).__init__).parameters) + tuple(
                inspect.signature(TextGradOptimizer.__init__).parameters)
            reject_unknown(unknown, f"{type(self).__name__}()", known)
        if metric is not None:
            check_metric(metric)
        if reflection_lm is not None and optimizer_lm is not None and reflection_lm is not optimizer_lm:
            raise ValueError("Pass the optimizer LM once: reflection_lm (GEPA's name) or optimizer_lm, not both.")
        optimizer_lm = optimizer_lm or reflection_lm
        num_threads = 4 if num_threads is None else num_threads
        seed = 0 if seed is None else seed
        if auto is not None and auto not in AUTO_EPOCHS:
            raise ValueError(f"auto must be one of {tuple(AUTO_EPOCHS)} or None, got {auto!r}")
        if sum(x is not None for x in (auto, max_full_evals, max_metric_calls)) > 1:
            raise ValueError("Set at most one of auto, max_metric_calls and max_full_evals (as in dspy.GEPA); "
                             f"got auto={auto!r}, max_metric_calls={max_metric_calls}, max_full_evals={max_full_evals}.")
        if max_full_evals is not None and not max_full_evals > 0:
            raise ValueError(f"max_full_evals must be > 0, got {max_full_evals}")
        if not failure_score < perfect_score:
            raise ValueError(f"failure_score ({failure_score}) must be below perfect_score ({perfect_score})")
        for name, value, choices in (("feedback", feedback, FEEDBACK_MODES), ("update", update, UPDATE_MODES),
                                     ("acceptance", acceptance, ACCEPTANCE_MODES), ("backtest", backtest, BACKTEST_MODES)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        prune_rules = update == "rules" if prune_rules is None else prune_rules
        if prune_rules not in PRUNE_MODES:
            raise ValueError(f"prune_rules must be one of {PRUNE_MODES}, got {prune_rules!r}")
        if prune_rules and update != "rules":
            raise ValueError("prune_rules=True ablates itemized rules: it needs update='rules'")
        if valset_candidates < 1:
            raise ValueError(f"valset_candidates must be >= 1 (the root of the merge tree), got {valset_candidates}")
        if components not in COMPONENT_KINDS:
            raise ValueError(f"components must be one of {COMPONENT_KINDS}, got {components!r}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        if max_component_tokens < 50:
            raise ValueError(f"max_component_tokens must be >= 50, got {max_component_tokens}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got {timeout}")
        executor_for(executor)
        Budget(max_lm_calls, max_tokens, max_cost, max_metric_calls)  # checks the limits
        self.metric = metric
        self.optimizer_lm, self.evaluator_lm, self.merge_lm, self.task_lm = optimizer_lm, evaluator_lm, merge_lm, task_lm
        self.epochs, self.components, self.num_threads, self.seed = epochs, components, num_threads, seed
        self.context_window, self.critique_successes = context_window, critique_successes
        self.input_keys = tuple(input_keys) if input_keys else None
        self.budgets = {"max_lm_calls": max_lm_calls, "max_tokens": max_tokens, "max_cost": max_cost,
                        "max_metric_calls": max_metric_calls}
        self.log_dir, self.max_retries, self.timeout = log_dir, max_retries, timeout
        self.max_component_tokens, self.executor = max_component_tokens, executor
        self.auto, self.max_full_evals = auto, max_full_evals
        self.perfect_score, self.failure_score, self.skip_perfect_score = perfect_score, failure_score, skip_perfect_score
        self.track_stats, self.track_best_outputs, self.use_mlflow = track_stats, track_best_outputs, use_mlflow
        self.feedback, self.update, self.acceptance, self.check_format = feedback, update, acceptance, check_format
        self.check_grounding, self.evidence = check_grounding, evidence
        self.backtest, self.prune_rules, self.valset_candidates = backtest, prune_rules, valset_candidates
        self.reserve_candidates, self.estimate = reserve_candidates, estimate

    @property
    def reflection_lm(self) -> dspy.LM | None:
        """GEPA's name for the optimizer LM."""
        return self.optimizer_lm

    def schedule(self, epochs: int | None = None):
        raise NotImplementedError

    def merger(self):
        raise NotImplementedError

    def merge_group_limit(self, leaves: int) -> int | None:
        """The largest group the merger merges in one step over ``leaves`` (None: no merge), for the estimate."""
        return None

    def merge_levels(self, n_train: int) -> int:
        """Back-test levels of the merge tree (the budget formula's L); a baseline does not merge."""
        return 0

    # ----- the pipeline ------------------------------------------------------------------------------

    def compile(self, student: dspy.Module, trainset: Sequence[dspy.Example] | Any = None,
                metric: Callable | None = None, *, valset: Sequence[dspy.Example] | Any = None,
                teacher: dspy.Module | None = None, input_keys: Sequence[str] | None = None,
                **unknown: Any) -> dspy.Module:
        """Optimize ``student`` on ``trainset`` and return a new program (``student`` is not changed).

        Both ``compile(program, trainset=..., valset=...)`` (DSPy's form) and ``compile(program, trainset,
        metric)`` work; an unknown keyword is a TypeError. The run's record is attached as
        ``program.fgo_result`` (:class:`FGOResult`; also ``program.detailed_results`` with ``track_stats``).
        """
        if unknown:
            reject_unknown(unknown, f"{type(self).__name__}.compile()", ("trainset", "valset", "teacher", "metric",
                                                                          "input_keys"))
        if teacher is not None:
            raise ValueError(f"{type(self).__name__} uses no teacher program (it rewrites instructions and tool "
                             "descriptions, not demos): drop teacher=, or bootstrap demos with "
                             "dspy.BootstrapFewShot(teacher=...) before or after.")
        epochs = round_epochs(self, *_sizes(trainset, valset))
        with ctrl_c_stops_the_run():
            if epochs is not None:  # rounds=True and a budget beyond a few steps per subset: rounds (rounds.py)
                return compile_in_rounds(self, type(self)._compile_once, student, trainset, valset, epochs,
                                         metric=metric, input_keys=input_keys)
            return self._compile_once(student, trainset, valset, metric=metric, input_keys=input_keys)

    def _compile_once(self, student: dspy.Module, trainset: Any, valset: Any, *, metric: Callable | None,
                      input_keys: Sequence[str] | None, spent: dict[str, Any] | None = None) -> dspy.Module:
        """One pass of the pipeline (``spent``: what earlier rounds spent, counted against the same budget)."""
        started = time.perf_counter()
        run = self.build_context(student, trainset, metric, valset, input_keys, spent)  # validate
        threads = self.num_threads
        schedule = self.schedule(run.epochs)
        tracker = RunTracker.start(self, run)
        try:
            if self.estimate:
                self._estimate(run, schedule, threads)                           # estimate (a pilot)
            run.budget.set_stage("divide")
            jobs = schedule.jobs(run, run.epochs, threads)                       # divide
            outer = max(1, min(threads, len(jobs)))
            run.budget.set_stage("optimize")
            results = executor_for(self.executor).map(optimize_job, run, jobs, outer, desc=f"{self.method} subsets")
            subsets = [r for r in results if r is not None]                      # optimize subsets
            run.errors.raise_if_every_call_failed(("evaluator", "optimizer"))
            run.budget.set_stage("merge")
            root = self.merger().merge(run, [_leaf(run, s) for s in subsets], outer)  # merge
            run.budget.set_stage("select")
            program = select_and_record(run, subsets, root, self.config(), started, threads)  # select, record
        finally:
            run.budget.close_progress()
        if self.track_stats:
            program.detailed_results = program.fgo_result
        tracker.finish(program.fgo_result)
        return program

    def estimate_cost(self, student: dspy.Module, trainset: Sequence[dspy.Example] | Any = None,
                      metric: Callable | None = None, *, valset: Sequence[dspy.Example] | Any = None,
                      input_keys: Sequence[str] | None = None) -> CostEstimate:
        """What ``compile`` with the same arguments is expected to spend, without running it: the plan, a
        pilot (the seed program on a few training examples: task-LM calls only) and the documented
        assumptions (``estimate.py``). ``print(estimate.table())`` shows it; ``estimate.to_dict()`` keeps it.
        Checkpoints (``log_dir``) are neither read nor written; with ``rounds=True``, the first round."""
        epochs = round_epochs(self, *_sizes(trainset, valset))
        optimizer = copy.copy(self) if epochs is None else round_optimizer(self, 1, epochs)
        optimizer.log_dir = None
        run = optimizer.build_context(student, trainset, metric, valset, input_keys)
        try:
            schedule = optimizer.schedule(run.epochs)
            if not hasattr(schedule, "plan"):
                raise ValueError(f"{type(self).__name__}'s schedule has no plan to estimate")
            return optimizer._estimate_plan(run, schedule, self.num_threads)
        finally:
            run.budget.close_progress()

    def _estimate_plan(self, run: RunContext, schedule: Any, threads: int) -> CostEstimate:
        """The cost estimate of ``schedule``'s plan for ``run`` (a pilot on the seed first)."""
        from .estimate import estimate_run

        run.budget.set_stage("estimate")
        jobs = schedule.plan(run, run.epochs)
        return estimate_run(run, jobs, self.merge_levels(len(run.trainset)),
                            merge_threshold=self.merge_group_limit(len(jobs)), threads=threads,
                            divide_by_failures=getattr(schedule, "partition", None) == "failures")

    def _estimate(self, run: RunContext, schedule: Any, threads: int) -> None:
        """Log the cost estimate (``estimate.py``) and keep it in the accounting. Its pilot's runs of the seed
        are the first step's (reused, not repeated); a resumed run makes none (its first run did)."""
        from .rollout import MetricContractError

        if run.checkpoint is not None and run.checkpoint.spent() is not None:
            logger.info("Resumed run: no new cost estimate (the first run's, if it made one, is kept)")
            return
        if not hasattr(schedule, "plan"):
            return
        try:
            estimate = self._estimate_plan(run, schedule, threads)
        except (LMFailedError, MetricContractError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the estimate informs; it never stops a run
            logger.warning("No cost estimate: %s: %s", type(exc).__name__, exc)
            return
        run.budget.estimate = estimate.to_dict()
        logger.info("%s", estimate.table())
        for warning in estimate.warnings:
            logger.warning("%s", warning)

    # ----- validate ----------------------------------------------------------------------------------

    def build_context(self, student, trainset, metric, valset, input_keys, spent=None) -> RunContext:
        reset_interrupt()
        metric = metric or self.metric
        if metric is None:
            raise ValueError("No metric: pass metric=... to the optimizer or to compile().")
        five = check_metric(metric) == 5
        trainset = self._examples(trainset, "trainset", input_keys)
        valset = self._examples(valset, "valset", input_keys) if valset is not None and len(valset) else None
        seed = self._seed_candidate(student)
        optimizer_lm = self.optimizer_lm or dspy.settings.lm
        if optimizer_lm is None:
            raise ValueError("No optimizer LM: pass optimizer_lm=dspy.LM(...) or dspy.configure(lm=...).")
        task_lm = self.task_lm or dspy.settings.lm
        if task_lm is None:
            raise ValueError("No task LM: dspy.configure(lm=...) or pass task_lm=...")
        lms = {"task": task_lm, "evaluator": self.evaluator_lm or optimizer_lm, "optimizer": optimizer_lm,
               "merge": self.merge_lm or optimizer_lm}
        trainset, epochs, limit, sample = self._plan(student, trainset, len(valset) if valset is not None else 0)
        budgets = {**self.budgets, "max_metric_calls": limit}
        budget = Budget(**budgets)
        budget.trainset_sample = sample
        budget.check_prices(lms)
        if spent is not None:
            budget.restore(spent)
        checkpoint = None
        if self.log_dir:
            checkpoint = Checkpoint(self.log_dir, fingerprint(
                method=self.method, config=self._fingerprint_config(), trainset=examples_digest(trainset),
                seed=seed.to_dict(), metric=describe_callable(metric), task_lm=describe_lm(task_lm),
                lms={r: describe_lm(lm) for r, lm in lms.items() if r != "task"},
                valset=examples_digest(valset) if valset is not None else None))
            if (spent := checkpoint.spent()) is not None:
                budget.restore(spent)
        if valset is not None:
            for name in ("max_lm_calls", "max_metric_calls"):
                limit = budgets[name]
                if limit is not None and limit <= 2 * len(valset):
                    raise ValueError(
                        f"{name}={limit} does not cover the final valset check ({2 * len(valset)} program runs: "
                        f"the seed and the optimized program on {len(valset)} examples) and the optimization: "
                        f"raise {name} or pass a smaller valset.")
            budget.reserve(self._valset_reservation(len(trainset), len(valset), limit))
        budget.open_progress(limit, f"{self.method}")
        run = RunContext(student, tuple(trainset), tuple(valset) if valset is not None else None, metric, lms, seed,
                         self.method, budget, ErrorLog(collect_secrets(lms.values())), checkpoint, self.num_threads,
                         self.max_retries, self.timeout, self.max_component_tokens, self.context_window,
                         self.critique_successes, self.seed, epochs=epochs, perfect_score=self.perfect_score,
                         failure_score=self.failure_score, skip_perfect_score=self.skip_perfect_score,
                         metric_five_args=five, ledger=Ledger(seed, keep_outputs=self.track_best_outputs),
                         feedback=self.feedback, update=self.update, acceptance=self.acceptance,
                         check_format=self.check_format, check_grounding=self.check_grounding, evidence=self.evidence,
                         backtest=self.backtest, prune_rules=self.prune_rules,
                         valset_candidates=self.valset_candidates, in_rounds=self._in_rounds)
        self._check_windows(run)
        return run

    def _plan(self, student: dspy.Module, trainset: list[dspy.Example], n_val: int):
        """(trainset, epochs, max_metric_calls, sample): the budget's plan (``compat``), on a sample of the
        trainset when the budget affords no step on all of it (``sample``: which examples, else None)."""
        n = len(trainset)
        share = backtest_share(self.backtest)
        epochs, limit = plan(self.auto, self.budgets["max_metric_calls"], self.max_full_evals, self.epochs, n, n_val,
                             self.merge_levels(n), self.prune_rules, share)
        if self.auto is not None:
            gepa = gepa_auto_budget(self.auto, len(student.named_predictors()), n_val or n)
            limit = min(limit, gepa) if gepa is not None else limit
        if limit is None or (self.epochs is not None and self.auto is None):
            return trainset, epochs, limit, None  # explicit steps: the guard stops the run if they do not fit
        steps = epochs if self.auto is not None else 1  # auto keeps its steps; a bare budget needs one to fit
        fit = affordable_trainset(limit, n, n_val, self.merge_levels, steps, share)
        if fit >= n:
            return trainset, epochs, limit, None
        field = getattr(self, "partition", None)
        field = field if isinstance(field, str) and field not in ("random", "cluster", "failures") else None
        picked = sample_indices(trainset, fit, self.seed, field)
        if self.auto is None:
            epochs, _ = plan(None, limit, None, None, fit, n_val, self.merge_levels(fit), self.prune_rules, share)
        logger.warning("%s: max_metric_calls=%d affords %d step(s) per subset on %d of the %d training examples "
                       "(N*(E+1) + 2*N*L*s + 2*V): optimizing on a sample of %d%s (fgo_result.accounting"
                       "['trainset_sample'] says which)", self.method, limit, epochs, fit, n, fit,
                       f" stratified by {field!r}" if field else "")
        return [trainset[i] for i in picked], epochs, limit, {"of": n, "indices": picked}

    def _valset_reservation(self, n_train: int, n_val: int, limit: int | None) -> int:
        """Valset runs kept for the final check (``compat.valset_reservation``): the seed and the root, and with
        ``reserve_candidates`` the other candidates as far as the budget covers them."""
        k = self.valset_candidates if self.reserve_candidates else 1
        return valset_reservation(limit, n_train, n_val, self.merge_levels(n_train), k, bool(self.prune_rules),
                                  backtest_share(self.backtest))

    def _examples(self, data: Any, name: str, input_keys: Sequence[str] | None) -> list[dspy.Example]:
        if data is None:
            raise ValueError(f"No {name}: pass {name}=[dspy.Example(...).with_inputs(...), ...].")
        keys = tuple(input_keys) if input_keys else self.input_keys
        examples = []
        for row in data:
            if isinstance(row, dspy.Example):
                examples.append(row if keys is None else row.with_inputs(*keys))
            elif isinstance(row, dict):
                if not keys:
                    raise ValueError(f"{name} holds plain rows (e.g. a datasets.Dataset): pass input_keys=(...).")
                examples.append(dspy.Example(**row).with_inputs(*keys))
            else:
                raise ValueError(f"{name} must hold dspy.Example objects or dict rows, got {type(row).__name__}")
        if not examples:
            raise ValueError(f"The {name} is empty: pass at least one example.")
        if any(ex._input_keys is None for ex in examples):
            raise ValueError(f"Some {name} examples have no input keys: call .with_inputs(...) on them.")
        return examples

    def _seed_candidate(self, student: dspy.Module) -> Candidate:
        if not isinstance(student, dspy.Module):
            raise ValueError(f"The student must be a dspy.Module, got {type(student).__name__}")
        if not student.predictors():
            raise ValueError("The program has no predictors (dspy.Predict, ChainOfThought, ReAct...): nothing to optimize.")
        seed = Candidate.from_program(student, self.components)
        if not seed:
            raise ValueError(f"The program has no {self.components} components to optimize.")
        return seed

    @staticmethod
    def _check_windows(run: RunContext, minimum: int = 200) -> None:
        for role in ("evaluator", "optimizer", "merge"):
            left = run.input_budget(role, run.seed.render())
            if left < minimum:
                raise ValueError(
                    f"The {role} LM's context window is too small: {left} tokens would be left for trajectories "
                    f"after the program's components and the reply. Use an LM with a larger window, "
                    f"lower its max_tokens, or pass context_window=... if litellm does not know the model's."
                )

    def config(self) -> dict[str, Any]:
        skip = {"metric", "optimizer_lm", "evaluator_lm", "merge_lm", "task_lm", "embedder"}
        out = {k: v for k, v in vars(self).items() if k not in skip and not k.startswith("_")}
        out["lms"] = {r: getattr(getattr(self, f"{r}_lm"), "model", None)
                      for r in ("optimizer", "evaluator", "merge", "task")}
        if callable(out.get("partition")):
            out["partition"] = describe_callable(out["partition"])
        return {k: (v if isinstance(v, int | float | str | bool | dict | tuple | list | type(None)) else repr(v))
                for k, v in out.items()}

    def _fingerprint_config(self) -> dict[str, Any]:
        """What decides the run's results (not threads, budgets, timeouts, retries or where it logs)."""
        ignore = {"log_dir", "num_threads", "budgets", "timeout", "max_retries", "executor", "auto", "max_full_evals",
                  "track_stats", "track_best_outputs", "use_mlflow", "estimate",
                  "valset_candidates", "reserve_candidates",  # the valset scores are stored per candidate
                  "rounds"}  # a round's own epochs (and log_dir) tell it apart from a one-pass run
        if self.backtest == "full":  # the default leaves the fingerprints of older log_dirs as they were
            ignore.add("backtest")
        return {k: v for k, v in self.config().items() if k not in ignore}


def _sizes(trainset: Any, valset: Any) -> tuple[int, int]:
    """(N, V) of what compile() was given, 0 where it has no length (its own checks say what is wrong)."""
    def size(data: Any) -> int:
        try:
            return len(data)
        except TypeError:
            return 0

    return size(trainset), size(valset) if valset is not None else 0


def _leaf(run: RunContext, subset: SubsetResult) -> MergeNode:
    categories = sorted({str(run.trainset[i]["category"]) for i in subset.indices if "category" in run.trainset[i]})
    return MergeNode(subset.subset_id, subset.best_candidate, list(subset.indices), subset.best_score,
                     subset_id=subset.subset_id, categories=categories)


class FGO(TextGradOptimizer):
    """Fine-Grained Optimization (Liu et al., "Divide, Optimize, Merge").

    Divide the trainset into subsets (``partition``: ``"random"``, ``"cluster"``, ``"failures"``, an example
    field such as ``"category"``, or a callable; ``"failures"`` runs the seed program on the trainset, clusters
    the critiques of its failures into one subset per failure mode and deals the successes over them, see
    ``failures.py``), optimize each subset in parallel for ``epochs`` steps that read the subset's runs and
    add itemized rules (``update="rules"``; the paper's critique-and-rewrite steps are ``PAPER_SETTINGS``),
    keeping the best candidate seen on the subset (where the paper keeps the last), then merge
    the subset candidates progressively: groups larger than ``merge_threshold`` are split into
    floor(sqrt(n)) KMeans clusters and merged recursively (``merge_clustering="none"`` merges all in one
    step), each merge back-tested on the union of its members' examples and passed up only when it is
    not worse there than its best member (``backtest="race"`` stops that back-test early on a merge that
    is clearly worse, ``"half"`` decides it on half of the union). The result is never worse than the program that came in, on
    the valset (or without one, on the trainset). With ``rounds=True`` a metric-call budget that affords more
    than three steps per subset is spent in rounds, each one dividing, optimizing and merging again from the
    last round's program (``rounds.py``; off by default: at 750 calls on bookings it did not measure better).

    Example::

        optimizer = FGO(metric=my_metric, optimizer_lm=dspy.LM("openai/gpt-4o"), num_subsets=6)
        optimized = optimizer.compile(program, trainset=train, valset=val)
        optimized.fgo_result.to_json("fgo_run.json")
    """

    method = "fgo"

    def __init__(self, metric: Callable | None = None, *, num_subsets: int | None = None,
                 subset_size: int | None = None, partition: str | Callable = "random", merge_threshold: int = 4,
                 merge_clustering: str = "kmeans", embedder: Callable | None = None, rounds: bool = False,
                 **params: Any):
        super().__init__(metric, **params)  # the shell's explicit parameters (a typo is a TypeError)
        if merge_clustering not in ("kmeans", "none"):
            raise ValueError(f"merge_clustering must be 'kmeans' or 'none', got {merge_clustering!r}")
        if merge_threshold < 2:
            raise ValueError(f"merge_threshold must be >= 2, got {merge_threshold}")
        self.num_subsets, self.subset_size, self.partition = num_subsets, subset_size, partition
        self.merge_threshold, self.merge_clustering, self.embedder = merge_threshold, merge_clustering, embedder
        self.rounds = rounds

    def schedule(self, epochs: int | None = None) -> DivideSchedule:
        return DivideSchedule(self.partition, self.num_subsets, self.subset_size, self.embedder)

    def merge_levels(self, n_train: int) -> int:
        try:
            subsets = resolve_num_subsets(n_train, self.num_subsets, self.subset_size)
        except ValueError:
            return 1  # the run's own check says what is wrong
        return merge_levels(subsets, self.merge_threshold if self.merge_clustering == "kmeans" else subsets)

    def merger(self) -> ProgressiveMerger:
        return ProgressiveMerger(self.merge_threshold, self.merge_clustering)

    def merge_group_limit(self, leaves: int) -> int | None:
        return self.merge_threshold if self.merge_clustering == "kmeans" else max(2, leaves)


FGOTeleprompter = FGO
