import json

import datasets
import dspy
import pytest
from fakes import RULE, FakeLM, exact_metric, format_fields, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import FGO, AllAtOnce, BatchWise, Bootstrapping, Candidate, FGOResult, FGOTeleprompter


@pytest.fixture
def lms():
    task, opt = FakeLM(uppercase_task, model="fake/task"), FakeLM(rule_optimizer, model="fake/opt")
    with dspy.context(lm=task):
        yield task, opt


def fgo(opt, **kw):
    kw = {"metric": exact_metric, "optimizer_lm": opt, "num_subsets": 4, "epochs": 1, "num_threads": 2, **kw}
    return FGO(**kw)


def score(program, examples):
    return sum(exact_metric(ex, program(**ex.inputs())) for ex in examples) / len(examples)


def test_fgo_learns_the_rule_and_the_score_rises(lms):
    task, opt = lms
    program, train, test = dspy.Predict("question -> answer"), word_examples(12), word_examples(20)[12:]
    optimized = fgo(opt).compile(program, trainset=train, valset=word_examples(4))
    assert score(program, test) == 0.0
    assert score(optimized, test) == 1.0
    result = optimized.fgo_result
    assert isinstance(result, FGOResult) and result.final_choice == "optimized"
    assert RULE in result.final_candidate["self"]
    assert result.val_scores == {"seed": 0.0, "optimized": 1.0}
    for subset in result.subsets:
        assert subset.steps[0].score_before == 0.0 and subset.steps[0].score_after == 1.0


def test_student_is_not_mutated(lms):
    task, opt = lms
    program = dspy.Predict("question -> answer")
    before = Candidate.from_program(program)
    optimized = fgo(opt).compile(program, trainset=word_examples(8))
    assert Candidate.from_program(program) == before
    assert optimized is not program and isinstance(optimized, dspy.Module)


def test_positional_call_style_and_alias(lms):
    task, opt = lms
    assert FGOTeleprompter is FGO
    optimized = FGOTeleprompter(optimizer_lm=opt, num_subsets=2, epochs=1).compile(
        dspy.Predict("question -> answer"), word_examples(6), exact_metric)
    assert RULE in optimized.fgo_result.final_candidate["self"]


def test_result_record_holds_subsets_tree_accounting_and_choice(lms, tmp_path):
    task, opt = lms
    optimized = fgo(opt, num_subsets=6, merge_threshold=2, partition="category").compile(
        dspy.Predict("question -> answer"), trainset=word_examples(12), valset=word_examples(3))
    data = json.loads(optimized.fgo_result.to_json(tmp_path / "run.json"))
    assert json.loads((tmp_path / "run.json").read_text()) == data
    assert sorted(i for s in data["subsets"] for i in s["indices"]) == list(range(12))
    assert {"indices", "history", "best_candidate", "best_score"} <= set(data["subsets"][0])
    root = data["merge_tree"][0]
    assert root["indices"] == list(range(12)) and root["children"]
    assert {"score", "candidate", "children", "indices"} <= set(root)
    assert data["final_choice"] == "optimized" and "valset" in data["reason"]
    assert set(data["accounting"]["roles"]) >= {"task", "optimizer"}  # no evaluator: feedback="raw" has no critic


def test_accounting_equals_the_fake_lms_own_counts(lms):
    task, opt = lms
    optimized = fgo(opt).compile(dspy.Predict("question -> answer"), trainset=word_examples(8),
                                 valset=word_examples(3))
    roles = optimized.fgo_result.accounting["roles"]
    assert roles["task"]["calls"] == task.calls
    assert roles["task"]["prompt_tokens"] == task.prompt_tokens
    assert roles["task"]["completion_tokens"] == task.completion_tokens
    side = [roles[r] for r in ("evaluator", "optimizer", "merge") if r in roles]
    assert sum(r["calls"] for r in side) == opt.calls
    assert sum(r["prompt_tokens"] for r in side) == opt.prompt_tokens
    assert sum(r["completion_tokens"] for r in side) == opt.completion_tokens


def test_merge_clustering_none_merges_in_one_step(lms):
    task, opt = lms
    optimized = fgo(opt, num_subsets=6, merge_threshold=2, merge_clustering="none").compile(
        dspy.Predict("question -> answer"), trainset=word_examples(12))
    tree = optimized.fgo_result.merge_tree
    assert len(tree[0]["children"]) == 6 and len(tree) == 7


def test_valset_guard_keeps_the_seed_when_optimization_hurts(lms):
    task, _ = lms

    def overfit(request):
        out = rule_optimizer(request)
        if "new_rules" in out:
            return {"new_rules": "- Answer in lowercase."}
        return {"new_text": "Answer in lowercase."} if "new_text" in out else out

    def task_lm(request):  # the lowercase rule fixes training questions and breaks validation ones
        question = request.fields["question"]
        word = question.split(":")[-1].strip()
        ruled = "lowercase" in request.system
        right = ruled if question.startswith("word") else not ruled
        return {"answer": word.upper() if right else word.lower()}

    valset = [dspy.Example(question=f"check: w{i}", answer=f"W{i}").with_inputs("question") for i in range(4)]
    with dspy.context(lm=FakeLM(task_lm)):
        optimized = fgo(FakeLM(overfit), epochs=1).compile(
            dspy.Predict("question -> answer"), trainset=word_examples(8), valset=valset)
    result = optimized.fgo_result
    assert result.final_choice == "seed" and result.final_candidate == result.seed_candidate
    assert result.val_scores == {"seed": 1.0, "optimized": 0.0}
    assert "kept the seed" in result.reason
    assert Candidate.from_program(optimized) == result.seed_candidate


def test_metric_that_raises_is_recorded_and_the_run_goes_on(lms):
    task, opt = lms

    def flaky(example, prediction, trace=None):
        if example.question.endswith("3"):
            raise RuntimeError("boom")
        return exact_metric(example, prediction)

    optimized = fgo(opt, metric=flaky).compile(dspy.Predict("question -> answer"), trainset=word_examples(8))
    errors = optimized.fgo_result.errors
    assert errors and all(e["stage"] == "metric" and "boom" in e["message"] for e in errors)
    assert RULE in optimized.fgo_result.final_candidate["self"]


def test_garbage_from_the_optimizer_lm_is_recorded_not_fatal(lms):
    task, _ = lms

    def garbage(request):
        return rule_optimizer(request) if "critique" in request.outputs else "[[ ## wrong_field ## ]]\nno idea"

    optimized = fgo(FakeLM(garbage)).compile(dspy.Predict("question -> answer"), trainset=word_examples(8))
    result = optimized.fgo_result
    assert any(e["stage"] == "optimizer" for e in result.errors)
    assert result.final_choice == "seed" and result.reason == "optimization changed nothing"


def test_a_reply_without_field_markers_is_the_field_in_one_call(lms):
    """A small LM's bare "- rule" reply is used as it is, not re-asked in JSON (a second call) and retried."""
    task, _ = lms

    def bare(request):
        reply = rule_optimizer(request)
        return reply["new_rules"] if "new_rules" in reply else reply

    opt = FakeLM(bare)
    optimized = fgo(opt, update="rules", num_subsets=1).compile(dspy.Predict("question -> answer"),
                                                                trainset=word_examples(4))
    proposals = [r for r in opt.requests if "new_rules" in r.outputs]
    assert RULE in optimized.fgo_result.final_candidate["self"]
    assert len(proposals) == 1 and not optimized.fgo_result.errors


def test_metric_feedback_reaches_the_critic(lms):
    task, opt = lms

    def with_feedback(example, prediction, trace=None):
        return dspy.Prediction(score=exact_metric(example, prediction), feedback="FEEDBACK-MARK: use capitals")

    fgo(opt, metric=with_feedback, num_subsets=1, feedback="critique").compile(dspy.Predict("question -> answer"), trainset=word_examples(3))
    critiques = [r for r in opt.requests if "critique" in r.outputs]
    assert critiques and all("FEEDBACK-MARK" in r.fields["trajectory"] for r in critiques)


def test_chain_of_thought_programs_work(lms):
    task, opt = lms
    optimized = fgo(opt, num_subsets=2).compile(dspy.ChainOfThought("question -> answer"),
                                                trainset=word_examples(6))
    assert RULE in optimized.fgo_result.final_candidate["predict"]


def test_datasets_dataset_is_accepted_with_input_keys(lms):
    task, opt = lms
    rows = [dict(ex) for ex in word_examples(8)]
    ds = datasets.Dataset.from_list(rows)
    optimized = fgo(opt, input_keys=["question"]).compile(dspy.Predict("question -> answer"), trainset=ds)
    assert RULE in optimized.fgo_result.final_candidate["self"]
    with pytest.raises(ValueError, match="input_keys"):
        fgo(opt).compile(dspy.Predict("question -> answer"), trainset=ds)


@pytest.mark.parametrize("cls,kw", [(AllAtOnce, {}), (BatchWise, {"batch_size": 3}), (Bootstrapping, {"batch_size": 3})])
def test_baselines_run_on_the_same_engine(lms, cls, kw):
    task, opt = lms
    optimized = cls(metric=exact_metric, optimizer_lm=opt, epochs=2, **kw).compile(
        dspy.Predict("question -> answer"), trainset=word_examples(9))
    result = optimized.fgo_result
    assert result.method == cls.method and len(result.subsets) == 1
    assert RULE in result.final_candidate["self"]


def test_batchwise_visits_fixed_batches_in_sequence_every_epoch():
    batches, epochs = BatchWise(metric=exact_metric, batch_size=4, epochs=2, seed=1).batches(10)
    assert len(batches) == 6 and batches[:3] == batches[3:] and epochs == [0, 0, 0, 1, 1, 1]
    assert sorted(i for b in batches[:3] for i in b) == list(range(10))


def test_bootstrapping_samples_with_replacement_deterministically():
    a = Bootstrapping(metric=exact_metric, batch_size=4, epochs=2, seed=1).batches(10)
    assert a == Bootstrapping(metric=exact_metric, batch_size=4, epochs=2, seed=1).batches(10)
    assert len(a[0]) == 6 and all(len(b) == 4 for b in a[0])


class NoPredictors(dspy.Module):
    def forward(self, question):
        return dspy.Prediction(answer=question)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda opt: FGO(optimizer_lm=opt).compile(dspy.Predict("question -> answer"), trainset=word_examples(3)),
         "No metric"),
        (lambda opt: fgo(opt).compile(dspy.Predict("question -> answer"), trainset=[]), "empty"),
        (lambda opt: fgo(opt, num_subsets=5).compile(dspy.Predict("question -> answer"), trainset=word_examples(3)),
         "more than the 3"),
        (lambda opt: fgo(opt).compile(NoPredictors(), trainset=word_examples(4)), "no predictors"),
        (lambda opt: fgo(opt).compile(dspy.Predict("question -> answer"), trainset=[dspy.Example(question="x")]),
         "with_inputs"),
        (lambda opt: FGO(metric=exact_metric, merge_clustering="tree"), "merge_clustering"),
        (lambda opt: FGO(metric=exact_metric, epochs=0), "epochs"),
        (lambda opt: fgo(opt, context_window=600).compile(dspy.Predict("question -> answer"),
                                                           trainset=word_examples(4)), "context window"),
    ],
)
def test_bad_input_gets_a_clear_value_error(lms, call, message):
    task, opt = lms
    with pytest.raises(ValueError, match=message):
        call(opt)


def test_missing_optimizer_lm_is_a_clear_error():
    with dspy.context(lm=None):
        with pytest.raises(ValueError, match="optimizer LM"):
            FGO(metric=exact_metric).compile(dspy.Predict("question -> answer"), trainset=word_examples(4))


def test_fake_lm_format_helper():
    assert format_fields({"a": "1"}).startswith("[[ ## a ## ]]\n1")


def test_outer_usage_trackers_see_every_call(lms):
    task, opt = lms
    with dspy.track_usage() as tracker:
        fgo(opt).compile(dspy.Predict("question -> answer"), trainset=word_examples(8))
    usage = tracker.get_total_tokens()
    assert usage["fake/task"]["prompt_tokens"] == task.prompt_tokens
    assert usage["fake/opt"]["prompt_tokens"] == opt.prompt_tokens


def test_result_plot_and_summary(lms, tmp_path):
    task, opt = lms
    result = fgo(opt, num_subsets=3).compile(dspy.Predict("question -> answer"), trainset=word_examples(9)).fgo_result
    result.plot(tmp_path / "run.png")
    assert (tmp_path / "run.png").stat().st_size > 1000
    assert "fgo: chose optimized" in result.summary() and "subsets: 3" in result.summary()


def test_a_subset_rule_the_merges_dropped_still_gets_its_valset_check():
    """The root merge can be the seed (a subset's rule hurt the union) while a subset's program is the one the
    valset wants: with valset_candidates > 1 it is still scored there, not "optimization changed nothing"."""
    def example(i: int, cat: str, upper: bool) -> dspy.Example:
        word = f"word{i}"
        return dspy.Example(question=f"word: {word}", answer=word.upper() if upper else word,
                            category=cat).with_inputs("question")

    # c0 (examples 0, 3, 6) wants capitals twice in three, c1 and c2 never: c0 learns the rule (1/3 -> 2/3), the
    # other subsets are perfect with the seed, and on the union the seed (7/9) beats the rule (2/9)
    train = [example(i, f"c{i % 3}", upper=i in (0, 3)) for i in range(9)]
    val = [example(100 + i, "c0", upper=True) for i in range(3)]
    with dspy.context(lm=FakeLM(uppercase_task)):
        r = FGO(metric=exact_metric, optimizer_lm=FakeLM(rule_optimizer), partition="category", epochs=1,
                merge_clustering="none", num_threads=1).compile(dspy.Predict("question -> answer"), trainset=train,
                                                                valset=val).fgo_result
    assert r.merge_root.candidate == r.seed_candidate
    assert r.final_choice == "optimized" and RULE in r.final_candidate["self"]
    assert r.val_scores["seed"] == 0.0 and max(r.val_scores.values()) == 1.0
