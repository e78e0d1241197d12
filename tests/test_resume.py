import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dspy
import pytest
from fakes import RULE, FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import FGO

HERE = Path(__file__).parent


def subset_optimizer(request):
    """Like rule_optimizer, but each subset's rewrite (or new rule) names its own examples, so candidates differ."""
    out = rule_optimizer(request)
    key = "new_text" if "new_text" in out else "new_rules"
    if key in out and "UPPERCASE" in out[key] and "Noted" not in out[key]:
        words = sorted(w for w in request.fields["feedback"].split() if w.startswith("word:"))
        example = request.fields["feedback"].split("question: word: ")[1].split()[0]
        note = f"Noted the example {example}{len(words)}."  # 3 words or more: a rule
        out[key] += f" {note}" if key == "new_text" else f"\n- {note}"
    return out


def make_optimizer(log_dir, **kw):
    return FGO(metric=exact_metric, optimizer_lm=FakeLM(subset_optimizer, model="fake/opt"), num_subsets=4,
               epochs=1, num_threads=1, merge_threshold=2, log_dir=str(log_dir), **kw)


SCRIPT = textwrap.dedent("""
    import sys, time, json
    sys.path.insert(0, {tests!r})
    import dspy
    from fakes import FakeLM, uppercase_task, word_examples
    import test_resume

    def slow_task(request):
        time.sleep(0.03)
        return uppercase_task(request)

    with dspy.context(lm=FakeLM(slow_task, model="fake/task")):
        out = test_resume.make_optimizer({log_dir!r}).compile(dspy.Predict("question -> answer"),
                                                              trainset=word_examples(16))
    print(json.dumps(out.fgo_result.final_candidate.to_dict()))
""")


def test_sigkill_mid_run_then_resume_gives_the_same_result_without_redoing_subsets(tmp_path):
    log_dir = tmp_path / "run"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(HERE), log_dir=str(log_dir)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                     "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])})
    deadline = time.time() + 120
    while len(list((log_dir / "subsets").glob("subset_?????.json"))) < 2:
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted((log_dir / "subsets").glob("subset_?????.json"))
    done_indices = {i for f in finished for i in json.loads(f.read_text())["indices"]}
    assert 2 <= len(finished) < 4 and not list((log_dir / "merges").glob("*.json"))

    task = FakeLM(uppercase_task, model="fake/task")
    with dspy.context(lm=task):
        resumed = make_optimizer(log_dir).compile(dspy.Predict("question -> answer"), trainset=word_examples(16))
        fresh = make_optimizer(tmp_path / "fresh").compile(dspy.Predict("question -> answer"),
                                                          trainset=word_examples(16))
    result = resumed.fgo_result
    assert result.resumed["subsets"] == len(finished)
    assert result.final_candidate == fresh.fgo_result.final_candidate
    # the subsets' rules differ: each merge's union holds their "Noted" rules (which pruning then drops)
    proposed = [n.proposed for n in result.merge_root.walk() if n.proposed]
    assert proposed and all("Noted" in p["self"] for p in proposed)
    assert proposed == [n.proposed for n in fresh.fgo_result.merge_root.walk() if n.proposed]
    # no subset-stage call of the resumed run touched a finished subset's examples
    questions = {word_examples(16)[i].question for i in done_indices}
    # (threads=1: the unfinished subsets' evaluate + re-evaluate calls come first, then the back-tests)
    subset_stage = [r.fields["question"] for r in task.requests[: 2 * (16 - len(done_indices))]]
    assert subset_stage and not questions & set(subset_stage)

    # a second resume does no LM work for subsets or merges at all
    opt = FakeLM(subset_optimizer, model="fake/opt")
    with dspy.context(lm=FakeLM(uppercase_task, model="fake/task")):
        again = FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=4, epochs=1, num_threads=1,
                    merge_threshold=2, log_dir=str(log_dir)).compile(dspy.Predict("question -> answer"),
                                                                     trainset=word_examples(16))
    assert opt.calls == 0 and again.fgo_result.final_candidate == result.final_candidate


def test_a_changed_trainset_or_config_is_refused(tmp_path):
    with dspy.context(lm=FakeLM(uppercase_task)):
        make_optimizer(tmp_path).compile(dspy.Predict("question -> answer"), trainset=word_examples(8))
        with pytest.raises(ValueError, match="another trainset"):
            make_optimizer(tmp_path).compile(dspy.Predict("question -> answer"), trainset=word_examples(9))
        with pytest.raises(ValueError, match="another trainset"):
            make_optimizer(tmp_path, seed=5).compile(dspy.Predict("question -> answer"), trainset=word_examples(8))


def lowercase_task(request):
    """A task LM that ignores every instruction: no step ever scores better, every step proposes again."""
    return {"answer": request.fields.get("question", "").split(":")[-1].strip().lower()}


class InterruptedAt:
    """rule_optimizer that counts its rewrite calls and raises KeyboardInterrupt (Ctrl-C) at call ``at``."""

    def __init__(self, at=None):
        self.at, self.rewrites = at, 0

    def __call__(self, request):
        if "new_rules" in request.outputs:
            self.rewrites += 1
            if self.rewrites == self.at:
                raise KeyboardInterrupt
        return rule_optimizer(request)


def one_subset_run(log_dir, optimizer):
    with dspy.context(lm=FakeLM(lowercase_task, model="fake/task")):
        return FGO(metric=exact_metric, optimizer_lm=FakeLM(optimizer, model="fake/opt"), num_subsets=1, epochs=3,
                   num_threads=1, log_dir=str(log_dir)).compile(dspy.Predict("question -> answer"),
                                                                trainset=word_examples(4)).fgo_result


def test_an_interrupted_subset_resumes_at_its_next_step_with_its_history(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        one_subset_run(tmp_path / "run", InterruptedAt(at=2))  # during step 1: step 0 is checkpointed
    assert not list((tmp_path / "run" / "subsets").glob("subset_00000.json"))
    resumed_optimizer, fresh_optimizer = InterruptedAt(), InterruptedAt()
    resumed = one_subset_run(tmp_path / "run", resumed_optimizer)
    fresh = one_subset_run(tmp_path / "fresh", fresh_optimizer)
    assert resumed.resumed["steps"] == 1 and fresh.resumed["steps"] == 0
    assert (resumed_optimizer.rewrites, fresh_optimizer.rewrites) == (2, 3)  # steps 1-2 only, not step 0 again
    (subset,), (fresh_subset,) = resumed.subsets, fresh.subsets
    assert [s.to_dict() for s in subset.steps] == [s.to_dict() for s in fresh_subset.steps]
    assert RULE in subset.steps[0].proposed["self"] and subset.best_candidate == fresh_subset.best_candidate
    assert not list((tmp_path / "run" / "subsets").glob("*.progress.json"))  # a finished subset drops its progress
    # the budget goes on from what the finished step spent: the resume adds only the rerun of step 1's candidate
    assert resumed.accounting["metric_calls"] == fresh.accounting["metric_calls"] + 4
