"""FGO(Teleprompter).compile(): divide -> optimize each subset in parallel -> merge progressively.

``TextGradOptimizer`` is the shell every method shares (arguments, data checks, accounting, the
final valset check, the result record); FGO and the baselines in ``schedules.py`` differ only in
:meth:`TextGradOptimizer.optimize`, the data schedule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter

from .accounting import Accounting
from .candidate import COMPONENT_KINDS, Candidate
from .checkpoint import Checkpoint, fingerprint
from .divide import divide
from .engine import Engine
from .executor import parallel_map, ray_map
from .merge import LMMerger, MergeNode, kmeans_cluster, progressive_merge
from .optimize import OverflowPolicy, SubsetResult, optimize_subset
from .result import FGOResult
from .rollout import mean_score

logger = logging.getLogger(__name__)


class TextGradOptimizer(Teleprompter):
    """Shared shell of FGO and its baselines: LLM critiques (textual gradients) rewrite the program's
    instructions and tool descriptions. Subclasses define :meth:`optimize`."""

    method = "textgrad"
    overflow = OverflowPolicy("summarize")

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
        log_dir: str | None = None,
        max_retries: int = 2,
    ):
        super().__init__()
        if components not in COMPONENT_KINDS:
            raise ValueError(f"components must be one of {COMPONENT_KINDS}, got {components!r}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.metric = metric
        self.optimizer_lm, self.evaluator_lm, self.merge_lm, self.task_lm = optimizer_lm, evaluator_lm, merge_lm, task_lm
        self.epochs, self.components, self.num_threads, self.seed = epochs, components, num_threads, seed
        self.context_window, self.critique_successes = context_window, critique_successes
        self.input_keys = tuple(input_keys) if input_keys else None
        self.budgets = {"max_lm_calls": max_lm_calls, "max_tokens": max_tokens, "max_cost": max_cost}
        self.log_dir, self.max_retries = log_dir, max_retries

    # ----- the one call ------------------------------------------------------------------------------

    def compile(
        self,
        student: dspy.Module,
        trainset: Sequence[dspy.Example] | Any = None,
        metric: Callable | None = None,
        *,
        valset: Sequence[dspy.Example] | Any = None,
        teacher: dspy.Module | None = None,
        **kwargs: Any,
    ) -> dspy.Module:
        """Optimize ``student`` on ``trainset`` and return a new program (``student`` is not changed).

        Both ``compile(program, trainset=..., valset=...)`` and ``compile(program, trainset, metric)``
        work. The run's record is attached as ``program.fgo_result`` (:class:`FGOResult`).
        """
        started = time.perf_counter()
        metric = metric or self.metric
        if metric is None:
            raise ValueError("No metric: pass metric=... to the optimizer or to compile().")
        trainset = self._examples(trainset, "trainset", kwargs.get("input_keys"))
        valset = self._examples(valset, "valset", kwargs.get("input_keys")) if valset is not None else None
        seed_candidate = self._seed_candidate(student)
        engine = self._engine(student, trainset, metric)
        self._check_windows(engine, seed_candidate)
        if self.log_dir:
            engine.checkpoint = Checkpoint(self.log_dir, fingerprint(self.method, self.config(), trainset, seed_candidate))

        subsets, root, stopped = self.optimize(engine, seed_candidate)
        optimized = root.candidate if root is not None else seed_candidate
        choice, reason, val_scores = self._final_choice(engine, seed_candidate, optimized, valset, root)

        final = seed_candidate if choice == "seed" else optimized
        program = final.apply(student)
        program.fgo_result = FGOResult(
            method=self.method, seed_candidate=seed_candidate, final_candidate=final, final_choice=choice,
            reason=reason, subsets=subsets, merge_root=root, accounting=engine.accounting.to_dict(),
            val_scores=val_scores, errors=list(engine.errors), config=self.config(), stopped=stopped,
            seconds=time.perf_counter() - started, resumed=self._resumed(engine),
        )
        logger.info(program.fgo_result.summary())
        return program

    def optimize(self, engine: Engine, seed: Candidate) -> tuple[list[SubsetResult], MergeNode | None, str | None]:
        """Return the subset results, the root of the merge tree (None if nothing was optimized) and the
        reason the run stopped early, if it did."""
        raise NotImplementedError

    def run_subset(self, engine: Engine, subset_id: int, indices: list[int], optimize) -> SubsetResult | None:
        """``optimize()`` for one subset, or its checkpoint; a failure is recorded and gives None so the
        other subsets go on."""
        if engine.checkpoint is not None:
            done = engine.checkpoint.load_subset(subset_id, indices)
            if done is not None:
                return done
        try:
            result = optimize()
        except ValueError:
            raise  # a configuration problem (e.g. a window too small) is the user's to fix, not a fault
        except Exception as exc:
            engine.record_error("subset", f"{type(exc).__name__}: {exc}", subset=subset_id)
            return None
        if engine.checkpoint is not None and result.stopped is None:
            engine.checkpoint.save_subset(result)
        return result

    @staticmethod
    def _resumed(engine: Engine) -> dict[str, int]:
        cp = engine.checkpoint
        return {"subsets": cp.resumed_subsets, "merges": cp.resumed_merges} if cp is not None else {}

    def config(self) -> dict[str, Any]:
        skip = {"metric", "optimizer_lm", "evaluator_lm", "merge_lm", "task_lm", "overflow", "embedder"}
        out = {k: v for k, v in vars(self).items() if k not in skip and not k.startswith("_")}
        out["lms"] = {r: getattr(getattr(self, f"{r}_lm"), "model", None)
                      for r in ("optimizer", "evaluator", "merge", "task")}
        return {k: (v if isinstance(v, int | float | str | bool | dict | tuple | list | type(None)) else repr(v))
                for k, v in out.items()}

    # ----- pieces ------------------------------------------------------------------------------------

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

    def _engine(self, student: dspy.Module, trainset: list[dspy.Example], metric: Callable) -> Engine:
        optimizer_lm = self.optimizer_lm or dspy.settings.lm
        if optimizer_lm is None:
            raise ValueError("No optimizer LM: pass optimizer_lm=dspy.LM(...) or dspy.configure(lm=...).")
        if self.task_lm is None and dspy.settings.lm is None:
            raise ValueError("No task LM: dspy.configure(lm=...) or pass task_lm=...")
        return Engine(
            student=student, trainset=trainset, metric=metric,
            evaluator_lm=self.evaluator_lm or optimizer_lm, optimizer_lm=optimizer_lm,
            merge_lm=self.merge_lm or optimizer_lm, task_lm=self.task_lm or dspy.settings.lm,
            accounting=Accounting(**self.budgets), num_threads=self.num_threads,
            context_window_override=self.context_window, max_retries=self.max_retries,
        )

    @staticmethod
    def _check_windows(engine: Engine, seed: Candidate, minimum: int = 200) -> None:
        for role in ("evaluator", "optimizer", "merge"):
            left = engine.input_budget(role, seed.render())
            if left < minimum:
                raise ValueError(
                    f"The {role} LM's context window is too small: {left} tokens would be left for trajectories "
                    f"after the program's components and the reply. Use an LM with a larger window, "
                    f"lower its max_tokens, or pass context_window=... if litellm does not know the model's."
                )

    def _final_choice(self, engine: Engine, seed: Candidate, optimized: Candidate, valset, root):
        if optimized == seed:
            return "seed", "optimization changed nothing", {}
        if valset is None:
            return "optimized", "no valset given: the optimized program is returned unchecked", {}
        indices = range(len(valset))
        seed_score, opt_score = parallel_map(
            lambda c: mean_score(engine.evaluate(c, indices, desc="valset", examples=valset)), [seed, optimized], 2)
        scores = {"seed": seed_score, "optimized": opt_score}
        if opt_score >= seed_score:
            return "optimized", f"valset score {opt_score:.3f} >= seed's {seed_score:.3f}", scores
        return "seed", f"valset score {opt_score:.3f} < seed's {seed_score:.3f}: kept the seed", scores


class FGO(TextGradOptimizer):
    """Fine-Grained Optimization (Liu et al., "Divide, Optimize, Merge").

    Divide the trainset into subsets (``partition``: ``"random"``, ``"cluster"``, an example field such as
    ``"category"``, or a callable), optimize each subset in parallel for ``epochs`` critique-and-rewrite
    steps (keeping the best candidate seen on the subset, where the paper keeps the last), then merge
    the subset candidates progressively: groups larger than ``merge_threshold`` are split into
    floor(sqrt(n)) KMeans clusters and merged recursively (``merge_clustering="none"`` merges all in one
    step), each merge back-tested on the union of its members' examples. With a valset, the result is
    never worse on it than the program that came in.

    Example::

        optimizer = FGO(metric=my_metric, optimizer_lm=dspy.LM("openai/gpt-4o"), num_subsets=6)
        optimized = optimizer.compile(program, trainset=train, valset=val)
        optimized.fgo_result.to_json("fgo_run.json")
    """

    method = "fgo"

    def __init__(
        self,
        metric: Callable | None = None,
        *,
        num_subsets: int | None = None,
        subset_size: int | None = None,
        partition: str | Callable = "random",
        merge_threshold: int = 4,
        merge_clustering: str = "kmeans",
        embedder: Callable | None = None,
        executor: str = "thread",
        **kwargs: Any,
    ):
        super().__init__(metric, **kwargs)
        if executor not in ("thread", "ray"):
            raise ValueError(f"executor must be 'thread' or 'ray', got {executor!r}")
        self.executor = executor
        if merge_clustering not in ("kmeans", "none"):
            raise ValueError(f"merge_clustering must be 'kmeans' or 'none', got {merge_clustering!r}")
        if merge_threshold < 2:
            raise ValueError(f"merge_threshold must be >= 2, got {merge_threshold}")
        self.num_subsets, self.subset_size, self.partition = num_subsets, subset_size, partition
        self.merge_threshold, self.merge_clustering, self.embedder = merge_threshold, merge_clustering, embedder

    def optimize(self, engine: Engine, seed: Candidate):
        parts = divide(engine.trainset, self.partition, self.num_subsets, self.subset_size, self.seed, self.embedder)
        logger.info("FGO: %d subsets of sizes %s", len(parts), [len(p) for p in parts])
        outer = max(1, min(self.num_threads, len(parts)))
        engine.num_threads = -(-self.num_threads // outer)  # ceil: no idle slots when subsets < threads
        if self.executor == "ray":
            results = self._optimize_on_ray(engine, seed, parts)
        else:
            results = parallel_map(lambda job: self._optimize_one(engine, seed, *job), list(enumerate(parts)),
                                   outer, desc="FGO subsets")
        subsets = [r for r in results if r is not None]
        stopped = next((s.stopped for s in subsets if s.stopped), None)
        leaves = [self._leaf(engine, s) for s in subsets]
        if not leaves:
            return subsets, None, stopped
        engine.num_threads = self.num_threads
        merger = LMMerger(engine, first_node_id=len(parts))
        if self.merge_clustering == "none" and len(leaves) > 1:
            return subsets, merger(leaves), stopped
        root = progressive_merge(leaves, self.merge_threshold, kmeans_cluster(self.seed), merger, outer)
        return subsets, root, stopped

    def _optimize_one(self, engine: Engine, seed: Candidate, subset_id: int, indices: list[int]):
        return self.run_subset(engine, subset_id, indices, lambda: optimize_subset(
            engine, seed, indices, self.epochs, subset_id, self.overflow, self.critique_successes))

    def _optimize_on_ray(self, engine: Engine, seed: Candidate, parts: list[list[int]]) -> list[SubsetResult | None]:
        """Subsets as Ray tasks; checkpoints are read and written here, on the driver."""
        cp = engine.checkpoint
        results = {sid: cp.load_subset(sid, idx) for sid, idx in enumerate(parts)} if cp is not None else {}
        todo = [(sid, idx) for sid, idx in enumerate(parts) if results.get(sid) is None]
        job = _RaySubsetJob(engine.fresh_copy(), seed, self.epochs, self.overflow, self.critique_successes)
        for (sid, _), (result, accounting, errors) in zip(todo, ray_map(job, todo, desc="FGO subsets (ray)"),
                                                          strict=True):
            engine.accounting.add_from(accounting)
            engine.errors.extend(errors)
            if result is not None and cp is not None and result.stopped is None:
                cp.save_subset(result)
            results[sid] = result
        return [results[sid] for sid in range(len(parts))]

    @staticmethod
    def _leaf(engine: Engine, subset: SubsetResult) -> MergeNode:
        categories = sorted({str(engine.trainset[i]["category"]) for i in subset.indices
                             if "category" in engine.trainset[i]})
        return MergeNode(subset.subset_id, subset.best_candidate, list(subset.indices), subset.best_score,
                         subset_id=subset.subset_id, categories=categories)


class _RaySubsetJob:
    """Algorithm 1 for one subset inside a Ray worker; returns the result with the worker's usage and errors."""

    def __init__(self, engine: Engine, seed: Candidate, epochs: int, overflow: OverflowPolicy, critique_successes: bool):
        self.engine, self.seed, self.epochs = engine, seed, epochs
        self.overflow, self.critique_successes = overflow, critique_successes

    def __call__(self, job: tuple[int, list[int]]):
        subset_id, indices = job
        engine = self.engine
        try:
            result = optimize_subset(engine, self.seed, indices, self.epochs, subset_id, self.overflow,
                                     self.critique_successes)
        except Exception as exc:
            engine.record_error("subset", f"{type(exc).__name__}: {exc}", subset=subset_id)
            result = None
        return result, engine.accounting, engine.errors


FGOTeleprompter = FGO
