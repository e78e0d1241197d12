import json

import dspy
import pytest
from fakes import FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from benchmarks.methods import MethodContext
from benchmarks.report import format_table, save_plot
from benchmarks.run import UsageByModel, run_method
from benchmarks.scoring import bootstrap_ci, short_fields, summarize_scores
from benchmarks.stats import write_report


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_more_data():
    small = bootstrap_ci([1, 0] * 5)
    large = bootstrap_ci([1, 0] * 200)
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert large[1] - large[0] < small[1] - small[0]
    assert bootstrap_ci([1.0] * 10) == (1.0, 1.0)


def test_summary_breaks_scores_down_by_category():
    examples = word_examples(6, categories=2)
    summary = summarize_scores([1, 0, 1, 0, 1, 0], examples)
    assert summary["score"] == 0.5 and summary["per_category"] == {"c0": 1.0, "c1": 0.0}


def _ctx(seed=0):
    task, opt = FakeLM(uppercase_task, model="fake/task"), FakeLM(rule_optimizer, model="fake/opt")
    return MethodContext(dspy.Predict("question -> answer"), word_examples(8), word_examples(3), exact_metric,
                         exact_metric, task, opt, seed, epochs=1, num_subsets=2, partition="random"), task, opt


def test_run_method_counts_both_sides_and_scores_the_test_set(tmp_path):
    ctx, task, opt = _ctx()
    run = run_method("fgo", ctx, word_examples(12)[8:], exact_metric, tmp_path)
    assert run["test"]["score"] == 1.0 and run["fgo"]["final_choice"] == "optimized"
    assert [p["answer"] for p in run["test_predictions"]] == [ex.answer for ex in word_examples(12)[8:]]
    assert run["optimizer_side"]["calls"] == opt.calls and run["optimizer_side"]["prompt_tokens"] == opt.prompt_tokens
    assert run["task_side_during_optimization"]["calls"] > 0
    assert (tmp_path / "fgo-seed0.program.json").exists() and (tmp_path / "fgo-seed0.fgo.json").exists()
    results = {"runs": {"fgo/seed0": run, "seed/seed0": run_method("seed", _ctx()[0], word_examples(12)[8:],
                                                                   exact_metric, tmp_path)}}
    table = format_table(json.loads(json.dumps(results)))
    assert "fgo" in table and "seed" in table and "c0" in table
    save_plot(results, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
    tables = write_report(json.loads(json.dumps(results)), tmp_path)  # what run.py writes after the methods
    assert "fgo minus each method" in tables and (tmp_path / "tables.txt").exists()


def test_usage_by_model_splits_task_and_optimizer_calls():
    tracker = UsageByModel("fake/task")
    tracker.add_usage("fake/task", {"prompt_tokens": 5, "completion_tokens": 1})
    tracker.add_usage("fake/opt", {"prompt_tokens": 7, "completion_tokens": 2})
    assert tracker.usage["task"] == {"calls": 1, "prompt_tokens": 5, "completion_tokens": 1}
    assert tracker.usage["optimizer"] == {"calls": 1, "prompt_tokens": 7, "completion_tokens": 2}


def test_short_fields_keep_answers_and_counts_but_not_trajectories():
    prediction = dspy.Prediction(answer="X1", won=True, steps=12, trajectory={"thought_0": "..."}, log="x" * 500)
    assert short_fields(prediction) == {"answer": "X1", "won": True, "steps": 12}


def test_task_lm_is_greedy_unless_told_and_the_optimizer_is_uncached():
    from benchmarks.run import parse_args, resolve_lms

    assert parse_args([]).task_temperature == 0.0
    task_lm, optimizer_lm, server = resolve_lms("openai/task", "openai/task", 8192, task_temperature=0.7)
    assert server is None and task_lm.kwargs["temperature"] == 0.7 and task_lm.cache
    assert optimizer_lm.model == "openai/task-optimizer" and not optimizer_lm.cache
    greedy, _, _ = resolve_lms("openai/task", "openai/opt", 8192)
    assert greedy.kwargs["temperature"] == 0.0


def test_an_interrupted_fgo_run_resumes_from_its_checkpoints(tmp_path):
    ctx, _, opt = _ctx()
    ctx.log_dir = str(tmp_path / "fgo-seed0.checkpoints")
    first = run_method("fgo", ctx, word_examples(12)[8:], exact_metric, tmp_path)
    assert opt.calls > 0 and any((tmp_path / "fgo-seed0.checkpoints").iterdir())

    def no_optimizer(request):
        raise AssertionError("a resumed run must not ask the optimizer again")

    again, _, _ = _ctx()
    again.optimizer_lm = FakeLM(no_optimizer, model="fake/opt")
    again.log_dir = ctx.log_dir
    resumed = run_method("fgo", again, word_examples(12)[8:], exact_metric, tmp_path)
    assert resumed["instructions"] == first["instructions"] and resumed["test"]["score"] == 1.0
    assert resumed["optimizer_side"]["calls"] == 0


def test_the_runner_names_missing_optional_dependencies_before_running(monkeypatch):
    import importlib.util

    from benchmarks import run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    assert run.missing_dependencies(["seed", "fgo"]) == []
    assert run.missing_dependencies(["miprov2"]) == ["optuna (for MIPROv2's trials)"]


def test_variants_set_fgo_options_on_fgo_and_on_its_schedule_baselines(monkeypatch):
    import benchmarks.methods as methods

    seen = {}
    for head in methods.VARIANT_HEADS:
        monkeypatch.setitem(methods.VARIANT_HEADS, head, lambda ctx, _h=head, **options: seen.setdefault(_h, options))
    methods.fgo_variant("all-at-once+rules+tie")(None)
    methods.fgo_variant("fgo+rewrite+pick4")(None)
    base = methods.VARIANT_BASE  # a variant's name keeps its meaning when FGO's defaults change
    assert seen == {"all-at-once": {**base, "update": "rules", "acceptance": "tie"},
                    "fgo": {**base, "rounds": False, "update": "rewrite", "valset_candidates": 4}}
    seen.clear()
    methods.fgo_variant("fgo+rules+rounds")(None)
    assert seen["fgo"] == {**base, "rounds": True, "update": "rules"}
    with pytest.raises(TypeError, match="rounds"):  # the baselines do not divide, so they have no rounds
        methods.fgo_variant("batch-wise+rounds")
    assert base["update"] == "rewrite" and base["feedback"] == "critique" and base["check_format"] is True
    assert methods.fgo_variant("gepa+rules") is None and methods.fgo_variant("fgo") is None
    with pytest.raises(ValueError, match="unknown FGO switches"):
        methods.fgo_variant("batch-wise+tiee")


def test_the_runner_refuses_a_method_list_with_a_bad_variant_before_any_llm_call(monkeypatch):
    from benchmarks import run

    monkeypatch.setattr(run, "load_task", lambda *a, **k: pytest.fail("loaded the task before checking the methods"))
    problems = run.refused_methods(["seed", "fgo+rewrite+prune", "fgo+rules+prune", "nope"])
    assert len(problems) == 2
    assert problems[0].startswith("fgo+rewrite+prune:") and "needs update='rules'" in problems[0]
    assert problems[1].startswith("nope: unknown method")
    with pytest.raises(SystemExit, match="fgo\\+rewrite\\+prune: prune_rules"):
        run.main(["--task", "bookings", "--methods", "seed,fgo+rewrite+prune"])


def test_a_partition_switch_divides_fgo_by_failure_pattern(tmp_path):
    ctx, _, _ = _ctx()
    run_method("fgo+rules+byfailure", ctx, word_examples(12)[8:], exact_metric, tmp_path)
    record = json.loads((tmp_path / "fgo+rules+byfailure-seed0.fgo.json").read_text())
    assert record["config"]["partition"] == "failures" and record["config"]["update"] == "rules"


def test_a_components_switch_leaves_the_tool_texts_alone(tmp_path):
    ctx, _, _ = _ctx()
    run_method("fgo+rules+instructions", ctx, word_examples(12)[8:], exact_metric, tmp_path)
    record = json.loads((tmp_path / "fgo+rules+instructions-seed0.fgo.json").read_text())
    assert record["config"]["components"] == "instructions"


def test_a_schedule_baseline_runs_with_fgo_switches(tmp_path):
    ctx, _, _ = _ctx()
    run = run_method("all-at-once+rules+tie", ctx, word_examples(12)[8:], exact_metric, tmp_path)
    record = json.loads((tmp_path / "all-at-once+rules+tie-seed0.fgo.json").read_text())
    assert record["method"] == "all-at-once" and record["config"]["update"] == "rules"
    assert record["config"]["acceptance"] == "tie" and run["test"]["n"] == 4


def test_a_forked_run_counts_the_subsets_it_reused_and_says_whose(tmp_path):
    from benchmarks.run import add_forked_usage, fork_from

    ctx, _, opt = _ctx()
    ctx.log_dir = str(tmp_path / "fgo+rules+tie-seed0.checkpoints")
    first = run_method("fgo+rules+tie", ctx, word_examples(12)[8:], exact_metric, tmp_path)
    spent = opt.calls
    ctx, task, opt = _ctx()
    ctx.log_dir = str(tmp_path / "fgo+rules+tie+pick4-seed0.checkpoints")
    forked = fork_from(tmp_path, "fgo+rules+tie", 0, tmp_path / "fgo+rules+tie+pick4-seed0.checkpoints")
    run = run_method("fgo+rules+tie+pick4", ctx, word_examples(12)[8:], exact_metric, tmp_path)
    assert opt.calls == 0 and run["optimizer_side"]["calls"] == 0  # the subsets were not redone
    add_forked_usage(run, forked, "fgo+rules+tie")
    assert run["optimizer_side"]["calls"] == spent == first["optimizer_side"]["calls"]
    assert run["forked_subsets_of"] == "fgo+rules+tie" and run["test"]["score"] == first["test"]["score"]
    again = fork_from(tmp_path, "fgo+rules+tie", 0, tmp_path / "fgo+rules+tie+pick4-seed0.checkpoints")
    assert again == forked  # a rerun after an interruption keeps the first fork's carried-over usage


def test_held_out_scoring_calls_a_program_again_after_a_transient_error_and_scores_a_real_one_zero():
    from benchmarks.scoring import score_program

    calls = {"flaky": 0}

    def program(question):
        if question == "flaky":
            calls["flaky"] += 1
            if calls["flaky"] == 1:
                raise SystemError("AST constructor recursion depth mismatch (before=72, after=68)")
        if question == "broken":
            raise ValueError("always")
        return dspy.Prediction(answer=question.upper())

    examples = [dspy.Example(question=q, answer=q.upper()).with_inputs("question") for q in ("ok", "flaky", "broken")]
    scores, _ = score_program(program, examples, exact_metric, FakeLM(lambda request: {}), num_threads=1)
    assert scores == [1.0, 1.0, 0.0] and calls["flaky"] == 2


def test_estimate_check_replays_a_stored_runs_estimate_and_skips_what_it_cannot_rebuild(tmp_path, monkeypatch):
    """benchmarks.estimate_check: the run rebuilt from its command gets the estimate it printed itself (same
    code, data and LMs), set against what it spent; forked runs, DSPy's optimizers and names that are no
    variant of this commit are skipped."""
    from benchmarks import estimate_check

    ctx, task, opt = _ctx()
    run_method("fgo+rules+tie", ctx, word_examples(12)[8:], exact_metric, tmp_path)
    (tmp_path / "gepa-seed0.fgo.json").write_text("{}")
    command = "python -m benchmarks.run --task tracking --methods fgo+rules+tie --seeds 0"
    runs = {"fgo+rules+tie/seed0": {"command": command}, "gepa/seed0": {"command": command},
            "fgo+rules+tie/seed1": {"command": command + " --fork-subsets-of fgo+rules+tie"},
            "fgo+rules+tie-old/seed0": {"command": command}}
    for name in ("fgo+rules+tie-seed1", "fgo+rules+tie-old-seed0"):
        (tmp_path / f"{name}.fgo.json").write_text("{}")
    (tmp_path / "results.json").write_text(json.dumps({"runs": runs}))
    monkeypatch.setattr(estimate_check, "resolve_lms", lambda *args: (task, opt, None))
    monkeypatch.setattr(estimate_check, "load_task_of", lambda args: None)
    monkeypatch.setattr(estimate_check, "method_context", lambda task, args, *rest: _ctx()[0])
    rows = estimate_check.main([str(tmp_path)])
    assert [row["run"] for row in rows] == ["fgo+rules+tie/seed0"]
    stored = json.loads((tmp_path / "fgo+rules+tie-seed0.fgo.json").read_text())["accounting"]["estimate"]
    assert rows[0]["estimate"] == stored and rows[0]["ratios"] == rows[0]["stored_ratios"]
    assert rows[0]["actual"]["metric_calls"] > 0 and rows[0]["ratios"]["metric calls"] > 0
    assert json.loads((tmp_path / "estimate_check.json").read_text())["rows"] == rows
