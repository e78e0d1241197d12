"""Offline tests of what every short-input task promises (tickets, prices, tracking, appointments, payments,
bookings): seeded, balanced, stored with `datasets`, short prompts, a metric that scores the label 1 and every decoy 0."""

from collections import Counter

import dspy
import pytest

from benchmarks.tasks import appointments, bookings, payments, prices, tickets, tracking
from benchmarks.tasks.invoices import count_tokens
from benchmarks.tasks.registry import load_task

TASKS = [tickets.TASK, prices.TASK, tracking.TASK, appointments.TASK, payments.TASK, bookings.TASK]


@pytest.fixture(scope="module", params=TASKS, ids=lambda t: t.name)
def task(request):
    return request.param


def test_same_seed_same_data_other_seed_other_data(task):
    assert task.generate(30, seed=3) == task.generate(30, seed=3)
    other = {row[task.input_field] for row in task.generate(30, seed=4)}
    assert not other & {row[task.input_field] for row in task.generate(30, seed=3)}


def test_categories_are_balanced(task):
    counts = Counter(row["category"] for row in task.generate(10 * len(task.categories) + 1, seed=0))
    assert set(counts) == set(task.categories) and max(counts.values()) - min(counts.values()) <= 1


def test_decoys_never_equal_the_label_and_the_metric_tells_them_apart(task):
    for example in task.to_examples(task.generate(200, seed=1)):
        label = example[task.output_field]
        assert example.decoys and all(task.normalize(d) != task.normalize(label) for d in example.decoys)
        assert task.metric(example, dspy.Prediction(**{task.output_field: label})) == 1.0
        for decoy in example.decoys:
            assert task.metric(example, dspy.Prediction(**{task.output_field: decoy})) == 0.0
        assert task.metric(example, dspy.Prediction()) == 0.0


def test_feedback_cites_the_rule_only_when_wrong_and_never_enters_the_inputs(task):
    example = task.to_examples(task.generate(1, seed=2))[0]
    wrong = task.feedback_metric(example, dspy.Prediction(**{task.output_field: example.decoys[0]}))
    right = task.feedback_metric(example, dspy.Prediction(**{task.output_field: example[task.output_field]}))
    assert wrong.score == 0.0 and task.rules[example.category] in wrong.feedback
    assert right.score == 1.0 and right.feedback.startswith("Correct")
    assert set(example.inputs().keys()) == {task.input_field}


def test_inputs_and_whole_prompts_are_short(task):
    rows = task.generate(300, seed=5)
    assert max(count_tokens(row[task.input_field]) for row in rows) < 250
    longest = max(rows, key=lambda row: len(row[task.input_field]))
    for hand_written in (False, True):
        program = task.make_program(hand_written=hand_written)
        messages = dspy.ChatAdapter().format(program.signature, [], {task.input_field: longest[task.input_field]})
        assert count_tokens("\n".join(m["content"] for m in messages)) < 400


def test_registry_splits_are_disjoint_and_stored_with_datasets(task, tmp_path, monkeypatch):
    monkeypatch.setattr("benchmarks.tasks.short.CACHE_DIR", tmp_path)
    spec = load_task(task.name, train=12, val=6, test=30, seed=0)
    texts = [[ex[task.input_field] for ex in split] for split in (spec.train, spec.val, spec.test)]
    assert [len(t) for t in texts] == [12, 6, 30] and len(set(sum(texts, []))) == 48
    assert any(tmp_path.joinpath(task.name).iterdir())
    assert spec.test == load_task(task.name, train=0, val=0, test=30, seed=0).test  # the test set is fixed
    seed_text = spec.program_factory().signature.instructions
    assert seed_text == task.signature.instructions and spec.hand_written_program().signature.instructions == task.hand_written
    with pytest.raises(ValueError):
        load_task(task.name, train=1, val=0, test=1, profile="paper")
