"""FGO's subsets as Ray tasks on a local Ray instance (skipped without Ray)."""

import dspy
import pytest
from fakes import FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import FGO

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    import fakes

    ray.cloudpickle.register_pickle_by_value(fakes)  # workers cannot import the tests folder
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def compile_with(executor, **kw):
    task, opt = FakeLM(uppercase_task, model="fake/task"), FakeLM(rule_optimizer, model="fake/opt")
    with dspy.context(lm=task):
        return FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=4, epochs=1, merge_threshold=2, seed=3,
                   executor=executor, **kw).compile(dspy.Predict("question -> answer"), trainset=word_examples(12),
                                              valset=word_examples(3))


def test_ray_executor_matches_the_thread_executor(local_ray):
    on_threads, on_ray = compile_with("thread").fgo_result, compile_with("ray").fgo_result
    assert on_ray.final_candidate == on_threads.final_candidate
    assert [s.indices for s in on_ray.subsets] == [s.indices for s in on_threads.subsets]
    assert [s.best_score for s in on_ray.subsets] == [s.best_score for s in on_threads.subsets]
    # the workers' LM usage comes back into the driver's accounting (no evaluator: feedback="raw" has no critic)
    roles = on_threads.accounting["roles"]
    assert set(on_ray.accounting["roles"]) == set(roles) >= {"task", "optimizer"}
    for role in roles:
        assert on_ray.accounting["roles"][role]["calls"] == roles[role]["calls"]


def test_ray_and_threads_stop_on_the_same_budget(local_ray):
    on_threads = compile_with("thread", max_lm_calls=40).fgo_result
    on_ray = compile_with("ray", max_lm_calls=40).fgo_result
    assert on_threads.stopped and on_ray.stopped and "max_lm_calls=40" in on_ray.stopped
