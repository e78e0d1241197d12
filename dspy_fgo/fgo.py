"""FGO(Teleprompter).compile(): validate -> divide -> optimize subsets -> merge -> select -> record.

The baselines (``baselines.py``) are the same pipeline with another data schedule and no merge: a
method is a schedule object and a merger object, so every method shares every policy (errors,
budgets, windows, checkpoints, selection).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter

from .budget import Budget
from .candidate import COMPONENT_KINDS, Candidate
from .context import ErrorLog, RunContext
from .divide import DivideSchedule
from .executor import executor_for, reset_interrupt
from .merge import MergeNode, ProgressiveMerger
from .optimize import SubsetResult, optimize_job
from .persist import Checkpoint, collect_secrets, describe_callable, describe_lm, examples_digest, fingerprint
from .select import select_and_record

logger = logging.getLogger(__name__)


class TextGradOptimizer(Teleprompter):
    """The pipeline every method shares: LLM critiques (textual gradients) rewrite the program's
    instructions and tool descriptions. A method supplies :meth:`schedule` and :meth:`merger`."""

    method = "textgrad"

    def __init__(
        self,
        metric: Callable | None = None,
        *,
        optimizer_lm: dspy.LM | None = None,
        evaluator_lm: dspy.LM | None = None,
        merge_lm: dspy.LM | None = None,
        task_lm: dspy.LM | None = None,
        epochs: int = 2,
        components: str = "all",
        num_threads: int = 4,
        seed: int = 0,
        context_window: int | None = None,
        critique_successes: bool = False,
        input_keys: Sequence[str] | None = None,
        max_lm_calls: int | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        max_metric_calls: int | None = None,
        log_dir: str | None = None,
        max_retries: int = 2,
        timeout: float | None = 600.0,
        max_component_tokens: int = 1000,
        executor: str = "thread",
    ):
        super().__init__()
        if components not in COMPONENT_KINDS:
            raise ValueError(f"components must be one of {COMPONENT_KINDS}, got {components!r}")
        if epochs < 1:
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

    def schedule(self):
        raise NotImplementedError

    def merger(self):
        raise NotImplementedError

    # ----- the pipeline ------------------------------------------------------------------------------

    def compile(self, student: dspy.Module, trainset: Sequence[dspy.Example] | Any = None,
                metric: Callable | None = None, *, valset: Sequence[dspy.Example] | Any = None,
                teacher: dspy.Module | None = None, input_keys: Sequence[str] | None = None) -> dspy.Module:
        """Optimize ``student`` on ``trainset`` and return a new program (``student`` is not changed).

        Both ``compile(program, trainset=..., valset=...)`` and ``compile(program, trainset, metric)``
        work. The run's record is attached as ``program.fgo_result`` (:class:`FGOResult`).
        """
        started = time.perf_counter()
        run = self.build_context(student, trainset, metric, valset, input_keys)  # validate
        threads = self.num_threads
        jobs = self.schedule().jobs(run, self.epochs, threads)                   # divide
        outer = max(1, min(threads, len(jobs)))
        results = executor_for(self.executor).map(optimize_job, run, jobs, outer, desc=f"{self.method} subsets")
        subsets = [r for r in results if r is not None]                          # optimize subsets
        root = self.merger().merge(run, [_leaf(run, s) for s in subsets], outer)  # merge
        return select_and_record(run, subsets, root, self.config(), started, threads)  # select, record

    # ----- validate ----------------------------------------------------------------------------------

    def build_context(self, student, trainset, metric, valset, input_keys) -> RunContext:
        reset_interrupt()
        metric = metric or self.metric
        if metric is None:
            raise ValueError("No metric: pass metric=... to the optimizer or to compile().")
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
        budget = Budget(**self.budgets)
        budget.check_prices(lms)
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
                limit = self.budgets[name]
                if limit is not None and limit <= 2 * len(valset):
                    raise ValueError(
                        f"{name}={limit} does not cover the final valset check ({2 * len(valset)} program runs: "
                        f"the seed and the optimized program on {len(valset)} examples) and the optimization: "
                        f"raise {name} or pass a smaller valset.")
            budget.reserve(2 * len(valset))
        run = RunContext(student, tuple(trainset), tuple(valset) if valset is not None else None, metric, lms, seed,
                         self.method, budget, ErrorLog(collect_secrets(lms.values())), checkpoint, self.num_threads,
                         self.max_retries, self.timeout, self.max_component_tokens, self.context_window,
                         self.critique_successes, self.seed)
        self._check_windows(run)
        return run

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
        ignore = {"log_dir", "num_threads", "budgets", "timeout", "max_retries", "executor"}
        return {k: v for k, v in self.config().items() if k not in ignore}


def _leaf(run: RunContext, subset: SubsetResult) -> MergeNode:
    categories = sorted({str(run.trainset[i]["category"]) for i in subset.indices if "category" in run.trainset[i]})
    return MergeNode(subset.subset_id, subset.best_candidate, list(subset.indices), subset.best_score,
                     subset_id=subset.subset_id, categories=categories)


class FGO(TextGradOptimizer):
    """Fine-Grained Optimization (Liu et al., "Divide, Optimize, Merge").

    Divide the trainset into subsets (``partition``: ``"random"``, ``"cluster"``, an example field such as
    ``"category"``, or a callable), optimize each subset in parallel for ``epochs`` critique-and-rewrite
    steps (keeping the best candidate seen on the subset, where the paper keeps the last), then merge
    the subset candidates progressively: groups larger than ``merge_threshold`` are split into
    floor(sqrt(n)) KMeans clusters and merged recursively (``merge_clustering="none"`` merges all in one
    step), each merge back-tested on the union of its members' examples and passed up only when it is
    not worse there than its best member. The result is never worse than the program that came in, on
    the valset (or without one, on the trainset).

    Example::

        optimizer = FGO(metric=my_metric, optimizer_lm=dspy.LM("openai/gpt-4o"), num_subsets=6)
        optimized = optimizer.compile(program, trainset=train, valset=val)
        optimized.fgo_result.to_json("fgo_run.json")
    """

    method = "fgo"

    def __init__(self, metric: Callable | None = None, *, num_subsets: int | None = None,
                 subset_size: int | None = None, partition: str | Callable = "random", merge_threshold: int = 4,
                 merge_clustering: str = "kmeans", embedder: Callable | None = None, **params: Any):
        super().__init__(metric, **params)  # the shell's explicit parameters (a typo is a TypeError)
        if merge_clustering not in ("kmeans", "none"):
            raise ValueError(f"merge_clustering must be 'kmeans' or 'none', got {merge_clustering!r}")
        if merge_threshold < 2:
            raise ValueError(f"merge_threshold must be >= 2, got {merge_threshold}")
        self.num_subsets, self.subset_size, self.partition = num_subsets, subset_size, partition
        self.merge_threshold, self.merge_clustering, self.embedder = merge_threshold, merge_clustering, embedder

    def schedule(self) -> DivideSchedule:
        return DivideSchedule(self.partition, self.num_subsets, self.subset_size, self.embedder)

    def merger(self) -> ProgressiveMerger:
        return ProgressiveMerger(self.merge_threshold, self.merge_clustering)


FGOTeleprompter = FGO
