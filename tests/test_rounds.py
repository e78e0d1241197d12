"""A budget beyond a few steps per subset is spent in rounds (``rounds.py``); a step that changed nothing
shows the next one what it proposed in vain (``feedback.tried_note``)."""

import dspy
import pytest
from fakes import FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import FGO, AllAtOnce, FGOResult
from dspy_fgo.rounds import ROUND_EPOCHS, round_epochs


@pytest.fixture
def lms():
    task, opt = FakeLM(uppercase_task, model="fake/task"), FakeLM(rule_optimizer, model="fake/opt")
    with dspy.context(lm=task):
        yield task, opt


def compile_fgo(opt, tmp_path=None, **kwargs):
    kwargs = {"rounds": True, **kwargs}
    optimizer = FGO(metric=exact_metric, optimizer_lm=opt, num_threads=2,
                    log_dir=str(tmp_path / "log") if tmp_path else None, **kwargs)
    return optimizer.compile(dspy.Predict("question -> answer"), trainset=word_examples(12),
                             valset=word_examples(18)[12:])


def test_a_large_budget_runs_rounds_each_from_the_last_program(lms, tmp_path):
    task, opt = lms
    out = compile_fgo(opt, tmp_path, max_metric_calls=400)
    r = out.fgo_result
    # round 1 finds the rule; round 2 starts from its program, finds every run perfect and keeps it
    assert len(r.rounds) == 2 and r.rounds[1].seed_candidate == r.rounds[0].final_candidate == r.final_candidate
    assert r.final_candidate != r.seed_candidate == r.rounds[0].seed_candidate
    assert r.final_choice == "optimized" and r.val_scores["optimized"] == 1.0 and "round 2:" in r.reason
    assert all(len(s.steps) == ROUND_EPOCHS for s in r.subsets)
    spent = [x["metric_calls"] for x in r.accounting["rounds"]]
    assert spent[0] < spent[1] == r.total_metric_calls <= 400
    assert (tmp_path / "log" / "round-2").is_dir()
    assert "rounds: 2" in r.summary() and "round 1 of 2" in r.summary()
    report = r.report()
    assert report.count("===== round") == 2 and report.index("round 1 of 2") < report.index("round 2 of 2")


def test_explicit_epochs_or_a_small_budget_run_one_round(lms):
    task, opt = lms
    r = compile_fgo(opt, max_metric_calls=400, epochs=5).fgo_result
    assert r.rounds == [] and all(len(s.steps) == 5 for s in r.subsets)
    assert round_epochs(FGO(metric=exact_metric, max_metric_calls=400, rounds=True), 12, 6) == ROUND_EPOCHS
    assert round_epochs(FGO(metric=exact_metric, max_metric_calls=90, rounds=True), 12, 6) is None  # <= 3 steps fit
    assert round_epochs(FGO(metric=exact_metric, auto="heavy", rounds=True), 12, 6) is None
    assert round_epochs(FGO(metric=exact_metric, rounds=True), 12, 6) is None  # no budget: the epochs as planned
    assert round_epochs(FGO(metric=exact_metric, max_metric_calls=400), 12, 6) is None  # off by default
    assert round_epochs(AllAtOnce(metric=exact_metric, max_metric_calls=400), 12, 6) is None  # no merge, no rounds


def test_rounds_survive_saving_and_a_rerun_resumes_every_round(lms, tmp_path):
    task, opt = lms
    first = compile_fgo(opt, tmp_path, max_metric_calls=400).fgo_result
    first.to_json(tmp_path / "run.json")
    loaded = FGOResult.load(tmp_path / "run.json")
    assert [x.final_candidate for x in loaded.rounds] == [x.final_candidate for x in first.rounds]
    assert loaded.seed_candidate == first.seed_candidate and loaded.accounting["rounds"] == first.accounting["rounds"]
    calls = task.calls
    again = compile_fgo(opt, tmp_path, max_metric_calls=400).fgo_result
    assert again.final_candidate == first.final_candidate and len(again.rounds) == 2
    assert task.calls - calls <= 12  # a rerun reads every round back from log_dir (the seed's runs on the
    # trainset for the last round's "nothing changed" check at most)


def test_a_step_that_changed_nothing_shows_the_next_its_proposal():
    requests = []

    def stubborn(request):  # proposes one rule, again and again
        if "new_rules" in request.outputs:
            requests.append(request.fields.get("feedback", ""))
            return {"new_rules": "- Give the answer in lowercase letters."}
        return rule_optimizer(request)

    with dspy.context(lm=FakeLM(uppercase_task)):
        FGO(metric=exact_metric, optimizer_lm=FakeLM(stubborn), num_subsets=1, epochs=3, num_threads=1,
            merge_threshold=2, estimate=False).compile(dspy.Predict("question -> answer"), trainset=word_examples(4))
    # step 0 adds the rule; step 1 proposes it again (a duplicate: nothing changes); step 2 is told so
    assert len(requests) == 3
    assert ["previous proposal" in f for f in requests] == [False, False, True]
    assert "lowercase letters" in requests[2].split("previous proposal")[1]
