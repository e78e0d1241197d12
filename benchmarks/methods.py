"""The methods the benchmark compares, each a factory ``(ctx) -> optimized program``.

Budgets: FGO and its three schedule baselines get the same number of epochs and the same critique and
rewrite prompts; MIPROv2 and GEPA get their ``auto`` budget (``light`` unless told otherwise), or with
``auto="tiny"`` a reduced budget for CPU runs (GEPA: 60 metric calls; MIPROv2: 3 instruction
candidates, 4 trials, no demos). ``max_metric_calls`` gives every optimizer the same number of metric calls:
GEPA's and FGO's own budget, MIPROv2 as many trials as full valset evaluations fit (no demos); BootstrapFewShot and COPRO their DSPy defaults (COPRO breadth 4, depth 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dspy

from dspy_fgo import FGO, PAPER_SETTINGS, AllAtOnce, BatchWise, Bootstrapping


@dataclass
class MethodContext:
    program: dspy.Module
    trainset: list[dspy.Example]
    valset: list[dspy.Example] | None  # None: no valset (each optimizer then uses its own default)
    metric: Callable
    feedback_metric: Callable
    task_lm: dspy.LM
    optimizer_lm: dspy.LM
    seed: int
    epochs: int = 2
    num_threads: int = 2
    partition: str = "category"
    num_subsets: int | None = None
    batch_size: int | None = None
    auto: str = "light"
    hand_written: dspy.Module | None = None
    log_dir: str | None = None  # checkpoints of FGO and its baselines: an interrupted run resumes from them
    max_metric_calls: int | None = None  # the equal budget: every optimizer gets this many metric calls


def _textgrad_kwargs(ctx: MethodContext) -> dict[str, Any]:
    budget = ({"max_metric_calls": ctx.max_metric_calls} if ctx.max_metric_calls else {"epochs": ctx.epochs})
    # The reflective optimizers (FGO, its baselines, GEPA) all get the task's feedback metric.
    return dict(metric=ctx.feedback_metric, optimizer_lm=ctx.optimizer_lm, task_lm=ctx.task_lm, num_threads=ctx.num_threads,
                seed=ctx.seed, log_dir=ctx.log_dir, **budget)


def _batch_size(ctx: MethodContext) -> int:
    return ctx.batch_size or max(1, len(ctx.trainset) // 4)


def fgo_optimizer(ctx: MethodContext, **options: Any) -> FGO:
    options = {"partition": ctx.partition, "num_subsets": ctx.num_subsets, **options}  # a switch may divide otherwise
    return FGO(**_textgrad_kwargs(ctx), **options)


def all_at_once_optimizer(ctx: MethodContext, **options: Any) -> AllAtOnce:
    return AllAtOnce(**_textgrad_kwargs(ctx), **options)


def batch_wise_optimizer(ctx: MethodContext, **options: Any) -> BatchWise:
    return BatchWise(batch_size=_batch_size(ctx), **_textgrad_kwargs(ctx), **options)


def bootstrapping_optimizer(ctx: MethodContext, **options: Any) -> Bootstrapping:
    return Bootstrapping(batch_size=_batch_size(ctx), **_textgrad_kwargs(ctx), **options)


def _compiled(build: Callable[..., FGO]) -> Callable[..., dspy.Module]:
    """The method that compiles ``ctx.program`` with the optimizer ``build(ctx, **options)`` makes."""
    def run(ctx: MethodContext, **options: Any) -> dspy.Module:
        return build(ctx, **options).compile(ctx.program, trainset=ctx.trainset, valset=ctx.valset)
    return run


run_fgo, run_all_at_once = _compiled(fgo_optimizer), _compiled(all_at_once_optimizer)
run_batch_wise, run_bootstrapping = _compiled(batch_wise_optimizer), _compiled(bootstrapping_optimizer)


# FGO's mechanisms for the ablation (issue 16): "fgo+rules+tie+raw" is FGO with these options set over
# VARIANT_BASE, and "all-at-once+rules+tie+raw" the same options on a schedule baseline (which has no merge:
# no divide, same steps). The base is what FGO's defaults were when the variants were measured (the paper's
# procedure with the format check), so a variant's name means the same run before and after the defaults
# changed on 2026-12-03; "fgo" alone is FGO's defaults of the commit that runs it.
VARIANT_BASE: dict[str, Any] = {**PAPER_SETTINGS, "check_format": True}
FGO_SWITCHES: dict[str, dict[str, Any]] = {
    "rewrite": {"update": "rewrite"}, "rules": {"update": "rules"},
    "strict": {"acceptance": "improve"}, "tie": {"acceptance": "tie"}, "tieonce": {"acceptance": "tie-once"},
    "climb": {"acceptance": "climb"},
    "critic": {"feedback": "critique"}, "raw": {"feedback": "raw"},
    "check": {"check_format": True}, "nocheck": {"check_format": False},
    "ground": {"check_grounding": True}, "noground": {"check_grounding": False},
    "evidence": {"evidence": True}, "noevidence": {"evidence": False},
    "full": {"backtest": "full"}, "race": {"backtest": "race"}, "half": {"backtest": "half"},
    "prune": {"prune_rules": True}, "noprune": {"prune_rules": False}, "pruneall": {"prune_rules": "all"},
    "pick1": {"valset_candidates": 1}, "pick4": {"valset_candidates": 4},
    "pickall": {"valset_candidates": 1000},  # every node of the merge tree, as far as the budget goes
    "reserve": {"reserve_candidates": True},  # the valset candidates' runs kept up front (compat.valset_reservation)
    "byfailure": {"partition": "failures"}, "byrandom": {"partition": "random"},  # FGO only (the baselines do not divide)
    "instructions": {"components": "instructions"}, "alltexts": {"components": "all"},  # tool texts off / on
    "rounds": {"rounds": True}, "onepass": {"rounds": False},  # FGO only: a large budget in rounds, or one pass
}


VARIANT_BUILDERS: dict[str, Callable[..., FGO]] = {
    "fgo": fgo_optimizer, "all-at-once": all_at_once_optimizer, "batch-wise": batch_wise_optimizer,
    "bootstrapping": bootstrapping_optimizer,
}
VARIANT_HEADS: dict[str, Callable[..., dspy.Module]] = {
    "fgo": run_fgo, "all-at-once": run_all_at_once, "batch-wise": run_batch_wise, "bootstrapping": run_bootstrapping,
}
VARIANT_OPTIMIZERS: dict[str, type] = {"fgo": FGO, "all-at-once": AllAtOnce, "batch-wise": BatchWise,
                                       "bootstrapping": Bootstrapping}


def variant_options(name: str) -> tuple[str, dict[str, Any]] | None:
    """(head, options) of a variant named ``<head>+<switch>+...`` (a head of ``VARIANT_HEADS``, switches of
    ``FGO_SWITCHES``), or None. Options the optimizer refuses raise ValueError here, before any LLM call."""
    head, *switches = name.split("+")
    if head not in VARIANT_HEADS or not switches:
        return None
    unknown = [s for s in switches if s not in FGO_SWITCHES]
    if unknown:
        raise ValueError(f"unknown FGO switches {unknown} in {name!r}; known: {sorted(FGO_SWITCHES)}")
    base = {**VARIANT_BASE, "rounds": False} if head == "fgo" else VARIANT_BASE  # rounds came on 2026-12-04
    options = {**base, **{k: v for s in switches for k, v in FGO_SWITCHES[s].items()}}
    VARIANT_OPTIMIZERS[head](**options)  # its checks, now rather than after the methods listed before it
    return head, options


def fgo_variant(name: str) -> Callable[[MethodContext], dspy.Module] | None:
    """The factory of the variant ``name`` (see :func:`variant_options`), or None."""
    parsed = variant_options(name)
    if parsed is None:
        return None
    head, options = parsed
    return lambda ctx: VARIANT_HEADS[head](ctx, **options)


def variant_optimizer(name: str, ctx: MethodContext) -> FGO | None:
    """The optimizer the variant ``name`` compiles with, for ``ctx`` (None: not a variant)."""
    parsed = variant_options(name)
    return None if parsed is None else VARIANT_BUILDERS[parsed[0]](ctx, **parsed[1])


def run_miprov2(ctx: MethodContext) -> dspy.Module:
    from dspy.teleprompt import MIPROv2

    if ctx.max_metric_calls:
        # MIPROv2 scores each trial's program on the whole valset: the budget buys that many full evaluations.
        val = len(ctx.valset or ctx.trainset)
        trials = max(1, ctx.max_metric_calls // val - 1)
        optimizer = MIPROv2(metric=ctx.metric, prompt_model=ctx.optimizer_lm, task_model=ctx.task_lm, auto=None,
                            num_candidates=max(3, trials // 2), max_bootstrapped_demos=0, max_labeled_demos=0,
                            num_threads=ctx.num_threads, seed=ctx.seed)
        return optimizer.compile(ctx.program, trainset=ctx.trainset, valset=ctx.valset, num_trials=trials,
                                 minibatch=False)
    if ctx.auto == "tiny":
        optimizer = MIPROv2(metric=ctx.metric, prompt_model=ctx.optimizer_lm, task_model=ctx.task_lm, auto=None,
                            num_candidates=3, max_bootstrapped_demos=0, max_labeled_demos=0,
                            num_threads=ctx.num_threads, seed=ctx.seed)
        return optimizer.compile(ctx.program, trainset=ctx.trainset, valset=ctx.valset, num_trials=4,
                                 minibatch=False)
    optimizer = MIPROv2(metric=ctx.metric, prompt_model=ctx.optimizer_lm, task_model=ctx.task_lm, auto=ctx.auto,
                        num_threads=ctx.num_threads, seed=ctx.seed)
    return optimizer.compile(ctx.program, trainset=ctx.trainset, valset=ctx.valset)


def run_gepa(ctx: MethodContext) -> dspy.Module:
    from dspy.teleprompt import GEPA

    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        return ctx.feedback_metric(gold, pred, trace)

    if ctx.max_metric_calls:
        budget = {"max_metric_calls": ctx.max_metric_calls}
    else:
        budget = {"max_metric_calls": 60} if ctx.auto == "tiny" else {"auto": ctx.auto}
    optimizer = GEPA(metric=metric, reflection_lm=ctx.optimizer_lm, num_threads=ctx.num_threads, seed=ctx.seed,
                     **budget)
    return optimizer.compile(ctx.program, trainset=ctx.trainset, valset=ctx.valset)


def run_bootstrap_fewshot(ctx: MethodContext) -> dspy.Module:
    from dspy.teleprompt import BootstrapFewShot

    return BootstrapFewShot(metric=ctx.metric).compile(ctx.program, trainset=ctx.trainset)


def run_copro(ctx: MethodContext) -> dspy.Module:
    from dspy.teleprompt import COPRO

    optimizer = COPRO(prompt_model=ctx.optimizer_lm, metric=ctx.metric, breadth=4, depth=2)
    return optimizer.compile(ctx.program, trainset=ctx.trainset,
                             eval_kwargs={"num_threads": ctx.num_threads, "display_progress": False})


def run_seed(ctx: MethodContext) -> dspy.Module:
    """No optimization: the program as it came in."""
    return ctx.program.deepcopy()


def run_hand_written(ctx: MethodContext) -> dspy.Module:
    """No optimization: the program with the task's hand-written instruction (the headroom check)."""
    if ctx.hand_written is None:
        raise ValueError("This task has no hand-written instruction.")
    return ctx.hand_written.deepcopy()


METHODS: dict[str, Callable[[MethodContext], dspy.Module]] = {
    "seed": run_seed,
    "hand-written": run_hand_written,
    "fgo": run_fgo,
    "all-at-once": run_all_at_once,
    "batch-wise": run_batch_wise,
    "bootstrapping": run_bootstrapping,
    "miprov2": run_miprov2,
    "gepa": run_gepa,
    "bootstrap-fewshot": run_bootstrap_fewshot,
    "copro": run_copro,
}
