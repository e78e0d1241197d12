import random
import threading

import dspy
import pytest
from fakes import FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import FGO, AllAtOnce, LMFailedError


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    """Retries back off with time.sleep; the tests need not wait."""
    monkeypatch.setattr("dspy_fgo.context._sleep", lambda seconds: None)


class Flaky:
    """Wraps a handler: a seeded ~20% of calls raise like a timeout, a rate limit or a server error (and the
    first ``fail_first`` calls do)."""

    def __init__(self, handler, rate=0.2, seed=0, fail_first=0):
        self.handler, self.rate, self.rng, self.lock, self.failures = handler, rate, random.Random(seed), threading.Lock(), 0
        self.fail_first = fail_first

    def __call__(self, request):
        with self.lock:
            fail = self.rng.random() < self.rate or self.fail_first > 0
            self.fail_first -= 1
            self.failures += fail
        if fail:
            raise self.rng.choice([TimeoutError("timed out"), ConnectionError("503 server error"),
                                   RuntimeError("429 rate limit")])
        return self.handler(request)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cls", [FGO, AllAtOnce])
def test_twenty_percent_failing_calls_never_end_the_run_or_make_it_worse(cls, seed):
    # the proposer reads the raw runs (no critic): a few optimizer calls in all, so make sure one fails
    task_faults, opt_faults = Flaky(uppercase_task, seed=seed), Flaky(rule_optimizer, seed=seed + 100, fail_first=1)
    train, val = word_examples(12), word_examples(18)[12:]
    kw = {"num_subsets": 4, "merge_threshold": 2} if cls is FGO else {}
    with dspy.context(lm=FakeLM(task_faults)):
        optimized = cls(metric=exact_metric, optimizer_lm=FakeLM(opt_faults), epochs=2, num_threads=2, seed=seed,
                        max_retries=2, **kw).compile(dspy.Predict("question -> answer"), trainset=train, valset=val)
    assert task_faults.failures and opt_faults.failures
    clean = FakeLM(uppercase_task)
    with dspy.context(lm=clean):
        seed_score = sum(exact_metric(ex, dspy.Predict("question -> answer")(**ex.inputs())) for ex in val)
        final_score = sum(exact_metric(ex, optimized(**ex.inputs())) for ex in val)
    assert final_score >= seed_score
    assert optimized.fgo_result.final_choice in ("optimized", "seed")


@pytest.mark.parametrize("feedback,role", [("raw", "optimizer"), ("critique", "evaluator")])
def test_every_optimizer_call_failing_stops_the_run_with_an_error_that_says_what_failed(feedback, role):
    """The first LM to fail 5 times in a row: the proposer (one call per subset: 5 subsets), or the critic."""
    def broken(request):
        raise ConnectionError("server down")

    opt = FakeLM(broken)
    with dspy.context(lm=FakeLM(uppercase_task)):
        with pytest.raises(LMFailedError, match=f"{role} LM failed on 5 calls in a row.*ConnectionError: server down"):
            FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=5, epochs=1, max_retries=1, num_threads=1,
                feedback=feedback).compile(dspy.Predict("question -> answer"), trainset=word_examples(10))
    assert len(opt.requests) == 0  # every call failed; the run did not go on to propose from zeros


def test_an_optimizer_that_failed_on_its_only_calls_stops_a_small_run_with_an_error():
    """Two subsets, one proposal each: too few calls for 5 in a row, yet the run must not return the seed as
    if optimizing had found nothing."""
    def broken(request):
        raise ConnectionError("server down")

    with dspy.context(lm=FakeLM(uppercase_task)):
        with pytest.raises(LMFailedError, match="optimizer LM failed on every one of its 2 calls.*server down"):
            FGO(metric=exact_metric, optimizer_lm=FakeLM(broken), num_subsets=2, epochs=1, max_retries=0,
                num_threads=1).compile(dspy.Predict("question -> answer"), trainset=word_examples(6))


def test_an_optimizer_that_fails_now_and_then_does_not_stop_the_run():
    calls = []

    def sometimes(request):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("blip")
        return rule_optimizer(request)

    with dspy.context(lm=FakeLM(uppercase_task)):
        result = FGO(metric=exact_metric, optimizer_lm=FakeLM(sometimes), num_subsets=2, epochs=1, max_retries=0,
                     num_threads=1).compile(dspy.Predict("question -> answer"), trainset=word_examples(6)).fgo_result
    assert result.errors and result.final_choice == "optimized"


def test_budget_stops_new_work_and_returns_the_best_so_far():
    task, opt = FakeLM(uppercase_task), FakeLM(rule_optimizer)
    with dspy.context(lm=task):
        optimized = FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=4, epochs=3, num_threads=1,
                        max_lm_calls=30).compile(dspy.Predict("question -> answer"), trainset=word_examples(16))
    result = optimized.fgo_result
    assert result.stopped and "max_lm_calls=30" in result.stopped
    assert task.calls + opt.calls < 60
