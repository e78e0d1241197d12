"""FGO end to end on the embedded local LLM (marked local_lm: run with `python -m pytest -m local_lm`)."""

import importlib.util

import dspy
import pytest

from dspy_fgo import FGO

pytestmark = [
    pytest.mark.local_lm,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama_cpp not installed"),
]


def test_fgo_compiles_a_real_program_on_the_local_model():
    from dspy_fgo.local import LocalModelNotInstalled, local_lms

    try:
        task_lm, optimizer_lm, server = local_lms(task="qwen0.5b", optimizer="qwen0.5b",
                                                  optimizer_kwargs={"max_tokens": 300})
    except LocalModelNotInstalled as exc:
        pytest.skip(str(exc))
    words = ["apple", "river", "stone", "cloud", "maple", "tiger"]
    data = [dspy.Example(word=w, answer=w.upper()).with_inputs("word") for w in words]

    def metric(example, prediction, trace=None):
        return float(str(prediction.answer).strip() == example.answer)

    try:
        with dspy.context(lm=task_lm):
            optimized = FGO(metric=metric, optimizer_lm=optimizer_lm, num_subsets=2, epochs=1, num_threads=1).compile(
                dspy.Predict("word -> answer"), trainset=data[:4], valset=data[4:])
            prediction = optimized(word="lemon")
    finally:
        server.stop()
    result = optimized.fgo_result
    assert isinstance(prediction.answer, str) and prediction.answer
    assert len(result.subsets) == 2 and result.merge_tree
    roles = result.accounting["roles"]
    assert roles["task"]["calls"] > 0 and roles["task"]["prompt_tokens"] > 0
    assert roles["optimizer"]["calls"] > 0
    assert result.final_choice in ("optimized", "seed") and result.reason
