"""backtest="race": a merge clearly worse than its best member is stopped early on a slice of the union;
any other merge runs on the whole union and is decided as backtest="full" decides it. backtest="half":
the same race, decided on half of the union."""

import re
import shutil

import dspy
import pytest
from fakes import RULE, FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import FGO, PAPER_SETTINGS
from dspy_fgo.backtest import clearly_worse, race_order, race_slices, sign_test, union_estimate
from dspy_fgo.compat import metric_calls, plan

N = 24  # two subsets of 12 (by category), one merge over all 24


def subset_optimizer(merged_text=None):
    """Each subset learns the uppercase rule in its own words; the merge LM writes ``merged_text`` (None:
    rule_optimizer's merge, which keeps the rule)."""

    def handler(request):
        if "new_text" in request.outputs:
            category = re.search(r"category: (c\d)", request.fields.get("feedback", ""))
            return {"new_text": f"{RULE} Learned on {category.group(1) if category else 'c?'}."}
        if "merged_text" in request.outputs and merged_text is not None:
            return {"merged_text": merged_text}
        return rule_optimizer(request)

    return handler


def run(backtest, merged_text=None, log_dir=None, seed=0, valset=True):
    """The paper's path: free-text rewrites and an LM merge (a rules merge is a union without one)."""
    task = FakeLM(uppercase_task, model="fake/task")
    opt = FakeLM(subset_optimizer(merged_text), model="fake/opt")
    fgo = FGO(**PAPER_SETTINGS, metric=exact_metric, optimizer_lm=opt, partition="category", num_subsets=2, epochs=1,
              num_threads=1, backtest=backtest, seed=seed, log_dir=str(log_dir) if log_dir else None)
    with dspy.context(lm=task):
        out = fgo.compile(dspy.Predict("question -> answer"), trainset=word_examples(N, categories=2),
                          valset=word_examples(4) if valset else None)
    return out.fgo_result, task, opt


def merge_runs(result):
    return result.accounting["stages"]["merge"]["metric_calls"]


def test_a_much_worse_merge_stops_early_for_fewer_task_runs_and_keeps_the_member():
    full, full_task, _ = run("full", "Answer in lowercase.")
    raced, race_task, _ = run("race", "Answer in lowercase.")
    root, member = raced.merge_root, max(raced.merge_root.children, key=lambda c: c.score)
    assert root.candidate == member.candidate == full.merge_root.candidate
    assert root.proposed["self"] == "Answer in lowercase." and root.proposed_score == 0.0
    assert root.estimated and not full.merge_root.estimated and root.score == 1.0
    # the first slice (6 of 24) is 6 losses to 0: p = 1/64; the member runs only on the other subset's examples
    assert root.note.startswith("race stopped after 6 of 24 examples: merged 0/6 vs member")
    assert "6/6 (sign test p=0.016): kept the member" in root.note
    assert merge_runs(full) == 24 + 12 and "(36 back-test runs)" in full.merge_root.note
    assert merge_runs(raced) < 12 and f"{merge_runs(raced)} back-test runs" in root.note
    assert full_task.calls - race_task.calls == merge_runs(full) - merge_runs(raced)
    assert raced.final_candidate == full.final_candidate and raced.final_choice == "optimized"


def test_a_stopped_race_at_the_root_is_not_taken_as_the_trainset_score_without_a_valset():
    raced, _, _ = run("race", "Answer in lowercase.", valset=False)
    assert raced.merge_root.estimated
    assert raced.train_scores == {"seed": 0.0, "optimized": 1.0} and raced.final_choice == "optimized"


@pytest.mark.parametrize("merged_text", [None, "Always answer in UPPERCASE. Learned on c0 and c1."])
def test_a_merge_as_good_runs_the_whole_union_and_is_decided_as_full_decides(merged_text):
    full, _, _ = run("full", merged_text)
    raced, _, _ = run("race", merged_text)
    root = raced.merge_root
    assert root.candidate == root.proposed == full.merge_root.candidate and not root.estimated
    assert root.score == full.merge_root.score == 1.0 and root.proposed_score == full.merge_root.proposed_score
    assert root.note == "merged: 1.000 >= best member's 1.000 on the union (race ran all 24; 36 back-test runs)"
    assert merge_runs(raced) == merge_runs(full) == 36  # the member's own 12 scores came from the ledger
    assert raced.final_candidate == full.final_candidate


def test_a_slightly_worse_merge_is_not_stopped_but_rejected_on_the_union():
    # loses only on c1's examples where the question ends in 5 (2 of 24): never 4 discordant pairs early
    def task(request):
        out = uppercase_task(request)
        if "slightly" in request.system and request.fields.get("question", "").endswith("5"):
            out["answer"] = out["answer"].lower()
        return out

    opt = FakeLM(subset_optimizer(f"{RULE} Merged slightly."), model="fake/opt")
    with dspy.context(lm=FakeLM(task, model="fake/task")):
        result = FGO(**PAPER_SETTINGS, metric=exact_metric, optimizer_lm=opt, partition="category", num_subsets=2,
                     epochs=1, num_threads=1, backtest="race").compile(dspy.Predict("question -> answer"),
                                              trainset=word_examples(N, categories=2)).fgo_result
    root = result.merge_root
    assert root.candidate != root.proposed and not root.estimated
    assert root.note.startswith("merge scored 0.917 < member") and "kept the member (race ran all 24" in root.note


def test_the_slices_are_seeded_growing_and_cover_the_union_once():
    union = list(range(3, 43, 2))  # 20 examples
    slices = race_slices(union, seed=0)
    assert [len(s) for s in slices] == [5, 5, 10]
    assert sorted(i for s in slices for i in s) == union
    assert race_slices(list(reversed(union)), seed=0) == slices  # the union's order does not matter
    assert race_slices(union, seed=1) != slices
    assert [len(s) for s in race_slices([7], seed=0)] == [1]
    assert sign_test(4, 0) == 1 / 16 and sign_test(0, 4) == 1.0 and abs(sign_test(6, 1) - 8 / 128) < 1e-12


def test_a_merge_that_ties_its_member_on_the_union_is_rarely_stopped():
    n = 64  # 16 examples where the merge wins, 16 where it loses, 32 alike
    ours = {i: float(i < 16 or 32 <= i < 48) for i in range(n)}
    theirs = {i: float(16 <= i < 48) for i in range(n)}
    stops = 0
    for seed in range(500):
        seen = []
        for new in race_slices(range(n), seed)[:-1]:
            seen += new
            if clearly_worse({i: ours[i] for i in seen}, {i: theirs[i] for i in seen}) is not None:
                stops += 1
                break
    assert stops / 500 < 0.1
    assert clearly_worse({0: 0, 1: 0, 2: 0, 3: 0}, {0: 1, 1: 1, 2: 1, 3: 1}) == 1 / 16
    assert clearly_worse({0: 0, 1: 0, 2: 0}, {0: 1, 1: 1, 2: 1}) is None  # 3 differing examples are too few


def test_a_stopped_race_estimates_each_stratum_from_its_own_examples():
    # own examples 0-3 all known (1.0), the rest known only at 4 (0.0) and 5 (1.0): they count 0.5 each
    assert union_estimate({0: 1, 1: 1, 2: 1, 3: 1, 4: 0, 5: 1}, [[0, 1, 2, 3], [4, 5, 6, 7]]) == 6 / 8


def test_the_same_seed_races_the_same_slices():
    first, first_task, _ = run("race", "Answer in lowercase.")
    again, again_task, _ = run("race", "Answer in lowercase.")
    other, other_task, _ = run("race", "Answer in lowercase.", seed=3)

    def merge_questions(task, result):  # the back-test's task requests come after the subsets' 2 * 24
        return [r.fields["question"] for r in task.requests[2 * N: 2 * N + merge_runs(result)]]

    assert first.merge_root.note == again.merge_root.note
    assert merge_questions(first_task, first) == merge_questions(again_task, again)
    assert merge_questions(first_task, first) != merge_questions(other_task, other)


def test_a_bad_backtest_value_is_a_clear_error():
    with pytest.raises(ValueError, match=r"backtest must be one of \('full', 'race', 'half'\), got 'fast'"):
        FGO(metric=exact_metric, backtest="fast")
    # the default leaves older log_dirs' fingerprints as they were; "race" is part of the fingerprint
    assert "backtest" not in FGO(metric=exact_metric)._fingerprint_config()
    assert FGO(metric=exact_metric, backtest="race")._fingerprint_config()["backtest"] == "race"


def test_a_raced_merge_resumes_from_its_checkpoint_and_is_redone_at_the_same_cost_without_it(tmp_path):
    fresh, _, _ = run("race", "Answer in lowercase.")
    first, _, _ = run("race", "Answer in lowercase.", log_dir=tmp_path)
    again, task, opt = run("race", "Answer in lowercase.", log_dir=tmp_path)
    assert again.resumed["merges"] == 1 and not [r for r in opt.requests if "merged_text" in r.outputs]
    assert again.merge_root.to_dict() == first.merge_root.to_dict() == fresh.merge_root.to_dict()
    assert again.merge_root.estimated and task.calls == 0 and opt.calls == 0  # valset scores resumed too
    # without the merge checkpoint the merge is redone: the subsets' per-example scores come back with
    # them, so the member does not run again on its own examples and the race costs what it cost at first
    shutil.rmtree(tmp_path / "merges")
    redone, _, _ = run("race", "Answer in lowercase.", log_dir=tmp_path)
    assert redone.resumed["subsets"] == 2 and redone.resumed["merges"] == 0
    assert redone.merge_root.candidate == fresh.merge_root.candidate and redone.merge_root.estimated
    runs = [int(re.search(r"; (\d+) back-test runs", r.merge_root.note).group(1)) for r in (redone, fresh)]
    assert runs == [9, 9] and "race stopped after 6 of 24" in redone.merge_root.note
    # a race and a full run do not share a log_dir
    with pytest.raises(ValueError, match="another trainset"):
        run("full", "Answer in lowercase.", log_dir=tmp_path)


# ----- backtest="half" -------------------------------------------------------------------------------


def test_the_race_order_holds_each_member_in_proportion_and_the_known_examples_first():
    a, b = list(range(18)), list(range(18, 30))
    order = race_order(range(30), seed=0, strata=[a, b], known={5, 9, 11})
    assert sorted(order) == list(range(30))
    for k in range(1, 31):  # every prefix holds each member's examples in proportion (to within one)
        assert abs(sum(i in a for i in order[:k]) - k * 18 / 30) <= 1
    assert set([i for i in order if i in a][:3]) == {5, 9, 11}  # the compared member's known scores first
    assert race_order(range(30), seed=0, strata=[a, b]) != race_order(range(30), seed=1, strata=[a, b])
    plain = race_order(range(30), seed=0, strata=[a, b])
    assert race_slices(range(30), 0, (0.25, 0.5), [a, b]) == [plain[:8], plain[8:15]]


def test_half_decides_a_good_merge_on_half_the_union_at_half_the_runs_of_full():
    full, _, _ = run("full")
    half, _, _ = run("half")
    root = half.merge_root
    assert root.candidate == root.proposed == full.merge_root.candidate and root.estimated
    assert merge_runs(full) == 36 and merge_runs(half) == 18  # merged on 12 of 24, the member on 6 of its 12 others
    assert root.note == ("merged: 1.000 >= best member's 1.000 on the union "
                         "(race ran 12 of 24, union scores estimated; 18 back-test runs)")
    assert half.final_candidate == full.final_candidate


def test_half_stops_a_much_worse_merge_on_the_first_quarter_as_the_race_does():
    raced, _, _ = run("race", "Answer in lowercase.")
    half, _, _ = run("half", "Answer in lowercase.")
    assert half.merge_root.note == raced.merge_root.note and half.merge_root.candidate == raced.merge_root.candidate
    assert merge_runs(half) == merge_runs(raced) == 9


def test_half_plans_half_the_back_test_runs_and_spends_the_rest_on_steps():
    # 30 training / 20 validation examples, two merge levels, pruning's reserve, 250 metric calls
    assert metric_calls(30, 20, 1, 2) == 60 + 120 + 40 and metric_calls(30, 20, 1, 2, 0.5) == 60 + 60 + 40
    assert plan(None, 250, None, None, 30, 20, 2, prune=True) == (1, 250)
    assert plan(None, 250, None, None, 30, 20, 2, prune=True, share=0.5) == (3, 250)
    assert plan("light", None, None, None, 30, 20, 2, share=0.5) == (1, metric_calls(30, 20, 1, 2, 0.5))


def test_half_without_a_valset_runs_the_root_only_on_the_trainset_half_it_has_not_seen():
    half, _, _ = run("half", valset=False)
    assert half.merge_root.estimated and half.final_choice == "optimized"
    assert half.train_scores == {"seed": 0.0, "optimized": 1.0}
    assert half.accounting["stages"]["select"]["metric_calls"] == 12  # 24 - the 12 its back-test ran
    assert metric_calls(24, 0, 1, 1, 0.5) == 48 + 24 + 12 and metric_calls(24, 0, 1, 1) == 48 + 48


def test_a_full_back_test_takes_a_members_runs_from_the_ledger_instead_of_running_them_again():
    # every proposal is worse and not kept: both subsets' best is the seed, which already ran on the whole union
    task = FakeLM(uppercase_task, model="fake/task")
    opt = FakeLM(lambda request: {"new_text": "Answer in lowercase."} if "new_text" in request.outputs else
                 rule_optimizer(request), model="fake/opt")
    fgo = FGO(**PAPER_SETTINGS, metric=exact_metric, optimizer_lm=opt, partition="category", num_subsets=2,
              epochs=1, num_threads=1, backtest="full")
    with dspy.context(lm=task):
        result = fgo.compile(dspy.Predict("question -> answer"), trainset=word_examples(N, categories=2),
                             valset=word_examples(4)).fgo_result
    assert [s.best_candidate for s in result.subsets] == [result.seed_candidate] * 2
    assert result.merge_root.note == "merge changed nothing: member 0 (0.000)"
    assert "merge" not in result.accounting["stages"]  # before: 12 metric calls, the seed's runs over again
    assert result.total_metric_calls == task.calls == 2 * N  # the seed and the rejected rewrite, once each
