"""Quickstart: optimize a real DSPy program with FGO on the embedded local LLMs (no API key, 2 CPU cores).

The program is a ``dspy.Predict`` that picks the booking reference out of a short airline confirmation
e-mail among look-alike codes (the agency's order code, the e-ticket and flight numbers, a voucher or fare
basis in the airline's own format); each airline labels the reference its own way ("Record locator",
"Reservation code", "PNR", ...). FGO divides the trainset by airline (``partition="category"``), lets
Qwen2.5-Coder-1.5B read the runs on each part and add itemized rules to the instruction, merges the parts'
rules, and returns the best program it found on the valset. Qwen2.5-Coder-0.5B runs the program. The
metric's feedback on a wrong answer names the airline's convention (``--plain-feedback``: only expected
against got). ``--task tracking`` runs the same on shipping notifications (the quickstart until 2026-12-04).

    pip install -e ".[local]" && python -m dspy_fgo.local setup   # once: the runtime wheel + the weights
    python examples/quickstart.py                                 # README gives the measured time

With API models: ``python examples/quickstart.py --task-lm openai/gpt-4o-mini --optimizer-lm openai/gpt-4o``.
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no price-list download
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the task generators live in benchmarks/

import dspy  # noqa: E402

from benchmarks.tasks.registry import load_task  # noqa: E402
from dspy_fgo import FGO  # noqa: E402


def score(program, examples, metric, lm, threads):
    with dspy.context(lm=lm):
        return dspy.Evaluate(devset=examples, metric=metric, num_threads=threads, display_progress=True)(program).score / 100


# FGO's defaults (itemized rules, ties kept, the raw runs with where the values sit, the grounding check)
# without rule pruning, which would double the run's time, and with the valset check on the merge tree's root
# only (FGO's default also scores three more nodes there: 30 more runs, about 70 s on 2 cores; README).
QUICKSTART_OPTIONS = "prune_rules=false,valset_candidates=1"


def fgo_options(text):
    """'a=1,b=true,c=rules' -> {"a": 1, "b": True, "c": "rules"}."""
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        lowered = value.lower()
        options[key] = {"true": True, "false": False}.get(lowered, int(value) if value.isdigit() else value)
    return options


def make_lms(task_name, optimizer_name):
    """(task LM at temperature 0, optimizer LM, local server or None)."""
    server = None
    if "local" in (task_name, optimizer_name):
        from dspy_fgo.local import local_lms

        task_lm, optimizer_lm, server = local_lms(task="qwen0.5b", optimizer="qwen1.5b",
                                                  task_kwargs={"max_tokens": 64}, optimizer_kwargs={"max_tokens": 1024})
    if task_name != "local":
        task_lm = dspy.LM(task_name, temperature=0.0)
    if optimizer_name != "local":
        optimizer_lm = dspy.LM(optimizer_name)
    return task_lm, optimizer_lm, server


def main():
    parser = argparse.ArgumentParser(description="FGO quickstart on the local LLMs")
    parser.add_argument("--task", default="bookings",
                        help="a short task of benchmarks/tasks: bookings, tracking, appointments, tickets, prices")
    # 12 / 10 / 30 since 2026-12-07 (was 15 / 15 / 30): 10 min 55 s in a fresh clone, about as long as before
    parser.add_argument("--train", type=int, default=12)
    parser.add_argument("--val", type=int, default=10)
    parser.add_argument("--test", type=int, default=30)
    parser.add_argument("--hand-written", action="store_true",
                        help="also score the task's hand-written instruction on the test set (a reference; slower)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--num-threads", type=int, default=4, help="at least the local server's slots (4)")
    parser.add_argument("--out", default="fgo_quickstart")
    parser.add_argument("--fgo", default=QUICKSTART_OPTIONS,
                        help="FGO options as key=value pairs (default: %(default)s; '' for FGO's own defaults)")
    parser.add_argument("--plain-feedback", action="store_true",
                        help="the metric's feedback says only expected against got (default: it also names the rule)")
    parser.add_argument("--task-lm", default="local", help="a litellm model string, or 'local' (embedded qwen0.5b)")
    parser.add_argument("--optimizer-lm", default="local", help="a litellm model string, or 'local' (qwen1.5b)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "LiteLLM", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    task = load_task(args.task, args.train, args.val, args.test, seed=0)
    task_lm, optimizer_lm, server = make_lms(args.task_lm, args.optimizer_lm)
    try:
        dspy.configure(lm=task_lm)
        program = task.program_factory()
        started = time.perf_counter()
        metric = task.plain_feedback_metric if args.plain_feedback else task.feedback_metric
        optimizer = FGO(metric=metric, optimizer_lm=optimizer_lm, partition="category", epochs=args.epochs,
                        merge_threshold=3, num_threads=args.num_threads, seed=0, **fgo_options(args.fgo))
        optimized = optimizer.compile(program, trainset=task.train, valset=task.val)
        minutes = (time.perf_counter() - started) / 60

        scores = {"seed": score(program, task.test, task.metric, task_lm, args.num_threads)}
        kept_seed = optimized.fgo_result.final_choice == "seed"  # the same program: no second scoring
        scores["FGO"] = scores["seed"] if kept_seed else score(optimized, task.test, task.metric, task_lm,
                                                               args.num_threads)
        if args.hand_written:
            scores["hand-written"] = score(task.hand_written_program(), task.test, task.metric, task_lm,
                                           args.num_threads)
        result = optimized.fgo_result
        side = result.accounting["optimizer_side"]
        out = Path(args.out)
        out.mkdir(exist_ok=True)
        optimized.save(str(out / "program.json"))
        result.to_json(out / "fgo_result.json")
        (out / "report.txt").write_text(result.report() + "\n")

        n = len(task.test)
        print(f"\nseed program:        {scores['seed']:.0%} on {n} held-out examples")
        print(f"FGO-optimized:       {scores['FGO']:.0%}  ({result.final_choice}: {result.reason})")
        if "hand-written" in scores:
            print(f"hand-written rules:  {scores['hand-written']:.0%}  (a reference: what a careful human writes)")
        print(f"optimizer side:      {side['calls']} LM calls, {side['prompt_tokens']} prompt + "
              f"{side['completion_tokens']} completion tokens")
        print(f"optimization time:   {minutes:.1f} min; saved to {out}/ (program.json, fgo_result.json, "
              f"report.txt: the diagnosis view, also python -m dspy_fgo.report {out}/fgo_result.json)")
        print(f"\nOptimized instruction:\n{result.final_candidate[next(iter(result.final_candidate))]}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
