import dspy
import pytest
from fakes import FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import Candidate
from dspy_fgo.budget import count_tokens
from dspy_fgo.context import RunContext
from dspy_fgo.feedback import OverflowPolicy, fit_feedback
from dspy_fgo.rollout import (
    Trajectory,
    call_metric,
    cut_middle,
    pack_within_budget,
    render_trajectory,
    run_examples,
)


def huge_trajectory():
    return Trajectory(
        index=7, inputs={"document": "lorem ipsum " * 20000}, label={"answer": "X" * 5000},
        prediction={"answer": "y " * 8000}, score=0.0, feedback="f" * 9000, error=None,
        tool_calls=tuple({"tool": "search", "args": "{}", "observation": "obs " * 3000} for _ in range(30)),
    )


@pytest.mark.parametrize("budget", [100, 500, 2000])
def test_render_budget_holds_on_a_huge_trajectory(budget):
    text = render_trajectory(huge_trajectory(), budget, "gpt-4o", critique="c" * 4000)
    assert count_tokens(text, "gpt-4o") <= budget
    assert "characters cut" in text


def test_render_keeps_small_trajectories_whole():
    t = Trajectory(1, {"question": "q?"}, {"answer": "A"}, {"answer": "B"}, 0.0, feedback="near miss")
    text = render_trajectory(t, 1000, critique="use capitals")
    for part in ("q?", "Expected", "B", "near miss", "use capitals", "score 0.00"):
        assert part in text


def test_cut_middle_keeps_both_ends():
    text = "HEAD" + "x" * 1000 + "TAIL"
    cut = cut_middle(text, 100)
    assert cut.startswith("HEAD") and cut.endswith("TAIL") and len(cut) <= 110


def test_pack_within_budget_never_exceeds_the_budget():
    texts = ["word " * n for n in (10, 50, 200, 5, 80, 120)]
    chunks = pack_within_budget(texts, 260)
    assert sorted(i for c in chunks for i in c) == list(range(6))
    for chunk in chunks:
        assert len(chunk) == 1 or sum(count_tokens(texts[i]) + 2 for i in chunk) <= 260


def test_run_examples_records_steps_scores_and_failures():
    def task(request):
        if request.fields["question"].endswith("2"):
            return "garbage without fields"
        return uppercase_task(request)

    with dspy.context(lm=FakeLM(task)):
        trajs = run_examples(dspy.ChainOfThought("question -> answer"), word_examples(3), [0, 1, 2], exact_metric)
    assert [t.index for t in trajs] == [0, 1, 2]
    assert trajs[0].steps[0].predictor == "predict" and trajs[0].steps[0].outputs["reasoning"] == "thinking"
    assert trajs[2].error and trajs[2].prediction is None and trajs[2].score == 0.0


def test_call_metric_accepts_numbers_bools_and_feedback():
    ex = dspy.Example(a=1)
    assert call_metric(lambda e, p, t=None: True, ex, None).score == 1.0
    r = call_metric(lambda e, p, t=None: dspy.Prediction(score=0.5, feedback="fb"), ex, None)
    assert (r.score, r.feedback) == (0.5, "fb")


def _engine(window):
    opt = FakeLM(rule_optimizer, model="fake/opt")
    return RunContext.create(dspy.Predict("question -> answer"), word_examples(4), exact_metric, optimizer_lm=opt,
                             task_lm=FakeLM(uppercase_task), context_window=window), opt


def test_overflow_trim_keeps_what_fits_and_counts_the_trim():
    engine, _ = _engine(4000)
    feedback = [f"run {i}: " + "detail " * 300 for i in range(20)]
    text = fit_feedback(engine, "self", "cur", feedback, 1500, OverflowPolicy("trim"))
    assert count_tokens(text) <= 1500 and "run 0:" in text and "run 19:" not in text
    assert engine.budget.trims == 1


def test_overflow_summarize_splits_across_calls_and_fits():
    engine, opt = _engine(4000)
    feedback = [f"run {i}: " + "detail " * 300 for i in range(20)]
    text = fit_feedback(engine, "self", "cur", feedback, 1500, OverflowPolicy("summarize"))
    summaries = [r for r in opt.requests if "lessons" in r.outputs]
    assert len(summaries) >= 4 and "Answers must be uppercase." in text
    assert count_tokens(text) <= 1500
    assert all(count_tokens(r.fields["runs_with_critiques"]) <= 1500 for r in summaries)


@pytest.mark.parametrize("size", [3, 40, 120])
def test_no_prompt_overflows_a_small_window_with_many_long_examples(size):
    """A fake LM that fails above its window: FGO's own prompts never hit it, at any trainset size."""
    long_examples = [dspy.Example(question=f"word: w{i} " + "filler " * 400, answer=f"W{i}").with_inputs("question")
                     for i in range(size)]
    opt = FakeLM(rule_optimizer, model="fake/opt", window=3000)
    task = FakeLM(uppercase_task, model="fake/task")
    from dspy_fgo import FGO, AllAtOnce, BatchWise

    with dspy.context(lm=task):
        for cls in (AllAtOnce, FGO, BatchWise):
            result = cls(metric=exact_metric, optimizer_lm=opt, context_window=3000, epochs=1).compile(
                dspy.Predict("question -> answer"), trainset=long_examples).fgo_result
            assert not [e for e in result.errors if "exceeds the window" in e["message"]]
            assert result.accounting["context_trims"] >= (1 if cls is AllAtOnce and size > 3 else 0)
    assert opt.overflows == 0 and opt.calls > 0
    assert Candidate.from_program(dspy.Predict("question -> answer"))


def test_only_fields_the_program_outputs_are_shown_as_the_expected_answer():
    """An example's other fields (a generator's decoys, ids) are not answers: the critic must not see
    them under "Expected"."""
    from fakes import FakeLM

    from dspy_fgo.rollout import run_examples

    example = dspy.Example(question="q", answer="A", decoys=["B", "C"], category="x").with_inputs("question")
    with dspy.context(lm=FakeLM(lambda r: {"answer": "B"})):
        [traj] = run_examples(dspy.Predict("question -> answer"), [example], [0], lambda e, p, t=None: 0.0)
    assert traj.label == {"answer": "A"} and traj.metadata == {"category": "x"}
    only_extra = dspy.Example(question="q", gold="A").with_inputs("question")  # no label named like an output
    with dspy.context(lm=FakeLM(lambda r: {"answer": "B"})):
        [traj] = run_examples(dspy.Predict("question -> answer"), [only_extra], [0], lambda e, p, t=None: 0.0)
    assert traj.label == {"gold": "A"}
