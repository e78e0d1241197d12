"""The cost estimate (estimate.py): printed before the run from the plan and a pilot, set against the actual
usage after it. Offline, on the fake uppercase task.

What the fakes do that the estimate cannot know, and so where it is off on them:
- the fake critic writes ~18-token critiques (the estimate assumes 100), so the proposals' feedback is shorter;
- the fake optimizer fixes every failure in the first step (the estimate assumes a kept proposal fixes 15% of
  what is left), so with epochs=2 the second step never runs;
- every subset's fake rewrite (or rule) is the same text, so no merge calls the LM, is back-tested or has its
  rules pruned (the estimate expects merges).
"""

import json
import math
import random
import re

import dspy
import pytest
from fakes import FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import FGO, AllAtOnce, FGOResult
from dspy_fgo.budget import Budget
from dspy_fgo.context import RunContext
from dspy_fgo.divide import DivideSchedule
from dspy_fgo.estimate import CostEstimate, estimate_run


@pytest.fixture
def lms():
    task, opt = FakeLM(uppercase_task, model="fake/task"), FakeLM(rule_optimizer, model="fake/opt")
    with dspy.context(lm=task):
        yield task, opt


def compile_fgo(opt, cls=FGO, n=12, **kw):
    kw = {"metric": exact_metric, "optimizer_lm": opt, "num_threads": 2, **kw}
    if cls is FGO:
        kw.setdefault("num_subsets", 4)
    return cls(**kw).compile(dspy.Predict("question -> answer"), trainset=word_examples(n),
                             valset=word_examples(n + 4)[n:]).fgo_result


def side(result: FGOResult):
    """(estimate, low, high, actual) of the optimizer side's calls and prompt tokens."""
    est = result.accounting["estimate"]

    def pick(d):
        return d["calls"], d["prompt_tokens"]

    rng = est["optimizer_side_range"]
    return pick(est["optimizer_side"]), pick(rng["low"]), pick(rng["high"]), pick(result.accounting["optimizer_side"])


OFF = "the fakes fix every failure in one step and agree (no merge): see the module docstring"
CONFIGS = [
    (1, "rewrite", "critique"),
    pytest.param(1, "rewrite", "raw", marks=pytest.mark.xfail(strict=True, reason=OFF)),  # prompt x0.70
    (1, "rules", "critique"),
    (1, "rules", "raw"),
    pytest.param(2, "rewrite", "critique", marks=pytest.mark.xfail(strict=True, reason=OFF)),  # x0.62, x0.47
    pytest.param(2, "rewrite", "raw", marks=pytest.mark.xfail(strict=True, reason=OFF)),  # x0.73: no merge needed
    pytest.param(2, "rules", "critique", marks=pytest.mark.xfail(strict=True, reason=OFF)),  # x0.62, x0.50
    pytest.param(2, "rules", "raw", marks=pytest.mark.xfail(strict=True, reason=OFF)),  # x0.50, x0.45
]


@pytest.mark.parametrize("epochs,update,feedback", CONFIGS)
def test_optimizer_side_calls_and_prompt_tokens_within_25_percent(lms, epochs, update, feedback):
    task, opt = lms
    (calls, prompt), _, _, (actual_calls, actual_prompt) = side(
        compile_fgo(opt, epochs=epochs, update=update, feedback=feedback))
    assert 0.75 * calls <= actual_calls <= 1.25 * calls
    assert 0.75 * prompt <= actual_prompt <= 1.25 * prompt


@pytest.mark.parametrize("epochs,update,feedback", [
    (e, u, f) for e in (1, 2) for u in ("rewrite", "rules") for f in ("critique", "raw")])
def test_actual_usage_lies_in_the_estimates_range(lms, epochs, update, feedback):
    """low: the first step fixes every failure and no merge needs the LM; high: no step fixes any. The 25%
    margin is for the reply lengths (critiques, rewrites), which are assumed."""
    task, opt = lms
    _, (low_calls, low_prompt), (high_calls, high_prompt), (calls, prompt) = side(
        compile_fgo(opt, epochs=epochs, update=update, feedback=feedback))
    assert 0.75 * low_calls <= calls <= 1.25 * high_calls
    assert 0.75 * low_prompt <= prompt <= 1.25 * high_prompt


def test_steps_that_fix_nothing_are_estimated_within_25_percent(lms):
    """A proposer that finds no rule: every step runs (the fakes above fix every failure in the first)."""
    task, _ = lms
    blind = FakeLM(lambda r: {"new_rules": ""} if "new_rules" in r.outputs else rule_optimizer(r), model="fake/opt")
    (calls, prompt), _, _, (actual_calls, actual_prompt) = side(compile_fgo(blind, epochs=2))
    assert actual_calls == calls == 8  # 4 subsets, 2 steps
    assert 0.75 * prompt <= actual_prompt <= 1.25 * prompt


def test_task_and_critique_prompts_are_measured_exactly(lms):
    task, opt = lms
    result = compile_fgo(opt, epochs=1, feedback="critique")
    est, roles = result.accounting["estimate"]["roles"], result.accounting["roles"]
    assert est["evaluator"]["calls"] == roles["evaluator"]["calls"] == 12  # the seed fails every run
    assert abs(est["evaluator"]["prompt_tokens"] - roles["evaluator"]["prompt_tokens"]) <= 12
    pilot = result.accounting["estimate"]["pilot"]
    per_run = (roles["task"]["prompt_tokens"] + roles["task"]["completion_tokens"]) / roles["task"]["calls"]
    assert pilot["runs"] == 12 and pilot["failure_rate"] == 1.0 and pilot["task_calls_per_run"] == 1.0
    assert abs(pilot["task_tokens_per_run"] - per_run) / per_run < 0.1


def test_task_tokens_per_run_are_the_lms_own_count_where_it_reports_one():
    """A task LM whose tokenizer spends twice the project counter's tokens on its replies (Qwen reads an id's
    digits one by one): the estimate's task completion tokens follow what the LM reports."""
    task = FakeLM(uppercase_task, model="fake/task", completion_scale=2.0)
    with dspy.context(lm=task):
        result = compile_fgo(FakeLM(rule_optimizer, model="fake/opt"), epochs=1)
    est, actual = result.accounting["estimate"]["roles"]["task"], result.accounting["roles"]["task"]
    per_call = actual["completion_tokens"] / actual["calls"]
    assert abs(est["completion_tokens"] / est["calls"] - per_call) / per_call < 0.1


def test_the_pilot_costs_no_extra_metric_calls_and_no_optimizer_calls(lms):
    task, opt = lms
    with_estimate = compile_fgo(opt, epochs=1)
    calls = task.calls
    without = compile_fgo(FakeLM(rule_optimizer, model="fake/opt"), epochs=1, estimate=False)
    assert with_estimate.total_metric_calls == without.total_metric_calls
    assert calls == task.calls - calls  # the task LM ran as often (the pilot's runs were the first step's)
    stages = with_estimate.accounting["stages"]
    assert stages["estimate"]["metric_calls"] == 12 and set(stages["estimate"]["roles"]) == {"task"}
    assert "estimate" not in without.accounting and "estimate" not in without.summary()
    assert with_estimate.final_candidate == without.final_candidate


def test_the_estimate_is_in_the_saved_json_and_the_summary(lms, tmp_path):
    task, opt = lms
    result = compile_fgo(opt, epochs=1)
    result.to_json(tmp_path / "run.json")
    data = json.loads((tmp_path / "run.json").read_text())
    est = data["accounting"]["estimate"]
    assert set(est["roles"]) == {"task", "evaluator", "optimizer", "merge"}
    assert est["planned_metric_calls"] == 12 * 2 + 2 * 12 + 2 * 4  # N(E+1) + 2NL + 2V
    assert {"critique_tokens", "fix_rate"} <= set(est["assumptions"])
    summary = FGOResult.load(tmp_path / "run.json").summary()
    assert "estimate -> actual" in summary
    # no critic (feedback="raw"): the optimizer's calls are as estimated, one per subset
    assert any(line.strip().startswith("optimizer") and "4 -> 4 (x1.00)" in line for line in summary.splitlines())


def test_a_budget_too_small_for_the_plan_is_called_so(lms, caplog):
    task, opt = lms
    with caplog.at_level("WARNING", logger="dspy.dspy_fgo"):
        result = compile_fgo(opt, epochs=2, max_tokens=3000)
    warnings = result.accounting["estimate"]["warnings"]
    assert any(w.startswith("Budget too small: max_tokens=3,000") for w in warnings)
    assert "Budget too small: max_tokens" in caplog.text
    assert result.stopped  # and indeed the run stopped early
    roomy = compile_fgo(FakeLM(rule_optimizer, model="fake/opt"), epochs=1, max_metric_calls=2000)
    assert not [w for w in roomy.accounting["estimate"]["warnings"] if "too small" in w]
    tight = compile_fgo(FakeLM(rule_optimizer, model="fake/opt"), epochs=2, max_metric_calls=30)
    assert any("max_metric_calls=30" in w for w in tight.accounting["estimate"]["warnings"])


def test_estimate_run_alone_calls_no_optimizer_side_lm(lms):
    task, opt = lms
    run = RunContext.create(dspy.Predict("question -> answer"), word_examples(12), exact_metric, optimizer_lm=opt,
                            valset=word_examples(16)[12:], epochs=2)
    jobs = DivideSchedule("random", num_subsets=4).plan(run, 2)
    estimate = estimate_run(run, jobs, levels=1, merge_threshold=4)
    assert opt.calls == 0 and task.calls == 12
    assert isinstance(estimate, CostEstimate) and len(run.seed_runs) == 12  # kept for the first step
    table = estimate.table().splitlines()
    assert table[0].startswith("Cost estimate (pilot: 12 seed runs, 100% failed")
    assert [line.split()[0] for line in table[2:6]] == ["task", "evaluator", "optimizer", "merge"]
    assert estimate.to_dict()["optimizer_side"]["calls"] == round(estimate.optimizer_side.calls)


@pytest.mark.parametrize("feedback,critiques,whole_calls", [("critique", 24, 13), ("raw", 0, 1)])
def test_failures_partition_and_baselines_are_estimated(lms, feedback, critiques, whole_calls):
    task, opt = lms
    failures = compile_fgo(opt, epochs=1, partition="failures", feedback=feedback)
    est, roles = failures.accounting["estimate"]["roles"], failures.accounting["roles"]
    # the divide stage critiques the seed's 12 failures and the first step again (the fake has no cache);
    # feedback="raw" has no critic
    assert est["evaluator"]["calls"] == roles.get("evaluator", {"calls": 0})["calls"] == critiques
    whole = compile_fgo(FakeLM(rule_optimizer, model="fake/opt"), cls=AllAtOnce, epochs=1, feedback=feedback)
    (calls, prompt), _, _, (actual_calls, actual_prompt) = side(whole)
    # 12 critiques and a proposal, or the proposal alone
    assert calls == actual_calls == whole_calls and 0.75 * prompt <= actual_prompt <= 1.25 * prompt
    assert whole.accounting["estimate"]["metric_calls"] == whole.total_metric_calls == 32


def test_a_resumed_run_keeps_the_first_runs_estimate(lms, tmp_path):
    task, opt = lms
    first = compile_fgo(opt, epochs=1, log_dir=str(tmp_path))
    again = compile_fgo(FakeLM(rule_optimizer, model="fake/opt"), epochs=1, log_dir=str(tmp_path))
    assert again.accounting["estimate"] == first.accounting["estimate"]
    # no second pilot: the estimate stage holds the first run's pilot only (the stages survive the resume)
    assert again.accounting["stages"]["estimate"] == first.accounting["stages"]["estimate"]


def test_rule_pruning_adds_its_back_tests_to_the_expected_metric_calls(lms):
    task, opt = lms

    def metric_calls(prune):
        run = RunContext.create(dspy.Predict("question -> answer"), word_examples(12), exact_metric, optimizer_lm=opt,
                                valset=word_examples(16)[12:], epochs=1, update="rules", prune_rules=prune)
        jobs = DivideSchedule("random", num_subsets=4).plan(run, 1)
        return estimate_run(run, jobs, levels=1, merge_threshold=4).metric_calls

    plain, pruned = metric_calls(False), metric_calls(True)
    assert pruned > plain  # one union back-test (12 runs) per expected rule of the merge, weighted by P(merge)


def test_rule_pruning_is_estimated_only_up_to_what_the_metric_call_budget_leaves(lms):
    """Pruning stops before the budget does (the valset check kept): the estimate does not expect more."""
    task, opt = lms

    def metric_calls(limit):
        run = RunContext.create(dspy.Predict("question -> answer"), word_examples(12), exact_metric, optimizer_lm=opt,
                                valset=word_examples(16)[12:], epochs=1, update="rules", prune_rules=True,
                                budget=Budget(max_metric_calls=limit))
        jobs = DivideSchedule("random", num_subsets=4).plan(run, 1)
        return estimate_run(run, jobs, levels=1, merge_threshold=4).metric_calls

    unbounded = metric_calls(None)
    assert metric_calls(10_000) == unbounded
    assert unbounded > 60 and metric_calls(60) <= 60 + 1e-9  # 12 seed + 12 proposal + 12 + merge runs fit in 60


def test_more_valset_candidates_add_valset_runs_up_to_what_the_budget_leaves(lms):
    task, opt = lms

    def metric_calls(k, limit=None):
        run = RunContext.create(dspy.Predict("question -> answer"), word_examples(12), exact_metric, optimizer_lm=opt,
                                valset=word_examples(16)[12:], epochs=1, valset_candidates=k,
                                budget=Budget(max_metric_calls=limit))
        jobs = DivideSchedule("random", num_subsets=4).plan(run, 1)
        return estimate_run(run, jobs, levels=1, merge_threshold=4).metric_calls

    one, three = metric_calls(1), metric_calls(3)
    assert 0 < three - one <= 2 * 4  # two more nodes on the 4 valset examples, weighted by P(anything changed)
    assert metric_calls(3, limit=math.ceil(one)) <= math.ceil(one)


def growing_run(**kw) -> FGOResult:
    """Each step adds two ~35-token rules that fix nothing (ties kept): later runs carry longer instructions."""
    rng = random.Random(0)
    vocabulary = [f"{a}{b}" for a in ("check", "read", "note", "keep", "mark", "find") for b in "abcdefghijklmnop"]

    def rule() -> str:  # distinct words: no two rules are duplicates
        return "Always " + " ".join(rng.sample(vocabulary, 22)) + "."

    def growing(request):
        if "new_rules" not in request.outputs:
            return rule_optimizer(request)
        return {"new_rules": f"- {rule()}\n- {rule()}"}

    with dspy.context(lm=FakeLM(lambda request: {"answer": "never"}, model="fake/task")):
        return compile_fgo(FakeLM(growing, model="fake/opt"), n=16, epochs=2, update="rules", feedback="raw",
                           acceptance="tie", **kw)


@pytest.fixture
def every_step_kept(monkeypatch):
    """The growing fake keeps adding new rules at every step: the estimate's later-step shares set to 1."""
    from dspy_fgo import estimate

    monkeypatch.setattr(estimate, "LATER_RUN_SHARE", 1.0)
    monkeypatch.setattr(estimate, "LATER_KEEP_SHARE", 1.0)


def test_task_prompt_tokens_count_the_rules_the_candidates_grow_by(every_step_kept):
    # without pruning, whose ablations are estimated at the merge's full length (an upper bound; see below)
    result = growing_run(prune_rules=False)
    est, actual = result.accounting["estimate"]["roles"]["task"], result.accounting["roles"]["task"]
    pilot = result.accounting["estimate"]["pilot"]
    flat = result.accounting["estimate"]["metric_calls"] * pilot["task_tokens_per_run"]  # the seed's size only
    assert actual["prompt_tokens"] > 1.25 * flat  # the growth matters here
    assert 0.75 * est["prompt_tokens"] <= actual["prompt_tokens"] <= 1.25 * est["prompt_tokens"]


def test_rule_pruning_is_estimated_as_one_union_back_test_per_rule_and_bounds_the_runs(every_step_kept):
    """The default prune_rules: the merge's 16 rules (4 subsets, 2 steps of 2) ablated on its union of 16."""
    result = growing_run()
    est, actual = result.accounting["estimate"], result.accounting
    assert actual["stages"]["merge"]["metric_calls"] > 16 * 8  # the ablations ran
    assert 0.75 * est["metric_calls"] <= actual["metric_calls"] <= est["metric_calls"]
    assert actual["roles"]["task"]["prompt_tokens"] <= est["roles"]["task"]["prompt_tokens"]


def test_a_half_back_test_is_estimated_at_half_the_runs_and_without_a_valset_adds_the_roots_other_half(lms):
    task, opt = lms

    def metric_calls(backtest, valset=True, limit=None):
        run = RunContext.create(dspy.Predict("question -> answer"), word_examples(12), exact_metric, optimizer_lm=opt,
                                valset=word_examples(16)[12:] if valset else None, epochs=1, update="rules",
                                prune_rules=True, backtest=backtest, budget=Budget(max_metric_calls=limit))
        jobs = DivideSchedule("random", num_subsets=4).plan(run, 1)
        return estimate_run(run, jobs, levels=1, merge_threshold=4).metric_calls

    assert metric_calls("half") < metric_calls("full")
    # a budget that cuts pruning: full without a valset expects exactly the budget (no root re-run: its
    # back-test covered the trainset), half the budget plus the root's other half, at most 6 (12 x 0.5)
    limit = math.floor(metric_calls("full", valset=False)) - 10
    assert metric_calls("full", valset=False, limit=limit) == pytest.approx(limit)
    limit = math.floor(metric_calls("half", valset=False)) - 5
    assert limit < metric_calls("half", valset=False, limit=limit) <= limit + 6


def test_estimate_cost_says_what_compile_will_record_without_running_it(lms, tmp_path):
    """FGO.estimate_cost: the pilot on the seed only (12 task calls, no optimizer call, no checkpoint), and the
    same estimate that compile() then records for the same arguments."""
    task, opt = lms
    log_dir = tmp_path / "ckpt"
    fgo = FGO(metric=exact_metric, optimizer_lm=opt, num_threads=2, num_subsets=4, epochs=2, log_dir=str(log_dir))
    program, train, val = dspy.Predict("question -> answer"), word_examples(12), word_examples(16)[12:]
    estimate = fgo.estimate_cost(program, trainset=train, valset=val)
    assert isinstance(estimate, CostEstimate)
    assert (task.calls, opt.calls) == (12, 0) and not log_dir.exists()
    assert fgo.log_dir == str(log_dir)  # restored for compile
    recorded = fgo.compile(program, trainset=train, valset=val).fgo_result.accounting["estimate"]
    assert recorded == estimate.to_dict()
    with pytest.raises(ValueError, match="No metric"):
        FGO(optimizer_lm=opt).estimate_cost(program, trainset=train)


def test_a_proposer_that_repeats_its_rules_after_the_first_step_grows_no_text_in_the_estimate(monkeypatch):
    """Like qwen1.5b at 750 metric calls: the first step's rules are kept, later steps propose them again (no
    new text, no runs). The later-step shares (measured: 26% of later proposals run, 6.5% kept) bring the
    estimate close to such a run; kept at 1 (every step grows the text, as assumed before), it is far off."""
    from dspy_fgo import estimate

    def repeating(request):  # the same rules for the same runs: one subset's rules, step after step
        if "new_rules" not in request.outputs:
            return rule_optimizer(request)
        stem = re.search(r"word: ([a-z]+)\d", request.fields.get("feedback", "")).group(1)
        return {"new_rules": f"- Words such as {stem} are answered in capital letters.\n- Copy {stem} exactly."}

    def actual_over_estimate():
        with dspy.context(lm=FakeLM(lambda request: {"answer": "never"}, model="fake/task")):
            result = compile_fgo(FakeLM(repeating, model="fake/opt"), n=16, epochs=8, update="rules",
                                 feedback="raw", acceptance="tie", prune_rules=False)
        est, actual = result.accounting["estimate"], result.accounting
        return (actual["metric_calls"] / est["metric_calls"],
                actual["roles"]["task"]["prompt_tokens"] / est["roles"]["task"]["prompt_tokens"])

    calls, prompt = actual_over_estimate()
    monkeypatch.setattr(estimate, "LATER_RUN_SHARE", 1.0)
    monkeypatch.setattr(estimate, "LATER_KEEP_SHARE", 1.0)
    calls_before, prompt_before = actual_over_estimate()
    # above the actual (this fake never runs a later proposal; the shares expect 26% to), and much closer
    assert calls_before < 0.5 and 0.7 < calls <= 1.0  # measured: x0.45 before, x0.73 now
    assert prompt_before < 0.2 and 3 * prompt_before < prompt <= 1.0  # x0.13 before, x0.44 now


def test_estimate_cost_with_rounds_estimates_the_first_round(lms):
    task, opt = lms
    fgo = FGO(metric=exact_metric, optimizer_lm=opt, num_threads=2, num_subsets=4, rounds=True, max_metric_calls=400,
              update="rules", feedback="raw")
    program, train, val = dspy.Predict("question -> answer"), word_examples(12), word_examples(16)[12:]
    estimate = fgo.estimate_cost(program, trainset=train, valset=val)
    result = fgo.compile(program, trainset=train, valset=val).fgo_result
    assert result.accounting["estimate"] == estimate.to_dict()
    assert estimate.planned_metric_calls < 400  # a round's plan (3 steps per subset), not the whole budget's
