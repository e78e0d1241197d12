"""GEPA's and MIPROv2's vocabulary: the arguments FGO shares, the ones it has another name for, and the
budget in metric calls that FGO plans its steps to fit.

The budget formula (N trainset examples, V valset examples, E critique-and-rewrite steps per subset,
L merge levels: 0 for one subset, 1 when the subsets fit one merge, more for a deeper tree)::

    metric calls = N * (E + 1) + 2 * N * L * s + 2 * V

Each subset runs the seed on its examples once and each step's proposal once (N * (E + 1) over all
subsets); each merge level back-tests a merge and its best member on the union (at most 2 * N, less
with ``backtest="race"`` when a merge is clearly worse; ``s`` is 1, or 0.5 with ``backtest="half"``,
which decides on half of each union, and without a valset then runs the root on the trainset's other
half, N * (1 - s), for the final choice); the final choice runs the seed and the winner on
the valset (2 * V). With ``partition="failures"`` the seed runs on the whole trainset once, in the divide
stage, and the subsets' first steps reuse those runs: the same N, so the same formula (the critiques of
the seed's failures are LM calls, not metric calls; the first steps send the same prompts, which DSPy's
cache answers for free). The cost estimate's pilot (``estimate=True``) runs the seed on a few of those N
examples before the divide stage; the run that would have made them reuses them, so the pilot adds no
metric calls either. ``auto`` picks E (light 1, medium 2, heavy 4)
and sets the budget to the formula, at most GEPA's own ``auto`` budget for the same program and valset
(``gepa_auto_budget``: it grows with the valset, not the trainset); ``max_full_evals=k`` is GEPA's
``k * (N + V)``; with ``max_metric_calls`` (or ``max_full_evals``) and no ``epochs``, FGO takes the largest
E that fits (at least 1). When not even E = 1 fits the whole trainset, FGO optimizes on a sample of it
(``affordable_trainset``; by category when it partitions by a field) rather than run out of budget halfway
through its subsets. With ``prune_rules=True`` the plan keeps one more back-test of the union per level
(N * L * s) for the rule ablation, taken from the steps beyond the first (``auto`` adds it to its budget, still
at most GEPA's); pruning itself never spends what the merges above it are planned to need (``prune.py``).
With ``reserve_candidates=True`` the guard also keeps (k - 1) * V for the valset check's other candidates
(``valset_candidates=k``), as far as the budget covers them beyond one step per subset (``valset_reservation``).
The guard holds the budget in every case (a run overshoots by at most the runs in flight).
"""

from __future__ import annotations

import difflib
import logging
import math
from typing import Any

logger = logging.getLogger("dspy." + __name__)

AUTO_EPOCHS = {"light": 1, "medium": 2, "heavy": 4}
DEFAULT_EPOCHS = 2

# Arguments of dspy.GEPA / dspy.MIPROv2 (constructor and compile) with no FGO meaning -> what to use instead.
ALTERNATIVES = {
    "reflection_minibatch_size": "FGO critiques whole subsets: use subset_size= or num_subsets=",
    "candidate_selection_strategy": "FGO keeps the best candidate per subset and picks the final one on the valset",
    "use_merge": "FGO always merges its subsets: merge_clustering='none' merges them in one step",
    "max_merge_invocations": "use merge_threshold= (the group size merged in one LM call)",
    "instruction_proposer": "FGO's proposals come from optimizer_lm (reflection_lm); components= picks what is rewritten",
    "code_proposer": "FGO rewrites instructions and tool descriptions (components=)",
    "component_selector": "FGO rewrites every component each step: use components='instructions'|'tools'|'all'",
    "add_format_failure_as_feedback": "FGO always shows a failed run's error to the critic",
    "use_wandb": "FGO logs to MLflow: use_mlflow=True",
    "wandb_api_key": "FGO logs to MLflow: use_mlflow=True",
    "wandb_init_kwargs": "FGO logs to MLflow: use_mlflow=True",
    "warn_on_score_mismatch": "FGO checks the metric's scores itself (perfect_score=, failure_score=)",
    "gepa_kwargs": "FGO has no engine passthrough: its options are its constructor's arguments",
    "enable_tool_optimization": "FGO optimizes tool descriptions with components='tools' or 'all'",
    # MIPROv2
    "prompt_model": "use optimizer_lm= (or GEPA's reflection_lm=)",
    "task_model": "use task_lm=",
    "teacher_settings": "FGO uses no teacher program",
    "max_bootstrapped_demos": "FGO optimizes instructions, not demos: run dspy.BootstrapFewShot before or after",
    "max_labeled_demos": "FGO optimizes instructions, not demos: run dspy.LabeledFewShot before or after",
    "num_candidates": "use auto= or max_metric_calls= (FGO proposes one candidate per subset and step)",
    "num_trials": "use auto= or max_metric_calls= (or epochs=)",
    "init_temperature": "set the temperature on optimizer_lm",
    "minibatch": "FGO critiques whole subsets: use subset_size= or num_subsets=",
    "minibatch_size": "FGO critiques whole subsets: use subset_size= or num_subsets=",
    "minibatch_full_eval_steps": "FGO back-tests every merge on the union of its subsets",
    "program_aware_proposer": "FGO's proposals always see the program's components",
    "data_aware_proposer": "FGO's proposals see the runs and their critiques",
    "view_data_batch_size": "use subset_size=",
    "tip_aware_proposer": "FGO's proposals come from the critiques",
    "fewshot_aware_proposer": "FGO optimizes instructions, not demos",
    "requires_permission_to_run": "FGO does not ask: bound the run with max_metric_calls= or auto=",
    "provide_traceback": "FGO records every failure in fgo_result.errors",
    "verbose": "FGO logs through DSPy's logger ('dspy.dspy_fgo'); dspy.disable_logging() silences it",
    "metric_threshold": "use perfect_score= and failure_score=",
    "max_errors": "use max_retries=; an LM that keeps failing stops the run",
}


# GEPA's search knobs: they only steer GEPA's own search, so a GEPA call that sets them still means something
# to FGO. They are accepted and ignored with a warning that names the FGO alternative (the rest are errors).
SEARCH_KNOBS = ("reflection_minibatch_size", "candidate_selection_strategy", "use_merge", "max_merge_invocations",
                "component_selector", "add_format_failure_as_feedback", "warn_on_score_mismatch")


def split_known_knobs(unknown: dict[str, Any], where: str) -> dict[str, Any]:
    """Warn about GEPA's search knobs (ignored) and return the other unknown arguments."""
    for name in [n for n in unknown if n in SEARCH_KNOBS]:
        logger.warning("%s: GEPA's %s=%r has no FGO meaning and is ignored (%s)", where, name, unknown.pop(name),
                       ALTERNATIVES[name])
    return unknown


def reject_unknown(unknown: dict[str, Any], where: str, known: tuple[str, ...] = ()) -> None:
    """A TypeError for arguments FGO does not take, naming the FGO alternative or the closest name."""
    notes = []
    for name in unknown:
        if name in ALTERNATIVES:
            notes.append(f"{name!r} (a GEPA/MIPROv2 argument: {ALTERNATIVES[name]})")
        else:
            close = difflib.get_close_matches(name, known, n=1)
            notes.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(f"{where} got unexpected keyword argument(s): " + "; ".join(notes))


def merge_levels(subsets: int, threshold: int | None) -> int:
    """Levels of back-tests in the merge tree over ``subsets`` leaves (``threshold=None``: no merge)."""
    if threshold is None or subsets <= 1:
        return 0
    if subsets <= threshold:
        return 1
    k = max(2, math.isqrt(subsets))
    return merge_levels(math.ceil(subsets / k), threshold) + merge_levels(k, threshold)


def metric_calls(n_train: int, n_val: int, epochs: int, levels: int, share: float = 1.0) -> int:
    """The budget formula (module docstring; ``share``: s, the planned share of each union back-test)."""
    unchecked = math.ceil(n_train * (1 - share)) if levels and not n_val else 0  # the root's rest, without a valset
    return n_train * (epochs + 1) + math.ceil(2 * n_train * levels * share) + 2 * n_val + unchecked


def prune_reserve(n_train: int, levels: int, share: float, prune: bool) -> int:
    """Metric calls the plan keeps for the rule ablation: one more back-test of the union per level (N * L * s)."""
    return math.ceil(n_train * levels * share) if prune else 0


def valset_reservation(limit: int | None, n_train: int, n_val: int, levels: int, candidates: int = 1,
                       prune: bool = False, share: float = 1.0) -> int:
    """Valset runs the budget keeps out of the optimization's reach for the final check: the seed and the root
    (2 * V) and, for ``candidates`` > 1, up to ``candidates - 1`` more nodes (V each), as many as the budget
    covers beyond one step per subset, the merges and pruning's reserve (0 without a valset)."""
    if not n_val:
        return 0
    if limit is None or candidates <= 1:
        return 2 * n_val
    room = limit - metric_calls(n_train, n_val, 1, levels, share) - prune_reserve(n_train, levels, share, prune)
    return (2 + max(0, min(candidates - 1, room // n_val))) * n_val


def gepa_auto_budget(auto: str, num_predictors: int, n_val: int) -> int | None:
    """The metric calls ``dspy.GEPA(auto=auto)`` budgets for a program of ``num_predictors`` predictors and
    a valset of ``n_val`` examples (GEPA's own formula, called rather than copied; None without GEPA)."""
    try:
        from dspy.teleprompt.gepa.gepa import AUTO_RUN_SETTINGS, GEPA
    except ImportError:
        return None
    return int(GEPA.auto_budget(None, num_predictors, AUTO_RUN_SETTINGS[auto]["n"], n_val))


def affordable_trainset(limit: int, n_train: int, n_val: int, levels_of, epochs: int = 1, share: float = 1.0) -> int:
    """The most training examples ``epochs`` steps per subset, the merge back-tests and the valset check fit
    in ``limit`` metric calls (``levels_of(n)``: merge levels over n examples), at most ``n_train``, at least 1."""
    n = n_train
    while n > 1 and metric_calls(n, n_val, epochs, levels_of(n), share) > limit:
        n -= 1
    return n


def metric_call_limit(max_metric_calls: int | None, max_full_evals: int | None, n_train: int, n_val: int) -> int | None:
    """The metric-call budget: ``max_metric_calls``, or GEPA's ``max_full_evals * (N + V)``, or None."""
    return max_full_evals * (n_train + n_val) if max_full_evals is not None else max_metric_calls


def plan(auto: str | None, max_metric_calls: int | None, max_full_evals: int | None, epochs: int | None,
         n_train: int, n_val: int, levels: int, prune: bool = False, share: float = 1.0) -> tuple[int, int | None]:
    """(epochs, max_metric_calls) for one run (``prune``: keep N * L * s for the rule ablation; ``share``: s)."""
    reserve = prune_reserve(n_train, levels, share, prune)
    if auto is not None:
        e = epochs if epochs is not None else AUTO_EPOCHS[auto]
        return e, metric_calls(n_train, n_val, AUTO_EPOCHS[auto], levels, share) + reserve
    limit = metric_call_limit(max_metric_calls, max_full_evals, n_train, n_val)
    if limit is None:
        return (epochs if epochs is not None else DEFAULT_EPOCHS), None
    if epochs is not None:
        return epochs, limit
    fixed = metric_calls(n_train, n_val, 0, levels, share)
    e = max(1, (limit - fixed - reserve) // max(1, n_train))
    if metric_calls(n_train, n_val, e, levels, share) > limit:
        logger.warning("max_metric_calls=%d is below one step per subset (%d metric calls = N*(E+1) + 2*N*L*s + 2*V "
                       "with E=1): the run stops when the budget is spent", limit,
                       metric_calls(n_train, n_val, 1, levels, share))
    return e, limit
