"""Issue 14: FGO as a drop-in for dspy.GEPA users (vocabulary, metric contract, strict compile, results,
DSPy's logging / progress / callbacks, MLflow)."""

import io
import logging
import sys
import types

import dspy
import pytest
from dspy.utils.callback import BaseCallback
from fakes import FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import FGO, AllAtOnce, FGOResult
from dspy_fgo.compat import metric_calls, plan
from dspy_fgo.result import FORMAT_VERSION
from dspy_fgo.rollout import MetricContractError


@pytest.fixture
def lms():
    task, opt = FakeLM(uppercase_task, model="fake/task"), FakeLM(rule_optimizer, model="fake/opt")
    with dspy.context(lm=task):
        yield task, opt


def gepa_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    ok = pred.answer == gold.answer
    return dspy.Prediction(score=float(ok), feedback="correct" if ok else f"expected {gold.answer} (uppercase)")


def program():
    return dspy.Predict("question -> answer")


# DSPy's own GEPA call shapes (its docstrings, BetterTogether's examples, the GEPA tutorial), with only the
# class name changed.
GEPA_SHAPES = [
    {"auto": "light"},
    {"auto": "medium"},
    {"track_stats": True},
    {},
    {"auto": "light", "num_threads": 2, "track_stats": True, "reflection_minibatch_size": 3},
    {"max_metric_calls": 80},
    {"max_full_evals": 4},
    {"auto": "light", "num_threads": None, "seed": None, "failure_score": 0.0, "perfect_score": 1.0,
     "skip_perfect_score": True, "track_best_outputs": True, "use_mlflow": False, "candidate_selection_strategy":
         "pareto", "use_merge": True, "max_merge_invocations": 5},
]


@pytest.mark.parametrize("shape", GEPA_SHAPES, ids=[",".join(s) or "bare" for s in GEPA_SHAPES])
def test_gepa_call_shapes_run_with_fgo(lms, shape, tmp_path):
    task, opt = lms
    optimizer = FGO(metric=gepa_metric, reflection_lm=opt, log_dir=str(tmp_path / "log"), **shape)
    assert optimizer.reflection_lm is opt
    out = optimizer.compile(program(), trainset=word_examples(8), valset=word_examples(12)[8:])
    r = out.fgo_result
    assert r.final_choice == "optimized" and r.val_scores["optimized"] == 1.0
    if shape.get("track_stats"):
        assert out.detailed_results is r and r.best_idx == r.winner is not None
    limit = r.accounting["limits"]["max_metric_calls"]
    if limit is not None:
        assert r.total_metric_calls <= limit


@pytest.mark.parametrize("name,value,hint", [
    ("instruction_proposer", object(), "optimizer_lm"), ("gepa_kwargs", {}, "constructor"),
    ("use_wandb", True, "use_mlflow"), ("max_bootstrapped_demos", 4, "BootstrapFewShot"),
    ("prompt_model", None, "optimizer_lm"), ("num_subset", 2, "num_subsets"),
])
def test_arguments_without_an_fgo_meaning_are_clear_errors(name, value, hint):
    with pytest.raises(TypeError, match=rf"FGO\(\) got unexpected .*{name}.*{hint}"):
        FGO(metric=exact_metric, **{name: value})


def test_budget_arguments_are_checked():
    with pytest.raises(ValueError, match="at most one of auto"):
        FGO(metric=exact_metric, auto="light", max_metric_calls=10)
    with pytest.raises(ValueError, match="auto must be one of"):
        FGO(metric=exact_metric, auto="huge")
    with pytest.raises(ValueError, match="both"):
        FGO(metric=exact_metric, reflection_lm=FakeLM(rule_optimizer), optimizer_lm=FakeLM(rule_optimizer))


def test_budget_formula_and_plan():
    # N*(E+1) + 2*N*L + 2*V
    assert metric_calls(12, 4, 1, 1) == 12 * 2 + 24 + 8
    assert plan("light", None, None, None, 12, 4, 1) == (1, 56)
    assert plan("heavy", None, None, None, 12, 4, 1) == (4, metric_calls(12, 4, 4, 1))
    assert plan(None, None, 3, None, 12, 4, 1) == (1, 48)  # GEPA's max_full_evals * (N + V)
    assert plan(None, 200, None, None, 12, 4, 1) == (13, 200)
    assert metric_calls(12, 4, 13, 1) <= 200 < metric_calls(12, 4, 14, 1)
    assert plan(None, 200, None, 3, 12, 4, 1) == (3, 200)  # explicit epochs are kept
    assert plan(None, None, None, None, 12, 4, 1) == (2, None)


def test_pruning_takes_one_union_back_test_per_level_from_the_steps_but_never_the_first():
    assert plan(None, 310, None, None, 30, 20, 2) == (4, 310)
    assert plan(None, 310, None, None, 30, 20, 2, prune=True) == (2, 310)  # N * L = 60 runs kept for pruning
    assert plan(None, 250, None, None, 30, 20, 2, prune=True) == (1, 250)  # E = 1 stays
    assert plan("light", None, None, None, 12, 4, 1, prune=True) == (1, 56 + 12)


def test_auto_budget_is_planned_and_held(lms):
    task, opt = lms
    out = FGO(metric=exact_metric, reflection_lm=opt, auto="medium", num_subsets=3, num_threads=1).compile(
        program(), trainset=word_examples(12), valset=word_examples(15)[12:])
    r = out.fgo_result
    limit = r.accounting["limits"]["max_metric_calls"]
    assert limit == metric_calls(12, 3, 2, 1) + 12  # + N*L: pruning (on with update="rules") keeps a union back-test
    assert r.total_metric_calls <= limit
    assert set(r.accounting["stages"]) >= {"optimize", "select"}
    # every subset found the same rule: its runs on the whole union are in the ledger, the merge runs nothing
    assert "merge changed nothing" in r.merge_root.note and "merge" not in r.accounting["stages"]


def test_a_budget_too_small_for_the_whole_trainset_shapes_the_run_on_a_sample(lms):
    from collections import Counter

    from dspy_fgo.compat import affordable_trainset

    assert affordable_trainset(100, 480, 10, lambda n: 1) == 20  # 2n + 2n + 20 <= 100
    assert affordable_trainset(10_000, 48, 10, lambda n: 1) == 48
    train = word_examples(60)
    out = FGO(metric=exact_metric, optimizer_lm=lms[1], partition="category", max_metric_calls=80,
              num_threads=1).compile(program(), trainset=train, valset=word_examples(64)[60:])
    r = out.fgo_result
    sample = r.accounting["trainset_sample"]
    picked = [train[i] for i in sample["indices"]]
    assert sample["of"] == 60 and 0 < len(picked) < 60
    assert max(Counter(ex.category for ex in picked).values()) - min(Counter(ex.category for ex in picked).values()) <= 1
    assert sorted(i for s in r.subsets for i in s.indices) == list(range(len(picked)))  # every sampled one is used
    assert r.stopped is None and r.merge_root is not None and len(r.merge_root.children) == 3  # the whole tree ran
    assert r.total_metric_calls <= 80


def test_auto_is_at_most_gepas_own_auto_budget(lms):
    from dspy_fgo.compat import gepa_auto_budget

    gepa = dspy.GEPA(metric=lambda g, p, t=None, pn=None, pt=None: 1.0, auto="light", reflection_lm=lms[1])
    assert gepa_auto_budget("light", 1, 3) == gepa.auto_budget(1, 6, 3) == 392
    r = FGO(metric=exact_metric, reflection_lm=lms[1], auto="light", num_subsets=4, num_threads=2).compile(
        program(), trainset=word_examples(200), valset=word_examples(203)[200:]).fgo_result
    assert r.accounting["limits"]["max_metric_calls"] == 392 < metric_calls(200, 3, 1, 1)
    assert len(r.accounting["trainset_sample"]["indices"]) == 96  # 4n + 6 <= 392
    assert r.total_metric_calls <= 392 and r.stopped is None


def test_metric_arity_is_checked_when_the_optimizer_is_built(lms):
    with pytest.raises(TypeError, match=r"two_args.*trace"):
        def two_args(gold, pred):
            return 1.0
        FGO(metric=two_args)
    task, opt = lms
    with pytest.raises(TypeError, match="trace"):
        FGO(optimizer_lm=opt).compile(program(), word_examples(4), lambda g, p: 1.0)


@pytest.mark.parametrize("value,match", [(None, "returned None"), (float("nan"), "returned nan"),
                                         (7.0, r"outside \[failure_score=0, perfect_score=1\]"),
                                         ("high", "must be numbers")])
def test_bad_scores_stop_the_run_naming_the_metric(lms, value, match):
    task, opt = lms

    def my_metric(example, prediction, trace=None):
        return value

    with pytest.raises(MetricContractError, match=rf"'my_metric'.*{match}"):
        FGO(metric=my_metric, optimizer_lm=opt, num_subsets=2, epochs=1).compile(program(), trainset=word_examples(6))
    assert opt.calls == 0  # stopped at the first score, before any optimizer work


def test_a_0_to_10_metric_works_with_perfect_score(lms):
    task, opt = lms

    def ten(gold, pred, trace=None):
        return 10.0 if pred.answer == gold.answer else (5.0 if pred.answer.lower() == gold.answer.lower() else 0.0)

    out = FGO(metric=ten, optimizer_lm=opt, num_subsets=2, epochs=1, perfect_score=10).compile(
        program(), trainset=word_examples(8), valset=word_examples(11)[8:])
    assert out.fgo_result.final_choice == "optimized" and out.fgo_result.val_scores["optimized"] == 10.0


@pytest.mark.parametrize("feedback,reader", [("raw", "new_rules"), ("critique", "critique")])
def test_five_argument_metric_gets_pred_name_and_pred_trace_and_its_feedback_reaches_the_critic(lms, feedback, reader):
    """The feedback reaches the critic, or with feedback="raw" (the default) the proposer reading the runs."""
    task, opt = lms
    calls = []

    class Two(dspy.Module):
        def __init__(self):
            super().__init__()
            self.draft = dspy.Predict("question -> answer")
            self.final = dspy.Predict("question -> answer")

        def forward(self, question):
            self.draft(question=question)
            return self.final(question=question)

    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        calls.append((pred_name, None if pred_trace is None else len(pred_trace)))
        ok = pred.answer == gold.answer
        return dspy.Prediction(score=float(ok), feedback=f"[{pred_name}] write {gold.answer} in uppercase")

    FGO(metric=metric, optimizer_lm=opt, num_subsets=1, epochs=1, num_threads=1, feedback=feedback).compile(
        Two(), trainset=word_examples(2))
    assert (None, None) in calls and ("draft", 1) in calls and ("final", 1) in calls
    readers = [q for q in opt.requests if reader in q.outputs]
    assert readers and all("feedback for predictor draft: [draft]" in q.user for q in readers)


def test_compile_is_strict(lms):
    task, opt = lms
    fgo = FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=2, epochs=1)
    with pytest.raises(TypeError, match=r"FGO.compile\(\) got unexpected.*'valsett' \(did you mean 'valset'\?\)"):
        fgo.compile(program(), trainset=word_examples(6), valsett=word_examples(3))
    with pytest.raises(TypeError, match="max_bootstrapped_demos.*BootstrapFewShot"):
        fgo.compile(program(), trainset=word_examples(6), max_bootstrapped_demos=4)
    with pytest.raises(ValueError, match="no teacher"):
        fgo.compile(program(), trainset=word_examples(6), teacher=program())
    assert opt.calls == task.calls == 0
    assert fgo.compile(program(), word_examples(6), exact_metric).fgo_result  # the positional form still works


def test_detailed_results_lineage_scores_and_round_trip(lms, tmp_path):
    task, opt = lms
    out = FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=2, epochs=1, track_stats=True,
              track_best_outputs=True).compile(program(), trainset=word_examples(8), valset=word_examples(11)[8:])
    r = out.detailed_results
    seed, *others = r.candidates
    assert seed["origin"] == "seed" and seed["parents"] == [] and len(seed["scores"]["train"]) == 8
    assert seed["scores"]["val"] == {0: 0.0, 1: 0.0, 2: 0.0}
    proposals = [c for c in others if c["origin"].startswith("subset")]
    assert proposals and all(c["parents"] == [0] for c in proposals)
    assert r.candidates[r.winner]["val_mean"] == 1.0 and r.winner != 0
    assert set(r.best_outputs["train"]) == set(range(8)) and r.best_outputs["train"][0]["score"] == 1.0
    table = r.table()
    assert "origin" in table and "seed" in table and f"{r.winner}*" in table and "metric calls" in table
    path = tmp_path / "run.json"
    r.to_json(path)
    back = FGOResult.load(path)
    assert back.to_dict() == r.to_dict() and back.format_version == FORMAT_VERSION
    assert back.merge_root.candidate == r.merge_root.candidate and back.subsets[0].steps == r.subsets[0].steps
    with pytest.raises(ValueError, match="newer"):
        FGOResult.from_dict({**r.to_dict(), "format_version": 99})


def test_logging_goes_through_dspy_and_obeys_disable_logging(lms, monkeypatch):
    task, opt = lms
    from dspy_fgo import fgo as fgo_module

    assert fgo_module.logger.name.startswith("dspy.")
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    logging.getLogger("dspy.dspy_fgo.select").info("visible line")
    assert "visible line" in err.getvalue()
    dspy.disable_logging()
    try:
        logging.getLogger("dspy.dspy_fgo.context").warning("silenced line")
    finally:
        dspy.enable_logging()
    assert "silenced line" not in err.getvalue()


def test_callbacks_see_fgo_evaluations(lms):
    task, opt = lms
    seen = []

    class CB(BaseCallback):
        def on_evaluate_start(self, call_id, instance, inputs):
            seen.append(("start", inputs["split"]))

        def on_evaluate_end(self, call_id, outputs, exception=None):
            seen.append(("end", outputs.score))

    with dspy.context(callbacks=[CB()]):
        AllAtOnce(metric=exact_metric, optimizer_lm=opt, epochs=1).compile(
            program(), trainset=word_examples(4), valset=word_examples(6)[4:])
    assert ("start", "train") in seen and ("start", "val") in seen and ("end", 1.0) in seen


def test_plot_leaves_the_global_backend_alone(lms):
    matplotlib = pytest.importorskip("matplotlib")
    before = matplotlib.get_backend()
    task, opt = lms
    r = FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=2, epochs=1).compile(
        program(), trainset=word_examples(6)).fgo_result
    fig = r.plot()
    assert matplotlib.get_backend() == before and fig.axes


def test_use_mlflow_logs_params_scores_tokens_and_artifacts(lms, monkeypatch, tmp_path):
    logged = {"params": {}, "metrics": [], "artifacts": [], "runs": 0}

    class Run:
        def __enter__(self):
            logged["runs"] += 1

        def __exit__(self, *exc):
            return False

    def log_artifact(path):
        logged["artifacts"].append((path.rsplit("/", 1)[-1], open(path, "rb").read()[:20]))

    fake = types.SimpleNamespace(
        active_run=lambda: None, start_run=lambda **kw: Run(), log_params=logged["params"].update,
        log_metric=lambda k, v, step=None: logged["metrics"].append((k, v, step)), set_tag=lambda k, v: None,
        log_artifact=log_artifact)
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    task, opt = lms
    FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=2, epochs=1, use_mlflow=True, auto="light").compile(
        program(), trainset=word_examples(6), valset=word_examples(8)[6:])
    names = {m[0] for m in logged["metrics"]}
    assert logged["runs"] == 1 and logged["params"]["auto"] == "light" and logged["params"]["epochs_planned"] == 1
    assert {"subset_best_score", "merge_score", "val_optimized", "metric_calls", "optimizer_prompt_tokens"} <= names
    artifacts = dict(logged["artifacts"])
    assert artifacts["fgo_result.json"].startswith(b"{")
    if "fgo_merge_tree.png" in artifacts:
        assert artifacts["fgo_merge_tree.png"].startswith(b"\x89PNG")


def test_use_mlflow_without_mlflow_is_a_clear_error(lms, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    task, opt = lms
    with pytest.raises(ImportError, match=r"dspy-fgo\[mlflow\]"):
        FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=2, epochs=1, use_mlflow=True).compile(
            program(), trainset=word_examples(4))


def test_use_mlflow_against_a_local_file_store(lms, monkeypatch, tmp_path):
    mlflow = pytest.importorskip("mlflow")  # the mlflow extra; skipped without it
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    mlflow.set_experiment("fgo-test")
    task, opt = lms
    FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=2, epochs=1, use_mlflow=True).compile(
        program(), trainset=word_examples(6), valset=word_examples(8)[6:])
    (run,) = mlflow.search_runs(experiment_names=["fgo-test"], output_format="list")
    assert {"merge_score", "subset_best_score", "val_optimized", "optimizer_prompt_tokens"} <= set(run.data.metrics)
    assert "fgo_result.json" in [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)]


def test_a_workers_ledger_comes_back_into_the_drivers():
    import pickle
    from types import SimpleNamespace

    from dspy_fgo.candidate import Candidate
    from dspy_fgo.ledger import Ledger

    seed, new = Candidate({"self": "Answer."}), Candidate({"self": "Answer in UPPERCASE."})
    driver = Ledger(seed)
    worker = pickle.loads(pickle.dumps(driver))  # what a Ray worker holds
    worker.link(new, [seed], "subset 0 step 0")
    worker.record(new, "train", [SimpleNamespace(index=3, score=1.0, prediction=None)])
    driver.merge_from(worker.to_list())
    (_, entry) = driver.to_list()
    assert entry["origin"] == "subset 0 step 0" and entry["parents"] == [0] and entry["scores"]["train"] == {3: 1.0}
