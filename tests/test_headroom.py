"""benchmarks.headroom offline: a fake task LM that follows the hand-written rules only, resuming, refusing
a results file of another setting."""

import json
import re

import pytest
from fakes import FakeLM

from benchmarks import headroom
from benchmarks.tasks import tracking


def rule_follower(request):
    """Returns the value after the carrier's label when the instructions name the labels, else the order number."""
    text = request.fields["notification"]
    carrier = re.search(r"shipped with (.+)\.", text).group(1)
    label = tracking.CARRIERS[carrier][0] if "labels the tracking number" in request.system else "Track your order"
    return {"tracking_number": text.split(f"{label}: ")[1].split("\n")[0]}


@pytest.fixture
def out(tmp_path, monkeypatch):
    monkeypatch.setattr("benchmarks.tasks.short.CACHE_DIR", tmp_path / "cache")
    return tmp_path / "headroom"


def run(out, lm, test=10):
    return headroom.main(["--task", "tracking", "--test", str(test), "--chunk", "4", "--num-threads", "2",
                          "--out", str(out)], lm=lm)


def test_headroom_scores_both_programs_and_their_paired_difference(out, capsys):
    results = run(out, FakeLM(rule_follower))
    summary = results["summary"]
    assert summary["seed"]["score"] == 0.0 and summary["hand-written"]["score"] == 1.0
    assert summary["hand-written"]["n"] == 10 and set(summary["seed"]["per_category"]) == set(tracking.CARRIERS)
    diff = summary["hand-written minus seed"]
    assert diff["difference"] == 1.0 and diff["ci95"] == [1.0, 1.0] and diff["p_value"] < 0.01
    saved = json.loads((out / "results.json").read_text())
    assert saved["command"].startswith("python -m benchmarks.headroom --task tracking") and "dspy" in saved["versions"]
    assert saved["lm"]["model"] == "fake/lm" and saved["setting"]["task_lm"] == "local:qwen0.5b"
    first = saved["scores"]["seed"]["3"]
    assert first["score"] == 0.0 and first["category"] in tracking.CARRIERS and first["prediction"]["tracking_number"]
    assert "hand-written minus seed: +1.000" in capsys.readouterr().out


def test_an_interrupted_run_resumes_with_the_missing_examples_only(out):
    run(out, FakeLM(rule_follower))
    path = out / "results.json"
    saved = json.loads(path.read_text())
    for i in ("7", "8", "9"):
        del saved["scores"]["hand-written"][i]
    path.write_text(json.dumps(saved))
    lm = FakeLM(rule_follower)
    results = run(out, lm)
    assert lm.calls == 3 and results["summary"]["hand-written"]["n"] == 10


def test_a_results_file_of_another_setting_is_not_mixed_in(out):
    run(out, FakeLM(rule_follower))
    with pytest.raises(SystemExit, match="another setting"):
        run(out, FakeLM(rule_follower), test=12)
