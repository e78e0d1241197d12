"""Issue 13: one policy for errors, budgets, windows, selection, resume, interrupts and secrets."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dspy
import pytest
from fakes import RULE, FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples

from dspy_fgo import FGO, PAPER_SETTINGS, LMFailedError, save_program
from dspy_fgo.budget import Budget, BudgetExhausted, count_tokens
from dspy_fgo.candidate import Candidate
from dspy_fgo.compat import valset_reservation
from dspy_fgo.merge import MergeNode
from dspy_fgo.select import valset_nodes


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    monkeypatch.setattr("dspy_fgo.context._sleep", lambda seconds: None)


def predict():
    return dspy.Predict("question -> answer")


def val(n=3):
    return [dspy.Example(question=f"word: val{i}", answer=f"VAL{i}").with_inputs("question") for i in range(n)]


class Recording(FakeLM):
    """A FakeLM that keeps each call's tokens, to bound overshoot per call."""

    def forward(self, prompt=None, messages=None, **kwargs):
        out = super().forward(prompt=prompt, messages=messages, **kwargs)
        with self._lock:
            self.per_call = [*getattr(self, "per_call", []), out.usage["total_tokens"]]
        return out


# ----- oversized and unusable replies ----------------------------------------------------------------


def huge_rewrite(request):
    """A rewrite, or with update="rules" a reply of new rules, far over max_component_tokens."""
    out = rule_optimizer(request)
    key = next((k for k in ("new_text", "new_rules") if k in out), None)
    return {key: out[key] + " " + "Be careful. " * 17000} if key else out


def test_an_oversized_rewrite_is_recorded_and_skipped_and_a_resume_goes_through(tmp_path):
    opt = FakeLM(huge_rewrite, model="fake/opt", window=8192)
    with dspy.context(lm=FakeLM(uppercase_task)):
        runs = [FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=2, epochs=2, num_threads=1,
                    log_dir=str(tmp_path)).compile(predict(), trainset=word_examples(6)).fgo_result
                for _ in range(2)]  # the second run resumes from log_dir
    first, resumed = runs
    assert first.final_choice == "seed" and first.error_counts.get("optimizer")
    assert any("max_component_tokens=1000" in e["message"] for e in first.errors)
    assert resumed.resumed["subsets"] == 2 and resumed.final_choice == "seed"
    assert opt.overflows == 0


@pytest.mark.parametrize("settings, grows", [({}, True), (PAPER_SETTINGS, False)], ids=["rules", "paper"])
def test_long_components_never_overflow_the_critique_or_propose_prompts(settings, grows):
    def long_rewrites(request):
        if "critique" in request.outputs:
            return {"critique": "wrong"}
        if "new_text" in request.outputs:
            return {"new_text": "Think step by step. " * 150}  # within the cap, long for the window
        if "new_rules" in request.outputs:  # 50 distinct rules a step: the component grows to the cap
            n = len(request.fields.get("current_text", ""))
            return {"new_rules": "\n".join(f'- Check the "part {n}-{i}" line step by step.' for i in range(50))}
        return rule_optimizer(request)

    opt = FakeLM(long_rewrites, model="fake/opt", window=3000)
    with dspy.context(lm=FakeLM(uppercase_task)):
        result = FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=1, epochs=3, num_threads=1,
                     context_window=3000, max_retries=0, **settings).compile(
            dspy.Predict("question -> answer"), trainset=word_examples(3)).fgo_result
    assert opt.overflows == 0 and opt.calls > 0
    # ties keep the rules, up to the cap; strict acceptance keeps no rewrite that does not improve
    assert (count_tokens(result.subsets[0].best_candidate["self"]) > 500) is grows


# ----- task-LM errors ------------------------------------------------------------------------------


def test_a_task_lm_that_always_fails_stops_the_run_with_a_clear_error():
    def broken(request):
        raise ConnectionError("401 invalid api key")

    opt = FakeLM(rule_optimizer, model="fake/opt")
    with dspy.context(lm=FakeLM(broken, model="fake/task")):
        with pytest.raises(LMFailedError, match="task LM.*failed.*401 invalid api key"):
            FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=2, epochs=1, num_threads=1).compile(
                predict(), trainset=word_examples(6), valset=val())
    assert opt.calls == 0  # the critic was not paid to critique connection errors


@pytest.mark.parametrize("seed", range(4))
def test_transient_task_failures_are_retried_recorded_and_never_make_the_result_worse(seed):
    import random

    rng, lock = random.Random(seed), threading.Lock()

    def flaky(request):
        with lock:
            fail = rng.random() < 0.4
        if fail:
            raise TimeoutError("timed out")
        return uppercase_task(request)

    task = FakeLM(flaky, model="fake/task")
    with dspy.context(lm=task):
        optimized = FGO(metric=exact_metric, optimizer_lm=FakeLM(rule_optimizer), num_subsets=2, epochs=1,
                        num_threads=1, seed=seed, max_retries=3).compile(predict(), trainset=word_examples(8),
                                                                          valset=val(4))
    result = optimized.fgo_result
    with dspy.context(lm=FakeLM(uppercase_task)):
        final = sum(exact_metric(ex, optimized(**ex.inputs())) for ex in val(4))
        seed_score = sum(exact_metric(ex, predict()(**ex.inputs())) for ex in val(4))
    assert final >= seed_score
    if result.val_scores:
        assert result.final_choice == "seed" or result.val_scores["optimized"] > result.val_scores["seed"]


def test_ties_on_the_valset_go_to_the_seed():
    def task(request):  # validation questions are answered right by any program: a tie
        out = uppercase_task(request)
        return {"answer": out["answer"].upper()} if "val" in request.fields["question"] else out

    with dspy.context(lm=FakeLM(task)):
        result = FGO(metric=exact_metric, optimizer_lm=FakeLM(rule_optimizer), num_subsets=2, epochs=1).compile(
            predict(), trainset=word_examples(6), valset=val()).fgo_result
    assert result.val_scores == {"seed": 1.0, "optimized": 1.0}
    assert result.final_choice == "seed" and "ties go to the seed" in result.reason


def test_nan_and_inf_scores_stop_the_run_with_an_error_naming_the_metric(tmp_path):
    # issue 14: a NaN or infinite score is a broken metric, not a failed run (it used to be recorded and scored 0)
    from dspy_fgo.rollout import MetricContractError

    def odd(example, prediction, trace=None):
        return math.nan if example.question.endswith("1") else (math.inf if example.question.endswith("2")
                                                                   else exact_metric(example, prediction))

    with dspy.context(lm=FakeLM(uppercase_task)), pytest.raises(MetricContractError, match=r"metric .*odd.* returned (nan|inf)"):
        FGO(metric=odd, optimizer_lm=FakeLM(rule_optimizer), num_subsets=2, epochs=1,
            log_dir=str(tmp_path / "log")).compile(predict(), trainset=word_examples(6))
    for path in (tmp_path / "log").rglob("*.json"):
        json.loads(path.read_text())


# ----- budgets ---------------------------------------------------------------------------------------


def budget_run(threads, valset=None, **limits):
    task, opt = Recording(uppercase_task, model="fake/task"), Recording(rule_optimizer, model="fake/opt")
    with dspy.context(lm=task):
        result = FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=4, epochs=3, num_threads=threads,
                     merge_threshold=2, **limits).compile(predict(), trainset=word_examples(16),
                                                          valset=valset).fgo_result
    return result, task, opt


@pytest.mark.parametrize("threads", [1, 8])
@pytest.mark.parametrize("calls", [1, 30])
def test_max_lm_calls_is_never_exceeded(threads, calls):
    result, task, opt = budget_run(threads, max_lm_calls=calls)
    assert task.calls + opt.calls <= calls and result.stopped and f"max_lm_calls={calls}" in result.stopped


@pytest.mark.parametrize("threads", [1, 8])
def test_max_tokens_overshoots_by_at_most_the_calls_in_flight(threads):
    result, task, opt = budget_run(threads, max_tokens=3000)
    per_call = task.per_call + opt.per_call
    spent = sum(per_call)
    assert result.stopped and "max_tokens=3000" in result.stopped
    assert spent <= 3000 + threads * max(per_call)


@pytest.mark.parametrize("threads", [1, 8])
def test_max_metric_calls_overshoots_by_at_most_the_calls_in_flight(threads):
    result, _, _ = budget_run(threads, max_metric_calls=20)
    assert result.accounting["metric_calls"] <= 20 + threads and "max_metric_calls=20" in result.stopped


def test_the_valset_check_is_inside_the_budget():
    result, task, opt = budget_run(1, valset=val(6), max_lm_calls=40)
    assert task.calls + opt.calls <= 40
    assert result.val_scores or "budget" in result.reason


def test_a_budget_that_cannot_cover_the_valset_check_is_refused_up_front():
    with dspy.context(lm=FakeLM(uppercase_task)):
        with pytest.raises(ValueError, match="max_lm_calls=10 does not cover the final valset check"):
            FGO(metric=exact_metric, optimizer_lm=FakeLM(rule_optimizer), max_lm_calls=10).compile(
                predict(), trainset=word_examples(4), valset=val(6))


def test_max_cost_without_prices_is_an_error_that_says_so():
    with dspy.context(lm=FakeLM(uppercase_task, model="fake/task")):
        with pytest.raises(ValueError, match="max_cost.*no price for.*fake/"):
            FGO(metric=exact_metric, optimizer_lm=FakeLM(rule_optimizer, model="fake/opt"), max_cost=1e-9).compile(
                predict(), trainset=word_examples(4))


def test_a_budget_hit_during_merges_sets_stopped():
    full, _, _ = budget_run(1, valset=None)
    subset_stage = sum(s["calls"] for r, s in full.accounting["roles"].items()) - 10
    result, _, _ = budget_run(1, max_lm_calls=subset_stage)
    assert result.stopped and "max_lm_calls" in result.stopped


def test_resume_continues_the_spent_budget(tmp_path):
    task, opt = FakeLM(uppercase_task), FakeLM(rule_optimizer)
    with dspy.context(lm=task):
        first = FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=2, epochs=1, num_threads=1,
                    log_dir=str(tmp_path)).compile(predict(), trainset=word_examples(6)).fgo_result
        spent = first.accounting["total"]["calls"]
        again = FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=2, epochs=1, num_threads=1,
                    log_dir=str(tmp_path), max_lm_calls=spent + 1000).compile(predict(),
                                                                              trainset=word_examples(6)).fgo_result
    assert again.accounting["total"]["calls"] >= spent and again.resumed["subsets"] == 2


# ----- resume ---------------------------------------------------------------------------------------


def resume_run(log_dir, metric=exact_metric, task_model="fake/task", partition="random"):
    with dspy.context(lm=FakeLM(uppercase_task, model=task_model)):
        return FGO(metric=metric, optimizer_lm=FakeLM(rule_optimizer, model="fake/opt"), num_subsets=2, epochs=1,
                   num_threads=1, log_dir=str(log_dir), partition=partition).compile(
            predict(), trainset=word_examples(6)).fgo_result


def test_resume_refuses_a_changed_metric_or_task_lm(tmp_path):
    resume_run(tmp_path)
    with pytest.raises(ValueError, match="another trainset, program, metric, task LM"):
        resume_run(tmp_path, metric=lambda e, p, t=None: 0.0)
    with pytest.raises(ValueError, match="another trainset, program, metric, task LM"):
        resume_run(tmp_path, task_model="openai/gpt-4o")


def halves(examples):
    return [list(range(0, len(examples), 2)), list(range(1, len(examples), 2))]


def test_a_callable_partition_can_resume(tmp_path):
    resume_run(tmp_path, partition=halves)
    assert resume_run(tmp_path, partition=halves).resumed["subsets"] == 2


def test_a_damaged_checkpoint_is_named_in_the_error(tmp_path):
    resume_run(tmp_path)
    damaged = sorted((tmp_path / "subsets").glob("*.json"))[0]
    damaged.write_text(damaged.read_text()[:50])
    with pytest.raises(ValueError, match=f"{damaged.name} is damaged.*Delete that file"):
        resume_run(tmp_path)
    damaged.unlink()  # the option the message gives: discard it and redo just that subset
    assert resume_run(tmp_path).resumed["subsets"] == 1


def test_the_valset_check_is_checkpointed(tmp_path):
    def go():
        with dspy.context(lm=FakeLM(uppercase_task)):
            return FGO(metric=exact_metric, optimizer_lm=FakeLM(rule_optimizer), num_subsets=2, epochs=1,
                       log_dir=str(tmp_path)).compile(predict(), trainset=word_examples(6), valset=val()).fgo_result

    first, again = go(), go()
    assert again.resumed["valset"] == 2 and again.val_scores == first.val_scores


# ----- token budgets -------------------------------------------------------------------------------


def test_token_counts_never_undercount_cjk_or_emoji():
    for text in ("規則漢字試験" * 50, "😀🎉🚀" * 50):
        assert count_tokens(text) >= len(text)


@pytest.mark.parametrize("filler", ["規則漢字試験", "😀🎉🚀"])
def test_merge_prompts_fit_the_window_with_cjk_and_emoji_components(filler):
    """LM merges (update="rewrite"; a rules merge is a union, without an LM call unless over the cap)."""
    def optimizer(request):
        out = rule_optimizer(request)
        if "new_text" in out and "UPPERCASE" in out["new_text"]:
            example = request.fields["feedback"].split("question: word: ")[1].split()[0]
            out = {"new_text": f"{out['new_text']} Noted {example}. " + filler * 60}
        return out

    opt = FakeLM(optimizer, model="fake/opt", window=4000)
    with dspy.context(lm=FakeLM(uppercase_task)):
        result = FGO(metric=exact_metric, optimizer_lm=opt, num_subsets=4, epochs=1, num_threads=1, update="rewrite",
                     merge_threshold=2, context_window=4000).compile(predict(), trainset=word_examples(12)).fgo_result
    assert opt.overflows == 0
    assert any(n["children"] for n in result.merge_tree)


# ----- selection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("with_valset", [True, False])
def test_a_bad_merge_is_not_returned_when_its_members_are_better(with_valset):
    """An LM merge (update="rewrite"; a rules merge is a union, without an LM call) that breaks the rule."""
    def opt_handler(request):
        if "merged_text" in request.outputs:
            return {"merged_text": "Answer in lowercase."}
        out = rule_optimizer(request)
        if "new_text" in out and RULE in out["new_text"]:
            out["new_text"] += " (subset " + request.fields["feedback"][:20] + ")"
        return out

    with dspy.context(lm=FakeLM(uppercase_task)):
        optimized = FGO(metric=exact_metric, optimizer_lm=FakeLM(opt_handler), num_subsets=2, epochs=1,
                        num_threads=1, update="rewrite").compile(predict(), trainset=word_examples(12),
                                               valset=val() if with_valset else None)
    result = optimized.fgo_result
    assert "lowercase" not in result.final_candidate["self"] and RULE in result.final_candidate["self"]
    assert result.merge_root.score == 1.0 and "kept the member" in result.merge_root.note
    assert result.final_choice == "optimized" and result.selected == result.merge_root.node_id


def _poisoned_merge_run(valset_candidates, max_metric_calls=None, reserve_candidates=False):
    """Two subsets find the rule; the merge adds a phrase that breaks the valset only: the root is the merge
    (an LM merge: update="rewrite"; a rules merge is a union of the subsets' rules, without an LM call)."""
    def task(request):
        out = uppercase_task(request)
        if "POISON" in request.system and "val" in request.fields.get("question", ""):
            out["answer"] = out["answer"].lower()
        return out

    def opt_handler(request):
        out = rule_optimizer(request)
        if "merged_text" in request.outputs:
            out["merged_text"] += " POISON."
        elif "new_text" in out and RULE in out["new_text"]:  # the subsets' texts differ, so the merge LM runs
            out["new_text"] += f" (version {len(request.fields['feedback']) % 97})"
        return out

    with dspy.context(lm=FakeLM(task)):
        return FGO(metric=exact_metric, optimizer_lm=FakeLM(opt_handler), num_subsets=2, epochs=1, num_threads=1,
                   update="rewrite", valset_candidates=valset_candidates, max_metric_calls=max_metric_calls,
                   reserve_candidates=reserve_candidates).compile(
            predict(), trainset=word_examples(12), valset=val()).fgo_result


def test_valset_candidates_lets_a_subset_result_win_when_the_root_fails_the_valset():
    only_root = _poisoned_merge_run(1)
    assert "POISON" in only_root.merge_root.candidate["self"]
    assert only_root.final_choice == "seed" and set(only_root.val_scores) == {"seed", "optimized"}
    three = _poisoned_merge_run(3)
    assert three.final_choice == "optimized" and three.selected != three.merge_root.node_id
    assert RULE in three.final_candidate["self"] and "POISON" not in three.final_candidate["self"]
    assert three.val_scores["optimized"] == 0.0 and max(three.val_scores.values()) == 1.0
    assert "not the root" in three.reason


def test_extra_valset_candidates_use_only_what_the_budget_left():
    tight = _poisoned_merge_run(3, max_metric_calls=50)  # 48 spent with the reserved check: 2 left, 3 needed
    assert tight.accounting["metric_calls"] <= 50 and tight.stopped is None
    assert not any(k.startswith("node") for k in tight.val_scores) and tight.final_choice == "seed"
    roomy = _poisoned_merge_run(3, max_metric_calls=60)
    assert roomy.accounting["metric_calls"] <= 60 and roomy.final_choice == "optimized"


def test_reserve_candidates_keeps_their_valset_runs_only_beyond_one_step_per_subset():
    # bookings at 30 train / 20 val, two merge levels, pruning: one step per subset plans 220 + 60 metric calls
    assert valset_reservation(250, 30, 20, 2, candidates=4, prune=True) == 40  # no room: the seed and the root
    assert valset_reservation(300, 30, 20, 2, candidates=4, prune=True) == 60  # room for one more candidate
    assert valset_reservation(750, 30, 20, 2, candidates=4, prune=True) == 100  # for all four
    assert valset_reservation(750, 30, 20, 2, candidates=1) == 40 and valset_reservation(750, 30, 0, 2, 4) == 0
    # the run keeps them: 12 training / 3 validation, one level: one step per subset plans 54 metric calls
    assert _poisoned_merge_run(3, 60).accounting["valset_reserved"] == 6
    roomy = _poisoned_merge_run(3, 60, reserve_candidates=True)
    assert roomy.accounting["valset_reserved"] == 12 and roomy.final_choice == "optimized"
    assert roomy.accounting["metric_calls"] <= 60


def test_reserved_runs_are_out_of_reach_until_asked_for_as_reserved():
    budget = Budget(max_metric_calls=100)
    budget.reserve(60)
    assert budget.fits(40) and not budget.fits(41) and budget.fits(41, reserved=True)
    with pytest.raises(BudgetExhausted, match="60 valset runs reserved"):
        with budget.acquire("task", examples=41):
            pass


def test_valset_nodes_skip_the_seed_and_duplicates_and_rank_by_score():
    seed, a, b = Candidate({"self": "s"}), Candidate({"self": "a"}), Candidate({"self": "b"})
    leaves = [MergeNode(0, a, [0, 1], 0.5), MergeNode(1, seed, [2, 3], 1.0), MergeNode(2, b, [4], 0.75),
              MergeNode(3, a, [5, 6, 7], 0.9)]
    root = MergeNode(4, b, list(range(8)), 0.6, leaves)
    assert [n.node_id for n in valset_nodes(root, seed, 3)] == [4, 3]  # b is the root's; seed skipped
    assert [n.node_id for n in valset_nodes(root, seed, 1)] == [4]


# ----- timeouts and interrupts ---------------------------------------------------------------------


def test_a_hung_lm_call_times_out_and_is_recorded():
    def hangs_once(request):
        if request.fields.get("question", "").endswith("apple0"):
            time.sleep(30)
        return uppercase_task(request)

    start = time.time()
    with dspy.context(lm=FakeLM(hangs_once)):
        result = FGO(metric=exact_metric, optimizer_lm=FakeLM(rule_optimizer), num_subsets=2, epochs=1,
                     num_threads=2, timeout=0.5, max_retries=0).compile(predict(), trainset=word_examples(6)).fgo_result
    assert time.time() - start < 20
    assert any("TimeoutError" in e["message"] for e in result.errors)


CTRL_C_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    import dspy
    from fakes import FakeLM, exact_metric, rule_optimizer, uppercase_task, word_examples
    from dspy_fgo import FGO

    def slow(request):  # the pilot alone (12 runs on 4 threads) outlasts the signal: it lands mid-run
        time.sleep(0.5)
        return uppercase_task(request)

    print("started", flush=True)
    try:
        with dspy.context(lm=FakeLM(slow)):
            FGO(metric=exact_metric, optimizer_lm=FakeLM(rule_optimizer), num_subsets=4, epochs=3,
                num_threads=4).compile(dspy.Predict("question -> answer"), trainset=word_examples(40))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    print("finished", flush=True)
""")


def test_ctrl_c_stops_compile_within_seconds(tmp_path):
    # A real SIGINT to a child process, as a terminal's Ctrl-C sends: in-process, _thread.interrupt_main did
    # not raise in two fresh CI runs of the whole suite (it did when the file ran alone; cause not found).
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
    # a shell's background job (nohup ... &) starts with SIGINT ignored, and the child would inherit that
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "started"
    time.sleep(2.0)  # imports are done; the run is in its pilot or first steps (an uninterrupted run takes ~15 s)
    start = time.time()
    proc.send_signal(signal.SIGINT)
    try:
        line = proc.stdout.readline().strip()  # compile() has returned: the run stopped
        stopped = time.time() - start
        proc.communicate(timeout=30)  # then the interpreter's own teardown (about 2 s of garbage collection)
    finally:
        proc.kill()
    assert line == "interrupted" and stopped < 5 and proc.returncode == 130


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupt
def test_a_ctrl_c_that_lands_in_a_finalizer_still_stops_the_run():
    from dspy_fgo.executor import _STOP, ctrl_c_stops_the_run, reset_interrupt

    class Finalized:
        def __del__(self):  # the handler runs here, and Python drops the KeyboardInterrupt it raises
            signal.raise_signal(signal.SIGINT)

    reset_interrupt()
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (not a background job)
    try:
        with ctrl_c_stops_the_run():
            obj = Finalized()
            del obj
            assert _STOP.is_set()  # every unit of LM work now raises Interrupted
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)
        reset_interrupt()


# ----- secrets -------------------------------------------------------------------------------------

SENTINEL = "sk-SENTINEL0123456789abcdef"


def test_no_api_key_or_auth_header_is_written_anywhere(tmp_path):
    def leaky(request):  # an error message that quotes the key, as some providers' do
        if request.fields.get("question", "").endswith("1"):
            raise RuntimeError(f"Incorrect API key provided: {SENTINEL}")
        return uppercase_task(request)

    task = FakeLM(leaky, model="fake/task")
    task.kwargs.update(api_key=SENTINEL, extra_headers={"Authorization": f"Bearer {SENTINEL}"})
    with dspy.context(lm=task):
        optimized = FGO(metric=exact_metric, optimizer_lm=FakeLM(rule_optimizer), num_subsets=2, epochs=1,
                        task_lm=task, log_dir=str(tmp_path / "log"), max_retries=0).compile(
            predict(), trainset=word_examples(6))
    program = optimized.deepcopy()
    for p in program.predictors():
        p.lm = task
    save_program(program, tmp_path / "program.json")
    optimized.fgo_result.to_json(tmp_path / "run.json")
    texts = [p.read_text() for p in tmp_path.rglob("*.json")]
    assert len(texts) > 3 and not [t for t in texts if "SENTINEL" in t]
    assert optimized.fgo_result.error_counts.get("task")
