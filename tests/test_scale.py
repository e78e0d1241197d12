"""The scale benchmark's simulated LM and a tiny end-to-end run (offline, a few seconds)."""

from __future__ import annotations

import json
import threading
import time
from typing import Literal

import dspy
import litellm
import pytest

from benchmarks import scale
from benchmarks.simulated_lm import SimulatedLM, SimulatedServer


class Typed(dspy.Signature):
    """Answer with one value of each type."""

    question: str = dspy.InputField()
    text: str = dspy.OutputField()
    count: int = dspy.OutputField()
    score: float = dspy.OutputField()
    ok: bool = dspy.OutputField()
    tags: list[str] = dspy.OutputField()
    verdict: Literal["pass", "fail", "it's unclear"] = dspy.OutputField()


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=["chat", "json"])
def test_typed_outputs_parse(adapter):
    lm = SimulatedLM("simulated/test")
    with dspy.context(lm=lm, adapter=adapter):
        out = dspy.Predict(Typed)(question="what?")
    assert isinstance(out.text, str) and out.text
    assert isinstance(out.count, int) and not isinstance(out.count, bool)
    assert isinstance(out.score, float)
    assert isinstance(out.ok, bool)
    assert isinstance(out.tags, list) and out.tags and all(isinstance(t, str) for t in out.tags)
    assert out.verdict in ("pass", "fail", "it's unclear")
    assert lm.server.calls == {"simulated/test": 1}


def test_raw_prompt_gets_a_fenced_block():
    lm = SimulatedLM("simulated/test")
    reply = lm("Propose a new instruction inside ``` blocks.")[0]
    reply = reply["text"] if isinstance(reply, dict) else reply
    assert reply.startswith("```\n") and reply.rstrip().endswith("```")


def test_context_window_error_is_raised_and_counted():
    lm = SimulatedLM("simulated/test", window=400)
    with dspy.context(lm=lm):
        assert dspy.Predict("question -> answer")(question="short").answer  # fits
        with pytest.raises(litellm.ContextWindowExceededError):
            dspy.Predict("question -> answer")(question="word " * 500)
    assert lm.overflows == 1
    assert lm.server.summary()["total_calls"] == 1  # an overflow is not a served call


def test_concurrency_limit_holds():
    server = SimulatedServer(latency=0.05, concurrency=3)
    lm = SimulatedLM("simulated/test", server=server)
    started = time.perf_counter()
    threads = [threading.Thread(target=lambda: lm("hello")) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert server.peak_in_flight == 3  # the limit was reached, and never passed
    assert elapsed >= 4 * 0.05 * 0.95  # 12 calls through 3 slots take 4 rounds
    assert len(server.log) == 12


def test_task_model_is_mostly_wrong_and_deterministic():
    examples = scale.make_examples(60)
    lm = SimulatedLM("simulated/task", responder=scale.task_responder(0.3))
    program = scale.make_program()
    with dspy.context(lm=lm):
        first = [program(document=ex.document).label for ex in examples]
        second = [program(document=ex.document).label for ex in examples]
    assert first == second
    accuracy = sum(p == ex.label for p, ex in zip(first, examples, strict=True)) / len(examples)
    assert 0.1 <= accuracy <= 0.5
    assert {ex.category for ex in examples} == set(scale.SERVICES)


def test_tiny_scale_run_writes_json_fields(tmp_path):
    argv = ["--sizes", "12", "--methods", "fgo,all-at-once", "--latency", "0", "--val", "6", "--in-process",
            "--out", str(tmp_path)]
    scale.main(argv)
    data = json.loads((tmp_path / "scale.json").read_text())
    assert set(data["runs"]) == {"fgo/n12", "all-at-once/n12"}
    for run in data["runs"].values():
        assert run["error"] is None
        assert run["optimizer_side"]["prompt_tokens"] > 0 and run["optimizer_side"]["calls"] > 0
        assert run["task_side"]["calls"] > 0
        assert run["total_calls"] == run["optimizer_side"]["calls"] + run["task_side"]["calls"]
        assert run["overflows"] == 0 and run["context_trims"] is not None
        assert run["critical_path"]["units"] > 0
        assert run["peak_rss_mb"] > 0 and run["wall_seconds"] > 0
        assert "command" in run and "--in-process" in run["command"]
    assert data["runs"]["fgo/n12"]["fgo"]["subsets"] == 6  # one subset per category
    assert "n12" in data["summary"]["fgo_over_all_at_once_tokens"]
    assert (tmp_path / "scale.png").stat().st_size > 0
    scale.main(argv)  # resumable: finished pairs are skipped
    again = json.loads((tmp_path / "scale.json").read_text())
    assert again["runs"] == data["runs"] and len(again["invocations"]) == 2


@pytest.mark.parametrize("concurrency", [0, 2])
def test_lower_bound_is_below_wall_time(tmp_path, concurrency):
    args = scale.parse_args(["--latency", "0.02", "--concurrency", str(concurrency), "--val", "6"])
    run = scale.run_one("fgo", 12, args)
    assert run["error"] is None
    assert run["critical_path_seconds"] > 0
    assert run["lower_bound_seconds"] <= run["wall_seconds"]
    if concurrency:
        assert run["throughput_bound_seconds"] == pytest.approx(run["total_calls"] * 0.02 / concurrency)
        assert run["peak_in_flight"] <= concurrency
