"""Re-estimate stored FGO runs with this commit's cost estimate and set it against what the runs spent.

    python -m benchmarks.estimate_check benchmarks/results/bookings-750 --methods fgo+rules+tie+raw+evidence+ground+pick4+prune

Each run of ``<dir>/results.json`` that is an FGO variant (``fgo+...``, ``batch-wise+...``) is rebuilt from its
own command (same task, data, LMs, budget, seed) and estimated with ``FGO.estimate_cost``: a pilot of the seed
program on a few training examples (task-LM calls only; DSPy's cache answers those a run already made), the plan
and the assumptions of ``dspy_fgo/estimate.py``. Actual is what the run's record (``<run>.fgo.json``) says it
spent; "stored" is the estimate the run itself printed, with the code it ran on. Runs whose merges were forked
from another run (``--fork-subsets-of``) and runs in rounds (``rounds=True``) are skipped. The rows go to ``--out``
(default ``<dir>/estimate_check.json``) and a table to the terminal.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import dspy

from benchmarks.methods import variant_optimizer, variant_options
from benchmarks.run import load_task_of, method_context, parse_args, resolve_lms

COLUMNS = {  # column -> (section of an estimate / accounting, key); "optimizer_side" sums the optimizer-side roles
    "metric calls": (None, "metric_calls"),
    "task prompt tokens": ("task", "prompt_tokens"),
    # DSPy's cache answers some runs (the seed's, cached by an earlier method) and they report no usage: per
    # call, the cache does not count
    "task prompt tokens per call": ("task", "prompt_tokens/calls"),
    "task completion tokens": ("task", "completion_tokens"),
    "optimizer calls": ("optimizer_side", "calls"),
    "optimizer prompt tokens": ("optimizer_side", "prompt_tokens"),
}

# the columns the +-25% count reads: the totals of task tokens also move with DSPy's cache
SCORED = ("metric calls", "task prompt tokens per call", "optimizer calls", "optimizer prompt tokens")


def usage(record: dict[str, Any], column: str) -> float:
    """One column's value from an estimate's or an accounting's dict."""
    section, key = COLUMNS[column]
    if section is None:
        return float(record.get(key) or 0)
    part = (record.get(section) if section == "optimizer_side" else record.get("roles", {}).get(section)) or {}
    if "/" in key:
        numerator, denominator = key.split("/")
        return float(part.get(numerator) or 0) / part[denominator] if part.get(denominator) else 0.0
    return float(part.get(key) or 0)


def ratios(estimate: dict[str, Any], actual: dict[str, Any]) -> dict[str, float | None]:
    """actual / estimate per column (None where the estimate is zero)."""
    out = {}
    for column in COLUMNS:
        expected = usage(estimate, column)
        out[column] = round(usage(actual, column) / expected, 3) if expected else None
    return out


def replayable(results: dict[str, Any], directory: Path, methods: set[str] | None,
               seeds: set[int] | None) -> list[tuple[str, int, argparse.Namespace, dict[str, Any]]]:
    """(method, seed, the run's arguments, its FGO record) of every run this script can rebuild."""
    out = []
    for key, run in sorted(results["runs"].items()):
        name, seed = key.rsplit("/seed", 1)
        record_path = directory / f"{name}-seed{seed}.fgo.json"
        if (methods and name not in methods) or (seeds and int(seed) not in seeds) or not record_path.exists():
            continue
        args = parse_args(shlex.split(run["command"])[3:])  # "python -m benchmarks.run ..."
        if args.fork_subsets_of or not is_variant(name):
            continue
        record = json.loads(record_path.read_text())
        if not record.get("rounds"):  # rounds=True: a round's own plan, which estimate_cost does not make
            out.append((name, int(seed), args, record))
    return out


def is_variant(name: str) -> bool:
    """Whether ``name`` is an FGO variant of this commit (a name with a suffix of its own, such as
    ``...+rounds-uncapped`` for a run of older code, is not)."""
    try:
        return variant_options(name) is not None
    except ValueError:
        return False


def check(directory: Path, methods: set[str] | None = None, seeds: set[int] | None = None) -> list[dict[str, Any]]:
    """Estimate every replayable run of ``directory`` again and compare (see the module docstring)."""
    results = json.loads((directory / "results.json").read_text())
    runs = replayable(results, directory, methods, seeds)
    if not runs:
        return []
    first = runs[0][2]
    task_lm, optimizer_lm, server = resolve_lms(first.task_lm, first.optimizer_lm, first.n_ctx, first.task_temperature)
    rows, tasks = [], {}
    try:
        for name, seed, args, record in runs:
            if (args.task_lm, args.optimizer_lm) != (first.task_lm, first.optimizer_lm):
                continue  # one pair of LMs per folder, as run.py writes them
            task_key = (args.task, args.train, args.val, args.test, args.data_seed, args.feedback, args.program)
            task = tasks.get(task_key) or tasks.setdefault(task_key, load_task_of(args))
            ctx = method_context(task, args, task_lm, optimizer_lm, seed, None)
            with dspy.context(lm=task_lm):
                estimate = variant_optimizer(name, ctx).estimate_cost(ctx.program, trainset=ctx.trainset,
                                                                      valset=ctx.valset).to_dict()
            actual = record["accounting"]
            stored = actual.get("estimate") or {}
            rows.append({"run": f"{name}/seed{seed}", "budget": args.max_metric_calls, "estimate": estimate,
                         "actual": {k: actual.get(k) for k in ("roles", "optimizer_side", "metric_calls")},
                         "ratios": ratios(estimate, actual), "stored_ratios": ratios(stored, actual) if stored else {}})
    finally:
        if server is not None:
            server.stop()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """actual / estimate per run and column, this commit's estimate and (in brackets) the stored one."""
    import pandas as pd

    def cell(row: dict[str, Any], column: str) -> str:
        now, then = row["ratios"][column], row["stored_ratios"].get(column)
        fmt = lambda v: "-" if v is None else f"x{v:.2f}"  # noqa: E731
        return f"{fmt(now)} ({fmt(then)})"

    frame = pd.DataFrame([{"run": r["run"], "budget": r["budget"], **{c: cell(r, c) for c in COLUMNS}} for r in rows])
    within = sum(all(r["ratios"][c] is not None and 0.75 <= r["ratios"][c] <= 1.25 for c in SCORED) for r in rows)
    return (frame.to_string(index=False) + f"\nactual / estimate, this commit (stored); runs within +-25% in "
            f"{', '.join(SCORED)}: {within} of {len(rows)}")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="a benchmarks.run results folder (results.json and <run>.fgo.json)")
    p.add_argument("--methods", default=None, help="comma-separated method names (default: every FGO variant)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: all)")
    p.add_argument("--out", type=Path, default=None, help="JSON of the rows (default <dir>/estimate_check.json)")
    args = p.parse_args(argv)
    methods = set(args.methods.split(",")) if args.methods else None
    seeds = {int(s) for s in args.seeds.split(",")} if args.seeds else None
    rows = check(args.dir, methods, seeds)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = args.out or args.dir / "estimate_check.json"
    out.write_text(json.dumps({"commit": commit, "command": "python -m benchmarks.estimate_check " + " ".join(
        argv if argv is not None else sys.argv[1:]), "rows": rows}, indent=1) + "\n")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
