"""Benchmark tasks by name: data splits, the program, the metrics, a hand-written instruction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dspy


@dataclass
class TaskSpec:
    train: list[dspy.Example]
    val: list[dspy.Example]
    test: list[dspy.Example]
    program_factory: Callable[[], dspy.Module]
    metric: Callable
    feedback_metric: Callable
    hand_written_program: Callable[[], dspy.Module]
    task_table: Callable[[dict], str] | None = None  # a task-specific results table (household: the paper's Table 1)


def load_task(name: str, train: int, val: int, test: int, seed: int = 0, **options) -> TaskSpec:
    if name == "invoices":
        if options.pop("metric", None) is not None:
            raise ValueError("--metric applies to the household task only")
        return _invoices(train, val, test, seed, **options)
    if name == "household":
        return _household(train, val, test, seed, **options)
    if name in SHORT_TASKS:
        return _short(name, train, val, test, seed, **options)
    raise ValueError(f"Unknown task {name!r}; known: invoices, household, {', '.join(SHORT_TASKS)}")


SHORT_TASKS = ("tickets", "prices", "tracking", "appointments", "payments", "stock", "bookings")  # short inputs: benchmarks/tasks/<name>.py


def _short(name: str, train: int, val: int, test: int, seed: int, profile: str = "small", program: str = "predict",
           metric: str | None = None, feedback: str = "rule") -> TaskSpec:
    """A task module's ``TASK`` (a ``short.ShortTask``, or the stock agent's own spec); no profiles, no metrics.
    ``feedback="rule"``: the feedback metric cites the category's rule when wrong; ``"plain"``: expected
    against got only, so the rules must be learned from the examples."""
    if feedback not in ("rule", "plain"):
        raise ValueError(f"feedback must be 'rule' or 'plain', got {feedback!r}")
    import importlib

    if profile != "small" or metric is not None:
        raise ValueError(f"--profile and --metric do not apply to the {name} task")
    task = importlib.import_module(f"benchmarks.tasks.{name}").TASK
    # As for the invoices: the test set depends only on (test, seed), train and val on (train + val, seed + 1).
    test_set = task.to_examples(task.load(test, seed=seed)) if test else []
    learn = task.to_examples(task.load(train + val, seed=seed + 1)) if train + val else []
    return TaskSpec(train=learn[:train], val=learn[train:], test=test_set,
                    program_factory=lambda: task.make_program(program), metric=task.metric,
                    feedback_metric=task.feedback_metric if feedback == "rule" else
                    getattr(task, "plain_feedback_metric", task.feedback_metric),
                    hand_written_program=lambda: task.make_program(program, hand_written=True))


def _household(train: int, val: int, test: int, seed: int, profile: str = "easy", program: str = "verbs",
               metric: str = "won") -> TaskSpec:
    """ALFWorld-style games (the ``bench`` extra); ``profile`` is the difficulty, ``program`` the agent's options
    (``verbs`` or ``act`` tools, ``-commands``, ``-json``, ``-demo``; see ``household.parse_agent_kind``),
    ``metric`` ``won`` (ALFWorld's success) or ``progress`` (fraction of sub-goals reached, 1 if won)."""
    from benchmarks.tasks import household

    agent = "verbs" if program == "predict" else program  # the runner's default program means the default agent
    tr, va, te, make, _, hand = household.load_household_task(train, val, test, seed=seed, difficulty=profile,
                                                                   agent=agent)
    metrics = {"won": (household.household_metric, household.household_metric_with_feedback),
               "progress": (household.household_progress_metric, household.household_progress_metric_with_feedback)}
    if metric not in metrics:
        raise ValueError(f"household metric must be one of {sorted(metrics)}, not {metric!r}")
    return TaskSpec(tr, va, te, make, *metrics[metric], hand, task_table=household.format_table1)


def _invoices(train: int, val: int, test: int, seed: int, profile: str = "small", program: str = "predict") -> TaskSpec:
    from benchmarks.tasks import invoices

    # The test set depends only on (test, seed): runs with other train/val sizes share it.
    test_set = invoices.to_examples(invoices.load_invoices(test, seed=seed, profile=profile)) if test else []
    learn = invoices.to_examples(invoices.load_invoices(train + val, seed=seed + 1, profile=profile)) if train + val else []

    def hand_written() -> dspy.Module:
        p = invoices.make_program(program)
        for predictor in p.predictors():
            predictor.signature = predictor.signature.with_instructions(invoices.HAND_WRITTEN_INSTRUCTION)
        return p

    return TaskSpec(
        train=learn[:train], val=learn[train:], test=test_set,
        program_factory=lambda: invoices.make_program(program), metric=invoices.invoice_metric,
        feedback_metric=invoices.invoice_metric_with_feedback, hand_written_program=hand_written,
    )
