"""partition="failures": the seed's failures, critiqued, clustered into one subset per failure mode."""

import logging
import re

import dspy
import pytest
from fakes import FakeLM, rule_optimizer

from dspy_fgo import FGO
from dspy_fgo.context import RunContext
from dspy_fgo.divide import check_partition, divide, random_partition
from dspy_fgo.failures import failure_partition

WORDS = ["apple", "river", "stone", "cloud", "maple", "tiger", "piano", "lemon", "ocean", "grape"]
KINDS = ("upper", "reverse", "plain")  # two ways to fail (until a rule says how) and one that works
RULES = {"upper": "Answer 'upper:' questions in UPPERCASE.", "reverse": "Answer 'reverse:' questions REVERSED."}


def kind_examples(n: int, kinds=KINDS) -> list[dspy.Example]:
    out = []
    for i in range(n):
        kind, word = kinds[i % len(kinds)], f"{WORDS[i % len(WORDS)]}{i}"
        answer = {"upper": word.upper(), "reverse": word[::-1], "plain": word}[kind]
        out.append(dspy.Example(question=f"{kind}: {word}", answer=answer).with_inputs("question"))
    return out


def kinds_of(examples, indices):
    return {examples[i].question.split(":")[0] for i in indices}


def kind_task(request) -> dict:
    """Task LM: echoes the word; uppercases or reverses it only when the instructions carry that rule."""
    kind, _, word = request.fields.get("question", "").partition(": ")
    if kind == "upper" and "UPPERCASE" in request.system:
        return {"answer": word.upper()}
    if kind == "reverse" and "REVERSED" in request.system:
        return {"answer": word[::-1]}
    return {"answer": word}


def kind_optimizer(request) -> dict:
    """Critic, optimizer and merge LM: the critique names the failure's kind (in words that differ per
    example, as a real critic's do); a proposal adds the rule for each kind its feedback names."""
    if "critique" in request.outputs:
        text = request.fields["trajectory"]
        expected = re.search(r"Expected:\n  answer: (.*)", text).group(1)
        predicted = re.search(r"Predicted:\n  answer: (.*)", text).group(1)
        if expected == predicted.upper():
            return {"critique": f"The answer {predicted} should be written in uppercase capital letters."}
        if expected == predicted[::-1]:
            return {"critique": f"The answer {predicted} should be reversed, spelled backwards."}
        return {"critique": "Wrong answer."}
    if "new_text" in request.outputs or "new_rules" in request.outputs:
        current, feedback = request.fields.get("current_text", ""), request.fields.get("feedback", "").lower()
        rules = [RULES["upper"]] * ("uppercase" in feedback) + [RULES["reverse"]] * ("reversed" in feedback)
        new = [r for r in rules if r not in current]
        if "new_rules" in request.outputs:
            return {"new_rules": "\n".join(f"- {r}" for r in new)}
        return {"new_text": " ".join([current] + new).strip()}
    return rule_optimizer(request)


def kind_metric(example, prediction, trace=None):
    return float(prediction.answer == example.answer)


def feedback_metric(example, prediction, trace=None):
    kind = example.question.split(":")[0]
    ok = prediction.answer == example.answer
    return dspy.Prediction(score=float(ok), feedback="" if ok else {"upper": "expected capitals, all uppercase",
                                                                    "reverse": "expected the reversed word"}[kind])


def program():
    return dspy.Predict("question -> answer")


@pytest.fixture
def task():
    lm = FakeLM(kind_task, model="fake/task")
    with dspy.context(lm=lm):
        yield lm


@pytest.fixture
def info_log(caplog):
    logger = logging.getLogger("dspy.dspy_fgo.failures")  # DSPy's logger does not propagate to the root
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="dspy.dspy_fgo.failures")
    yield caplog
    logger.removeHandler(caplog.handler)


def context(task, train, metric=kind_metric, opt=None, **kw):
    return RunContext.create(program(), train, metric, optimizer_lm=opt or FakeLM(kind_optimizer), task_lm=task,
                             **kw)


def partition(run, k, **kw):
    return failure_partition(run, k, **kw)[0]


def test_failures_of_one_kind_share_a_subset_and_the_log_names_each_mode(task, info_log):
    train = kind_examples(12)
    parts = partition(context(task, train), 2)
    assert len(parts) == 2
    failing = [kinds_of(train, part) - {"plain"} for part in parts]
    assert sorted(map(sorted, failing)) == [["reverse"], ["upper"]]
    text = info_log.text
    assert "fails on 8 of 12 examples, 2 failure modes" in text
    assert re.search(r"subset \d: failures \[[\d, ]+\] \(.*uppercase.*\) \+ 2 successes", text)
    assert re.search(r"subset \d: failures \[[\d, ]+\] \(.*reversed.*\) \+ 2 successes", text)


def test_more_subsets_than_modes_keep_every_subset_to_one_kind_of_failure(task):
    train = kind_examples(12)
    parts = partition(context(task, train), 4)
    assert len(parts) == 4
    assert all(len(kinds_of(train, part) - {"plain"}) == 1 for part in parts)


def test_raw_feedback_groups_by_the_metrics_feedback_without_a_critic(task):
    train, opt = kind_examples(12), FakeLM(kind_optimizer)
    parts = partition(context(task, train, feedback_metric, opt, feedback="raw"), 2)
    assert not [r for r in opt.requests if "critique" in r.outputs]
    assert sorted(sorted(kinds_of(train, part) - {"plain"}) for part in parts) == [["reverse"], ["upper"]]


def test_successes_are_dealt_over_the_subsets_and_the_partition_covers_the_trainset(task):
    train = kind_examples(15)
    run = context(task, train)
    parts, runs = failure_partition(run, 2)
    check_partition(parts, len(train))
    successes = [len([i for i in part if not runs[i].failed]) for part in parts]
    assert sum(successes) == 5 and max(successes) - min(successes) <= 1
    assert [t.index for t in runs] == list(range(15))  # the seed's runs, handed to the first steps


def test_no_failures_falls_back_to_the_random_partition(task, info_log):
    train = kind_examples(9, kinds=("plain",))
    opt = FakeLM(kind_optimizer)
    assert partition(context(task, train, opt=opt), 3) == random_partition(9, 3, 0)
    assert "fails on none of the 9 examples: random partition" in info_log.text
    assert opt.calls == 0


def test_the_partition_is_deterministic_for_a_seed(task):
    train = kind_examples(24)
    first = partition(context(task, train, random_seed=5), 3)
    assert partition(context(task, train, random_seed=5), 3) == first
    assert partition(context(task, train, random_seed=6), 3) != first  # the successes are dealt anew


def test_divide_alone_cannot_run_the_failures_partition():
    with pytest.raises(ValueError, match="FGO's"):
        divide(kind_examples(6), "failures", num_subsets=2)


@pytest.mark.parametrize("feedback,metric", [("raw", feedback_metric), ("critique", kind_metric)])
def test_fgo_with_the_failures_partition_learns_both_rules_within_the_budget(task, feedback, metric):
    """With feedback="raw" (the default) the partition groups by the metric's feedback, else by the critiques."""
    train, val = kind_examples(12), kind_examples(18)[12:]
    limit = 70
    result = FGO(metric=metric, optimizer_lm=FakeLM(kind_optimizer), partition="failures", num_subsets=2,
                 max_metric_calls=limit, num_threads=2, feedback=feedback).compile(
        program(), trainset=train, valset=val).fgo_result
    stages = result.accounting["stages"]
    assert result.total_metric_calls <= limit
    # the seed ran once on the trainset (the cost estimate's pilot runs of it are the divide stage's; without
    # a critic the divide stage spends nothing and is not in the accounting)...
    assert stages["estimate"]["metric_calls"] + stages.get("divide", {"metric_calls": 0})["metric_calls"] == len(train)
    assert task.calls == result.total_metric_calls  # ...and no subset ran it again
    assert len(result.subsets) == 2
    assert all(len(kinds_of(train, s.indices) - {"plain"}) == 1 for s in result.subsets)
    assert result.final_choice == "optimized" and result.val_scores["optimized"] == 1.0
    assert "UPPERCASE" in result.final_candidate["self"] and "REVERSED" in result.final_candidate["self"]


def test_a_resumed_run_keeps_its_partition(task, tmp_path):
    def run():
        return FGO(metric=kind_metric, optimizer_lm=FakeLM(kind_optimizer), partition="failures", num_subsets=2,
                   epochs=1, log_dir=str(tmp_path)).compile(program(), trainset=kind_examples(12)).fgo_result

    first = run()
    calls = task.calls
    again = run()
    assert [s.indices for s in again.subsets] == [s.indices for s in first.subsets]
    assert (tmp_path / "partition.json").exists()
    assert task.calls - calls < len(kind_examples(12))  # the seed did not run again on the trainset
