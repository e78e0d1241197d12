"""Headroom of a task: the seed program against the hand-written one on N test examples, one task LM.

    python -m benchmarks.headroom --task tickets --test 200              # qwen0.5b on the local runtime
    python -m benchmarks.headroom --task stock --test 100 --task-lm local:qwen1.5b --num-threads 2

Both programs are scored chunk by chunk (``--chunk`` examples each, alternating between them) with
``dspy.Evaluate`` on ``--num-threads`` threads; after every chunk ``<out>/results.json`` holds the
per-example scores, predictions and categories, the command, versions and LM, so an interrupted run
resumes where it stopped (and a partial file already compares the examples both have done). At the
end: a table of both programs (mean, bootstrap 95% interval, per category) and their paired difference
(``benchmarks.stats.paired_difference``). The task LM runs at temperature 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import dspy
import pandas as pd

from benchmarks.run import _write_atomic, versions
from benchmarks.scoring import score_program
from benchmarks.stats import bootstrap_mean_ci, paired_difference
from benchmarks.tasks.registry import load_task

PROGRAMS = ("seed", "hand-written")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="a task of benchmarks/tasks/registry.py, e.g. tickets")
    p.add_argument("--test", type=int, default=100, help="number of test examples")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--task-lm", default="local:qwen0.5b", help="local:<alias> or a litellm model string")
    p.add_argument("--program", default="predict", help="predict or predict-json (invoices: also cot...)")
    p.add_argument("--num-threads", type=int, default=4)
    p.add_argument("--chunk", type=int, default=20, help="examples scored per program between two saves")
    p.add_argument("--max-tokens", type=int, default=512, help="task LM completion tokens")
    p.add_argument("--out", default=None, help="folder (default benchmarks/results/headroom-<task>)")
    return p.parse_args(argv)


def make_task_lm(name: str, max_tokens: int):
    """(task LM at temperature 0, local server to stop or None)."""
    if name.startswith("local:"):
        from dspy_fgo.local import local_lms

        alias = name.split(":", 1)[1]
        lm, _, server = local_lms(task=alias, optimizer=alias, task_kwargs={"temperature": 0.0, "max_tokens": max_tokens})
        return lm, server
    return dspy.LM(name, temperature=0.0, max_tokens=max_tokens), None


def setting(args: argparse.Namespace, programs: dict[str, dspy.Module]) -> dict[str, Any]:
    """What a results file must match to be resumed."""
    return {"task": args.task, "test": args.test, "data_seed": args.data_seed, "task_lm": args.task_lm,
            "program": args.program, "max_tokens": args.max_tokens,
            "instructions": {name: {path: p.signature.instructions for path, p in program.named_predictors()}
                             for name, program in programs.items()}}


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Means, intervals and per-category scores of both programs, and hand-written minus seed on the
    examples both have been scored on."""
    scores = results["scores"]
    out: dict[str, Any] = {}
    for name in PROGRAMS:
        done = scores[name].values()
        values = [r["score"] for r in done]
        by_category = pd.DataFrame(list(done)).groupby("category")["score"].mean().to_dict() if values else {}
        out[name] = {"n": len(values), "score": sum(values) / len(values) if values else 0.0,
                     "ci95": list(bootstrap_mean_ci(values)), "per_category": by_category}
    both = sorted(set(scores["seed"]) & set(scores["hand-written"]), key=int)
    if both:
        out["hand-written minus seed"] = paired_difference([scores["hand-written"][i]["score"] for i in both],
                                                           [scores["seed"][i]["score"] for i in both])
    return out


def format_summary(summary: dict[str, Any]) -> str:
    rows = {name: {"n": s["n"], "score": s["score"], "ci_low": s["ci95"][0], "ci_high": s["ci95"][1], **s["per_category"]}
            for name, s in summary.items() if name in PROGRAMS}
    text = pd.DataFrame.from_dict(rows, orient="index").to_string(float_format=lambda x: f"{x:.3f}")
    d = summary.get("hand-written minus seed")
    if d:
        text += (f"\n\nhand-written minus seed: {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
                 f" (paired bootstrap 95% CI), sign-flip p = {d['p_value']:.4f}, n = {d['n_examples']}")
    return text


def main(argv=None, lm: dspy.LM | None = None) -> dict[str, Any]:
    """Run (or resume) the headroom measurement; ``lm`` replaces ``--task-lm`` (tests pass a fake)."""
    args = parse_args(argv)
    spec = load_task(args.task, train=0, val=0, test=args.test, seed=args.data_seed, program=args.program)
    programs = {"seed": spec.program_factory(), "hand-written": spec.hand_written_program()}
    out_dir = Path(args.out or Path("benchmarks/results") / f"headroom-{args.task}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    wanted = setting(args, programs)
    results = json.loads(path.read_text()) if path.exists() else {"setting": wanted, "scores": {n: {} for n in PROGRAMS}}
    if results["setting"] != wanted:
        sys.exit(f"{path} holds another setting ({results['setting']['task_lm']}, test {results['setting']['test']}, "
                 f"program {results['setting']['program']}...); pass another --out or remove the file")
    results.update(command="python -m benchmarks.headroom " + " ".join(argv if argv is not None else sys.argv[1:]),
                   versions=versions())
    server = None
    if lm is None:
        lm, server = make_task_lm(args.task_lm, args.max_tokens)
    results["lm"] = {"model": lm.model, **{k: v for k, v in lm.kwargs.items() if isinstance(v, int | float | str)}}
    try:
        for start in range(0, len(spec.test), args.chunk):
            for name, program in programs.items():
                todo = [i for i in range(start, min(start + args.chunk, len(spec.test))) if str(i) not in results["scores"][name]]
                if not todo:
                    continue
                scores, predictions = score_program(program, [spec.test[i] for i in todo], spec.metric, lm,
                                                    num_threads=args.num_threads)
                for i, score, prediction in zip(todo, scores, predictions, strict=True):
                    results["scores"][name][str(i)] = {"score": score, "category": spec.test[i].get("category", "all"),
                                                       "prediction": prediction}
                results["summary"] = summarize(results)
                _write_atomic(path, results)
    finally:
        if server is not None:
            server.stop()
    results["summary"] = summarize(results)
    _write_atomic(path, results)
    print(format_summary(results["summary"]))
    return results


if __name__ == "__main__":
    main()
