"""Quickstart: optimize a real DSPy program with FGO on the embedded local LLM (no API key).

The program extracts the transport reference number (bill of lading, CMR, air waybill, container...)
from UBL invoices in four languages. FGO divides the trainset by where the reference sits, optimizes
the instruction on each part with critiques from the optimizer LM, and merges the results.

    pip install -e ".[local]" && python -m dspy_fgo.local setup   # once: builds the runtime, fetches weights
    python examples/quickstart.py                                 # see README for the measured time

With an API model instead: ``python examples/quickstart.py --task-lm openai/gpt-4o-mini --optimizer-lm openai/gpt-4o``.
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no price-list download
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the task generator lives in benchmarks/

import dspy  # noqa: E402

from benchmarks.tasks import invoices  # noqa: E402
from dspy_fgo import FGO  # noqa: E402
from dspy_fgo.local import local_lms  # noqa: E402


def score(program, examples, lm):
    with dspy.context(lm=lm):
        evaluate = dspy.Evaluate(devset=examples, metric=invoices.invoice_metric, num_threads=2,
                                 display_progress=True)
        return evaluate(program).score / 100


def main():
    parser = argparse.ArgumentParser(description="FGO quickstart on the local LLM")
    parser.add_argument("--train", type=int, default=10)
    parser.add_argument("--val", type=int, default=4)
    parser.add_argument("--test", type=int, default=12)
    parser.add_argument("--out", default="fgo_quickstart")
    parser.add_argument("--task-lm", default="local", help="a litellm model string, or 'local' (embedded model)")
    parser.add_argument("--optimizer-lm", default="local")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)

    learn = invoices.to_examples(invoices.load_invoices(args.train + args.val, seed=1))
    train, val = learn[:args.train], learn[args.train:]
    test = invoices.to_examples(invoices.load_invoices(args.test, seed=0))

    # Qwen2.5-Coder-1.5B in both roles: the 0.5B model cannot do this task with any instruction
    # (benchmarks/README.md: headroom), and one model keeps the run within 2 CPU cores' reach.
    server = None
    if args.task_lm == "local" or args.optimizer_lm == "local":
        task_lm, optimizer_lm, server = local_lms(task="qwen1.5b", optimizer="qwen1.5b",
                                                  optimizer_kwargs={"max_tokens": 1024})
    if args.task_lm != "local":
        task_lm = dspy.LM(args.task_lm, temperature=0.0)
    if args.optimizer_lm != "local":
        optimizer_lm = dspy.LM(args.optimizer_lm)
    try:
        dspy.configure(lm=task_lm)
        program = invoices.make_program("predict")

        started = time.perf_counter()
        optimizer = FGO(metric=invoices.invoice_metric_with_feedback, optimizer_lm=optimizer_lm,
                        partition="category", epochs=1, merge_threshold=3, num_threads=2, seed=0)
        optimized = optimizer.compile(program, trainset=train, valset=val)
        minutes = (time.perf_counter() - started) / 60

        seed_score, optimized_score = score(program, test, task_lm), score(optimized, test, task_lm)
        result = optimized.fgo_result
        side = result.accounting["optimizer_side"]
        out = Path(args.out)
        out.mkdir(exist_ok=True)
        optimized.save(str(out / "program.json"))
        result.final_candidate.to_json(out / "candidate.json")
        result.to_json(out / "fgo_result.json")

        print(f"\nseed program:      {seed_score:.0%} on {len(test)} held-out invoices")
        print(f"FGO-optimized:     {optimized_score:.0%}  ({result.final_choice}: {result.reason})")
        print(f"optimizer side:    {side['calls']} LM calls, {side['prompt_tokens']} prompt + "
              f"{side['completion_tokens']} completion tokens")
        print(f"optimization time: {minutes:.1f} min; saved to {out}/ (program.json, candidate.json, fgo_result.json)")
        print(f"\nOptimized instruction:\n{result.final_candidate[next(iter(result.final_candidate))]}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
