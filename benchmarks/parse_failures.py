"""How often the seed program's JSON answer cannot be parsed, with and without schema-constrained decoding.

    python -m benchmarks.parse_failures --task invoices --program predict-json --test 20

``free``: the request carries no ``response_format`` (DSPy's native OpenAI route, what the project's
LMs sent before the xllamacpp runtime); ``schema``: litellm's route, where JSONAdapter sends the output
fields as a JSON schema and llama.cpp constrains decoding to it. Same server, model, prompts and
temperature 0. Writes ``benchmarks/results/parse-failures-<task>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dspy

from benchmarks.tasks.registry import load_task
from dspy_fgo.local import LocalServer


def run_mode(program: dspy.Module, lm: dspy.LM, examples: list, metric, threads: int) -> dict:
    def one(example):
        try:
            with dspy.context(lm=lm):
                prediction = program(**example.inputs())
            return {"parsed": True, "score": float(metric(example, prediction))}
        except dspy.utils.exceptions.AdapterParseError as e:
            return {"parsed": False, "score": 0.0, "error": str(e)[:300]}

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as ex:
        rows = list(ex.map(one, examples))
    return {"parse_failures": sum(not r["parsed"] for r in rows), "n": len(rows),
            "score": sum(r["score"] for r in rows) / max(1, len(rows)), "seconds": round(time.monotonic() - t0, 1),
            "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="invoices")
    p.add_argument("--program", default="predict-json")
    p.add_argument("--model", default="qwen1.5b")
    p.add_argument("--test", type=int, default=20)
    p.add_argument("--num-threads", type=int, default=4)
    args = p.parse_args(argv)
    task = load_task(args.task, 0, 0, args.test, seed=0, program=args.program)
    out = Path(__file__).parent / "results" / f"parse-failures-{args.task}"
    out.mkdir(parents=True, exist_ok=True)
    results = {"command": "python -m benchmarks.parse_failures " + " ".join(argv or sys.argv[1:]), "modes": {}}
    with LocalServer(models=args.model) as server:
        for mode, engine in (("free", "auto"), ("schema", "litellm")):
            lm = server.lm(args.model, cache=False, engine=engine)
            results["modes"][mode] = run_mode(task.program_factory(), lm, task.test, task.metric, args.num_threads)
            summary = {k: v for k, v in results["modes"][mode].items() if k != "rows"}
            print(mode, summary, flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
